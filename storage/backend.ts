/**
 * The backend contract: what the core (`mod.ts`) hands to a backend
 * (`storage/jsonl.ts`, `storage/http.ts`, or both at once), and the rules for
 * the names and paths every layer checks. The backends and the server import
 * this file and `errors.ts`, never `mod.ts`; `mod.ts` re-exports what of it
 * is public.
 *
 * @example A backend that keeps batches in memory
 * ```ts
 * import type { Backend, Batch, ExistingState } from "./backend.ts";
 * import { checkPrefix } from "./backend.ts";
 *
 * class MemoryBackend implements Backend {
 *   readonly description = "memory";
 *   readonly batches: Batch[] = [];
 *   open(prefix: string): Promise<ExistingState> {
 *     checkPrefix(prefix);
 *     return Promise.resolve({ params: {}, files: [] });
 *   }
 *   write(_prefix: string, batch: Batch): Promise<void> {
 *     // The same object again is a retry: stored once.
 *     if (!this.batches.includes(batch)) this.batches.push(batch);
 *     return Promise.resolve();
 *   }
 *   close(): Promise<void> {
 *     return Promise.resolve();
 *   }
 * }
 *
 * const backend = new MemoryBackend();
 * const batch: Batch = { metrics: { train: ['{"_ts":1,"step":0,"loss":0.5}'] } };
 * await backend.write("alice/demo/x", batch);
 * await backend.write("alice/demo/x", batch);
 * console.log(backend.batches.length); // 1
 * ```
 *
 * @module
 */
import { ConfigError, describe, shorten } from "./errors.ts";
import type { ChunkFigures } from "./chunk_figures.ts";

// ─── Records ────────────────────────────────────────────────────────────────

/** The status of an experiment. */
export type Status = "RUNNING" | "COMPLETED" | "FAILED" | "CANCELLED";

/** A stored metric value: a finite number, or the name of a non-finite one. */
export type MetricValue = number | "NaN" | "Infinity" | "-Infinity";

/** A parameter value after flattening. */
export type ParamValue = string | number | boolean | null | ParamValue[] | { [key: string]: ParamValue };

/** A saved file's index entry (a line of files.jsonl). */
export interface FileInfo {
  /** Path under the experiment's `files/`. */
  path: string;
  /** Size in bytes. */
  size: number;
  /** MIME type. */
  mime: string;
  /** When it was saved, in epoch seconds. */
  _ts: number;
}

/** One row of `metrics/<name>.jsonl`. */
export interface MetricRecord {
  /** Wall-clock time in epoch seconds. */
  _ts: number;
  /** The step. */
  step: number;
  /** Field values. */
  [field: string]: MetricValue;
}

/** One row of `logs.jsonl`. */
export interface LogRecord {
  /** Wall-clock time in epoch seconds. */
  _ts: number;
  /** The level. */
  level: string;
  /** The text. */
  message: string;
  /** Metadata. */
  [meta: string]: unknown;
}

/** The content of `status.json`, or a patch of it. */
export interface StatusRecord {
  /** The status. */
  status?: Status;
  /** When the run (last) started, epoch seconds. */
  startedAt?: number;
  /** When it ended; `null` while running. */
  endedAt?: number | null;
  /** Last sign of life, epoch seconds. */
  heartbeatAt?: number;
  /** Seconds between heartbeats, so a reader can tell a stale run. */
  heartbeatInterval?: number;
  /** Process id of the writer. */
  pid?: number;
  /** Host name of the writer. */
  host?: string;
  /** The error of a FAILED run. */
  error?: string;
}

/** The content of `experiment.json`, or a patch of it. */
export interface ExperimentRecord {
  /** The prefix. */
  prefix?: string;
  /** A description. */
  readme?: string;
  /** Tags. */
  tags?: string[];
  /** Any metadata. */
  metadata?: Record<string, unknown>;
}

/** A file in a batch: its index entry and its bytes. */
export interface FileUpload extends FileInfo {
  /** The content. */
  data: Uint8Array;
}

// ─── The contract ───────────────────────────────────────────────────────────

/**
 * A batch: what one write sends to a backend. State fields are patches (merged
 * into what is stored); metric and log records are appended.
 */
export interface Batch {
  /** Patch of experiment.json. */
  metadata?: ExperimentRecord;
  /** Patch of status.json. */
  status?: StatusRecord;
  /** Flattened parameters to merge. */
  params?: Record<string, ParamValue>;
  /**
   * Metric records by metric name, as chunks of JSON text: each chunk holds
   * one or more records (see {@linkcode MetricRecord}) separated by `\n`, with
   * no newline at the end. The buffer serializes at `log()` time; the server
   * passes on the UTF-8 bytes it received, checked but not decoded.
   */
  metrics?: Record<string, (string | Uint8Array)[]>;
  /**
   * Optional, for the local store's read index: per metric, the figures of
   * each chunk of `metrics` (parallel to it; undefined where unknown), kept by
   * the buffer as it serialized the records. A backend may ignore them.
   */
  metricFigures?: Record<string, (ChunkFigures | undefined)[]>;
  /** Log records, each one serialized as JSON text (see {@linkcode LogRecord}). */
  logs?: string[];
  /** Files to save. */
  files?: FileUpload[];
}

/** What a backend knows of an experiment when it is opened (resume). */
export interface ExistingState {
  /** Parameters recorded before. */
  params: Record<string, ParamValue>;
  /** Files saved before. */
  files: FileInfo[];
  /** The last step recorded in each metric, from which a resumed run continues. */
  steps?: Record<string, number>;
  /** Why the backend could not be reached, if it could not: then nothing of the above is known. */
  unreachable?: string;
}

/**
 * Where batches go: the JSONL directory (`storage/jsonl.ts`), a server
 * (`storage/http.ts`), or both (the core's fan-out, itself a `Backend`).
 *
 * **A batch is stored once.** The same `Batch` object written twice (a retry
 * after a failure) is stored once: the caller retries by passing the very
 * object that failed, to `write`, `writeSync`, `writeAtExit` or `keep`, as
 * often as it needs, even while an earlier write of it has not settled (a
 * synchronous write at process exit). A backend tells a retry by the object's
 * identity, never by its content, so:
 * - two distinct objects with equal content are two batches, each stored;
 * - the caller never changes a batch once it has passed it to the backend
 *   (it builds a new one for new records);
 * - a backend remembers what it did with a batch in a `WeakMap` keyed on it,
 *   and so resumes where a failed write stopped: the JSONL backend marks each
 *   part of the batch it stored (and how many bytes of an append landed); the
 *   HTTP backend gives the batch its sequence numbers once and the server
 *   drops a sequence number it already has; the fan-out remembers which of
 *   its backends stored the batch and retries only the others.
 *
 * Batches of one prefix are written one at a time, in order: the next write
 * starts after the previous one settled, and a failed batch is retried before
 * any that came after it.
 *
 * @example Write a batch and retry the same object after a failure
 * ```ts
 * import type { Backend, Batch } from "./backend.ts";
 *
 * async function store(backend: Backend, batch: Batch): Promise<void> {
 *   try {
 *     await backend.write("alice/demo/x", batch);
 *   } catch {
 *     await backend.write("alice/demo/x", batch); // the parts already stored are not stored again
 *   }
 * }
 * ```
 */
export interface Backend {
  /** Where the data goes, for error messages (e.g. `.dash` or a URL). */
  readonly description: string;
  /** Prepares an experiment and returns what it already holds. */
  open(prefix: string): Promise<ExistingState>;
  /** Stores a batch durably; rejects if it could not. Writing the same object again stores only what is missing. */
  write(prefix: string, batch: Batch): Promise<void>;
  /** Stores a batch before returning, where the backend can (used at exit and when the caller never yields). */
  writeSync?: (prefix: string, batch: Batch) => void;
  /** At process exit, where `writeSync` is missing: keeps synchronously what it can (the HTTP backend: in its outbox). */
  writeAtExit?: (prefix: string, batch: Batch) => void;
  /**
   * Keeps a batch that failed and the batches waiting behind it (oldest first)
   * where they outlive the process (the HTTP backend's outbox), without trying
   * to send them now. They are still written, as the same objects, later.
   */
  keep?: (prefix: string, batches: Batch[]) => Promise<void>;
  /** Releases files and connections. */
  close(): Promise<void>;
}

// ─── Names and paths ────────────────────────────────────────────────────────

/** The log levels, lowest first. */
export const LOG_LEVELS: readonly string[] = ["debug", "info", "warn", "error", "fatal"];

/** The statuses of an experiment. */
export const STATUSES: readonly string[] = ["RUNNING", "COMPLETED", "FAILED", "CANCELLED"];

/**
 * Records per chunk of JSON text lines: the buffer gives backends a metric's
 * records joined in chunks of at most this many lines, and the server keeps
 * them so.
 */
export const CHUNK_LINES = 1024;

/**
 * The most bytes a file system takes in one name of a file or directory (NAME_MAX).
 *
 * @example
 * ```ts
 * import { MAX_NAME_BYTES } from "./backend.ts";
 * console.log(MAX_NAME_BYTES); // 255
 * ```
 */
export const MAX_NAME_BYTES = 255;

/**
 * The most bytes of a metric's name: its file, `metrics/<name>.jsonl`, has a
 * name of at most {@linkcode MAX_NAME_BYTES}.
 *
 * @example
 * ```ts
 * import { MAX_METRIC_NAME_BYTES } from "./backend.ts";
 * console.log(MAX_METRIC_NAME_BYTES); // 249
 * ```
 */
export const MAX_METRIC_NAME_BYTES: number = MAX_NAME_BYTES - ".jsonl".length;

/**
 * The most bytes of a saved file's name: it is written as
 * `<name>.<pid>.<random>.tmp` first, then renamed.
 *
 * @example
 * ```ts
 * import { MAX_FILE_NAME_BYTES } from "./backend.ts";
 * console.log(MAX_FILE_NAME_BYTES); // 223
 * ```
 */
export const MAX_FILE_NAME_BYTES: number = MAX_NAME_BYTES - 32;

/**
 * The most bytes of a metric field's name (what the server stores).
 *
 * @example
 * ```ts
 * import { MAX_FIELD_BYTES } from "./backend.ts";
 * console.log(MAX_FIELD_BYTES); // 255
 * ```
 */
export const MAX_FIELD_BYTES = 255;

/**
 * Checks a prefix `owner/project/.../name` and throws a {@linkcode ConfigError}
 * naming the rule it breaks. Nothing it accepts can leave the root directory.
 *
 * @param prefix The prefix to check.
 * @throws {ConfigError} For a prefix that breaks a rule.
 *
 * @example
 * ```ts
 * import { checkPrefix } from "./backend.ts";
 * import { throws } from "node:assert/strict";
 *
 * checkPrefix("alice/project/run-1");
 * throws(() => checkPrefix("../x/y"));
 * ```
 */
export function checkPrefix(prefix: string): void {
  checkRelativePath(prefix, "prefix", MAX_NAME_BYTES);
  if (prefix.split("/").length < 2) {
    throw new ConfigError(`Invalid prefix "${prefix}": expected at least "project/name" (owner/project/.../name)`);
  }
}

/**
 * Checks the path of a saved file under an experiment's `files/` folder and
 * throws a {@linkcode ConfigError} naming the rule it breaks: relative,
 * "/"-separated, no segment empty or starting with ".", and a last segment of
 * at most {@linkcode MAX_FILE_NAME_BYTES} (room for the temp file's suffix).
 *
 * @param path The path under `files/`, e.g. `plots/loss.png`.
 * @throws {ConfigError} For a path that breaks a rule.
 *
 * @example
 * ```ts
 * import { checkFilePath } from "./backend.ts";
 * import { throws } from "node:assert/strict";
 *
 * checkFilePath("plots/loss.png");
 * throws(() => checkFilePath("../outside.txt"));
 * throws(() => checkFilePath(".hidden"));
 * ```
 */
export function checkFilePath(path: string): void {
  checkRelativePath(path, "file path", MAX_FILE_NAME_BYTES);
}

/**
 * Checks a folder of experiments (`alice`, `alice/sweep`): the rules of a prefix, but one
 * segment is enough.
 *
 * @param folder The folder, without a trailing "/".
 * @throws {ConfigError} For a folder that breaks a rule.
 *
 * @example
 * ```ts
 * import { checkFolder } from "./backend.ts";
 * import { throws } from "node:assert/strict";
 *
 * checkFolder("alice");
 * checkFolder("alice/sweep");
 * throws(() => checkFolder("../x"));
 * ```
 */
export function checkFolder(folder: string): void {
  checkRelativePath(folder, "folder", MAX_NAME_BYTES);
}

/**
 * Checks a relative path of "/"-separated names; its last segment may be at
 * most `lastSegmentBytes` long in UTF-8, the others MAX_NAME_BYTES.
 */
function checkRelativePath(path: string, what: string, lastSegmentBytes: number): void {
  if (typeof path !== "string") throw new ConfigError(`Invalid ${what} ${describe(path)}: expected a string`);
  const shown = JSON.stringify(path);
  const fail = (rule: string): never => {
    throw new ConfigError(`Invalid ${what} ${shown}: ${rule}`);
  };
  if (path === "") fail("it cannot be empty");
  if (path.includes("\0")) fail("it cannot contain a NUL character");
  if (path.includes("\\")) fail("it cannot contain a backslash");
  if (path.startsWith("/") || /^[A-Za-z]:/.test(path)) fail("it cannot be absolute");
  const segments = path.split("/");
  for (const [i, segment] of segments.entries()) {
    if (segment === "") fail("a segment cannot be empty");
    if (segment === "." || segment === "..") fail(`a segment cannot be "${segment}"`);
    if (segment.startsWith(".")) fail(`a segment cannot start with "." (found "${segment}")`);
    checkNameBytes(segment, `${what} segment`, i === segments.length - 1 ? lastSegmentBytes : MAX_NAME_BYTES);
  }
}

function checkNameBytes(name: string, what: string, limit: number): void {
  const problem = byteLimitProblem(name, limit);
  if (problem) throw new ConfigError(`Invalid ${what} ${shorten(name)}: ${problem}`);
}

const METRIC_NAME = /^[^/\\\0.][^/\\\0]*$/;

/**
 * Whether `name` can name a metric: not empty, without "/", "\\" or NUL, not
 * starting with ".", and at most {@linkcode MAX_METRIC_NAME_BYTES} of UTF-8.
 *
 * @param name The metric's name.
 * @returns Whether it is valid.
 *
 * @example
 * ```ts
 * import { isValidMetricName } from "./backend.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(isValidMetricName("train"), true);
 * equal(isValidMetricName("train/loss"), false);
 * ```
 */
export function isValidMetricName(name: string): boolean {
  return METRIC_NAME.test(name) && byteLimitProblem(name, MAX_METRIC_NAME_BYTES) === undefined;
}

/**
 * Throws a {@linkcode ConfigError} unless {@linkcode isValidMetricName} accepts `name`,
 * saying which rule it breaks.
 *
 * @param name The metric's name.
 * @throws {ConfigError} For a name that breaks a rule.
 *
 * @example
 * ```ts
 * import { checkMetricName } from "./backend.ts";
 * import { throws } from "node:assert/strict";
 *
 * checkMetricName("eval");
 * throws(() => checkMetricName(".hidden"));
 * ```
 */
export function checkMetricName(name: string): void {
  if (typeof name !== "string" || !METRIC_NAME.test(name)) {
    throw new ConfigError(
      `Invalid metric name ${describe(name)}: expected a non-empty name without "/", "\\" or NUL that does not start with "."`,
    );
  }
  checkNameBytes(name, "metric name", MAX_METRIC_NAME_BYTES);
}

/**
 * Why `text` is too long for `limit` bytes of UTF-8, or undefined if it fits.
 *
 * @param text The name.
 * @param limit The most bytes of UTF-8 it may take.
 * @returns A message part such as `"300 bytes, the limit is 255"`, or undefined.
 *
 * @example
 * ```ts
 * import { byteLimitProblem } from "./backend.ts";
 * import { equal } from "node:assert/strict";
 *
 * equal(byteLimitProblem("loss", 255), undefined);
 * equal(byteLimitProblem("é".repeat(200), 255), "400 bytes, the limit is 255");
 * ```
 */
export function byteLimitProblem(text: string, limit: number): string | undefined {
  if (text.length * 3 <= limit) return undefined;
  const bytes = utf8Length(text);
  return bytes > limit ? `${bytes} bytes, the limit is ${limit}` : undefined;
}

/** The length of `text` in UTF-8, as TextEncoder encodes it (a lone surrogate becomes 3 bytes), without encoding it. */
function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

/**
 * Checks a server URL and throws a {@linkcode ConfigError} unless it is http(s).
 *
 * @param url The URL, e.g. `http://127.0.0.1:8787`.
 * @throws {ConfigError} For a URL that does not parse or is not http(s).
 *
 * @example
 * ```ts
 * import { checkUrl } from "./backend.ts";
 * import { throws } from "node:assert/strict";
 *
 * checkUrl("http://127.0.0.1:8787");
 * throws(() => checkUrl("ftp://x"));
 * ```
 */
export function checkUrl(url: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError(`Invalid dashUrl ${describe(url)}: expected an http:// or https:// URL`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new ConfigError(`Invalid dashUrl ${describe(url)}: expected an http:// or https:// URL`);
  }
}
