// @ts-check
// The Files tab: the files the selected runs saved, with links to open and
// download each.

import { fileUrl } from "./api.js";
import { fill, h, $ } from "./dom.js";
import * as fmt from "./format.js";
import { runLabels } from "./runs.js";
import { colorOf, state } from "./state.js";

/** @typedef {import("./api.js").SavedFile} SavedFile */

export function renderFiles() {
  const panel = $("#panel-files");
  /** @type {{ prefix: string, file: SavedFile }[]} */
  const rows = [];
  for (const p of state.selected) {
    for (const f of state.details.get(p)?.files ?? []) rows.push({ prefix: p, file: f });
  }
  if (!rows.length) {
    fill(panel, h("div", { class: "empty small" }, "No files saved. Save some with ", h("code", {}, "exp.files.saveText(path, text)"), "."));
    return;
  }
  const labels = runLabels();
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
