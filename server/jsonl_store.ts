/**
 * The JSONL store: the server keeps experiments in the `.dash` layout on its
 * own disk, written by the same {@linkcode JsonlBackend} as local mode and read
 * by the same {@linkcode DashReader}, so scripts may also write into the root
 * directly. A {@linkcode SessionLedger} per experiment makes every batch
 * stored once; a {@linkcode RootWatcher} finds what scripts write.
 *
 * @example Serve a root
 * ```ts ignore
 * import { createHandler } from "../server.ts";
 * import { JsonlStore } from "./jsonl_store.ts";
 *
 * const handler = createHandler({ store: new JsonlStore(".dash", { cacheMb: 64 }) });
 * ```
 *
 * @module
 */
import * as fs from "node:fs";
import type { Batch } from "../storage/backend.ts";
import { ConfigError, StorageError } from "../storage/errors.ts";
import { DashReader, JsonlBackend, OutsideRootError } from "../storage/jsonl.ts";
import { minMaxDownsample } from "../storage/downsample.ts";
import { EXPERIMENT_FILE, experimentPath } from "../storage/layout.ts";
import { unrefTimer } from "../storage/runtime.ts";
import { appendedFiles, SessionLedger } from "./ledger.ts";
import { RootWatcher } from "./jsonl_watch.ts";
import type * as contract from "./store.ts";

/** Options of {@linkcode JsonlStore}. */
export interface JsonlStoreOptions {
  /** Mebibytes of memory that cached series and summaries may take (default 256). */
  cacheMb?: number;
  /** Milliseconds between looks at the root while something watches (default 1000). */
  pollInterval?: number;
}

const DEFAULT_CACHE_MB = 256;
/** Appended files stay open while batches arrive; this many idle milliseconds close (and fsync) them. */
const IDLE_CLOSE_MS = 2000;

/**
 * A {@linkcode Store} over a `.dash` root on the server's disk.
 *
 * @example Store a batch once
 * ```ts
 * import { JsonlStore } from "./jsonl_store.ts";
 *
 * const store = new JsonlStore(await Deno.makeTempDir());
 * const key = { prefix: "alice/run-1", session: "s1", seq: 0 };
 * console.log((await store.ingest(key, { params: { lr: 0.1 } })).duplicate); // false
 * console.log((await store.ingest(key, { params: { lr: 0.1 } })).duplicate); // true
 * console.log((await store.list({ offset: 0 })).total); // 1
 * console.log((await store.open("alice/run-1")).params); // { lr: 0.1 }
 * await store.close();
 * ```
 */
export class JsonlStore implements contract.Store {
  /** The root directory. */
  readonly root: string;
  #backend: JsonlBackend;
  #reader: DashReader;
  #ledger: SessionLedger;
  #watcher: RootWatcher;
  #listeners = new Set<(change: contract.Change) => void>();
  #idleClose: ReturnType<typeof setTimeout> | undefined;

  /**
   * Makes a store over a root directory.
   *
   * @param root The root directory (made when the first batch arrives).
   * @param options Cache size and how often the root is looked at.
   * @throws {ConfigError} For an empty root.
   */
  constructor(root: string, options: JsonlStoreOptions = {}) {
    if (typeof root !== "string" || root === "") {
      throw new ConfigError(`Invalid root ${JSON.stringify(root)}: expected a directory path`);
    }
    this.root = root;
    this.#backend = new JsonlBackend(root);
    this.#reader = new DashReader(root, { cacheBytes: (options.cacheMb ?? DEFAULT_CACHE_MB) * 2 ** 20 });
    this.#ledger = new SessionLedger(root, (dir) => this.#backend.checkInside(dir));
    this.#watcher = new RootWatcher(root, this.#reader, options.pollInterval ?? 1000);
  }

  /**
   * The watcher of the root (for tests of what it scans).
   *
   * @internal
   */
  get watcher(): RootWatcher {
    return this.#watcher;
  }

  /**
   * Whether a batch was stored.
   *
   * @param key The batch's experiment, session and seq.
   * @returns True when the session ledger holds it.
   */
  has(key: contract.BatchKey): Promise<boolean> {
    return Promise.resolve(this.#ledger.has(key.prefix, key.session, key.seq));
  }

  /**
   * Stores a batch once. The work is synchronous from the duplicate check to
   * the ledger's record, so no other request interleaves.
   *
   * @param key The batch's experiment, session and seq.
   * @param batch What to store.
   * @returns Whether the batch had been stored before.
   */
  ingest(key: contract.BatchKey, batch: Batch): Promise<{ duplicate: boolean }> {
    const { prefix, session, seq } = key;
    if (this.#ledger.has(prefix, session, seq)) return Promise.resolve({ duplicate: true });
    const isNew = !this.#watcher.knows(prefix) && !fs.existsSync(experimentPath(this.root, prefix, EXPERIMENT_FILE));
    // Every stored prefix gets an experiment.json, which is what makes it an experiment for readers.
    if (isNew && !batch.metadata) batch.metadata = { prefix };
    try {
      // Applying a batch is made all-or-nothing by the ledger: see SessionLedger.begin.
      this.#ledger.begin(prefix, appendedFiles(batch));
      try {
        this.#backend.writeSync(prefix, batch);
      } catch (error) {
        this.#ledger.rollBack(prefix);
        throw error;
      }
      this.#ledger.add(prefix, session, seq);
    } catch (error) {
      return Promise.reject(notStored(error));
    }
    this.#closeFilesWhenIdle();
    this.#announce(prefix, batch, isNew);
    return Promise.resolve({ duplicate: false });
  }

  /**
   * What a client resuming an experiment needs: its parameters, files, last
   * steps and, for the sessions named, the largest seq stored.
   *
   * @param prefix The experiment's prefix.
   * @param sessions The sessions whose largest seq to report.
   * @returns The experiment's state.
   */
  async open(prefix: string, sessions?: readonly string[]): Promise<contract.OpenState> {
    this.#ledger.recover(prefix);
    const state: contract.OpenState = {
      params: await this.#reader.params(prefix),
      files: await this.#reader.files(prefix),
      steps: await this.#reader.lastSteps(prefix),
    };
    if (sessions) state.sessions = Object.fromEntries(sessions.map((s) => [s, this.#ledger.maxSeq(prefix, s) ?? null]));
    return state;
  }

  /**
   * Whether an experiment is stored.
   *
   * @param prefix The experiment's prefix.
   * @returns True when it exists.
   */
  exists(prefix: string): Promise<boolean> {
    this.#ledger.recover(prefix);
    return this.#reader.exists(prefix);
  }

  /**
   * A page of the experiments that match a query.
   *
   * @param query The prefix and status to match, and the page.
   * @returns The page and the number of matches.
   */
  async list(query: contract.ListQuery): Promise<contract.ExperimentPage> {
    const all = await this.#reader.listExperiments({ prefix: query.prefix, status: query.status });
    const end = query.limit === undefined ? undefined : query.offset + query.limit;
    return { experiments: all.slice(query.offset, end), total: all.length };
  }

  /**
   * An experiment's overview.
   *
   * @param prefix The experiment's prefix.
   * @returns Its metadata, status, parameters, metrics and files.
   */
  experiment(prefix: string): Promise<contract.ExperimentView> {
    this.#ledger.recover(prefix);
    return this.#reader.overview(prefix);
  }

  /**
   * A page of a metric's series against an x field, downsampled to at most `query.points` points.
   *
   * @param prefix The experiment's prefix.
   * @param key The metric's field.
   * @param query The x field, the range, the page and the number of points.
   * @returns The points, the number in range and whether they were downsampled.
   */
  async series(prefix: string, key: string, query: contract.SeriesQuery): Promise<contract.SeriesPage> {
    this.#ledger.recover(prefix);
    const byField = query.x !== "step" && query.x !== "_ts";
    if (!byField && query.offset === 0 && query.limit === undefined) return await this.#chart(prefix, key, query);
    const series = await this.#reader.series(prefix, key, byField ? { x: query.x } : {});
    let x = byField ? series.x! : query.x === "_ts" ? series.ts : series.step;
    let value = series.value;
    let time = query.time ? series.ts : undefined;
    const { from, to } = query;
    // Without a range every point counts: a long series is not copied once more for each request.
    if (from !== undefined || to !== undefined) {
      const inRange = (v: number): boolean => (from === undefined || v >= from) && (to === undefined || v <= to);
      value = value.filter((_, i) => inRange(x[i]));
      time = time?.filter((_, i) => inRange(x[i]));
      x = x.filter(inRange);
    }
    const total = x.length;
    if (query.offset > 0 || query.limit !== undefined) {
      const end = query.limit === undefined ? undefined : query.offset + query.limit;
      x = x.slice(query.offset, end);
      value = value.slice(query.offset, end);
      time = time?.slice(query.offset, end);
    }
    const reduced = minMaxDownsample(x, value, query.points);
    const page: contract.SeriesPage = { x: reduced.x, value: reduced.value, total, downsampled: reduced.downsampled };
    if (time && !reduced.downsampled) page.time = time.slice(0, reduced.x.length);
    return page;
  }

  /** A whole range of a series by step or time, through the metric file's read index. */
  async #chart(prefix: string, key: string, query: contract.SeriesQuery): Promise<contract.SeriesPage> {
    const x = query.x === "_ts" ? "_ts" : "step";
    const chart = await this.#reader.downsampled(prefix, key, { x, from: query.from, to: query.to, points: query.points });
    const page: contract.SeriesPage = { x: chart.x, value: chart.value, total: chart.total, downsampled: chart.downsampled };
    if (query.time && !chart.downsampled) page.time = chart.ts;
    return page;
  }

  /**
   * A page of an experiment's log records.
   *
   * @param prefix The experiment's prefix.
   * @param query The level to match and the page.
   * @returns The records and the number of matches.
   */
  async logs(prefix: string, query: contract.LogPageQuery): Promise<contract.LogPage> {
    this.#ledger.recover(prefix);
    const all = await this.#reader.logs(prefix, { level: query.level });
    const end = query.limit === undefined ? undefined : query.offset + query.limit;
    return { logs: all.slice(query.offset, end), total: all.length };
  }

  /**
   * A stored file of an experiment.
   *
   * @param prefix The experiment's prefix.
   * @param file The file's path inside the experiment.
   * @returns Its bytes and media type, or undefined when there is no such file.
   * @throws {StorageError} With status 400 for an invalid path, 403 for a link that leads outside the root.
   */
  async file(prefix: string, file: string): Promise<contract.StoredFile | undefined> {
    this.#ledger.recover(prefix);
    let target: string;
    try {
      target = this.#reader.filePath(prefix, file);
    } catch (error) {
      throw new StorageError(`Invalid file path ${JSON.stringify(file)}: ${error instanceof Error ? error.message : error}`, { status: 400 });
    }
    let data: Uint8Array;
    try {
      // A link planted in the root must not serve files from elsewhere.
      this.#backend.checkInside(target);
      data = new Uint8Array(fs.readFileSync(target));
    } catch (error) {
      if (error instanceof StorageError) throw error;
      return undefined;
    }
    const info = (await this.#reader.files(prefix)).find((f) => f.path === file);
    return { data, mime: info?.mime };
  }

  /**
   * Reports the changes of the root, whether they came in over HTTP or from a
   * script writing into it; the root is watched while a listener is registered.
   *
   * @param onChange Receives the changes.
   * @returns A function that removes the listener.
   */
  async watch(onChange: (change: contract.Change) => void): Promise<() => void> {
    this.#listeners.add(onChange);
    if (!this.#watcher.started) await this.#watcher.start((change) => this.#emit(change));
    return () => {
      this.#listeners.delete(onChange);
      if (this.#listeners.size === 0) this.#watcher.stop();
    };
  }

  /**
   * Stops watching and closes the files being appended to.
   *
   * @returns When the files are closed.
   */
  async close(): Promise<void> {
    if (this.#idleClose !== undefined) clearTimeout(this.#idleClose);
    this.#idleClose = undefined;
    this.#listeners.clear();
    this.#watcher.stop();
    this.#ledger.close();
    await this.#backend.close();
  }

  #announce(prefix: string, batch: Batch, isNew: boolean): void {
    if (this.#listeners.size === 0) return;
    const before = this.#watcher.stored(prefix, batch);
    const status = batch.status?.status ?? before ?? "UNKNOWN";
    if (isNew || before === undefined || before !== status) this.#emit({ kind: "experiment", prefix, status });
    if (batch.metrics) this.#emit({ kind: "metrics", prefix });
    if (batch.logs) this.#emit({ kind: "logs", prefix });
  }

  #emit(change: contract.Change): void {
    for (const listener of [...this.#listeners]) listener(change);
  }

  #closeFilesWhenIdle(): void {
    if (this.#idleClose !== undefined) clearTimeout(this.#idleClose);
    this.#idleClose = setTimeout(() => {
      this.#idleClose = undefined;
      this.#backend.close().catch(() => {});
    }, IDLE_CLOSE_MS);
    unrefTimer(this.#idleClose);
  }
}

/** A batch that could not be stored and was rolled back: the request's fault (4xx) or the disk's (5xx, retried later). */
function notStored(error: unknown): unknown {
  if (error instanceof ConfigError) return new StorageError(error.message, { status: 400 });
  if (error instanceof OutsideRootError) return new StorageError(error.message, { status: 403 });
  if (error instanceof StorageError && error.status !== undefined) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new StorageError(`Could not store the batch, and nothing of it was kept: ${message}; retry later`, { status: 503 });
}
