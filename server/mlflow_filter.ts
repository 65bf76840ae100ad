/**
 * The MLflow search language: the `filter` of `runs/search` and
 * `experiments/search` parsed into a list of comparisons joined by `AND`, and
 * an `order_by` list parsed into sort keys, both evaluated against a
 * {@linkcode FilterTarget} (a run's metrics, params, tags and attributes as
 * maps). One parser for the server and the dashboard's search box.
 *
 * Grammar: `clause (AND clause)*`, a clause `identifier comparator value`;
 * an identifier `metrics.loss`, `params.lr`, `tags.x`, `attributes.status`
 * (also `metric.`, `param.`, `tag.`, `attribute.`, `attr.`, `run.`), with
 * keys that hold other characters in backticks or double quotes
 * (``metrics.`train/loss` ``); comparators `= != < <= > >= LIKE ILIKE IN NOT IN`;
 * values numbers, quoted strings or a parenthesized list of strings.
 *
 * @example Filter and sort runs
 * ```ts
 * import { compareTargets, matches, parseFilter, parseOrderBy } from "./mlflow_filter.ts";
 *
 * const run = {
 *   metrics: new Map([["train/loss", 0.2]]),
 *   params: new Map([["model", "resnet50"]]),
 *   tags: new Map<string, string>(),
 *   attributes: new Map<string, string | number | null>([["status", "FINISHED"]]),
 * };
 * const filter = parseFilter("metrics.`train/loss` < 0.5 AND params.model LIKE 'resnet%'");
 * console.log(matches(filter, run)); // true
 * const order = [parseOrderBy("metrics.`train/loss` DESC")];
 * console.log(compareTargets(order, run, run)); // 0
 * ```
 *
 * @module
 */

/** What a comparison looks at: a metric, a param, a tag or an attribute. */
export type FilterEntity = "metric" | "param" | "tag" | "attribute";

/** A comparator of the language. */
export type Comparator = "=" | "!=" | "<" | "<=" | ">" | ">=" | "LIKE" | "ILIKE" | "IN" | "NOT IN";

/** One comparison of a filter, e.g. `metrics.loss < 0.5`. */
export interface FilterClause {
  /** What it looks at. */
  entity: FilterEntity;
  /** The metric, param, tag or attribute name. */
  key: string;
  /** The comparator. */
  comparator: Comparator;
  /** A number, a string, or a list of strings (with `IN` and `NOT IN`). */
  value: number | string | string[];
}

/** A sort key of `order_by`, e.g. `metrics.loss DESC`. */
export interface OrderKey {
  /** What it sorts by. */
  entity: FilterEntity;
  /** The metric, param, tag or attribute name. */
  key: string;
  /** Ascending (the default) or descending. */
  ascending: boolean;
}

/** A run (or experiment) as the filter sees it. */
export interface FilterTarget {
  /** Metric key → its latest value. */
  metrics: ReadonlyMap<string, number>;
  /** Param key → value. */
  params: ReadonlyMap<string, string>;
  /** Tag key → value. */
  tags: ReadonlyMap<string, string>;
  /** Attribute name → value (null: not set). */
  attributes: ReadonlyMap<string, string | number | null>;
}

/** Which attributes exist and whether each holds a number or a string. */
export type AttributeTypes = ReadonlyMap<string, "number" | "string">;

/** The attributes of a run that a filter may name (`created` is `start_time`). */
export const RUN_ATTRIBUTES: AttributeTypes = new Map([
  ["run_id", "string"],
  ["run_name", "string"],
  ["status", "string"],
  ["user_id", "string"],
  ["artifact_uri", "string"],
  ["lifecycle_stage", "string"],
  ["start_time", "number"],
  ["end_time", "number"],
  ["created", "number"],
]);

/** The attributes of an experiment that a filter may name. */
export const EXPERIMENT_ATTRIBUTES: AttributeTypes = new Map([
  ["name", "string"],
  ["experiment_id", "string"],
  ["lifecycle_stage", "string"],
  ["creation_time", "number"],
  ["last_update_time", "number"],
]);

/**
 * A filter or order_by the language does not allow; the message says where and what was expected.
 *
 * @example Refuse a filter
 * ```ts
 * import { FilterSyntaxError, parseFilter } from "./mlflow_filter.ts";
 *
 * try {
 *   parseFilter("metrics.loss <");
 * } catch (error) {
 *   console.log(error instanceof FilterSyntaxError && error.status); // 400
 * }
 * ```
 */
export class FilterSyntaxError extends Error {
  /** The HTTP status a server answers with. */
  readonly status = 400;
}

/** Options of {@linkcode parseFilter} and {@linkcode parseOrderBy}. */
export interface ParseOptions {
  /** The attributes that exist (default {@linkcode RUN_ATTRIBUTES}). */
  attributes?: AttributeTypes;
}

/**
 * Parses a filter; an empty or blank one is no clause (everything matches).
 *
 * @param text The filter, e.g. `metrics.loss < 0.5 AND tags.team = 'vision'`.
 * @param options The attributes that exist.
 * @returns The clauses, all of which must hold.
 * @throws {FilterSyntaxError} For a filter the language does not allow.
 *
 * @example
 * ```ts
 * import { parseFilter } from "./mlflow_filter.ts";
 *
 * console.log(parseFilter("params.lr = '0.1'")); // [{ entity: "param", key: "lr", comparator: "=", value: "0.1" }]
 * ```
 */
export function parseFilter(text: string, options: ParseOptions = {}): FilterClause[] {
  const tokens = tokenize(text);
  const reader = new TokenReader(tokens, text);
  const clauses: FilterClause[] = [];
  if (reader.done()) return clauses;
  for (;;) {
    clauses.push(parseClause(reader, options.attributes ?? RUN_ATTRIBUTES));
    if (reader.done()) return clauses;
    const joiner = reader.next();
    if (joiner.kind !== "word" || joiner.text.toUpperCase() !== "AND") {
      throw reader.error(joiner, "expected AND between comparisons (OR is not supported)");
    }
  }
}

/**
 * Parses one `order_by` item: an identifier, then `ASC` or `DESC`.
 *
 * @param text The item, e.g. ``metrics.`train/loss` DESC`` or `attributes.start_time`.
 * @param options The attributes that exist.
 * @returns The sort key.
 * @throws {FilterSyntaxError} For an item the language does not allow.
 *
 * @example
 * ```ts
 * import { parseOrderBy } from "./mlflow_filter.ts";
 *
 * console.log(parseOrderBy("start_time DESC")); // { entity: "attribute", key: "start_time", ascending: false }
 * ```
 */
export function parseOrderBy(text: string, options: ParseOptions = {}): OrderKey {
  const reader = new TokenReader(tokenize(text), text);
  if (reader.done()) throw new FilterSyntaxError(`Invalid order_by ${JSON.stringify(text)}: expected an identifier such as metrics.loss, then ASC or DESC`);
  const { entity, key } = parseIdentifier(reader, options.attributes ?? RUN_ATTRIBUTES);
  let ascending = true;
  if (!reader.done()) {
    const direction = reader.next();
    const word = direction.kind === "word" ? direction.text.toUpperCase() : "";
    if (word !== "ASC" && word !== "DESC") throw reader.error(direction, "expected ASC or DESC");
    ascending = word === "ASC";
  }
  if (!reader.done()) throw reader.error(reader.next(), "expected the end of the order_by item");
  return { entity, key, ascending };
}

/**
 * Whether a target satisfies every clause. A clause on a metric, param, tag
 * or attribute the target lacks is false, whatever its comparator.
 *
 * @param clauses The parsed filter.
 * @param target The run or experiment.
 * @returns True when all clauses hold.
 *
 * @example
 * ```ts
 * import { matches, parseFilter } from "./mlflow_filter.ts";
 *
 * const run = { metrics: new Map(), params: new Map(), tags: new Map([["team", "vision"]]), attributes: new Map() };
 * console.log(matches(parseFilter("tags.team ILIKE 'VIS%'"), run)); // true
 * ```
 */
export function matches(clauses: readonly FilterClause[], target: FilterTarget): boolean {
  return clauses.every((clause) => holds(clause, valueOf(target, clause.entity, clause.key)));
}

/**
 * Compares two targets by sort keys in turn; a target that lacks a key sorts after one that has it.
 *
 * @param order The sort keys, most significant first.
 * @param a One target.
 * @param b The other.
 * @returns Negative when `a` comes first, positive when `b` does, 0 when the keys tie.
 *
 * @example
 * ```ts
 * import { compareTargets, parseOrderBy } from "./mlflow_filter.ts";
 *
 * const run = (loss: number) => ({ metrics: new Map([["loss", loss]]), params: new Map(), tags: new Map(), attributes: new Map() });
 * console.log(compareTargets([parseOrderBy("metrics.loss")], run(1), run(2)) < 0); // true
 * ```
 */
export function compareTargets(order: readonly OrderKey[], a: FilterTarget, b: FilterTarget): number {
  for (const key of order) {
    const x = valueOf(a, key.entity, key.key);
    const y = valueOf(b, key.entity, key.key);
    if (x === undefined || y === undefined) {
      if (x === y) continue;
      return x === undefined ? 1 : -1;
    }
    const c = compareValues(x, y);
    if (c !== 0) return key.ascending ? c : -c;
  }
  return 0;
}

/**
 * A param's value as the language compares it: a string as it is, anything else as JSON.
 *
 * @param value The stored value.
 * @returns Its text.
 *
 * @example
 * ```ts
 * import { paramText } from "./mlflow_filter.ts";
 *
 * console.log(paramText(0.001), paramText("adam"), paramText([1, 2])); // 0.001 adam [1,2]
 * ```
 */
export function paramText(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

// ─── Evaluation ─────────────────────────────────────────────────────────────

function valueOf(target: FilterTarget, entity: FilterEntity, key: string): string | number | undefined {
  const map = entity === "metric" ? target.metrics : entity === "param" ? target.params : entity === "tag" ? target.tags : target.attributes;
  const value = map.get(key);
  return value === null ? undefined : value;
}

function holds(clause: FilterClause, actual: string | number | undefined): boolean {
  if (actual === undefined) return false;
  const expected = clause.value;
  switch (clause.comparator) {
    case "=":
      return actual === expected;
    case "!=":
      return actual !== expected;
    case "<":
      return actual < expected;
    case "<=":
      return actual <= expected;
    case ">":
      return actual > expected;
    case ">=":
      return actual >= expected;
    case "LIKE":
      return likePattern(expected as string, false).test(String(actual));
    case "ILIKE":
      return likePattern(expected as string, true).test(String(actual));
    case "IN":
      return (expected as string[]).includes(String(actual));
    case "NOT IN":
      return !(expected as string[]).includes(String(actual));
  }
}

function compareValues(x: string | number, y: string | number): number {
  if (typeof x === "number" && typeof y === "number") {
    if (Number.isNaN(x) || Number.isNaN(y)) return Number.isNaN(x) === Number.isNaN(y) ? 0 : Number.isNaN(x) ? 1 : -1;
    return x - y;
  }
  const a = String(x);
  const b = String(y);
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A LIKE pattern as an anchored regular expression: `%` is any run of characters, `_` one character. */
function likePattern(pattern: string, ignoreCase: boolean): RegExp {
  let source = "";
  for (const char of pattern) {
    if (char === "%") source += "[\\s\\S]*";
    else if (char === "_") source += "[\\s\\S]";
    else source += char.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${source}$`, ignoreCase ? "iu" : "u");
}

// ─── Parsing ────────────────────────────────────────────────────────────────

const ENTITIES = new Map<string, FilterEntity>([
  ["metric", "metric"],
  ["metrics", "metric"],
  ["param", "param"],
  ["params", "param"],
  ["parameter", "param"],
  ["parameters", "param"],
  ["tag", "tag"],
  ["tags", "tag"],
  ["attribute", "attribute"],
  ["attributes", "attribute"],
  ["attr", "attribute"],
  ["run", "attribute"],
]);

const NUMERIC_COMPARATORS: readonly Comparator[] = ["=", "!=", "<", "<=", ">", ">="];
const STRING_COMPARATORS: readonly Comparator[] = ["=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"];

function parseClause(reader: TokenReader, attributes: AttributeTypes): FilterClause {
  const { entity, key } = parseIdentifier(reader, attributes);
  const comparator = parseComparator(reader);
  const numeric = entity === "metric" || (entity === "attribute" && attributes.get(key) === "number");
  const allowed = numeric ? NUMERIC_COMPARATORS : STRING_COMPARATORS;
  const where = `${entity === "attribute" ? "attribute" : `${entity}s`}.${key}`;
  if (!allowed.includes(comparator)) {
    throw new FilterSyntaxError(`Invalid comparator ${comparator} for ${where}: expected one of ${allowed.join(", ")}`);
  }
  if (comparator === "IN" || comparator === "NOT IN") return { entity, key, comparator, value: parseList(reader) };
  const token = reader.next();
  if (numeric) {
    if (token.kind !== "number") throw reader.error(token, `expected a number to compare ${where} with`);
    return { entity, key, comparator, value: Number(token.text) };
  }
  if (token.kind !== "string") throw reader.error(token, `expected a quoted string to compare ${where} with`);
  return { entity, key, comparator, value: token.text };
}

function parseIdentifier(reader: TokenReader, attributes: AttributeTypes): { entity: FilterEntity; key: string } {
  const token = reader.next();
  if (token.kind !== "word") throw reader.error(token, "expected an identifier such as metrics.loss, params.lr, tags.x or attributes.status");
  const dot = token.text.indexOf(".");
  let entity: FilterEntity | undefined;
  let key: string;
  if (dot < 0) {
    entity = "attribute";
    key = token.text;
  } else {
    entity = ENTITIES.get(token.text.slice(0, dot).toLowerCase());
    if (entity === undefined) {
      throw reader.error(token, `unknown entity "${token.text.slice(0, dot)}": expected metrics, params, tags or attributes`);
    }
    key = token.text.slice(dot + 1);
    if (key === "") {
      const quoted = reader.next();
      if (quoted.kind !== "quoted" && !(quoted.kind === "string" && quoted.quote === '"')) {
        throw reader.error(quoted, "expected a key after the dot, in backticks or double quotes if it holds other characters");
      }
      key = quoted.text;
    }
  }
  if (entity === "attribute" && !attributes.has(key)) {
    throw reader.error(token, `unknown attribute "${key}": expected one of ${[...attributes.keys()].join(", ")}`);
  }
  return { entity, key };
}

function parseComparator(reader: TokenReader): Comparator {
  const token = reader.next();
  if (token.kind === "operator") return token.text as Comparator;
  if (token.kind === "word") {
    const word = token.text.toUpperCase();
    if (word === "LIKE" || word === "ILIKE" || word === "IN") return word;
    if (word === "NOT") {
      const next = reader.next();
      if (next.kind === "word" && next.text.toUpperCase() === "IN") return "NOT IN";
      throw reader.error(next, "expected IN after NOT");
    }
  }
  throw reader.error(token, "expected a comparator: =, !=, <, <=, >, >=, LIKE, ILIKE, IN or NOT IN");
}

function parseList(reader: TokenReader): string[] {
  const open = reader.next();
  if (open.kind !== "punct" || open.text !== "(") throw reader.error(open, "expected ( to start a list of quoted strings");
  const values: string[] = [];
  for (;;) {
    const item = reader.next();
    if (item.kind !== "string") throw reader.error(item, "expected a quoted string in the list");
    values.push(item.text);
    const after = reader.next();
    if (after.kind === "punct" && after.text === ")") return values;
    if (after.kind !== "punct" || after.text !== ",") throw reader.error(after, "expected , or ) in the list");
  }
}

// ─── Tokens ─────────────────────────────────────────────────────────────────

interface Token {
  kind: "word" | "number" | "string" | "quoted" | "operator" | "punct" | "end";
  text: string;
  at: number;
  quote?: string;
}

// A slash may go on a word, so that metric keys such as val/acc need no backticks.
const WORD = /[A-Za-z_][A-Za-z0-9_./]*/y;
const NUMBER = /[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?/y;
const OPERATOR = /(<=|>=|!=|<>|==|=|<|>)/y;

function tokenize(text: string): Token[] {
  if (typeof text !== "string") throw new FilterSyntaxError(`Invalid filter: expected a string, received ${typeof text}`);
  const tokens: Token[] = [];
  let at = 0;
  while (at < text.length) {
    const char = text[at];
    if (/\s/.test(char)) {
      at++;
      continue;
    }
    if (char === "'" || char === '"' || char === "`") {
      const { value, end } = readQuoted(text, at);
      tokens.push({ kind: char === "`" ? "quoted" : "string", text: value, at, quote: char });
      at = end;
      continue;
    }
    if (char === "(" || char === ")" || char === ",") {
      tokens.push({ kind: "punct", text: char, at });
      at++;
      continue;
    }
    const match = matchAt(OPERATOR, text, at) ?? matchAt(NUMBER, text, at) ?? matchAt(WORD, text, at);
    if (match === undefined) throw new FilterSyntaxError(`Invalid filter ${JSON.stringify(text)}: unexpected character ${JSON.stringify(char)} at position ${at}`);
    const kind = match.regex === OPERATOR ? "operator" : match.regex === NUMBER ? "number" : "word";
    const normal = match.text === "==" ? "=" : match.text === "<>" ? "!=" : match.text;
    tokens.push({ kind, text: normal, at });
    at += match.text.length;
  }
  return tokens;
}

function matchAt(regex: RegExp, text: string, at: number): { regex: RegExp; text: string } | undefined {
  regex.lastIndex = at;
  const found = regex.exec(text);
  return found ? { regex, text: found[0] } : undefined;
}

/** A quoted string from `at` (its opening quote); the quote doubled, or after a backslash, stands for itself. */
function readQuoted(text: string, at: number): { value: string; end: number } {
  const quote = text[at];
  let value = "";
  for (let i = at + 1; i < text.length; i++) {
    const char = text[i];
    if (char === "\\" && i + 1 < text.length) {
      value += text[++i];
    } else if (char === quote) {
      if (text[i + 1] !== quote) return { value, end: i + 1 };
      value += quote;
      i++;
    } else {
      value += char;
    }
  }
  throw new FilterSyntaxError(`Invalid filter ${JSON.stringify(text)}: the ${quote} opened at position ${at} is never closed`);
}

class TokenReader {
  #tokens: Token[];
  #text: string;
  #at = 0;

  constructor(tokens: Token[], text: string) {
    this.#tokens = tokens;
    this.#text = text;
  }

  done(): boolean {
    return this.#at >= this.#tokens.length;
  }

  next(): Token {
    return this.#tokens[this.#at++] ?? { kind: "end", text: "", at: this.#text.length };
  }

  error(token: Token, expected: string): FilterSyntaxError {
    const found = token.kind === "end" ? "the end" : JSON.stringify(token.text);
    return new FilterSyntaxError(`Invalid filter ${JSON.stringify(this.#text)}: ${expected}, found ${found} at position ${token.at}`);
  }
}
