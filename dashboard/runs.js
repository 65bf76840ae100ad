// @ts-check
// How a run is shown wherever it appears: its status (with STALE for a run whose
// heartbeat stopped), its start, end and duration, the shortest label that tells
// the selected runs apart, and status badges and column headers.

import { h } from "./dom.js";
import { colorOf, state } from "./state.js";

/** @typedef {import("./api.js").ExperimentSummary} ExperimentSummary */

/**
 * The status to show: STALE for a running run that stopped sending heartbeats.
 * @param {{ status: string, stale?: boolean } | undefined} e
 * @returns {string}
 */
export function statusOf(e) {
  if (!e) return "UNKNOWN";
  return e.stale ? "STALE" : e.status;
}

/**
 * When a run started and ended (now, while it runs), and the seconds between.
 * @param {ExperimentSummary} e
 * @returns {{ start: number | undefined, end: number | null | undefined, seconds: number | null }}
 */
export function runTimes(e) {
  const start = e.startedAt ?? e.createdAt;
  let end = e.endedAt;
  if (!end) end = e.status === "RUNNING" && !e.stale ? Date.now() / 1000 : e.heartbeatAt;
  return { start, end, seconds: start && end ? end - start : null };
}

/**
 * The shortest distinct label for each selected run: its last segments.
 * @returns {Map<string, string>}
 */
export function runLabels() {
  /** @type {Map<string, string>} */
  const labels = new Map();
  const parts = state.selected.map((p) => p.split("/"));
  for (const [index, segs] of parts.entries()) {
    let n = 1;
    while (n < segs.length) {
      const tail = segs.slice(-n).join("/");
      const clash = parts.some((o, j) => j !== index && o.slice(-n).join("/") === tail);
      if (!clash) break;
      n++;
    }
    labels.set(state.selected[index], segs.slice(-n).join("/"));
  }
  return labels;
}

/**
 * @param {string} status
 * @returns {HTMLSpanElement}
 */
export function statusBadge(status) {
  return h("span", { class: `badge status-${status.toLowerCase()}`, dataset: { testid: "status-badge" } }, status);
}

/**
 * @param {string} status
 * @returns {HTMLSpanElement}
 */
export function statusDot(status) {
  return h("span", { class: `dot status-${status.toLowerCase()}`, title: status });
}

/**
 * A table header cell per selected run: its colour and label.
 * @returns {HTMLTableCellElement[]}
 */
export function runHeaderCells() {
  const labels = runLabels();
  return state.selected.map((p) =>
    h("th", { class: "run-col", title: p, dataset: { prefix: p } },
      h("span", { class: "swatch", style: { background: colorOf(p) } }),
      h("span", {}, labels.get(p)),
    )
  );
}
