// @ts-check
// On a narrow screen the sidebar is a drawer: the menu button opens it over the
// page, and choosing a run, the backdrop or Escape closes it.

import { $ } from "./dom.js";

/** The menu button, the backdrop and Escape. */
export function setupDrawer() {
  $("#sidebar-toggle").addEventListener("click", () => setDrawer(!document.body.classList.contains("drawer-open")));
  $("#drawer-backdrop").addEventListener("click", () => setDrawer(false));
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && document.body.classList.contains("drawer-open")) setDrawer(false);
  });
}

/**
 * Opens or closes the drawer.
 * @param {boolean} open
 */
export function setDrawer(open) {
  document.body.classList.toggle("drawer-open", open);
  $("#drawer-backdrop").hidden = !open;
  const toggle = $("#sidebar-toggle");
  toggle.setAttribute("aria-expanded", String(open));
  toggle.setAttribute("aria-label", open ? "Hide the runs" : "Show the runs");
  if (open) /** @type {HTMLElement | null} */ (document.querySelector("#sidebar .search"))?.focus();
}
