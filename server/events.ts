/**
 * Live updates as server-sent events: `experiment`, `metrics` and `logs`
 * events for batches ingested over HTTP (at once) and for scripts that write
 * into the root directly (found by watching the root).
 *
 * Only what changed is looked at: a recursive file-system watch names the
 * experiments whose files changed, and each tick stats those alone. A full scan
 * runs when the stream opens, when the watch cannot be had or lost track, and
 * every {@linkcode FULL_SCAN_TICKS} ticks as a safety net for missed events.
 *
 * @example Stream events of a root
 * ```ts ignore
 * import { DashReader } from "../storage/jsonl.ts";
 * import { EventHub } from "./events.ts";
 *
 * const hub = new EventHub(".dash", new DashReader(".dash"), 1000);
 * const res = hub.subscribe(); // text/event-stream
 * hub.close();
 * ```
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Batch } from "../storage/backend.ts";
import type { DashReader } from "../storage/jsonl.ts";

interface Snapshot {
  status: string;
  metricsBytes: number;
  logsBytes: number;
}

/** Ticks between full scans of the root, for changes the watch did not report. */
export const FULL_SCAN_TICKS = 30;

/** Names in an experiment folder: a changed path is cut at the first of them to give its experiment. */
const LAYOUT_NAMES = new Set(["metrics", "files", "files.jsonl", "logs.jsonl", "status.json", "experiment.json", "parameters.json", "parameters.jsonl"]);

/** Sends events to connected clients; no timer and no watch run without clients. */
export class EventHub {
  #root: string;
  #reader: DashReader;
  #interval: number;
  #clients = new Set<ReadableStreamDefaultController<Uint8Array>>();
  #snapshot = new Map<string, Snapshot>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #watcher: fs.FSWatcher | undefined;
  #changed = new Set<string>();
  #lostTrack = true;
  #fullScanTicks: number;
  #ticks = 0;
  #scans = 0;
  #encoder = new TextEncoder();

  /**
   * @param root The root directory.
   * @param reader The reader of that root.
   * @param interval Milliseconds between ticks while clients are connected.
   * @param fullScanTicks Ticks between full scans (default {@linkcode FULL_SCAN_TICKS}).
   */
  constructor(root: string, reader: DashReader, interval: number, fullScanTicks: number = FULL_SCAN_TICKS) {
    this.#root = root;
    this.#reader = reader;
    this.#interval = interval;
    this.#fullScanTicks = fullScanTicks;
  }

  /** How many experiments the ticks have looked at so far (for tests of what is scanned). */
  get experimentsScanned(): number {
    return this.#scans;
  }

  /**
   * Whether the hub has seen the experiment (while clients are connected).
   *
   * @param prefix The experiment's prefix.
   * @returns True when it is in the current snapshot.
   */
  knows(prefix: string): boolean {
    return this.#snapshot.has(prefix);
  }

  /**
   * Opens an event stream.
   *
   * @returns A `text/event-stream` response.
   */
  subscribe(): Response {
    let self: ReadableStreamDefaultController<Uint8Array> | undefined;
    const stream = new ReadableStream<Uint8Array>({
      start: async (controller) => {
        self = controller;
        if (this.#clients.size === 0) {
          this.#watch();
          await this.#scanAll(false);
        }
        this.#clients.add(controller);
        this.#timer ??= setInterval(() => this.#tick(), this.#interval);
        controller.enqueue(this.#encoder.encode(": connected\nretry: 2000\n\n"));
      },
      cancel: () => {
        if (self) this.#drop(self);
      },
    });
    return new Response(stream, {
      headers: { "content-type": "text/event-stream", "cache-control": "no-cache", "connection": "keep-alive" },
    });
  }

  /**
   * Tells clients about a batch stored over HTTP.
   *
   * @param prefix The experiment's prefix.
   * @param batch What was stored.
   * @param isNew Whether the batch created the experiment.
   */
  ingested(prefix: string, batch: Batch, isNew: boolean): void {
    if (this.#clients.size === 0) return;
    const old = this.#snapshot.get(prefix);
    const status = batch.status?.status ?? old?.status ?? "UNKNOWN";
    this.#snapshot.set(prefix, { status, metricsBytes: this.#metricsBytes(prefix), logsBytes: this.#logsBytes(prefix) });
    if (isNew || !old || old.status !== status) this.#send("experiment", { prefix, status });
    if (batch.metrics) this.#send("metrics", { prefix });
    if (batch.logs) this.#send("logs", { prefix });
  }

  /** Ends every stream, the timer and the watch. */
  close(): void {
    for (const client of [...this.#clients]) {
      try {
        client.close();
      } catch {
        // Already closed by the client.
      }
      this.#drop(client);
    }
  }

  #drop(client: ReadableStreamDefaultController<Uint8Array>): void {
    this.#clients.delete(client);
    if (this.#clients.size > 0) return;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#watcher?.close();
    this.#watcher = undefined;
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
    const at = segments.findIndex((s) => LAYOUT_NAMES.has(s) || s.endsWith(".tmp"));
    if (at > 0) this.#changed.add(segments.slice(0, at).join("/"));
  }

  async #tick(): Promise<void> {
    this.#ticks++;
    // A comment line every ~15 s keeps proxies and idle timeouts from closing the stream.
    if (this.#ticks % Math.max(1, Math.round(15000 / this.#interval)) === 0) this.#write(": ping\n\n");
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

  async #scanAll(emit: boolean): Promise<void> {
    let experiments: { prefix: string; status: string }[];
    try {
      experiments = await this.#reader.listExperiments();
    } catch {
      return;
    }
    for (const e of experiments) this.#compare(e.prefix, e.status, emit);
  }

  async #scanOne(prefix: string): Promise<void> {
    try {
      if (!(await this.#reader.exists(prefix))) return;
      this.#compare(prefix, (await this.#reader.status(prefix))?.status ?? "UNKNOWN", true);
    } catch {
      // A prefix the reader refuses (a stray folder name) is no experiment.
    }
  }

  #compare(prefix: string, status: string, emit: boolean): void {
    this.#scans++;
    const now: Snapshot = { status, metricsBytes: this.#metricsBytes(prefix), logsBytes: this.#logsBytes(prefix) };
    const old = this.#snapshot.get(prefix);
    this.#snapshot.set(prefix, now);
    if (!emit) return;
    if (!old || old.status !== now.status) this.#send("experiment", { prefix, status: now.status });
    if (old ? now.metricsBytes !== old.metricsBytes : now.metricsBytes > 0) this.#send("metrics", { prefix });
    if (old ? now.logsBytes !== old.logsBytes : now.logsBytes > 0) this.#send("logs", { prefix });
  }

  #dir(prefix: string): string {
    return path.join(this.#root, ...prefix.split("/"));
  }

  #logsBytes(prefix: string): number {
    try {
      return fs.statSync(path.join(this.#dir(prefix), "logs.jsonl")).size;
    } catch {
      return 0;
    }
  }

  #metricsBytes(prefix: string): number {
    const dir = path.join(this.#dir(prefix), "metrics");
    let total = 0;
    try {
      for (const name of fs.readdirSync(dir)) {
        if (name.endsWith(".jsonl")) total += fs.statSync(path.join(dir, name)).size;
      }
    } catch {
      // No metrics yet.
    }
    return total;
  }

  #send(event: string, data: unknown): void {
    this.#write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  #write(text: string): void {
    const bytes = this.#encoder.encode(text);
    for (const client of [...this.#clients]) {
      try {
        client.enqueue(bytes);
      } catch {
        this.#drop(client);
      }
    }
  }
}
