// @ts-check
// The sidebar: the experiment list read from the server, the text, status and
// tag filters, and the tree of folders and runs whose rows select runs.

import { errorMessage, fetchJson } from "./api.js";
import { fill, h, $, targetValue } from "./dom.js";
import * as fmt from "./format.js";
import { runTimes, statusDot, statusOf } from "./runs.js";
import { renderSelectionBar, setSelection, toggleSelected } from "./selection.js";
import { filtering, matchesSearch, matchesTextAndTag, search, setQuery } from "./search.js";
import { colorOf, state, toggleCollapsed, writeHash } from "./state.js";

/** @typedef {import("./api.js").ExperimentSummary} ExperimentSummary */
/** @typedef {import("./api.js").ExperimentPage} ExperimentPage */

/**
 * A folder of the tree, or a run (`exp`), which may hold runs under it too.
 * @typedef {object} TreeNode
 * @property {string} name   the label: a segment, or several for a compacted chain
 * @property {string} path   the prefix up to this node
 * @property {Map<string, TreeNode>} children
 * @property {ExperimentSummary | null} exp
 */

const STATUS_FILTERS = ["RUNNING", "COMPLETED", "FAILED", "CANCELLED", "STALE"];

/** @type {() => void} */
let afterFilter = () => {};
/** @type {(folder: string) => void} */
let openRunsTable = () => {};
/** Rows a folder shows at first; "Show more" adds as many again. */
const FOLDER_PAGE = 200;
/** @type {Map<string, number>} folders whose rows were asked for beyond the first page */
const shownPerFolder = new Map();

/**
 * The row that shows more of a folder's rows.
 * @param {string} path
 * @param {number} hidden how many are not shown
 * @param {number} depth
 * @returns {HTMLElement}
 */
function moreRow(path, hidden, depth) {
  const show = () => {
    shownPerFolder.set(path, (shownPerFolder.get(path) ?? FOLDER_PAGE) + FOLDER_PAGE * 5);
    renderTree();
  };
  return h("div", {
    class: "tree-row more",
    role: "treeitem",
    "aria-level": depth + 1,
    tabindex: "-1",
    style: { paddingLeft: `${6 + depth * 14}px` },
    dataset: { testid: "tree-more", key: `more:${path}`, more: path },
    onclick: show,
  }, h("button", { type: "button", class: "link", tabindex: "-1", onclick: (/** @type {MouseEvent} */ ev) => {
    ev.stopPropagation();
    show();
  } }, `Show ${Math.min(hidden, FOLDER_PAGE * 5).toLocaleString()} more of ${hidden.toLocaleString()} (or use the runs table)`));
}

/** The row that keyboard focus is on (its data-key), kept across redraws. */
let focusedKey = "";

/** Reads every experiment (a page at a time) and redraws the sidebar. */
export async function loadExperiments() {
  /** @type {ExperimentSummary[]} */
  const experiments = [];
  let total = Infinity;
  while (experiments.length < total) {
    /** @type {ExperimentPage} */
    const page = await fetchJson("experiments", { offset: experiments.length, limit: 1000 });
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

/**
 * Shows in place of the tree that the list could not be read.
 * @param {unknown} error
 */
export function showListError(error) {
  fill($("#experiment-list"), h("div", { class: "empty small error-text" }, `Could not load experiments: ${errorMessage(error)}`));
}

/**
 * The search box (words and an expression, kept in the URL), the tag menu, and
 * the keys "/" (to the box) and Escape (clears it).
 * @param {() => void} onFilter called after the filters changed
 * @param {(folder: string) => void} onOpenTable opens the runs table of a folder ("" for all)
 */
export function setupFilters(onFilter, onOpenTable) {
  afterFilter = onFilter;
  openRunsTable = onOpenTable;
  $("#open-runs-table").addEventListener("click", () => onOpenTable(""));
  const box = /** @type {HTMLInputElement} */ ($("#search"));
  box.value = state.query;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  box.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => applyQuery(box.value), 200);
  });
  $("#tag-filter").addEventListener("change", (ev) => {
    search.tag = targetValue(ev);
    renderSidebar();
  });
  document.addEventListener("keydown", (ev) => {
    const typing = ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement;
    if (ev.key === "/" && !typing) {
      ev.preventDefault();
      box.focus();
    } else if (ev.key === "Escape" && ev.target === box) {
      box.value = "";
      applyQuery("");
    }
  });
}

/**
 * Filters by a query (from the box or the URL), and shows the server's message for a bad expression.
 * @param {string} query
 */
export async function applyQuery(query) {
  const box = /** @type {HTMLInputElement} */ ($("#search"));
  if (box.value !== query) box.value = query;
  const pending = setQuery(query);
  writeHash();
  renderSidebar();
  await pending;
  renderSidebar();
}

/** The error under the search box, the filters and the tree; then whoever else shows the filtered runs. */
export function renderSidebar() {
  const error = $("#search-error");
  error.textContent = search.error;
  error.hidden = !search.error;
  $("#search").setAttribute("aria-invalid", String(Boolean(search.error)));
  renderFilters();
  renderTree();
  afterFilter();
}

// ─── Keyboard ───────────────────────────────────────────────────────────────

/** The tree's keys: arrows move and fold, Enter opens a run (or folds a folder), Space adds a run to the comparison. */
export function setupTreeKeys() {
  const list = $("#experiment-list");
  list.addEventListener("focusin", (ev) => {
    const row = /** @type {HTMLElement} */ (ev.target).closest?.('[role="treeitem"]');
    if (row instanceof HTMLElement) focusedKey = row.dataset.key ?? "";
  });
  list.addEventListener("keydown", (ev) => {
    const rows = /** @type {HTMLElement[]} */ (Array.from(list.querySelectorAll('[role="treeitem"]')));
    const row = /** @type {HTMLElement | null} */ (/** @type {HTMLElement} */ (ev.target).closest('[role="treeitem"]'));
    if (!row || ev.target !== row) return;
    const at = rows.indexOf(row);
    const level = Number(row.getAttribute("aria-level"));
    const expanded = row.getAttribute("aria-expanded");
    const path = row.dataset.path ?? row.dataset.prefix ?? "";
    /** @param {HTMLElement | undefined} next */
    const move = (next) => {
      if (!next) return;
      row.tabIndex = -1;
      next.tabIndex = 0;
      next.focus();
    };
    if (ev.key === "ArrowDown") move(rows[at + 1]);
    else if (ev.key === "ArrowUp") move(rows[at - 1]);
    else if (ev.key === "Home") move(rows[0]);
    else if (ev.key === "End") move(rows[rows.length - 1]);
    else if (ev.key === "ArrowRight" && expanded === "false") toggleFolder(path);
    else if (ev.key === "ArrowRight" && expanded === "true") move(rows[at + 1]);
    else if (ev.key === "ArrowLeft" && expanded === "true") toggleFolder(path);
    else if (ev.key === "ArrowLeft") move(rows.slice(0, at).reverse().find((r) => Number(r.getAttribute("aria-level")) < level));
    else if (ev.key === "Enter" && row.dataset.more !== undefined) row.click();
    else if (ev.key === "Enter" && row.dataset.prefix) setSelection([row.dataset.prefix]);
    else if (ev.key === "Enter") toggleFolder(path);
    else if (ev.key === " " && row.dataset.prefix) toggleSelected(row.dataset.prefix);
    else return;
    ev.preventDefault();
  });
}

// ─── Filters ────────────────────────────────────────────────────────────────

/** The status chips (with counts among the text and tag matches) and the tag menu. */
function renderFilters() {
  const base = state.experiments.filter(matchesTextAndTag);
  /** @type {Map<string, number>} */
  const counts = new Map();
  for (const e of base) counts.set(statusOf(e), (counts.get(statusOf(e)) ?? 0) + 1);
  fill($("#status-filter"),
    h("button", {
      type: "button",
      class: `chip${search.status ? "" : " on"}`,
      dataset: { status: "" },
      onclick: () => setStatusFilter(""),
    }, "All", h("span", { class: "count" }, base.length)),
    ...STATUS_FILTERS.map((s) =>
      h("button", {
        type: "button",
        class: `chip${search.status === s ? " on" : ""}`,
        dataset: { status: s },
        disabled: !counts.get(s) && search.status !== s,
        onclick: () => setStatusFilter(search.status === s ? "" : s),
      }, statusDot(s), s[0] + s.slice(1).toLowerCase(), h("span", { class: "count" }, counts.get(s) ?? 0))
    ),
  );
  const tags = [...new Set(state.experiments.flatMap((e) => e.tags))].sort();
  const select = /** @type {HTMLSelectElement} */ ($("#tag-filter"));
  fill(select,
    h("option", { value: "" }, tags.length ? "All tags" : "No tags"),
    ...tags.map((t) => h("option", { value: t, selected: t === search.tag }, `#${t}`)),
  );
  select.disabled = tags.length === 0;
}

/** @param {string} status */
function setStatusFilter(status) {
  search.status = status;
  renderSidebar();
}

/** @param {string} tag */
function toggleTagFilter(tag) {
  search.tag = search.tag === tag ? "" : tag;
  renderSidebar();
}

// ─── Tree ───────────────────────────────────────────────────────────────────

/**
 * Folders from the prefixes' segments, runs at their ends.
 * @param {ExperimentSummary[]} experiments
 * @returns {TreeNode}
 */
function buildTree(experiments) {
  /** @type {TreeNode} */
  const root = { name: "", path: "", children: new Map(), exp: null };
  for (const e of experiments) {
    let node = root;
    for (const seg of e.prefix.split("/")) {
      const path = node.path ? `${node.path}/${seg}` : seg;
      if (!node.children.has(seg)) node.children.set(seg, { name: seg, path, children: new Map(), exp: null });
      node = /** @type {TreeNode} */ (node.children.get(seg));
    }
    node.exp = e;
  }
  compactChains(root);
  return root;
}

/**
 * Compacts chains of single folders: "alice/mnist" is one row when alice holds only mnist.
 * @param {TreeNode} node
 */
function compactChains(node) {
  for (const [key, child] of node.children) {
    let c = child;
    while (!c.exp && c.children.size === 1) {
      const only = [...c.children.values()][0];
      c = { ...only, name: `${c.name}/${only.name}` };
    }
    node.children.set(key, c);
    compactChains(c);
  }
}

/**
 * The prefixes of the runs at and under a node.
 * @param {TreeNode} node
 * @returns {string[]}
 */
function runsUnder(node) {
  const runs = node.exp ? [node.exp.prefix] : [];
  for (const child of node.children.values()) runs.push(...runsUnder(child));
  return runs;
}

/** The rows of the experiments that pass the filters (all folders open while filtering). */
export function renderTree() {
  const list = $("#experiment-list");
  const visible = state.experiments.filter(matchesSearch);
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
  const filtered = filtering();
  /** @type {HTMLElement[]} */
  const rows = [];
  /**
   * @param {TreeNode} node
   * @param {number} depth
   */
  const walk = (node, depth) => {
    const sorted = [...node.children.values()].sort(compareNodes);
    // A folder of thousands of runs shows a page of them (and the selected ones): the rest on demand.
    const limit = shownPerFolder.get(node.path) ?? FOLDER_PAGE;
    const children = sorted.length > limit
      ? sorted.filter((c, i) => i < limit || (c.exp && state.selected.includes(c.exp.prefix)))
      : sorted;
    for (const child of children) {
      const open = filtered || !state.collapsed.has(child.path);
      if (child.exp) rows.push(runRow(child, child.exp, depth, open));
      else rows.push(folderRow(child, depth, open));
      if (open && child.children.size) walk(child, depth + 1);
    }
    if (children.length < sorted.length) rows.push(moreRow(node.path, sorted.length - children.length, depth));
  };
  walk(buildTree(visible), 0);
  const hadFocus = list.contains(document.activeElement);
  fill(list, ...rows);
  const current = rows.find((r) => r.dataset.key === focusedKey) ?? rows.find((r) => r.dataset.selected === "true") ?? rows[0];
  current.tabIndex = 0;
  if (hadFocus) current.focus();
}

/**
 * Folders first, then runs; runs newest first within a folder.
 * @param {TreeNode} a
 * @param {TreeNode} b
 * @returns {number}
 */
function compareNodes(a, b) {
  if (!a.exp !== !b.exp) return a.exp ? 1 : -1;
  if (a.exp && b.exp) {
    const ta = a.exp.startedAt ?? a.exp.createdAt ?? 0;
    const tb = b.exp.startedAt ?? b.exp.createdAt ?? 0;
    if (ta !== tb) return tb - ta;
  }
  return a.name.localeCompare(b.name, undefined, { numeric: true });
}

/**
 * @param {TreeNode} node
 * @param {boolean} open
 * @returns {HTMLElement}
 */
function caret(node, open) {
  if (!node.children.size) return h("span", { class: "caret none" });
  return h("button", {
    type: "button",
    class: `caret${open ? " open" : ""}`,
    "aria-label": `${open ? "Collapse" : "Expand"} ${node.path}`,
    tabindex: "-1",
    onclick: (/** @type {MouseEvent} */ ev) => {
      ev.stopPropagation();
      toggleFolder(node.path);
    },
  });
}

/** @param {string} path */
function toggleFolder(path) {
  toggleCollapsed(path);
  renderTree();
}

/**
 * A folder: its caret, a box that selects all its runs, and counts.
 * @param {TreeNode} node
 * @param {number} depth
 * @param {boolean} open
 * @returns {HTMLElement}
 */
function folderRow(node, depth, open) {
  const runs = runsUnder(node);
  const selectedCount = runs.filter((p) => state.selected.includes(p)).length;
  const running = runs.filter((p) => statusOf(state.byPrefix.get(p)) === "RUNNING").length;
  return h("div", {
    class: "tree-row folder",
    style: { paddingLeft: `${6 + depth * 14}px` },
    role: "treeitem",
    "aria-level": depth + 1,
    "aria-expanded": String(open),
    tabindex: "-1",
    dataset: { testid: "folder-row", path: node.path, key: `folder:${node.path}` },
    onclick: () => toggleFolder(node.path),
    title: node.path,
  },
    caret(node, open),
    h("input", {
      type: "checkbox",
      class: "select-box",
      title: "Select all runs in this folder",
      "aria-label": `Select every run in ${node.path}`,
      tabindex: "-1",
      checked: selectedCount > 0 && selectedCount === runs.length,
      indeterminate: selectedCount > 0 && selectedCount < runs.length,
      onclick: (/** @type {MouseEvent} */ ev) => {
        ev.stopPropagation();
        const all = selectedCount === runs.length;
        setSelection(all ? state.selected.filter((p) => !runs.includes(p)) : [...state.selected, ...runs.filter((p) => !state.selected.includes(p))]);
      },
    }),
    h("span", { class: "folder-icon" }),
    h("span", { class: "tree-name" }, node.name),
    h("button", {
      type: "button",
      class: "icon-button folder-table",
      title: `The runs of ${node.path} as a table`,
      "aria-label": `Runs table of ${node.path}`,
      dataset: { testid: "folder-table" },
      onclick: (/** @type {MouseEvent} */ ev) => {
        ev.stopPropagation();
        openRunsTable(node.path);
      },
    }, "Table"),
    running ? h("span", { class: "running-count", title: `${running} running` }, statusDot("RUNNING"), running) : null,
    h("span", { class: "count" }, runs.length),
  );
}

/**
 * A run: a click opens it alone, the box (or Ctrl/⌘/Shift-click) adds it to the comparison.
 * @param {TreeNode} node
 * @param {ExperimentSummary} e the node's run
 * @param {number} depth
 * @param {boolean} open
 * @returns {HTMLElement}
 */
function runRow(node, e, depth, open) {
  const status = statusOf(e);
  const selected = state.selected.includes(e.prefix);
  const { start, seconds } = runTimes(e);
  const box = h("input", {
    type: "checkbox",
    class: "select-box",
    checked: selected,
    title: "Add to the comparison",
    "aria-label": `Add ${e.prefix} to the comparison`,
    tabindex: "-1",
    onclick: (/** @type {MouseEvent} */ ev) => {
      ev.stopPropagation();
      toggleSelected(e.prefix);
    },
  });
  if (selected) box.style.setProperty("--run-color", colorOf(e.prefix));
  return h("div", {
    class: `tree-row run${selected ? " selected" : ""}`,
    style: { paddingLeft: `${6 + depth * 14}px` },
    role: "treeitem",
    "aria-level": depth + 1,
    "aria-selected": String(selected),
    ...(node.children.size ? { "aria-expanded": String(open) } : {}),
    tabindex: "-1",
    dataset: { testid: "experiment-row", prefix: e.prefix, status: e.status, stale: String(Boolean(e.stale)), selected: String(selected), key: `run:${e.prefix}` },
    title: e.readme ? `${e.prefix}\n\n${e.readme}` : e.prefix,
    onclick: (/** @type {MouseEvent} */ ev) => {
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
        ...e.tags.map((t) => h("span", { class: "tag", onclick: (/** @type {MouseEvent} */ ev) => {
          ev.stopPropagation();
          toggleTagFilter(t);
        } }, t)),
      ),
    ),
  );
}
