// @ts-check
// The Charts tab: a chart per metric key of the selected runs, grouped by the
// key's first segment, each with a series per run fetched at the chart's width
// (again on zoom); and the controls above it (x axis, smoothing, filter).

import { errorMessage, fetchJson } from "./api.js";
import { LineChart } from "./chart.js";
import { fill, h, $, targetValue } from "./dom.js";
import { readable } from "./format.js";
import { runLabels } from "./runs.js";
import { groupLine, groupName } from "./group_series.js";
import { folderPanels, updatePanels } from "./panel_settings.js";
import { colorOf, paletteColor, state, toggleCollapsed, writeHash } from "./state.js";

/** @typedef {import("./api.js").SeriesPage} SeriesPage */

/**
 * A run's series as the chart draws it.
 * @typedef {object} RunSeries
 * @property {Float64Array} x
 * @property {Float64Array} y
 * @property {number} total     points the run has in the range, before downsampling
 * @property {boolean} downsampled
 */

/**
 * A chart of one metric key and what it shows.
 * @typedef {object} ChartView
 * @property {string} key
 * @property {HTMLElement} card
 * @property {LineChart} chart
 * @property {HTMLElement} info          points shown, and whether downsampled
 * @property {HTMLButtonElement} resetButton
 * @property {string[]} runs             the selected runs that have the key
 * @property {Map<string, RunSeries>} data
 * @property {number[] | null} zoom      the x range zoomed to
 * @property {Map<string, Map<string, RunSeries>>} extra the other keys drawn on it → each run's series
 * @property {HTMLSelectElement} keyMenu   adds or removes another key
 * @property {HTMLButtonElement} pinButton
 * @property {HTMLElement} yForm           the y range form
 * @property {number} generation         bumped when fetched series become outdated
 * @property {string} x                  the x axis the data is for
 * @property {number} [pending]          series requests under way
 */

// Fields offered first as x axis when a metric has them.
const X_FIELDS = new Set([
  "epoch", "epochs", "iteration", "iter", "it", "global_step", "batch", "samples",
  "examples", "tokens", "images", "frames", "timesteps", "env_steps", "episode", "time", "wall_time",
]);

/** @type {Map<string, ChartView>} */
const views = new Map();
/** The runs (and groups) hidden from the legend: hidden on every chart. */
const hiddenSeries = new Set();

/**
 * Hides a run (or group) on every chart, or shows it again.
 * @param {string} id
 */
function toggleHidden(id) {
  if (hiddenSeries.has(id)) hiddenSeries.delete(id);
  else hiddenSeries.add(id);
  for (const view of views.values()) view.chart.syncHidden();
}
let chartFilter = "";

/** The x axis menu, the smoothing slider and the chart filter. */
export function setupChartControls() {
  $("#x-axis").addEventListener("change", (ev) => {
    state.x = targetValue(ev);
    writeHash();
    renderCharts();
  });
  $("#group-by").addEventListener("change", (ev) => {
    state.groupBy = targetValue(ev);
    writeHash();
    for (const view of views.values()) updateChartSeries(view);
  });
  const smoothing = /** @type {HTMLInputElement} */ ($("#smoothing"));
  smoothing.addEventListener("input", () => {
    state.smoothing = Number(smoothing.value);
    $("#smoothing-value").textContent = smoothingText();
    for (const view of views.values()) view.chart.setSmoothing(state.smoothing);
    writeHash();
  });
  $("#chart-filter").addEventListener("input", (ev) => {
    chartFilter = targetValue(ev);
    renderCharts();
  });
}

function smoothingText() {
  return state.smoothing ? state.smoothing.toFixed(2) : "off";
}

/** Redraws every chart (its colours follow the theme). */
export function redrawCharts() {
  for (const view of views.values()) view.chart.requestDraw();
}

/**
 * Refetches a run's series in the charts that show it.
 * @param {string} prefix
 */
export function reloadSeriesOf(prefix) {
  for (const view of views.values()) {
    if (!view.runs.includes(prefix) || !view.data.has(prefix)) continue;
    loadSeries(view, prefix);
    for (const other of view.extra.keys()) loadSeries(view, prefix, other);
  }
}

// ─── Keys and the x axis ────────────────────────────────────────────────────

/**
 * "train/loss" → "loss".
 * @param {string} key
 * @returns {string}
 */
function fieldOf(key) {
  const slash = key.indexOf("/");
  return slash < 0 ? key : key.slice(slash + 1);
}

/**
 * "train/loss" → "train"; "" for a key without a slash.
 * @param {string} key
 * @returns {string}
 */
function groupOf(key) {
  const slash = key.indexOf("/");
  return slash < 0 ? "" : key.slice(0, slash);
}

/**
 * Metric keys of the selected runs → the runs that have each key.
 * @returns {Map<string, string[]>}
 */
export function chartKeys() {
  /** @type {Map<string, string[]>} */
  const keys = new Map();
  const xField = isFieldX() ? state.x : null;
  for (const p of state.selected) {
    for (const key of Object.keys(state.details.get(p)?.summary ?? {})) {
      if (xField && fieldOf(key) === xField) continue;
      const runs = keys.get(key) ?? [];
      if (!runs.length) keys.set(key, runs);
      runs.push(p);
    }
  }
  return keys;
}

function isFieldX() {
  return !["step", "_ts", "relative"].includes(state.x);
}

/** @returns {string} the x kind LineChart knows: step, time, relative or field */
function xKind() {
  if (state.x === "step") return "step";
  if (state.x === "_ts") return "time";
  if (state.x === "relative") return "relative";
  return "field";
}

/** @returns {string} */
function xLabel() {
  return /** @type {Record<string, string>} */ ({ step: "step", _ts: "time", relative: "elapsed" })[state.x] ?? state.x;
}

/** The x axis menu (step, times, the fields of the selected runs) and the smoothing slider. */
export function renderXOptions() {
  /** @type {Set<string>} */
  const fields = new Set();
  for (const p of state.selected) {
    for (const key of Object.keys(state.details.get(p)?.summary ?? {})) fields.add(fieldOf(key));
  }
  const likely = [...fields].filter((f) => X_FIELDS.has(f)).sort();
  const others = [...fields].filter((f) => !X_FIELDS.has(f)).sort();
  if (isFieldX() && !fields.has(state.x)) likely.unshift(state.x);
  /**
   * @param {string} value
   * @param {string} label
   */
  const option = (value, label) => h("option", { value, selected: state.x === value }, label);
  fill($("#x-axis"),
    option("step", "Step"),
    option("relative", "Relative time"),
    option("_ts", "Wall time"),
    likely.length ? h("optgroup", { label: "Fields" }, ...likely.map((f) => option(f, f))) : null,
    others.length ? h("optgroup", { label: "Other fields" }, ...others.map((f) => option(f, f))) : null,
  );
  renderGroupOptions();
  /** @type {HTMLInputElement} */ ($("#smoothing")).value = String(state.smoothing);
  $("#smoothing-value").textContent = smoothingText();
}

/** The group-by menu: none, then the params of the selected runs, those that differ first. */
function renderGroupOptions() {
  const details = state.selected.map((p) => state.details.get(p)?.params ?? {});
  const keys = [...new Set(details.flatMap((d) => Object.keys(d)))];
  /** @param {string} k */
  const differs = (k) => new Set(details.map((d) => groupName(Object.hasOwn(d, k) ? d[k] : undefined))).size > 1;
  const byName = (/** @type {string} */ a, /** @type {string} */ b) => a.localeCompare(b, undefined, { numeric: true });
  const varying = keys.filter(differs).sort(byName);
  const same = keys.filter((k) => !differs(k)).sort(byName);
  if (state.groupBy && !keys.includes(state.groupBy)) varying.unshift(state.groupBy);
  /** @param {string} k */
  const option = (k) => h("option", { value: k, selected: state.groupBy === k }, k);
  fill($("#group-by"),
    h("option", { value: "", selected: !state.groupBy }, "No grouping"),
    varying.length ? h("optgroup", { label: "Differ between the runs" }, ...varying.map(option)) : null,
    same.length ? h("optgroup", { label: "Same in all" }, ...same.map(option)) : null,
  );
}

// ─── The panel ──────────────────────────────────────────────────────────────

/**
 * The keys that pass the filter by group, in the order shown.
 * @param {string[]} shown
 * @returns {Map<string, string[]>}
 */
function groupKeys(shown) {
  // Within a group: metrics by name, then fields that look like an x axis (epoch, tokens...).
  /** @param {string} key */
  const rank = (key) => (X_FIELDS.has(fieldOf(key)) ? 1 : 0);
  shown.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b, undefined, { numeric: true }));
  /** @type {Map<string, string[]>} */
  const groups = new Map();
  for (const key of shown) {
    const group = groupOf(key);
    const keys = groups.get(group) ?? [];
    if (!keys.length) groups.set(group, keys);
    keys.push(key);
  }
  return groups;
}

/** The chart groups, reusing the charts of keys still shown. */
export function renderCharts() {
  const panel = $("#panel-charts");
  const keys = chartKeys();
  const filter = chartFilter.toLowerCase();
  const shown = [...keys.keys()].filter((k) => !filter || k.toLowerCase().includes(filter));
  const pinned = folderPanels().pinned.filter((k) => shown.includes(k));
  const groups = groupKeys(shown.filter((k) => !pinned.includes(k)));
  const order = [...groups.keys()].sort((a, b) => (a === "" ? -1 : b === "" ? 1 : a.localeCompare(b)));
  disposeCharts(new Set(shown));
  const loading = state.selected.some((p) => !state.details.has(p));
  const failed = state.selected.some((p) => state.details.get(p)?.error !== undefined);
  if (!shown.length) {
    fill(panel, h("div", { class: "empty small" },
      loading ? "Loading…" : keys.size ? "No chart matches the filter." : failed ? "The selected runs could not be read (see above)." : "The selected runs have no metrics yet."));
    return;
  }
  fill(panel,
    pinned.length
      ? h("section", { class: "chart-group pinned", dataset: { testid: "pinned-group" } },
        h("div", { class: "group-head" }, h("span", { class: "group-name" }, "Pinned"), h("span", { class: "count" }, pinned.length)),
        h("div", { class: "chart-grid" }, ...pinned.map((key) => chartView(key, keys.get(key) ?? []).card)),
      )
      : null,
    ...order.map((group) => groupSection(group, groups.get(group) ?? [], keys)),
  );
  for (const key of shown) {
    const view = views.get(key);
    if (!view || !view.card.isConnected) continue;
    syncChart(view, keys.get(key) ?? []);
  }
}

/**
 * A group's foldable section and its charts.
 * @param {string} group
 * @param {string[]} members the keys in the group
 * @param {Map<string, string[]>} keys every key → its runs
 * @returns {HTMLElement}
 */
function groupSection(group, members, keys) {
  const id = `chart-group:${group}`;
  const collapsed = state.collapsed.has(id);
  return h("section", { class: `chart-group${collapsed ? " collapsed" : ""}`, dataset: { testid: "chart-group", group } },
    h("button", {
      type: "button",
      class: "group-head",
      onclick: () => {
        toggleCollapsed(id);
        renderCharts();
      },
    },
      h("span", { class: `caret${collapsed ? "" : " open"}` }),
      h("span", { class: "group-name" }, group || "Charts"),
      h("span", { class: "count" }, members.length),
    ),
    collapsed ? null : h("div", { class: "chart-grid" }, ...members.map((key) => chartView(key, keys.get(key) ?? []).card)),
  );
}

/**
 * Destroys the charts of keys not in `keep`.
 * @param {Set<string>} keep
 */
export function disposeCharts(keep) {
  for (const [key, view] of views) {
    if (keep.has(key)) continue;
    view.chart.destroy();
    views.delete(key);
  }
}

// ─── One chart ──────────────────────────────────────────────────────────────

/**
 * The chart of a key, made on first use.
 * @param {string} key
 * @param {string[]} runs
 * @returns {ChartView}
 */
function chartView(key, runs) {
  const existing = views.get(key);
  if (existing) return existing;
  const group = groupOf(key);
  const resetButton = h("button", { type: "button", class: "icon-button", title: "Reset zoom (or double-click the chart)", hidden: true }, "Reset zoom");
  const logButton = h("button", { type: "button", class: "icon-button toggle", title: "Logarithmic y axis", "aria-label": `Logarithmic y axis of ${key}`, "aria-pressed": "false" }, "log");
  const pinButton = h("button", { type: "button", class: "icon-button toggle", title: "Pin this chart to the top", "aria-label": `Pin ${key} to the top`, "aria-pressed": "false", dataset: { testid: "pin" } }, "pin");
  const keyMenu = h("select", { class: "input key-menu", "aria-label": `Draw another key on the ${key} chart`, dataset: { testid: "add-key" } });
  const yForm = yRangeForm(key);
  const info = h("span", { class: "chart-info" });
  const body = h("div", { class: "chart-body" });
  const card = h("div", { class: "chart-card", dataset: { testid: "chart", key, group, seriesCount: "0", pointCount: "0" } },
    h("div", { class: "chart-head" },
      h("span", { class: "chart-title", title: key }, group ? h("span", { class: "muted" }, `${group}/`) : null, fieldOf(key)),
      info,
      resetButton,
      keyMenu,
      yForm,
      logButton,
      pinButton,
    ),
    body,
  );
  const chart = new LineChart(body, {
    xKind: xKind(),
    xLabel: xLabel(),
    hidden: hiddenSeries,
    onLegendToggle: toggleHidden,
    onZoom: (range) => {
      view.zoom = range;
      resetButton.hidden = !range;
      view.generation++;
      for (const p of view.runs) {
        loadSeries(view, p);
        for (const other of view.extra.keys()) loadSeries(view, p, other);
      }
    },
  });
  chart.setSmoothing(state.smoothing);
  resetButton.addEventListener("click", () => chart.resetZoom());
  logButton.addEventListener("click", () => {
    chart.setLogY(!chart.logY);
    logButton.classList.toggle("on", chart.logY);
    logButton.setAttribute("aria-pressed", String(chart.logY));
  });
  pinButton.addEventListener("click", () => {
    updatePanels((panels) => {
      panels.pinned = panels.pinned.includes(key) ? panels.pinned.filter((k) => k !== key) : [...panels.pinned, key];
    });
    renderCharts();
  });
  keyMenu.addEventListener("change", () => {
    const other = keyMenu.value;
    keyMenu.value = "";
    if (!other) return;
    updatePanels((panels) => {
      const extra = panels.extra[key] ?? [];
      panels.extra[key] = extra.includes(other) ? extra.filter((k) => k !== other) : [...extra, other];
    });
    syncChart(view, view.runs);
  });
  /** @type {ChartView} */
  const view = { key, card, chart, info, resetButton, runs, data: new Map(), extra: new Map(), keyMenu, pinButton, yForm, zoom: null, generation: 0, x: state.x };
  views.set(key, view);
  return view;
}

/**
 * Brings a chart in line with the selection and x axis, fetching what it lacks.
 * @param {ChartView} view
 * @param {string[]} runs
 */
function syncChart(view, runs) {
  view.runs = runs;
  if (view.x !== state.x) {
    view.x = state.x;
    view.zoom = null;
    view.resetButton.hidden = true;
    view.data.clear();
    view.extra.clear();
    view.generation++;
    view.chart.setXKind(xKind(), xLabel());
  }
  for (const p of [...view.data.keys()]) if (!runs.includes(p)) view.data.delete(p);
  applyPanelSettings(view);
  updateChartSeries(view);
  for (const p of runs) if (!view.data.has(p)) loadSeries(view, p);
  for (const [other, byRun] of view.extra) {
    for (const p of runs) if (!byRun.has(p)) loadSeries(view, p, other);
  }
}

/**
 * What to subtract from a run's times on the relative axis: its creation time.
 * @param {string} prefix
 * @returns {number}
 */
function xOffset(prefix) {
  if (state.x !== "relative") return 0;
  const d = state.details.get(prefix);
  const e = state.byPrefix.get(prefix);
  return d?.metadata?.createdAt ?? e?.createdAt ?? d?.status?.startedAt ?? e?.startedAt ?? 0;
}

/**
 * Fetches a run's series for a chart (its zoomed range, at its width) and shows it,
 * unless the chart moved on meanwhile.
 * @param {ChartView} view
 * @param {string} prefix
 * @param {string} [key] the chart's own key, or another drawn on it
 */
async function loadSeries(view, prefix, key = view.key) {
  const generation = view.generation;
  const offset = xOffset(prefix);
  /** @type {import("./api.js").Query} */
  const params = {
    prefix,
    key,
    points: view.chart.pixelWidth,
    x: state.x === "relative" ? "_ts" : state.x,
  };
  if (view.zoom) {
    params.from = view.zoom[0] + offset;
    params.to = view.zoom[1] + offset;
  }
  view.pending = (view.pending ?? 0) + 1;
  view.card.dataset.loading = "true";
  try {
    /** @type {SeriesPage} */
    const r = await fetchJson("series", params);
    if (generation !== view.generation || !view.runs.includes(prefix)) return;
    const x = toNumbers(r.x);
    if (offset) for (let i = 0; i < x.length; i++) x[i] -= offset;
    const series = { x, y: toNumbers(r.value), total: r.total ?? r.x.length, downsampled: Boolean(r.downsampled) };
    if (key === view.key) view.data.set(prefix, series);
    else if (view.extra.has(key)) /** @type {Map<string, RunSeries>} */ (view.extra.get(key)).set(prefix, series);
    else return;
    updateChartSeries(view);
  } catch (error) {
    view.chart.message = `Could not load: ${errorMessage(error)}`;
    view.chart.requestDraw();
  } finally {
    view.pending--;
    if (!view.pending) delete view.card.dataset.loading;
  }
}

/**
 * JSON values as numbers, NaN for null (a non-finite value).
 * @param {(number | string | null)[]} values
 * @returns {Float64Array}
 */
function toNumbers(values) {
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    out[i] = typeof v === "number" ? v : v === null ? NaN : Number(v);
  }
  return out;
}

/**
 * Gives the chart the series it has, in selection order, and its point counts.
 * @param {ChartView} view
 */
function updateChartSeries(view) {
  const { series, points, downsampled } = state.groupBy ? groupedSeries(view) : runSeries(view);
  const waiting = view.runs.some((p) => !view.data.has(p));
  view.chart.message = waiting ? "Loading…" : isFieldX() ? `No "${state.x}" field in this metric` : "No data";
  view.chart.setSeries(series);
  view.chart.canvas.setAttribute("role", "img");
  view.chart.canvas.setAttribute("aria-label", chartDescription(view.key, series));
  view.card.dataset.seriesCount = String(series.filter((s) => s.x.length > 0).length);
  view.card.dataset.pointCount = String(points);
  view.info.textContent = points ? `${points.toLocaleString()} pt${points === 1 ? "" : "s"}${downsampled ? " · downsampled" : ""}` : "";
  view.info.title = downsampled ? "The server sent a min/max per pixel column; zoom in for every point" : "";
}

/**
 * What a chart shows, in words: its key, and each line's last value and where.
 * @param {string} key
 * @param {import("./chart.js").ChartSeries[]} series
 * @returns {string}
 */
function chartDescription(key, series) {
  const lines = series.map((s) => {
    let i = s.y.length - 1;
    while (i >= 0 && !Number.isFinite(s.y[i])) i--;
    return i < 0 ? `${s.label}: no value` : `${s.label}: last ${readable(s.y[i])} at ${xLabel()} ${readable(s.x[i])}`;
  });
  return `Chart of ${key}. ${lines.length ? lines.join("; ") : "No data yet"}.`;
}

/**
 * A series per run that has the chart's key, in selection order.
 * @param {ChartView} view
 * @returns {{ series: import("./chart.js").ChartSeries[], points: number, downsampled: boolean }}
 */
function runSeries(view) {
  const labels = runLabels();
  const series = [];
  let points = 0;
  let downsampled = false;
  for (const p of state.selected) {
    const d = view.data.get(p);
    if (!d || !view.runs.includes(p)) continue;
    const label = labels.get(p) ?? p;
    series.push({ id: p, label: view.extra.size ? `${label} · ${view.key}` : label, color: colorOf(p), x: d.x, y: d.y });
    points += d.total;
    downsampled ||= d.downsampled;
    let dash = 0;
    for (const [other, byRun] of view.extra) {
      const e = byRun.get(p);
      dash++;
      if (!e) continue;
      series.push({ id: `${p}\n${other}`, label: `${label} · ${other}`, color: colorOf(p), x: e.x, y: e.y, dash: [6 - dash, 3 + dash] });
      points += e.total;
    }
  }
  return { series, points, downsampled };
}

/**
 * Gives a chart its folder's settings: the other keys drawn on it, its y range, whether it is pinned.
 * @param {ChartView} view
 */
function applyPanelSettings(view) {
  const panels = folderPanels();
  const wanted = (panels.extra[view.key] ?? []).filter((k) => k !== view.key);
  for (const other of [...view.extra.keys()]) if (!wanted.includes(other)) view.extra.delete(other);
  for (const other of wanted) if (!view.extra.has(other)) view.extra.set(other, new Map());
  const range = panels.y[view.key] ?? {};
  view.chart.setYRange(range);
  fillYForm(view.yForm, range);
  const pinned = panels.pinned.includes(view.key);
  view.pinButton.classList.toggle("on", pinned);
  view.pinButton.setAttribute("aria-pressed", String(pinned));
  const others = [...chartKeys().keys()].filter((k) => k !== view.key);
  fill(view.keyMenu,
    h("option", { value: "" }, view.extra.size ? `+${view.extra.size} key${view.extra.size === 1 ? "" : "s"}` : "+ key"),
    ...others.map((k) => h("option", { value: k }, `${view.extra.has(k) ? "✓ " : ""}${k}`)),
  );
}

/**
 * The y range menu of a chart: fixed ends and outlier clipping, stored for the folder.
 * @param {string} key
 * @returns {HTMLElement}
 */
function yRangeForm(key) {
  /** @param {string} name @param {string} label */
  const number = (name, label) => h("label", { class: "control" }, label, h("input", { type: "number", step: "any", class: "input", name, "aria-label": `${label} of the ${key} chart's y axis` }));
  const form = h("details", { class: "y-menu", dataset: { testid: "y-range" } },
    h("summary", { class: "icon-button", title: "Y range and outliers" }, "y"),
    h("form", { class: "y-form" },
      number("min", "min"),
      number("max", "max"),
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "clip", "aria-label": `Clip outliers on the ${key} chart` }), "clip outliers"),
    ),
  );
  form.addEventListener("change", () => {
    const f = /** @type {HTMLFormElement} */ (form.querySelector("form"));
    const value = (/** @type {string} */ name) => /** @type {HTMLInputElement} */ (f.elements.namedItem(name));
    /** @type {import("./panel_settings.js").YRange} */
    const range = {};
    if (value("min").value !== "") range.min = Number(value("min").value);
    if (value("max").value !== "") range.max = Number(value("max").value);
    if (value("clip").checked) range.clip = true;
    updatePanels((panels) => {
      panels.y[key] = range;
    });
    views.get(key)?.chart.setYRange(range);
  });
  return form;
}

/**
 * Shows a stored y range in a chart's form.
 * @param {HTMLElement} form
 * @param {import("./panel_settings.js").YRange} range
 */
function fillYForm(form, range) {
  const f = /** @type {HTMLFormElement} */ (form.querySelector("form"));
  const input = (/** @type {string} */ name) => /** @type {HTMLInputElement} */ (f.elements.namedItem(name));
  if (document.activeElement?.closest(".y-form") === f) return;
  input("min").value = range.min === undefined ? "" : String(range.min);
  input("max").value = range.max === undefined ? "" : String(range.max);
  input("clip").checked = Boolean(range.clip);
}

/**
 * A series per value of the group-by param: the mean of its runs with their
 * min–max band, named with the value and how many runs it holds.
 * @param {ChartView} view
 * @returns {{ series: import("./chart.js").ChartSeries[], points: number, downsampled: boolean }}
 */
function groupedSeries(view) {
  /** @type {Map<string, string[]>} */
  const groups = new Map();
  for (const p of state.selected) {
    if (!view.runs.includes(p)) continue;
    const params = state.details.get(p)?.params ?? {};
    const name = groupName(Object.hasOwn(params, state.groupBy) ? params[state.groupBy] : undefined);
    const members = groups.get(name) ?? [];
    if (!members.length) groups.set(name, members);
    members.push(p);
  }
  const series = [];
  let points = 0;
  let downsampled = false;
  let index = 0;
  for (const [name, members] of groups) {
    const loaded = members.map((p) => view.data.get(p)).filter((d) => d !== undefined);
    for (const d of loaded) {
      points += d.total;
      downsampled ||= d.downsampled;
    }
    const line = groupLine(loaded);
    series.push({
      id: `group:${name}`,
      label: `${state.groupBy}=${name} (${members.length})`,
      color: paletteColor(index++),
      ...line,
    });
  }
  return { series, points, downsampled };
}
