// @ts-check
// Settings remembered in localStorage (theme, folded folders), as JSON; without
// storage (private mode) they last only as long as the page.

/**
 * The stored value of `key`, or `fallback` when there is none or it is unreadable.
 * @template T
 * @param {string} key
 * @param {T} fallback
 * @returns {T}
 */
export function readStored(key, fallback) {
  try {
    return JSON.parse(localStorage.getItem(key) ?? "null") ?? fallback;
  } catch {
    return fallback;
  }
}

/**
 * Stores `value` under `key`.
 * @param {string} key
 * @param {unknown} value
 */
export function store(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Private mode: settings are not remembered.
  }
}
