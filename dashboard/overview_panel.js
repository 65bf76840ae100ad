// @ts-check
// The Overview tab: the selected runs side by side, their status, times, host,
// tags and description, then each metric's last value and range.

import { fill, h, $ } from "./dom.js";
import * as fmt from "./format.js";
import { runHeaderCells, runTimes, statusBadge, statusOf } from "./runs.js";
import { editForm } from "./edit_form.js";
import { state } from "./state.js";
import { renderTree } from "./tree.js";

/** @typedef {import("./api.js").ExperimentDetail} ExperimentDetail */
/** @typedef {import("./api.js").ExperimentSummary} ExperimentSummary */

/**
 * A row of the runs table: its label and the cell of a run.
 * @typedef {[string, (d: ExperimentDetail, e: ExperimentSummary | undefined) => Node | string]} OverviewRow
 */

/** The runs whose description and tags are being edited. */
const editing = new Set();

/** @type {OverviewRow[]} */
const ROWS = [
  ["Prefix", (d) => h("code", { class: "prefix" }, d.prefix)],
  ["Status", (d, e) => statusBadge(statusOf(e ?? { status: d.status?.status ?? "UNKNOWN", stale: d.status?.stale }))],
  ["Started", (d, e) => fmt.dateTime(d.status?.startedAt ?? e?.startedAt)],
  ["Ended", (d, e) => fmt.dateTime(d.status?.endedAt ?? e?.endedAt)],
  ["Duration", (_d, e) => e ? fmt.duration(runTimes(e).seconds) : "—"],
  ["Last heartbeat", (d) => d.status?.heartbeatAt ? `${fmt.dateTime(d.status.heartbeatAt)} (${fmt.ago(d.status.heartbeatAt)})` : "—"],
  ["Host", (d) => [d.status?.host, d.status?.pid ? `pid ${d.status.pid}` : null].filter(Boolean).join(" · ") || "—"],
  ["Tags", (d) => (d.metadata?.tags ?? []).length ? h("span", { dataset: { testid: "tags" } }, ...(d.metadata?.tags ?? []).map((t) => h("span", { class: "tag" }, t))) : "—"],
  ["Description", (d) => editing.has(d.prefix)
    ? editForm(d.prefix, () => {
      editing.delete(d.prefix);
      renderOverview();
      renderTree();
    })
    : h("div", { class: "description" },
      h("span", { dataset: { testid: "readme" } }, d.metadata?.readme || "—"),
      d.error ? null : h("button", {
        type: "button",
        class: "link",
        "aria-label": `Edit the description and tags of ${d.prefix}`,
        dataset: { testid: "edit-run" },
        onclick: () => {
          editing.add(d.prefix);
          renderOverview();
        },
      }, "Edit"),
    )],
  ["Metadata", (d) => metadataList(d.metadata?.metadata)],
  ["Error", (d) => d.status?.error ? h("pre", { class: "error-text" }, d.status.error) : "—"],
];

/**
 * An experiment's own metadata (experiment.json's `metadata`) as key: value lines.
 * @param {Record<string, unknown> | undefined} metadata
 * @returns {Node | string}
 */
function metadataList(metadata) {
  const entries = metadata && typeof metadata === "object" ? Object.entries(metadata) : [];
  if (!entries.length) return "—";
  return h("dl", { class: "metadata-list", dataset: { testid: "metadata" } },
    ...entries.flatMap(([k, v]) => [h("dt", { class: "mono" }, k), h("dd", { class: "mono" }, typeof v === "string" ? v : JSON.stringify(v))]),
  );
}

export function renderOverview() {
  const details = state.selected.map((p) => state.details.get(p) ?? { prefix: p });
  fill($("#panel-overview"),
    h("div", { class: "section-label" }, "Runs"),
    h("div", { class: "table-wrap" }, runsTable(details)),
    h("div", { class: "section-label" }, "Metrics"),
    h("div", { class: "table-wrap" }, summaryTable(details)),
  );
}

/**
 * Status and the rest, a column per run (the Error row only when a run has one).
 * @param {ExperimentDetail[]} details
 * @returns {HTMLElement}
 */
function runsTable(details) {
  return h("table", { class: "grid-table", dataset: { testid: "overview-table" } },
    h("thead", {}, h("tr", {}, h("th", {}, ""), ...runHeaderCells())),
    h("tbody", {}, ...ROWS
      .filter(([label]) => label !== "Error" || details.some((d) => d.status?.error))
      .map(([label, cell]) =>
        h("tr", {}, h("th", { class: "row-head" }, label), ...details.map((d) => h("td", {}, cell(d, state.byPrefix.get(d.prefix)))))
      )),
  );
}

/**
 * Last value, min and max of every metric key, a column per run.
 * @param {ExperimentDetail[]} details
 * @returns {HTMLElement}
 */
function summaryTable(details) {
  const keys = [...new Set(details.flatMap((d) => Object.keys(d.summary ?? {})))].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  if (!keys.length) return h("p", { class: "muted" }, "No metrics yet.");
  return h("table", { class: "grid-table", dataset: { testid: "summary-table" } },
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
  );
}
