// @ts-check
// The Logs tab: the last LOG_LIMIT lines of each selected run at or above a
// level, merged in time order, with a run menu and a text search.

import { errorMessage, fetchJson } from "./api.js";
import { fill, h, $, searchBox, targetValue } from "./dom.js";
import * as fmt from "./format.js";
import { runLabels } from "./runs.js";
import { colorOf, state } from "./state.js";

/** @typedef {import("./api.js").LogLine} LogLine */
/** @typedef {import("./api.js").LogPage} LogPage */

/**
 * A run's lines as last fetched, and the level they were fetched for.
 * @typedef {{ level: string, logs: LogLine[], total: number, error?: string }} CachedLogs
 */

const LEVELS = ["debug", "info", "warn", "error", "fatal"];
const LOG_LIMIT = 1000;

/** @type {Map<string, CachedLogs>} */
const logCache = new Map();
/** The minimum level, "" for all. */
let logLevel = "";
/** The one run to show, "" for every selected run. */
let logRun = "";
let logText = "";

/** @returns {string[]} the runs whose lines are shown */
function shownRuns() {
  return logRun && state.selected.includes(logRun) ? [logRun] : state.selected;
}

/**
 * Fetches the last LOG_LIMIT lines of a run at the chosen level.
 * @param {string} prefix
 */
async function fetchLogs(prefix) {
  const level = logLevel || undefined;
  /** @type {LogPage} */
  let r = await fetchJson("logs", { prefix, level, offset: 0, limit: LOG_LIMIT });
  if (r.total > LOG_LIMIT) r = await fetchJson("logs", { prefix, level, offset: r.total - LOG_LIMIT, limit: LOG_LIMIT });
  logCache.set(prefix, { level: logLevel, logs: r.logs, total: r.total });
}

/**
 * The toolbar and the lines; refetches the runs in `refresh` and those not
 * fetched at the current level.
 * @param {string[]} [refresh]
 */
export async function renderLogs(refresh = []) {
  const panel = $("#panel-logs");
  const runs = shownRuns();
  const body = h("div", { class: "log-view", dataset: { testid: "log-view" } });
  // The view is kept while the level stays, so its scroll position does too.
  if (!panel.firstChild || panel.dataset.level !== logLevel) {
    fill(panel, logsToolbar(), body);
  } else {
    fill(panel, logsToolbar(), panel.querySelector(".log-view") ?? body);
  }
  panel.dataset.level = logLevel;
  const stale = runs.filter((p) => refresh.includes(p) || logCache.get(p)?.level !== logLevel || logCache.get(p)?.error !== undefined);
  if (stale.length) {
    await Promise.all(stale.map((p) => fetchLogs(p).catch((error) => logCache.set(p, { level: logLevel, logs: [], total: 0, error: errorMessage(error) }))));
  }
  if (state.tab === "logs") drawLogLines();
}

/**
 * The level menu, the run menu (for more than one run), the search box and the count.
 * @returns {HTMLElement}
 */
function logsToolbar() {
  const labels = runLabels();
  return h("div", { class: "panel-toolbar" },
    h("select", {
      class: "input",
      title: "Minimum level",
      dataset: { testid: "log-level" },
      onchange: (/** @type {Event} */ ev) => {
        logLevel = targetValue(ev);
        renderLogs();
      },
    },
      h("option", { value: "" }, "All levels"),
      ...LEVELS.map((l) => h("option", { value: l, selected: logLevel === l }, l === "fatal" ? "fatal" : `${l} and above`)),
    ),
    state.selected.length > 1
      ? h("select", {
        class: "input",
        onchange: (/** @type {Event} */ ev) => {
          logRun = targetValue(ev);
          renderLogs();
        },
      },
        h("option", { value: "" }, "All selected runs"),
        ...state.selected.map((p) => h("option", { value: p, selected: logRun === p }, labels.get(p))),
      )
      : null,
    searchBox("Search messages", logText, (text) => {
      logText = text;
      drawLogLines();
    }),
    h("span", { class: "muted", id: "log-count" }),
  );
}

/** The fetched lines of the shown runs that match the search, staying at the bottom if it was there. */
function drawLogLines() {
  const view = /** @type {HTMLElement | null} */ (document.querySelector("#panel-logs .log-view"));
  if (!view) return;
  const runs = shownRuns();
  const labels = runLabels();
  const atBottom = view.scrollHeight - view.scrollTop - view.clientHeight < 30;
  const text = logText.toLowerCase();
  /** @type {{ prefix: string, line: LogLine }[]} */
  const lines = [];
  let total = 0;
  for (const p of runs) {
    const cached = logCache.get(p);
    if (!cached) continue;
    total += cached.total;
    for (const line of cached.logs) lines.push({ prefix: p, line });
  }
  lines.sort((a, b) => a.line._ts - b.line._ts);
  const matching = text ? lines.filter(({ line }) => String(line.message).toLowerCase().includes(text)) : lines;
  const failures = runs.filter((p) => logCache.get(p)?.error !== undefined).map((p) =>
    h("div", { class: "load-error", role: "alert", dataset: { testid: "log-error", prefix: p } },
      h("span", {}, `Could not load the logs of ${p}: ${logCache.get(p)?.error}`),
      h("button", { type: "button", class: "button small", dataset: { testid: "retry-logs" }, onclick: () => renderLogs() }, "Retry"),
    )
  );
  const multi = runs.length > 1;
  // Lines that span days carry their date; within a day the time is enough.
  const span = lines.length ? lines[lines.length - 1].line._ts - lines[0].line._ts : 0;
  /** @param {number} ts */
  const stamp = (ts) => (span > 20 * 3600 ? fmt.dateTime(ts).slice(5) : fmt.dateTime(ts).slice(11));
  fill(view, ...failures, ...(matching.length ? matching.map(({ prefix, line }) => {
    const { _ts, level, message, ...meta } = line;
    const metaText = Object.entries(meta).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ");
    return h("div", { class: `log-line level-${level}`, dataset: { testid: "log-line", level, prefix } },
      h("span", { class: "log-time", title: fmt.dateTime(_ts) }, stamp(_ts)),
      h("span", { class: `log-level level-${level}` }, level),
      multi ? h("span", { class: "log-run", style: { color: colorOf(prefix) } }, labels.get(prefix)) : null,
      h("span", { class: "log-message" }, String(message)),
      metaText ? h("span", { class: "log-meta" }, metaText) : null,
    );
  }) : failures.length ? [] : [h("div", { class: "empty small" }, lines.length ? "No line matches the search." : "No log lines.")]));
  const count = document.querySelector("#log-count");
  if (count) {
    count.textContent = `${matching.length.toLocaleString()} line${matching.length === 1 ? "" : "s"}${total > lines.length ? ` (last ${lines.length.toLocaleString()} of ${total.toLocaleString()})` : ""}`;
  }
  if (atBottom) view.scrollTop = view.scrollHeight;
}
