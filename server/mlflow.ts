/**
 * MLflow's tracking REST API (`/api/2.0/mlflow/...`) and its artifact API
 * (`/api/2.0/mlflow-artifacts/artifacts/...`) as a facade over a
 * {@linkcode Store}: every MLflow client (Python, R, Java, integrations) logs
 * into ml-dash, and runs logged from TypeScript read back through MLflow.
 *
 * The mapping onto our model:
 * - An MLflow experiment is a folder of our prefixes, a run a leaf experiment
 *   in it. The folder is the experiment's name where our prefix rules accept it
 *   as a path, else `~` and the name percent-encoded (`/Users/a` → `~%2FUsers%2Fa`).
 *   `Default` (id `"0"`) is the folder `Default`.
 * - Ids are derived, so any store and any number of servers agree on them: an
 *   experiment's id is a number hashed from its folder, a run's id 32 hex digits
 *   hashed from its prefix. Experiments created without runs yet are kept in
 *   the params of the reserved experiment `_mlflow/experiments`.
 * - Status FINISHED ↔ COMPLETED, KILLED ↔ CANCELLED, FAILED, RUNNING; integer
 *   milliseconds ↔ epoch seconds, round-tripped exactly.
 * - Metric key `a/b` is our metric `a`, field `b`; `b` alone is field `b` of the
 *   default metric; names our model reserves (`step`, `_ts`, the metric
 *   `default`, names starting with `.` or `~`) get a leading `~`, not lost.
 * - Params are kept as strings and never change (400 INVALID_PARAMETER_VALUE);
 *   tags in the run's experiment.json (`metadata.mlflow.tags`), except
 *   `mlflow.note.content`, which is its readme.
 * - A point identical in key, step, timestamp and value to one of the last
 *   points this server stored of the run is stored once (retries).
 *
 * Writes go through `Store.ingest` with a session of this facade's own
 * (`mlflow-<random>`) and a seq that grows by one per batch of each run.
 *
 * @example Answer an MLflow request without a network
 * ```ts ignore
 * import { answerMlflow } from "./mlflow.ts";
 * import { BodyBudget } from "./body.ts";
 * import { JsonlStore } from "./jsonl_store.ts";
 *
 * const store = new JsonlStore(".dash");
 * const url = new URL("http://x/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default");
 * const res = await answerMlflow(store, new Request(url), url, { maxBody: 1 << 20, bodies: new BodyBudget(1 << 24) });
 * console.log((await res.json()).experiment.experiment_id); // "0"
 * ```
 *
 * @module
 */
import { createHash, randomBytes } from "node:crypto";
import type { Batch, ExperimentRecord, ParamValue, Status } from "../storage/backend.ts";
import { checkFilePath, checkPrefix, isValidMetricName } from "../storage/backend.ts";
import { ConfigError, StorageError } from "../storage/errors.ts";
import { MIME, ProtocolError } from "../storage/protocol.ts";
import { HttpError } from "./answers.ts";
import { readBodyBytes } from "./body.ts";
import { savedFileHeaders } from "./read_api.ts";
import type { BodyBudget } from "./body.ts";
import { compareTargets, EXPERIMENT_ATTRIBUTES, FilterSyntaxError, matches, paramText, parseFilter, parseOrderBy } from "./mlflow_filter.ts";
import type { FilterTarget, OrderKey } from "./mlflow_filter.ts";
import type { ExperimentView, KeySummary, Store } from "./store.ts";

/** What the handler lends the MLflow routes: its body limit and the budget request bodies share. */
export interface MlflowContext {
  /** The largest body, in bytes. */
  maxBody: number;
  /** The bytes that bodies being handled may hold together. */
  bodies: BodyBudget;
}

/** The tracking API's path prefix. */
export const MLFLOW_API = "/api/2.0/mlflow/";
/** The artifact API's path prefix. */
export const MLFLOW_ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts";
/** The reserved experiment that keeps MLflow experiments created before they have runs. */
export const INDEX_PREFIX = "_mlflow/experiments";

const RESERVED_FOLDER = "_mlflow";
const DEFAULT_NAME = "Default";
const DEFAULT_ID = "0";
const DEFAULT_METRIC = "default";
const NOTE_TAG = "mlflow.note.content";
const RUN_NAME_TAG = "mlflow.runName";
const USER_TAG = "mlflow.user";
/** Points per run remembered to tell a retried point from a new one. */
const REMEMBERED_POINTS = 200_000;
/** Runs whose points are remembered at once. */
const REMEMBERED_RUNS = 256;
const MAX_SERIES_POINTS = Number.MAX_SAFE_INTEGER;

/**
 * Whether a path is one the MLflow routes answer.
 *
 * @param pathname The request's path.
 * @returns True under `/api/2.0/mlflow/` and `/api/2.0/mlflow-artifacts/`.
 *
 * @example Tell MLflow paths
 * ```ts
 * import { isMlflowPath } from "./mlflow.ts";
 *
 * console.log(isMlflowPath("/api/2.0/mlflow/runs/create")); // true
 * console.log(isMlflowPath("/api/v1/batch")); // false
 * ```
 */
export function isMlflowPath(pathname: string): boolean {
  return pathname.startsWith(MLFLOW_API) || pathname === MLFLOW_ARTIFACTS || pathname.startsWith(`${MLFLOW_ARTIFACTS}/`);
}

/** The endpoints that only read: the MLflow client POSTs some of them (searches), and they need only the read token. */
const READ_ENDPOINTS: ReadonlySet<string> = new Set([
  "experiments/get-by-name", "experiments/get", "experiments/search", "runs/get", "runs/search", "metrics/get-history", "logged-models/search",
]);

/**
 * Whether a request under the MLflow paths writes (and so needs the write token):
 * a tracking endpoint that is not a read, whatever its method; an artifact PUT.
 *
 * @param method The request's method.
 * @param pathname The request's path.
 * @returns True when it writes.
 *
 * @example
 * ```ts
 * import { isMlflowWrite } from "./mlflow.ts";
 *
 * console.log(isMlflowWrite("POST", "/api/2.0/mlflow/runs/search"), isMlflowWrite("POST", "/api/2.0/mlflow/runs/log-batch")); // false true
 * ```
 */
export function isMlflowWrite(method: string, pathname: string): boolean {
  if (pathname.startsWith(MLFLOW_API)) return !READ_ENDPOINTS.has(pathname.slice(MLFLOW_API.length));
  return method === "PUT";
}

const facades = new WeakMap<Store, MlflowApi>();

/**
 * Answers a request under the MLflow paths, with the facade of this store
 * (made at the first request). Errors are answered as MLflow answers them:
 * `{"error_code": ..., "message": ...}`.
 *
 * @param store The store.
 * @param req The request.
 * @param url Its parsed URL.
 * @param context The handler's body limit and budget.
 * @returns The answer.
 */
export function answerMlflow(store: Store, req: Request, url: URL, context: MlflowContext): Promise<Response> {
  let api = facades.get(store);
  if (!api) facades.set(store, api = new MlflowApi(store));
  return api.answer(req, url, context);
}

/**
 * An error answered in MLflow's form, with its `error_code`.
 *
 * @example Carry a status and a code
 * ```ts
 * import { MlflowError } from "./mlflow.ts";
 *
 * const error = new MlflowError(404, "RESOURCE_DOES_NOT_EXIST", "Run not found");
 * console.log(error.status, error.code); // 404 RESOURCE_DOES_NOT_EXIST
 * ```
 */
export class MlflowError extends Error {
  /**
   * Creates the error.
   *
   * @param status The HTTP status.
   * @param code MLflow's error code, e.g. `RESOURCE_DOES_NOT_EXIST`.
   * @param message What was expected and what was received.
   */
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

function invalid(message: string): MlflowError {
  return new MlflowError(400, "INVALID_PARAMETER_VALUE", message);
}

function missing(message: string): MlflowError {
  return new MlflowError(404, "RESOURCE_DOES_NOT_EXIST", message);
}

// ─── Records of the API ─────────────────────────────────────────────────────

/** A metric point as MLflow sends and answers it. */
interface MlflowMetric {
  key: string;
  value: number | string;
  timestamp: number;
  step: number;
}

/** A key and a string value: a param or a tag. */
interface KeyValue {
  key: string;
  value: string;
}

/** What the facade keeps of a run in its experiment.json, under `metadata.mlflow`. */
interface MlflowMeta {
  user_id?: string;
  tags?: Record<string, string>;
}

/** An experiment as the facade knows it. */
interface ExperimentEntry {
  id: string;
  name: string;
  folder: string;
  creationTime: number;
  tags: [string, string][];
}

/** A run, read: what runs/get answers and what a filter looks at. */
interface RunView {
  prefix: string;
  info: Record<string, unknown>;
  metrics: MlflowMetric[];
  params: KeyValue[];
  tags: KeyValue[];
  target: FilterTarget;
}

/** What the facade remembers of a run it writes to. */
interface RunMemory {
  /** The recent points. */
  seen: PointMemory;
  /** Keys whose stored tail has been read into `seen` (or that were new here). */
  loaded: Set<string>;
  /** Created by this facade: nothing of it was stored before. */
  fresh: boolean;
}

// ─── The facade ─────────────────────────────────────────────────────────────

type Route = (fields: Fields) => Promise<unknown>;

/** The MLflow facade of one store. */
export class MlflowApi {
  #store: Store;
  #session = `mlflow-${randomBytes(6).toString("hex")}`;
  #seq = new Map<string, number>();
  #locks = new Map<string, Promise<unknown>>();
  #runs = new Map<string, string>();
  #folders = new Map<string, string>();
  #memory = new Map<string, RunMemory>();
  #latest = new Map<string, { count: number; metric: MlflowMetric | undefined }>();
  #routes: Map<string, Route>;

  /**
   * Creates the facade; it reads nothing until the first request.
   *
   * @param store The store it reads and writes through.
   */
  constructor(store: Store) {
    this.#store = store;
    this.#routes = new Map<string, Route>([
      ["experiments/get-by-name", (f) => this.#getExperimentByName(f)],
      ["experiments/get", (f) => this.#getExperiment(f)],
      ["experiments/create", (f) => this.#createExperiment(f)],
      ["experiments/search", (f) => this.#searchExperiments(f)],
      ["runs/create", (f) => this.#createRun(f)],
      ["runs/get", (f) => this.#getRun(f)],
      ["runs/update", (f) => this.#updateRun(f)],
      ["runs/log-batch", (f) => this.#logBatch(f)],
      ["runs/log-metric", (f) => this.#logMetric(f)],
      ["runs/log-parameter", (f) => this.#logParameter(f)],
      ["runs/set-tag", (f) => this.#setTag(f)],
      ["runs/search", (f) => this.#searchRuns(f)],
      ["metrics/get-history", (f) => this.#getHistory(f)],
      ["logged-models/search", () => Promise.resolve({ models: [] })],
    ]);
  }

  /**
   * Answers one request under the MLflow paths.
   *
   * @param req The request.
   * @param url Its parsed URL.
   * @param context The handler's body limit and budget.
   * @returns The answer; errors in MLflow's form.
   */
  async answer(req: Request, url: URL, context: MlflowContext): Promise<Response> {
    try {
      if (url.pathname.startsWith(MLFLOW_ARTIFACTS)) return await this.#artifacts(req, url, context);
      const name = url.pathname.slice(MLFLOW_API.length);
      const route = this.#routes.get(name);
      if (!route) throw new MlflowError(404, "ENDPOINT_NOT_FOUND", `Unknown MLflow endpoint ${url.pathname}: ml-dash serves tracking (experiments, runs, metrics) and artifacts, not the model registry, traces or the MLflow UI`);
      const reads = READ_ENDPOINTS.has(name);
      if (req.method !== "POST" && !(req.method === "GET" && reads)) {
        throw new MlflowError(405, "BAD_REQUEST", `Method ${req.method} is not allowed on ${url.pathname}: expected ${reads ? "GET or POST" : "POST"}`);
      }
      const fields = req.method === "GET" ? new Fields(url.searchParams) : new Fields(await readJsonBody(req, context));
      return mlflowJson(await route(fields));
    } catch (error) {
      return errorAnswer(error);
    }
  }

  // ─── Experiments ──────────────────────────────────────────────────────────

  async #getExperimentByName(fields: Fields): Promise<unknown> {
    const name = fields.requiredString("experiment_name");
    const found = await this.#experimentByName(name);
    if (!found) throw missing(`Could not find experiment with name '${name}'`);
    return { experiment: experimentJson(found) };
  }

  async #getExperiment(fields: Fields): Promise<unknown> {
    return { experiment: experimentJson(await this.#experimentById(fields.requiredString("experiment_id"))) };
  }

  async #createExperiment(fields: Fields): Promise<unknown> {
    const name = fields.requiredString("name");
    if (name.trim() === "") throw invalid(`Invalid experiment name ${JSON.stringify(name)}: expected a non-empty name`);
    const tags = keyValues(fields.array("tags"), "tags");
    return await this.#exclusive(INDEX_PREFIX, async () => {
      if (await this.#experimentByName(name)) {
        throw new MlflowError(400, "RESOURCE_ALREADY_EXISTS", `Experiment '${name}' already exists`);
      }
      const folder = folderOf(name);
      checkedPrefix(`${folder}/run`);
      const id = experimentIdOf(folder);
      const entry = { name, folder, creation_time: Date.now(), tags: tags.map((t) => [t.key, t.value]) };
      const params: Record<string, ParamValue> = Object.create(null);
      params[id] = JSON.stringify(entry);
      await this.#write(INDEX_PREFIX, {
        metadata: { prefix: INDEX_PREFIX, readme: "MLflow experiments created through ml-dash's MLflow API (params: id → experiment)" },
        params,
      });
      this.#folders.set(id, folder);
      return { experiment_id: id };
    });
  }

  async #searchExperiments(fields: Fields): Promise<unknown> {
    const clauses = parseFilter(fields.optionalString("filter") ?? "", { attributes: EXPERIMENT_ATTRIBUTES });
    const order = fields.strings("order_by").map((o) => parseOrderBy(o, { attributes: EXPERIMENT_ATTRIBUTES }));
    const maxResults = fields.optionalInt("max_results") ?? 1000;
    if (maxResults < 1 || maxResults > 50000) throw invalid(`Invalid max_results ${maxResults}: expected 1 to 50000`);
    const viewType = fields.optionalString("view_type") ?? "ACTIVE_ONLY";
    const all = viewType === "DELETED_ONLY" ? [] : await this.#allExperiments();
    const targets = all.map((e) => ({ entry: e, target: experimentTarget(e) }))
      .filter((e) => matches(clauses, e.target));
    const sortKeys: OrderKey[] = [...order, { entity: "attribute", key: "last_update_time", ascending: false }, { entity: "attribute", key: "experiment_id", ascending: true }];
    targets.sort((a, b) => compareTargets(sortKeys, a.target, b.target));
    const { page, next } = paged(targets, fields.optionalString("page_token"), maxResults);
    return withToken({ experiments: page.map((e) => experimentJson(e.entry)) }, next);
  }

  /** Every experiment: Default, those in the index, and every folder that holds runs. */
  async #allExperiments(): Promise<ExperimentEntry[]> {
    const byId = new Map<string, ExperimentEntry>();
    byId.set(DEFAULT_ID, defaultExperiment());
    for (const [id, entry] of await this.#index()) byId.set(id, entry);
    for (const entry of (await this.#scan()).values()) if (!byId.has(entry.id)) byId.set(entry.id, entry);
    return [...byId.values()];
  }

  async #experimentByName(name: string): Promise<ExperimentEntry | undefined> {
    const folder = folderOf(name);
    const id = experimentIdOf(folder);
    if (id === DEFAULT_ID) return defaultExperiment();
    const indexed = (await this.#index()).get(id);
    if (indexed) return indexed;
    const runs = await this.#folderRuns(folder);
    return runs.length > 0 ? folderExperiment(id, folder, runs) : undefined;
  }

  async #experimentById(id: string): Promise<ExperimentEntry> {
    if (id === DEFAULT_ID) return defaultExperiment();
    if (!/^\d+$/.test(id)) throw invalid(`Invalid experiment_id ${JSON.stringify(id)}: expected a number in a string, such as "0"`);
    const indexed = (await this.#index()).get(id);
    if (indexed) return indexed;
    const folder = this.#folders.get(id);
    if (folder !== undefined) {
      const runs = await this.#folderRuns(folder);
      if (runs.length > 0) return folderExperiment(id, folder, runs);
    }
    const scanned = (await this.#scan()).get(id);
    if (!scanned) throw missing(`No experiment with id ${id}`);
    return scanned;
  }

  /** The experiments created through the API, by id. */
  async #index(): Promise<Map<string, ExperimentEntry>> {
    const entries = new Map<string, ExperimentEntry>();
    if (!(await this.#store.exists(INDEX_PREFIX))) return entries;
    const { params } = await this.#store.open(INDEX_PREFIX);
    for (const [id, value] of Object.entries(params)) {
      const entry = parseIndexEntry(id, value);
      if (entry) entries.set(id, entry);
    }
    return entries;
  }

  /** Every folder that holds runs, as an experiment by id; fills the id caches. */
  async #scan(): Promise<Map<string, ExperimentEntry>> {
    const { experiments } = await this.#store.list({ offset: 0 });
    const folders = new Map<string, { createdAt?: number }[]>();
    for (const e of experiments) {
      const folder = parentOf(e.prefix);
      if (folder === RESERVED_FOLDER) continue;
      this.#runs.set(runIdOf(e.prefix), e.prefix);
      const runs = folders.get(folder) ?? [];
      runs.push(e);
      folders.set(folder, runs);
    }
    const found = new Map<string, ExperimentEntry>();
    for (const [folder, runs] of folders) {
      const id = experimentIdOf(folder);
      this.#folders.set(id, folder);
      found.set(id, folderExperiment(id, folder, runs));
    }
    return found;
  }

  /** The runs directly in a folder. */
  async #folderRuns(folder: string): Promise<{ prefix: string; createdAt?: number; startedAt?: number }[]> {
    const { experiments } = await this.#store.list({ prefix: `${folder}/`, offset: 0 });
    return experiments.filter((e) => parentOf(e.prefix) === folder);
  }

  // ─── Runs ─────────────────────────────────────────────────────────────────

  async #createRun(fields: Fields): Promise<unknown> {
    const experiment = await this.#experimentById(fields.optionalString("experiment_id") ?? DEFAULT_ID);
    const tags = tagMap(keyValues(fields.array("tags"), "tags"));
    const runName = fields.optionalString("run_name") || tags.get(RUN_NAME_TAG) || `run-${randomBytes(4).toString("hex")}`;
    tags.set(RUN_NAME_TAG, runName);
    const userId = fields.optionalString("user_id") ?? tags.get(USER_TAG) ?? "";
    const startTime = fields.optionalInt("start_time") ?? Date.now();
    const readme = tags.get(NOTE_TAG);
    tags.delete(NOTE_TAG);
    const prefix = await this.#exclusive(`folder\0${experiment.folder}`, async () => {
      const base = `${experiment.folder}/${runSegmentOf(runName)}`;
      let prefix = base;
      for (let n = 2; await this.#store.exists(prefix); n++) prefix = `${base}-${n}`;
      checkedPrefix(prefix);
      const metadata: ExperimentRecord = { prefix, metadata: { mlflow: { user_id: userId, tags: Object.fromEntries(tags) } } };
      if (readme !== undefined) metadata.readme = readme;
      this.#memoryOf(prefix).fresh = true;
      await this.#write(prefix, { metadata, status: { status: "RUNNING", startedAt: startTime / 1000, endedAt: null } });
      return prefix;
    });
    this.#runs.set(runIdOf(prefix), prefix);
    return { run: runJson(await this.#runView(prefix)) };
  }

  async #getRun(fields: Fields): Promise<unknown> {
    const prefix = await this.#runPrefix(fields);
    return { run: runJson(await this.#runView(prefix)) };
  }

  async #updateRun(fields: Fields): Promise<unknown> {
    const prefix = await this.#runPrefix(fields);
    const status = fields.optionalString("status");
    const endTime = fields.optionalInt("end_time");
    const runName = fields.optionalString("run_name");
    await this.#exclusive(prefix, async () => {
      const batch: Batch = {};
      if (status !== undefined) {
        const ours = ourStatus(status);
        batch.status = { status: ours };
        if (ours !== "RUNNING") batch.status.endedAt = (endTime ?? Date.now()) / 1000;
      } else if (endTime !== undefined) {
        batch.status = { endedAt: endTime / 1000 };
      }
      if (runName) batch.metadata = await this.#tagsPatch(prefix, [{ key: RUN_NAME_TAG, value: runName }]);
      if (batch.status || batch.metadata) await this.#write(prefix, batch);
    });
    return { run_info: (await this.#runView(prefix)).info };
  }

  async #logBatch(fields: Fields): Promise<unknown> {
    const prefix = await this.#runPrefix(fields);
    const items = fields.array("metrics");
    const metrics = new Array<MlflowMetric>(items.length);
    for (let i = 0; i < items.length; i++) metrics[i] = checkedMetric(items[i], i);
    const params = keyValues(fields.array("params"), "params");
    const tags = keyValues(fields.array("tags"), "tags");
    await this.#log(prefix, metrics, params, tags);
    return {};
  }

  async #logMetric(fields: Fields): Promise<unknown> {
    const prefix = await this.#runPrefix(fields);
    const metric = checkedMetric({
      key: fields.requiredString("key"),
      value: fields.raw("value"),
      timestamp: fields.raw("timestamp"),
      step: fields.raw("step"),
    }, "metric");
    await this.#log(prefix, [metric], [], []);
    return {};
  }

  async #logParameter(fields: Fields): Promise<unknown> {
    const prefix = await this.#runPrefix(fields);
    await this.#log(prefix, [], [checkedKeyValue({ key: fields.raw("key"), value: fields.raw("value") }, "param")], []);
    return {};
  }

  async #setTag(fields: Fields): Promise<unknown> {
    const prefix = await this.#runPrefix(fields);
    await this.#log(prefix, [], [], [checkedKeyValue({ key: fields.raw("key"), value: fields.raw("value") }, "tag")]);
    return {};
  }

  /** Stores metrics, params and tags of a run as one batch: all of it or, on an error, nothing. */
  async #log(prefix: string, metrics: MlflowMetric[], params: KeyValue[], tags: KeyValue[]): Promise<void> {
    await this.#exclusive(prefix, async () => {
      const batch: Batch = {};
      if (params.length > 0) batch.params = await this.#newParams(prefix, params);
      if (tags.length > 0) batch.metadata = await this.#tagsPatch(prefix, tags);
      if (metrics.length > 0) {
        const fresh = await this.#newPoints(prefix, metrics);
        if (fresh.length > 0) batch.metrics = metricRecords(fresh);
      }
      if (batch.params || batch.metadata || batch.metrics) await this.#write(prefix, batch);
    });
  }

  /** The params not stored yet; a param stored with another value is refused. */
  async #newParams(prefix: string, params: KeyValue[]): Promise<Record<string, ParamValue>> {
    const stored = new Map(Object.entries((await this.#store.open(prefix)).params));
    const patch = new Map<string, string>();
    for (const { key, value } of params) {
      const old = stored.has(key) ? paramText(stored.get(key)!) : patch.get(key);
      if (old !== undefined && old !== value) {
        throw invalid(`Changing param values is not allowed. Param with key='${key}' was already logged with value='${old}' for run ID='${runIdOf(prefix)}'. Attempted logging new value '${value}'.`);
      }
      if (old === undefined) patch.set(key, value);
    }
    return Object.fromEntries(patch);
  }

  /** The experiment.json patch that sets tags (the run name, the note as readme). */
  async #tagsPatch(prefix: string, tags: KeyValue[]): Promise<ExperimentRecord> {
    const record = (await this.#store.experiment(prefix)).metadata ?? {};
    const metadata = { ...record.metadata };
    const mlflow = isRecord(metadata.mlflow) ? metadata.mlflow as MlflowMeta : {};
    const merged = new Map(Object.entries(mlflow.tags ?? {}));
    const patch: ExperimentRecord = { prefix };
    for (const { key, value } of tags) {
      if (key === NOTE_TAG) patch.readme = value;
      else merged.set(key, value);
    }
    metadata.mlflow = { ...mlflow, tags: Object.fromEntries(merged) };
    patch.metadata = metadata;
    return patch;
  }

  /** The points not stored yet: one identical to a point this facade remembers of the run is left out. */
  async #newPoints(prefix: string, metrics: MlflowMetric[]): Promise<MlflowMetric[]> {
    const memory = this.#memoryOf(prefix);
    for (let i = 0; i < metrics.length; i++) {
      const key = metrics[i].key;
      if (memory.loaded.has(key)) continue;
      if (!memory.fresh) await this.#rememberStored(prefix, key, memory);
      memory.loaded.add(key);
    }
    const fresh: MlflowMetric[] = [];
    for (const metric of metrics) {
      if (memory.seen.add(metric.key, metric.step, metric.timestamp, metric.value as number)) fresh.push(metric);
    }
    return fresh;
  }

  /** Reads the last stored points of a key into the run's memory (a retry after a restart). */
  async #rememberStored(prefix: string, key: string, memory: RunMemory): Promise<void> {
    const { metric, field } = storedKeyOf(key);
    const steps = (await this.#store.open(prefix)).steps;
    if (!Object.hasOwn(steps, metric)) return;
    const points = await this.#points(prefix, seriesKey(metric, field), 0, undefined);
    const from = Math.max(0, points.length - REMEMBERED_POINTS / 4);
    for (let i = from; i < points.length; i++) {
      const p = points[i];
      memory.seen.add(key, p.step, p.timestamp, p.value);
    }
  }

  #memoryOf(prefix: string): RunMemory {
    let memory = this.#memory.get(prefix);
    if (memory) {
      this.#memory.delete(prefix);
    } else {
      memory = { seen: new PointMemory(REMEMBERED_POINTS), loaded: new Set(), fresh: false };
      if (this.#memory.size >= REMEMBERED_RUNS) this.#memory.delete(this.#memory.keys().next().value!);
    }
    this.#memory.set(prefix, memory);
    return memory;
  }

  async #searchRuns(fields: Fields): Promise<unknown> {
    const ids = fields.strings("experiment_ids");
    const clauses = parseFilter(fields.optionalString("filter") ?? "");
    const order = fields.strings("order_by").map((o) => parseOrderBy(o));
    const maxResults = fields.optionalInt("max_results") ?? 1000;
    if (maxResults < 1 || maxResults > 50000) throw invalid(`Invalid max_results ${maxResults}: expected 1 to 50000`);
    const viewType = fields.optionalString("run_view_type") ?? "ACTIVE_ONLY";
    const views: RunView[] = [];
    if (viewType !== "DELETED_ONLY") {
      for (const id of new Set(ids)) {
        const experiment = await this.#experimentById(id);
        for (const run of await this.#folderRuns(experiment.folder)) {
          this.#runs.set(runIdOf(run.prefix), run.prefix);
          const view = await this.#runView(run.prefix);
          if (matches(clauses, view.target)) views.push(view);
        }
      }
    }
    const sortKeys: OrderKey[] = [...order, { entity: "attribute", key: "start_time", ascending: false }, { entity: "attribute", key: "run_id", ascending: true }];
    views.sort((a, b) => compareTargets(sortKeys, a.target, b.target));
    const { page, next } = paged(views, fields.optionalString("page_token"), maxResults);
    return withToken({ runs: page.map(runJson) }, next);
  }

  async #getHistory(fields: Fields): Promise<unknown> {
    const prefix = await this.#runPrefix(fields);
    const key = fields.requiredString("metric_key");
    const maxResults = fields.optionalInt("max_results") ?? 25000;
    if (maxResults < 1) throw invalid(`Invalid max_results ${maxResults}: expected a positive count`);
    const offset = pageOffset(fields.optionalString("page_token"));
    const { metric, field } = storedKeyOf(key);
    const exists = metric === DEFAULT_METRIC || Object.hasOwn((await this.#store.open(prefix)).steps, metric);
    const points = exists ? await this.#points(prefix, seriesKey(metric, field), offset, maxResults + 1) : [];
    const more = points.length > maxResults;
    const metrics = points.slice(0, maxResults).map((p) => ({ key, value: jsonNumber(p.value), timestamp: p.timestamp, step: p.step }));
    return withToken({ metrics }, more ? pageToken(offset + maxResults) : undefined);
  }

  /** Points of a stored key with their steps, times and values, from one read that answers each point's `_ts` too. */
  async #points(prefix: string, key: string, offset: number, limit: number | undefined): Promise<{ step: number; timestamp: number; value: number }[]> {
    const page = await this.#store.series(prefix, key, { x: "step", offset, limit, points: MAX_SERIES_POINTS, time: true });
    const time = page.time ?? [];
    const n = Math.min(page.x.length, time.length);
    const points = new Array<{ step: number; timestamp: number; value: number }>(n);
    for (let i = 0; i < n; i++) points[i] = { step: page.x[i], timestamp: Math.round(time[i] * 1000), value: page.value[i] };
    return points;
  }

  /** The run's prefix from `run_id` (or the older `run_uuid`). */
  async #runPrefix(fields: Fields): Promise<string> {
    const id = fields.optionalString("run_id") || fields.optionalString("run_uuid");
    if (!id) throw invalid(`Missing value for required parameter 'run_id': expected the 32 hex digits of a run`);
    if (!/^[0-9a-f]{32}$/.test(id)) throw missing(`Run '${id}' not found: run ids are 32 lowercase hex digits`);
    let prefix = this.#runs.get(id);
    if (prefix === undefined) {
      await this.#scan();
      prefix = this.#runs.get(id);
    }
    if (prefix === undefined || !(await this.#store.exists(prefix))) throw missing(`Run '${id}' not found`);
    return prefix;
  }

  /** A run read from the store, as MLflow shows it. */
  async #runView(prefix: string): Promise<RunView> {
    const view = await this.#store.experiment(prefix);
    const meta = mlflowMeta(view);
    const tags = new Map(Object.entries(meta.tags ?? {}));
    if (!tags.has(RUN_NAME_TAG)) tags.set(RUN_NAME_TAG, prefix.slice(prefix.lastIndexOf("/") + 1));
    if (view.metadata?.readme) tags.set(NOTE_TAG, view.metadata.readme);
    const params = new Map(Object.entries(view.params).map(([k, v]) => [k, paramText(v)]));
    const metrics = await this.#latestMetrics(prefix, view.summary);
    const runId = runIdOf(prefix);
    const experimentId = experimentIdOf(parentOf(prefix));
    const createdMs = view.metadata?.createdAt === undefined ? null : Math.round(view.metadata.createdAt * 1000);
    const startTime = view.status?.startedAt === undefined ? createdMs : Math.round(view.status.startedAt * 1000);
    const endTime = view.status?.endedAt == null ? null : Math.round(view.status.endedAt * 1000);
    const status = mlflowStatus(view.status?.status);
    const info: Record<string, unknown> = {
      run_id: runId,
      run_uuid: runId,
      run_name: tags.get(RUN_NAME_TAG),
      experiment_id: experimentId,
      user_id: meta.user_id ?? tags.get(USER_TAG) ?? "",
      status,
      start_time: startTime ?? 0,
      artifact_uri: `mlflow-artifacts:/${experimentId}/${runId}/artifacts`,
      lifecycle_stage: "active",
    };
    if (endTime !== null) info.end_time = endTime;
    const attributes = new Map<string, string | number | null>([
      ["run_id", runId],
      ["run_name", tags.get(RUN_NAME_TAG)!],
      ["status", status],
      ["user_id", info.user_id as string],
      ["artifact_uri", info.artifact_uri as string],
      ["lifecycle_stage", "active"],
      ["start_time", startTime],
      ["created", startTime],
      ["end_time", endTime],
    ]);
    const target: FilterTarget = {
      metrics: new Map(metrics.map((m) => [m.key, typeof m.value === "number" ? m.value : Number(m.value)])),
      params,
      tags,
      attributes,
    };
    return {
      prefix,
      info,
      metrics,
      params: [...params].map(([key, value]) => ({ key, value })),
      tags: [...tags].map(([key, value]) => ({ key, value })),
      target,
    };
  }

  /** The latest point of each key: the highest step, then the latest timestamp. */
  async #latestMetrics(prefix: string, summary: Record<string, KeySummary>): Promise<MlflowMetric[]> {
    const metrics: MlflowMetric[] = [];
    for (const [stored, s] of Object.entries(summary)) {
      const id = `${prefix}\0${stored}`;
      let cached = this.#latest.get(id);
      if (!cached || cached.count !== s.count) {
        cached = { count: s.count, metric: latestOf(mlflowKeyOf(stored), await this.#points(prefix, stored, 0, undefined)) };
        if (this.#latest.size > 100_000) this.#latest.clear();
        this.#latest.set(id, cached);
      }
      if (cached.metric) metrics.push(cached.metric);
    }
    return metrics;
  }

  // ─── Artifacts ────────────────────────────────────────────────────────────

  async #artifacts(req: Request, url: URL, context: MlflowContext): Promise<Response> {
    const rest = url.pathname.slice(MLFLOW_ARTIFACTS.length).replace(/^\//, "");
    if (rest === "") {
      if (req.method !== "GET") throw new MlflowError(405, "BAD_REQUEST", `Method ${req.method} is not allowed on ${url.pathname}: expected GET (a listing)`);
      return mlflowJson(await this.#listArtifacts(url.searchParams.get("path") ?? ""));
    }
    const { prefix, path } = await this.#artifactTarget(decodePath(rest));
    if (req.method === "PUT") return mlflowJson(await this.#putArtifact(req, prefix, path, context));
    if (req.method !== "GET" && req.method !== "HEAD") throw new MlflowError(405, "BAD_REQUEST", `Method ${req.method} is not allowed on ${url.pathname}: expected GET or PUT`);
    if (path === "") throw invalid(`Invalid artifact path ${JSON.stringify(rest)}: expected a file under <experiment_id>/<run_id>/artifacts/`);
    const file = await this.#store.file(prefix, fileOfArtifact(path));
    if (!file) throw missing(`No artifact ${JSON.stringify(path)} in run ${runIdOf(prefix)}`);
    const headers = savedFileHeaders(file.mime, path);
    headers["content-length"] = String(file.data.byteLength);
    return new Response(req.method === "HEAD" ? null : file.data as BodyInit, { headers });
  }

  async #putArtifact(req: Request, prefix: string, path: string, context: MlflowContext): Promise<unknown> {
    if (path === "") throw invalid(`Invalid artifact path: expected a file name after <experiment_id>/<run_id>/artifacts/`);
    const file = fileOfArtifact(path);
    const type = (req.headers.get("content-type") ?? "").trim();
    const mime = type !== "" && MIME.test(type) ? type : "application/octet-stream";
    const data = req.body ? await readBodyBytes(req, context.maxBody, context.bodies) : new Uint8Array(0);
    try {
      await this.#exclusive(prefix, () => this.#write(prefix, { files: [{ path: file, size: data.byteLength, mime, _ts: Date.now() / 1000, data }] }));
    } finally {
      context.bodies.give(data.byteLength);
    }
    return {};
  }

  async #listArtifacts(path: string): Promise<unknown> {
    const { prefix, path: dir } = await this.#artifactTarget(path.replace(/^\/+|\/+$/g, ""));
    const under = dir === "" ? "" : `${fileOfArtifact(dir)}/`;
    const entries = new Map<string, { path: string; is_dir: boolean; file_size?: number }>();
    for (const file of (await this.#store.open(prefix)).files) {
      if (!file.path.startsWith(under)) continue;
      const rest = file.path.slice(under.length).split("/");
      const name = artifactSegment(rest[0]);
      if (rest.length > 1) entries.set(name, { path: name, is_dir: true });
      else entries.set(name, { path: name, is_dir: false, file_size: file.size });
    }
    return { files: [...entries.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)) };
  }

  /** The run and the path inside its artifacts named by `<experiment_id>/<run_id>/artifacts/<path>`. */
  async #artifactTarget(path: string): Promise<{ prefix: string; path: string }> {
    const [experimentId, runId, artifacts, ...rest] = path.split("/");
    if (!experimentId || !runId || artifacts !== "artifacts") {
      throw invalid(`Invalid artifact path ${JSON.stringify(path)}: expected <experiment_id>/<run_id>/artifacts/<path>`);
    }
    const prefix = await this.#runPrefix(new Fields(new URLSearchParams({ run_id: runId })));
    if (experimentIdOf(parentOf(prefix)) !== experimentId) throw missing(`Run '${runId}' is not in experiment ${experimentId}`);
    return { prefix, path: rest.join("/") };
  }

  // ─── Writing ──────────────────────────────────────────────────────────────

  /** Stores a batch under this facade's session, with the next seq of the prefix. */
  async #write(prefix: string, batch: Batch): Promise<void> {
    const seq = this.#seq.get(prefix) ?? 0;
    // Taken before the answer: a batch whose fate is unknown (stored, then an error) must not lend its seq to the next.
    this.#seq.set(prefix, seq + 1);
    await this.#store.ingest({ prefix, session: this.#session, seq }, batch);
  }

  /** Runs `work` after every earlier work of the same key settled (one writer per run). */
  async #exclusive<T>(key: string, work: () => Promise<T>): Promise<T> {
    const before = this.#locks.get(key) ?? Promise.resolve();
    const result = before.then(work, work);
    const tail = result.catch(() => {});
    this.#locks.set(key, tail);
    try {
      return await result;
    } finally {
      if (this.#locks.get(key) === tail) this.#locks.delete(key);
    }
  }
}

// ─── Request fields ─────────────────────────────────────────────────────────

/** The fields of a request: a JSON body's, or a query string's (GET). */
class Fields {
  #source: Record<string, unknown> | URLSearchParams;

  constructor(source: Record<string, unknown> | URLSearchParams) {
    this.#source = source;
  }

  raw(name: string): unknown {
    if (this.#source instanceof URLSearchParams) return this.#source.get(name) ?? undefined;
    return Object.hasOwn(this.#source, name) ? this.#source[name] : undefined;
  }

  requiredString(name: string): string {
    const value = this.optionalString(name);
    if (value === undefined) throw invalid(`Missing value for required parameter '${name}': expected a string`);
    return value;
  }

  optionalString(name: string): string | undefined {
    const value = this.raw(name);
    if (value === undefined || value === null) return undefined;
    if (typeof value === "number") return String(value);
    if (typeof value !== "string") throw invalid(`Invalid value for parameter '${name}': expected a string, received ${typeName(value)}`);
    return value;
  }

  optionalInt(name: string): number | undefined {
    return optionalInteger(this.raw(name), name);
  }

  strings(name: string): string[] {
    if (this.#source instanceof URLSearchParams) return this.#source.getAll(name);
    const value = this.raw(name);
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value) || !value.every((v) => typeof v === "string" || typeof v === "number")) {
      throw invalid(`Invalid value for parameter '${name}': expected an array of strings, received ${typeName(value)}`);
    }
    return value.map(String);
  }

  array(name: string): unknown[] {
    const value = this.raw(name);
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value)) throw invalid(`Invalid value for parameter '${name}': expected an array, received ${typeName(value)}`);
    return value;
  }
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

async function readJsonBody(req: Request, context: MlflowContext): Promise<Record<string, unknown>> {
  if (!req.body) return Object.create(null);
  const bytes = await readBodyBytes(req, context.maxBody, context.bodies);
  context.bodies.give(bytes.byteLength);
  if (bytes.byteLength === 0) return Object.create(null);
  let value: unknown;
  try {
    value = JSON.parse(UTF8.decode(bytes));
  } catch (error) {
    throw new MlflowError(400, "MALFORMED_REQUEST", `Malformed JSON body: ${error instanceof Error ? error.message : error}`);
  }
  if (!isRecord(value)) throw new MlflowError(400, "MALFORMED_REQUEST", `Invalid body: expected a JSON object, received ${typeName(value)}`);
  return value;
}

function optionalInteger(value: unknown, name: string): number | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  const n = typeof value === "string" && /^-?\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== "number" || !Number.isSafeInteger(n)) {
    throw invalid(`Invalid value ${JSON.stringify(value)} for parameter '${name}': expected an integer`);
  }
  return n;
}

/** A metric checked: `where` is its name in errors, or its index in `metrics` (named only on an error). */
function checkedMetric(value: unknown, where: string | number): MlflowMetric {
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    // The usual point, {key: non-empty string, value: number, timestamp and step: safe integers}, checked with typeof alone.
    const { key, value: v, timestamp, step } = value as Record<string, unknown>;
    if (typeof key === "string" && key !== "" && typeof v === "number" && typeof timestamp === "number" && Number.isSafeInteger(timestamp) && typeof step === "number" && Number.isSafeInteger(step)) {
      return { key, value: v, timestamp, step };
    }
  }
  return checkedMetricSlowly(value, typeof where === "number" ? `metrics[${where}]` : where);
}

function checkedMetricSlowly(value: unknown, where: string): MlflowMetric {
  if (!isRecord(value)) throw invalid(`Invalid ${where}: expected an object {key, value, timestamp, step}, received ${typeName(value)}`);
  const key = value.key;
  if (typeof key !== "string" || key === "") throw invalid(`Invalid ${where}.key ${JSON.stringify(key)}: expected a non-empty string`);
  const v = value.value;
  const number = typeof v === "number" ? v : typeof v === "string" && v.trim() !== "" ? Number(v) : NaN;
  if (!(typeof v === "number" || v === "NaN" || (typeof v === "string" && !Number.isNaN(number)))) {
    throw invalid(`Invalid ${where}.value ${JSON.stringify(v)} for metric '${key}': expected a number, or "NaN", "Infinity", "-Infinity"`);
  }
  const timestamp = optionalInteger(value.timestamp, `${where}.timestamp`) ?? Date.now();
  const step = optionalInteger(value.step, `${where}.step`) ?? 0;
  return { key, value: number, timestamp, step };
}

function keyValues(items: unknown[], where: string): KeyValue[] {
  return items.map((item, i) => checkedKeyValue(item, `${where}[${i}]`));
}

function checkedKeyValue(item: unknown, where: string): KeyValue {
  if (!isRecord(item)) throw invalid(`Invalid ${where}: expected an object {key, value}, received ${typeName(item)}`);
  const { key, value } = item;
  if (typeof key !== "string" || key === "") throw invalid(`Invalid ${where}.key ${JSON.stringify(key)}: expected a non-empty string`);
  if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") {
    throw invalid(`Invalid ${where}.value for key '${key}': expected a string, received ${typeName(value)}`);
  }
  return { key, value: String(value) };
}

function tagMap(tags: KeyValue[]): Map<string, string> {
  return new Map(tags.map((t) => [t.key, t.value]));
}

// ─── Mapping ────────────────────────────────────────────────────────────────

/**
 * The folder of an experiment name: the name where it is a valid path, else `~` and the name percent-encoded.
 *
 * @param name The MLflow experiment name.
 * @returns The folder, the first segments of its runs' prefixes.
 *
 * @example Map names to folders
 * ```ts
 * import { folderOf } from "./mlflow.ts";
 *
 * console.log(folderOf("mnist")); // mnist
 * console.log(folderOf("../x").startsWith("~")); // true
 * ```
 */
export function folderOf(name: string): string {
  if (name === DEFAULT_NAME) return DEFAULT_NAME;
  const first = name.split("/")[0];
  if (!first.startsWith("~") && first !== RESERVED_FOLDER && validPath(`${name}/x`)) return name;
  return `~${encodeURIComponent(name)}`;
}

/**
 * The experiment name of a folder (the inverse of {@linkcode folderOf}).
 *
 * @param folder The folder.
 * @returns The MLflow experiment name.
 *
 * @example Map a folder back to its name
 * ```ts
 * import { folderOf, nameOfFolder } from "./mlflow.ts";
 *
 * console.log(nameOfFolder(folderOf("../x"))); // ../x
 * ```
 */
export function nameOfFolder(folder: string): string {
  if (!folder.startsWith("~")) return folder;
  try {
    return decodeURIComponent(folder.slice(1));
  } catch {
    return folder;
  }
}

/**
 * The numeric experiment id of a folder: `"0"` for Default, else a number hashed from it.
 *
 * @param folder The folder.
 * @returns The id, as MLflow's decimal string.
 *
 * @example Look an id up
 * ```ts
 * import { experimentIdOf } from "./mlflow.ts";
 *
 * console.log(experimentIdOf("Default")); // 0
 * console.log(experimentIdOf("mnist") === experimentIdOf("mnist")); // true
 * ```
 */
export function experimentIdOf(folder: string): string {
  if (folder === DEFAULT_NAME) return DEFAULT_ID;
  const hex = createHash("sha256").update(`experiment\0${folder}`).digest("hex").slice(0, 13);
  return String(parseInt(hex, 16) + 1);
}

/**
 * The 32-hex run id of a prefix.
 *
 * @param prefix The run's prefix.
 * @returns The id: 32 hexadecimal digits hashed from the prefix.
 *
 * @example Look a run id up
 * ```ts
 * import { runIdOf } from "./mlflow.ts";
 *
 * console.log(runIdOf("mnist/run-1").length); // 32
 * ```
 */
export function runIdOf(prefix: string): string {
  return createHash("sha256").update(`run\0${prefix}`).digest("hex").slice(0, 32);
}

function runSegmentOf(name: string): string {
  if (!name.includes("/") && !name.startsWith("~") && name !== "metrics" && name !== "files" && validPath(`x/${name}`)) return name;
  return `~${encodeURIComponent(name)}`;
}

function validPath(prefix: string): boolean {
  try {
    checkPrefix(prefix);
    return true;
  } catch {
    return false;
  }
}

function checkedPrefix(prefix: string): void {
  try {
    checkPrefix(prefix);
  } catch (error) {
    throw invalid(`Invalid run or experiment name: ${error instanceof Error ? error.message : error}`);
  }
}

function parentOf(prefix: string): string {
  return prefix.slice(0, prefix.lastIndexOf("/"));
}

/** Our metric and field of an MLflow metric key. */
function storedKeyOf(key: string): { metric: string; field: string } {
  const slash = key.indexOf("/");
  if (slash <= 0) return { metric: DEFAULT_METRIC, field: escapeField(key) };
  const metric = escapeMetric(key.slice(0, slash));
  if (!isValidMetricName(metric)) throw invalid(`Invalid metric key '${key}': '${key.slice(0, slash)}' cannot name a metric (at most 248 bytes)`);
  return { metric, field: escapeField(key.slice(slash + 1)) };
}

/** The MLflow key of one of our keys (`metric/field`, or `field` of the default metric). */
function mlflowKeyOf(stored: string): string {
  const slash = stored.indexOf("/");
  if (slash <= 0) return unescapeField(stored);
  return `${unescapeMetric(stored.slice(0, slash))}/${unescapeField(stored.slice(slash + 1))}`;
}

function seriesKey(metric: string, field: string): string {
  return metric === DEFAULT_METRIC ? field : `${metric}/${field}`;
}

function escapeMetric(name: string): string {
  if (name !== DEFAULT_METRIC && !name.startsWith("~") && isValidMetricName(name)) return name;
  return `~${name.replace(/[%\\\0]/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, "0").toUpperCase()}`)}`;
}

function unescapeMetric(name: string): string {
  if (!name.startsWith("~")) return name;
  return name.slice(1).replace(/%([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

function escapeField(field: string): string {
  return field === "step" || field === "_ts" || field.startsWith("~") ? `~${field}` : field;
}

function unescapeField(field: string): string {
  return field.startsWith("~") ? field.slice(1) : field;
}

/** Our file path of an artifact path: a segment starting with "." or "~" gets a leading "~". */
function fileOfArtifact(path: string): string {
  const segments = path.split("/");
  if (segments.some((s) => s === "." || s === "..")) throw invalid(`Invalid artifact path ${JSON.stringify(path)}: a segment cannot be "." or ".."`);
  const file = segments.map((s) => (s.startsWith(".") || s.startsWith("~") ? `~${s}` : s)).join("/");
  try {
    checkFilePath(file);
  } catch (error) {
    throw invalid(`Invalid artifact path ${JSON.stringify(path)}: ${error instanceof Error ? error.message : error}`);
  }
  return file;
}

function artifactSegment(segment: string): string {
  return segment.startsWith("~") ? segment.slice(1) : segment;
}

function decodePath(path: string): string {
  try {
    return path.split("/").map(decodeURIComponent).join("/");
  } catch {
    throw invalid(`Invalid artifact path ${JSON.stringify(path)}: malformed percent-encoding`);
  }
}

/** Our status of an MLflow status. */
function ourStatus(status: string): Status {
  switch (status) {
    case "RUNNING":
    case "SCHEDULED":
      return "RUNNING";
    case "FINISHED":
      return "COMPLETED";
    case "FAILED":
      return "FAILED";
    case "KILLED":
      return "CANCELLED";
  }
  throw invalid(`Invalid status ${JSON.stringify(status)}: expected RUNNING, SCHEDULED, FINISHED, FAILED or KILLED`);
}

/** The MLflow status of ours; a run that never started is SCHEDULED. */
function mlflowStatus(status: string | undefined): string {
  switch (status) {
    case "RUNNING":
      return "RUNNING";
    case "COMPLETED":
      return "FINISHED";
    case "FAILED":
      return "FAILED";
    case "CANCELLED":
      return "KILLED";
  }
  return "SCHEDULED";
}

/**
 * Metric records by metric: a point joins its metric's last record when it has
 * the same step and timestamp and a field not in it yet (as the Run API writes
 * `log({"train/loss", "train/acc"}, step)`), else it starts a record.
 */
function metricRecords(points: MlflowMetric[]): Record<string, string[]> {
  // Per MLflow key: its metric's open record and the record it was last written to
  // (a field is in the open record when its key's mark is that record's number).
  const keys = new Map<string, { record: OpenRecord; fieldJson: string; mark: number }>();
  const records = new Map<string, OpenRecord>();
  let serial = 0;
  for (let i = 0; i < points.length; i++) {
    const point = points[i];
    let stored = keys.get(point.key);
    if (stored === undefined) {
      const { metric, field } = storedKeyOf(point.key);
      let record = records.get(metric);
      if (record === undefined) records.set(metric, record = { serial: -1, step: 0, timestamp: 0, text: "", lines: [] });
      keys.set(point.key, stored = { record, fieldJson: JSON.stringify(field), mark: -1 });
    }
    const record = stored.record;
    const value = point.value as number;
    const text = value - value === 0 ? `${stored.fieldJson}:${value}` : `${stored.fieldJson}:"${value}"`;
    if (record.serial >= 0 && record.step === point.step && record.timestamp === point.timestamp && stored.mark !== record.serial) {
      record.text += `,${text}`;
    } else {
      if (record.serial >= 0) record.lines.push(`${record.text}}`);
      record.serial = serial++;
      record.step = point.step;
      record.timestamp = point.timestamp;
      record.text = `{"_ts":${point.timestamp / 1000},"step":${point.step},${text}`;
    }
    stored.mark = record.serial;
  }
  const out: Record<string, string[]> = Object.create(null);
  for (const [metric, record] of records) {
    record.lines.push(`${record.text}}`);
    out[metric] = [record.lines.join("\n")];
  }
  return out;
}

/** The record of a metric being built: its step and timestamp, its text so far, its finished lines. */
interface OpenRecord {
  serial: number;
  step: number;
  timestamp: number;
  text: string;
  lines: string[];
}

/**
 * The points of a run stored lately, to tell a retried point from a new one:
 * (key, step, timestamp, value) in two generations of at most half the bound
 * each; when the newer fills, the older is dropped (O(1) a point).
 */
class PointMemory {
  #half: number;
  #size = 0;
  #current = new Map<string, KeyPoints>();
  #previous = new Map<string, KeyPoints>();

  constructor(bound: number) {
    this.#half = Math.max(1, Math.floor(bound / 2));
  }

  /** Remembers a point; false when it was remembered already. */
  add(key: string, step: number, timestamp: number, value: number): boolean {
    let current = this.#current.get(key);
    if (current !== undefined && current.holds(step, timestamp, value)) return false;
    const previous = this.#previous.get(key);
    if (previous !== undefined && previous.holds(step, timestamp, value)) return false;
    if (this.#size >= this.#half) {
      this.#previous = this.#current;
      this.#current = new Map();
      this.#size = 0;
      current = undefined;
    }
    if (current === undefined) this.#current.set(key, current = new KeyPoints());
    current.insert(step, timestamp, value);
    this.#size++;
    return true;
  }
}

/**
 * The remembered points of one key in one generation. Points that come in
 * (step, timestamp) order, as a training loop logs them, are appended to
 * columns (no object a point; a new point is told from a remembered one by
 * comparing it with the last, a retried one found by binary search); a point
 * that comes out of order goes to a map of step → (timestamp, value) pairs.
 */
class KeyPoints {
  #n = 0;
  #steps = new Float64Array(16);
  #times = new Float64Array(16);
  #values = new Float64Array(16);
  #lastStep = -Infinity;
  #lastTime = -Infinity;
  #unordered: Map<number, number[]> | undefined;

  holds(step: number, timestamp: number, value: number): boolean {
    const unordered = this.#unordered;
    if (unordered !== undefined) {
      const pairs = unordered.get(step);
      if (pairs !== undefined) {
        for (let i = 0; i < pairs.length; i += 2) if (pairs[i] === timestamp && Object.is(pairs[i + 1], value)) return true;
      }
    }
    if (step > this.#lastStep || (step === this.#lastStep && timestamp > this.#lastTime)) return false;
    const steps = this.#steps;
    const times = this.#times;
    let lo = 0;
    let hi = this.#n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (steps[mid] < step || (steps[mid] === step && times[mid] < timestamp)) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.#n && steps[i] === step && times[i] === timestamp; i++) {
      if (Object.is(this.#values[i], value)) return true;
    }
    return false;
  }

  insert(step: number, timestamp: number, value: number): void {
    if (step > this.#lastStep || (step === this.#lastStep && timestamp >= this.#lastTime)) {
      const n = this.#n;
      if (n === this.#steps.length) this.#grow();
      this.#steps[n] = step;
      this.#times[n] = timestamp;
      this.#values[n] = value;
      this.#n = n + 1;
      this.#lastStep = step;
      this.#lastTime = timestamp;
      return;
    }
    const unordered = this.#unordered ??= new Map();
    const pairs = unordered.get(step);
    if (pairs) pairs.push(timestamp, value);
    else unordered.set(step, [timestamp, value]);
  }

  #grow(): void {
    const grown = (column: Float64Array) => {
      const next = new Float64Array(column.length * 2);
      next.set(column);
      return next;
    };
    this.#steps = grown(this.#steps);
    this.#times = grown(this.#times);
    this.#values = grown(this.#values);
  }
}

function latestOf(key: string, points: { step: number; timestamp: number; value: number }[]): MlflowMetric | undefined {
  let best: { step: number; timestamp: number; value: number } | undefined;
  for (const p of points) {
    if (!best || p.step > best.step || (p.step === best.step && p.timestamp >= best.timestamp)) best = p;
  }
  return best && { key, value: jsonNumber(best.value), timestamp: best.timestamp, step: best.step };
}

/** A number as MLflow's JSON carries it: NaN and ±Infinity as strings. */
function jsonNumber(value: number): number | string {
  return Number.isFinite(value) ? value : String(value);
}

function mlflowMeta(view: ExperimentView): MlflowMeta {
  const meta = view.metadata?.metadata?.mlflow;
  return isRecord(meta) ? meta as MlflowMeta : {};
}

function defaultExperiment(): ExperimentEntry {
  return { id: DEFAULT_ID, name: DEFAULT_NAME, folder: DEFAULT_NAME, creationTime: 0, tags: [] };
}

function folderExperiment(id: string, folder: string, runs: { createdAt?: number }[]): ExperimentEntry {
  const created = runs.map((r) => r.createdAt).filter((t): t is number => typeof t === "number");
  const creationTime = created.length > 0 ? Math.round(Math.min(...created) * 1000) : 0;
  return { id, name: nameOfFolder(folder), folder, creationTime, tags: [] };
}

function parseIndexEntry(id: string, value: ParamValue): ExperimentEntry | undefined {
  if (typeof value !== "string") return undefined;
  let entry: unknown;
  try {
    entry = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (!isRecord(entry) || typeof entry.name !== "string" || typeof entry.folder !== "string") return undefined;
  const tags = Array.isArray(entry.tags) ? entry.tags.filter((t): t is [string, string] => Array.isArray(t) && typeof t[0] === "string" && typeof t[1] === "string") : [];
  return { id, name: entry.name, folder: entry.folder, creationTime: typeof entry.creation_time === "number" ? entry.creation_time : 0, tags };
}

function experimentJson(e: ExperimentEntry): Record<string, unknown> {
  return {
    experiment_id: e.id,
    name: e.name,
    artifact_location: `mlflow-artifacts:/${e.id}`,
    lifecycle_stage: "active",
    creation_time: e.creationTime,
    last_update_time: e.creationTime,
    tags: e.tags.map(([key, value]) => ({ key, value })),
  };
}

function experimentTarget(e: ExperimentEntry): FilterTarget {
  return {
    metrics: new Map(),
    params: new Map(),
    tags: new Map(e.tags),
    attributes: new Map<string, string | number | null>([
      ["name", e.name],
      ["experiment_id", e.id],
      ["lifecycle_stage", "active"],
      ["creation_time", e.creationTime],
      ["last_update_time", e.creationTime],
    ]),
  };
}

function runJson(view: RunView): Record<string, unknown> {
  return { info: view.info, data: { metrics: view.metrics, params: view.params, tags: view.tags }, inputs: {} };
}

// ─── Paging and answers ─────────────────────────────────────────────────────

function pageToken(offset: number): string {
  return btoa(JSON.stringify({ offset }));
}

function pageOffset(token: string | undefined): number {
  if (!token) return 0;
  let offset: unknown;
  try {
    offset = (JSON.parse(atob(token)) as { offset?: unknown }).offset;
  } catch {
    offset = undefined;
  }
  if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0) {
    throw invalid(`Invalid page_token ${JSON.stringify(token.slice(0, 100))}: expected a next_page_token of an earlier answer`);
  }
  return offset;
}

function paged<T>(items: T[], token: string | undefined, max: number): { page: T[]; next: string | undefined } {
  const offset = pageOffset(token);
  const page = items.slice(offset, offset + max);
  return { page, next: offset + max < items.length ? pageToken(offset + max) : undefined };
}

function withToken(body: Record<string, unknown>, next: string | undefined): Record<string, unknown> {
  if (next !== undefined) body.next_page_token = next;
  return body;
}

function mlflowJson(value: unknown): Response {
  return new Response(JSON.stringify(value), { headers: { "content-type": "application/json" } });
}

/** MLflow's error codes of the HTTP statuses ml-dash answers. */
const ERROR_CODES = new Map<number, string>([
  [400, "INVALID_PARAMETER_VALUE"],
  [401, "UNAUTHENTICATED"],
  [403, "PERMISSION_DENIED"],
  [404, "RESOURCE_DOES_NOT_EXIST"],
  [413, "INVALID_PARAMETER_VALUE"],
  [415, "BAD_REQUEST"],
  [429, "REQUEST_LIMIT_EXCEEDED"],
  [503, "TEMPORARILY_UNAVAILABLE"],
]);

function errorAnswer(error: unknown): Response {
  let status = 500;
  let code = "INTERNAL_ERROR";
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof MlflowError) {
    status = error.status;
    code = error.code;
  } else if (error instanceof FilterSyntaxError || error instanceof ProtocolError || error instanceof ConfigError) {
    status = 400;
    code = "INVALID_PARAMETER_VALUE";
  } else if (error instanceof HttpError || (error instanceof StorageError && error.status !== undefined)) {
    status = (error as HttpError).status;
    code = ERROR_CODES.get(status) ?? (status >= 500 ? "INTERNAL_ERROR" : "BAD_REQUEST");
  }
  const body = { error_code: code, message: status === 500 ? `Internal error: ${message}` : message };
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}
