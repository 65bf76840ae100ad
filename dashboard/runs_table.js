// @ts-check
// The Runs tab: the runs of a folder (or all) as a table, one row per run with
// its status, name, start, duration, tags, params and each metric's last / min
// / max (by default the params that differ between the runs shown, and each
// metric's last). Sorted by any column, columns chosen (and remembered), rows
// selected for the charts, exported as CSV. Only the rows in view are in the
// page, so ten thousand runs scroll as freely as ten.

import { errorMessage, fetchJson } from "./api.js";
import { fill, h, $ } from "./dom.js";
import * as fmt from "./format.js";
import { readStored, store } from "./local_settings.js";
import { runTimes, statusBadge } from "./runs.js";
import { matchesSearch } from "./search.js";
import { setSelection, toggleSelected } from "./selection.js";
import { colorOf, state } from "./state.js";

/** @typedef {import("./api.js").RunRow} RunRow */

/**
 * A column of the table.
 * @typedef {object} Column
 * @property {string} id        "status", "params.lr", "metrics.val/acc.last", ...
 * @property {string} label
 * @property {"run" | "params" | "metrics"} kind
 * @property {(row: RunRow) => number | string | undefined} value what it sorts by and exports
 * @property {(row: RunRow) => Node | string} [cell] how it shows, when not as its value
 * @property {boolean} [numeric]
 */

const ROW_HEIGHT = 30;
const OVERSCAN = 12;
const SUMMARIES = /** @type {const} */ (["last", "min", "max"]);

/** What the server answered for the folder shown. */
const table = {
  /** @type {string | null} */
  folder: null,
  /** @type {RunRow[]} */
  rows: [],
  error: "",
  loading: false,
  generation: 0,
};

/** @type {{ column: string, ascending: boolean }} */
let sort = readStored("mldash.runSort", { column: "start", ascending: false });
/** @type {Record<string, boolean>} a column's id → shown or hidden, where the user chose (ids hold users' names: no prototype) */
let choices = Object.assign(Object.create(null), readStored("mldash.runColumns", /** @type {Record<string, boolean>} */ ({})));
/** @type {RunRow[]} the rows after the filters, in sort order */
let sorted = [];
/** @type {Column[]} */
let shown = [];

/**
 * Reads the runs of the folder shown, then draws them.
 * @param {boolean} [again] read again even if the folder's runs are loaded
 */
export async function loadRunsTable(again = false) {
  if (!again && table.folder === state.folder && !table.error) return;
  const mine = ++table.generation;
  table.loading = table.folder !== state.folder;
  if (table.loading) table.rows = [];
  table.folder = state.folder;
  try {
    const rows = await fetchAllRuns(state.folder, () => mine !== table.generation);
    if (mine !== table.generation) return;
    table.rows = rows;
    table.error = "";
  } catch (error) {
    if (mine !== table.generation) return;
    table.error = errorMessage(error);
  } finally {
    if (mine === table.generation) table.loading = false;
  }
  if (state.tab === "runs") renderRunsTable();
}

/**
 * Every run of a folder, page after page (the server answers at most 10,000 a request).
 * @param {string} folder
 * @param {() => boolean} stale whether a newer load has begun (then the pages left are not read)
 * @returns {Promise<RunRow[]>}
 */
async function fetchAllRuns(folder, stale) {
  /** @type {RunRow[]} */
  const rows = [];
  for (;;) {
    /** @type {{ runs: RunRow[], truncated: boolean }} */
    const page = await fetchJson("runs", rows.length ? { prefix: folder, offset: String(rows.length) } : { prefix: folder });
    rows.push(...page.runs);
    if (!page.truncated || page.runs.length === 0 || stale()) return rows;
  }
}

/** The toolbar and the table of the folder's runs that pass the sidebar's filters. */
export function renderRunsTable() {
  const panel = $("#panel-runs");
  if (table.folder !== state.folder) {
    loadRunsTable();
  }
  const rows = table.rows.filter(matchesSearch);
  const columns = allColumns(table.rows);
  shown = columns.filter((c) => isShown(c, rows));
  const sortColumn = columns.find((c) => c.id === sort.column) ?? columns[2];
  sorted = sortRows(rows, sortColumn, sort.ascending);
  const title = state.folder || "All runs";
  fill(panel,
    h("div", { class: "panel-toolbar runs-toolbar" },
      h("h2", { class: "runs-title", title }, title),
      h("span", { class: "muted", dataset: { testid: "runs-count" } },
        table.loading ? "Loading…" : `${rows.length.toLocaleString()} of ${table.rows.length.toLocaleString()} run${table.rows.length === 1 ? "" : "s"}`),
      state.folder ? h("button", { type: "button", class: "link", onclick: () => openRunsTable("") }, "All runs") : null,
      h("span", { class: "spacer" }),
      columnChooser(columns, rows),
      h("button", { type: "button", class: "button small", dataset: { testid: "export-csv" }, onclick: exportCsv }, "Export CSV"),
      h("button", {
        type: "button",
        class: "button small",
        disabled: state.selected.length === 0,
        dataset: { testid: "compare-selected" },
        onclick: () => showTab("charts"),
      }, `Chart ${state.selected.length} selected`),
    ),
    table.error ? h("div", { class: "load-error", role: "alert", dataset: { testid: "runs-error" } },
      h("span", {}, `Could not load the runs: ${table.error}`),
      h("button", { type: "button", class: "button small", onclick: () => loadRunsTable(true) }, "Retry"),
    ) : null,
    runsScroller(sortColumn),
  );
  drawBody();
}

/**
 * Opens the table of a folder's runs ("" for all).
 * @param {string} folder
 */
export function openRunsTable(folder) {
  state.folder = folder;
  showTab("runs");
}

/** @type {(tab: string) => void} */
let showTab = () => {};

/**
 * How the table switches tabs (the main panel knows how).
 * @param {(tab: string) => void} show
 */
export function setTabSwitcher(show) {
  showTab = show;
}

// ─── Columns ────────────────────────────────────────────────────────────────

/**
 * The run columns, then a column per param, then last / min / max per metric key.
 * @param {RunRow[]} rows
 * @returns {Column[]}
 */
function allColumns(rows) {
  /** @type {Column[]} */
  const columns = [
    { id: "status", label: "Status", kind: "run", value: (r) => r.status, cell: (r) => statusBadge(r.status) },
    { id: "name", label: "Name", kind: "run", value: (r) => r.name, cell: nameCell },
    { id: "start", label: "Start", kind: "run", numeric: true, value: (r) => r.startedAt ?? r.createdAt, cell: (r) => fmt.shortTime(r.startedAt ?? r.createdAt) },
    { id: "duration", label: "Duration", kind: "run", numeric: true, value: (r) => runTimes(r).seconds ?? undefined, cell: (r) => fmt.duration(runTimes(r).seconds) },
    { id: "tags", label: "Tags", kind: "run", value: (r) => r.tags.join(" "), cell: (r) => h("span", {}, ...r.tags.map((t) => h("span", { class: "tag" }, t))) },
  ];
  const params = new Set();
  const metrics = new Set();
  for (const r of rows) {
    for (const k of Object.keys(r.params)) params.add(k);
    for (const k of Object.keys(r.metrics)) metrics.add(k);
  }
  const byName = (/** @type {string} */ a, /** @type {string} */ b) => a.localeCompare(b, undefined, { numeric: true });
  for (const key of [...params].sort(byName)) {
    columns.push({ id: `params.${key}`, label: key, kind: "params", value: (r) => paramValue(Object.hasOwn(r.params, key) ? r.params[key] : undefined) });
  }
  for (const key of [...metrics].sort(byName)) {
    /** @param {RunRow} r */
    const summary = (r) => (Object.hasOwn(r.metrics, key) ? r.metrics[key] : undefined);
    for (const which of SUMMARIES) {
      columns.push({
        id: `metrics.${key}.${which}`,
        label: which === "last" ? key : `${key} (${which})`,
        kind: "metrics",
        numeric: true,
        value: (r) => summary(r)?.[which] ?? undefined,
        cell: (r) => h("span", { title: fmt.exact(summary(r)?.[which]) }, fmt.readable(summary(r)?.[which])),
      });
    }
  }
  return columns;
}

/**
 * A param as a cell holds it: numbers stay numbers (to sort as numbers).
 * @param {unknown} value
 * @returns {number | string | undefined}
 */
function paramValue(value) {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "number" || typeof value === "string") return value;
  return JSON.stringify(value);
}

/**
 * Whether a column is shown: the user's choice, else the run columns, the params
 * that differ between the rows, and each metric's last.
 * @param {Column} column
 * @param {RunRow[]} rows
 * @returns {boolean}
 */
function isShown(column, rows) {
  if (column.id in choices) return choices[column.id];
  if (column.kind === "run") return true;
  if (column.kind === "metrics") return column.id.endsWith(".last");
  const values = new Set(rows.map((r) => String(column.value(r))));
  return values.size > 1;
}

/**
 * Shows or hides a column, and remembers it.
 * @param {string} id
 * @param {boolean} on
 */
function chooseColumn(id, on) {
  choices = Object.assign(Object.create(null), choices, { [id]: on });
  store("mldash.runColumns", choices);
  renderRunsTable();
}

/**
 * The menu of columns, each a named checkbox.
 * @param {Column[]} columns
 * @param {RunRow[]} rows
 * @returns {HTMLElement}
 */
function columnChooser(columns, rows) {
  /** @param {"run" | "params" | "metrics"} kind @param {string} label */
  const group = (kind, label) => {
    const members = columns.filter((c) => c.kind === kind);
    if (!members.length) return null;
    return h("fieldset", { class: "column-group" },
      h("legend", {}, label),
      ...members.map((c) =>
        h("label", { class: "check" },
          h("input", {
            type: "checkbox",
            checked: isShown(c, rows),
            dataset: { column: c.id },
            onchange: (/** @type {Event} */ ev) => chooseColumn(c.id, /** @type {HTMLInputElement} */ (ev.target).checked),
          }),
          c.label,
        )
      ),
    );
  };
  const open = document.querySelector("#panel-runs .column-chooser")?.hasAttribute("open");
  return h("details", { class: "column-chooser", dataset: { testid: "column-chooser" }, open: Boolean(open) },
    h("summary", { class: "button small" }, "Columns"),
    h("div", { class: "column-menu" },
      group("run", "Run"),
      group("params", "Parameters"),
      group("metrics", "Metrics"),
      Object.keys(choices).length ? h("button", { type: "button", class: "link", onclick: resetColumns }, "Reset to the default columns") : null,
    ),
  );
}

function resetColumns() {
  choices = Object.create(null);
  store("mldash.runColumns", choices);
  renderRunsTable();
}

// ─── Rows ───────────────────────────────────────────────────────────────────

/**
 * Rows sorted by a column; rows without a value last, whatever the direction.
 * @param {RunRow[]} rows
 * @param {Column} column
 * @param {boolean} ascending
 * @returns {RunRow[]}
 */
function sortRows(rows, column, ascending) {
  const keyed = rows.map((row) => ({ row, key: column.value(row) }));
  keyed.sort((a, b) => {
    if (a.key === undefined || b.key === undefined) return a.key === b.key ? 0 : a.key === undefined ? 1 : -1;
    const c = typeof a.key === "number" && typeof b.key === "number"
      ? a.key - b.key
      : String(a.key).localeCompare(String(b.key), undefined, { numeric: true });
    return ascending ? c : -c;
  });
  return keyed.map((k) => k.row);
}

/**
 * Sorts by a column; again on the same column turns the order round.
 * @param {string} id
 */
function sortBy(id) {
  sort = { column: id, ascending: sort.column === id ? !sort.ascending : true };
  store("mldash.runSort", sort);
  renderRunsTable();
}

/**
 * The scrolling box with the table's head; drawBody fills the rows in view.
 * @param {Column} sortColumn
 * @returns {HTMLElement}
 */
function runsScroller(sortColumn) {
  const visible = sorted.filter((r) => state.selected.includes(r.prefix)).length;
  const all = h("input", {
    type: "checkbox",
    "aria-label": "Select every run of the table",
    checked: sorted.length > 0 && visible === sorted.length,
    indeterminate: visible > 0 && visible < sorted.length,
    onchange: () => {
      const prefixes = sorted.map((r) => r.prefix);
      setSelection(visible === sorted.length ? state.selected.filter((p) => !prefixes.includes(p)) : [...state.selected, ...prefixes]);
    },
  });
  const scroller = h("div", { class: "runs-scroll", dataset: { testid: "runs-scroll" }, onscroll: () => requestDraw() },
    h("table", { class: "grid-table runs-table", dataset: { testid: "runs-table", total: String(sorted.length) } },
      h("thead", {}, h("tr", {},
        h("th", { class: "select-col", scope: "col" }, all),
        ...shown.map((c) => {
          const on = c.id === sortColumn.id;
          return h("th", {
            scope: "col",
            class: c.numeric ? "num" : "",
            "aria-sort": on ? (sort.ascending ? "ascending" : "descending") : "none",
            dataset: { column: c.id },
          }, h("button", { type: "button", class: "sort-button", title: `Sort by ${c.label}`, onclick: () => sortBy(c.id) },
            c.label, on ? (sort.ascending ? " ▲" : " ▼") : ""));
        }),
      )),
      h("tbody", {}),
    ),
  );
  return scroller;
}

let drawQueued = false;
function requestDraw() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(() => {
    drawQueued = false;
    drawBody();
  });
}

/** The rows in view (and a few around them), between two spacers that keep the scroll height. */
function drawBody() {
  const scroller = /** @type {HTMLElement | null} */ (document.querySelector("#panel-runs .runs-scroll"));
  const body = scroller?.querySelector("tbody");
  if (!scroller || !body) return;
  const height = scroller.clientHeight || 600;
  const first = Math.max(0, Math.floor(scroller.scrollTop / ROW_HEIGHT) - OVERSCAN);
  const last = Math.min(sorted.length, Math.ceil((scroller.scrollTop + height) / ROW_HEIGHT) + OVERSCAN);
  const span = shown.length + 1;
  /** @param {number} rows */
  const spacer = (rows) => rows > 0 ? h("tr", { class: "spacer", "aria-hidden": "true" }, h("td", { colspan: span, style: { height: `${rows * ROW_HEIGHT}px` } })) : null;
  if (!sorted.length) {
    fill(body, h("tr", {}, h("td", { colspan: span, class: "empty small" }, table.loading ? "Loading…" : table.rows.length ? "No run matches the filters." : "No runs in this folder.")));
    return;
  }
  fill(body, spacer(first), ...sorted.slice(first, last).map(rowOf), spacer(sorted.length - last));
}

/**
 * @param {RunRow} r
 * @returns {HTMLTableRowElement}
 */
function rowOf(r) {
  const selected = state.selected.includes(r.prefix);
  const box = h("input", {
    type: "checkbox",
    class: "select-box",
    checked: selected,
    "aria-label": `Select ${r.prefix} for the charts`,
    onchange: () => toggleSelected(r.prefix),
  });
  if (selected) box.style.setProperty("--run-color", colorOf(r.prefix));
  return h("tr", { class: selected ? "selected" : "", dataset: { testid: "run-row", prefix: r.prefix } },
    h("td", { class: "select-col" }, box),
    ...shown.map((c) => {
      const content = c.cell ? c.cell(r) : cellText(c.value(r));
      return h("td", { class: c.numeric ? "num mono" : c.kind === "params" ? "mono" : "", dataset: { column: c.id }, title: typeof content === "string" ? content : undefined }, content);
    }),
  );
}

/**
 * @param {RunRow} r
 * @returns {HTMLElement}
 */
function nameCell(r) {
  return h("button", {
    type: "button",
    class: "link run-name",
    title: r.readme ? `${r.prefix}\n\n${r.readme}` : r.prefix,
    onclick: () => {
      setSelection([r.prefix]);
      showTab("charts");
    },
  }, r.name);
}

/**
 * @param {number | string | undefined} value
 * @returns {string}
 */
function cellText(value) {
  return value === undefined ? "—" : typeof value === "number" ? fmt.exact(value) : value;
}

// ─── CSV ────────────────────────────────────────────────────────────────────

/** Downloads the filtered, sorted rows with the shown columns (and each run's prefix) as CSV. */
function exportCsv() {
  const header = ["prefix", ...shown.map((c) => c.label)];
  const lines = [header, ...sorted.map((r) => [r.prefix, ...shown.map((c) => csvValue(c, r))])].map((cells) => cells.map(csvCell).join(","));
  const blob = new Blob([`${lines.join("\r\n")}\r\n`], { type: "text/csv" });
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: `runs-${(state.folder || "all").replaceAll("/", "-")}.csv` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/**
 * A cell's value for CSV: times as ISO dates, numbers exact.
 * @param {Column} column
 * @param {RunRow} row
 * @returns {string}
 */
function csvValue(column, row) {
  const value = column.value(row);
  if (value === undefined) return "";
  if (column.id === "start") return new Date(Number(value) * 1000).toISOString();
  return typeof value === "number" ? String(value) : value;
}

/**
 * A CSV field: quoted when it holds a comma, quote or line break; text that a
 * spreadsheet would run as a formula starts with a quote mark.
 * @param {string} text
 * @returns {string}
 */
function csvCell(text) {
  const safe = /^[=+\-@\t\r]/.test(text) && Number.isNaN(Number(text)) ? `'${text}` : text;
  return /[",\r\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}
