// @ts-check
// What the sidebar's filters let through, shared by the tree and the runs
// table: plain words (in the prefix, tags and description), an expression in
// the MLflow filter language that the server evaluates (GET runs?filter=, the
// one parser), the status chips and the tag menu. The box holds words, then an
// expression from its first `metrics.`, `params.`, `tags.` or `attributes.`.

import { errorMessage, fetchJson } from "./api.js";
import { statusOf } from "./runs.js";
import { state } from "./state.js";

/** @typedef {import("./api.js").ExperimentSummary} ExperimentSummary */

/**
 * The filters, and what the server answered for the expression.
 * @typedef {object} SearchState
 * @property {string} text      its plain words
 * @property {string} expression its expression, "" for none
 * @property {Set<string> | null} matching the prefixes the expression lets through (null: no expression, or not answered yet)
 * @property {string} error     the server's message for a bad expression
 * @property {string} status    a status chip, "" for all
 * @property {string} tag       a tag, "" for all
 */

/** @type {SearchState} */
export const search = { text: "", expression: "", matching: null, error: "", status: "", tag: "" };

// Where the expression starts: an entity of the language followed by a dot.
const EXPRESSION_START = /(^|\s)(metrics?|params?|tags?|attributes?|attrs?|run)\.\S/i;

/**
 * Splits a query into its plain words and its expression.
 * @param {string} query
 * @returns {{ text: string, expression: string }}
 */
export function splitQuery(query) {
  const found = EXPRESSION_START.exec(query);
  if (!found) return { text: query.trim(), expression: "" };
  const at = found.index + found[1].length;
  return { text: query.slice(0, at).trim(), expression: query.slice(at).trim() };
}

let generation = 0;

/**
 * Takes a new query; an expression is sent to the server, which answers the
 * runs it lets through or the parser's message.
 * @param {string} query
 * @returns {Promise<void>} once the server answered (or at once without an expression)
 */
export async function setQuery(query) {
  const { text, expression } = splitQuery(query);
  const expressionChanged = expression !== search.expression;
  state.query = query;
  search.text = text;
  search.expression = expression;
  if (!expressionChanged) return;
  search.error = "";
  search.matching = null;
  await evaluateExpression();
}

/** Asks the server which runs the expression lets through (again: they change as runs log). */
export async function evaluateExpression() {
  const mine = ++generation;
  const expression = search.expression;
  if (!expression) return;
  try {
    /** @type {{ runs: { prefix: string }[] }} */
    const answer = await fetchJson("runs", { filter: expression });
    if (mine !== generation) return;
    search.matching = new Set(answer.runs.map((r) => r.prefix));
    search.error = "";
  } catch (error) {
    if (mine !== generation) return;
    search.error = errorMessage(error);
    search.matching = new Set();
  }
}

/**
 * Whether a run passes the words and the tag menu (the status chips count among these).
 * @param {{ prefix: string, tags: string[], readme?: string }} e
 * @returns {boolean}
 */
export function matchesTextAndTag(e) {
  const terms = search.text.toLowerCase().split(/\s+/).filter(Boolean);
  if (terms.length) {
    const haystack = `${e.prefix} ${e.tags.join(" ")} ${e.readme ?? ""}`.toLowerCase();
    if (!terms.every((t) => haystack.includes(t))) return false;
  }
  if (search.matching && !search.matching.has(e.prefix)) return false;
  return !search.tag || e.tags.includes(search.tag);
}

/**
 * Whether a run passes every filter.
 * @param {ExperimentSummary} e
 * @returns {boolean}
 */
export function matchesSearch(e) {
  return matchesTextAndTag(e) && (!search.status || statusOf(e) === search.status);
}

/** @returns {boolean} whether any filter is set */
export function filtering() {
  return Boolean(search.text || search.expression || search.status || search.tag);
}
