// @ts-check
// The main panel: the empty state while nothing is selected, else the tabs and
// the panel of the open tab; and reading the details of the selected runs.

import { errorMessage, fetchJson } from "./api.js";
import { chartKeys, disposeCharts, renderCharts, renderXOptions } from "./charts_panel.js";
import { fill, h, $ } from "./dom.js";
import { renderFiles } from "./files_panel.js";
import * as fmt from "./format.js";
import { renderLogs } from "./logs_panel.js";
import { renderOverview } from "./overview_panel.js";
import { renderParams } from "./params_panel.js";
import { openRunsTable, renderRunsTable, setTabSwitcher } from "./runs_table.js";
import { statusDot, statusOf } from "./runs.js";
import { setSelection } from "./selection.js";
import { state, TABS, writeHash } from "./state.js";

/** @typedef {import("./api.js").ExperimentDetail} ExperimentDetail */

/** Shows the selection, then again once the details not read yet (or that failed) have arrived. */
export async function loadSelection() {
  const missing = state.selected.filter((p) => !state.details.has(p) || state.details.get(p)?.error !== undefined);
  renderMain();
  await Promise.all(missing.map((p) => loadDetail(p)));
  if (missing.length) renderMain();
}

/**
 * Reads a run's detail into state.details; a run that cannot be read gets an
 * empty detail with the error, which the next selection or reconnection reads again.
 * @param {string} prefix
 * @returns {Promise<ExperimentDetail | null>}
 */
export async function loadDetail(prefix) {
  try {
    /** @type {ExperimentDetail} */
    const detail = await fetchJson("experiment", { prefix });
    state.details.set(prefix, detail);
    return detail;
  } catch (error) {
    state.details.set(prefix, { prefix, error: errorMessage(error), summary: {}, params: {}, files: [] });
    return null;
  }
}

/** The tab buttons, with the number of charts, parameters and files. */
export function renderTabs() {
  /** @type {Record<string, number>} */
  const counts = {
    charts: chartKeys().size,
    params: new Set(state.selected.flatMap((p) => Object.keys(state.details.get(p)?.params ?? {}))).size,
    files: state.selected.reduce((n, p) => n + (state.details.get(p)?.files?.length ?? 0), 0),
  };
  fill($("#tabs"), ...TABS.map(([id, label]) =>
    h("button", {
      type: "button",
      role: "tab",
      class: `tab${state.tab === id ? " on" : ""}`,
      "aria-selected": String(state.tab === id),
      dataset: { tab: id, testid: `tab-${id}` },
      onclick: () => showTab(id),
    }, label, counts[id] ? h("span", { class: "count" }, counts[id]) : null)
  ));
  $("#chart-controls").hidden = state.tab !== "charts";
}

/**
 * Opens a tab.
 * @param {string} tab
 */
export function showTab(tab) {
  state.tab = tab;
  writeHash();
  renderMain();
}
setTabSwitcher(showTab);

/** Redraws the main panel for the selection and the open tab (the runs table needs no selection). */
export function renderMain() {
  const shows = state.selected.length > 0 || state.tab === "runs";
  $("#empty-state").hidden = shows;
  $("#main-head").hidden = !shows;
  $("#content").hidden = !shows;
  if (!shows) {
    $("#load-errors").hidden = true;
    renderEmpty();
    disposeCharts(new Set());
    return;
  }
  renderLoadErrors();
  renderTabs();
  renderXOptions();
  for (const [id] of TABS) $(`#panel-${id}`).hidden = id !== state.tab;
  if (state.tab === "runs") renderRunsTable();
  else if (state.tab === "charts") renderCharts();
  else if (state.tab === "overview") renderOverview();
  else if (state.tab === "params") renderParams();
  else if (state.tab === "logs") renderLogs();
  else if (state.tab === "files") renderFiles();
}

/** The selected runs that could not be read: the server's message and a button to try again. */
function renderLoadErrors() {
  const failed = state.selected.filter((p) => state.details.get(p)?.error !== undefined);
  const box = $("#load-errors");
  box.hidden = failed.length === 0;
  fill(box, ...failed.map((p) =>
    h("div", { class: "load-error", role: "alert", dataset: { testid: "load-error", prefix: p } },
      h("span", {}, `Could not load ${p}: ${state.details.get(p)?.error}`),
      h("button", { type: "button", class: "button small", dataset: { testid: "retry" }, onclick: () => loadSelection() }, "Retry"),
    )
  ));
}

/** What to do with nothing selected: the recent runs to open, or how to log one. */
export function renderEmpty() {
  const recent = [...state.experiments]
    .sort((a, b) => (b.startedAt ?? b.createdAt ?? 0) - (a.startedAt ?? a.createdAt ?? 0))
    .slice(0, 8);
  fill($("#empty-state"),
    h("div", { class: "empty-card" },
      h("h2", {}, "Select runs to compare"),
      h("p", { class: "muted" }, "Click a run in the sidebar to open it; tick more boxes (or Ctrl/⌘-click) to overlay runs on the same charts."),
      h("button", { type: "button", class: "button", dataset: { testid: "empty-runs-table" }, onclick: () => openRunsTable("") }, "Open the runs table"),
      recent.length
        ? h("div", { class: "recent" },
          h("div", { class: "section-label" }, "Recent runs"),
          ...recent.map((e) =>
            h("button", { type: "button", class: "recent-row", onclick: () => setSelection([e.prefix]) },
              statusDot(statusOf(e)),
              h("span", { class: "recent-name" }, e.prefix),
              h("span", { class: "muted" }, fmt.ago(e.startedAt ?? e.createdAt)),
            )
          ),
          runningPrefixes().length > 1
            ? h("button", {
              type: "button",
              class: "button",
              onclick: () => setSelection(runningPrefixes()),
            }, "Compare all running")
            : null,
        )
        : state.listLoaded
        ? h("p", { class: "muted" }, "No experiments in this folder yet.")
        : h("p", { class: "muted" }, "Loading…"),
    ),
  );
}

/** @returns {string[]} */
function runningPrefixes() {
  return state.experiments.filter((e) => statusOf(e) === "RUNNING").map((e) => e.prefix);
}
