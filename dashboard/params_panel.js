// @ts-check
// The Parameters tab: every parameter of the selected runs, a column per run,
// with those that differ marked; a filter and an "only differences" switch.

import { fill, h, $, searchBox, targetChecked } from "./dom.js";
import { runHeaderCells } from "./runs.js";
import { state } from "./state.js";

/** @typedef {import("./api.js").ExperimentDetail} ExperimentDetail */

let paramFilter = "";
let onlyDifferences = false;

/**
 * A parameter's value as shown: strings as they are, the rest as JSON.
 * @param {unknown} value
 * @returns {string}
 */
function paramText(value) {
  if (value === undefined) return "—";
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}

export function renderParams() {
  const panel = $("#panel-params");
  const details = state.selected.map((p) => state.details.get(p) ?? { prefix: p, params: {} });
  const keys = [...new Set(details.flatMap((d) => Object.keys(d.params ?? {})))].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  const differs = new Set(keys.filter((k) => {
    const values = details.map((d) => JSON.stringify(d.params?.[k]));
    return details.length > 1 && values.some((v) => v !== values[0]);
  }));
  const filter = paramFilter.toLowerCase();
  const shown = keys.filter((k) =>
    (!onlyDifferences || differs.has(k)) &&
    (!filter || k.toLowerCase().includes(filter) || details.some((d) => paramText(d.params?.[k]).toLowerCase().includes(filter)))
  );
  const toolbar = paramsToolbar(details.length, keys.length, differs.size);
  if (!keys.length) {
    fill(panel, toolbar, h("div", { class: "empty small" }, "No parameters recorded."));
    return;
  }
  fill(panel, toolbar, h("div", { class: "table-wrap" }, paramsTable(details, shown, differs)));
}

/**
 * The filter, the "only differences" switch (for more than one run) and the counts.
 * @param {number} runCount
 * @param {number} keyCount
 * @param {number} differCount
 * @returns {HTMLElement}
 */
function paramsToolbar(runCount, keyCount, differCount) {
  return h("div", { class: "panel-toolbar" },
    searchBox("Filter parameters", paramFilter, (text) => {
      paramFilter = text;
      renderParams();
      // The panel was redrawn: typing goes on in the new box.
      const input = /** @type {HTMLInputElement} */ ($("#panel-params input[type=search]"));
      input.focus();
      input.setSelectionRange(input.value.length, input.value.length);
    }),
    runCount > 1
      ? h("label", { class: "check" },
        h("input", {
          type: "checkbox",
          checked: onlyDifferences,
          dataset: { testid: "only-diff" },
          onchange: (/** @type {Event} */ ev) => {
            onlyDifferences = targetChecked(ev);
            renderParams();
          },
        }),
        "Only differences",
      )
      : null,
    h("span", { class: "muted" },
      `${keyCount} parameter${keyCount === 1 ? "" : "s"}`,
      runCount > 1 ? ` · ${differCount} differ${differCount === 1 ? "s" : ""}` : ""),
  );
}

/**
 * A row per shown parameter, a cell per run.
 * @param {ExperimentDetail[]} details
 * @param {string[]} shown
 * @param {Set<string>} differs
 * @returns {HTMLElement}
 */
function paramsTable(details, shown, differs) {
  return h("table", { class: "grid-table params-table", dataset: { testid: "params-table" } },
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
}
