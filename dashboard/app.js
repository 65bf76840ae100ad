// The ml-dash dashboard: a sidebar tree of experiments and a main panel with
// charts, parameters, logs and files of the selected runs. Plain DOM, no
// framework; live updates arrive as server-sent events.

import { LineChart } from "./chart.js";
import * as fmt from "./format.js";

const API = new URL("../api/v1/", import.meta.url);
// A server with a read token: open the page as /?access_token=T (sent with every read).
const ACCESS_TOKEN = new URLSearchParams(location.search).get("access_token");

function apiUrl(path, params = {}) {
  const url = new URL(path, API);
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, String(v));
  }
  if (ACCESS_TOKEN) url.searchParams.set("access_token", ACCESS_TOKEN);
  return url;
}
const PALETTE = [
  "#3b82f6", "#f97316", "#10b981", "#e11d48", "#8b5cf6",
  "#eab308", "#06b6d4", "#db2777", "#65a30d", "#64748b",
];
const STATUS_FILTERS = ["RUNNING", "COMPLETED", "FAILED", "CANCELLED", "STALE"];
const LEVELS = ["debug", "info", "warn", "error", "fatal"];
// Fields offered first as x axis when a metric has them.
const X_FIELDS = new Set([
  "epoch", "epochs", "iteration", "iter", "it", "global_step", "batch", "samples",
  "examples", "tokens", "images", "frames", "timesteps", "env_steps", "episode", "time", "wall_time",
]);
const FETCH_CONCURRENCY = 4; // the event stream holds one of the browser's 6 connections
const LOG_LIMIT = 1000;

const state = {
  experiments: [],
  byPrefix: new Map(),
  selected: [],
  colorIndex: new Map(),
  details: new Map(),
  x: "step",
  tab: "charts",
  smoothing: 0,
  chartFilter: "",
  filter: { text: "", status: "", tag: "" },
  collapsed: new Set(readStored("mldash.collapsed", [])),
  logLevel: "",
  logRun: "",
  logText: "",
  paramFilter: "",
  paramsOnlyDiff: false,
  charts: new Map(),
  listLoaded: false,
  live: false,
};

// ─── DOM helpers ────────────────────────────────────────────────────────────

const PROPS = new Set(["checked", "value", "hidden", "disabled", "selected", "indeterminate", "title"]);

function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "style") Object.assign(node.style, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (PROPS.has(key)) node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const $ = (selector, root = document) => root.querySelector(selector);

/** Replaces a node's children, skipping null, undefined and false. */
function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

function readStored(key, fallback) {
  try {
    return JSON.parse(localStorage.getItem(key)) ?? fallback;
  } catch {
    return fallback;
  }
}

function store(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Private mode: settings are not remembered.
  }
}

// ─── Server access ──────────────────────────────────────────────────────────

let active = 0;
const waiting = [];

/** GET a JSON endpoint, at most FETCH_CONCURRENCY at once. */
async function api(path, params = {}) {
  if (active >= FETCH_CONCURRENCY) await new Promise((resolve) => waiting.push(resolve));
  active++;
  try {
    const response = await fetch(apiUrl(path, params));
    if (!response.ok) {
      const body = await response.text().catch(() => "");
      throw new Error(`${response.status} ${response.statusText}: ${body.slice(0, 200)}`);
    }
    return await response.json();
  } finally {
    active--;
    waiting.shift()?.();
  }
}

function fileUrl(prefix, path) {
  return apiUrl("file", { prefix, path }).href;
}

function toNumbers(values) {
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    out[i] = typeof v === "number" ? v : v === null ? NaN : Number(v);
  }
  return out;
}

// ─── Runs: status, colour, names ────────────────────────────────────────────

function statusOf(e) {
  if (!e) return "UNKNOWN";
  return e.stale ? "STALE" : e.status;
}

function runTimes(e) {
  const start = e.startedAt ?? e.createdAt;
  let end = e.endedAt;
  if (!end) end = e.status === "RUNNING" && !e.stale ? Date.now() / 1000 : e.heartbeatAt;
  return { start, end, seconds: start && end ? end - start : null };
}

function colorOf(prefix) {
  return PALETTE[(state.colorIndex.get(prefix) ?? 0) % PALETTE.length];
}

function assignColor(prefix) {
  if (state.colorIndex.has(prefix)) return;
  const used = new Set(state.selected.filter((p) => p !== prefix).map((p) => state.colorIndex.get(p)));
  let i = 0;
  while (used.has(i)) i++;
  state.colorIndex.set(prefix, i);
}

/** The shortest distinct label for each selected run: its last segments. */
function runLabels() {
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

function statusBadge(status) {
  return h("span", { class: `badge status-${status.toLowerCase()}`, dataset: { testid: "status-badge" } }, status);
}

function statusDot(status) {
  return h("span", { class: `dot status-${status.toLowerCase()}`, title: status });
}

// ─── Sidebar: filters and the experiment tree ───────────────────────────────

async function loadExperiments() {
  const experiments = [];
  let total = Infinity;
  while (experiments.length < total) {
    const page = await api("experiments", { offset: experiments.length, limit: 1000 });
    experiments.push(...page.experiments);
    total = page.total ?? experiments.length;
    if (page.experiments.length === 0) break;
  }
  state.experiments = experiments;
  state.byPrefix = new Map(experiments.map((e) => [e.prefix, e]));
  state.listLoaded = true;
  renderFilters();
  renderTree();
  renderSelectionBar();
}

function matchesText(e) {
  const terms = state.filter.text.toLowerCase().split(/\s+/).filter(Boolean);
  if (!terms.length) return true;
  const haystack = `${e.prefix} ${e.tags.join(" ")} ${e.readme ?? ""}`.toLowerCase();
  return terms.every((t) => haystack.includes(t));
}

function matchesTag(e) {
  return !state.filter.tag || e.tags.includes(state.filter.tag);
}

function matchesStatus(e) {
  return !state.filter.status || statusOf(e) === state.filter.status;
}

function renderFilters() {
  const base = state.experiments.filter((e) => matchesText(e) && matchesTag(e));
  const counts = new Map();
  for (const e of base) counts.set(statusOf(e), (counts.get(statusOf(e)) ?? 0) + 1);
  const chips = $("#status-filter");
  fill(chips,
    h("button", {
      type: "button",
      class: `chip${state.filter.status ? "" : " on"}`,
      dataset: { status: "" },
      onclick: () => setStatusFilter(""),
    }, "All", h("span", { class: "count" }, base.length)),
    ...STATUS_FILTERS.map((s) =>
      h("button", {
        type: "button",
        class: `chip${state.filter.status === s ? " on" : ""}`,
        dataset: { status: s },
        disabled: !counts.get(s) && state.filter.status !== s,
        onclick: () => setStatusFilter(state.filter.status === s ? "" : s),
      }, statusDot(s), s[0] + s.slice(1).toLowerCase(), h("span", { class: "count" }, counts.get(s) ?? 0))
    ),
  );
  const tags = [...new Set(state.experiments.flatMap((e) => e.tags))].sort();
  const select = $("#tag-filter");
  fill(select,
    h("option", { value: "" }, tags.length ? "All tags" : "No tags"),
    ...tags.map((t) => h("option", { value: t, selected: t === state.filter.tag }, `#${t}`)),
  );
  select.disabled = tags.length === 0;
}

function setStatusFilter(status) {
  state.filter.status = status;
  renderFilters();
  renderTree();
}

function buildTree(experiments) {
  const root = { name: "", path: "", children: new Map(), exp: null };
  for (const e of experiments) {
    let node = root;
    for (const seg of e.prefix.split("/")) {
      const path = node.path ? `${node.path}/${seg}` : seg;
      if (!node.children.has(seg)) node.children.set(seg, { name: seg, path, children: new Map(), exp: null });
      node = node.children.get(seg);
    }
    node.exp = e;
  }
  // Compact chains of single folders: "alice/mnist" is one row when alice holds only mnist.
  const compact = (node) => {
    for (const [key, child] of node.children) {
      let c = child;
      while (!c.exp && c.children.size === 1) {
        const only = [...c.children.values()][0];
        c = { ...only, name: `${c.name}/${only.name}` };
      }
      node.children.set(key, c);
      compact(c);
    }
  };
  compact(root);
  return root;
}

function runsUnder(node) {
  const runs = node.exp ? [node.exp.prefix] : [];
  for (const child of node.children.values()) runs.push(...runsUnder(child));
  return runs;
}

function renderTree() {
  const list = $("#experiment-list");
  const visible = state.experiments.filter((e) => matchesText(e) && matchesTag(e) && matchesStatus(e));
  $("#list-count").textContent = visible.length === state.experiments.length
    ? `${state.experiments.length} experiment${state.experiments.length === 1 ? "" : "s"}`
    : `${visible.length} of ${state.experiments.length} experiments`;
  if (!state.experiments.length) {
    fill(list, h("div", { class: "empty small" },
      h("p", {}, "No experiments yet."),
      h("p", { class: "muted" }, "Log one with ", h("code", {}, "new Experiment({ prefix })"), " and it appears here."),
    ));
    return;
  }
  if (!visible.length) {
    fill(list, h("div", { class: "empty small" }, "No experiment matches the filters."));
    return;
  }
  const filtering = Boolean(state.filter.text || state.filter.status || state.filter.tag);
  const rows = [];
  const walk = (node, depth) => {
    const children = [...node.children.values()].sort(compareNodes);
    for (const child of children) {
      const open = filtering || !state.collapsed.has(child.path);
      if (child.exp) rows.push(runRow(child, depth, open));
      else rows.push(folderRow(child, depth, open));
      if (open && child.children.size) walk(child, depth + 1);
    }
  };
  walk(buildTree(visible), 0);
  fill(list, ...rows);
}

// Folders first, then runs; runs newest first within a folder.
function compareNodes(a, b) {
  if (!a.exp !== !b.exp) return a.exp ? 1 : -1;
  if (a.exp && b.exp) {
    const ta = a.exp.startedAt ?? a.exp.createdAt ?? 0;
    const tb = b.exp.startedAt ?? b.exp.createdAt ?? 0;
    if (ta !== tb) return tb - ta;
  }
  return a.name.localeCompare(b.name, undefined, { numeric: true });
}

function caret(node, open) {
  if (!node.children.size) return h("span", { class: "caret none" });
  return h("button", {
    type: "button",
    class: `caret${open ? " open" : ""}`,
    "aria-label": open ? "Collapse" : "Expand",
    onclick: (ev) => {
      ev.stopPropagation();
      toggleCollapsed(node.path);
    },
  });
}

function toggleCollapsed(path) {
  if (state.collapsed.has(path)) state.collapsed.delete(path);
  else state.collapsed.add(path);
  store("mldash.collapsed", [...state.collapsed]);
  renderTree();
}

function folderRow(node, depth, open) {
  const runs = runsUnder(node);
  const selectedCount = runs.filter((p) => state.selected.includes(p)).length;
  const running = runs.filter((p) => statusOf(state.byPrefix.get(p)) === "RUNNING").length;
  return h("div", {
    class: "tree-row folder",
    style: { paddingLeft: `${6 + depth * 14}px` },
    dataset: { testid: "folder-row", path: node.path },
    onclick: () => toggleCollapsed(node.path),
    title: node.path,
  },
    caret(node, open),
    h("input", {
      type: "checkbox",
      class: "select-box",
      title: "Select all runs in this folder",
      checked: selectedCount > 0 && selectedCount === runs.length,
      indeterminate: selectedCount > 0 && selectedCount < runs.length,
      onclick: (ev) => {
        ev.stopPropagation();
        const all = selectedCount === runs.length;
        setSelection(all ? state.selected.filter((p) => !runs.includes(p)) : [...state.selected, ...runs.filter((p) => !state.selected.includes(p))]);
      },
    }),
    h("span", { class: "folder-icon" }),
    h("span", { class: "tree-name" }, node.name),
    running ? h("span", { class: "running-count", title: `${running} running` }, statusDot("RUNNING"), running) : null,
    h("span", { class: "count" }, runs.length),
  );
}

function runRow(node, depth, open) {
  const e = node.exp;
  const status = statusOf(e);
  const selected = state.selected.includes(e.prefix);
  const { start, seconds } = runTimes(e);
  const box = h("input", {
    type: "checkbox",
    class: "select-box",
    checked: selected,
    title: "Add to the comparison",
    onclick: (ev) => {
      ev.stopPropagation();
      toggleSelected(e.prefix);
    },
  });
  if (selected) box.style.setProperty("--run-color", colorOf(e.prefix));
  return h("div", {
    class: `tree-row run${selected ? " selected" : ""}`,
    style: { paddingLeft: `${6 + depth * 14}px` },
    dataset: { testid: "experiment-row", prefix: e.prefix, status: e.status, stale: String(Boolean(e.stale)), selected: String(selected) },
    title: e.readme ? `${e.prefix}\n\n${e.readme}` : e.prefix,
    onclick: (ev) => {
      if (ev.ctrlKey || ev.metaKey || ev.shiftKey) toggleSelected(e.prefix);
      else setSelection([e.prefix]);
    },
  },
    caret(node, open),
    box,
    h("div", { class: "run-main" },
      h("div", { class: "run-line" },
        statusDot(status),
        h("span", { class: "tree-name" }, node.name),
        status === "STALE" ? h("span", { class: "badge status-stale mini" }, "stale") : null,
        h("span", { class: "run-duration", dataset: status === "RUNNING" ? { since: start } : {} }, fmt.duration(seconds)),
      ),
      h("div", { class: "run-sub" },
        h("span", { class: "run-time", title: fmt.dateTime(start) }, fmt.shortTime(start)),
        ...e.tags.map((t) => h("span", { class: "tag", onclick: (ev) => {
          ev.stopPropagation();
          state.filter.tag = state.filter.tag === t ? "" : t;
          renderFilters();
          renderTree();
        } }, t)),
      ),
    ),
  );
}

// ─── Selection ──────────────────────────────────────────────────────────────

function toggleSelected(prefix) {
  setSelection(state.selected.includes(prefix) ? state.selected.filter((p) => p !== prefix) : [...state.selected, prefix]);
}

function setSelection(prefixes) {
  const next = [...new Set(prefixes)];
  for (const p of [...state.colorIndex.keys()]) if (!next.includes(p)) state.colorIndex.delete(p);
  state.selected = [];
  for (const p of next) {
    assignColor(p);
    state.selected.push(p);
  }
  writeHash();
  renderTree();
  renderSelectionBar();
  loadSelection();
}

async function loadSelection() {
  const missing = state.selected.filter((p) => !state.details.has(p));
  renderMain();
  await Promise.all(missing.map((p) => loadDetail(p)));
  if (missing.length) renderMain();
}

async function loadDetail(prefix) {
  try {
    const detail = await api("experiment", { prefix });
    state.details.set(prefix, detail);
    return detail;
  } catch (error) {
    state.details.set(prefix, { prefix, error: String(error.message ?? error), summary: {}, params: {}, files: [] });
    return null;
  }
}

function renderSelectionBar() {
  const bar = $("#selection-bar");
  const labels = runLabels();
  if (!state.selected.length) {
    fill(bar, h("span", { class: "muted" }, "No run selected"));
    return;
  }
  fill(bar,
    ...state.selected.map((p) => {
      const e = state.byPrefix.get(p);
      return h("span", { class: "run-chip", title: p, dataset: { prefix: p } },
        h("span", { class: "swatch", style: { background: colorOf(p) } }),
        h("span", { class: "run-chip-name" }, labels.get(p)),
        e ? statusDot(statusOf(e)) : null,
        h("button", { type: "button", class: "chip-close", title: "Remove from the comparison", onclick: () => toggleSelected(p) }, "×"),
      );
    }),
    state.selected.length > 1
      ? h("button", { type: "button", class: "link", onclick: () => setSelection([]) }, "Clear")
      : null,
  );
}

// ─── URL hash: selection, x axis, tab ───────────────────────────────────────

function writeHash() {
  const params = new URLSearchParams();
  for (const p of state.selected) params.append("run", p);
  if (state.x !== "step") params.set("x", state.x);
  if (state.tab !== "charts") params.set("tab", state.tab);
  if (state.smoothing) params.set("smooth", String(state.smoothing));
  const hash = params.toString();
  if (location.hash.slice(1) !== hash) history.replaceState(null, "", hash ? `#${hash}` : location.pathname + location.search);
}

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const runs = params.getAll("run");
  state.x = params.get("x") || "step";
  state.tab = params.get("tab") || "charts";
  state.smoothing = Math.min(0.99, Math.max(0, Number(params.get("smooth")) || 0));
  state.colorIndex.clear();
  state.selected = [];
  for (const p of runs) {
    assignColor(p);
    state.selected.push(p);
  }
}

// ─── Main panel ─────────────────────────────────────────────────────────────

const TABS = [
  ["charts", "Charts"],
  ["overview", "Overview"],
  ["params", "Parameters"],
  ["logs", "Logs"],
  ["files", "Files"],
];

function renderTabs() {
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
      onclick: () => {
        state.tab = id;
        writeHash();
        renderMain();
      },
    }, label, counts[id] ? h("span", { class: "count" }, counts[id]) : null)
  ));
  $("#chart-controls").hidden = state.tab !== "charts";
}

function renderMain() {
  const empty = $("#empty-state");
  const content = $("#content");
  const hasSelection = state.selected.length > 0;
  empty.hidden = hasSelection;
  $("#main-head").hidden = !hasSelection;
  content.hidden = !hasSelection;
  if (!hasSelection) {
    renderEmpty();
    disposeCharts(new Set());
    return;
  }
  renderTabs();
  renderXOptions();
  for (const [id] of TABS) $(`#panel-${id}`).hidden = id !== state.tab;
  if (state.tab === "charts") renderCharts();
  else if (state.tab === "overview") renderOverview();
  else if (state.tab === "params") renderParams();
  else if (state.tab === "logs") renderLogs();
  else if (state.tab === "files") renderFiles();
}

function renderEmpty() {
  const recent = [...state.experiments]
    .sort((a, b) => (b.startedAt ?? b.createdAt ?? 0) - (a.startedAt ?? a.createdAt ?? 0))
    .slice(0, 8);
  fill($("#empty-state"),
    h("div", { class: "empty-card" },
      h("h2", {}, "Select runs to compare"),
      h("p", { class: "muted" }, "Click a run in the sidebar to open it; tick more boxes (or Ctrl/⌘-click) to overlay runs on the same charts."),
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
          state.experiments.filter((e) => statusOf(e) === "RUNNING").length > 1
            ? h("button", {
              type: "button",
              class: "button",
              onclick: () => setSelection(state.experiments.filter((e) => statusOf(e) === "RUNNING").map((e) => e.prefix)),
            }, "Compare all running")
            : null,
        )
        : state.listLoaded
        ? h("p", { class: "muted" }, "No experiments in this folder yet.")
        : h("p", { class: "muted" }, "Loading…"),
    ),
  );
}

// ─── Charts ─────────────────────────────────────────────────────────────────

function fieldOf(key) {
  const slash = key.indexOf("/");
  return slash < 0 ? key : key.slice(slash + 1);
}

function groupOf(key) {
  const slash = key.indexOf("/");
  return slash < 0 ? "" : key.slice(0, slash);
}

/** Metric keys of the selected runs → the runs that have each key. */
function chartKeys() {
  const keys = new Map();
  const xField = isFieldX() ? state.x : null;
  for (const p of state.selected) {
    for (const key of Object.keys(state.details.get(p)?.summary ?? {})) {
      if (xField && fieldOf(key) === xField) continue;
      if (!keys.has(key)) keys.set(key, []);
      keys.get(key).push(p);
    }
  }
  return keys;
}

function isFieldX() {
  return !["step", "_ts", "relative"].includes(state.x);
}

function xKind() {
  if (state.x === "step") return "step";
  if (state.x === "_ts") return "time";
  if (state.x === "relative") return "relative";
  return "field";
}

function xLabel() {
  return { step: "step", _ts: "time", relative: "elapsed" }[state.x] ?? state.x;
}

function renderXOptions() {
  const fields = new Set();
  for (const p of state.selected) {
    for (const key of Object.keys(state.details.get(p)?.summary ?? {})) fields.add(fieldOf(key));
  }
  const likely = [...fields].filter((f) => X_FIELDS.has(f)).sort();
  const others = [...fields].filter((f) => !X_FIELDS.has(f)).sort();
  if (isFieldX() && !fields.has(state.x)) likely.unshift(state.x);
  const select = $("#x-axis");
  const option = (value, label) => h("option", { value, selected: state.x === value }, label);
  fill(select,
    option("step", "Step"),
    option("relative", "Relative time"),
    option("_ts", "Wall time"),
    likely.length ? h("optgroup", { label: "Fields" }, ...likely.map((f) => option(f, f))) : null,
    others.length ? h("optgroup", { label: "Other fields" }, ...others.map((f) => option(f, f))) : null,
  );
  $("#smoothing").value = String(state.smoothing);
  $("#smoothing-value").textContent = state.smoothing ? state.smoothing.toFixed(2) : "off";
}

function renderCharts() {
  const panel = $("#panel-charts");
  const keys = chartKeys();
  const filter = state.chartFilter.toLowerCase();
  const shown = [...keys.keys()].filter((k) => !filter || k.toLowerCase().includes(filter));
  const groups = new Map();
  // Within a group: metrics by name, then fields that look like an x axis (epoch, tokens...).
  const rank = (key) => (X_FIELDS.has(fieldOf(key)) ? 1 : 0);
  shown.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b, undefined, { numeric: true }));
  for (const key of shown) {
    const group = groupOf(key);
    if (!groups.has(group)) groups.set(group, []);
    groups.get(group).push(key);
  }
  const order = [...groups.keys()].sort((a, b) => (a === "" ? -1 : b === "" ? 1 : a.localeCompare(b)));
  disposeCharts(new Set(shown));
  const loading = state.selected.some((p) => !state.details.has(p));
  if (!shown.length) {
    fill(panel, h("div", { class: "empty small" },
      loading ? "Loading…" : keys.size ? "No chart matches the filter." : "The selected runs have no metrics yet."));
    return;
  }
  const sections = order.map((group) => {
    const collapsed = state.collapsed.has(`chart-group:${group}`);
    return h("section", { class: `chart-group${collapsed ? " collapsed" : ""}`, dataset: { testid: "chart-group", group } },
      h("button", {
        type: "button",
        class: "group-head",
        onclick: () => {
          const id = `chart-group:${group}`;
          if (state.collapsed.has(id)) state.collapsed.delete(id);
          else state.collapsed.add(id);
          store("mldash.collapsed", [...state.collapsed]);
          renderCharts();
        },
      },
        h("span", { class: `caret${collapsed ? "" : " open"}` }),
        h("span", { class: "group-name" }, group || "Charts"),
        h("span", { class: "count" }, groups.get(group).length),
      ),
      collapsed ? null : h("div", { class: "chart-grid" }, ...groups.get(group).map((key) => chartView(key, keys.get(key)).card)),
    );
  });
  fill(panel, ...sections);
  for (const key of shown) {
    const view = state.charts.get(key);
    if (!view || !view.card.isConnected) continue;
    syncChart(view, keys.get(key));
  }
}

function disposeCharts(keep) {
  for (const [key, view] of state.charts) {
    if (keep.has(key)) continue;
    view.chart.destroy();
    state.charts.delete(key);
  }
}

function chartView(key, runs) {
  let view = state.charts.get(key);
  if (view) return view;
  const group = groupOf(key);
  const resetButton = h("button", { type: "button", class: "icon-button", title: "Reset zoom (or double-click the chart)", hidden: true }, "Reset zoom");
  const logButton = h("button", { type: "button", class: "icon-button toggle", title: "Logarithmic y axis" }, "log");
  const info = h("span", { class: "chart-info" });
  const body = h("div", { class: "chart-body" });
  const card = h("div", { class: "chart-card", dataset: { testid: "chart", key, group, seriesCount: "0", pointCount: "0" } },
    h("div", { class: "chart-head" },
      h("span", { class: "chart-title", title: key }, group ? h("span", { class: "muted" }, `${group}/`) : null, fieldOf(key)),
      info,
      resetButton,
      logButton,
    ),
    body,
  );
  const chart = new LineChart(body, {
    xKind: xKind(),
    xLabel: xLabel(),
    onZoom: (range) => {
      view.zoom = range;
      resetButton.hidden = !range;
      view.generation++;
      for (const p of view.runs) loadSeries(view, p);
    },
  });
  chart.setSmoothing(state.smoothing);
  resetButton.addEventListener("click", () => chart.resetZoom());
  logButton.addEventListener("click", () => {
    chart.setLogY(!chart.logY);
    logButton.classList.toggle("on", chart.logY);
  });
  view = { key, card, chart, info, resetButton, runs, data: new Map(), zoom: null, generation: 0, x: state.x };
  state.charts.set(key, view);
  return view;
}

/** Brings a chart in line with the selection and x axis, fetching what it lacks. */
function syncChart(view, runs) {
  view.runs = runs;
  if (view.x !== state.x) {
    view.x = state.x;
    view.zoom = null;
    view.resetButton.hidden = true;
    view.data.clear();
    view.generation++;
    view.chart.setXKind(xKind(), xLabel());
  }
  for (const p of [...view.data.keys()]) if (!runs.includes(p)) view.data.delete(p);
  updateChartSeries(view);
  for (const p of runs) if (!view.data.has(p)) loadSeries(view, p);
}

function xOffset(prefix) {
  if (state.x !== "relative") return 0;
  const d = state.details.get(prefix);
  const e = state.byPrefix.get(prefix);
  return d?.metadata?.createdAt ?? e?.createdAt ?? d?.status?.startedAt ?? e?.startedAt ?? 0;
}

async function loadSeries(view, prefix) {
  const generation = view.generation;
  const offset = xOffset(prefix);
  const params = {
    prefix,
    key: view.key,
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
    const r = await api("series", params);
    if (generation !== view.generation || !view.runs.includes(prefix)) return;
    const x = toNumbers(r.x);
    if (offset) for (let i = 0; i < x.length; i++) x[i] -= offset;
    view.data.set(prefix, { x, y: toNumbers(r.value), total: r.total ?? r.x.length, downsampled: Boolean(r.downsampled) });
    updateChartSeries(view);
  } catch (error) {
    view.chart.message = `Could not load: ${error.message ?? error}`;
    view.chart.requestDraw();
  } finally {
    view.pending--;
    if (!view.pending) delete view.card.dataset.loading;
  }
}

function updateChartSeries(view) {
  const labels = runLabels();
  const series = [];
  let points = 0;
  let downsampled = false;
  for (const p of state.selected) {
    const d = view.data.get(p);
    if (!d || !view.runs.includes(p)) continue;
    series.push({ id: p, label: labels.get(p), color: colorOf(p), x: d.x, y: d.y });
    points += d.total;
    downsampled ||= d.downsampled;
  }
  const waiting = view.runs.some((p) => !view.data.has(p));
  view.chart.message = waiting ? "Loading…" : isFieldX() ? `No "${state.x}" field in this metric` : "No data";
  view.chart.setSeries(series);
  view.card.dataset.seriesCount = String(series.filter((s) => s.x.length > 0).length);
  view.card.dataset.pointCount = String(points);
  view.info.textContent = points ? `${points.toLocaleString()} pt${points === 1 ? "" : "s"}${downsampled ? " · downsampled" : ""}` : "";
  view.info.title = downsampled ? "The server sent a min/max per pixel column; zoom in for every point" : "";
}

// ─── Overview: status and summaries side by side ───────────────────────────

function runHeaderCells() {
  const labels = runLabels();
  return state.selected.map((p) =>
    h("th", { class: "run-col", title: p, dataset: { prefix: p } },
      h("span", { class: "swatch", style: { background: colorOf(p) } }),
      h("span", {}, labels.get(p)),
    )
  );
}

function renderOverview() {
  const panel = $("#panel-overview");
  const rows = [
    ["Prefix", (d, e) => h("code", { class: "prefix" }, d.prefix)],
    ["Status", (d, e) => statusBadge(statusOf(e ?? { status: d.status?.status ?? "UNKNOWN", stale: d.status?.stale }))],
    ["Started", (d, e) => fmt.dateTime(d.status?.startedAt ?? e?.startedAt)],
    ["Ended", (d, e) => fmt.dateTime(d.status?.endedAt ?? e?.endedAt)],
    ["Duration", (d, e) => e ? fmt.duration(runTimes(e).seconds) : "—"],
    ["Last heartbeat", (d, e) => d.status?.heartbeatAt ? `${fmt.dateTime(d.status.heartbeatAt)} (${fmt.ago(d.status.heartbeatAt)})` : "—"],
    ["Host", (d) => [d.status?.host, d.status?.pid ? `pid ${d.status.pid}` : null].filter(Boolean).join(" · ") || "—"],
    ["Tags", (d) => (d.metadata?.tags ?? []).length ? h("span", {}, ...(d.metadata.tags).map((t) => h("span", { class: "tag" }, t))) : "—"],
    ["Description", (d) => d.metadata?.readme || "—"],
    ["Error", (d) => d.status?.error ? h("pre", { class: "error-text" }, d.status.error) : "—"],
  ];
  const details = state.selected.map((p) => state.details.get(p) ?? { prefix: p });
  const info = h("table", { class: "grid-table", dataset: { testid: "overview-table" } },
    h("thead", {}, h("tr", {}, h("th", {}, ""), ...runHeaderCells())),
    h("tbody", {}, ...rows
      .filter(([label], i) => label !== "Error" || details.some((d) => d.status?.error))
      .map(([label, cell]) =>
        h("tr", {}, h("th", { class: "row-head" }, label), ...details.map((d) => h("td", {}, cell(d, state.byPrefix.get(d.prefix)))))
      )),
  );
  const keys = [...new Set(details.flatMap((d) => Object.keys(d.summary ?? {})))].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  const summary = keys.length
    ? h("table", { class: "grid-table", dataset: { testid: "summary-table" } },
      h("thead", {}, h("tr", {}, h("th", {}, "Metric (last · min … max)"), ...runHeaderCells())),
      h("tbody", {}, ...keys.map((key) =>
        h("tr", {}, h("th", { class: "row-head mono" }, key), ...details.map((d) => {
          const s = d.summary?.[key];
          if (!s) return h("td", { class: "missing" }, "—");
          return h("td", { class: "mono", title: `${s.count} values, last at step ${s.lastStep}` },
            fmt.exact(s.last),
            h("span", { class: "muted range" }, ` ${fmt.exact(s.min)} … ${fmt.exact(s.max)}`),
          );
        }))
      )),
    )
    : h("p", { class: "muted" }, "No metrics yet.");
  fill(panel,
    h("div", { class: "section-label" }, "Runs"),
    h("div", { class: "table-wrap" }, info),
    h("div", { class: "section-label" }, "Metrics"),
    h("div", { class: "table-wrap" }, summary),
  );
}

// ─── Parameters side by side ────────────────────────────────────────────────

function paramText(value) {
  if (value === undefined) return "—";
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}

function renderParams() {
  const panel = $("#panel-params");
  const details = state.selected.map((p) => state.details.get(p) ?? { prefix: p, params: {} });
  const keys = [...new Set(details.flatMap((d) => Object.keys(d.params ?? {})))].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  const differs = new Set(keys.filter((k) => {
    const values = details.map((d) => JSON.stringify(d.params?.[k]));
    return details.length > 1 && values.some((v) => v !== values[0]);
  }));
  const filter = state.paramFilter.toLowerCase();
  const shown = keys.filter((k) =>
    (!state.paramsOnlyDiff || differs.has(k)) &&
    (!filter || k.toLowerCase().includes(filter) || details.some((d) => paramText(d.params?.[k]).toLowerCase().includes(filter)))
  );
  const toolbar = h("div", { class: "panel-toolbar" },
    h("input", {
      type: "search",
      class: "input",
      placeholder: "Filter parameters",
      value: state.paramFilter,
      oninput: (ev) => {
        state.paramFilter = ev.target.value;
        renderParams();
        const input = $("#panel-params input[type=search]");
        input.focus();
        input.setSelectionRange(input.value.length, input.value.length);
      },
    }),
    details.length > 1
      ? h("label", { class: "check" },
        h("input", {
          type: "checkbox",
          checked: state.paramsOnlyDiff,
          dataset: { testid: "only-diff" },
          onchange: (ev) => {
            state.paramsOnlyDiff = ev.target.checked;
            renderParams();
          },
        }),
        "Only differences",
      )
      : null,
    h("span", { class: "muted" },
      `${keys.length} parameter${keys.length === 1 ? "" : "s"}`,
      details.length > 1 ? ` · ${differs.size} differ${differs.size === 1 ? "s" : ""}` : ""),
  );
  if (!keys.length) {
    fill(panel, toolbar, h("div", { class: "empty small" }, "No parameters recorded."));
    return;
  }
  const table = h("table", { class: "grid-table params-table", dataset: { testid: "params-table" } },
    h("thead", {}, h("tr", {}, h("th", {}, "Parameter"), ...runHeaderCells())),
    h("tbody", {}, ...shown.map((key) => {
      const dot = key.lastIndexOf(".");
      const diff = differs.has(key);
      return h("tr", { class: diff ? "differs" : "", dataset: { param: key } },
        h("th", { class: "row-head mono" }, dot > 0 ? h("span", { class: "muted" }, key.slice(0, dot + 1)) : null, key.slice(dot + 1)),
        ...details.map((d) => {
          const value = d.params?.[key];
          const missing = value === undefined;
          return h("td", {
            class: `mono param-value${diff ? " param-diff" : ""}${missing ? " missing" : ""}`,
            dataset: { prefix: d.prefix },
            title: paramText(value),
          }, paramText(value));
        }),
      );
    })),
  );
  fill(panel, toolbar, h("div", { class: "table-wrap" }, table));
}

// ─── Logs ───────────────────────────────────────────────────────────────────

const logCache = new Map();

async function fetchLogs(prefix) {
  const level = state.logLevel || undefined;
  let r = await api("logs", { prefix, level, offset: 0, limit: LOG_LIMIT });
  if (r.total > LOG_LIMIT) r = await api("logs", { prefix, level, offset: r.total - LOG_LIMIT, limit: LOG_LIMIT });
  logCache.set(prefix, { level: state.logLevel, logs: r.logs, total: r.total });
}

async function renderLogs(refresh = []) {
  const panel = $("#panel-logs");
  const runs = state.logRun && state.selected.includes(state.logRun) ? [state.logRun] : state.selected;
  const labels = runLabels();
  const toolbar = h("div", { class: "panel-toolbar" },
    h("select", {
      class: "input",
      title: "Minimum level",
      dataset: { testid: "log-level" },
      onchange: (ev) => {
        state.logLevel = ev.target.value;
        renderLogs();
      },
    },
      h("option", { value: "" }, "All levels"),
      ...LEVELS.map((l) => h("option", { value: l, selected: state.logLevel === l }, l === "fatal" ? "fatal" : `${l} and above`)),
    ),
    state.selected.length > 1
      ? h("select", {
        class: "input",
        onchange: (ev) => {
          state.logRun = ev.target.value;
          renderLogs();
        },
      },
        h("option", { value: "" }, "All selected runs"),
        ...state.selected.map((p) => h("option", { value: p, selected: state.logRun === p }, labels.get(p))),
      )
      : null,
    h("input", {
      type: "search",
      class: "input",
      placeholder: "Search messages",
      value: state.logText,
      oninput: (ev) => {
        state.logText = ev.target.value;
        drawLogLines();
      },
    }),
    h("span", { class: "muted", id: "log-count" }),
  );
  const body = h("div", { class: "log-view", dataset: { testid: "log-view" } });
  if (!panel.firstChild || panel.dataset.level !== state.logLevel) {
    fill(panel, toolbar, body);
  } else {
    fill(panel, toolbar, panel.querySelector(".log-view") ?? body);
  }
  panel.dataset.level = state.logLevel;
  const stale = runs.filter((p) => refresh.includes(p) || logCache.get(p)?.level !== state.logLevel);
  if (stale.length) {
    await Promise.all(stale.map((p) => fetchLogs(p).catch(() => logCache.set(p, { level: state.logLevel, logs: [], total: 0 }))));
  }
  if (state.tab === "logs") drawLogLines();
}

function drawLogLines() {
  const view = $("#panel-logs .log-view");
  if (!view) return;
  const runs = state.logRun && state.selected.includes(state.logRun) ? [state.logRun] : state.selected;
  const labels = runLabels();
  const atBottom = view.scrollHeight - view.scrollTop - view.clientHeight < 30;
  const text = state.logText.toLowerCase();
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
  const multi = runs.length > 1;
  // Lines that span days carry their date; within a day the time is enough.
  const span = lines.length ? lines[lines.length - 1].line._ts - lines[0].line._ts : 0;
  const stamp = (ts) => (span > 20 * 3600 ? fmt.dateTime(ts).slice(5) : fmt.dateTime(ts).slice(11));
  fill(view, ...(matching.length ? matching.map(({ prefix, line }) => {
    const { _ts, level, message, ...meta } = line;
    const metaText = Object.entries(meta).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ");
    return h("div", { class: `log-line level-${level}`, dataset: { testid: "log-line", level, prefix } },
      h("span", { class: "log-time", title: fmt.dateTime(_ts) }, stamp(_ts)),
      h("span", { class: `log-level level-${level}` }, level),
      multi ? h("span", { class: "log-run", style: { color: colorOf(prefix) } }, labels.get(prefix)) : null,
      h("span", { class: "log-message" }, String(message)),
      metaText ? h("span", { class: "log-meta" }, metaText) : null,
    );
  }) : [h("div", { class: "empty small" }, lines.length ? "No line matches the search." : "No log lines.")]));
  const count = $("#log-count");
  if (count) {
    count.textContent = `${matching.length.toLocaleString()} line${matching.length === 1 ? "" : "s"}${total > lines.length ? ` (last ${lines.length.toLocaleString()} of ${total.toLocaleString()})` : ""}`;
  }
  if (atBottom) view.scrollTop = view.scrollHeight;
}

// ─── Files ──────────────────────────────────────────────────────────────────

function renderFiles() {
  const panel = $("#panel-files");
  const labels = runLabels();
  const rows = [];
  for (const p of state.selected) {
    for (const f of state.details.get(p)?.files ?? []) rows.push({ prefix: p, file: f });
  }
  if (!rows.length) {
    fill(panel, h("div", { class: "empty small" }, "No files saved. Save some with ", h("code", {}, "exp.files.saveText(path, text)"), "."));
    return;
  }
  const multi = state.selected.length > 1;
  fill(panel, h("div", { class: "table-wrap" }, h("table", { class: "grid-table files-table", dataset: { testid: "files-table" } },
    h("thead", {}, h("tr", {}, multi ? h("th", {}, "Run") : null, h("th", {}, "Path"), h("th", { class: "num" }, "Size"), h("th", {}, "Type"), h("th", {}, "Saved"), h("th", {}, ""))),
    h("tbody", {}, ...rows.map(({ prefix, file }) =>
      h("tr", { dataset: { testid: "file-row", prefix, path: file.path } },
        multi ? h("td", {}, h("span", { class: "swatch", style: { background: colorOf(prefix) } }), " ", labels.get(prefix)) : null,
        h("td", { class: "mono" }, h("a", { href: fileUrl(prefix, file.path), target: "_blank", rel: "noopener" }, file.path)),
        h("td", { class: "num mono" }, fmt.bytes(file.size)),
        h("td", { class: "muted" }, file.mime ?? ""),
        h("td", { title: fmt.dateTime(file._ts) }, fmt.shortTime(file._ts)),
        h("td", {}, h("a", { class: "button small", href: fileUrl(prefix, file.path), download: file.path.split("/").pop(), dataset: { testid: "download" } }, "Download")),
      )
    )),
  )));
}

// ─── Live updates ───────────────────────────────────────────────────────────

const refreshing = new Map();
let listTimer = 0;

function scheduleListRefresh() {
  if (listTimer) return;
  listTimer = setTimeout(async () => {
    listTimer = 0;
    await loadExperiments().catch(() => {});
    if (!state.selected.length) renderEmpty();
  }, 250);
}

/** Refetches a selected run's detail and series, at most about once a second per run. */
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

async function refreshRun(prefix) {
  if (!state.selected.includes(prefix)) return;
  const before = Object.keys(state.details.get(prefix)?.summary ?? {}).join("\n");
  await loadDetail(prefix);
  const after = Object.keys(state.details.get(prefix)?.summary ?? {}).join("\n");
  renderTabs();
  if (state.tab === "charts") {
    if (before !== after) {
      renderXOptions();
      renderCharts();
    }
    for (const view of state.charts.values()) {
      if (view.runs.includes(prefix) && view.data.has(prefix)) loadSeries(view, prefix);
    }
  } else if (state.tab === "logs") {
    renderLogs([prefix]);
  } else {
    renderMain();
  }
}

function connectEvents() {
  if (!("EventSource" in window)) return;
  const source = new EventSource(apiUrl("events"));
  const indicator = $("#live");
  source.addEventListener("open", () => {
    state.live = true;
    indicator.dataset.state = "live";
    indicator.title = "Live: updates arrive as they are logged";
  });
  source.addEventListener("error", () => {
    state.live = false;
    indicator.dataset.state = "offline";
    indicator.title = "Disconnected from the server: retrying";
  });
  source.addEventListener("experiment", (ev) => {
    const data = parse(ev.data);
    scheduleListRefresh();
    if (data?.prefix && state.selected.includes(data.prefix)) scheduleRunRefresh(data.prefix);
  });
  source.addEventListener("metrics", (ev) => {
    const data = parse(ev.data);
    if (data?.prefix && state.selected.includes(data.prefix)) scheduleRunRefresh(data.prefix);
  });
  source.addEventListener("logs", (ev) => {
    const data = parse(ev.data);
    if (data?.prefix && state.selected.includes(data.prefix) && state.tab === "logs") renderLogs([data.prefix]);
  });
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

// Durations of running runs tick; the list is re-read now and then, because a
// run that crashed sends no event (its heartbeat just stops).
function startClocks() {
  setInterval(() => {
    const now = Date.now() / 1000;
    for (const node of document.querySelectorAll("[data-since]")) {
      const since = Number(node.dataset.since);
      if (since) node.textContent = fmt.duration(now - since);
    }
  }, 1000);
  setInterval(() => {
    if (document.visibilityState === "visible") scheduleListRefresh();
  }, 15000);
}

// ─── Theme ──────────────────────────────────────────────────────────────────

const THEMES = ["auto", "light", "dark"];

const systemDark = matchMedia("(prefers-color-scheme: dark)");

/** Sets html[data-theme] to the theme, or for "auto" to the system's. */
function applyTheme(theme) {
  const resolved = theme === "auto" ? (systemDark.matches ? "dark" : "light") : theme;
  document.documentElement.dataset.theme = resolved;
  const button = $("#theme");
  button.dataset.mode = theme;
  button.title = `Theme: ${theme} (click to change)`;
  for (const view of state.charts.values()) view.chart.requestDraw();
}

function setupTheme() {
  let theme = readStored("mldash.theme", "auto");
  if (!THEMES.includes(theme)) theme = "auto";
  applyTheme(theme);
  $("#theme").addEventListener("click", () => {
    const current = $("#theme").dataset.mode;
    const next = THEMES[(THEMES.indexOf(current) + 1) % THEMES.length];
    store("mldash.theme", next);
    applyTheme(next);
  });
  systemDark.addEventListener("change", () => applyTheme($("#theme").dataset.mode));
}

// ─── Start ──────────────────────────────────────────────────────────────────

function setupControls() {
  const search = $("#search");
  search.addEventListener("input", () => {
    state.filter.text = search.value;
    renderFilters();
    renderTree();
  });
  $("#tag-filter").addEventListener("change", (ev) => {
    state.filter.tag = ev.target.value;
    renderFilters();
    renderTree();
  });
  $("#x-axis").addEventListener("change", (ev) => {
    state.x = ev.target.value;
    writeHash();
    renderCharts();
  });
  const smoothing = $("#smoothing");
  smoothing.addEventListener("input", () => {
    state.smoothing = Number(smoothing.value);
    $("#smoothing-value").textContent = state.smoothing ? state.smoothing.toFixed(2) : "off";
    for (const view of state.charts.values()) view.chart.setSmoothing(state.smoothing);
    writeHash();
  });
  $("#chart-filter").addEventListener("input", (ev) => {
    state.chartFilter = ev.target.value;
    renderCharts();
  });
  document.addEventListener("keydown", (ev) => {
    const typing = ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement;
    if (ev.key === "/" && !typing) {
      ev.preventDefault();
      search.focus();
    } else if (ev.key === "Escape" && ev.target === search) {
      search.value = "";
      search.dispatchEvent(new Event("input"));
    }
  });
  window.addEventListener("hashchange", () => {
    readHash();
    renderTree();
    renderSelectionBar();
    loadSelection();
  });
}

async function main() {
  setupTheme();
  setupControls();
  readHash();
  renderSelectionBar();
  renderMain();
  connectEvents();
  startClocks();
  try {
    await loadExperiments();
  } catch (error) {
    fill($("#experiment-list"), h("div", { class: "empty small error-text" }, `Could not load experiments: ${error.message ?? error}`));
  }
  loadSelection();
}

main();
