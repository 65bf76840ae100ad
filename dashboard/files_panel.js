// @ts-check
// The Files tab: the files the selected runs saved, with links to open and
// download each, and a preview of the one chosen: images (PNG, JPEG, GIF,
// WebP, SVG) as <img>, which runs no script of an SVG, and text and JSON
// inline, as text.

import { fileUrl } from "./api.js";
import { fill, h, $ } from "./dom.js";
import * as fmt from "./format.js";
import { runLabels } from "./runs.js";
import { colorOf, state } from "./state.js";

const IMAGE = /^image\/(png|jpeg|gif|webp|svg\+xml)$/i;
const IMAGE_NAME = /\.(png|jpe?g|gif|webp|svg)$/i;
const TEXT = /^(text\/[\w.+-]+|application\/(json|x-ndjson|yaml|x-yaml|xml|csv))$/i;
const TEXT_NAME = /\.(txt|json|jsonl|md|log|csv|tsv|ya?ml|toml|ini|cfg|py|ts|js|sh)$/i;
/** Bytes of a text file shown inline at most. */
const TEXT_LIMIT = 200_000;
/** The largest text file read for a preview: a larger one (a long log) would hold up the page while it loads. */
const TEXT_PREVIEW_MAX_BYTES = 5_000_000;

/** @type {{ prefix: string, path: string } | null} the file previewed */
let previewed = null;

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
  const chosen = previewed && rows.find((r) => r.prefix === previewed?.prefix && r.file.path === previewed.path);
  fill(panel, chosen ? preview(chosen.prefix, chosen.file) : null, h("div", { class: "table-wrap" }, h("table", { class: "grid-table files-table", dataset: { testid: "files-table" } },
    h("thead", {}, h("tr", {}, multi ? h("th", {}, "Run") : null, h("th", {}, "Path"), h("th", { class: "num" }, "Size"), h("th", {}, "Type"), h("th", {}, "Saved"), h("th", {}, ""))),
    h("tbody", {}, ...rows.map(({ prefix, file }) =>
      h("tr", { dataset: { testid: "file-row", prefix, path: file.path } },
        multi ? h("td", {}, h("span", { class: "swatch", style: { background: colorOf(prefix) } }), " ", labels.get(prefix)) : null,
        h("td", { class: "mono" },
          previewKind(file)
            ? h("button", {
              type: "button",
              class: "link file-name",
              "aria-expanded": String(previewed?.prefix === prefix && previewed.path === file.path),
              "aria-label": `Preview ${file.path} of ${prefix}`,
              dataset: { testid: "preview" },
              onclick: () => {
                previewed = previewed?.prefix === prefix && previewed.path === file.path ? null : { prefix, path: file.path };
                renderFiles();
              },
            }, file.path)
            : h("a", { href: fileUrl(prefix, file.path), target: "_blank", rel: "noopener" }, file.path)),
        h("td", { class: "num mono" }, fmt.bytes(file.size)),
        h("td", { class: "muted" }, file.mime ?? ""),
        h("td", { title: fmt.dateTime(file._ts) }, fmt.shortTime(file._ts)),
        h("td", {}, h("a", { class: "button small", href: fileUrl(prefix, file.path), download: file.path.split("/").pop(), dataset: { testid: "download" } }, "Download")),
      )
    )),
  )));
}

/**
 * How a file can be shown in the page: as an image, as text, or not at all.
 * @param {SavedFile} file
 * @returns {"image" | "text" | ""}
 */
function previewKind(file) {
  const mime = (file.mime ?? "").split(";")[0].trim();
  if (IMAGE.test(mime) || (!mime && IMAGE_NAME.test(file.path))) return "image";
  if (TEXT.test(mime) || ((!mime || mime === "application/octet-stream") && TEXT_NAME.test(file.path))) return "text";
  return "";
}

/**
 * The preview of a file, with its download link.
 * @param {string} prefix
 * @param {SavedFile} file
 * @returns {HTMLElement}
 */
function preview(prefix, file) {
  const url = fileUrl(prefix, file.path);
  const kind = previewKind(file);
  const tooLarge = kind === "text" && file.size > TEXT_PREVIEW_MAX_BYTES;
  const body = kind === "image"
    ? h("img", { src: url, alt: `${file.path} of ${prefix}`, class: "file-image", dataset: { testid: "preview-image" }, referrerpolicy: "no-referrer" })
    : tooLarge
    ? h("p", { class: "muted", dataset: { testid: "preview-too-large" } },
      `${file.path} is ${fmt.bytes(file.size)}, too large to preview here (at most ${fmt.bytes(TEXT_PREVIEW_MAX_BYTES)}): download it to read it.`)
    : h("pre", { class: "file-text", dataset: { testid: "preview-text" } }, "Loading…");
  if (kind === "text" && !tooLarge) showText(body, url, file);
  return h("section", { class: "file-preview", dataset: { testid: "file-preview", path: file.path, prefix } },
    h("div", { class: "panel-toolbar" },
      h("span", { class: "mono" }, file.path),
      h("span", { class: "muted" }, fmt.bytes(file.size)),
      h("a", { class: "button small", href: url, download: file.path.split("/").pop() }, "Download"),
      h("button", { type: "button", class: "link", onclick: () => {
        previewed = null;
        renderFiles();
      } }, "Close"),
    ),
    body,
  );
}

/**
 * Reads a text file into a <pre> (JSON indented), as text: nothing of it runs.
 * @param {HTMLElement} pre
 * @param {string} url
 * @param {SavedFile} file
 */
async function showText(pre, url, file) {
  try {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    let text = await response.text();
    const cut = text.length > TEXT_LIMIT;
    if (cut) text = text.slice(0, TEXT_LIMIT);
    if (!cut && (/json$/i.test(file.mime ?? "") || /\.json$/i.test(file.path))) {
      try {
        text = JSON.stringify(JSON.parse(text), null, 2);
      } catch {
        // Not valid JSON: shown as it is.
      }
    }
    pre.textContent = cut ? `${text}\n… (the first ${TEXT_LIMIT.toLocaleString()} characters; download it for the rest)` : text;
  } catch (error) {
    pre.textContent = `Could not load ${file.path}: ${error instanceof Error ? error.message : String(error)}`;
    pre.classList.add("error-text");
  }
}
