/**
 * The `.dash` layout: the names of the files of an experiment folder, the
 * functions that build their paths from a root and a prefix, the outbox's
 * folders and files, the temp-file naming, and the atomic replace of a file.
 *
 * ```
 * <root>/<owner>/<project>/<folders...>/<name>/
 *   experiment.json  status.json  parameters.json  parameters.jsonl  logs.jsonl
 *   metrics/<metric>.jsonl  files/<path>  files.jsonl  .sessions.json (server)
 * <root>/.outbox/<url-encoded prefix>/<session>-<seq>.json
 * ```
 *
 * Paths are joined with "/", which every runtime accepts on every platform.
 * Nothing here touches the disk but {@linkcode replaceFileSync}, and that only
 * through the file operations it is given: this module imports nothing that
 * needs a filesystem, so the HTTP backend may use it where there is none.
 *
 * @example Where an experiment's files are
 * ```ts
 * import { experimentPath, metricPath, STATUS_FILE } from "./layout.ts";
 *
 * console.log(experimentPath(".dash", "alice/mnist/baseline", STATUS_FILE)); // .dash/alice/mnist/baseline/status.json
 * console.log(metricPath(".dash", "alice/mnist/baseline", "train")); // .dash/alice/mnist/baseline/metrics/train.jsonl
 * ```
 *
 * @module
 */
import { checkFilePath, checkMetricName, checkPrefix } from "./backend.ts";
import { processId } from "./runtime.ts";

// ─── Names ──────────────────────────────────────────────────────────────────

/** The experiment's metadata, `{prefix, readme, tags, metadata, createdAt, updatedAt}`, replaced atomically. */
export const EXPERIMENT_FILE = "experiment.json";

/** The run's status, `{status, startedAt, endedAt, heartbeatAt, pid, host}`, replaced atomically. */
export const STATUS_FILE = "status.json";

/** A snapshot of the parameters, `{version, data, updatedAt}`, replaced atomically. */
export const PARAMETERS_FILE = "parameters.json";

/** One line per parameter patch, folded in order by readers (append-only). */
export const PARAMETERS_LOG = "parameters.jsonl";

/** The text log, one record a line (append-only). */
export const LOGS_FILE = "logs.jsonl";

/** The folder of the metric files, `metrics/<metric>.jsonl`. */
export const METRICS_DIR = "metrics";

/** The extension of a metric file. */
export const METRIC_FILE_EXTENSION = ".jsonl";

/** The folder of the saved files, `files/<path>`. */
export const FILES_DIR = "files";

/** The index of the saved files, one entry a line (append-only). */
export const FILES_INDEX = "files.jsonl";

/** The server's ledger of the batches an experiment stored, as of its last compaction (see `server/ledger.ts`). */
export const SESSIONS_FILE = ".sessions.json";

/** What the server's ledger noted since its last compaction, one event a line (append-only). */
export const SESSIONS_LOG = ".sessions.jsonl";

/** The folder under the root where the HTTP backend spools the batches it could not send. */
export const OUTBOX_DIR = ".outbox";

/** The extension of an outbox file, `<session>-<seq>.json`. */
export const OUTBOX_FILE_EXTENSION = ".json";

/** The extension of a temp file, which is renamed over its target once whole. */
export const TEMP_FILE_EXTENSION = ".tmp";

/** A name of the experiment folder's own entries. */
export type ExperimentEntry =
  | typeof EXPERIMENT_FILE
  | typeof STATUS_FILE
  | typeof PARAMETERS_FILE
  | typeof PARAMETERS_LOG
  | typeof LOGS_FILE
  | typeof METRICS_DIR
  | typeof FILES_DIR
  | typeof FILES_INDEX
  | typeof SESSIONS_FILE
  | typeof SESSIONS_LOG;

/**
 * The entries the library writes in an experiment folder (not the server's
 * ledger): a changed path is cut at the first of them to give its experiment.
 *
 * @example Find the experiment of a changed path
 * ```ts
 * import { EXPERIMENT_ENTRIES } from "./layout.ts";
 *
 * const segments = "alice/p/run/metrics/train.jsonl".split("/");
 * console.log(segments.slice(0, segments.findIndex((s) => EXPERIMENT_ENTRIES.has(s))).join("/")); // alice/p/run
 * ```
 */
export const EXPERIMENT_ENTRIES: ReadonlySet<string> = new Set<ExperimentEntry>([
  METRICS_DIR,
  FILES_DIR,
  FILES_INDEX,
  LOGS_FILE,
  STATUS_FILE,
  EXPERIMENT_FILE,
  PARAMETERS_FILE,
  PARAMETERS_LOG,
]);

// ─── Paths of an experiment ─────────────────────────────────────────────────

/**
 * The folder of an experiment: the root, then the prefix's segments.
 *
 * @param root The root directory, e.g. `.dash`.
 * @param prefix The experiment's prefix, `owner/project/.../name`.
 * @returns The folder's path.
 * @throws {ConfigError} For a prefix that `checkPrefix` refuses.
 *
 * @example
 * ```ts
 * import { experimentDir } from "./layout.ts";
 * import { throws } from "node:assert/strict";
 *
 * console.log(experimentDir(".dash", "alice/mnist/baseline")); // .dash/alice/mnist/baseline
 * throws(() => experimentDir(".dash", "alice/../../etc"));
 * ```
 */
export function experimentDir(root: string, prefix: string): string {
  checkPrefix(prefix);
  return `${root}/${prefix}`;
}

/**
 * The path of one of an experiment folder's own entries.
 *
 * @param root The root directory.
 * @param prefix The experiment's prefix.
 * @param entry The entry, e.g. {@linkcode STATUS_FILE} or {@linkcode METRICS_DIR}.
 * @returns The entry's path.
 * @throws {ConfigError} For a prefix that `checkPrefix` refuses.
 *
 * @example
 * ```ts
 * import { EXPERIMENT_FILE, experimentPath } from "./layout.ts";
 *
 * console.log(experimentPath(".dash", "alice/mnist/baseline", EXPERIMENT_FILE)); // .dash/alice/mnist/baseline/experiment.json
 * ```
 */
export function experimentPath(root: string, prefix: string, entry: ExperimentEntry): string {
  return entryPath(experimentDir(root, prefix), entry);
}

/**
 * The path of an entry of an experiment folder that the caller holds already
 * (from {@linkcode experimentDir}, or found by walking the root).
 *
 * @param dir The experiment's folder.
 * @param entry The entry, e.g. {@linkcode LOGS_FILE}.
 * @returns The entry's path.
 *
 * @example
 * ```ts
 * import { entryPath, experimentDir, LOGS_FILE } from "./layout.ts";
 *
 * console.log(entryPath(experimentDir(".dash", "alice/x/y"), LOGS_FILE)); // .dash/alice/x/y/logs.jsonl
 * ```
 */
export function entryPath(dir: string, entry: ExperimentEntry): string {
  return `${dir}/${entry}`;
}

/**
 * The path of a metric's file relative to its experiment folder, as the
 * server's ledger records the files a batch appends to.
 *
 * @param metric The metric's name.
 * @returns `metrics/<metric>.jsonl`.
 * @throws {ConfigError} For a name that `checkMetricName` refuses.
 *
 * @example
 * ```ts
 * import { metricEntry } from "./layout.ts";
 *
 * console.log(metricEntry("eval")); // metrics/eval.jsonl
 * ```
 */
export function metricEntry(metric: string): string {
  checkMetricName(metric);
  return `${METRICS_DIR}/${metric}${METRIC_FILE_EXTENSION}`;
}

/**
 * The path of a metric's file.
 *
 * @param root The root directory.
 * @param prefix The experiment's prefix.
 * @param metric The metric's name.
 * @returns `<root>/<prefix>/metrics/<metric>.jsonl`.
 * @throws {ConfigError} For a prefix or a metric name that breaks a rule.
 *
 * @example
 * ```ts
 * import { metricPath } from "./layout.ts";
 * import { throws } from "node:assert/strict";
 *
 * console.log(metricPath(".dash", "alice/mnist/baseline", "train")); // .dash/alice/mnist/baseline/metrics/train.jsonl
 * throws(() => metricPath(".dash", "alice/mnist/baseline", "../escape"));
 * ```
 */
export function metricPath(root: string, prefix: string, metric: string): string {
  return `${experimentDir(root, prefix)}/${metricEntry(metric)}`;
}

/** What a metric file's read index adds to its name: `metrics/train.jsonl.idx` (no metric file ends so). */
export const METRIC_INDEX_EXTENSION = ".idx";

/**
 * The path of a metric file's read index (storage/read_index.ts), beside it.
 *
 * @param metricFile The metric file's path.
 * @returns The index file's path.
 *
 * @example
 * ```ts
 * import { metricIndexPath } from "./layout.ts";
 *
 * console.log(metricIndexPath(".dash/alice/x/metrics/train.jsonl")); // .dash/alice/x/metrics/train.jsonl.idx
 * ```
 */
export function metricIndexPath(metricFile: string): string {
  return metricFile + METRIC_INDEX_EXTENSION;
}

/**
 * The metric a file of the metrics folder holds: its name without the
 * extension, or undefined for a file that is no metric file. A listed name is
 * taken as it is (it names one entry, so it leads nowhere else).
 *
 * @param fileName A name listed in `metrics/`.
 * @returns The metric's name, or undefined.
 *
 * @example
 * ```ts
 * import { metricOfFile } from "./layout.ts";
 *
 * console.log(metricOfFile("train.jsonl"), metricOfFile("notes.txt")); // train undefined
 * ```
 */
export function metricOfFile(fileName: string): string | undefined {
  return fileName.endsWith(METRIC_FILE_EXTENSION) ? fileName.slice(0, -METRIC_FILE_EXTENSION.length) : undefined;
}

/**
 * The path of a saved file.
 *
 * @param root The root directory.
 * @param prefix The experiment's prefix.
 * @param file The file's path under `files/`, "/"-separated.
 * @returns `<root>/<prefix>/files/<file>`.
 * @throws {ConfigError} For a prefix or a file path that breaks a rule.
 *
 * @example
 * ```ts
 * import { savedFilePath } from "./layout.ts";
 * import { throws } from "node:assert/strict";
 *
 * console.log(savedFilePath(".dash", "alice/mnist/baseline", "plots/loss.png")); // .dash/alice/mnist/baseline/files/plots/loss.png
 * throws(() => savedFilePath(".dash", "alice/mnist/baseline", "../experiment.json"));
 * ```
 */
export function savedFilePath(root: string, prefix: string, file: string): string {
  checkFilePath(file);
  return `${experimentDir(root, prefix)}/${FILES_DIR}/${file}`;
}

// ─── The outbox ─────────────────────────────────────────────────────────────

/**
 * The outbox folder of a root.
 *
 * @param root The root directory.
 * @returns `<root>/.outbox`.
 *
 * @example
 * ```ts
 * import { outboxPath } from "./layout.ts";
 *
 * console.log(outboxPath(".dash")); // .dash/.outbox
 * ```
 */
export function outboxPath(root: string): string {
  return `${root}/${OUTBOX_DIR}`;
}

/**
 * The outbox folder of one experiment. The prefix is URL-encoded into one
 * segment, and not checked: the outbox also keeps batches of a prefix the
 * server refused, for a person to look at.
 *
 * @param root The root directory.
 * @param prefix The experiment's prefix.
 * @returns `<root>/.outbox/<encodeURIComponent(prefix)>`.
 *
 * @example
 * ```ts
 * import { outboxDir } from "./layout.ts";
 *
 * console.log(outboxDir(".dash", "alice/mnist/baseline")); // .dash/.outbox/alice%2Fmnist%2Fbaseline
 * ```
 */
export function outboxDir(root: string, prefix: string): string {
  return `${outboxPath(root)}/${encodeURIComponent(prefix)}`;
}

/**
 * The outbox file of one request.
 *
 * @param root The root directory.
 * @param prefix The experiment's prefix.
 * @param session The session id.
 * @param seq The request's sequence number in its session.
 * @returns `<root>/.outbox/<encodeURIComponent(prefix)>/<session>-<seq>.json`.
 *
 * @example
 * ```ts
 * import { outboxFile } from "./layout.ts";
 *
 * console.log(outboxFile(".dash", "alice/x/y", "6f1c", 7)); // .dash/.outbox/alice%2Fx%2Fy/6f1c-7.json
 * ```
 */
export function outboxFile(root: string, prefix: string, session: string, seq: number): string {
  return `${outboxDir(root, prefix)}/${session}-${seq}${OUTBOX_FILE_EXTENSION}`;
}

/** The session and sequence number an outbox file's name holds. */
export interface OutboxFileName {
  /** The session id. */
  session: string;
  /** The sequence number. */
  seq: number;
}

/**
 * The session and seq of an outbox file's name, or undefined for a name that
 * is not `<session>-<seq>.json`.
 *
 * @param fileName A name listed in an experiment's outbox folder.
 * @returns The session and seq, or undefined.
 *
 * @example
 * ```ts
 * import { parseOutboxFileName } from "./layout.ts";
 *
 * console.log(parseOutboxFileName("6f1c-ab-7.json")); // { session: "6f1c-ab", seq: 7 }
 * console.log(parseOutboxFileName("notes.txt")); // undefined
 * ```
 */
export function parseOutboxFileName(fileName: string): OutboxFileName | undefined {
  const match = /^(.*)-(\d+)\.json$/.exec(fileName);
  return match ? { session: match[1], seq: Number(match[2]) } : undefined;
}

/**
 * Whether a name listed in an outbox folder is an outbox file (a temp file is not).
 *
 * @param fileName The name.
 * @returns True for a name ending in `.json`.
 *
 * @example
 * ```ts
 * import { isOutboxFile } from "./layout.ts";
 *
 * console.log(isOutboxFile("s-0.json"), isOutboxFile("s-0.json.1.ab.tmp")); // true false
 * ```
 */
export function isOutboxFile(fileName: string): boolean {
  return fileName.endsWith(OUTBOX_FILE_EXTENSION);
}

// ─── Temp files and the atomic replace ──────────────────────────────────────

/**
 * A fresh temp file's path beside `file`: `<file>.<pid>.<16 random hex digits>.tmp`,
 * at most 32 bytes longer than `file` (the room `MAX_FILE_NAME_BYTES` keeps).
 * With `secure`, the digits come from the platform's cryptographic random, so
 * that no one can guess the name and plant a link there first; without, from
 * `Math.random()`, which tells concurrent writers apart and costs nothing at
 * start-up (the first use of `crypto` costs milliseconds on Node and Deno).
 *
 * @param file The file the temp file will replace.
 * @param secure Whether the name must be unguessable.
 * @returns The temp file's path.
 *
 * @example
 * ```ts
 * import { tempPath } from "./layout.ts";
 *
 * console.log(tempPath(".dash/alice/x/y/status.json")); // e.g. .dash/alice/x/y/status.json.4242.9f86d081884c7d65.tmp
 * ```
 */
export function tempPath(file: string, secure = false): string {
  return `${file}.${processId() ?? 0}.${secure ? secureHex() : quickHex()}${TEMP_FILE_EXTENSION}`;
}

function secureHex(): string {
  let hex = "";
  for (const byte of crypto.getRandomValues(new Uint8Array(8))) hex += (byte < 16 ? "0" : "") + byte.toString(16);
  return hex;
}

function quickHex(): string {
  const half = (): string => Math.floor(Math.random() * 2 ** 32).toString(16).padStart(8, "0");
  return half() + half();
}

/**
 * Whether a path is a temp file (of {@linkcode tempPath}, or of an earlier version).
 *
 * @param path The path or name.
 * @returns True for a name ending in `.tmp`.
 *
 * @example
 * ```ts
 * import { isTempPath } from "./layout.ts";
 *
 * console.log(isTempPath("status.json.4242.9f86d081884c7d65.tmp"), isTempPath("status.json")); // true false
 * ```
 */
export function isTempPath(path: string): boolean {
  return path.endsWith(TEMP_FILE_EXTENSION);
}

/**
 * The file operations an atomic replace needs. The `FileSystem` of
 * `./file_system.ts` has them; a caller on `node:fs` passes its own.
 */
export interface ReplaceOperations {
  /** Name the temp file unguessably (see {@linkcode tempPath}): for files another user may want to plant a link at. */
  secureName?: boolean;
  /** Creates a file with this content (the temp file: its name is new). */
  writeFile(file: string, data: string | Uint8Array): void;
  /** Renames a file, replacing the target. */
  rename(from: string, to: string): void;
  /** Removes a file; nothing happens if it does not exist. */
  remove(file: string): void;
}

/**
 * Replaces a file's content atomically: writes a temp file of
 * {@linkcode tempPath} beside it, then renames it over the file, so that a
 * reader sees the old content or the new, never half. If a step fails, the temp
 * file is removed and the error thrown; the file keeps its old content.
 *
 * @param operations The file operations, e.g. `fileSystem` of `./file_system.ts`.
 * @param file The file to replace (its folder must exist).
 * @param data The new content.
 *
 * @example Replace a JSON file
 * ```ts
 * import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { replaceFileSync } from "./layout.ts";
 *
 * const dir = mkdtempSync(join(tmpdir(), "dash-"));
 * const operations = {
 *   writeFile: (file: string, data: string | Uint8Array) => writeFileSync(file, data),
 *   rename: (from: string, to: string) => renameSync(from, to),
 *   remove: (file: string) => rmSync(file, { force: true }),
 * };
 * replaceFileSync(operations, join(dir, "status.json"), '{"status":"RUNNING"}\n');
 * replaceFileSync(operations, join(dir, "status.json"), '{"status":"COMPLETED"}\n');
 * console.log(readFileSync(join(dir, "status.json"), "utf8")); // {"status":"COMPLETED"}
 * console.log(readdirSync(dir)); // [ "status.json" ]: no temp file is left
 * ```
 */
export function replaceFileSync(operations: ReplaceOperations, file: string, data: string | Uint8Array): void {
  const tmp = tempPath(file, operations.secureName === true);
  try {
    operations.writeFile(tmp, data);
    operations.rename(tmp, file);
  } catch (error) {
    try {
      operations.remove(tmp);
    } catch {
      // The first failure is the one to report.
    }
    throw error;
  }
}
