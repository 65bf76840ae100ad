/**
 * `GET /api/v1/runs`: the runs of a folder as the dashboard's runs table shows
 * them, one row per run with its status, times, tags, params and each metric
 * key's last, min and max, narrowed by a filter in the MLflow search language
 * (`metrics.val/acc > 0.9 and params.lr = '0.001'`), parsed by the one parser
 * of that language (`mlflow_filter.ts`). Built on the {@linkcode Store}'s
 * listing and overviews.
 *
 * In a filter, `tags.k` is `v` for a tag `k=v` (or `k:v`) and `'true'` for a
 * plain tag `k`; the attributes are `status` (with `STALE` for a run whose
 * heartbeat stopped), `name`, `prefix`, `start_time`, `end_time`, `created`
 * (epoch seconds) and `duration` (seconds).
 *
 * `POST /api/v1/meta` edits a run's description and tags from the dashboard:
 * a batch with the experiment record, stored through the store's ingest as
 * the library sends it (so it needs the write token when the server has one).
 *
 * @example
 * ```ts ignore
 * import { listRuns } from "./runs_api.ts";
 * import { JsonlStore } from "./jsonl_store.ts";
 *
 * const res = await listRuns(new JsonlStore(".dash"), new URL("http://x/api/v1/runs?prefix=alice&filter=metrics.acc>0.9"));
 * ```
 *
 * @module
 */
import { HttpError, json } from "./answers.ts";
import { checkFolder, type ExperimentRecord } from "../storage/backend.ts";
import { type AttributeTypes, FilterSyntaxError, type FilterTarget, matches, paramText, parseFilter } from "./mlflow_filter.ts";
import type { FilterClause } from "./mlflow_filter.ts";
import { queryPrefix } from "./read_api.ts";
import type { ExperimentSummary, ExperimentView, Store } from "./store.ts";

/** The attributes a runs filter may name. */
export const RUNS_ATTRIBUTES: AttributeTypes = new Map([
  ["status", "string"],
  ["name", "string"],
  ["run_name", "string"],
  ["prefix", "string"],
  ["start_time", "number"],
  ["end_time", "number"],
  ["created", "number"],
  ["duration", "number"],
]);

/** The last, smallest and largest value of a metric key, and how many it has (null: not a finite number). */
export interface RunMetric {
  /** The last value logged. */
  last: number | null;
  /** The smallest. */
  min: number | null;
  /** The largest. */
  max: number | null;
  /** How many values. */
  count: number;
}

/** One row of the runs table. */
export interface RunRow {
  /** The run's prefix. */
  prefix: string;
  /** Its last segment. */
  name: string;
  /** Its status, `STALE` for a RUNNING run whose heartbeat stopped. */
  status: string;
  /** When it was created, epoch seconds. */
  createdAt?: number;
  /** When it last started. */
  startedAt?: number;
  /** When it ended (null: it has not). */
  endedAt?: number | null;
  /** Its last heartbeat. */
  heartbeatAt?: number;
  /** Its tags. */
  tags: string[];
  /** Its description. */
  readme?: string;
  /** Its other metadata (`experiment.json`'s `metadata`). */
  metadata?: Record<string, unknown>;
  /** Its flattened params (a null-prototype object: keys are users' names). */
  params: Record<string, unknown>;
  /** Each metric key's summary (a null-prototype object). */
  metrics: Record<string, RunMetric>;
}

/** How many overviews are read at once. */
const CONCURRENT_READS = 8;

/** The most runs one answer of `GET /api/v1/runs` holds, and how many it holds without `limit`: the runs table shows up to this many. */
export const MAX_RUNS_LIMIT = 10_000;

/**
 * `GET /api/v1/runs?prefix=&filter=&limit=&offset=`: the runs at and under
 * `prefix` (all without it) that match `filter`, a page of them: `limit`
 * (default and at most {@linkcode MAX_RUNS_LIMIT}) from `offset` (default 0).
 * Without a filter only the page's overviews are read; a filter reads every
 * overview of the folder, to match them.
 *
 * @param store The store.
 * @param url The request's URL.
 * @param maxLimit The most runs an answer holds (the default `limit` too).
 * @returns `{runs, total, offset, truncated}`, runs sorted by prefix, `total` the runs that match, `truncated` when some of them come after the page; 400 with a message for a bad filter, limit or offset.
 *
 * @example List the runs whose last accuracy is above 0.9
 * ```ts
 * import { JsonlStore } from "./jsonl_store.ts";
 * import { listRuns } from "./runs_api.ts";
 *
 * const store = new JsonlStore(await Deno.makeTempDir());
 * await store.ingest({ prefix: "alice/sweep/a", session: "s", seq: 0 }, { metrics: { val: ['{"_ts":1,"step":0,"acc":0.95}'] } });
 * await store.ingest({ prefix: "alice/sweep/b", session: "s", seq: 0 }, { metrics: { val: ['{"_ts":1,"step":0,"acc":0.5}'] } });
 * const res = await listRuns(store, new URL("http://localhost/api/v1/runs?prefix=alice/sweep&filter=metrics.val/acc%20%3E%200.9"));
 * console.log((await res.json()).runs.map((r: { name: string }) => r.name)); // [ "a" ]
 * await store.close();
 * ```
 */
export async function listRuns(store: Store, url: URL, maxLimit: number = MAX_RUNS_LIMIT): Promise<Response> {
  const prefixText = url.searchParams.get("prefix");
  const folder = prefixText ? queryFolder(prefixText) : undefined;
  const clauses = parsedFilter(url.searchParams.get("filter") ?? "");
  const limit = countParam(url, "limit", maxLimit, 1, maxLimit);
  const offset = countParam(url, "offset", 0, 0, Number.MAX_SAFE_INTEGER);
  const { experiments } = await store.list({ prefix: folder, offset: 0 });
  const inFolder = experiments.filter((e) => folder === undefined || e.prefix === folder || e.prefix.startsWith(`${folder}/`));
  const rowsOf = (listed: readonly ExperimentSummary[]): Promise<RunRow[]> =>
    mapConcurrently(listed, CONCURRENT_READS, async (e) => runRow(e, await store.experiment(e.prefix)));
  const matching = clauses.length === 0 ? undefined : (await rowsOf(inFolder)).filter((r) => matches(clauses, filterTarget(r)));
  const total = matching?.length ?? inFolder.length;
  const runs = matching?.slice(offset, offset + limit) ?? await rowsOf(inFolder.slice(offset, offset + limit));
  return json({ runs, total, offset, truncated: offset + runs.length < total });
}

/**
 * A whole-number query parameter within bounds, a 400 saying so otherwise.
 *
 * @param url The request's URL.
 * @param name The parameter.
 * @param fallback Its value when absent.
 * @param min The smallest allowed.
 * @param max The largest allowed.
 * @returns Its value.
 */
function countParam(url: URL, name: string, fallback: number, min: number, max: number): number {
  const text = url.searchParams.get(name);
  if (text === null) return fallback;
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(value >= min && value <= max)) {
    throw new HttpError(400, `Invalid ${name} ${JSON.stringify(text)}: expected a whole number from ${min} to ${max}`);
  }
  return value;
}

/** The longest description and tag list an edit may set. */
const MAX_README = 100_000;
const MAX_TAGS = 100;
const MAX_TAG = 200;

/**
 * The ingest session of a server process's edits: one random id for all of
 * them (so edits never crowd the library's sessions out of a run's ledger) and
 * per run a seq that grows by one per edit (so two edits never look like one
 * batch retried, and a restart, with a new id, reuses no seq).
 *
 * @example Two edits of a run
 * ```ts
 * import { EditSession } from "./runs_api.ts";
 *
 * const edits = new EditSession();
 * console.log(edits.next("alice/a"), edits.next("alice/a"), edits.next("alice/b")); // 0 1 0
 * ```
 */
export class EditSession {
  /** The session id, `dashboard-edit-<random>`. */
  readonly id: string = `dashboard-edit-${crypto.randomUUID()}`;
  #seqs = new Map<string, number>();

  /**
   * The seq of a run's next edit.
   *
   * @param prefix The run.
   * @returns 0 for its first edit in this session, then 1, 2, …
   */
  next(prefix: string): number {
    const seq = this.#seqs.get(prefix) ?? 0;
    this.#seqs.set(prefix, seq + 1);
    return seq;
  }
}

/** The edits of this server process. */
const PROCESS_EDITS = new EditSession();

/**
 * `POST /api/v1/meta` with `{"prefix", "readme"?, "tags"?}`: sets a run's
 * description and tags through the store's ingest (a batch with the
 * experiment record, under the process's {@linkcode EditSession}).
 *
 * @param store The store.
 * @param body The request's body.
 * @param edits The session the edit is stored under (default: the process's).
 * @returns `{ok, readme, tags}`; 400 for a body that is not such an object, 404 for an unknown run.
 *
 * @example Set a run's description and tags
 * ```ts
 * import { JsonlStore } from "./jsonl_store.ts";
 * import { editRun } from "./runs_api.ts";
 *
 * const store = new JsonlStore(await Deno.makeTempDir());
 * await store.ingest({ prefix: "alice/a", session: "s", seq: 0 }, { params: { lr: 0.1 } });
 * const body = new TextEncoder().encode(JSON.stringify({ prefix: "alice/a", readme: "best so far", tags: ["keep"] }));
 * await editRun(store, body);
 * console.log((await store.experiment("alice/a")).metadata?.tags); // [ "keep" ]
 * await store.close();
 * ```
 */
export async function editRun(store: Store, body: Uint8Array, edits: EditSession = PROCESS_EDITS): Promise<Response> {
  const edit = parsedEdit(body);
  if (!(await store.exists(edit.prefix))) throw new HttpError(404, `Unknown experiment "${edit.prefix}"`);
  const metadata: ExperimentRecord = { prefix: edit.prefix };
  if (edit.readme !== undefined) metadata.readme = edit.readme;
  if (edit.tags !== undefined) metadata.tags = edit.tags;
  await store.ingest({ prefix: edit.prefix, session: edits.id, seq: edits.next(edit.prefix) }, { metadata });
  const view = await store.experiment(edit.prefix);
  return json({ ok: true, readme: view.metadata?.readme ?? "", tags: view.metadata?.tags ?? [] });
}

/** An edit's body, checked: a prefix, and a description and tags within their limits. */
function parsedEdit(body: Uint8Array): { prefix: string; readme?: string; tags?: string[] } {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch {
    throw new HttpError(400, "Invalid edit: expected a JSON object {prefix, readme?, tags?}");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new HttpError(400, `Invalid edit: expected a JSON object {prefix, readme?, tags?}, received ${Array.isArray(value) ? "an array" : typeof value}`);
  }
  const { prefix, readme, tags } = value as Record<string, unknown>;
  if (typeof prefix !== "string" || prefix === "") throw new HttpError(400, "Invalid edit: expected a prefix string");
  if (readme !== undefined && (typeof readme !== "string" || readme.length > MAX_README)) {
    throw new HttpError(400, `Invalid readme: expected a string of at most ${MAX_README} characters`);
  }
  if (tags !== undefined) {
    if (!Array.isArray(tags) || tags.length > MAX_TAGS) throw new HttpError(400, `Invalid tags: expected a list of at most ${MAX_TAGS} strings`);
    const bad = tags.find((t) => typeof t !== "string" || t.trim() === "" || t.length > MAX_TAG);
    if (bad !== undefined) throw new HttpError(400, `Invalid tag ${JSON.stringify(bad)}: expected a non-empty string of at most ${MAX_TAG} characters`);
  }
  return { prefix: queryPrefix(prefix), readme: readme as string | undefined, tags: (tags as string[] | undefined)?.map((t) => t.trim()) };
}

/**
 * A filter of the request, a 400 with the parser's message when the language does not allow it.
 *
 * @param text The filter, maybe empty.
 * @returns Its clauses.
 */
function parsedFilter(text: string): FilterClause[] {
  try {
    return parseFilter(text, { attributes: RUNS_ATTRIBUTES });
  } catch (error) {
    if (error instanceof FilterSyntaxError) throw new HttpError(400, error.message);
    throw error;
  }
}

/**
 * A run's row, from its listing and its overview.
 *
 * @param e The run as listed.
 * @param view Its overview.
 * @returns The row.
 */
function runRow(e: ExperimentSummary, view: ExperimentView): RunRow {
  const metrics: Record<string, RunMetric> = Object.create(null);
  for (const [key, s] of Object.entries(view.summary)) {
    metrics[key] = { last: finite(s.last), min: finite(s.min), max: finite(s.max), count: s.count };
  }
  const params: Record<string, unknown> = Object.assign(Object.create(null), view.params);
  const extra = view.metadata?.metadata;
  return {
    prefix: e.prefix,
    name: e.prefix.slice(e.prefix.lastIndexOf("/") + 1),
    status: e.stale ? "STALE" : e.status,
    createdAt: e.createdAt,
    startedAt: e.startedAt,
    endedAt: e.endedAt,
    heartbeatAt: e.heartbeatAt,
    tags: e.tags,
    readme: e.readme,
    metadata: extra && typeof extra === "object" && Object.keys(extra).length ? extra as Record<string, unknown> : undefined,
    params,
    metrics,
  };
}

/**
 * A row as the filter sees it.
 *
 * @param row The row.
 * @returns Its metrics (last values), params (as text), tags and attributes.
 */
function filterTarget(row: RunRow): FilterTarget {
  const metrics = new Map<string, number>();
  for (const [key, m] of Object.entries(row.metrics)) if (m.last !== null) metrics.set(key, m.last);
  const start = row.startedAt ?? row.createdAt;
  const end = row.endedAt ?? null;
  return {
    metrics,
    params: new Map(Object.entries(row.params).map(([k, v]) => [k, paramText(v)])),
    tags: new Map(row.tags.map(tagEntry)),
    attributes: new Map<string, string | number | null>([
      ["status", row.status],
      ["name", row.name],
      ["run_name", row.name],
      ["prefix", row.prefix],
      ["start_time", start ?? null],
      ["end_time", end],
      ["created", row.createdAt ?? null],
      ["duration", start !== undefined && end !== null ? end - start : null],
    ]),
  };
}

/**
 * A tag as a key and value: `k=v` and `k:v` are `k` → `v`, a plain tag `k` is `k` → `true`.
 *
 * @param tag The tag.
 * @returns Its key and value.
 */
function tagEntry(tag: string): [string, string] {
  const at = tag.search(/[=:]/);
  return at > 0 ? [tag.slice(0, at), tag.slice(at + 1)] : [tag, "true"];
}

function finite(value: number | null | undefined): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/** `work` over `items`, at most `limit` at once, answers in the items' order. */
async function mapConcurrently<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await work(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

function queryFolder(value: string): string {
  try {
    checkFolder(value);
  } catch (error) {
    throw new HttpError(400, error instanceof Error ? error.message : String(error));
  }
  return value;
}
