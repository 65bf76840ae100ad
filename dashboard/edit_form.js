// @ts-check
// Editing a run's description and tags from the page: a form that sends them
// to the server's write endpoint (POST meta), with the server's write token
// when it has one: asked for after a 401 and kept for the browser session.

import { ApiError, errorMessage, postJson } from "./api.js";
import { h } from "./dom.js";
import { state } from "./state.js";

const TOKEN_KEY = "mldash.writeToken";

/** @returns {string | undefined} the write token given in this browser session */
function writeToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? undefined;
  } catch {
    return undefined;
  }
}

/** @param {string} token */
function keepToken(token) {
  try {
    sessionStorage.setItem(TOKEN_KEY, token);
  } catch {
    // No storage: the token is asked for again next time.
  }
}

/**
 * The body of an edit: the fields whose text differs from what the form opened
 * with, so a description saved alone leaves the tags as they are (a tag with a
 * comma, more tags than an edit may set, tags changed since the form opened).
 * @param {string} prefix
 * @param {{ readme: string, tags: string }} opened the fields' text when the form opened
 * @param {{ readme: string, tags: string }} now the fields' text on saving
 * @returns {{ prefix: string, readme?: string, tags?: string[] }}
 */
function editedFields(prefix, opened, now) {
  /** @type {{ prefix: string, readme?: string, tags?: string[] }} */
  const body = { prefix };
  if (now.readme !== opened.readme) body.readme = now.readme;
  if (now.tags !== opened.tags) body.tags = now.tags.split(",").map((t) => t.trim()).filter(Boolean);
  return body;
}

/**
 * A form that edits a run's description and tags, then calls `onSaved`.
 * @param {string} prefix
 * @param {() => void} onDone after saving or cancelling
 * @returns {HTMLFormElement}
 */
export function editForm(prefix, onDone) {
  const meta = state.details.get(prefix)?.metadata ?? {};
  const readme = h("textarea", { class: "input edit-readme", name: "readme", rows: 3, "aria-label": `Description of ${prefix}`, dataset: { testid: "edit-readme" } });
  const openedReadme = meta.readme ?? "";
  const openedTags = (meta.tags ?? []).join(", ");
  readme.value = openedReadme;
  const tags = h("input", { class: "input", name: "tags", value: openedTags, "aria-label": `Tags of ${prefix}, separated by commas`, dataset: { testid: "edit-tags" } });
  const token = h("input", { class: "input", type: "password", name: "token", autocomplete: "off", "aria-label": "The server's write token", dataset: { testid: "edit-token" } });
  const tokenRow = h("label", { class: "control", hidden: true }, "Write token", token);
  const message = h("div", { class: "error-text", role: "alert", dataset: { testid: "edit-error" } });
  const form = h("form", { class: "edit-form", dataset: { testid: "edit-form", prefix } },
    readme,
    tags,
    tokenRow,
    message,
    h("div", { class: "edit-actions" },
      h("button", { type: "submit", class: "button small", dataset: { testid: "edit-save" } }, "Save"),
      h("button", { type: "button", class: "link", onclick: onDone }, "Cancel"),
    ),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    message.textContent = "";
    if (token.value) keepToken(token.value);
    const body = editedFields(prefix, { readme: openedReadme, tags: openedTags }, { readme: readme.value, tags: tags.value });
    try {
      /** @type {{ readme: string, tags: string[] }} */
      const saved = await postJson("meta", body, writeToken());
      const detail = state.details.get(prefix);
      if (detail) detail.metadata = { ...(detail.metadata ?? {}), readme: saved.readme, tags: saved.tags };
      const listed = state.byPrefix.get(prefix);
      if (listed) Object.assign(listed, { readme: saved.readme, tags: saved.tags });
      onDone();
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        tokenRow.hidden = false;
        token.focus();
      }
      message.textContent = errorMessage(error);
    }
  });
  return form;
}
