// @ts-check
// The ml-dash dashboard: a sidebar tree of experiments and a main panel with
// charts, parameters, logs and files of the selected runs. Plain DOM, no
// framework; live updates arrive as server-sent events. This module wires the
// others together and starts the page.

import { setupChartControls } from "./charts_panel.js";
import { connectLive, startClocks } from "./live.js";
import { loadSelection, renderMain } from "./main_panel.js";
import { onSelectionChange, renderSelectionBar } from "./selection.js";
import { readHash } from "./state.js";
import { setupTheme } from "./theme_button.js";
import { loadExperiments, renderTree, setupFilters, showListError } from "./tree.js";

/** Everything that shows the selection, after it changed. */
function showSelection() {
  renderTree();
  renderSelectionBar();
  loadSelection();
}

async function main() {
  setupTheme();
  setupFilters();
  setupChartControls();
  onSelectionChange(showSelection);
  globalThis.addEventListener("hashchange", () => {
    readHash();
    showSelection();
  });
  readHash();
  renderSelectionBar();
  renderMain();
  connectLive();
  startClocks();
  try {
    await loadExperiments();
  } catch (error) {
    showListError(error);
  }
  loadSelection();
}

main();
