// @ts-check
// Live updates: the event stream's events refetch the list and the selected runs
// that changed (batched, at most about once a second per run), the Live badge
// shows the connection, and running durations tick.

import { openEventStream } from "./api.js";
import { reloadSeriesOf, renderCharts, renderXOptions } from "./charts_panel.js";
import { $ } from "./dom.js";
import * as fmt from "./format.js";
import { renderLogs } from "./logs_panel.js";
import { loadDetail, loadSelection, renderEmpty, renderMain, renderTabs } from "./main_panel.js";
import { state } from "./state.js";
import { loadRunsTable } from "./runs_table.js";
import { evaluateExpression } from "./search.js";
import { loadExperiments, renderSidebar } from "./tree.js";

/** @typedef {import("./api.js").StreamEvent} StreamEvent */

/** @type {Map<string, { again: boolean }>} runs being refreshed; `again` when another event came meanwhile */
const refreshing = new Map();
/** @type {ReturnType<typeof setTimeout> | 0} */
let listTimer = 0;
/** Whether an event since the table was read may have changed it (the periodic look alone never rereads it: that is every run's overview). */
let tableChanged = false;

function scheduleListRefresh() {
  if (listTimer) return;
  listTimer = setTimeout(async () => {
    listTimer = 0;
    await loadExperiments().catch(() => {});
    if (state.query) {
      await evaluateExpression();
      renderSidebar();
    }
    if (state.tab === "runs" && tableChanged) loadRunsTable(true);
    else if (!state.selected.length && state.tab !== "runs") renderEmpty();
    tableChanged = false;
  }, 250);
}

/**
 * Refetches a selected run's detail and series, at most about once a second per run.
 * @param {string} prefix
 */
function scheduleRunRefresh(prefix) {
  const entry = refreshing.get(prefix);
  if (entry) {
    entry.again = true;
    return;
  }
  const run = { again: false };
  refreshing.set(prefix, run);
  setTimeout(async () => {
    try {
      await refreshRun(prefix);
    } finally {
      setTimeout(() => {
        refreshing.delete(prefix);
        if (run.again) scheduleRunRefresh(prefix);
      }, 800);
    }
  }, 150);
}

/**
 * Rereads a run's detail and redraws what shows it: on the Charts tab only the
 * series (and the charts when its keys changed), else the open panel.
 * @param {string} prefix
 */
async function refreshRun(prefix) {
  if (!state.selected.includes(prefix)) return;
  const before = metricKeysOf(prefix);
  await loadDetail(prefix);
  const after = metricKeysOf(prefix);
  renderTabs();
  if (state.tab === "charts") {
    if (before !== after) {
      renderXOptions();
      renderCharts();
    }
    reloadSeriesOf(prefix);
  } else if (state.tab === "logs") {
    renderLogs([prefix]);
  } else {
    renderMain();
  }
}

/**
 * @param {string} prefix
 * @returns {string}
 */
function metricKeysOf(prefix) {
  return Object.keys(state.details.get(prefix)?.summary ?? {}).join("\n");
}

/**
 * @param {StreamEvent} event
 * @returns {string | undefined} the selected run the event is about
 */
function selectedRunOf(event) {
  return event?.prefix && state.selected.includes(event.prefix) ? event.prefix : undefined;
}

/** Rereads the list, the selected runs that failed to load, and the open logs. */
function recoverFromOutage() {
  tableChanged = true;
  scheduleListRefresh();
  loadSelection();
  for (const prefix of state.selected) if (state.details.get(prefix)?.error === undefined) scheduleRunRefresh(prefix);
  if (state.tab === "logs") renderLogs();
}

/** Follows the server's event stream, showing the connection in the Live badge. */
export function connectLive() {
  const indicator = $("#live");
  openEventStream({
    onOpen: () => {
      // Back after an outage: what failed meanwhile is read again, and what changed.
      if (indicator.dataset.state === "offline") recoverFromOutage();
      indicator.dataset.state = "live";
      indicator.title = "Live: updates arrive as they are logged";
    },
    onError: () => {
      indicator.dataset.state = "offline";
      indicator.title = "Disconnected from the server: retrying";
    },
    onEvent: {
      experiment: (event) => {
        tableChanged = true;
        scheduleListRefresh();
        const prefix = selectedRunOf(event);
        if (prefix) scheduleRunRefresh(prefix);
      },
      metrics: (event) => {
        const prefix = selectedRunOf(event);
        if (prefix) scheduleRunRefresh(prefix);
      },
      logs: (event) => {
        const prefix = selectedRunOf(event);
        if (prefix && state.tab === "logs") renderLogs([prefix]);
      },
    },
  });
}

// Durations of running runs tick; the list is re-read now and then, because a
// run that crashed sends no event (its heartbeat just stops).
export function startClocks() {
  setInterval(() => {
    const now = Date.now() / 1000;
    document.querySelectorAll("[data-since]").forEach((node) => {
      const since = Number(/** @type {HTMLElement} */ (node).dataset.since);
      if (since) node.textContent = fmt.duration(now - since);
    });
  }, 1000);
  setInterval(() => {
    if (document.visibilityState === "visible") scheduleListRefresh();
  }, 15000);
}
