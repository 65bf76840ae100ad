// @ts-check
// The ml-dash dashboard: a sidebar tree of experiments and a main panel with
// charts, parameters, logs and files of the selected runs. Plain DOM, no
// framework; live updates arrive as server-sent events. This module wires the
// others together and starts the page.

import { setupChartControls } from "./charts_panel.js";
import { setDrawer, setupDrawer } from "./drawer.js";
import { connectLive, startClocks } from "./live.js";
import { loadSelection, renderMain } from "./main_panel.js";
import { openRunsTable, renderRunsTable } from "./runs_table.js";
import { onSelectionChange, renderSelectionBar } from "./selection.js";
import { readHash, state } from "./state.js";
import { setupTheme } from "./theme_button.js";
import { applyQuery, loadExperiments, renderTree, setupFilters, setupTreeKeys, showListError } from "./tree.js";

/** Everything that shows the selection, after it changed. */
function showSelection() {
  setDrawer(false);
  renderTree();
  renderSelectionBar();
  loadSelection();
}

/** The runs table follows the sidebar's filters. */
function showFiltered() {
  if (state.tab === "runs") renderRunsTable();
}

async function main() {
  readHash();
  setupTheme();
  setupDrawer();
  setupTreeKeys();
  setupFilters(showFiltered, (folder) => {
    setDrawer(false);
    openRunsTable(folder);
  });
  setupChartControls();
  onSelectionChange(showSelection);
  globalThis.addEventListener("hashchange", () => {
    const query = state.query;
    readHash();
    if (state.query !== query) applyQuery(state.query);
    showSelection();
  });
  renderSelectionBar();
  globalThis.addEventListener("resize", () => renderSelectionBar());
  renderMain();
  connectLive();
  startClocks();
  try {
    await loadExperiments();
  } catch (error) {
    showListError(error);
  }
  if (state.query) applyQuery(state.query);
  loadSelection();
}

main();
