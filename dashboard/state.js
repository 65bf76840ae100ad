// @ts-check
// The state the panels share: the experiments listed, the selected runs and the
// colour of each, their details, which tree folders and chart groups are folded,
// and the view (x axis, tab, smoothing). The selection and the view live in the
// URL hash too, so a link or a reload opens the same comparison.

import { readStored, store } from "./local_settings.js";

/** @typedef {import("./api.js").ExperimentSummary} ExperimentSummary */
/** @typedef {import("./api.js").ExperimentDetail} ExperimentDetail */

/** The tabs of the main panel: [id, label]; Charts is the default. */
export const TABS = [
  ["runs", "Runs"],
  ["charts", "Charts"],
  ["overview", "Overview"],
  ["params", "Parameters"],
  ["logs", "Logs"],
  ["files", "Files"],
];

const PALETTE = [
  "#3b82f6", "#f97316", "#10b981", "#e11d48", "#8b5cf6",
  "#eab308", "#06b6d4", "#db2777", "#65a30d", "#64748b",
];

export const state = {
  /** @type {ExperimentSummary[]} */
  experiments: [],
  /** @type {Map<string, ExperimentSummary>} */
  byPrefix: new Map(),
  /** @type {string[]} the selected prefixes, in the order they were added */
  selected: [],
  /** @type {Map<string, number>} each selected run's place in PALETTE */
  colorIndex: new Map(),
  /** @type {Map<string, ExperimentDetail>} */
  details: new Map(),
  /** step, _ts (wall time), relative (elapsed) or the name of a field */
  x: "step",
  tab: "charts",
  smoothing: 0,
  /** the param whose values group the runs into one line each on the charts, "" for none */
  groupBy: "",
  /** the folder the runs table shows, "" for all */
  folder: "",
  /** the sidebar's search: words, then an expression in the MLflow filter language */
  query: "",
  /** @type {Set<string>} folder paths, and "chart-group:<group>" for chart groups */
  collapsed: new Set(readStored("mldash.collapsed", /** @type {string[]} */ ([]))),
  listLoaded: false,
};

/**
 * Folds or unfolds a tree folder or chart group, and remembers it.
 * @param {string} id
 */
export function toggleCollapsed(id) {
  if (state.collapsed.has(id)) state.collapsed.delete(id);
  else state.collapsed.add(id);
  store("mldash.collapsed", [...state.collapsed]);
}

/**
 * The i-th colour of the palette (for groups of runs).
 * @param {number} i
 * @returns {string}
 */
export function paletteColor(i) {
  return PALETTE[i % PALETTE.length];
}

/**
 * The colour of a selected run.
 * @param {string} prefix
 * @returns {string}
 */
export function colorOf(prefix) {
  return PALETTE[(state.colorIndex.get(prefix) ?? 0) % PALETTE.length];
}

/**
 * Gives a run the first colour no other selected run has.
 * @param {string} prefix
 */
function assignColor(prefix) {
  if (state.colorIndex.has(prefix)) return;
  const used = new Set(state.selected.filter((p) => p !== prefix).map((p) => state.colorIndex.get(p)));
  let i = 0;
  while (used.has(i)) i++;
  state.colorIndex.set(prefix, i);
}

/**
 * Appends runs to the selection, each with a colour.
 * @param {string[]} prefixes
 */
function appendSelected(prefixes) {
  for (const p of prefixes) {
    assignColor(p);
    state.selected.push(p);
  }
}

/**
 * Makes `prefixes` the selection; runs that stay selected keep their colour.
 * @param {string[]} prefixes
 */
export function replaceSelection(prefixes) {
  const next = [...new Set(prefixes)];
  for (const p of [...state.colorIndex.keys()]) if (!next.includes(p)) state.colorIndex.delete(p);
  state.selected = [];
  appendSelected(next);
}

/** Puts the selection and the view in the URL hash (without a history entry). */
export function writeHash() {
  const params = new URLSearchParams();
  for (const p of state.selected) params.append("run", p);
  if (state.x !== "step") params.set("x", state.x);
  if (state.tab !== "charts") params.set("tab", state.tab);
  if (state.smoothing) params.set("smooth", String(state.smoothing));
  if (state.groupBy) params.set("group", state.groupBy);
  if (state.folder) params.set("folder", state.folder);
  if (state.query) params.set("q", state.query);
  const hash = params.toString();
  if (location.hash.slice(1) !== hash) history.replaceState(null, "", hash ? `#${hash}` : location.pathname + location.search);
}

/** Takes the selection and the view from the URL hash. */
export function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  state.x = params.get("x") || "step";
  const tab = params.get("tab");
  state.tab = TABS.some(([id]) => id === tab) ? /** @type {string} */ (tab) : "charts";
  state.smoothing = Math.min(0.99, Math.max(0, Number(params.get("smooth")) || 0));
  state.groupBy = params.get("group") ?? "";
  state.folder = params.get("folder") ?? "";
  state.query = params.get("q") ?? "";
  state.colorIndex.clear();
  state.selected = [];
  appendSelected(params.getAll("run"));
}
