// @ts-check
// Changing which runs are compared, and the bar at the top that lists them.
// Whoever shows the selection (tree, main panel) subscribes with
// onSelectionChange, so changing it needs to know none of them.

import { fill, h, $ } from "./dom.js";
import { runLabels, statusDot, statusOf } from "./runs.js";
import { colorOf, replaceSelection, state, writeHash } from "./state.js";

/** @type {(() => void)[]} */
const listeners = [];

/**
 * Calls `listener` after every change of the selection.
 * @param {() => void} listener
 */
export function onSelectionChange(listener) {
  listeners.push(listener);
}

/**
 * Compares exactly these runs.
 * @param {string[]} prefixes
 */
export function setSelection(prefixes) {
  replaceSelection(prefixes);
  writeHash();
  for (const listener of listeners) listener();
}

/**
 * Adds a run to the comparison, or removes it.
 * @param {string} prefix
 */
export function toggleSelected(prefix) {
  setSelection(state.selected.includes(prefix) ? state.selected.filter((p) => p !== prefix) : [...state.selected, prefix]);
}

/** The selected runs as chips: colour, label, status, and a button to remove each; those that do not fit behind "+N". */
export function renderSelectionBar() {
  const bar = $("#selection-bar");
  if (!state.selected.length) {
    fill(bar, h("span", { class: "muted" }, "No run selected"));
    return;
  }
  const chips = state.selected.map(runChip);
  const more = h("details", { class: "more-runs", dataset: { testid: "more-runs" } },
    h("summary", { class: "more-count", title: "The other selected runs" }),
    h("div", { class: "more-menu" }),
  );
  const clear = state.selected.length > 1
    ? h("button", { type: "button", class: "link clear-selection", dataset: { testid: "clear-selection" }, onclick: () => setSelection([]) }, "Clear")
    : null;
  fill(bar, h("div", { class: "chip-row" }, ...chips), more, clear);
  fitChips(bar, chips, more);
}

/**
 * Moves the chips that overflow the bar, last first, into the "+N" menu.
 * @param {HTMLElement} bar
 * @param {HTMLElement[]} chips
 * @param {HTMLElement} more
 */
function fitChips(bar, chips, more) {
  const row = /** @type {HTMLElement} */ (bar.querySelector(".chip-row"));
  const menu = /** @type {HTMLElement} */ (more.querySelector(".more-menu"));
  const count = /** @type {HTMLElement} */ (more.querySelector("summary"));
  more.hidden = true;
  let kept = chips.length;
  while (kept > 1 && row.scrollWidth > row.clientWidth + 1) {
    kept--;
    menu.prepend(chips[kept]);
    more.hidden = false;
    count.textContent = `+${chips.length - kept}`;
  }
}

/**
 * A selected run's chip.
 * @param {string} p
 * @returns {HTMLElement}
 */
function runChip(p) {
  const labels = runLabels();
  const e = state.byPrefix.get(p);
  return h("span", { class: "run-chip", title: p, dataset: { prefix: p, testid: "run-chip" } },
    h("span", { class: "swatch", style: { background: colorOf(p) } }),
    h("span", { class: "run-chip-name" }, labels.get(p)),
    e ? statusDot(statusOf(e)) : null,
    h("button", { type: "button", class: "chip-close", title: "Remove from the comparison", "aria-label": `Remove ${p} from the comparison`, onclick: () => toggleSelected(p) }, "×"),
  );
}
