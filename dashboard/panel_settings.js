// @ts-check
// How the charts of a folder are arranged, remembered per folder in
// localStorage: the charts pinned to the top, the keys drawn on a chart besides
// its own, and a chart's y range or outlier clipping. The folder is the one
// that holds every selected run.

import { readStored, store } from "./local_settings.js";
import { state } from "./state.js";

/**
 * A chart's y axis: fixed ends, and whether outliers are clipped.
 * @typedef {{ min?: number, max?: number, clip?: boolean }} YRange
 */

/**
 * The arrangement of one folder's charts.
 * @typedef {{ pinned: string[], extra: Record<string, string[]>, y: Record<string, YRange> }} FolderPanels
 */

const KEY = "mldash.panels";

/** @returns {string} the deepest folder that holds every selected run */
export function selectionFolder() {
  const parents = state.selected.map((p) => p.split("/").slice(0, -1));
  if (!parents.length) return "";
  const common = [];
  for (let i = 0; parents.every((p) => i < p.length && p[i] === parents[0][i]); i++) common.push(parents[0][i]);
  return common.join("/");
}

/**
 * The arrangement stored for the selection's folder (null-prototype maps: keys are users' names).
 * @returns {FolderPanels}
 */
export function folderPanels() {
  /** @type {Record<string, FolderPanels>} */
  const all = readStored(KEY, {});
  const mine = Object.hasOwn(all, selectionFolder()) ? all[selectionFolder()] : undefined;
  return {
    pinned: Array.isArray(mine?.pinned) ? mine.pinned.filter((k) => typeof k === "string") : [],
    extra: Object.assign(Object.create(null), mine?.extra ?? {}),
    y: Object.assign(Object.create(null), mine?.y ?? {}),
  };
}

/**
 * Changes the selection's folder's arrangement and stores it.
 * @param {(panels: FolderPanels) => void} change
 */
export function updatePanels(change) {
  const panels = folderPanels();
  change(panels);
  /** @type {Record<string, FolderPanels>} */
  const all = Object.assign(Object.create(null), readStored(KEY, {}));
  all[selectionFolder()] = panels;
  store(KEY, all);
}
