/**
 * What changed in a JSONL root that scripts write into directly: experiments
 * that appear or change status, metrics and logs that grow.
 *
 * Only what changed is looked at: a recursive file-system watch names the
 * experiments whose files changed, and each tick stats those alone. A full scan
 * runs at start, when the watch cannot be had or lost track, and every
 * `fullScanTicks` ticks as a safety net for missed events.
 *
 * @example Watch a root
 * ```ts ignore
 * import { DashReader } from "../storage/jsonl.ts";
 * import { RootWatcher } from "./jsonl_watch.ts";
 *
 * const watcher = new RootWatcher(".dash", new DashReader(".dash"), 1000);
 * await watcher.start((change) => console.log(change));
 * watcher.stop();
 * ```
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Batch } from "../storage/backend.ts";
import type { DashReader } from "../storage/jsonl.ts";
import { EXPERIMENT_ENTRIES, experimentPath, isTempPath, LOGS_FILE, metricOfFile, METRICS_DIR } from "../storage/layout.ts";
import { unrefTimer } from "../storage/runtime.ts";
import type { Change } from "./store.ts";

interface Snapshot {
  status: string;
  metricsBytes: number;
  logsBytes: number;
}

/** Ticks between full scans of the root, for changes the watch did not report. */
export const FULL_SCAN_TICKS = 30;

/**
 * Reports the changes of a root while started; no timer and no watch run when stopped.
 *
 * @example Watch a temporary root
 * ```ts
 * import { DashReader, JsonlBackend } from "../storage/jsonl.ts";
 * import { RootWatcher } from "./jsonl_watch.ts";
 *
 * const root = await Deno.makeTempDir();
 * const backend = new JsonlBackend(root);
 * await backend.write("alice/run-1", { metadata: { prefix: "alice/run-1" } });
 * await backend.close();
 *
 * const watcher = new RootWatcher(root, new DashReader(root), 1000);
 * await watcher.start((change) => console.log(change));
 * console.log(watcher.started, watcher.knows("alice/run-1")); // true true
 * watcher.stop();
 * console.log(watcher.started); // false
 * ```
 */
export class RootWatcher {
  #root: string;
  #reader: DashReader;
  #interval: number;
  #fullScanTicks: number;
  #onChange: ((change: Change) => void) | undefined;
  #snapshot = new Map<string, Snapshot>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #watcher: fs.FSWatcher | undefined;
  #changed = new Set<string>();
  #lostTrack = false;
  #ticks = 0;
  #scans = 0;

  /**
   * Makes a watcher of a root; nothing runs until {@linkcode RootWatcher.prototype.start}.
   *
   * @param root The root directory.
   * @param reader The reader of that root.
   * @param interval Milliseconds between ticks.
   * @param fullScanTicks Ticks between full scans (default {@linkcode FULL_SCAN_TICKS}).
   */
  constructor(root: string, reader: DashReader, interval: number, fullScanTicks: number = FULL_SCAN_TICKS) {
    this.#root = root;
    this.#reader = reader;
    this.#interval = interval;
    this.#fullScanTicks = fullScanTicks;
  }

  /** How many experiments the scans have looked at so far (for tests of what is scanned). */
  get experimentsScanned(): number {
    return this.#scans;
  }

  /** Whether it is started. */
  get started(): boolean {
    return this.#onChange !== undefined;
  }

  /**
   * Whether the watcher has seen the experiment since it started.
   *
   * @param prefix The experiment's prefix.
   * @returns True when it is in the current snapshot.
   */
  knows(prefix: string): boolean {
    return this.#snapshot.has(prefix);
  }

  /**
   * Starts watching: a first scan notes what is there (and reports nothing), then each tick reports what changed.
   *
   * @param onChange Receives the changes.
   */
  async start(onChange: (change: Change) => void): Promise<void> {
    if (this.#onChange) return;
    this.#onChange = onChange;
    this.#watch();
    await this.#scanAll(false);
    // Stopped (or started again) during the first scan: this start is over.
    if (this.#onChange !== onChange || this.#timer !== undefined) return;
    this.#timer = setInterval(() => this.#tick(), this.#interval);
    unrefTimer(this.#timer);
  }

  /**
   * Notes a batch the server stored, so that the next tick does not report it again.
   *
   * @param prefix The experiment's prefix.
   * @param batch What was stored.
   * @returns The status the experiment had before, if the watcher knew it.
   */
  stored(prefix: string, batch: Batch): string | undefined {
    const old = this.#snapshot.get(prefix);
    const status = batch.status?.status ?? old?.status ?? "UNKNOWN";
    this.#snapshot.set(prefix, { status, metricsBytes: this.#metricsBytes(prefix), logsBytes: this.#logsBytes(prefix) });
    return old?.status;
  }

  /** Stops the timer and the watch and forgets what it saw. */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#watcher?.close();
    this.#watcher = undefined;
    this.#onChange = undefined;
    this.#snapshot.clear();
    this.#changed.clear();
  }

  /** Starts the recursive watch; where the runtime or the root does not allow it, every tick scans all. */
  #watch(): void {
    this.#lostTrack = false;
    try {
      this.#watcher = fs.watch(this.#root, { recursive: true }, (_event, name) => this.#noteChange(name));
      this.#watcher.on("error", () => {
        this.#watcher?.close();
        this.#watcher = undefined;
      });
    } catch {
      this.#watcher = undefined;
    }
  }

  #noteChange(name: string | Buffer | null): void {
    if (name === null) return void (this.#lostTrack = true);
    const segments = String(name).split(/[\\/]/);
    // A changed path is cut at the first name of an experiment folder's entries (or a temp file) to give its experiment.
    const at = segments.findIndex((s) => EXPERIMENT_ENTRIES.has(s) || isTempPath(s));
    if (at > 0) this.#changed.add(segments.slice(0, at).join("/"));
  }

  async #tick(): Promise<void> {
    this.#ticks++;
    if (this.#watcher === undefined || this.#lostTrack || this.#ticks % this.#fullScanTicks === 0) {
      if (this.#watcher === undefined) this.#watch();
      this.#lostTrack = false;
      this.#changed.clear();
      await this.#scanAll(true);
      return;
    }
    const changed = [...this.#changed];
    this.#changed.clear();
    for (const prefix of changed) await this.#scanOne(prefix);
  }

  async #scanAll(report: boolean): Promise<void> {
    let experiments: { prefix: string; status: string }[];
    try {
      experiments = await this.#reader.listExperiments();
    } catch {
      return;
    }
    for (const e of experiments) this.#compare(e.prefix, e.status, report);
  }

  async #scanOne(prefix: string): Promise<void> {
    try {
      if (!(await this.#reader.exists(prefix))) return;
      this.#compare(prefix, (await this.#reader.status(prefix))?.status ?? "UNKNOWN", true);
    } catch {
      // A prefix the reader refuses (a stray folder name) is no experiment.
    }
  }

  #compare(prefix: string, status: string, report: boolean): void {
    this.#scans++;
    const now: Snapshot = { status, metricsBytes: this.#metricsBytes(prefix), logsBytes: this.#logsBytes(prefix) };
    const old = this.#snapshot.get(prefix);
    this.#snapshot.set(prefix, now);
    const onChange = this.#onChange;
    if (!report || !onChange) return;
    if (!old || old.status !== now.status) onChange({ kind: "experiment", prefix, status: now.status });
    if (old ? now.metricsBytes !== old.metricsBytes : now.metricsBytes > 0) onChange({ kind: "metrics", prefix });
    if (old ? now.logsBytes !== old.logsBytes : now.logsBytes > 0) onChange({ kind: "logs", prefix });
  }

  #logsBytes(prefix: string): number {
    try {
      return fs.statSync(experimentPath(this.#root, prefix, LOGS_FILE)).size;
    } catch {
      return 0;
    }
  }

  #metricsBytes(prefix: string): number {
    let total = 0;
    try {
      const dir = experimentPath(this.#root, prefix, METRICS_DIR);
      for (const name of fs.readdirSync(dir)) {
        if (metricOfFile(name) !== undefined) total += fs.statSync(path.join(dir, name)).size;
      }
    } catch {
      // No metrics yet.
    }
    return total;
  }
}
