/**
 * The local backend: writes experiments to a `.dash/` directory as append-only
 * JSONL files and atomically replaced JSON state, and reads them back.
 *
 * ```
 * .dash/<owner>/<project>/<folders...>/<name>/
 *   experiment.json  status.json  parameters.jsonl  parameters.json  logs.jsonl
 *   metrics/<name>.jsonl  files/<path>  files.jsonl
 * ```
 *
 * @example Read what a script logged
 * ```ts
 * import { DashReader } from "./jsonl.ts";
 *
 * const reader = new DashReader(".dash");
 * for (const e of await reader.listExperiments()) console.log(e.prefix, e.status);
 * ```
 *
 * @module
 */
import type {
  Backend,
  Batch,
  ExistingState,
  ExperimentRecord,
  FileInfo,
  LogRecord,
  ParamValue,
  Status,
  StatusRecord,
} from "./backend.ts";
import { checkFilePath, checkMetricName } from "./backend.ts";
import type { ChunkFigures } from "./chunk_figures.ts";
import { StorageError } from "./errors.ts";
import { downsampleRange, IndexAppender, loadIndex, persistIndex, readRange, summarize } from "./read_index.ts";
import type { DownsampledRange, KeySummary, MetricIndex, RangePoints, RangeQuery } from "./read_index.ts";
import { approximateNumberAt, KeyScanner, numberAt } from "./record_text.ts";
import { fileSystem, PartialWriteError } from "./file_system.ts";
import type { AppendFile, DirectoryEntry } from "./file_system.ts";
import {
  entryPath,
  EXPERIMENT_FILE,
  experimentDir,
  FILES_DIR,
  FILES_INDEX,
  LOGS_FILE,
  metricOfFile,
  metricPath,
  METRICS_DIR,
  PARAMETERS_FILE,
  PARAMETERS_LOG,
  replaceFileSync,
  savedFilePath,
  STATUS_FILE,
} from "./layout.ts";

// ─── Writer ─────────────────────────────────────────────────────────────────

/** Files kept open for appending (a server may write to thousands of experiments). */
const MAX_OPEN_FILES = 128;

/** One write() call never carries more than this, so that appends stay whole lines. */
const MAX_WRITE_BYTES = 1 << 20;

/** Experiment folders whose state files are kept in memory, to be written again if the folder is removed. */
const MAX_REMEMBERED = 1024;

const NEWLINE = new Uint8Array([10]);

/**
 * Writes batches into the `.dash/` layout. Appends are synchronous `write`s of
 * whole lines on files opened with `O_APPEND`, so several processes can append
 * to one experiment at once; JSON state is replaced by temp file + rename.
 * Each metric file gets a read index beside it as it is appended to
 * (storage/read_index.ts); the index is never worth failing a write for.
 *
 * @example Write a batch: metric records travel as JSON text, one record a line
 * ```ts
 * import { mkdtempSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { JsonlBackend } from "./jsonl.ts";
 *
 * const backend = new JsonlBackend(mkdtempSync(join(tmpdir(), "dash-")));
 * await backend.open("alice/demo/x");
 * await backend.write("alice/demo/x", {
 *   metrics: { train: ['{"_ts":1,"step":0,"loss":1}\n{"_ts":2,"step":1,"loss":0.5}'] },
 *   logs: ['{"_ts":2,"level":"info","message":"epoch done"}'],
 * });
 * await backend.close();
 * ```
 */
export class JsonlBackend implements Backend {
  /** The root directory. */
  readonly root: string;
  #appending = new Map<string, AppendFile>();
  /** The read index of each metric file kept open, fed what is appended to it. */
  #indexes = new Map<string, IndexAppender>();
  #madeDirs = new Set<string>();
  #parts = new WeakMap<Batch, Map<string, PartProgress>>();
  /** The root with its links resolved, once it exists. */
  #realRoot: string | undefined;
  /** experiment.json and status.json as last written, by experiment folder: what a folder removed under the writer gets back. */
  #state = new Map<string, Map<typeof EXPERIMENT_FILE | typeof STATUS_FILE, unknown>>();

  /**
   * Creates a backend that writes under `root`; nothing is written until a batch comes.
   *
   * @param root The root directory, e.g. `.dash`.
   */
  constructor(root: string) {
    this.root = root;
  }

  /** The root directory, for error messages. */
  get description(): string {
    return JSON.stringify(this.root);
  }

  /**
   * Creates the experiment's directory and returns the parameters and files it holds.
   *
   * @param prefix The experiment's prefix.
   * @returns The state recorded by earlier sessions.
   */
  open(prefix: string): Promise<ExistingState> {
    return attempt(`open ${JSON.stringify(prefix)} under ${this.description}`, () => {
      const dir = this.#dir(prefix);
      this.#mkdir(dir);
      const params = readParams(dir);
      const files = [...latestFiles(entryPath(dir, FILES_INDEX)).values()];
      return { params, files, steps: lastSteps(entryPath(dir, METRICS_DIR)) };
    });
  }

  /**
   * Stores a batch.
   *
   * @param prefix The experiment's prefix.
   * @param batch The records and state patches.
   */
  write(prefix: string, batch: Batch): Promise<void> {
    return attempt(`write to ${this.description}`, () => this.writeSync(prefix, batch));
  }

  /**
   * Stores a batch before returning (used at process exit and when the caller never yields).
   *
   * @param prefix The experiment's prefix.
   * @param batch The records and state patches.
   */
  writeSync = (prefix: string, batch: Batch): void => {
    const dir = this.#dir(prefix);
    try {
      this.#writeBatch(prefix, dir, batch);
    } catch (error) {
      if (!fileSystem.isMissing(error)) throw error;
      // The folder, or part of it, was removed under the writer (say `rm -rf` while a server
      // runs): make it again and write what is not stored yet, rather than fail every batch.
      this.#recreate(dir);
      this.#writeBatch(prefix, dir, batch);
    }
  };

  /** Writes the parts of a batch not stored yet. */
  #writeBatch(prefix: string, dir: string, batch: Batch): void {
    // Names are checked before anything is written: a replaced JSON file (parameters.json,
    // experiment.json) is not undone, so a batch refused half-way would keep its state.
    for (const name in batch.metrics ?? {}) checkMetricName(name);
    for (const file of batch.files ?? []) checkFilePath(file.path);
    this.#mkdir(dir);
    // A batch written again after a failure skips the parts already stored, and an append
    // resumes where it stopped: no record is appended twice.
    let parts = this.#parts.get(batch);
    if (!parts) this.#parts.set(batch, parts = new Map());
    const once = (part: string, write: (progress: PartProgress) => void): void => {
      let progress = parts.get(part);
      if (!progress) parts.set(part, progress = newProgress());
      if (progress.done) return;
      write(progress);
      progress.done = true;
    };
    if (batch.metadata) once("metadata", () => this.#mergeExperiment(dir, batch.metadata!));
    if (batch.params) {
      // One line per `params.set` (a flat patch), folded in order by readers; appends from several processes lose nothing.
      once("params", (p) => this.#appendLines(entryPath(dir, PARAMETERS_LOG), [JSON.stringify(batch.params)], p));
      once("params-snapshot", () => this.#mergeParams(dir, batch.params!));
    }
    if (batch.files) for (const [i, file] of batch.files.entries()) once(`files/${i}`, () => this.#saveFile(prefix, dir, file));
    if (batch.metrics) {
      this.#mkdir(entryPath(dir, METRICS_DIR));
      for (const name in batch.metrics) once(`metrics/${name}`, (p) => this.#appendLines(metricPath(this.root, prefix, name), batch.metrics![name], p, true, batch.metricFigures?.[name]));
    }
    if (batch.logs) once("logs", (p) => this.#appendLines(entryPath(dir, LOGS_FILE), batch.logs!, p));
    // Status last: a reader that sees COMPLETED also sees the data before it.
    if (batch.status) this.#mergeStatus(dir, batch.status);
    // An ended experiment gets no more lines for a while: its files need not stay open.
    if (batch.status?.status && batch.status.status !== "RUNNING") this.#closeFiles((file) => file.startsWith(`${dir}/`));
  }

  /** Makes a removed experiment folder again, with the experiment.json and status.json this writer last wrote there. */
  #recreate(dir: string): void {
    for (const made of this.#madeDirs) if (made === dir || made.startsWith(`${dir}/`)) this.#madeDirs.delete(made);
    this.#mkdir(dir);
    for (const [name, value] of this.#state.get(dir) ?? []) {
      const file = entryPath(dir, name);
      if (fileSystem.size(file) === 0) writeJsonAtomic(file, value);
    }
  }

  /** Keeps what a state file of `dir` now holds, for {@linkcode #recreate}; the least recently written folders are forgotten first. */
  #remember(dir: string, name: typeof EXPERIMENT_FILE | typeof STATUS_FILE, value: unknown): void {
    const state = this.#state.get(dir) ?? new Map<typeof EXPERIMENT_FILE | typeof STATUS_FILE, unknown>();
    this.#state.delete(dir);
    this.#state.set(dir, state.set(name, value));
    if (this.#state.size > MAX_REMEMBERED) this.#state.delete(this.#state.keys().next().value!);
  }

  /** Flushes appended files to the disk and closes them. */
  close(): Promise<void> {
    return attempt(`close files under ${this.description}`, () => this.#closeFiles(() => true));
  }

  /** Closes the matching files (after a sync to the disk, where `sync`); every one is closed even if one fails. */
  #closeFiles(which: (file: string) => boolean, sync = true): void {
    let failure: unknown;
    for (const [name, file] of this.#appending) {
      if (!which(name)) continue;
      this.#appending.delete(name);
      try {
        if (sync) file.sync();
      } catch (error) {
        failure ??= error;
      } finally {
        file.close();
        this.#closeIndex(name);
      }
    }
    if (failure !== undefined) throw failure;
  }

  /** Writes the block being filled of a metric file's index and closes it; the index is not worth failing a write or a close for. */
  #closeIndex(file: string): void {
    const index = this.#indexes.get(file);
    if (index === undefined) return;
    this.#indexes.delete(file);
    try {
      index.close();
    } catch {
      // A reader indexes what the index file lacks.
    }
  }

  #dir(prefix: string): string {
    return experimentDir(this.root, prefix);
  }

  #mkdir(dir: string): void {
    if (this.#madeDirs.has(dir)) return;
    this.checkInside(dir);
    fileSystem.makeDirectory(dir);
    // A server writes to ever more experiments: forgetting the folders made only costs a check each.
    if (this.#madeDirs.size >= MAX_REMEMBERED * 8) this.#madeDirs.clear();
    this.#madeDirs.add(dir);
  }

  /**
   * Throws unless `path` stays inside the root once links are resolved: a link
   * planted in the root (an experiment folder, `metrics/x.jsonl`, `files/dir`)
   * must not let a write land outside it. The nearest part of the path that
   * exists is resolved; the parts after it are about to be made, so they are no links.
   *
   * @param path A path under the root, as the writer joins it.
   * @throws {OutsideRootError} When a link leads the path outside the root.
   */
  checkInside(path: string): void {
    let rest = "";
    for (let at = path; at.length > this.root.length; at = at.slice(0, at.lastIndexOf("/"))) {
      const real = fileSystem.realPath(at);
      if (real === undefined) {
        if (fileSystem.isLink(at)) throw outsideRoot(path, this.root, `a link to nothing at ${JSON.stringify(at)}`);
        rest = at.slice(at.lastIndexOf("/")) + rest;
        continue;
      }
      const root = this.#realRoot ??= fileSystem.realPath(this.root);
      const found = real + rest;
      if (root === undefined || (found !== root && !found.startsWith(root.endsWith("/") ? root : `${root}/`))) {
        throw outsideRoot(path, this.root, `a link that leads outside the root, to ${JSON.stringify(found)}`);
      }
      return;
    }
  }

  /**
   * Opens a file for appending (after checking it leads nowhere outside the
   * root). A file whose last line is torn (a crash or a full disk mid-line)
   * first gets a newline, so that the next record starts a line of its own;
   * not when `progress` says the torn line is the start of the piece it resumes.
   */
  #openAppend(file: string, progress: PartProgress): AppendFile {
    this.checkInside(file);
    const appending = fileSystem.openAppend(file);
    try {
      const last = lastByte(file);
      if (last === undefined) progress.landed = 0;
      else if (last !== 10 && progress.landed === 0 && isTornTail(file)) appending.write(NEWLINE, 1);
    } catch (error) {
      appending.close();
      throw error;
    }
    return appending;
  }

  /**
   * Appends records given as JSON text or its UTF-8 bytes (chunks of lines),
   * copying them one after the other into a reused buffer: each write is whole
   * lines of at most MAX_WRITE_BYTES (more only for a single longer chunk), and
   * nothing is joined. `progress` records the chunks written, so that a retry
   * after a failed write resumes at the first chunk not written.
   */
  #appendLines(file: string, chunks: readonly (string | Uint8Array)[], progress = newProgress(), indexed = false, figures?: readonly (ChunkFigures | undefined)[]): void {
    let appending = this.#appending.get(file);
    if (appending) {
      this.#appending.delete(file); // kept in least-recently-used order
      if (appending.isGone()) {
        // Removed since it was opened: what is written to it now would be lost.
        appending.close();
        this.#closeIndex(file);
        appending = undefined;
        progress.landed = 0;
      }
    }
    if (!appending) {
      if (this.#appending.size >= MAX_OPEN_FILES) {
        const oldest = this.#appending.keys().next().value!;
        // Without a sync: this is on the write path, and close() syncs what stays open.
        this.#closeFiles((name) => name === oldest, false);
      }
      appending = this.#openAppend(file, progress);
      if (indexed) this.#openIndex(file);
    }
    this.#appending.set(file, appending);
    const index = indexed ? this.#indexes.get(file) : undefined;
    let used = 0;
    let pieceStart = progress.nextChunk;
    const write = (next: number): void => {
      const resumed = progress.landed > 0;
      try {
        writePiece(appending, used, progress, next);
      } catch (error) {
        index?.lose();
        throw error;
      }
      if (index !== undefined && used > 0) this.#indexAppended(file, index, chunks, pieceStart, next, resumed ? -1 : used, figures);
      pieceStart = next;
    };
    for (let i = progress.nextChunk; i < chunks.length; i++) {
      const chunk = chunks[i];
      const room = (typeof chunk === "string" ? chunk.length * 3 : chunk.length) + 1;
      if (used + room > scratch.length) {
        if (used > 0) write(i);
        used = 0;
        if (room > scratch.length) scratch = new Uint8Array(room);
      }
      const before = used;
      if (typeof chunk === "string") {
        used += encoder.encodeInto(chunk, scratch.subarray(used)).written;
      } else {
        scratch.set(chunk, used);
        used += chunk.length;
      }
      chunkBytes[i] = used - before;
      scratch[used++] = 10;
    }
    write(chunks.length);
  }

  /** Starts indexing a metric file just opened for appending; without an index the file is still written. */
  #openIndex(file: string): void {
    try {
      this.#indexes.set(file, IndexAppender.open(file));
    } catch {
      // A reader indexes the file itself.
    }
  }

  /** Indexes chunks `[from, to)` just appended (`bytes` of them; -1 when part of them landed earlier). */
  #indexAppended(file: string, index: IndexAppender, chunks: readonly (string | Uint8Array)[], from: number, to: number, bytes: number, figures?: readonly (ChunkFigures | undefined)[]): void {
    try {
      if (bytes < 0) index.lose();
      else index.appended(chunks, chunkBytes, from, to, bytes, figures);
    } catch {
      index.lose();
      this.#closeIndex(file);
    }
  }

  #mergeExperiment(dir: string, patch: ExperimentRecord): void {
    const file = entryPath(dir, EXPERIMENT_FILE);
    const now = Date.now() / 1000;
    const old = readJson<ExperimentFile>(file);
    const next = { ...old, ...patch, createdAt: old?.createdAt ?? now, updatedAt: now };
    writeJsonAtomic(file, next);
    this.#remember(dir, EXPERIMENT_FILE, next);
  }

  /**
   * Replaces parameters.json, a snapshot kept for tools that read it. Two
   * processes may replace it at once and one's keys go missing there; never
   * from parameters.jsonl, which holds every patch and is what readers fold.
   */
  #mergeParams(dir: string, params: Record<string, ParamValue>): void {
    const file = entryPath(dir, PARAMETERS_FILE);
    const old = readJson<ParametersFile>(file);
    const next: ParametersFile = {
      version: (old?.version ?? 0) + 1,
      data: { ...old?.data, ...params },
      updatedAt: Date.now() / 1000,
    };
    writeJsonAtomic(file, next);
  }

  #mergeStatus(dir: string, patch: StatusRecord): void {
    const file = entryPath(dir, STATUS_FILE);
    const old = readJson<StatusRecord>(file);
    const next: StatusRecord = { ...old, ...patch };
    if (patch.status === "RUNNING") {
      // A new session: what the last one left behind does not describe it.
      if (!("error" in patch)) delete next.error;
      if (!("host" in patch)) delete next.host;
    }
    writeJsonAtomic(file, next);
    this.#remember(dir, STATUS_FILE, next);
  }

  #saveFile(prefix: string, dir: string, file: FileInfo & { data: Uint8Array }): void {
    const target = savedFilePath(this.root, prefix, file.path);
    const folder = target.slice(0, target.lastIndexOf("/"));
    this.#mkdir(folder);
    // Checked at every save, not only when the folder was made: a link may replace it since.
    this.checkInside(folder);
    replaceFileSync(fileSystem, target, file.data);
    const { data: _data, ...info } = file;
    this.#appendLines(entryPath(dir, FILES_INDEX), [JSON.stringify(info)]);
  }
}

/** How far the append of one part of a batch (a metric's records, the logs) got. */
interface PartProgress {
  /** The part is stored. */
  done: boolean;
  /** The first chunk not yet written. */
  nextChunk: number;
  /** Bytes of the piece that starts at `nextChunk` already in the file (a write that failed part-way). */
  landed: number;
}

function newProgress(): PartProgress {
  return { done: false, nextChunk: 0, landed: 0 };
}

/**
 * Writes the first `used` bytes of the scratch buffer, less those that landed
 * before (the same chunks encode to the same bytes); on success the chunks
 * before `nextChunk` are stored.
 */
function writePiece(appending: AppendFile, used: number, progress: PartProgress, nextChunk: number): void {
  const from = progress.landed;
  try {
    appending.write(scratch.subarray(from), used - from);
  } catch (error) {
    if (error instanceof PartialWriteError) progress.landed = from + error.bytesWritten;
    throw error;
  }
  progress.nextChunk = nextChunk;
  progress.landed = 0;
}

/** The last byte of a file; undefined if it is empty or missing. */
/** How long a file must stay unchanged, its last line unended, before that line counts as torn. */
const TORN_TAIL_WAIT_MS = 5;

/**
 * Whether a file that ends without a newline was left so (a crash, a full
 * disk) rather than being appended to right now by another writer: a reader
 * can see another process's write half done, and ending that with a newline
 * of ours would leave an empty line. The file must keep its size, and still
 * end without a newline, for a few milliseconds.
 */
function isTornTail(file: string): boolean {
  const size = fileSystem.size(file);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, TORN_TAIL_WAIT_MS);
  return fileSystem.size(file) === size && lastByte(file) !== 10;
}

function lastByte(file: string): number | undefined {
  const size = fileSystem.size(file);
  const reading = size > 0 ? fileSystem.openRead(file) : undefined;
  if (!reading) return undefined;
  try {
    const byte = new Uint8Array(1);
    return reading.read(byte, size - 1) === 1 ? byte[0] : undefined;
  } finally {
    reading.close();
  }
}

/**
 * A write refused because a link planted in the root would lead it outside:
 * the request is at fault, not the disk, so retrying it cannot help.
 *
 * @example Answer 403 rather than retry
 * ```ts
 * import { OutsideRootError } from "./jsonl.ts";
 *
 * const error = new OutsideRootError("Refusing to write \".dash/a/b/x\": expected a path inside the root \".dash\", found a link");
 * console.log(error.retryable); // false
 * ```
 */
export class OutsideRootError extends StorageError {
  /**
   * Creates the error, never retryable; a server answers it with 403.
   *
   * @param message The path refused, the root, and where the link leads.
   */
  constructor(message: string) {
    super(message, { status: 403, retryable: false });
  }
}

/**
 * The whole lines of a JSONL file; a torn last line (a crash or a full disk
 * mid-append) is left out. Empty lines are kept, as the file has them.
 *
 * @param file The file.
 * @returns Its whole lines, the bytes they take (with their newlines), and whether a torn line followed.
 *
 * @example
 * ```ts
 * import { mkdtempSync, writeFileSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { wholeLines } from "./jsonl.ts";
 *
 * const file = join(mkdtempSync(join(tmpdir(), "lines-")), "x.jsonl");
 * writeFileSync(file, '{"a":1}\n{"a":');
 * console.log(wholeLines(file)); // { lines: [ '{"a":1}' ], bytes: 8, torn: true }
 * ```
 */
export function wholeLines(file: string): { lines: string[]; bytes: number; torn: boolean } {
  const text = fileSystem.readText(file);
  if (text === undefined) return { lines: [], bytes: 0, torn: false };
  const end = text.lastIndexOf("\n") + 1;
  const whole = text.slice(0, end);
  return { lines: end === 0 ? [] : whole.slice(0, -1).split("\n"), bytes: encoder.encode(whole).byteLength, torn: end < text.length };
}

/** The error for a read or write that a link would lead outside the root. */
function outsideRoot(path: string, root: string, found: string): StorageError {
  return new OutsideRootError(`Refusing ${JSON.stringify(path)}: expected a path inside the root ${JSON.stringify(root)}, found ${found}`);
}

/**
 * The parameters of an experiment folder: parameters.json (written by
 * earlier versions, and kept as a snapshot) with every line of
 * parameters.jsonl applied over it in order, later lines winning.
 *
 * @param dir The experiment's folder, e.g. `.dash/alice/demo/x`.
 * @returns Flattened parameters (empty if none).
 *
 * @example
 * ```ts
 * import { readParams } from "./jsonl.ts";
 *
 * console.log(readParams(".dash/alice/demo/x")); // {} where nothing was recorded
 * ```
 */
export function readParams(dir: string): Record<string, ParamValue> {
  const params: Record<string, ParamValue> = {};
  const base = readJson<ParametersFile>(entryPath(dir, PARAMETERS_FILE))?.data;
  const patches = readJsonl<Record<string, ParamValue>>(entryPath(dir, PARAMETERS_LOG));
  for (const patch of base === undefined ? patches : [base, ...patches]) {
    if (patch === null || typeof patch !== "object" || Array.isArray(patch)) continue;
    for (const key of Object.keys(patch)) setOwn(params, key, patch[key]);
  }
  return params;
}

/** `object[key] = value`, also for the key "__proto__" (which an assignment would take as the prototype). */
function setOwn<T>(object: Record<string, T>, key: string, value: T): void {
  if (key === "__proto__") Object.defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true });
  else object[key] = value;
}

/**
 * Reads a local file's bytes (used by `exp.files.copy`).
 *
 * @param file The path.
 * @returns The content.
 *
 * @example
 * ```ts
 * import { mkdtempSync, writeFileSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { readLocalFile } from "./jsonl.ts";
 *
 * const file = join(mkdtempSync(join(tmpdir(), "dash-")), "model.bin");
 * writeFileSync(file, new Uint8Array([1, 2, 3]));
 * console.log((await readLocalFile(file)).length); // 3
 * ```
 */
export async function readLocalFile(file: string): Promise<Uint8Array> {
  return await attempt(`read ${JSON.stringify(file)}`, () => fileSystem.readBytes(file));
}

interface ParametersFile {
  version: number;
  data: Record<string, ParamValue>;
  updatedAt: number;
}

interface ExperimentFile extends ExperimentRecord {
  createdAt: number;
  updatedAt: number;
}

const encoder = new TextEncoder();
// encodeInto a reused buffer: on Deno it is many times faster than encode() or Buffer.from().
let scratch = new Uint8Array(MAX_WRITE_BYTES);
/** The UTF-8 bytes of each chunk of the append under way, for the read index. */
const chunkBytes: number[] = [];

function writeJsonAtomic(file: string, value: unknown): void {
  replaceFileSync(fileSystem, file, JSON.stringify(value, null, 2) + "\n");
}

function readJson<T>(file: string): T | undefined {
  const text = fileSystem.readText(file);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}

/** Joins path segments with "/", which every runtime accepts on every platform. */
function join(...segments: string[]): string {
  return segments.join("/");
}

/** Runs file work and turns a failure into a StorageError that says what and where. */
async function attempt<T>(what: string, work: () => T): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof StorageError) throw error;
    const detail = error instanceof Error ? error.message : String(error);
    // Deno's permission errors ("Requires write access to ...") never say so in these words.
    const denied = error instanceof Error && error.name === "NotCapable" ? "permission denied: " : "";
    throw new StorageError(`Could not ${what}: ${denied}${detail}`, { cause: error });
  }
}

// ─── Reader ─────────────────────────────────────────────────────────────────

/** An experiment as listed by {@linkcode DashReader.listExperiments}. */
export interface ExperimentSummary {
  /** The prefix. */
  prefix: string;
  /** The stored status (RUNNING for a run that never ended). */
  status: Status | "UNKNOWN";
  /** True for a RUNNING experiment whose heartbeat stopped: it probably crashed. */
  stale: boolean;
  /** Tags. */
  tags: string[];
  /** A description. */
  readme?: string;
  /** When it was created, epoch seconds. */
  createdAt?: number;
  /** When it last started. */
  startedAt?: number;
  /** When it ended. */
  endedAt?: number | null;
  /** Its last heartbeat. */
  heartbeatAt?: number;
}

/** Options of {@linkcode DashReader.listExperiments}. */
export interface ListOptions {
  /** Only prefixes that start with this. */
  prefix?: string;
  /** Only this status; `"stale"` selects stale runs. */
  status?: string;
}

/** A series read by {@linkcode DashReader.series}: parallel arrays. */
export interface Series {
  /** The key, e.g. `train/loss`. */
  key: string;
  /** Steps. */
  step: number[];
  /** Wall-clock times, epoch seconds. */
  ts: number[];
  /** Values; non-finite values come back as NaN and ±Infinity. */
  value: number[];
  /** Values of the field asked for as `x` (only rows that have it). */
  x?: number[];
}

export type { DownsampledRange, KeySummary, RangeQuery } from "./read_index.ts";

/** What {@linkcode DashReader.overview} returns. */
export interface ExperimentOverview {
  /** The prefix. */
  prefix: string;
  /** experiment.json, or null. */
  metadata: (ExperimentRecord & { createdAt?: number; updatedAt?: number }) | null;
  /** status.json with `stale`, or null. */
  status: (StatusRecord & { stale: boolean }) | null;
  /** Flattened parameters. */
  params: Record<string, ParamValue>;
  /** Count, min, max and last per metric key. */
  summary: Record<string, KeySummary>;
  /** Saved files. */
  files: FileInfo[];
}

/** Options of {@linkcode DashReader.logs}. */
export interface LogQuery {
  /** Only this level and above (`debug` < `info` < `warn` < `error` < `fatal`). */
  level?: string;
  /** Skip this many lines. */
  offset?: number;
  /** At most this many lines. */
  limit?: number;
}

const LEVEL_RANK = new Map<string, number>([["debug", 0], ["info", 1], ["warn", 2], ["error", 3], ["fatal", 4]]);
const DEFAULT_METRIC = "default";

/**
 * Reads the `.dash/` layout: experiments with their status, metadata, params,
 * logs, metric keys, series and summaries. Tolerates a torn last line.
 * Summaries and charts read each metric file's read index and only the
 * blocks of the JSONL they need; an index that is missing or does not match
 * the JSONL is rebuilt from it, and written again where the root allows.
 *
 * @example Read back a series the writer stored
 * ```ts
 * import { mkdtempSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { DashReader, JsonlBackend } from "./jsonl.ts";
 *
 * const root = mkdtempSync(join(tmpdir(), "dash-"));
 * const backend = new JsonlBackend(root);
 * await backend.write("alice/mnist/baseline", { metrics: { train: ['{"_ts":1,"step":0,"loss":1}\n{"_ts":2,"step":1,"loss":0.5}'] } });
 * await backend.close();
 *
 * const reader = new DashReader(root);
 * const series = await reader.series("alice/mnist/baseline", "train/loss");
 * console.log(series.step, series.value); // [0, 1] [1, 0.5]
 * console.log(await reader.summary("alice/mnist/baseline"));
 * ```
 */
export class DashReader {
  /** The root directory. */
  readonly root: string;
  #staleFactor: number;
  /** Series (ids starting "series\0") and metric files' read indexes ("index\0"), least recently used first. */
  #cache: ByteBoundedCache<SeriesRead | IndexRead>;

  /**
   * Creates a reader of the experiments under `root`.
   *
   * Series and metric summaries stay in memory once read, so that reading one
   * again only reads what was appended since (a server answering zooms and
   * live updates); the least recently used go first when the cache is full.
   *
   * @param root The root directory, e.g. `.dash`.
   * @param options `staleAfterIntervals`: missed heartbeats before a RUNNING run
   * counts as stale (default 3). `cacheBytes`: the bound on the memory the
   * cache takes, estimated (default 256 MiB; 0 turns the cache off); a series
   * larger than that is never kept. `cache`: at most this many entries as
   * well (default no bound; 0 turns the cache off).
   */
  constructor(root: string, options: ReaderOptions = {}) {
    this.root = root;
    this.#staleFactor = options.staleAfterIntervals ?? 3;
    this.#cache = new ByteBoundedCache(checkedCount("cacheBytes", options.cacheBytes, DEFAULT_CACHE_BYTES), checkedCount("cache", options.cache, Infinity));
  }

  /**
   * What the cache holds now: entries and their estimated bytes (for tests and monitoring).
   *
   * @returns The entry count and the bytes, never more than `cacheBytes`.
   */
  cacheStats(): { entries: number; bytes: number } {
    return this.#cache.stats();
  }

  /**
   * Lists experiments (directories with an experiment.json) under the root.
   *
   * @param options A prefix and a status to filter by.
   * @returns The experiments, sorted by prefix.
   */
  async listExperiments(options: ListOptions = {}): Promise<ExperimentSummary[]> {
    const found: ExperimentSummary[] = [];
    const walk = (dir: string, prefix: string): void => {
      let entries: DirectoryEntry[];
      try {
        entries = fileSystem.list(dir);
      } catch {
        return;
      }
      const isExperiment = entries.some((e) => e.isFile && e.name === EXPERIMENT_FILE);
      if (isExperiment) found.push(this.#summarize(dir, prefix));
      for (const entry of entries) {
        if (!entry.isDirectory || entry.name.startsWith(".")) continue;
        if (isExperiment && (entry.name === METRICS_DIR || entry.name === FILES_DIR)) continue;
        walk(join(dir, entry.name), prefix ? `${prefix}/${entry.name}` : entry.name);
      }
    };
    walk(this.root, "");
    return found
      .filter((e) => !options.prefix || e.prefix === options.prefix || e.prefix.startsWith(options.prefix.replace(/\/?$/, "/")))
      .filter((e) => !options.status || (options.status.toLowerCase() === "stale" ? e.stale : e.status === options.status.toUpperCase()))
      .sort((a, b) => a.prefix.localeCompare(b.prefix));
  }

  /**
   * Whether an experiment exists.
   *
   * @param prefix The prefix.
   * @returns True if it has an experiment.json.
   */
  exists(prefix: string): Promise<boolean> {
    return Promise.resolve(fileSystem.readText(entryPath(this.#dir(prefix), EXPERIMENT_FILE)) !== undefined);
  }

  /**
   * Reads experiment.json.
   *
   * @param prefix The prefix.
   * @returns Its metadata, or undefined.
   */
  experiment(prefix: string): Promise<(ExperimentRecord & { createdAt?: number; updatedAt?: number }) | undefined> {
    return Promise.resolve(readJson(entryPath(this.#dir(prefix), EXPERIMENT_FILE)));
  }

  /**
   * Reads status.json, with `stale` computed from the heartbeat.
   *
   * @param prefix The prefix.
   * @returns The status, or undefined.
   */
  status(prefix: string): Promise<(StatusRecord & { stale: boolean }) | undefined> {
    const status = readJson<StatusRecord>(entryPath(this.#dir(prefix), STATUS_FILE));
    return Promise.resolve(status && { ...status, stale: this.#isStale(status) });
  }

  /**
   * Reads the parameters.
   *
   * @param prefix The prefix.
   * @returns Flattened parameters (empty if none).
   */
  params(prefix: string): Promise<Record<string, ParamValue>> {
    return Promise.resolve(readParams(this.#dir(prefix)));
  }

  /**
   * Reads log lines.
   *
   * @param prefix The prefix.
   * @param query Level filter and paging.
   * @returns The lines, oldest first.
   */
  logs(prefix: string, query: LogQuery = {}): Promise<LogRecord[]> {
    const minRank = query.level === undefined ? 0 : LEVEL_RANK.get(query.level) ?? 0;
    const lines = readJsonl<LogRecord>(entryPath(this.#dir(prefix), LOGS_FILE))
      .filter((l) => (LEVEL_RANK.get(l.level) ?? 1) >= minRank);
    const offset = query.offset ?? 0;
    return Promise.resolve(lines.slice(offset, query.limit === undefined ? undefined : offset + query.limit));
  }

  /**
   * Lists the metric keys, e.g. `["loss", "train/acc", "train/loss"]`.
   *
   * @param prefix The prefix.
   * @returns Keys `metric/field`, or `field` for the default metric.
   */
  async metricKeys(prefix: string): Promise<string[]> {
    return Object.keys(await this.summary(prefix));
  }

  /**
   * Reads one key's series.
   *
   * @param prefix The prefix.
   * @param key `metric/field` (or `field` for the default metric).
   * @param options `x`: another field of the same metric (e.g. `epoch`) to return as `x`.
   * @returns Steps, times and values (and `x`), in the order written.
   */
  series(prefix: string, key: string, options: { x?: string } = {}): Promise<Series> {
    let listed: Map<string, string> | undefined;
    const { metric, field } = splitKey(key, (m) => (listed ??= this.#metricFiles(prefix)).has(m));
    const file = listed?.get(metric) ?? metricPath(this.root, prefix, metric);
    const id = `series\0${file}\0${field}\0${options.x ?? ""}`;
    const read = this.#take<SeriesRead>(id, file) ?? { bytes: 0, step: [], ts: [], value: [], x: options.x === undefined ? undefined : [] };
    if (fileSystem.size(file) > read.bytes) read.bytes = readSeries(file, read, field, options.x);
    // A cached series grows at the next read: the caller gets a copy. One not kept is the caller's.
    const kept = this.#cache.put(id, read, seriesMemory(id, read));
    const copy = kept ? (a: number[]) => a.slice() : (a: number[]) => a;
    const series: Series = { key, step: copy(read.step), ts: copy(read.ts), value: copy(read.value) };
    if (read.x) series.x = copy(read.x);
    return Promise.resolve(series);
  }

  /**
   * Summarises every key: count, min, max, last.
   *
   * @param prefix The prefix.
   * @returns Summaries by key, sorted by key.
   */
  summary(prefix: string): Promise<Record<string, KeySummary>> {
    // A Map: a field may be named "__proto__", which an assignment to {} would lose.
    const result = new Map<string, KeySummary>();
    for (const [metric, file] of this.#metricFiles(prefix)) {
      for (const [field, s] of summarize(this.#index(file).blocks())) result.set(metric === DEFAULT_METRIC ? field : `${metric}/${field}`, s);
    }
    return Promise.resolve(Object.fromEntries([...result].sort(([a], [b]) => a.localeCompare(b))));
  }

  /**
   * One key's points with the step or the time in a range, min-max
   * downsampled to at most `query.points`, read through the metric file's
   * index: only the blocks of the JSONL that the range cuts are read (every
   * block in range when they are few); buckets are whole blocks of the index
   * where the range has many (see downsampleRange in storage/read_index.ts).
   *
   * @param prefix The prefix.
   * @param key `metric/field` (or `field` for the default metric).
   * @param query The x axis (`step` or `_ts`), the range and the number of points.
   * @returns The points kept (x, value and time), the number in range, and whether any were left out.
   *
   * @example A chart of a long series reads a few blocks
   * ```ts
   * import { mkdtempSync } from "node:fs";
   * import { tmpdir } from "node:os";
   * import { join } from "node:path";
   * import { DashReader, JsonlBackend } from "./jsonl.ts";
   *
   * const root = mkdtempSync(join(tmpdir(), "dash-"));
   * const backend = new JsonlBackend(root);
   * const lines = Array.from({ length: 10_000 }, (_, i) => JSON.stringify({ _ts: i, step: i, loss: 1 / (i + 1) }));
   * await backend.write("alice/mnist/long", { metrics: { train: [lines.join("\n")] } });
   * await backend.close();
   *
   * const chart = await new DashReader(root).downsampled("alice/mnist/long", "train/loss", { x: "step", from: 100, to: 199, points: 1000 });
   * console.log(chart.total, chart.downsampled, chart.x[0]); // 100 false 100
   * ```
   */
  downsampled(prefix: string, key: string, query: RangeQuery): Promise<DownsampledRange> {
    let listed: Map<string, string> | undefined;
    const { metric, field } = splitKey(key, (m) => (listed ??= this.#metricFiles(prefix)).has(m));
    const file = listed?.get(metric) ?? metricPath(this.root, prefix, metric);
    const blocks = this.#index(file).blocks();
    return Promise.resolve(downsampleRange(blocks, field, query, (start, end) => pointsOf(readRange(file, start, end), field)));
  }

  /**
   * The read index of a metric file: cached, or loaded from its index file
   * (rewritten where stale, if the root can be written), then brought up to
   * the file's last whole line.
   */
  #index(file: string): MetricIndex {
    const id = `index\0${file}`;
    const size = fileSystem.size(file);
    const cached = this.#cache.take(id) as IndexRead | undefined;
    let read: IndexRead;
    if (cached !== undefined && size >= cached.bytes) {
      read = cached;
      if (size > read.bytes) read.index.scanFile(file, size);
    } else {
      const loaded = loadIndex(file);
      read = { bytes: 0, index: loaded.index };
      if (loaded.stale) {
        try {
          persistIndex(file, loaded);
        } catch {
          // A root this reader cannot write: the index is rebuilt in memory at each load.
        }
      }
    }
    read.bytes = read.index.bytes;
    this.#cache.put(id, read, indexMemory(id, read.index));
    return read.index;
  }

  /**
   * Everything about one experiment at once, as `ml-dash show` and the read API give it.
   *
   * @param prefix The prefix.
   * @returns Metadata, status (with `stale`), params, the summary per key and the files.
   */
  async overview(prefix: string): Promise<ExperimentOverview> {
    const [metadata, status, params, summary, files] = await Promise.all([
      this.experiment(prefix),
      this.status(prefix),
      this.params(prefix),
      this.summary(prefix),
      this.files(prefix),
    ]);
    return { prefix, metadata: metadata ?? null, status: status ?? null, params, summary, files };
  }

  /**
   * The step of each metric's last record, from which a resumed run continues.
   *
   * @param prefix The prefix.
   * @returns The last step by metric name (metrics without records are left out).
   */
  lastSteps(prefix: string): Promise<Record<string, number>> {
    return Promise.resolve(lastSteps(entryPath(this.#dir(prefix), METRICS_DIR)));
  }

  /**
   * Lists saved files (the latest entry per path).
   *
   * @param prefix The prefix.
   * @returns File entries.
   */
  files(prefix: string): Promise<FileInfo[]> {
    return Promise.resolve([...latestFiles(entryPath(this.#dir(prefix), FILES_INDEX)).values()]);
  }

  /**
   * The local path of a saved file, for serving it.
   *
   * @param prefix The prefix.
   * @param file The file's path under `files/`.
   * @returns The path on disk.
   */
  filePath(prefix: string, file: string): string {
    return savedFilePath(this.root, prefix, file);
  }

  #dir(prefix: string): string {
    return experimentDir(this.root, prefix);
  }

  /**
   * Takes entry `id` (about `file`) out of the cache, to be put back once
   * read further. An entry whose file shrank is dropped: JSONL files only grow
   * unless replaced. The id's namespace says which type the entry has.
   */
  #take<T extends SeriesRead>(id: string, file: string): T | undefined {
    const entry = this.#cache.take(id) as T | undefined;
    return entry && fileSystem.size(file) >= entry.bytes ? entry : undefined;
  }

  /**
   * The metric files of an experiment by metric name, sorted by name. Names are
   * taken as listed: a file a script made with a name the writer refuses is read too.
   */
  #metricFiles(prefix: string): Map<string, string> {
    const dir = entryPath(this.#dir(prefix), METRICS_DIR);
    const files: [string, string][] = [];
    for (const entry of fileSystem.list(dir)) {
      const metric = metricOfFile(entry.name);
      if (metric !== undefined) files.push([metric, join(dir, entry.name)]);
    }
    return new Map(files.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  #summarize(dir: string, prefix: string): ExperimentSummary {
    const meta = readJson<ExperimentFile>(entryPath(dir, EXPERIMENT_FILE));
    const status = readJson<StatusRecord>(entryPath(dir, STATUS_FILE));
    return {
      prefix,
      status: status?.status ?? "UNKNOWN",
      stale: status ? this.#isStale(status) : false,
      tags: meta?.tags ?? [],
      readme: meta?.readme,
      createdAt: meta?.createdAt,
      startedAt: status?.startedAt,
      endedAt: status?.endedAt,
      heartbeatAt: status?.heartbeatAt,
    };
  }

  #isStale(status: StatusRecord): boolean {
    if (status.status !== "RUNNING" || status.heartbeatAt === undefined) return false;
    const interval = status.heartbeatInterval ?? 5;
    return Date.now() / 1000 - status.heartbeatAt > interval * this.#staleFactor + 1;
  }
}

/** Options of {@linkcode DashReader}. */
export interface ReaderOptions {
  /** Missed heartbeats before a RUNNING run counts as stale (default 3). */
  staleAfterIntervals?: number;
  /** The bound on the estimated bytes of cached series and summaries (default 256 MiB; 0: no cache). */
  cacheBytes?: number;
  /** The bound on the number of cached entries (default none; 0: no cache). */
  cache?: number;
}

const DEFAULT_CACHE_BYTES = 256 * 2 ** 20;

/**
 * What a number costs in a cached array: 8 bytes of double, the room an array
 * keeps to grow, and what V8 keeps besides (measured: about 20 bytes on Deno, 11 on Bun).
 */
const CACHED_NUMBER_BYTES = 24;

/** What a cache entry costs beside its numbers: its objects, its Map slot. */
const CACHE_ENTRY_BYTES = 256;

/** What a block of a read index costs beside its keys: its object, its numbers, its Map. */
const INDEX_BLOCK_BYTES = 200;

/** What one key of a block costs beside its name: a KeyBlock of 13 numbers and its Map slot. */
const INDEX_KEY_BYTES = 200;

function checkedCount(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value === "number" && value >= 0) return value;
  throw new RangeError(`Invalid ${name} ${String(value)}: expected a number, 0 or more`);
}

/** A series' estimated memory: its numbers, its key (two bytes a UTF-16 unit), its objects. */
function seriesMemory(id: string, read: SeriesRead): number {
  const numbers = read.step.length + read.ts.length + read.value.length + (read.x?.length ?? 0);
  return CACHE_ENTRY_BYTES + id.length * 2 + numbers * CACHED_NUMBER_BYTES;
}

/** A read index's estimated memory: per block its numbers, per key of a block its name and its numbers. */
function indexMemory(id: string, index: MetricIndex): number {
  let bytes = CACHE_ENTRY_BYTES + id.length * 2;
  for (const block of index.blocks()) {
    bytes += INDEX_BLOCK_BYTES;
    for (const field of block.keys.keys()) bytes += INDEX_KEY_BYTES + field.length * 2;
  }
  return bytes;
}

/**
 * A least-recently-used cache bounded by the estimated bytes of its entries
 * (and by their count): an entry is taken out while it is read further and
 * put back with its new size, which evicts the oldest until both bounds hold.
 */
class ByteBoundedCache<T> {
  readonly #maxBytes: number;
  readonly #maxEntries: number;
  /** In Map order: least recently used first. */
  #entries = new Map<string, { value: T; bytes: number }>();
  #bytes = 0;

  constructor(maxBytes: number, maxEntries: number) {
    this.#maxBytes = maxBytes;
    this.#maxEntries = maxEntries;
  }

  /** Removes and returns entry `id`, if it is cached. */
  take(id: string): T | undefined {
    const entry = this.#entries.get(id);
    if (!entry) return undefined;
    this.#entries.delete(id);
    this.#bytes -= entry.bytes;
    return entry.value;
  }

  /** Caches `value` as the most recently used; returns false, caching nothing, when it alone exceeds a bound. */
  put(id: string, value: T, bytes: number): boolean {
    this.take(id);
    if (bytes > this.#maxBytes || this.#maxEntries < 1) return false;
    this.#entries.set(id, { value, bytes });
    this.#bytes += bytes;
    for (const [oldest, entry] of this.#entries) {
      if (this.#bytes <= this.#maxBytes && this.#entries.size <= this.#maxEntries) break;
      this.#entries.delete(oldest);
      this.#bytes -= entry.bytes;
    }
    return true;
  }

  stats(): { entries: number; bytes: number } {
    return { entries: this.#entries.size, bytes: this.#bytes };
  }
}

/** `"train/loss"` → metric `train`, field `loss`, unless `train` is no metric: then the default metric's field. */
function splitKey(key: string, metricExists: (metric: string) => boolean): { metric: string; field: string } {
  const slash = key.indexOf("/");
  if (slash > 0 && metricExists(key.slice(0, slash))) return { metric: key.slice(0, slash), field: key.slice(slash + 1) };
  return { metric: DEFAULT_METRIC, field: key };
}

/** Bytes read at a time: files may be larger than the longest string a runtime allows. */
const READ_BLOCK_BYTES = 4 << 20;

/**
 * Calls `onText(text)` for each block of a file from byte `from` on, where
 * `text` is whole lines, each ending in "\n"; the rest of a block is carried
 * into the next, and a torn last line (no newline yet) is skipped.
 * Returns the offset after the last whole line, where a later read can continue.
 */
function forEachText(file: string, onText: (text: string) => void, from = 0): number {
  const reading = fileSystem.openRead(file);
  if (!reading) return from;
  let block: Uint8Array = new Uint8Array(READ_BLOCK_BYTES);
  const decoder = new TextDecoder();
  // Bytes of a line not yet whole, moved to the block's start: decoding whole lines only gives flat strings,
  // where a carried string prepended to the next block's text would make every character lookup slow.
  let kept = 0;
  let position = from;
  try {
    for (;;) {
      if (kept === block.length) block = grown(block);
      const n = reading.read(block.subarray(kept), position);
      if (n === 0) break;
      position += n;
      const filled = kept + n;
      const whole = block.lastIndexOf(10, filled - 1) + 1;
      if (whole > 0) onText(decoder.decode(block.subarray(0, whole)));
      block.copyWithin(0, whole, filled);
      kept = filled - whole;
    }
  } finally {
    reading.close();
  }
  return position - kept;
}

function grown(block: Uint8Array): Uint8Array {
  const larger = new Uint8Array(block.length * 2);
  larger.set(block);
  return larger;
}

/** Calls `onLine(text, start, end)` for every whole, non-empty line (`text.slice(start, end)`); see forEachText. */
function forEachLineAt(file: string, onLine: (text: string, start: number, end: number) => void, from = 0): number {
  return forEachText(file, (text) => {
    for (let start = 0, nl = text.indexOf("\n"); nl !== -1; start = nl + 1, nl = text.indexOf("\n", start)) {
      if (nl > start) onLine(text, start, nl);
    }
  }, from);
}

/** Calls `onLine` for every whole, non-empty line of a file; see forEachText. */
function forEachLine(file: string, onLine: (line: string) => void, from = 0): number {
  return forEachLineAt(file, (text, start, end) => onLine(text.slice(start, end)), from);
}

/** A series as far as it was read: `bytes` of its file are in the arrays. */
interface SeriesRead {
  bytes: number;
  step: number[];
  ts: number[];
  value: number[];
  x?: number[];
}

/**
 * Appends to `read` the rows of a metric file from byte `read.bytes` on that
 * have `field` (and `xField`). Jumps from one occurrence of the field's key
 * text to the next instead of parsing records: `"loss":` can only be a key,
 * since quotes inside JSON strings are escaped, and lines without the key cost
 * nothing. Returns the offset after the last whole line.
 */
function readSeries(file: string, read: SeriesRead, field: string, xField: string | undefined): number {
  return forEachText(file, (text) => collectSeries(text, read, field, xField), read.bytes);
}

/**
 * Appends to `read` the rows of `text` (whole lines) that have `field` (and
 * `xField`); see readSeries. With `read.at`, values are read approximately
 * (approximateNumberAt) and where each starts in `text` goes to `read.at`.
 */
function collectSeries(text: string, read: Omit<SeriesRead, "bytes"> & { at?: number[] }, field: string, xField: string | undefined): void {
  const fieldKey = JSON.stringify(field) + ":";
  const xKey = xField === undefined ? undefined : JSON.stringify(xField) + ":";
  const xs = xKey === undefined ? undefined : new KeyScanner(xKey, text);
  const steps = new KeyScanner('"step":', text);
  const times = new KeyScanner('"_ts":', text);
  for (let at = text.indexOf(fieldKey); at !== -1; at = text.indexOf(fieldKey, at)) {
    const lineStart = text.lastIndexOf("\n", at) + 1;
    let lineEnd = text.indexOf("\n", at);
    if (lineEnd === -1) lineEnd = text.length;
    const valueStart = at + fieldKey.length;
    const value = read.at === undefined ? numberAt(text, valueStart, lineEnd) : approximateNumberAt(text, valueStart, lineEnd);
    at = lineEnd + 1;
    if (value === undefined) continue;
    let x = 0;
    if (xs !== undefined) {
      const found = xs.numberIn(lineStart, lineEnd);
      if (found === undefined) continue;
      x = found;
    }
    read.value.push(value);
    read.step.push(steps.numberIn(lineStart, lineEnd) ?? NaN);
    read.ts.push(times.numberIn(lineStart, lineEnd) ?? NaN);
    if (read.x) read.x.push(x);
    read.at?.push(valueStart);
  }
}

/** The points of `field` in `text` (whole lines of a metric file): values approximate, each exact on demand. */
function pointsOf(text: string, field: string): RangePoints {
  const at: number[] = [];
  const points = { step: [], ts: [], value: [], at };
  collectSeries(text, points, field, undefined);
  return { step: points.step, ts: points.ts, value: points.value, exact: (i) => numberAt(text, at[i], text.length) ?? NaN };
}

/** A metric file's read index in the cache: `bytes` of the file are in it. */
interface IndexRead {
  bytes: number;
  index: MetricIndex;
}

/** Bytes read from the end of a metric file to find its last record. */
const TAIL_BYTES = 64 << 10;

/** The step of the last whole record of each metric file in a folder. */
function lastSteps(metricsDir: string): Record<string, number> {
  // Entries, not assignments to {}: a metric may be named "__proto__".
  const steps: [string, number][] = [];
  for (const entry of fileSystem.list(metricsDir)) {
    const metric = metricOfFile(entry.name);
    if (!entry.isFile || metric === undefined) continue;
    const step = lastStepOf(join(metricsDir, entry.name));
    if (step !== undefined) steps.push([metric, step]);
  }
  return Object.fromEntries(steps);
}

function lastStepOf(file: string): number | undefined {
  const size = fileSystem.size(file);
  const reading = size > 0 ? fileSystem.openRead(file) : undefined;
  if (!reading) return undefined;
  const tail = new Uint8Array(Math.min(size, TAIL_BYTES));
  const start = size - tail.length;
  try {
    for (let got = 0, n = -1; got < tail.length && n !== 0; got += n) n = reading.read(tail.subarray(got), start + got);
  } finally {
    reading.close();
  }
  const lines = new TextDecoder().decode(tail).split("\n");
  // The last piece has no newline (torn, or empty); the first may be cut by the tail's start.
  const first = tail.length < size ? 1 : 0;
  for (let i = lines.length - 2; i >= first; i--) {
    const step = numberAfter(lines[i], '"step":', 0, lines[i].length);
    if (step !== undefined && Number.isFinite(step)) return step;
  }
  return undefined;
}

/** The number (or "NaN" / "±Infinity") after `key` in the flat JSON record `text.slice(start, end)`, if the key is there. */
function numberAfter(text: string, key: string, start: number, end: number): number | undefined {
  const at = text.indexOf(key, start);
  return at < 0 || at >= end ? undefined : numberAt(text, at + key.length, end);
}

/** Parses a JSONL file, skipping a torn last line and any line that is not JSON. */
function readJsonl<T>(file: string): T[] {
  const records: T[] = [];
  forEachLine(file, (line) => {
    try {
      records.push(JSON.parse(line));
    } catch {
      // Not a whole record: skipped.
    }
  });
  return records;
}

function latestFiles(file: string): Map<string, FileInfo> {
  const byPath = new Map<string, FileInfo>();
  for (const info of readJsonl<FileInfo>(file)) byPath.set(info.path, info);
  return byPath;
}
