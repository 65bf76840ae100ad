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

/** The selected runs as chips: colour, label, status, and a button to remove each. */
export function renderSelectionBar() {
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
