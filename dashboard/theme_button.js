// @ts-check
// The theme button: cycles auto → light → dark, remembers the choice, and
// follows the system while on auto. (theme.js applied the theme before the
// first paint; this keeps it up to date.)

import { redrawCharts } from "./charts_panel.js";
import { $ } from "./dom.js";
import { readStored, store } from "./local_settings.js";

const THEMES = ["auto", "light", "dark"];

const systemDark = matchMedia("(prefers-color-scheme: dark)");

/**
 * Sets html[data-theme] to the theme, or for "auto" to the system's.
 * @param {string} theme
 */
function applyTheme(theme) {
  const resolved = theme === "auto" ? (systemDark.matches ? "dark" : "light") : theme;
  document.documentElement.dataset.theme = resolved;
  const button = $("#theme");
  button.dataset.mode = theme;
  button.title = `Theme: ${theme} (click to change)`;
  redrawCharts();
}

/** @returns {string} */
function currentMode() {
  return $("#theme").dataset.mode ?? "auto";
}

export function setupTheme() {
  let theme = readStored("mldash.theme", "auto");
  if (!THEMES.includes(theme)) theme = "auto";
  applyTheme(theme);
  $("#theme").addEventListener("click", () => {
    const next = THEMES[(THEMES.indexOf(currentMode()) + 1) % THEMES.length];
    store("mldash.theme", next);
    applyTheme(next);
  });
  systemDark.addEventListener("change", () => applyTheme(currentMode()));
}
