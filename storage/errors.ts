/**
 * The errors ml-dash throws, shared by the core (`mod.ts`), the backends and
 * the server, and the way values are shown in their messages. `mod.ts`
 * re-exports the error classes.
 *
 * @example Branch on the kind of error
 * ```ts
 * import { ConfigError, StorageError } from "./errors.ts";
 *
 * const error: Error = new StorageError("Could not write to \".dash\": disk full");
 * console.log(error instanceof ConfigError, error instanceof StorageError); // false true
 * ```
 *
 * @module
 */

/**
 * The base class of every error ml-dash throws.
 *
 * @example Tell ml-dash's errors from others
 * ```ts
 * import { ConfigError, MlDashError } from "./errors.ts";
 *
 * try {
 *   throw new ConfigError("Invalid prefix \"x\": expected at least \"project/name\"");
 * } catch (e) {
 *   if (e instanceof MlDashError) console.error(e.name, e.message);
 * }
 * ```
 */
export class MlDashError extends Error {
  /**
   * Creates the error.
   *
   * @param message What was expected and what was received.
   * @param options The underlying cause, if any.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * A configuration error: a bad prefix, URL or option. Always thrown, at once.
 *
 * @example A prefix that would leave the root
 * ```ts
 * import { ConfigError } from "./errors.ts";
 * import { checkPrefix } from "./backend.ts";
 * import { throws } from "node:assert/strict";
 *
 * throws(() => checkPrefix("../x/y"), ConfigError);
 * ```
 */
export class ConfigError extends MlDashError {}

/**
 * A bad metric value or key (NaN, ±Infinity, a non-number, an empty key).
 * A warning by default; thrown from `log()` with `strict: true`.
 *
 * @example Strict mode throws it from `log()`
 * ```ts
 * import { mkdtempSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { startRun } from "../mod.ts";
 * import { InvalidMetricError } from "./errors.ts";
 *
 * await startRun("exp", { strict: true, dashRoot: mkdtempSync(join(tmpdir(), "dash-")) }, (run) => {
 *   try {
 *     run.log({ loss: NaN });
 *   } catch (e) {
 *     console.log(e instanceof InvalidMetricError); // true
 *   }
 * });
 * ```
 */
export class InvalidMetricError extends MlDashError {}

/** Options of {@linkcode StorageError}. */
export interface StorageErrorOptions extends ErrorOptions {
  /** The HTTP status a server answered, when there was an answer. */
  status?: number;
  /** Whether the same write may succeed later; by default decided from `status`. */
  retryable?: boolean;
}

/**
 * Data could not be made durable (disk full, permission denied, server down
 * or refusing). The data stays buffered; `flush()` and `finish()` reject with
 * this error.
 *
 * `status` is the HTTP status of the server's answer, if one came. `retryable`
 * says whether trying again can help: unless given, it is true without a
 * status (a network or disk error) and for 408, 429 and 5xx, and false for
 * other statuses from 300 up (a 400 or 401 would be refused again).
 *
 * @example Branch on the status, not on the message
 * ```ts
 * import { StorageError } from "./errors.ts";
 *
 * const refused = new StorageError("Could not send a batch: the server answered 401", { status: 401 });
 * console.log(refused.status, refused.retryable); // 401 false
 * console.log(new StorageError("Could not write: disk full").retryable); // true
 * ```
 */
export class StorageError extends MlDashError {
  /** The HTTP status a server answered, when there was an answer. */
  readonly status?: number;
  /** Whether the same write may succeed later (a network error, a full queue, 5xx, 408, 429). */
  readonly retryable: boolean;

  /**
   * Creates the error.
   *
   * @param message What could not be stored, where, and why.
   * @param options The cause, the server's HTTP status and whether a retry can help.
   */
  constructor(message: string, options?: StorageErrorOptions) {
    super(message, options);
    this.status = options?.status;
    this.retryable = options?.retryable ?? isRetryableStatus(options?.status);
  }
}

/** Whether a request answered `status` (undefined: no answer) may succeed when sent again. */
function isRetryableStatus(status: number | undefined): boolean {
  return status === undefined || status < 300 || status >= 500 || status === 408 || status === 429;
}

/**
 * The API was used in the wrong order, e.g. logging before the run started.
 *
 * @example
 * ```ts
 * import { Experiment, UsageError } from "../mod.ts";
 * import { throws } from "node:assert/strict";
 *
 * throws(() => new Experiment({ prefix: "a/b/c" }).log("too early"), UsageError);
 * ```
 */
export class UsageError extends MlDashError {}

/**
 * A value as an error message shows it: strings JSON-quoted, errors by name and
 * message, objects as (at most 80 characters of) JSON.
 *
 * @param value Any value.
 * @returns Its text for a message.
 *
 * @example
 * ```ts
 * import { describe } from "./errors.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(describe("x"), '"x"');
 * equal(describe(10n), "10n");
 * equal(describe({ a: 1 }), '{"a":1}');
 * ```
 */
export function describe(value: unknown): string {
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "object" && value !== null) {
    try {
      return JSON.stringify(value).slice(0, 80);
    } catch {
      return Object.prototype.toString.call(value);
    }
  }
  return String(value);
}

/**
 * A string as an error message shows it: JSON-quoted, cut after 40 characters.
 *
 * @param text The string.
 * @returns The quoted, shortened text.
 *
 * @example
 * ```ts
 * import { shorten } from "./errors.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(shorten("loss"), '"loss"');
 * equal(shorten("x".repeat(50)), `"${"x".repeat(40)}…"`);
 * ```
 */
export function shorten(text: string): string {
  return text.length > 40 ? `${JSON.stringify(text.slice(0, 40)).slice(0, -1)}…"` : JSON.stringify(text);
}
