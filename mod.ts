/// <reference lib="esnext.disposable" preserve="true" />
/**
 * ml-dash: an experiment tracker for TypeScript on Deno, Bun and Node.
 *
 * Log parameters, metrics, text logs and files from a training script to
 * append-only JSONL files in `.dash/` (the default) or to an ml-dash server.
 * Two APIs share one core: the Experiment API (`new Experiment({ prefix })`,
 * `exp.run(...)`, `RUN`, `dxp`) and the Run API (`startRun(name, options)`).
 *
 * @example Log a training run to `.dash/`
 * ```ts
 * import { Experiment } from "./mod.ts";
 *
 * await new Experiment({ prefix: "alice/mnist/baseline" }).run(async (exp) => {
 *   exp.params.set({ lr: 0.001, model: { depth: 4 } });
 *   for (let epoch = 0; epoch < 3; epoch++) {
 *     exp.metrics("train").log({ loss: 1 / (epoch + 1), epoch });
 *   }
 *   exp.log("done");
 * });
 * ```
 *
 * @module
 */
import {
  byteLimitProblem,
  checkFilePath,
  checkMetricName,
  checkPrefix,
  checkUrl,
  CHUNK_LINES,
  isValidMetricName,
  LOG_LEVELS,
  MAX_FIELD_BYTES,
} from "./storage/backend.ts";
import type {
  Backend,
  Batch,
  ExistingState,
  FileInfo,
  ParamValue,
  Status,
} from "./storage/backend.ts";
import { keyFigures, newChunkFigures, noteFinite, noteRecord, noteValue } from "./storage/chunk_figures.ts";
import type { ChunkFigures } from "./storage/chunk_figures.ts";
import { ConfigError, describe, InvalidMetricError, MlDashError, shorten, StorageError, UsageError } from "./storage/errors.ts";
import { denoNamespace, hostName, isPage, nodeProcess, processId, readEnv, unrefInterval } from "./storage/runtime.ts";

// ─── Facade: the Experiment API ─────────────────────────────────────────────

/**
 * An experiment: a named place (`owner/project/.../name`) that receives
 * parameters, metrics, logs and files. Opening the same prefix again resumes it.
 *
 * @example Callback form: the status follows how the callback ends
 * ```ts
 * import { Experiment } from "./mod.ts";
 *
 * await new Experiment({ prefix: "alice/demo/exp1" }).run(async (exp) => {
 *   exp.metrics("train").log({ loss: 0.5, epoch: 0 });
 * }); // COMPLETED, or FAILED and the error rethrown
 * ```
 *
 * @example Manual control and `await using`
 * ```ts
 * import { Experiment } from "./mod.ts";
 *
 * const exp = new Experiment({ prefix: "alice/demo/exp2" });
 * await exp.run.start();
 * try {
 *   exp.log("working");
 *   await exp.run.complete();
 * } catch (e) {
 *   await exp.run.fail(e);
 *   throw e;
 * }
 *
 * // Disposal completes and flushes; it cannot see exceptions, so it never records FAILED.
 * await using e2 = await new Experiment({ prefix: "alice/demo/exp3" }).run.start();
 * ```
 */
export class Experiment implements AsyncDisposable {
  /** Starts, runs and ends the experiment: call it with a callback, or use its methods. */
  readonly run: RunControl;
  /** Hyperparameters: `set` merges (nested objects become dot keys), `get` reads. */
  readonly params: Params;
  /** Text logs by level: `exp.logs.info("message", { meta })`. */
  readonly logs: Logs;
  /** Metric streams: `exp.metrics("train").log({...})` or `exp.metrics.log({ epoch, train: {...} })`. */
  readonly metrics: Metrics;
  /** Saved files: text, JSON, bytes and copies of local files. */
  readonly files: Files;
  #options: ExperimentOptions;
  #core: ExperimentCore | undefined;

  /**
   * Creates an experiment; nothing is written until `run` starts it.
   *
   * @param options Where and what to record; `prefix` is required unless `RUN.prefix` is set.
   * @throws {ConfigError} For a bad prefix, URL or an unknown option.
   */
  constructor(options: ExperimentOptions = {}) {
    checkOptionNames(options, experimentOptionNames(), "Experiment");
    this.#options = options;
    // An explicit prefix is checked now; without one (dxp) it is read from RUN at start.
    if (options.prefix !== undefined) this.#core = new ExperimentCore(resolveSettings(options));
    this.run = Object.assign(
      async <T>(fn: (exp: Experiment) => T | Promise<T>): Promise<T> => await withLifecycle(this.#coreForStart(), () => fn(this)),
      {
        start: async (): Promise<Experiment> => {
          await this.#coreForStart().open();
          return this;
        },
        complete: (): Promise<void> => this.#end("COMPLETED"),
        fail: (error?: unknown): Promise<void> => this.#end("FAILED", error),
        cancel: (): Promise<void> => this.#end("CANCELLED"),
      },
    );
    this.params = {
      set: (values) => this.#open().setParams(values),
      get: () => this.#open().getParams(),
    };
    this.logs = makeLogs((level, message, meta) => this.#open().log(level, message, meta));
    const metrics = (name: string): MetricStream => this.#open().stream(name);
    this.metrics = Object.assign(metrics, {
      log: (values: GroupedMetrics) => this.#open().logGrouped(values),
    });
    this.files = makeFiles(() => this.#open());
  }

  /** The experiment's prefix, `owner/project/.../name`. */
  get prefix(): string {
    return this.#settings().prefix;
  }

  /**
   * Records a log line.
   *
   * @param message The text.
   * @param options `level` (default `"info"`) and any metadata fields.
   */
  log(message: string, options: LogOptions = {}): void {
    const { level = "info", ...meta } = options;
    this.#open().log(level, message, meta);
  }

  /**
   * Writes everything logged so far to the backend.
   *
   * @returns A promise that resolves when the data is durable, or rejects with a
   * {@linkcode StorageError} that says where the data is kept.
   */
  flush(): Promise<void> {
    return this.#core?.flush() ?? Promise.resolve();
  }

  /** Completes the experiment if it is still running and flushes (for `await using`). */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#core?.isOpen) await this.#core.close("COMPLETED");
  }

  /** The core to start: made from RUN at each start when no prefix was given (dxp). */
  #coreForStart(): ExperimentCore {
    if (this.#core?.isOpen) throw new UsageError(`Experiment "${this.#core.prefix}" is already running`);
    if (this.#options.prefix === undefined) this.#core = new ExperimentCore(resolveSettings(this.#options));
    return this.#core!;
  }

  async #end(status: Status, error?: unknown): Promise<void> {
    if (!this.#core?.isOpen) throw new UsageError(`Cannot end experiment: it is not running`);
    await this.#core.close(status, error);
  }

  #open(): ExperimentCore {
    const core = this.#core;
    if (!core?.isOpen) {
      const name = core ? `"${core.prefix}"` : "(no prefix yet)";
      throw new UsageError(
        `Experiment ${name} is not running: call exp.run.start() or exp.run(fn) before logging`,
      );
    }
    return core;
  }

  #settings(): Settings {
    return this.#core?.settings ?? resolveSettings(this.#options);
  }
}

/** Runs `fn` between open and close: COMPLETED when it returns, FAILED (and rethrown) when it throws. */
async function withLifecycle<T>(core: ExperimentCore, fn: () => T | Promise<T>): Promise<T> {
  await core.open();
  let result: T;
  try {
    result = await fn();
  } catch (error) {
    await core.close("FAILED", error).catch((closeError) => warn(String(closeError)));
    throw error;
  }
  await core.close("COMPLETED");
  return result;
}

function makeLogs(write: (level: LogLevel, message: string, meta: LogMeta) => void): Logs {
  const at = (level: LogLevel) => (message: string, meta: LogMeta = {}): void => write(level, message, meta);
  return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error"), fatal: at("fatal") };
}

function makeFiles(core: () => ExperimentCore): Files {
  const encoder = new TextEncoder();
  return {
    saveText: (path, text) => core().saveFile(path, encoder.encode(text), "text/plain"),
    saveJson: (path, value) =>
      core().saveFile(path, encoder.encode(JSON.stringify(value, null, 2)), "application/json"),
    saveBytes: (path, bytes, mime = "application/octet-stream") => core().saveFile(path, bytes, mime),
    copy: async (localPath, path) => {
      const { readLocalFile } = await loadJsonlModule();
      const name = path ?? localPath.split(/[\\/]/).pop()!;
      return core().saveFile(name, await readLocalFile(localPath), guessMime(name));
    },
    list: () => core().listFiles(),
  };
}

// ─── Facade: the Run API ────────────────────────────────────────────────────

/**
 * A run of the Run API (stonks / wandb style): `run.log({ "train/loss": x }, step)`.
 *
 * @example
 * ```ts
 * import { startRun } from "./mod.ts";
 *
 * const run = startRun("my-exp", { runName: "baseline", config: { lr: 0.1 } });
 * await run.start();
 * run.log({ "train/loss": 0.5 });      // step 0
 * run.log({ "train/loss": 0.4 }, 10);  // step 10; the next call is step 11
 * await run.finish("completed");
 * ```
 */
export class Run implements AsyncDisposable {
  #core: ExperimentCore;
  #config: Record<string, unknown> | undefined;
  #nextStep: number | undefined;

  /** @internal Use {@linkcode startRun}. */
  constructor(experiment: string, options: RunOptions = {}) {
    checkOptionNames(options, runOptionNames(), "startRun");
    const { config, runName, project, owner, ...rest } = options;
    if (config !== undefined) flatten(config);
    const segments = [owner ?? RUN.user, project ?? "default", experiment, runName ?? uniqueRunName()];
    this.#core = new ExperimentCore(resolveSettings({ ...rest, prefix: segments.join("/") }));
    runCores.set(this, this.#core);
    this.#config = config;
  }

  /** The run's prefix, `<owner>/<project>/<experiment>/<runName>`. */
  get prefix(): string {
    return this.#core.prefix;
  }

  /** The run's name: the last segment of its prefix. */
  get name(): string {
    return this.#core.prefix.split("/").pop()!;
  }

  /**
   * Opens the run (status RUNNING) and records the config given to `startRun`.
   *
   * @returns The run itself, for `await using run = await startRun(...).start()`.
   */
  async start(): Promise<Run> {
    await this.#core.open();
    if (this.#config) this.#core.setParams(this.#config);
    return this;
  }

  /**
   * Logs metric values at a step. Keys `group/name` go to metric `group`.
   *
   * @param values Metric values by key, e.g. `{ "train/loss": 0.4, lr: 0.1 }`.
   * @param step The step; omitted, it continues from the last one (starting at 0).
   * @throws {InvalidMetricError} In strict mode, for a bad value or key.
   */
  log(values: Record<string, number>, step?: number): void {
    const at = step ?? this.#nextStep ?? this.#core.resumeStep;
    this.#nextStep = at + 1;
    this.#core.logKeyed(values, at);
  }

  /**
   * Merges values into the run's config (its parameters).
   *
   * @param config Values to merge; nested objects become dot keys.
   */
  logConfig(config: Record<string, unknown>): void {
    this.#core.setParams(config);
  }

  /** Writes everything logged so far; resolves when it is durable. */
  flush(): Promise<void> {
    return this.#core.flush();
  }

  /**
   * Ends the run.
   *
   * @param status `"completed"` (default), `"failed"` or `"interrupted"` (CANCELLED).
   */
  async finish(status: RunStatus = "completed"): Promise<void> {
    const mapped = RUN_STATUS[status];
    if (!mapped) throw new ConfigError(`Invalid run status "${status}": expected completed, failed or interrupted`);
    await this.#core.close(mapped);
  }

  /** Finishes the run as completed if it is still open (for `await using`). */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#core.isOpen) await this.#core.close("COMPLETED");
  }

}

/**
 * Starts a run of the Run API under an experiment name.
 *
 * With a callback, the run is started, the callback awaited and the run finished
 * as `completed` (or `failed`, with the error rethrown). Without one, the run is
 * returned unstarted: call `await run.start()` and `await run.finish(status)`.
 *
 * @param experiment The experiment's name (one prefix segment).
 * @param options Config, run name, project, strict mode, storage.
 * @param fn The training code.
 * @returns The run, or the callback's result.
 *
 * @example
 * ```ts
 * import { startRun } from "./mod.ts";
 *
 * await startRun("resnet-cifar10", { config: { lr: 0.1 } }, async (run) => {
 *   for (let step = 0; step < 100; step++) run.log({ "train/loss": 1 / (step + 1) }, step);
 * });
 * ```
 */
export function startRun(experiment: string, options?: RunOptions): Run;
/**
 * Starts a run, awaits `fn` and finishes the run as `completed`, or as `failed`
 * with the error rethrown.
 *
 * @param experiment The experiment's name (one prefix segment).
 * @param options Config, run name, project, strict mode, storage.
 * @param fn The training code.
 * @returns The callback's result.
 *
 * @example
 * ```ts
 * import { startRun } from "./mod.ts";
 *
 * await startRun("mnist", { config: { lr: 0.1 } }, (run) => run.log({ "train/loss": 0.3 }));
 * ```
 */
export function startRun<T>(
  experiment: string,
  options: RunOptions,
  fn: (run: Run) => T | Promise<T>,
): Promise<T>;
export function startRun<T>(
  experiment: string,
  options: RunOptions = {},
  fn?: (run: Run) => T | Promise<T>,
): Run | Promise<T> {
  const run = new Run(experiment, options);
  if (!fn) return run;
  return withLifecycle(runCores.get(run)!, () => {
    if (options.config) run.logConfig(options.config);
    return fn(run);
  });
}

/** The core of each Run, for startRun's callback form (kept out of the Run's public surface). */
const runCores = new WeakMap<Run, ExperimentCore>();

const RUN_STATUS: Record<string, Status> = Object.assign(ownKeys<Status>(), { completed: "COMPLETED", failed: "FAILED", interrupted: "CANCELLED" });

function uniqueRunName(): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  return `run-${stamp}-${Math.random().toString(36).slice(2, 6)}`;
}

// ─── Facade: RUN and dxp ────────────────────────────────────────────────────

/**
 * The global configuration, read lazily from `ML_DASH_PREFIX`, `ML_DASH_ROOT`,
 * `ML_DASH_URL` and `ML_DASH_USER`, and settable. {@linkcode dxp} is built from it.
 *
 * @example
 * ```ts
 * import { dxp, RUN } from "./mod.ts";
 *
 * RUN.prefix = "geyang/scratch/x";
 * await dxp.run(async () => dxp.metrics("train").log({ loss: 1 }));
 * ```
 */
export const RUN: RunConfig = Object.defineProperties({} as RunConfig, {
  prefix: setting("prefix", "ML_DASH_PREFIX"),
  dashRoot: setting("dashRoot", "ML_DASH_ROOT", ".dash"),
  dashUrl: setting("dashUrl", "ML_DASH_URL"),
  user: setting("user", "ML_DASH_USER", "local"),
});

/** Values set on {@linkcode RUN}; unset ones are read from the environment at each use. */
const runOverrides: Partial<RunConfig> = {};

/** A property of {@linkcode RUN}: what was set, else the env var, else the default. */
function setting(name: keyof RunConfig, env: string, fallback?: string): PropertyDescriptor {
  return {
    get: (): string | undefined => runOverrides[name] ?? readEnv(env) ?? fallback,
    set: (value: string | undefined): void => void (runOverrides[name] = value),
    enumerable: true,
  };
}

/**
 * The experiment built from {@linkcode RUN}: its prefix and storage are read when it starts.
 *
 * @example
 * ```ts
 * import { dxp, RUN } from "./mod.ts";
 *
 * RUN.prefix = "geyang/scratch/some-experiment";
 * await dxp.run(async () => dxp.metrics("train").log({ step: 0, loss: 1.0 }));
 * ```
 */
export const dxp: Experiment = new Experiment();

// ─── Core: one experiment's state, shared by both facades ───────────────────

/** Settings after options, RUN and env vars are resolved and checked. */
interface Settings extends Pick<ExperimentOptions, "readme" | "tags" | "metadata" | "dashRoot" | "dashUrl" | "token"> {
  prefix: string;
  strict: boolean;
  flushInterval: number;
  metricBatchSize: number;
  logBatchSize: number;
  /** Seconds the server is retried before a batch is kept (undefined: `ML_DASH_HTTP_TIMEOUT`, else 30). */
  httpTimeout?: number;
}

/**
 * The experiment core: lifecycle, validation and the buffer. Both
 * facades call it; it writes through a {@linkcode Backend}.
 */
class ExperimentCore {
  readonly settings: Settings;
  #backend: Backend | undefined;
  #buffer: RecordBuffer | undefined;
  #streams = new Map<string, MetricStream>();
  #params: Record<string, ParamValue> = ownKeys();
  #files: FileInfo[] = [];
  #warned = new Set<string>();
  #keySplits = new Map<string, readonly [string, string]>();
  #checkedMetrics = new Set<string>();
  #open = false;
  #opening = false;
  /** The first step after every step recorded before this session (0 for a new experiment). */
  resumeStep = 0;

  constructor(settings: Settings) {
    this.settings = settings;
  }

  get prefix(): string {
    return this.settings.prefix;
  }

  get isOpen(): boolean {
    return this.#open;
  }

  async open(): Promise<void> {
    if (this.#open || this.#opening) throw new UsageError(`Experiment "${this.prefix}" is already running`);
    this.#opening = true;
    try {
      await this.#openNow();
    } finally {
      this.#opening = false;
    }
  }

  async #openNow(): Promise<void> {
    const backend = this.#backend ??= await createBackend(this.settings);
    const existing = await backend.open(this.prefix);
    if (existing.unreachable) {
      warn(`${existing.unreachable}; the run starts without what was recorded before (parameters, last steps), and what it logs is kept for the server`);
    }
    this.#params = Object.assign(ownKeys<ParamValue>(), existing.params);
    this.#files = [...existing.files];
    this.#streams.clear();
    const s = this.settings;
    this.#buffer = new RecordBuffer(backend, this.prefix, s);
    // Resuming continues each metric's steps after the last one recorded.
    const steps = Object.entries(existing.steps ?? {});
    for (const [name, step] of steps) this.#buffer.queue(name).nextStep = step + 1;
    this.resumeStep = steps.reduce((next, [, step]) => Math.max(next, step + 1), 0);
    const now = nowSeconds();
    this.#buffer.patch({
      metadata: { prefix: this.prefix, readme: s.readme, tags: s.tags, metadata: s.metadata },
      status: {
        status: "RUNNING",
        startedAt: now,
        endedAt: null,
        heartbeatAt: now,
        heartbeatInterval: s.flushInterval,
        pid: processId(),
        host: await hostName(),
      },
    });
    // A failed first write is an I/O error like any other: kept, retried, reported by flush().
    await this.#buffer.flush().catch((error) => {
      if (s.strict) throw error;
      warn(`${describe(error)}; the run goes on and the data is retried`);
    });
    this.#buffer.startTimer();
    this.#open = true;
    openCores.add(this);
    installExitHooks();
  }

  async close(status: Status, error?: unknown): Promise<void> {
    if (!this.#open) throw new UsageError(`Experiment "${this.prefix}" is not running`);
    this.#open = false;
    openCores.delete(this);
    uninstallExitHooksIfIdle();
    const buffer = this.#buffer!;
    buffer.stopTimer();
    buffer.patch({ status: { status, endedAt: nowSeconds(), error: error === undefined ? undefined : describe(error) } });
    try {
      await buffer.flush();
    } finally {
      await this.#backend!.close();
    }
  }

  flush(): Promise<void> {
    return this.#buffer?.flush() ?? Promise.resolve();
  }

  /** At process exit: writes synchronously whatever each backend can take. */
  flushAtProcessExit(): void {
    this.#buffer?.flushSync(true);
  }

  /** Records the run FAILED with `error` in the next write (an uncaught error ends the process). */
  markFailed(error: unknown): void {
    this.#buffer?.patch({ status: { status: "FAILED", endedAt: nowSeconds(), error: describe(error) } });
  }

  /** Starts a flush at natural exit; returns whether it did (then the process must wait for it). */
  flushAtExit(): boolean {
    return this.#buffer?.flushAtExit() ?? false;
  }

  stream(name: string): MetricStream {
    let stream = this.#streams.get(name);
    if (!stream) {
      checkMetricName(name);
      const queue = this.#openBuffer().queue(name);
      stream = { name, log: (fields) => this.#logTo(queue, fields, stepOf(fields)) };
      this.#streams.set(name, stream);
    }
    return stream;
  }

  logMetric(name: string, fields: Record<string, unknown>, step: number | undefined): void {
    this.#logTo(this.#openBuffer().queue(name), fields, step);
  }

  /**
   * The hot path: checks the fields and serializes the record at once, so that
   * the caller may reuse its object and the buffer holds compact strings.
   */
  #logTo(queue: MetricQueue, fields: Record<string, unknown>, step: number | undefined): void {
    if (!this.#open) this.#assertOpen();
    if (this.settings.strict) this.#throwStrictFailure();
    const at = step ?? queue.nextStep;
    const prefix = linePrefix();
    // The read index's figures are kept as the fields are checked; values as stored (JSON writes -0 as 0).
    const figures = queue.figures;
    const place = figures === undefined ? -1 : figures.records;
    const stepStored = at + 0;
    let keys = 0;
    for (const key in fields) {
      const value = fields[key];
      if (typeof value !== "number" || value - value !== 0 || key === "" || key === "step" || key === "_ts" || key.length > SHORT_FIELD_UNITS) {
        // Figures of part of this record are in the chunk's: its text is scanned instead.
        if (keys > 0 && place >= 0) figures!.records = -1;
        return this.#logChecked(queue, fields, at);
      }
      if (place >= 0) {
        let known = figures!.places[keys];
        if (known === undefined || known.name !== key) known = keyFigures(figures!, keys, key);
        noteFinite(known, value + 0, stepStored, prefixTs, place);
      }
      keys++;
    }
    if (keys === 0) return;
    queue.nextStep = at + 1;
    if (place >= 0) noteRecord(figures!, stepStored, prefixTs);
    this.#buffer!.pushMetric(queue, prefix + at + "," + JSON.stringify(fields).slice(1));
  }

  /** The careful path, for records with a bad value, an explicit `step` or `_ts`. */
  #logChecked(queue: MetricQueue, fields: Record<string, unknown>, at: number): void {
    const record: Record<string, unknown> = { _ts: nowSeconds(), step: at };
    let count = 0;
    for (const key in fields) {
      if (key === "step") continue;
      const value = fields[key];
      if (typeof value === "number" && value - value === 0 && isValidField(key)) {
        setKey(record, key, value);
        count++;
      } else if (this.#recordBadValue(queue.name, key, value, record)) {
        count++;
      }
    }
    if (count === 0) return;
    queue.nextStep = at + 1;
    if (queue.figures !== undefined) noteRecordObject(queue.figures, record);
    this.#buffer!.pushMetric(queue, JSON.stringify(record));
  }

  /** Run API keys: `"group/name"` goes to metric `group`, other keys to the default metric. */
  logKeyed(values: Record<string, unknown>, step: number): void {
    const groups = new Map<string, Record<string, unknown>>();
    for (const key in values) {
      const [group, field] = this.#splitKey(key);
      let fields = groups.get(group);
      if (!fields) groups.set(group, fields = {});
      setKey(fields, field, values[key]);
    }
    if (this.settings.strict) for (const [group, fields] of groups) this.#checkStrict(group, fields);
    for (const [group, fields] of groups) this.logMetric(group, fields, step);
  }

  /** Metric and field of a Run API key, checked once per key (the names are checked on a cache miss only). */
  #splitKey(key: string): readonly [string, string] {
    let split = this.#keySplits.get(key);
    if (split) return split;
    const slash = key.indexOf("/");
    const group = slash > 0 && isValidMetricName(key.slice(0, slash)) ? key.slice(0, slash) : DEFAULT_METRIC;
    split = [group, group === DEFAULT_METRIC ? key : key.slice(slash + 1)];
    // Bounded, for a caller that makes up new keys at every step.
    if (this.#keySplits.size < MAX_CACHED_KEYS) this.#keySplits.set(key, split);
    return split;
  }

  #checkMetricName(name: string): void {
    if (this.#checkedMetrics.has(name)) return;
    checkMetricName(name);
    if (this.#checkedMetrics.size < MAX_CACHED_KEYS) this.#checkedMetrics.add(name);
  }

  /** `exp.metrics.log({ epoch, train: {...}, eval: {...} })`: shared fields go into every group. */
  logGrouped(values: GroupedMetrics): void {
    const shared: Record<string, unknown> = {};
    const groups: [string, Record<string, unknown>][] = [];
    for (const key in values) {
      const value = values[key];
      if (isPlainObject(value)) groups.push([key, value]);
      else setKey(shared, key, value);
    }
    if (groups.length === 0) return this.logMetric(DEFAULT_METRIC, shared, stepOf(shared));
    for (const [name] of groups) this.#checkMetricName(name);
    if (this.settings.strict) for (const [name, fields] of groups) this.#checkStrict(name, { ...shared, ...fields });
    for (const [name, fields] of groups) {
      const merged = { ...shared, ...fields };
      this.logMetric(name, merged, stepOf(merged));
    }
  }

  log(level: LogLevel, message: string, meta: LogMeta): void {
    this.#assertOpen();
    if (this.settings.strict) this.#throwStrictFailure();
    if (!LOG_LEVELS.includes(level)) this.#warnOnce(`level:${level}`, `Unknown log level "${level}": expected one of ${LOG_LEVELS.join(", ")}; recorded as given`);
    this.#buffer!.pushLog(this.#serializeLog({ _ts: nowSeconds(), level, message: String(message), ...meta }));
  }

  setParams(values: Record<string, unknown>): void {
    this.#assertOpen();
    if (!isPlainObject(values)) throw new ConfigError(`Invalid parameters ${describe(values)}: expected a plain object`);
    const flat = flatten(values);
    try {
      JSON.stringify(flat);
    } catch (error) {
      throw new ConfigError(`Invalid parameters: expected JSON-serializable values (${describe(error)})`);
    }
    Object.assign(this.#params, flat);
    this.#buffer!.patch({ params: flat });
  }

  getParams(): Record<string, ParamValue> {
    return { ...this.#params };
  }

  async saveFile(path: string, data: Uint8Array, mime: string): Promise<FileInfo> {
    this.#assertOpen();
    checkFilePath(path);
    const info: FileInfo = { path, size: data.byteLength, mime, _ts: nowSeconds() };
    this.#files = [...this.#files.filter((f) => f.path !== path), info];
    this.#buffer!.patch({ files: [{ ...info, data }] });
    await this.#buffer!.flush();
    return info;
  }

  listFiles(): FileInfo[] {
    return [...this.#files];
  }

  /** A log line with metadata that JSON cannot hold (or nested too deep to read back) keeps its message and says why. */
  #serializeLog(record: Record<string, unknown>): string {
    try {
      if (nestsDeeper(record, MAX_NESTING)) throw new RangeError(`nested more than ${MAX_NESTING} levels deep, or circular`);
      return JSON.stringify(record);
    } catch (error) {
      this.#warnOnce("log-meta", `Log metadata could not be serialized (${describe(error)}); recorded without it`);
      const { _ts, level, message } = record;
      return JSON.stringify({ _ts, level, message, metaError: describe(error) });
    }
  }

  /** In strict mode a failed write surfaces at the next log() call; by default only flush() reports it. */
  #throwStrictFailure(): void {
    const failure = this.#buffer!.failure;
    if (failure) throw failure;
  }

  #openBuffer(): RecordBuffer {
    this.#assertOpen();
    return this.#buffer!;
  }

  #assertOpen(): void {
    if (!this.#open) throw new UsageError(`Experiment "${this.prefix}" is not running: start it before logging`);
  }

  #checkStrict(metric: string, fields: Record<string, unknown>): void {
    for (const key in fields) {
      if (key === "step") continue;
      const value = fields[key];
      if (!(typeof value === "number" && value - value === 0 && isValidField(key))) this.#recordBadValue(metric, key, value, { _ts: 0, step: 0 });
    }
  }

  /** Warns once per key (throws when strict); returns whether a value was recorded. */
  #recordBadValue(metric: string, key: string, value: unknown, record: Record<string, unknown>): boolean {
    const where = metric === DEFAULT_METRIC ? `"${key}"` : `"${metric}/${key}"`;
    let problem: string;
    let recorded = false;
    const tooLong = byteLimitProblem(key, MAX_FIELD_BYTES);
    if (key === "") {
      problem = `Invalid metric key "" in metric "${metric}": a key cannot be empty; the value was not recorded`;
    } else if (tooLong) {
      problem = `Invalid metric key ${shorten(key)} in metric "${metric}": ${tooLong}; the value was not recorded`;
    } else if (typeof value === "number") {
      const text = Number.isNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity";
      problem = `Invalid metric value ${text} for ${where}: expected a finite number; recorded as the string "${text}"`;
      if (!this.settings.strict) setKey(record, key, text);
      recorded = true;
    } else {
      problem = `Invalid metric value ${describe(value)} for ${where}: expected a finite number; the value was not recorded`;
    }
    if (this.settings.strict) throw new InvalidMetricError(problem.replace(/;.*$/, ""));
    this.#warnOnce(`${metric}\u0000${key}`, problem);
    return recorded;
  }

  #warnOnce(id: string, message: string): void {
    if (this.#warned.has(id)) return;
    this.#warned.add(id);
    warn(message);
  }
}

const DEFAULT_METRIC = "default";
/** Run API keys and metric names remembered as checked, per experiment. */
const MAX_CACHED_KEYS = 10_000;

/** Whether a field's name can be stored: not empty, and not longer than MAX_FIELD_BYTES. */
function isValidField(key: string): boolean {
  return key !== "" && (key.length <= SHORT_FIELD_UNITS || byteLimitProblem(key, MAX_FIELD_BYTES) === undefined);
}

function stepOf(fields: Record<string, unknown>): number | undefined {
  const step = fields.step;
  return typeof step === "number" && Number.isFinite(step) ? step : undefined;
}

function nowSeconds(): number {
  return Date.now() / 1000;
}

function warn(message: string): void {
  console.warn(`ml-dash: ${message}`);
}

/**
 * An object without a prototype, for keys that come from users: there `"__proto__"`
 * and `"constructor"` are keys like any other, where on `{}` an assignment to
 * `__proto__` would replace the prototype (and the key would be lost).
 */
function ownKeys<T = unknown>(): Record<string, T> {
  return Object.create(null);
}

/**
 * `record[key] = value`, where a key `"__proto__"` becomes a field instead of
 * replacing the prototype. For records built on the log() path: objects
 * without a prototype serialize about three times slower on V8.
 */
function setKey(record: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") Object.defineProperty(record, key, { value, enumerable: true, writable: true, configurable: true });
  else record[key] = value;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== "object") return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * Nested plain objects become dot keys: `{ model: { depth: 50 } }` → `{ "model.depth": 50 }`.
 * The recursion stops at MAX_NESTING levels, with a ConfigError, before it could overflow the stack.
 */
function flatten(values: Record<string, unknown>, into: Record<string, ParamValue> = ownKeys(), prefix = "", depth = 1): Record<string, ParamValue> {
  for (const key in values) {
    const value = values[key];
    const deeper = isPlainObject(value) ? depth === MAX_NESTING : nestsDeeper(value, MAX_NESTING - depth);
    if (deeper) throw new ConfigError(`Invalid parameters: nested more than ${MAX_NESTING} levels deep, or circular (at ${shorten(prefix + key)})`);
    if (isPlainObject(value)) flatten(value, into, `${prefix}${key}.`, depth + 1);
    else into[prefix + key] = value as ParamValue;
  }
  return into;
}

/** Whether `value` nests objects and arrays more than `levels` deep (a circular one does); stops at the limit, so it cannot overflow the stack. */
function nestsDeeper(value: unknown, levels: number): boolean {
  if (value === null || typeof value !== "object") return false;
  if (levels <= 0) return true;
  if (Array.isArray(value)) {
    for (const item of value) if (nestsDeeper(item, levels - 1)) return true;
    return false;
  }
  for (const key of Object.keys(value)) if (nestsDeeper((value as Record<string, unknown>)[key], levels - 1)) return true;
  return false;
}

function guessMime(path: string): string {
  const ext = path.slice(path.lastIndexOf(".") + 1).toLowerCase();
  const types: Record<string, string> = Object.assign(ownKeys<string>(), {
    txt: "text/plain", md: "text/markdown", json: "application/json", csv: "text/csv",
    png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", svg: "image/svg+xml", html: "text/html",
  });
  return types[ext] ?? "application/octet-stream";
}

// ─── Core: settings, validation and backend selection ───────────────────────

// Functions, not constants: `dxp` is constructed while the module is still loading.
function experimentOptionNames(): readonly string[] {
  return [
    "prefix", "readme", "tags", "metadata", "dashRoot", "dashUrl", "token", "strict",
    "flushInterval", "metricBatchSize", "logBatchSize", "httpTimeout",
  ];
}

function runOptionNames(): readonly string[] {
  return [...experimentOptionNames().filter((n) => n !== "prefix"), "config", "runName", "project", "owner"];
}

function checkOptionNames(options: object, allowed: readonly string[], where: string): void {
  if (!isPlainObject(options)) throw new ConfigError(`Invalid options for ${where}: expected an object, received ${describe(options)}`);
  for (const key of Object.keys(options)) {
    if (!allowed.includes(key)) {
      throw new ConfigError(`Unknown option "${key}" for ${where}: expected one of ${allowed.join(", ")}`);
    }
  }
}

function resolveSettings(options: ExperimentOptions): Settings {
  const prefix = options.prefix ?? RUN.prefix;
  if (prefix === undefined) {
    throw new ConfigError(`Missing prefix: pass { prefix: "owner/project/name" } or set RUN.prefix or ML_DASH_PREFIX`);
  }
  checkPrefix(prefix);
  const dashUrl = options.dashUrl ?? (options.dashRoot === undefined ? RUN.dashUrl : undefined);
  if (dashUrl !== undefined) checkUrl(dashUrl);
  const dashRoot = options.dashRoot ?? (dashUrl === undefined ? RUN.dashRoot : undefined);
  if (dashRoot !== undefined && (typeof dashRoot !== "string" || dashRoot === "" || dashRoot.includes("\0"))) {
    throw new ConfigError(`Invalid dashRoot ${describe(dashRoot)}: expected a non-empty directory path`);
  }
  if (nestsDeeper(options.metadata, MAX_NESTING)) {
    throw new ConfigError(`Invalid metadata: nested more than ${MAX_NESTING} levels deep, or circular`);
  }
  if (options.tags !== undefined && !(Array.isArray(options.tags) && options.tags.every((t) => typeof t === "string"))) {
    throw new ConfigError(`Invalid tags ${describe(options.tags)}: expected an array of strings`);
  }
  return {
    prefix,
    readme: options.readme,
    tags: options.tags,
    metadata: options.metadata,
    dashRoot,
    dashUrl,
    token: options.token,
    strict: options.strict ?? false,
    flushInterval: positive("flushInterval", options.flushInterval, "ML_DASH_FLUSH_INTERVAL", 5),
    metricBatchSize: positive("metricBatchSize", options.metricBatchSize, "ML_DASH_METRIC_BATCH_SIZE", 100),
    logBatchSize: positive("logBatchSize", options.logBatchSize, "ML_DASH_LOG_BATCH_SIZE", 100),
    httpTimeout: checkHttpTimeout(options.httpTimeout),
  };
}

/** The `httpTimeout` option: seconds, 0 or more (the env var's default is the HTTP backend's own). */
function checkHttpTimeout(seconds: number | undefined): number | undefined {
  if (seconds === undefined || (typeof seconds === "number" && seconds >= 0 && Number.isFinite(seconds))) return seconds;
  throw new ConfigError(`Invalid httpTimeout ${describe(seconds)}: expected a number of seconds, 0 or more`);
}

function positive(name: string, option: number | undefined, envName: string, fallback: number): number {
  if (option !== undefined) {
    if (typeof option === "number" && option > 0 && Number.isFinite(option)) return option;
    throw new ConfigError(`Invalid ${name} ${describe(option)}: expected a positive number`);
  }
  const text = readEnv(envName);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (value > 0 && Number.isFinite(value)) return value;
  warn(`Ignoring ${envName}=${JSON.stringify(text)}: expected a positive number; using ${fallback}`);
  return fallback;
}

// The path rules, the URL rule and the environment are shared with the backends; public since
// the first release.
export { checkPrefix, checkUrl, readEnv };

/** Strings of at most this many UTF-16 code units fit in MAX_FIELD_BYTES (a code unit is at most 3 bytes of UTF-8). */
const SHORT_FIELD_UNITS = Math.floor(MAX_FIELD_BYTES / 3);

/** How deep params and metadata may nest objects and arrays (deeper input would overflow stacks here and on the server). */
const MAX_NESTING = 64;

type JsonlModule = typeof import("./storage/jsonl.ts");
type HttpModule = typeof import("./storage/http.ts");

// The backends are imported on first use so that mod.ts loads where there is no filesystem.
function loadJsonlModule(): Promise<JsonlModule> {
  return import("./storage/jsonl.ts");
}

function loadHttpModule(): Promise<HttpModule> {
  return import("./storage/http.ts");
}

async function createBackend(settings: Settings): Promise<Backend> {
  const backends: Backend[] = [];
  if (settings.dashRoot !== undefined) {
    const { JsonlBackend } = await loadJsonlModule();
    backends.push(new JsonlBackend(settings.dashRoot));
  }
  if (settings.dashUrl !== undefined) {
    const { HttpBackend } = await loadHttpModule();
    // A server that is down does not keep a run from starting, unless strict.
    const openWhenUnreachable = !settings.strict;
    const giveUpAfterMs = settings.httpTimeout === undefined ? undefined : settings.httpTimeout * 1000;
    backends.push(new HttpBackend({ url: settings.dashUrl, token: settings.token, outboxRoot: settings.dashRoot, openWhenUnreachable, giveUpAfterMs }));
  }
  return backends.length === 1 ? backends[0] : new FanOutBackend(backends);
}

/**
 * Hybrid mode: every record goes to each backend; reads come from the first. A
 * batch retried after one backend failed goes only to the backends that did
 * not store it yet, so the other never gets it twice.
 */
class FanOutBackend implements Backend {
  #backends: Backend[];
  #storedBy = new WeakMap<Batch, Set<Backend>>();

  constructor(backends: Backend[]) {
    this.#backends = backends;
  }

  get description(): string {
    return this.#backends.map((b) => b.description).join(" and ");
  }

  /** Opens on every backend; one that fails is reported and caught up later, unless all fail. */
  async open(prefix: string): Promise<ExistingState> {
    const results = await Promise.allSettled(this.#backends.map((b) => b.open(prefix)));
    const states = results.flatMap((r) => r.status === "fulfilled" ? [r.value] : []);
    const failures = results.flatMap((r) => r.status === "rejected" ? [r.reason] : []);
    const opened = states.filter((s) => !s.unreachable);
    if (opened.length === 0) {
      if (failures.length > 0) throw failures[0];
      return states[0];
    }
    const problems = [...failures.map(describe), ...states.flatMap((s) => s.unreachable ?? [])];
    for (const problem of problems) warn(`${problem}; the run goes on, and what it logs is kept for that backend`);
    const [first, ...rest] = opened;
    const steps = Object.assign(ownKeys<number>(), first.steps);
    for (const s of rest) for (const [name, step] of Object.entries(s.steps ?? {})) steps[name] = Math.max(step, steps[name] ?? step);
    return rest.reduce((acc, s) => ({ params: { ...s.params, ...acc.params }, files: acc.files, steps }), { ...first, steps });
  }

  async write(prefix: string, batch: Batch): Promise<void> {
    const stored = this.#stored(batch);
    await settleAll(this.#backends.filter((b) => !stored.has(b)).map(async (b) => {
      await b.write(prefix, batch);
      stored.add(b);
    }));
  }

  get writeSync(): ((prefix: string, batch: Batch) => void) | undefined {
    return this.#backends.every((b) => b.writeSync) ? this.#writeSyncWhereYouCan : undefined;
  }

  get writeAtExit(): ((prefix: string, batch: Batch) => void) | undefined {
    return this.#backends.some((b) => b.writeSync ?? b.writeAtExit) ? this.#writeSyncWhereYouCan : undefined;
  }

  #writeSyncWhereYouCan = (prefix: string, batch: Batch): void => {
    const stored = this.#stored(batch);
    let failure: unknown;
    for (const b of this.#backends) {
      // At exit a backend that cannot write synchronously keeps what it can (the HTTP backend's outbox).
      const write = b.writeSync ?? b.writeAtExit;
      if (stored.has(b) || !write) continue;
      try {
        write(prefix, batch);
        stored.add(b);
      } catch (error) {
        failure ??= error;
      }
    }
    if (failure !== undefined) throw failure;
  };

  /**
   * A batch failed on some backend, and more wait behind it. A backend that
   * stored it goes on writing the rest now, so that one that is down (a server,
   * a full disk) holds back nothing of the other copy; one that failed it keeps
   * them if it can (the outbox) and otherwise gets them in order at the next flush.
   */
  async keep(prefix: string, batches: Batch[]): Promise<void> {
    const failed = batches[0];
    for (const b of this.#backends) {
      const missing = batches.filter((batch) => !this.#stored(batch).has(b));
      if (this.#stored(failed).has(b)) {
        for (const batch of missing) {
          await b.write(prefix, batch);
          this.#stored(batch).add(b);
        }
      } else {
        await b.keep?.(prefix, missing);
      }
    }
  }

  async close(): Promise<void> {
    await settleAll(this.#backends.map((b) => b.close()));
  }

  #stored(batch: Batch): Set<Backend> {
    let stored = this.#storedBy.get(batch);
    if (!stored) this.#storedBy.set(batch, stored = new Set());
    return stored;
  }
}

async function settleAll(promises: Promise<void>[]): Promise<void> {
  const failed = (await Promise.allSettled(promises)).find((r) => r.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
}

// ─── Core: process exit and signals ─────────────────────────────────────────

const openCores = new Set<ExperimentCore>();

type Signal = "SIGINT" | "SIGTERM";

/** What ml-dash does when the process ends, while at least one experiment is open. */
interface ExitHooks {
  /** Natural end: starts a flush where something is pending; returns whether it did. */
  beforeExit(): boolean;
  /** `process.exit()`: writes synchronously what it can. */
  exit(): void;
  /** A termination signal: flushes, and ends the runs unless the user handles the signal. */
  signal(signal: Signal): void;
  /** An uncaught error is about to end the process: records the runs FAILED and writes synchronously. */
  crash(error: unknown): void;
}

/** Adds and removes the hooks through one runtime's events. */
interface ExitEvents {
  add(hooks: ExitHooks): void;
  remove(): void;
  /** Whether the user listens to `signal` on `process` (asked when the signal comes). */
  userHandles(signal: Signal): boolean;
}

let exitEvents: ExitEvents | undefined;

/** The part of `Deno` used where `process` would cost start-up time (Deno builds it lazily, in tens of ms). */
interface DenoSignalApi {
  addSignalListener(signal: Signal, handler: () => void): void;
  removeSignalListener(signal: Signal, handler: () => void): void;
}

function denoSignals(): DenoSignalApi | undefined {
  const deno = denoNamespace<Partial<DenoSignalApi>>();
  return typeof deno?.addSignalListener === "function" ? deno as DenoSignalApi : undefined;
}

/** Installs exit and signal hooks while at least one experiment is open. */
function installExitHooks(): void {
  if (exitEvents) return;
  const deno = denoSignals();
  const events = deno ? denoExitEvents(deno) : processExitEvents() ?? pageExitEvents();
  if (!events) return;
  events.add({ beforeExit: flushAllAtExit, exit: flushAllSync, signal: endOnSignal, crash: failAllAtCrash });
  exitEvents = events;
}

function uninstallExitHooksIfIdle(): void {
  if (!exitEvents || openCores.size > 0) return;
  exitEvents.remove();
  exitEvents = undefined;
}

function flushAllAtExit(): boolean {
  let started = false;
  for (const core of openCores) started = core.flushAtExit() || started;
  return started;
}

function flushAllSync(): void {
  for (const core of openCores) {
    try {
      core.flushAtProcessExit();
    } catch (e) {
      warn(String(e));
    }
  }
}

function failAllAtCrash(error: unknown): void {
  for (const core of openCores) core.markFailed(error);
  flushAllSync();
}

async function endOnSignal(signal: Signal): Promise<void> {
  const cores = [...openCores];
  // Another handler means the user is in charge of the signal: flush, but do not end or exit.
  if (exitEvents?.userHandles(signal)) {
    await Promise.allSettled(cores.map((c) => c.flush()));
    return;
  }
  await Promise.allSettled(cores.map((c) => c.close("CANCELLED")));
  // Read only now: on Deno the first use of `process` costs tens of milliseconds.
  nodeProcess()!.exit(signal === "SIGINT" ? 130 : 143);
}

type Listener = (event: never) => void;

/** Listeners added one by one through a runtime's API, and removed together. */
function listenerList(
  on: (name: string, listener: Listener) => void,
  off: (name: string, listener: Listener) => void,
): { add(name: string, listener: Listener): void; removeAll(): void; has(name: string): boolean } {
  const added: [string, Listener][] = [];
  return {
    /** Adds a listener; one the runtime refuses (it throws) is not kept. */
    add(name: string, listener: Listener): void {
      on(name, listener);
      added.push([name, listener]);
    },
    removeAll(): void {
      for (const [name, listener] of added.splice(0)) off(name, listener);
    },
    has: (name: string): boolean => added.some(([n]) => n === name),
  };
}

const SIGNALS = ["SIGINT", "SIGTERM"] as const;

/** Node and Bun: the `process` events. */
function processExitEvents(): ExitEvents | undefined {
  const proc = nodeProcess();
  if (typeof proc?.on !== "function") return undefined;
  const listeners = listenerList(
    (name, listener) => proc.on(name, listener as (...args: unknown[]) => void),
    (name, listener) => proc.off(name, listener as (...args: unknown[]) => void),
  );
  return {
    add(hooks) {
      listeners.add("beforeExit", () => void hooks.beforeExit());
      listeners.add("exit", () => hooks.exit());
      // A monitor sees an uncaught error without changing what it does; a user's handler keeps the process alive.
      listeners.add("uncaughtExceptionMonitor", (error: unknown) => {
        if (proc.listenerCount("uncaughtException") === 0) hooks.crash(error);
      });
      // Signal handlers replace the default exit, so they are added only where the user has none.
      for (const signal of SIGNALS) if (proc.listenerCount(signal) === 0) listeners.add(signal, () => hooks.signal(signal));
    },
    remove: () => listeners.removeAll(),
    userHandles: (signal) => proc.listenerCount(signal) > (listeners.has(signal) ? 1 : 0),
  };
}

/**
 * A web page: it may be closed at any time once hidden, so what is buffered
 * goes out when it is hidden (`visibilitychange`) or left (`pagehide`), with
 * requests that outlive the page. There is no signal and no exit code.
 */
function pageExitEvents(): ExitEvents | undefined {
  if (!isPage()) return undefined;
  const doc = (globalThis as unknown as { document: EventTarget & { visibilityState: string } }).document;
  const listeners = listenerList(
    (name, listener) => globalThis.addEventListener(name, listener as EventListener),
    (name, listener) => globalThis.removeEventListener(name, listener as EventListener),
  );
  const onHidden = (exit: () => void) => (): void => {
    if (doc.visibilityState === "hidden") exit();
  };
  return {
    add(hooks) {
      listeners.add("pagehide", () => hooks.exit());
      // visibilitychange is fired at the document, and bubbles to the window.
      listeners.add("visibilitychange", onHidden(() => hooks.exit()));
    },
    remove: () => listeners.removeAll(),
    userHandles: () => false,
  };
}

/**
 * Deno: its own events, which cost nothing to add, where `process` would cost
 * tens of milliseconds at start-up. `unload` also fires on `process.exit()`;
 * a signal listener here runs beside the user's `process.on` handlers, and
 * defers to them when the signal comes.
 */
function denoExitEvents(deno: DenoSignalApi): ExitEvents {
  const isSignal = (name: string): name is Signal => (SIGNALS as readonly string[]).includes(name);
  const listeners = listenerList(
    (name, listener) => isSignal(name) ? deno.addSignalListener(name, listener as () => void) : globalThis.addEventListener(name, listener as EventListener),
    (name, listener) => isSignal(name) ? deno.removeSignalListener(name, listener as () => void) : globalThis.removeEventListener(name, listener as EventListener),
  );
  return {
    add(hooks) {
      // Deno waits for work started here only if the event is cancelled.
      listeners.add("beforeunload", (event: Event) => {
        if (hooks.beforeExit()) event.preventDefault();
      });
      listeners.add("unload", () => hooks.exit());
      // Deno fires no unload after an uncaught error: these events are the last chance. A listener
      // that ran before and cancelled the event keeps the process alive.
      const crash = (event: ErrorEvent | PromiseRejectionEvent): void => {
        if (!event.defaultPrevented) hooks.crash("error" in event ? event.error : event.reason);
      };
      listeners.add("error", crash);
      listeners.add("unhandledrejection", crash);
      for (const signal of SIGNALS) {
        try {
          listeners.add(signal, () => hooks.signal(signal));
        } catch {
          // Not a signal of this platform (SIGTERM on Windows).
        }
      }
    },
    remove: () => listeners.removeAll(),
    // Read only now: on Deno the first use of `process` costs tens of milliseconds.
    userHandles: (signal) => nodeProcess()!.listenerCount(signal) > 0,
  };
}

// ─── Buffer ─────────────────────────────────────────────────────────────────

/** Failed flushes in a row after which the exit hook lets the process end. */
const MAX_EXIT_FLUSH_FAILURES = 3;

/** Records kept in memory before the buffer writes them synchronously, if the caller never yields. */
const MAX_PENDING_RECORDS = 50_000;

/**
 * Holds records until a batch is due. `push*` only appends to an
 * array; a microtask writes once a batch is full, a timer writes the rest, and
 * `flush()` writes everything. Writes run one at a time, in order.
 */
class RecordBuffer {
  #backend: Backend;
  #prefix: string;
  #metricBatchSize: number;
  #logBatchSize: number;
  #flushInterval: number;
  #queues = new Map<string, MetricQueue>();
  #logs: string[] = [];
  #state: Batch = {};
  #metricCount = 0;
  #retry: Batch[] = [];
  #tickQueued = false;
  #writing: Promise<void> = Promise.resolve();
  /** The batches the write in progress holds, oldest first. */
  #inFlight: Batch[] = [];
  #stopTimer: (() => void) | undefined;
  /** Whether the overflow was reported: [the program does not yield, the backend is slower]. */
  #overflowWarned = [false, false];
  #failedExitFlushes = 0;
  #warnedFailure = false;
  /** Whether metric records wait as UTF-8 bytes (for a local store) rather than as JSON text. */
  #metricBytes: boolean;
  /** Byte buffers of written batches, for the queues to reuse. */
  #spareBytes: Uint8Array[] = [];
  /** The last write error, until a write succeeds again. */
  failure: StorageError | undefined;

  constructor(backend: Backend, prefix: string, options: Pick<Settings, "metricBatchSize" | "logBatchSize" | "flushInterval" | "dashUrl">) {
    this.#backend = backend;
    // A server takes text: only the local store gets bytes.
    this.#metricBytes = options.dashUrl === undefined;
    this.#prefix = prefix;
    this.#metricBatchSize = options.metricBatchSize;
    this.#logBatchSize = options.logBatchSize;
    this.#flushInterval = options.flushInterval;
  }

  get hasPending(): boolean {
    return this.#metricCount > 0 || this.#logs.length > 0 || Object.keys(this.#state).length > 0 || this.#retry.length > 0;
  }

  /**
   * Flushes at natural process exit. Each flush can start more work and so
   * another `beforeExit`; after a few failures in a row (the server is down)
   * it stops, and the process may end: what could not be sent is in the outbox.
   */
  flushAtExit(): boolean {
    if (!this.hasPending || this.#failedExitFlushes >= MAX_EXIT_FLUSH_FAILURES) return false;
    this.flush().then(
      () => (this.#failedExitFlushes = 0),
      (error) => {
        this.#failedExitFlushes++;
        this.#warnFailure(error);
      },
    );
    return true;
  }

  /** The queue of metric `name`: its step counter and its pending lines. */
  queue(name: string): MetricQueue {
    let queue = this.#queues.get(name);
    if (!queue) {
      const figures = this.#metricBytes ? newChunkFigures() : undefined;
      this.#queues.set(name, queue = { name, nextStep: 0, pending: [], chunks: [], bytes: this.#emptyBytes(0), ends: [], figures, endFigures: [], movedOut: 0 });
    }
    return queue;
  }

  pushMetric(queue: MetricQueue, line: string): void {
    // Chunks end where blocks of the read index do (counted from the queue's first record), so that each lands in one block.
    if (queue.pending.push(line) === CHUNK_LINES - queue.movedOut % CHUNK_LINES) this.#moveOut(queue);
    if (++this.#metricCount >= this.#metricBatchSize) this.#batchIsFull();
  }

  pushLog(line: string): void {
    if (this.#logs.push(line) >= this.#logBatchSize) this.#batchIsFull();
  }

  /** Merges state (metadata, status, params, files) into the next batch. */
  patch(state: Batch): void {
    const s = this.#state;
    if (state.metadata) s.metadata = { ...s.metadata, ...dropUndefined(state.metadata) };
    if (state.status) s.status = { ...s.status, ...dropUndefined(state.status) };
    if (state.params) s.params = { ...s.params, ...state.params };
    if (state.files) s.files = [...(s.files ?? []), ...state.files];
  }

  /** Writes all pending records; resolves when they are durable. Calls queue behind each other. */
  flush(): Promise<void> {
    const done = this.#writing.then(() => this.#writePending());
    this.#writing = done.catch(() => {});
    return done;
  }

  /**
   * Writes all pending records now, where the backend can write synchronously (at exit:
   * where it can at all). The first failure stops the writing, to keep the order, except
   * at exit: there every batch is tried, so that a backend that works (the local copy of
   * a hybrid run) gets them all.
   */
  flushSync(atExit = false): void {
    const writeSync = this.#backend.writeSync ?? this.#backend.writeAtExit;
    if (!writeSync) return;
    let failure: unknown;
    const written = (batch: Batch): boolean => {
      try {
        writeSync(this.#prefix, batch);
        return true;
      } catch (error) {
        failure ??= error;
        return false;
      }
    };
    // A write in progress may not have stored its batches yet. Writing them again is safe:
    // every backend stores a batch once (the JSONL backend marks the parts it wrote).
    for (const batch of this.#inFlight) if (!written(batch) && !atExit) throw failure;
    const unwritten = this.#takeAll().filter((batch) => {
      if ((failure !== undefined && !atExit) || !written(batch)) return true;
      this.#recycle(batch);
      return false;
    });
    this.#retry.unshift(...unwritten);
    if (failure !== undefined) throw failure;
  }

  startTimer(): void {
    this.stopTimer();
    const tick = (): void => {
      this.patch({ status: { heartbeatAt: nowSeconds() } });
      this.flush().catch((e) => this.#warnFailure(e));
    };
    this.#stopTimer = unrefInterval(tick, this.#flushInterval * 1000);
  }

  stopTimer(): void {
    this.#stopTimer?.();
    this.#stopTimer = undefined;
  }

  #batchIsFull(): void {
    if (this.#metricCount + this.#logs.length >= MAX_PENDING_RECORDS) {
      // The caller has not yielded for a long time: write synchronously to keep memory bounded.
      // (Without a synchronous write, a flush is already queued: the one queued as this batch began.)
      return this.#backend.writeSync ? this.#spill() : this.#warnOverflow();
    }
    if (this.#tickQueued) return;
    this.#tickQueued = true;
    // One write per tick, however many log() calls the tick made.
    queueMicrotask(() => {
      this.#tickQueued = false;
      this.flush().catch((e) => this.#warnFailure(e));
    });
  }

  #spill(): void {
    try {
      this.flushSync();
    } catch (error) {
      this.#warnFailure(error);
    }
  }

  /**
   * Without a synchronous write, memory is bounded only by the caller yielding and the backend
   * keeping up: says so once for each of the two causes.
   */
  #warnOverflow(): void {
    const notYielding = this.#tickQueued;
    if (this.#overflowWarned[notYielding ? 0 : 1]) return;
    this.#overflowWarned[notYielding ? 0 : 1] = true;
    const reason = notYielding
      ? "the program has not yielded to the event loop; await something in the loop so they can be sent"
      : `${this.#backend.description} has not accepted the earlier batches yet; memory grows until it catches up`;
    warn(`${this.#metricCount + this.#logs.length} records are waiting: ${reason}`);
  }

  async #writePending(): Promise<void> {
    const batches = this.#inFlight = this.#takeAll();
    while (batches.length > 0) {
      try {
        await this.#backend.write(this.#prefix, batches[0]);
        this.#recycle(batches.shift()!);
      } catch (error) {
        // Nothing is dropped: the batches wait for the next flush, and this one reports.
        this.#inFlight = [];
        this.#retry.unshift(...batches);
        await this.#backend.keep?.(this.#prefix, batches).catch(() => {});
        this.failure = error instanceof StorageError ? error : new StorageError(`Could not write to ${this.#backend.description}: ${describe(error)}`, { cause: error });
        throw this.failure;
      }
    }
    this.failure = undefined;
  }

  #takeAll(): Batch[] {
    const batches = this.#retry;
    this.#retry = [];
    if (this.#metricCount === 0 && this.#logs.length === 0 && Object.keys(this.#state).length === 0) return batches;
    const batch: Batch = this.#state;
    if (this.#metricCount > 0) {
      batch.metrics = ownKeys();
      if (this.#metricBytes) batch.metricFigures = ownKeys();
      for (const queue of this.#queues.values()) {
        if (queue.pending.length > 0) this.#moveOut(queue);
        if (queue.ends.length > 0) {
          let start = 0;
          for (const end of queue.ends) queue.chunks.push(queue.bytes.subarray(start, start = end));
          // The batch keeps these bytes until it is written (it may be retried): the queue takes other ones.
          queue.bytes = this.#emptyBytes(start);
          queue.ends = [];
          batch.metricFigures![queue.name] = queue.endFigures;
          queue.endFigures = [];
        }
        if (queue.chunks.length === 0) continue;
        batch.metrics[queue.name] = queue.chunks;
        queue.chunks = [];
      }
      this.#metricCount = 0;
    }
    if (this.#logs.length > 0) {
      batch.logs = this.#logs;
      this.#logs = [];
    }
    this.#state = {};
    batches.push(batch);
    return batches;
  }

  /** Moves a queue's pending records out of the JS heap (as bytes) or into one chunk of text. */
  #moveOut(queue: MetricQueue): void {
    const text = queue.pending.join("\n");
    queue.movedOut += queue.pending.length;
    queue.pending = [];
    if (!this.#metricBytes) return void queue.chunks.push(text);
    appendChunk(queue, text);
    queue.endFigures.push(queue.figures!.records > 0 ? queue.figures : undefined);
    queue.figures = newChunkFigures();
  }

  /** A byte buffer with room for `size` bytes and more (one that was spare, where it fits). */
  #emptyBytes(size: number): Uint8Array {
    if (!this.#metricBytes) return NO_BYTES;
    const spare = this.#spareBytes.pop();
    return spare && spare.length > size ? spare : new Uint8Array(2 ** Math.ceil(Math.log2(Math.max(MIN_QUEUE_BYTES, size * 1.5))));
  }

  /** Keeps the byte buffers of a written batch for reuse: allocating new ones at every batch makes the collector run. */
  #recycle(batch: Batch): void {
    for (const name in batch.metrics ?? {}) {
      // A metric's byte chunks share one buffer.
      const first = batch.metrics![name][0];
      if (typeof first !== "string" && this.#spareBytes.length < MAX_SPARE_BUFFERS) this.#spareBytes.push(new Uint8Array(first.buffer));
    }
  }

  #warnFailure(error: unknown): void {
    if (this.#warnedFailure) return;
    this.#warnedFailure = true;
    warn(`${describe(error)}; the data is kept in memory and retried at the next flush`);
  }
}

/** A metric's step counter and the serialized records waiting to be written. */
interface MetricQueue {
  /** The metric's name. */
  readonly name: string;
  /** The step the next record gets when none is given. */
  nextStep: number;
  /** The newest records, one a string, not yet moved out. */
  pending: string[];
  /** Older records as chunks of lines: JSON text (for a server), or UTF-8 taken from `bytes`. */
  chunks: (string | Uint8Array)[];
  /**
   * Older records in UTF-8 (for the local store): outside the JS heap, which the collector then
   * neither scans nor copies while the caller goes on logging.
   */
  bytes: Uint8Array;
  /** Where each chunk of lines in `bytes` ends: the chunks are `bytes[0, ends[0])`, `bytes[ends[0], ends[1])`, … */
  ends: number[];
  /** The read index's figures of the pending records (for the local store only). */
  figures: ChunkFigures | undefined;
  /** The figures of each chunk in `bytes`, parallel to `ends` (undefined where unknown). */
  endFigures: (ChunkFigures | undefined)[];
  /** How many records have been moved out of `pending`. */
  movedOut: number;
}

/** The size a metric queue's byte buffer starts with; it doubles as needed. */
const MIN_QUEUE_BYTES = 16_384;
/** Byte buffers kept for reuse, at most. */
const MAX_SPARE_BUFFERS = 8;
const NO_BYTES = new Uint8Array(0);
const utf8Encoder = new TextEncoder();

/**
 * Appends `text` (lines) to a queue's bytes as UTF-8, as a chunk of its own: chunks of at most
 * CHUNK_LINES lines, each far smaller than the writer's buffer, which it then never needs to grow.
 */
function appendChunk(queue: MetricQueue, text: string): void {
  let used = queue.ends.length > 0 ? queue.ends[queue.ends.length - 1] : 0;
  for (let read = 0; ;) {
    const done = utf8Encoder.encodeInto(read === 0 ? text : text.slice(read), queue.bytes.subarray(used));
    used += done.written;
    read += done.read;
    if (read === text.length) break;
    const larger = new Uint8Array(queue.bytes.length * 2);
    larger.set(queue.bytes.subarray(0, used));
    queue.bytes = larger;
  }
  queue.ends.push(used);
}

let cachedPrefix = "";
/** The time in {@linkcode cachedPrefix}. */
let prefixTs = 0;
let prefixUses = 0;
let prefixExpiryQueued = false;

/**
 * `{"_ts":<now>,"step":` for the next record. `Date.now()` costs as much as the
 * rest of a log() call, so the text is reused for up to 256 records within one
 * tick (a microtask ends its life): records of one tick share a millisecond.
 */
function linePrefix(): string {
  if (prefixUses > 0) {
    prefixUses--;
    return cachedPrefix;
  }
  prefixTs = nowSeconds();
  cachedPrefix = `{"_ts":${prefixTs},"step":`;
  prefixUses = 255;
  if (!prefixExpiryQueued) {
    prefixExpiryQueued = true;
    queueMicrotask(expirePrefix);
  }
  return cachedPrefix;
}

/** Adds a record built by the careful path to a chunk's figures; one they cannot describe (a time that is not a number, a value that is not a number or a non-finite one's string) makes the chunk be scanned. */
function noteRecordObject(figures: ChunkFigures, record: Record<string, unknown>): void {
  const step = record.step;
  const ts = record._ts;
  if (figures.records < 0) return;
  if (typeof step !== "number" || typeof ts !== "number") return void (figures.records = -1);
  for (const key in record) {
    const value = record[key];
    if (typeof value !== "number" && value !== "NaN" && value !== "Infinity" && value !== "-Infinity") return void (figures.records = -1);
  }
  noteRecord(figures, step + 0, ts + 0);
  const place = figures.records - 1;
  let i = 0;
  for (const key in record) {
    if (key === "step" || key === "_ts") continue;
    const value = record[key];
    noteValue(keyFigures(figures, i++, key), typeof value === "number" ? value + 0 : Number(value), step + 0, ts + 0, place);
  }
}

function expirePrefix(): void {
  prefixUses = 0;
  prefixExpiryQueued = false;
}

function dropUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

// ─── Errors ─────────────────────────────────────────────────────────────────

// Defined in storage/errors.ts, which the backends and the server share.
export { ConfigError, InvalidMetricError, MlDashError, StorageError, UsageError };
export type { StorageErrorOptions } from "./storage/errors.ts";

// ─── Types ──────────────────────────────────────────────────────────────────

/** The statuses `run.finish()` accepts; `interrupted` is stored as CANCELLED. */
export type RunStatus = "completed" | "failed" | "interrupted";

/** Log levels, from least to most severe. */
export type LogLevel = "debug" | "info" | "warn" | "error" | "fatal";

/** Options of {@linkcode Experiment}. */
export interface ExperimentOptions {
  /** `owner/project/folders.../name`; defaults to `RUN.prefix`. */
  prefix?: string;
  /** A description, stored in experiment.json. */
  readme?: string;
  /** Tags, stored in experiment.json. */
  tags?: string[];
  /** Any JSON metadata, stored in experiment.json. */
  metadata?: Record<string, unknown>;
  /** Local root directory (default `.dash`, or `ML_DASH_ROOT`). */
  dashRoot?: string;
  /** Server URL (remote mode; default `ML_DASH_URL`). With `dashRoot` too, both are written. */
  dashUrl?: string;
  /** Bearer token for the server. */
  token?: string;
  /** Throw {@linkcode InvalidMetricError} from `log()` instead of warning. */
  strict?: boolean;
  /** Seconds between timed flushes (default 5, or `ML_DASH_FLUSH_INTERVAL`). */
  flushInterval?: number;
  /** Metric records per batch (default 100, or `ML_DASH_METRIC_BATCH_SIZE`). */
  metricBatchSize?: number;
  /** Log records per batch (default 100, or `ML_DASH_LOG_BATCH_SIZE`). */
  logBatchSize?: number;
  /**
   * Seconds a server that is down or does not answer is retried before a batch
   * is kept in the outbox, or in memory where there is no file system (default
   * `ML_DASH_HTTP_TIMEOUT`, else 30). In a Worker, keep it well under the
   * platform's `waitUntil` budget (30 s on Cloudflare). A request with a large
   * body gets the time its body takes at 256 KiB/s on top, so a slow upload that
   * progresses is not cut short.
   */
  httpTimeout?: number;
}

/** Options of {@linkcode startRun}. */
export interface RunOptions extends Omit<ExperimentOptions, "prefix"> {
  /** Hyperparameters recorded when the run starts. */
  config?: Record<string, unknown>;
  /** The run's name (default: a unique, sortable name). */
  runName?: string;
  /** The project (default `"default"`). */
  project?: string;
  /** The owner (default `RUN.user`, from `ML_DASH_USER`, else `"local"`). */
  owner?: string;
}

/** Options of `exp.log()`: a level and any metadata fields. */
export interface LogOptions {
  /** The level (default `"info"`). */
  level?: LogLevel;
  /** Metadata fields stored with the line. */
  [meta: string]: unknown;
}

/** Metadata fields of a log line. */
export type LogMeta = Record<string, unknown>;

/** `exp.run`: call it with a callback, or use its methods. */
export interface RunControl {
  /** Starts, awaits `fn`, then completes (or fails and rethrows). */
  <T>(fn: (exp: Experiment) => T | Promise<T>): Promise<T>;
  /** Starts (status RUNNING); resumes an existing prefix. */
  start(): Promise<Experiment>;
  /** Ends with COMPLETED after flushing. */
  complete(): Promise<void>;
  /** Ends with FAILED, recording the error. */
  fail(error?: unknown): Promise<void>;
  /** Ends with CANCELLED. */
  cancel(): Promise<void>;
}

/** `exp.params`. */
export interface Params {
  /** Merges values; nested objects become dot keys. */
  set(values: Record<string, unknown>): void;
  /** All parameters, including those recorded by earlier sessions of this prefix. */
  get(): Record<string, ParamValue>;
}

/** `exp.logs`: one method per level. */
export interface Logs {
  /** Logs at level debug. */
  debug(message: string, meta?: LogMeta): void;
  /** Logs at level info. */
  info(message: string, meta?: LogMeta): void;
  /** Logs at level warn. */
  warn(message: string, meta?: LogMeta): void;
  /** Logs at level error. */
  error(message: string, meta?: LogMeta): void;
  /** Logs at level fatal. */
  fatal(message: string, meta?: LogMeta): void;
}

/** A named metric stream: `exp.metrics("train")`. */
export interface MetricStream {
  /** The metric's name. */
  readonly name: string;
  /** Records one row; `step` is taken from the fields or continues from the last one. */
  log(fields: Record<string, unknown>): void;
}

/** Values for `exp.metrics.log`: plain-object values are metric groups, the rest shared fields. */
export type GroupedMetrics = Record<string, unknown>;

/** `exp.metrics`: call it with a name, or log groups at once. */
export interface Metrics {
  /** The stream of metric `name`. */
  (name: string): MetricStream;
  /** `{ epoch, train: {...}, eval: {...} }` → rows in `train` and `eval`, each with `epoch`. */
  log(values: GroupedMetrics): void;
}

/** `exp.files`. */
export interface Files {
  /** Saves text as a file. */
  saveText(path: string, text: string): Promise<FileInfo>;
  /** Saves a value as pretty-printed JSON. */
  saveJson(path: string, value: unknown): Promise<FileInfo>;
  /** Saves bytes. */
  saveBytes(path: string, bytes: Uint8Array, mime?: string): Promise<FileInfo>;
  /** Copies a local file (local filesystem needed); `path` defaults to its base name. */
  copy(localPath: string, path?: string): Promise<FileInfo>;
  /** The files saved to this experiment, in this session and before. */
  list(): FileInfo[];
}

/** The global configuration object {@linkcode RUN}. */
export interface RunConfig {
  /** Prefix of {@linkcode dxp} (`ML_DASH_PREFIX`). */
  prefix: string | undefined;
  /** Local root (`ML_DASH_ROOT`, default `.dash`). */
  dashRoot: string;
  /** Server URL (`ML_DASH_URL`). */
  dashUrl: string | undefined;
  /** Owner for the Run API (`ML_DASH_USER`, default `local`). */
  user: string;
}

// The records a batch holds (Batch, MetricRecord, LogRecord, StatusRecord, ExperimentRecord,
// FileInfo, FileUpload, ParamValue, MetricValue, Status) and the backend contract (Backend,
// ExistingState), defined in storage/backend.ts.
export type * from "./storage/backend.ts";
