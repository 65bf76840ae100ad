/**
 * The ClickHouse store: any number of stateless ml-dash servers over one
 * ClickHouse node or a sharded cluster, spoken to over ClickHouse's HTTP
 * interface with `fetch` (no client library). The SQL is what ClickHouse 18.16
 * and current releases both accept.
 *
 * Everything lives in `ml_dash_rows`, one row per metric value, log line,
 * state field (metadata, params, status) or file, plus one `commit` row per
 * stored batch, in its last insert; and in `ml_dash_tiles`, one row per run of
 * 128 records of a key in a batch (counts, first, lowest, highest and last
 * point), which summaries and whole-series downsamples read instead of the
 * points. Inserts are RowBinary, so values arrive bit for bit:
 *
 * - **Exactly once.** Every attempt to store a batch gets a random `attempt`
 *   id on all its rows and tiles. A batch counts once its commit row is stored
 *   (after all the rest of it); reads
 *   take, for each batch key `(prefix, session, seq)`, the committed attempt
 *   with the smallest id, and ignore the rows of every other attempt: of one
 *   that crashed before its commit (nothing of it is seen), and of a second
 *   server that stored the same batch at the same time (seen once).
 * - **Order.** Each batch gets `ord`, a clock in microseconds that never goes
 *   back within a server; a row's place is `(ord, line)`. "Last" means the
 *   greatest place.
 * - **Series** are downsampled in SQL: the x range is cut into buckets of
 *   equal width, each keeping its smallest and largest value (NaN never wins
 *   unless a bucket has nothing else), in x order. A whole series with enough
 *   tiles is bucketed by whole tiles (by each tile's first x) over the tiles'
 *   lowest and highest points.
 * - **Live changes** across servers: while watched, the store looks for
 *   commits newer than the last it saw every `pollInterval` ms.
 * - **Cluster.** With `cluster`, reads and writes go through `Distributed`
 *   tables `ml_dash_rows_all` and `ml_dash_tiles_all` over each shard's local
 *   tables, sharded by experiment, so all rows of one experiment are on one shard.
 *
 * @example Serve a ClickHouse database
 * ```ts ignore
 * import { createHandler } from "../server.ts";
 * import { ClickHouseStore } from "./clickhouse_store.ts";
 *
 * const store = await ClickHouseStore.connect("http://default:@127.0.0.1:8123/ml_dash");
 * const handler = createHandler({ store });
 * ```
 *
 * @module
 */
import type { Batch, FileInfo, ParamValue, StatusRecord } from "../storage/backend.ts";
import { checkFilePath, checkMetricName, checkPrefix } from "../storage/backend.ts";
import { ConfigError, StorageError } from "../storage/errors.ts";
import { unrefTimer } from "../storage/runtime.ts";
import { RowBinaryWriter } from "./row_binary.ts";
import type {
  BatchKey,
  Change,
  ExperimentPage,
  ExperimentSummary,
  ExperimentView,
  KeySummary,
  ListQuery,
  LogPage,
  LogPageQuery,
  OpenState,
  SeriesPage,
  SeriesQuery,
  Store,
  StoredFile,
} from "./store.ts";

/** Options of {@linkcode ClickHouseStore.connect}. */
export interface ClickHouseStoreOptions {
  /** The cluster (of ClickHouse's `remote_servers`) to shard over; also `?cluster=` in the URL. Unset: one node. */
  cluster?: string;
  /** Milliseconds between looks for other servers' commits while something watches (default 500). */
  pollInterval?: number;
  /** Missed heartbeats before a RUNNING run counts as stale (default 3). */
  staleAfterIntervals?: number;
  /** Milliseconds a request to ClickHouse may take (default 60000). */
  timeoutMs?: number;
}

/** What {@linkcode ClickHouseStore.connect} found at the other end. */
export interface ClickHouseInfo {
  /** The HTTP interface, without credentials. */
  url: string;
  /** The database. */
  database: string;
  /** The user, when one was given. */
  user?: string;
  /** ClickHouse's version. */
  version: string;
  /** The cluster sharded over, if any. */
  cluster?: string;
  /** The schema version of the tables. */
  schema: number;
}

/** The schema version this module writes; older tables are upgraded by {@linkcode MIGRATIONS}. */
export const SCHEMA_VERSION = 2;

const TABLE = "ml_dash_rows";
const DIST_TABLE = "ml_dash_rows_all";
/** Schema 2: a row per run of {@linkcode TILE_RECORDS} records of a key in a batch, for summaries and long downsamples. */
const TILES = "ml_dash_tiles";
const DIST_TILES = "ml_dash_tiles_all";
const TILE_RECORDS = 128;
const TILE_COLUMNS = [
  "prefix", "name", "field", "attempt", "ord", "line", "n", "real", "finite", "first_step", "first_ts", "first_value",
  "lo_step", "lo_ts", "lo_value", "hi_step", "hi_ts", "hi_value", "min_value", "max_value", "last_step", "last_value",
];
const SCHEMA_TABLE = "ml_dash_schema";
const COLUMNS = ["prefix", "kind", "name", "field", "session", "seq", "attempt", "ord", "line", "step", "ts", "value", "text"];
const DEFAULT_METRIC = "default";
const LEVELS = ["debug", "info", "warn", "error", "fatal"];
/** A state row whose text is empty removes the field (JSON text is never empty). */
const REMOVED = "";
/** Commit flags in a commit row's `value`. */
const HAS_METRICS = 1;
const HAS_LOGS = 2;

/** Runs one statement against the store's database and returns ClickHouse's answer. */
type Run = (sql: string) => Promise<string>;

/** Committed batches whose tiles one statement of the schema-2 backfill makes (its IN list stays well under max_query_size). */
const BACKFILL_ATTEMPTS = 5_000;

/**
 * The steps that bring the tables from one schema version to the next:
 * `MIGRATIONS[v - 1]` makes version `v`. Each is safe to run twice, and by two
 * servers at once. A later version appends its step here.
 */
const MIGRATIONS: ((table: string, run: Run) => Promise<void>)[] = [
  async (table, run) => {
    await run(`CREATE TABLE IF NOT EXISTS ${table} (
      prefix String,
      kind Enum8('commit' = 1, 'point' = 2, 'log' = 3, 'state' = 4, 'file' = 5),
      name String,
      field String,
      session String,
      seq UInt64,
      attempt UInt64,
      ord UInt64,
      line UInt32,
      step Float64,
      ts Float64,
      value Float64,
      text String
    ) ENGINE = MergeTree ORDER BY (prefix, kind, name, field, ord, line)`);
  },
  // 2: tiles. Each committed batch's points, cut into runs of TILE_RECORDS records per key,
  // as one row each: count, non-NaN and finite counts, first, lowest, highest and last point,
  // finite min and max. A summary reads those instead of every point, and a long series is
  // downsampled over them. The tiles of the points stored before are made from them once.
  async (table, run) => {
    await run(`CREATE TABLE IF NOT EXISTS ${TILES} (
      prefix String, name String, field String, attempt UInt64, ord UInt64, line UInt32,
      n UInt32, real UInt32, finite UInt32,
      first_step Float64, first_ts Float64, first_value Float64,
      lo_step Float64, lo_ts Float64, lo_value Float64,
      hi_step Float64, hi_ts Float64, hi_value Float64,
      min_value Float64, max_value Float64, last_step Float64, last_value Float64
    ) ENGINE = MergeTree ORDER BY (prefix, name, field, ord, line)`);
    // Only batches whose commit row is already stored, so all their points are too: a batch that
    // a server is storing meanwhile gets its tiles from that server. The list is read first, as
    // a query's IN sets may be read after the parts it scans were chosen. A second server
    // upgrading at once may make the same tiles again: reads keep one of each (tileRows).
    const attempts = (await run(
      `SELECT DISTINCT attempt FROM ${table} WHERE kind = 'commit' AND attempt NOT IN (SELECT attempt FROM ${TILES}) FORMAT TabSeparated`,
    )).split("\n").filter((l) => l !== "");
    for (let i = 0; i < attempts.length; i += BACKFILL_ATTEMPTS) {
      await run(`INSERT INTO ${TILES} (${TILE_COLUMNS.join(", ")})
       SELECT prefix, name, field, attempt, ord, min(line), count(), countIf(NOT isNaN(value)), countIf(isFinite(value)),
         argMin(step, line), argMin(ts, line), argMin(value, line),
         tupleElement(argMinIf((step, ts, value), (value, line), NOT isNaN(value)), 1),
         tupleElement(argMinIf((step, ts, value), (value, line), NOT isNaN(value)), 2),
         tupleElement(argMinIf((step, ts, value), (value, line), NOT isNaN(value)), 3),
         tupleElement(argMaxIf((step, ts, value), (value, -toInt64(line)), NOT isNaN(value)), 1),
         tupleElement(argMaxIf((step, ts, value), (value, -toInt64(line)), NOT isNaN(value)), 2),
         tupleElement(argMaxIf((step, ts, value), (value, -toInt64(line)), NOT isNaN(value)), 3),
         if(countIf(isFinite(value)) > 0, minIf(value, isFinite(value)), 0), if(countIf(isFinite(value)) > 0, maxIf(value, isFinite(value)), 0),
         argMax(step, line), argMax(value, line)
       FROM ${table} WHERE kind = 'point' AND attempt IN (${attempts.slice(i, i + BACKFILL_ATTEMPTS).join(", ")})
       GROUP BY prefix, name, field, attempt, ord, intDiv(line, ${TILE_RECORDS})`);
    }
  },
];

/** A {@linkcode Store} over ClickHouse. */
export class ClickHouseStore implements Store {
  /** What it is connected to. */
  readonly info: ClickHouseInfo;
  #base: string;
  #headers: Record<string, string>;
  #table: string;
  #tiles: string;
  #timeoutMs: number;
  #pollInterval: number;
  #staleFactor: number;
  #lastOrd = 0;
  #listeners = new Set<(change: Change) => void>();
  #poller: ReturnType<typeof setTimeout> | undefined;
  #polling = false;
  #seen = new Map<string, number>();
  #watermark = 0;
  #statuses = new Map<string, string>();
  #closed = false;

  private constructor(info: ClickHouseInfo, base: string, headers: Record<string, string>, options: ClickHouseStoreOptions) {
    this.info = info;
    this.#base = base;
    this.#headers = headers;
    this.#table = info.cluster ? DIST_TABLE : TABLE;
    this.#tiles = info.cluster ? DIST_TILES : TILES;
    this.#timeoutMs = options.timeoutMs ?? 60_000;
    this.#pollInterval = options.pollInterval ?? 500;
    this.#staleFactor = options.staleAfterIntervals ?? 3;
  }

  /**
   * Connects to ClickHouse, makes the database and tables if missing and
   * upgrades older ones.
   *
   * @param url `http://[user:password@]host:8123/<database>[?cluster=name]`.
   * @param options The cluster, poll interval, stale rule and request timeout.
   * @returns The store.
   * @throws {ConfigError} For a URL that is not http(s).
   * @throws {StorageError} When ClickHouse is unreachable, refuses the credentials, or has tables of a newer schema.
   */
  static async connect(url: string, options: ClickHouseStoreOptions = {}): Promise<ClickHouseStore> {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new ConfigError(`Invalid ClickHouse URL ${JSON.stringify(url)}: expected http://[user:password@]host:8123/<database>`);
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      throw new ConfigError(`Invalid ClickHouse URL ${JSON.stringify(url)}: expected http:// or https://`);
    }
    const database = decodeURIComponent(parsed.pathname.replace(/^\/+|\/+$/g, "")) || "default";
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(database)) {
      throw new ConfigError(`Invalid ClickHouse database ${JSON.stringify(database)}: expected letters, digits and "_"`);
    }
    const cluster = options.cluster ?? (parsed.searchParams.get("cluster") || undefined);
    if (cluster !== undefined && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(cluster)) {
      throw new ConfigError(`Invalid ClickHouse cluster ${JSON.stringify(cluster)}: expected letters, digits and "_"`);
    }
    const headers: Record<string, string> = {};
    const user = parsed.username ? decodeURIComponent(parsed.username) : undefined;
    if (user !== undefined) {
      headers["x-clickhouse-user"] = user;
      headers["x-clickhouse-key"] = decodeURIComponent(parsed.password);
    }
    const base = `${parsed.protocol}//${parsed.host}`;
    const info: ClickHouseInfo = { url: base, database, user, version: "", cluster, schema: 0 };
    const store = new ClickHouseStore(info, base, headers, options);
    await store.#setUp();
    return store;
  }

  async has(key: BatchKey): Promise<boolean> {
    checkStoredPrefix(key.prefix);
    const rows = await this.#select(
      `SELECT prefix FROM ${this.#table} WHERE prefix = ${str(key.prefix)} AND kind = 'commit' AND session = ${str(key.session)} AND seq = ${int(key.seq)} LIMIT 1`,
    );
    return rows.length > 0;
  }

  async ingest(key: BatchKey, batch: Batch): Promise<{ duplicate: boolean }> {
    const { prefix, session, seq } = key;
    const attempt = randomId();
    const ord = this.#tick();
    try {
      checkStoredPrefix(prefix);
      if (typeof session !== "string" || session === "") throw new ConfigError(`Invalid session ${JSON.stringify(session)}: expected a non-empty string`);
      if (!Number.isSafeInteger(seq) || seq < 0) throw new ConfigError(`Invalid seq ${JSON.stringify(seq)}: expected an integer from 0 to 2^53 - 1`);
    } catch (error) {
      throw asRequestError(error);
    }
    const tiles = new TileWriter(prefix, attempt, ord);
    const chunks = batchRows(prefix, session, seq, attempt, ord, batch, tiles);
    const stored = this.has(key);
    // Settled at once, so that an early return or throw leaves no rejection unheard.
    stored.catch(() => {});
    let sending: Promise<unknown> = Promise.resolve();
    const insert = (rows: Uint8Array): Promise<string> => this.#request(`INSERT INTO ${this.#table} (${COLUMNS.join(", ")}) FORMAT RowBinary`, rows, true);
    try {
      let first = true;
      // Each insert is encoded while the one before is on its way; an invalid record stops the
      // batch before its commit row, so nothing of it is seen.
      for (const chunk of chunks) {
        if (first && (await stored)) return { duplicate: true };
        first = false;
        await sending;
        if (!chunk.last) {
          sending = insert(chunk.rows);
          sending.catch(() => {});
          continue;
        }
        // The tiles, then the last rows with the commit row: until that is stored, no read sees any of it.
        const tileRows = tiles.bytes();
        if (tileRows) await this.#request(`INSERT INTO ${this.#tiles} (${TILE_COLUMNS.join(", ")}) FORMAT RowBinary`, tileRows, true);
        await insert(chunk.rows);
      }
    } catch (error) {
      await sending.catch(() => {});
      if (error instanceof ConfigError) throw asRequestError(error);
      const message = error instanceof Error ? error.message : String(error);
      throw new StorageError(`Could not store the batch, and nothing of it is seen: ${message}; retry later`, { status: 503, cause: error });
    }
    this.#seen.set(String(attempt), ord);
    this.#announce(prefix, batch);
    return { duplicate: false };
  }

  async open(prefix: string, sessions?: readonly string[]): Promise<OpenState> {
    checkStoredPrefix(prefix);
    const [state, files, stepRows] = await Promise.all([
      this.#state(prefix),
      this.#files(prefix),
      this.#select<{ name: string; last: string }>(
        `SELECT name, toString(argMax(step, (ord, line))) AS last FROM ${this.#table}
         WHERE prefix = ${str(prefix)} AND kind = 'point' AND isFinite(step) AND ${this.#committed(prefix)} GROUP BY name`,
      ),
    ]);
    const result: OpenState = {
      params: state.params,
      files,
      steps: Object.fromEntries(stepRows.map((r) => [r.name, toNumber(r.last)])),
    };
    if (sessions) {
      const found = new Map<string, number>();
      if (sessions.length > 0) {
        const rows = await this.#select<{ session: string; seq: string }>(
          `SELECT session, max(seq) AS seq FROM ${this.#table}
           WHERE prefix = ${str(prefix)} AND kind = 'commit' AND session IN (${sessions.map(str).join(", ")}) GROUP BY session`,
        );
        for (const row of rows) found.set(row.session, Number(row.seq));
      }
      result.sessions = Object.fromEntries(sessions.map((s) => [s, found.get(s) ?? null]));
    }
    return result;
  }

  async exists(prefix: string): Promise<boolean> {
    checkStoredPrefix(prefix);
    const rows = await this.#select(`SELECT prefix FROM ${this.#table} WHERE prefix = ${str(prefix)} AND kind = 'commit' LIMIT 1`);
    return rows.length > 0;
  }

  async list(query: ListQuery): Promise<ExperimentPage> {
    let where = "1";
    if (query.prefix) {
      const under = query.prefix.replace(/\/?$/, "/");
      where = `(prefix = ${str(query.prefix)} OR startsWith(prefix, ${str(under)}))`;
    }
    const last = (kind: string, field: string): string =>
      `argMaxIf(text, (ord, line), kind = 'state' AND name = ${str(kind)} AND field = ${str(field)})`;
    const rows = await this.#select<ListRow>(
      `SELECT prefix,
         toString(minIf(ord, kind = 'commit')) AS created,
         ${last("status", "status")} AS status,
         ${last("status", "startedAt")} AS startedAt,
         ${last("status", "endedAt")} AS endedAt,
         ${last("status", "heartbeatAt")} AS heartbeatAt,
         ${last("status", "heartbeatInterval")} AS heartbeatInterval,
         ${last("metadata", "tags")} AS tags,
         ${last("metadata", "readme")} AS readme,
         ${last("metadata", "createdAt")} AS createdAt
       FROM ${this.#table}
       WHERE ${where} AND (kind = 'commit' OR (kind = 'state' AND attempt GLOBAL IN
         (SELECT attempt FROM ${this.#table} WHERE ${where} AND kind = 'commit')))
       GROUP BY prefix HAVING countIf(kind = 'commit') > 0`,
    );
    let all = rows.map((row) => this.#summarize(row));
    if (query.status) {
      const wanted = query.status.toLowerCase() === "stale" ? undefined : query.status.toUpperCase();
      all = all.filter((e) => (wanted === undefined ? e.stale : e.status === wanted));
    }
    all.sort((a, b) => a.prefix.localeCompare(b.prefix));
    const end = query.limit === undefined ? undefined : query.offset + query.limit;
    return { experiments: all.slice(query.offset, end), total: all.length };
  }

  async experiment(prefix: string): Promise<ExperimentView> {
    checkStoredPrefix(prefix);
    const [state, summary, files] = await Promise.all([this.#state(prefix), this.#summary(prefix), this.#files(prefix)]);
    const status = state.status ? { ...state.status, stale: this.#isStale(state.status) } : null;
    return { prefix, metadata: state.metadata, status, params: state.params, summary, files };
  }

  async series(prefix: string, key: string, query: SeriesQuery): Promise<SeriesPage> {
    checkStoredPrefix(prefix);
    const { metric, field } = await this.#splitKey(prefix, key);
    const rows = (f: string, columns: string): string =>
      `SELECT ${columns} FROM ${this.#table}
       WHERE prefix = ${str(prefix)} AND kind = 'point' AND name = ${str(metric)} AND field = ${str(f)} AND ${this.#committed(prefix)}`;
    let source: string;
    if (query.x === "step" || query.x === "_ts") {
      source = rows(field, `${query.x === "step" ? "step" : "ts"} AS x, value, ord, line, ts`);
    } else {
      // Another field of the same records: its rows share the record's attempt and line.
      source = `SELECT x, value, ord, line, ts FROM (${rows(field, "value, ord, line, attempt, ts")}) ALL INNER JOIN
        (${rows(query.x, "value AS x, attempt, line")}) USING (attempt, line)`;
    }
    if ((query.x === "step" || query.x === "_ts") && query.from === undefined && query.to === undefined && query.offset === 0 && query.limit === undefined) {
      const page = await this.#seriesFromTiles(prefix, metric, field, query.x === "step" ? "step" : "ts", query.points);
      if (page !== undefined) return page;
    }
    const range: string[] = [];
    if (query.from !== undefined) range.push(`x >= ${num(query.from)}`);
    if (query.to !== undefined) range.push(`x <= ${num(query.to)}`);
    let ranged = `SELECT x, value, ord, line, ts FROM (${source})${range.length ? ` WHERE ${range.join(" AND ")}` : ""}`;
    let total: number | undefined;
    if (query.offset > 0 || query.limit !== undefined) {
      total = Number((await this.#select<{ n: string }>(`SELECT count() AS n FROM (${ranged})`))[0]?.n ?? 0);
      const limit = query.limit === undefined ? "18446744073709551615" : int(query.limit);
      ranged = `SELECT x, value, ord, line, ts FROM (${ranged}) ORDER BY x, ord, line LIMIT ${int(query.offset)}, ${limit}`;
    }
    const [stats] = await this.#tsv(`SELECT count(), toString(minIf(x, isFinite(x))), toString(maxIf(x, isFinite(x))) FROM (${ranged})`);
    const n = Number(stats?.[0] ?? 0);
    total ??= n;
    const target = Math.max(2, Math.floor(query.points));
    if (n <= target) {
      const points = await this.#tsv(`SELECT toString(x), toString(value), toString(ts) FROM (${ranged}) ORDER BY x, ord, line`);
      const page: SeriesPage = { x: points.map((p) => toNumber(p[0])), value: points.map((p) => toNumber(p[1])), total, downsampled: false };
      if (query.time) page.time = points.map((p) => toNumber(p[2]));
      return page;
    }
    const buckets = Math.floor(target / 2);
    const bucket = bucketOf("x", toNumber(stats[1]), toNumber(stats[2]), buckets);
    const part = (t: string, i: number): string => `toString(tupleElement(${t}, ${i}))`;
    const picked = await this.#tsv(
      `SELECT b, real, ${[1, 2, 3, 4].map((i) => part("low", i)).join(", ")}, ${[1, 2, 3, 4].map((i) => part("high", i)).join(", ")},
         ${part("first", 1)}, ${part("first", 2)}
       FROM (
         SELECT b, countIf(NOT isNaN(value)) AS real,
           argMinIf((x, value, ord, line), (value, x, ord, line), NOT isNaN(value)) AS low,
           argMaxIf((x, value, ord, line), (value, -x, -toInt64(ord), -toInt64(line)), NOT isNaN(value)) AS high,
           argMin((x, value), (x, ord, line)) AS first
         FROM (SELECT x, value, ord, line, ${bucket} AS b FROM (${ranged})) GROUP BY b
       ) ORDER BY b`,
    );
    return { ...bucketPoints(picked), total, downsampled: true };
  }

  /**
   * A whole series downsampled over its tiles: the buckets are runs of whole
   * tiles (by each tile's first x), each keeping the lowest and highest of its
   * tiles' points. Undefined when the series fits in `points`, or has too few
   * tiles for the buckets: then the points themselves are read.
   */
  async #seriesFromTiles(prefix: string, metric: string, field: string, x: "step" | "ts", points: number): Promise<SeriesPage | undefined> {
    const target = Math.max(2, Math.floor(points));
    const buckets = Math.floor(target / 2);
    const tiles = this.#tileRows(prefix, `name = ${str(metric)} AND field = ${str(field)}`, [
      "name", "field", "ord", "n", "real", `first_${x}`, "first_value", `lo_${x}`, "lo_value", `hi_${x}`, "hi_value",
    ]);
    const [stats] = await this.#tsv(
      `SELECT sum(n), count(), toString(minIf(first_${x}, isFinite(first_${x}))), toString(maxIf(first_${x}, isFinite(first_${x}))) FROM (${tiles})`,
    );
    const total = Number(stats?.[0] ?? 0);
    if (total <= target || Number(stats[1]) < 2 * buckets) return undefined;
    const bucket = bucketOf(`first_${x}`, toNumber(stats[2]), toNumber(stats[3]), buckets);
    const part = (t: string, i: number): string => `toString(tupleElement(${t}, ${i}))`;
    const picked = await this.#tsv(
      `SELECT b, reals, ${[1, 2, 3, 4].map((i) => part("low", i)).join(", ")}, ${[1, 2, 3, 4].map((i) => part("high", i)).join(", ")},
         ${part("first", 1)}, ${part("first", 2)}
       FROM (
         SELECT b, sum(real) AS reals,
           argMinIf((lo_${x}, lo_value, ord, line), (lo_value, lo_${x}, ord, line), real > 0) AS low,
           argMaxIf((hi_${x}, hi_value, ord, line), (hi_value, -hi_${x}, -toInt64(ord), -toInt64(line)), real > 0) AS high,
           argMin((first_${x}, first_value), (first_${x}, ord, line)) AS first
         FROM (SELECT *, ${bucket} AS b FROM (${tiles})) GROUP BY b
       ) ORDER BY b`,
    );
    const page = bucketPoints(picked);
    // Tiles of batches whose x ranges overlap may put a bucket's points before the last one's.
    const order = page.x.map((_, i) => i).sort((a, b) => page.x[a] - page.x[b] || a - b);
    return { x: order.map((i) => page.x[i]), value: order.map((i) => page.value[i]), total, downsampled: true };
  }

  async logs(prefix: string, query: LogPageQuery): Promise<LogPage> {
    checkStoredPrefix(prefix);
    const rank = query.level === undefined ? 0 : Math.max(0, LEVELS.indexOf(query.level));
    const levels = `[${LEVELS.map(str).join(", ")}]`;
    const where = `prefix = ${str(prefix)} AND kind = 'log' AND ${this.#committed(prefix)}` +
      (rank > 0 ? ` AND transform(name, ${levels}, [0, 1, 2, 3, 4], 1) >= ${rank}` : "");
    const limit = query.limit === undefined ? "18446744073709551615" : int(query.limit);
    const [count, lines] = await Promise.all([
      this.#select<{ n: string }>(`SELECT count() AS n FROM ${this.#table} WHERE ${where}`),
      this.#select<{ text: string }>(`SELECT text FROM ${this.#table} WHERE ${where} ORDER BY ord, line LIMIT ${int(query.offset)}, ${limit}`),
    ]);
    return { logs: lines.map((l) => JSON.parse(l.text)), total: Number(count[0]?.n ?? 0) };
  }

  async file(prefix: string, path: string): Promise<StoredFile | undefined> {
    checkStoredPrefix(prefix);
    try {
      checkFilePath(path);
    } catch (error) {
      throw new StorageError(`Invalid file path ${JSON.stringify(path)}: ${error instanceof Error ? error.message : error}`, { status: 400 });
    }
    const rows = await this.#select<{ n: string; data: string; mime: string }>(
      `SELECT count() AS n, argMax(text, (ord, line)) AS data, argMax(field, (ord, line)) AS mime FROM ${this.#table}
       WHERE prefix = ${str(prefix)} AND kind = 'file' AND name = ${str(path)} AND ${this.#committed(prefix)}`,
    );
    if (!rows[0] || Number(rows[0].n) === 0) return undefined;
    return { data: new Uint8Array(Buffer.from(rows[0].data, "base64")), mime: rows[0].mime };
  }

  async watch(onChange: (change: Change) => void): Promise<() => void> {
    this.#listeners.add(onChange);
    if (this.#listeners.size === 1) await this.#startPolling();
    return () => {
      this.#listeners.delete(onChange);
      if (this.#listeners.size === 0) this.#stopPolling();
    };
  }

  close(): Promise<void> {
    this.#closed = true;
    this.#listeners.clear();
    this.#stopPolling();
    return Promise.resolve();
  }

  // ─── Reads ────────────────────────────────────────────────────────────────

  /** The condition that keeps the rows of each batch key's first committed attempt. */
  #committed(prefix: string): string {
    return `attempt GLOBAL IN (SELECT min(attempt) FROM ${this.#table} WHERE prefix = ${str(prefix)} AND kind = 'commit' GROUP BY session, seq)`;
  }

  /**
   * The committed tiles of an experiment that match `where`, each once: two
   * servers upgrading to schema 2 at once may both make a batch's tiles, and
   * a tile is the same row whoever makes it, told apart by its batch attempt,
   * key and first record. `columns` are the ones read besides `attempt` and `line`.
   */
  #tileRows(prefix: string, where: string, columns: string[]): string {
    // The columns are named: a subquery with LIMIT BY is not narrowed to what the outer query reads.
    return `SELECT attempt, line, ${columns.join(", ")} FROM ${this.#tiles} WHERE prefix = ${str(prefix)} AND ${where} AND ${this.#committed(prefix)}
      LIMIT 1 BY attempt, name, field, line`;
  }

  /** Metadata, params and status of one experiment: the last value of each field. */
  async #state(prefix: string): Promise<{ metadata: ExperimentView["metadata"]; params: Record<string, ParamValue>; status: StatusRecord | undefined }> {
    const [rows, times] = await Promise.all([
      this.#select<{ name: string; field: string; text: string }>(
        `SELECT name, field, argMax(text, (ord, line)) AS text FROM ${this.#table}
         WHERE prefix = ${str(prefix)} AND kind = 'state' AND ${this.#committed(prefix)}
         GROUP BY name, field ORDER BY min(ord), min(line)`,
      ),
      this.#select<{ created: string; updated: string }>(
        `SELECT toString(minIf(ord, kind = 'commit')) AS created, toString(maxIf(ord, kind = 'state' AND name = 'metadata')) AS updated
         FROM ${this.#table} WHERE prefix = ${str(prefix)} AND kind IN ('commit', 'state') AND (kind = 'commit' OR ${this.#committed(prefix)})`,
      ),
    ]);
    const parts = { metadata: [] as [string, unknown][], params: [] as [string, ParamValue][], status: [] as [string, unknown][] };
    for (const row of rows) {
      if (row.text === REMOVED) continue;
      const part = parts[row.name as keyof typeof parts];
      if (part) part.push([row.field, JSON.parse(row.text)]);
    }
    const created = Number(times[0]?.created ?? 0) / 1e6;
    const updated = Number(times[0]?.updated ?? 0) / 1e6 || created;
    const metadata = { prefix, ...Object.fromEntries(parts.metadata), createdAt: created, updatedAt: updated };
    const status = parts.status.length > 0 ? Object.fromEntries(parts.status) as StatusRecord : undefined;
    return { metadata, params: Object.fromEntries(parts.params), status };
  }

  async #files(prefix: string): Promise<FileInfo[]> {
    const rows = await this.#select<{ path: string; size: string; mime: string; saved: string }>(
      `SELECT name AS path, toString(argMax(value, (ord, line))) AS size, argMax(field, (ord, line)) AS mime,
         toString(argMax(ts, (ord, line))) AS saved
       FROM ${this.#table} WHERE prefix = ${str(prefix)} AND kind = 'file' AND ${this.#committed(prefix)}
       GROUP BY name ORDER BY min(ord), min(line)`,
    );
    return rows.map((r) => ({ path: r.path, size: toNumber(r.size), mime: r.mime, _ts: toNumber(r.saved) }));
  }

  async #summary(prefix: string): Promise<Record<string, KeySummary>> {
    const rows = await this.#tsvRows(
      `SELECT name, field, sum(n), sum(finite), toString(minIf(min_value, finite > 0)), toString(maxIf(max_value, finite > 0)),
         toString(argMax(last_value, (ord, line))), toString(argMax(last_step, (ord, line)))
       FROM (${this.#tileRows(prefix, "1", ["name", "field", "ord", "n", "finite", "min_value", "max_value", "last_value", "last_step"])})
       GROUP BY name, field`,
    );
    const entries: [string, KeySummary][] = rows.map(([metric, field, count, finite, min, max, last, lastStep]) => {
      const some = Number(finite) > 0;
      return [metric === DEFAULT_METRIC ? field : `${metric}/${field}`, {
        count: Number(count),
        min: some ? toNumber(min) : null,
        max: some ? toNumber(max) : null,
        last: toNumber(last),
        lastStep: toNumber(lastStep),
      }];
    });
    return Object.fromEntries(entries.sort(([a], [b]) => a.localeCompare(b)));
  }

  /** `metric/field`, or `field` of the default metric when no metric has the name before the slash. */
  async #splitKey(prefix: string, key: string): Promise<{ metric: string; field: string }> {
    const slash = key.indexOf("/");
    if (slash > 0) {
      const metric = key.slice(0, slash);
      const rows = await this.#select(`SELECT prefix FROM ${this.#table} WHERE prefix = ${str(prefix)} AND kind = 'point' AND name = ${str(metric)} LIMIT 1`);
      if (rows.length > 0) return { metric, field: key.slice(slash + 1) };
    }
    return { metric: DEFAULT_METRIC, field: key };
  }

  #summarize(row: ListRow): ExperimentSummary {
    const get = (text: string): unknown => (text === REMOVED ? undefined : JSON.parse(text));
    const status: StatusRecord = {
      status: get(row.status) as StatusRecord["status"],
      heartbeatAt: get(row.heartbeatAt) as number | undefined,
      heartbeatInterval: get(row.heartbeatInterval) as number | undefined,
    };
    return {
      prefix: row.prefix,
      status: status.status ?? "UNKNOWN",
      stale: this.#isStale(status),
      tags: (get(row.tags) as string[] | undefined) ?? [],
      readme: get(row.readme) as string | undefined,
      createdAt: Number(row.created) / 1e6,
      startedAt: get(row.startedAt) as number | undefined,
      endedAt: get(row.endedAt) as number | null | undefined,
      heartbeatAt: status.heartbeatAt,
    };
  }

  #isStale(status: StatusRecord): boolean {
    if (status.status !== "RUNNING" || status.heartbeatAt === undefined) return false;
    const interval = status.heartbeatInterval ?? 5;
    return Date.now() / 1000 - status.heartbeatAt > interval * this.#staleFactor + 1;
  }

  // ─── Changes ──────────────────────────────────────────────────────────────

  async #startPolling(): Promise<void> {
    // From now on: what was committed before the first look is not a change.
    const rows = await this.#select<{ at: string }>(`SELECT toString(max(ord)) AS at FROM ${this.#table} WHERE kind = 'commit'`);
    this.#watermark = Math.max(this.#watermark, Number(rows[0]?.at ?? 0));
    const schedule = (): void => {
      if (this.#listeners.size === 0 || this.#closed) return;
      this.#poller = setTimeout(async () => {
        await this.#poll().catch(() => {});
        schedule();
      }, this.#pollInterval);
      unrefTimer(this.#poller);
    };
    if (this.#poller === undefined) schedule();
  }

  #stopPolling(): void {
    if (this.#poller !== undefined) clearTimeout(this.#poller);
    this.#poller = undefined;
  }

  /** Commits since the last look (less a margin for other servers' clocks), each announced once. */
  async #poll(): Promise<void> {
    if (this.#polling) return;
    this.#polling = true;
    try {
      const since = this.#watermark - CLOCK_MARGIN_US;
      const rows = await this.#select<{ prefix: string; id: string; at: string; flags: number; status: string }>(
        `SELECT prefix, toString(attempt) AS id, toString(ord) AS at, toUInt8(value) AS flags, text AS status
         FROM ${this.#table} WHERE kind = 'commit' AND ord > ${int(Math.max(0, since))} ORDER BY ord`,
      );
      for (const row of rows) {
        const ord = Number(row.at);
        this.#watermark = Math.max(this.#watermark, ord);
        if (this.#seen.has(row.id)) continue;
        this.#seen.set(row.id, ord);
        this.#emitCommit(row.prefix, row.flags, row.status || undefined);
      }
      for (const [attempt, ord] of this.#seen) if (ord < since - CLOCK_MARGIN_US) this.#seen.delete(attempt);
    } finally {
      this.#polling = false;
    }
  }

  #announce(prefix: string, batch: Batch): void {
    if (this.#listeners.size === 0) return;
    this.#emitCommit(prefix, (batch.metrics ? HAS_METRICS : 0) | (batch.logs ? HAS_LOGS : 0), batch.status?.status);
  }

  #emitCommit(prefix: string, flags: number, status: string | undefined): void {
    const before = this.#statuses.get(prefix);
    if (before === undefined || (status !== undefined && status !== before)) {
      const now = status ?? before ?? "UNKNOWN";
      this.#statuses.set(prefix, now);
      this.#emit({ kind: "experiment", prefix, status: now });
    }
    if (flags & HAS_METRICS) this.#emit({ kind: "metrics", prefix });
    if (flags & HAS_LOGS) this.#emit({ kind: "logs", prefix });
  }

  #emit(change: Change): void {
    for (const listener of [...this.#listeners]) listener(change);
  }

  // ─── ClickHouse ───────────────────────────────────────────────────────────

  async #setUp(): Promise<void> {
    this.info.version = (await this.#request("SELECT version()", undefined, false, false)).trim();
    await this.#request(`CREATE DATABASE IF NOT EXISTS ${this.info.database}`, undefined, false, false);
    await this.#request(`CREATE TABLE IF NOT EXISTS ${SCHEMA_TABLE} (version UInt32, applied DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY version`);
    const [row] = await this.#tsv(`SELECT max(version) FROM ${SCHEMA_TABLE}`);
    const current = Number(row?.[0] ?? 0);
    if (current > SCHEMA_VERSION) {
      throw new StorageError(
        `The tables of ClickHouse database ${this.info.database} have schema version ${current}, newer than this ml-dash's ${SCHEMA_VERSION}: upgrade ml-dash`,
      );
    }
    for (let v = current + 1; v <= SCHEMA_VERSION; v++) {
      await MIGRATIONS[v - 1](TABLE, (sql) => this.#request(sql));
      await this.#request(`INSERT INTO ${SCHEMA_TABLE} (version) VALUES (${v})`);
    }
    this.info.schema = SCHEMA_VERSION;
    if (this.info.cluster) {
      for (const [dist, local] of [[DIST_TABLE, TABLE], [DIST_TILES, TILES]]) {
        await this.#request(
          `CREATE TABLE IF NOT EXISTS ${dist} AS ${local} ENGINE = Distributed(${this.info.cluster}, ${this.info.database}, ${local}, cityHash64(prefix))`,
        );
      }
      // Every shard must hold the local tables: a query over all of them says so if one does not.
      await this.#request(`SELECT count() FROM ${DIST_TABLE} WHERE kind = 'commit' AND prefix = ''`);
      await this.#request(`SELECT count() FROM ${DIST_TILES} WHERE prefix = ''`);
    }
  }

  /** The microsecond clock of this server's batches: never the same twice, never back. */
  #tick(): number {
    this.#lastOrd = Math.max(Date.now() * 1000, this.#lastOrd + 1);
    return this.#lastOrd;
  }

  async #select<T = Record<string, unknown>>(sql: string): Promise<T[]> {
    const text = await this.#request(`${sql} FORMAT JSONEachRow`);
    return text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as T);
  }

  /** Rows as TabSeparated text, cells unescaped (numbers as ClickHouse writes them: nan, inf, -inf). */
  async #tsvRows(sql: string): Promise<string[][]> {
    const text = await this.#request(`${sql} FORMAT TabSeparated`);
    return text.split("\n").filter((l) => l !== "").map((l) => l.split("\t").map(unescapeTsv));
  }

  #tsv(sql: string): Promise<string[][]> {
    return this.#tsvRows(sql);
  }

  /**
   * Sends one statement. A query goes in the body; with `data`, the statement
   * goes in the URL and the data in the body (an INSERT).
   */
  async #request(sql: string, data?: Uint8Array, insert = false, inDatabase = true): Promise<string> {
    const params = new URLSearchParams();
    if (inDatabase) params.set("database", this.info.database);
    if (insert && this.info.cluster) params.set("insert_distributed_sync", "1");
    if (data !== undefined) params.set("query", sql);
    const send = (): Promise<Response> =>
      fetch(`${this.#base}/?${params}`, { method: "POST", headers: this.#headers, body: (data ?? sql) as BodyInit, signal: AbortSignal.timeout(this.#timeoutMs) });
    let res: Response;
    try {
      try {
        res = await send();
      } catch (error) {
        // A kept-alive connection that ClickHouse closed meanwhile: a read is sent once more. An insert
        // is not (it may have landed, and its attempt's rows would be there twice): the client retries it.
        if (data !== undefined) throw error;
        res = await send();
      }
    } catch (error) {
      throw new StorageError(`Could not connect to ClickHouse at ${this.info.url}: ${error instanceof Error ? error.message : error}`, { cause: error });
    }
    const text = await res.text();
    if (res.ok) return text;
    const detail = text.trim().replace(/, e\.what\(\) = .*$/s, "").slice(0, 500);
    if (res.status === 401 || res.status === 403 || /Code: (192|193|516)\b/.test(text)) {
      throw new StorageError(
        `ClickHouse at ${this.info.url} refused the credentials${this.info.user !== undefined ? ` of user ${JSON.stringify(this.info.user)}` : ""}: ${detail}`,
        { status: 503 },
      );
    }
    throw new StorageError(`ClickHouse at ${this.info.url} answered ${res.status}: ${detail}`, { status: 503 });
  }
}

/** How far back a look for commits reaches behind the newest it saw, for servers whose clocks differ (µs). */
const CLOCK_MARGIN_US = 5_000_000;

interface ListRow {
  prefix: string;
  created: string;
  status: string;
  startedAt: string;
  endedAt: string;
  heartbeatAt: string;
  heartbeatInterval: string;
  tags: string;
  readme: string;
  createdAt: string;
}

/** The bucket (0 to buckets - 1) of a column's value, for x from lo to hi; non-finite x in bucket 0. */
function bucketOf(column: string, lo: number, hi: number, buckets: number): string {
  const span = Number.isFinite(hi - lo) && hi > lo ? hi - lo : 1;
  const from = Number.isFinite(lo) ? lo : 0;
  return `if(isFinite(${column}), least(${buckets - 1}, toUInt32(greatest(0, floor((${column} - ${num(from)}) / ${num(span)} * ${buckets})))), 0)`;
}

/**
 * The points of downsampled buckets, from rows of: bucket, real (non-NaN)
 * count, the lowest point (x, value, ord, line), the highest, and the first
 * (x, value) for a bucket of NaN only. A bucket's low and high go in x order,
 * once when they are the same point.
 */
function bucketPoints(picked: string[][]): { x: number[]; value: number[] } {
  const x: number[] = [];
  const value: number[] = [];
  for (const row of picked) {
    if (Number(row[1]) === 0) {
      x.push(toNumber(row[10]));
      value.push(toNumber(row[11]));
      continue;
    }
    const low = row.slice(2, 6).map(toNumber);
    const high = row.slice(6, 10).map(toNumber);
    if (low[0] === high[0] && Object.is(low[1], high[1]) && low[2] === high[2] && low[3] === high[3]) {
      x.push(low[0]);
      value.push(low[1]);
      continue;
    }
    const lowFirst = low[0] < high[0] || (low[0] === high[0] && (low[2] < high[2] || (low[2] === high[2] && low[3] <= high[3])));
    const [a, b] = lowFirst ? [low, high] : [high, low];
    x.push(a[0], b[0]);
    value.push(a[1], b[1]);
  }
  return { x, value };
}

/** Enum8 codes of the `kind` column. */
const KIND = { commit: 1, point: 2, log: 3, state: 4, file: 5 } as const;

/**
 * Rows of a batch per insert: a long batch goes in several, each encoded while
 * the one before is sent. Well under ClickHouse's `max_insert_block_size`
 * (1,048,576 rows), so that each insert is one block, stored whole.
 */
const ROWS_PER_INSERT = 131_072;

/**
 * The rows of a batch in RowBinary, in inserts of about {@linkcode ROWS_PER_INSERT}
 * rows, the commit row in the last; its series' tiles go to `tiles`.
 * A record that is not valid throws a ConfigError where it is met.
 */
function* batchRows(prefix: string, session: string, seq: number, attempt: number, ord: number, batch: Batch, tiles: TileWriter): Generator<{ rows: Uint8Array; last: boolean }> {
  const out = new SortedRows(prefix, session, seq, attempt, ord);
  const head = (kind: number, name: string, field: string): RowGroup => out.group(kind, name, field);
  const row = (group: RowGroup, line: number, step: number, ts: number, value: number, text: string): void => {
    out.row(group, line, step, ts, value, text);
  };
  let line = 0;
  const state = (name: string, patch: object | undefined, skip: string[] = []): void => {
    if (patch === undefined || patch === null) return;
    if (typeof patch !== "object" || Array.isArray(patch)) throw new ConfigError(`Invalid ${name}: expected an object`);
    for (const [field, value] of Object.entries(patch)) {
      if (skip.includes(field) || value === undefined) continue;
      row(head(KIND.state, name, field), line++, 0, 0, 0, JSON.stringify(value));
    }
  };
  state("metadata", batch.metadata, ["createdAt", "updatedAt"]);
  state("params", batch.params);
  if (batch.status) {
    state("status", batch.status);
    // A new session: what the last one left behind does not describe it.
    if (batch.status.status === "RUNNING") {
      for (const field of ["error", "host"]) if (!(field in batch.status)) row(head(KIND.state, "status", field), line++, 0, 0, 0, REMOVED);
    }
  }
  for (const [i, file] of (batch.files ?? []).entries()) {
    try {
      checkFilePath(file.path);
    } catch (error) {
      throw new ConfigError(`Invalid "files[${i}].path": ${error instanceof Error ? error.message : error}`);
    }
    row(head(KIND.file, file.path, file.mime), line++, 0, file._ts, file.data.byteLength, Buffer.from(file.data).toString("base64"));
  }
  const decoder = new TextDecoder();
  for (const metric in batch.metrics ?? {}) {
    checkMetricName(metric);
    const fieldHeads = new Map<string, RowGroup>();
    let record = 0;
    for (const chunk of batch.metrics![metric]) {
      const text = typeof chunk === "string" ? chunk : decoder.decode(chunk);
      for (const json of text.split("\n")) {
        if (json === "") continue;
        const r = parseRecord(json, `metric ${JSON.stringify(metric)}`);
        const step = toNumber(r.step);
        const ts = toNumber(r._ts);
        for (const field in r) {
          if (field === "_ts" || field === "step") continue;
          const value = r[field];
          const v = typeof value === "number" ? value : value === "NaN" || value === "Infinity" || value === "-Infinity" ? toNumber(value) : undefined;
          if (v === undefined) {
            throw new ConfigError(`Invalid metric value ${JSON.stringify(field)} in ${JSON.stringify(metric)}: expected a number or "NaN", "Infinity", "-Infinity"`);
          }
          let start = fieldHeads.get(field);
          if (start === undefined) fieldHeads.set(field, start = head(KIND.point, metric, field));
          row(start, record, step, ts, v, "");
          tiles.add(metric, field, record, step, ts, v);
        }
        record++;
        if (out.rows >= ROWS_PER_INSERT) yield { rows: out.take(), last: false };
      }
    }
    tiles.endMetric();
  }
  let log = 0;
  for (const chunk of batch.logs ?? []) {
    for (const json of chunk.split("\n")) {
      if (json === "") continue;
      const r = parseRecord(json, "log line");
      row(head(KIND.log, typeof r.level === "string" ? r.level : "info", ""), log++, 0, toNumber(r._ts), 0, json);
      if (out.rows >= ROWS_PER_INSERT) yield { rows: out.take(), last: false };
    }
  }
  const flags = (batch.metrics ? HAS_METRICS : 0) | (batch.logs ? HAS_LOGS : 0);
  row(head(KIND.commit, "", ""), 0, 0, 0, flags, batch.status?.status ?? "");
  yield { rows: out.take(), last: true };
}

/** The rows of one kind, name and field in a batch, and the encoded columns they share. */
interface RowGroup {
  kind: number;
  name: string;
  field: string;
  /** prefix … ord, the columns before `line`. */
  head: Uint8Array;
  out: RowBinaryWriter;
}

/**
 * A batch's rows kept per kind, name and field, and taken in the table's sort
 * order (each group's rows are in line order already), so that ClickHouse finds
 * each insert sorted and need not sort it. An insert is stored whole, in one
 * part, whatever the order of its rows: the commit row may come first in it.
 */
class SortedRows {
  /** Rows since the last take. */
  rows = 0;
  #groups = new Map<string, RowGroup>();
  #prefix: string;
  #session: string;
  #seq: number;
  #attempt: number;
  #ord: number;

  constructor(prefix: string, session: string, seq: number, attempt: number, ord: number) {
    this.#prefix = prefix;
    this.#session = session;
    this.#seq = seq;
    this.#attempt = attempt;
    this.#ord = ord;
  }

  group(kind: number, name: string, field: string): RowGroup {
    const key = `${kind}\0${name}\0${field}`;
    let group = this.#groups.get(key);
    if (group === undefined) {
      const head = new RowBinaryWriter(64).string(this.#prefix).int8(kind).string(name).string(field).string(this.#session)
        .uint64(this.#seq).uint64(this.#attempt).uint64(this.#ord).bytes().slice();
      group = { kind, name, field, head, out: new RowBinaryWriter(1024) };
      this.#groups.set(key, group);
    }
    return group;
  }

  row(group: RowGroup, line: number, step: number, ts: number, value: number, text: string): void {
    const out = group.out.raw(group.head).uint32(line).float64(step).float64(ts).float64(value);
    if (text === "") out.int8(0);
    else out.string(text);
    this.rows++;
  }

  /** The rows since the last take, sorted by kind, name and field. */
  take(): Uint8Array {
    const groups = [...this.#groups.values()].filter((g) => g.out.bytes().length > 0);
    groups.sort((a, b) => a.kind - b.kind || compareBytes(a.name, b.name) || compareBytes(a.field, b.field));
    const size = groups.reduce((sum, g) => sum + g.out.bytes().length, 0);
    const all = new Uint8Array(size);
    let at = 0;
    for (const g of groups) {
      all.set(g.out.bytes(), at);
      at += g.out.bytes().length;
      g.out = new RowBinaryWriter(1024);
    }
    this.rows = 0;
    return all;
  }
}

/** Strings in the order of their UTF-8 bytes, as ClickHouse sorts them (JavaScript's `<` compares UTF-16 units). */
function compareBytes(a: string, b: string): number {
  if (a === b) return 0;
  const [x, y] = [encoder.encode(a), encoder.encode(b)];
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

const encoder = new TextEncoder();

/**
 * The tiles of a batch's series: each key's points cut by record index into
 * runs of {@linkcode TILE_RECORDS}, each run kept as one row of
 * {@linkcode TILE_COLUMNS} (the same as the migration to schema 2 computes in SQL).
 */
class TileWriter {
  #out = new RowBinaryWriter();
  #prefix: string;
  #attempt: number;
  #ord: number;
  #open = new Map<string, Tile>();
  #metric = "";

  constructor(prefix: string, attempt: number, ord: number) {
    this.#prefix = prefix;
    this.#attempt = attempt;
    this.#ord = ord;
  }

  add(metric: string, field: string, record: number, step: number, ts: number, value: number): void {
    this.#metric = metric;
    const index = Math.floor(record / TILE_RECORDS);
    let tile = this.#open.get(field);
    if (tile !== undefined && tile.index !== index) {
      this.#write(field, tile);
      tile = undefined;
    }
    if (tile === undefined) {
      tile = newTile(index, record, step, ts, value);
      this.#open.set(field, tile);
    }
    addToTile(tile, step, ts, value);
  }

  endMetric(): void {
    for (const [field, tile] of this.#open) this.#write(field, tile);
    this.#open.clear();
  }

  bytes(): Uint8Array | undefined {
    const bytes = this.#out.bytes();
    return bytes.length > 0 ? bytes : undefined;
  }

  #write(field: string, t: Tile): void {
    this.#out.repeated(this.#prefix).repeated(this.#metric).repeated(field).uint64(this.#attempt).uint64(this.#ord).uint32(t.line)
      .uint32(t.n).uint32(t.real).uint32(t.finite)
      .float64(t.firstStep).float64(t.firstTs).float64(t.firstValue)
      .float64(t.loStep).float64(t.loTs).float64(t.loValue)
      .float64(t.hiStep).float64(t.hiTs).float64(t.hiValue)
      .float64(t.finite > 0 ? t.minValue : 0).float64(t.finite > 0 ? t.maxValue : 0)
      .float64(t.lastStep).float64(t.lastValue);
  }
}

interface Tile {
  index: number;
  line: number;
  n: number;
  real: number;
  finite: number;
  firstStep: number;
  firstTs: number;
  firstValue: number;
  loStep: number;
  loTs: number;
  loValue: number;
  hiStep: number;
  hiTs: number;
  hiValue: number;
  minValue: number;
  maxValue: number;
  lastStep: number;
  lastValue: number;
}

function newTile(index: number, line: number, step: number, ts: number, value: number): Tile {
  return {
    index, line, n: 0, real: 0, finite: 0,
    firstStep: step, firstTs: ts, firstValue: value,
    loStep: 0, loTs: 0, loValue: NaN, hiStep: 0, hiTs: 0, hiValue: NaN,
    minValue: Infinity, maxValue: -Infinity, lastStep: step, lastValue: value,
  };
}

/** Adds a point; of equal values the first one is the tile's low or high. */
function addToTile(t: Tile, step: number, ts: number, value: number): void {
  t.n++;
  t.lastStep = step;
  t.lastValue = value;
  if (Number.isNaN(value)) return;
  if (t.real === 0 || value < t.loValue) {
    t.loStep = step;
    t.loTs = ts;
    t.loValue = value;
  }
  if (t.real === 0 || value > t.hiValue) {
    t.hiStep = step;
    t.hiTs = ts;
    t.hiValue = value;
  }
  t.real++;
  if (Number.isFinite(value)) {
    t.finite++;
    if (value < t.minValue) t.minValue = value;
    if (value > t.maxValue) t.maxValue = value;
  }
}

function parseRecord(json: string, what: string): Record<string, unknown> {
  let record: unknown;
  try {
    record = JSON.parse(json);
  } catch (error) {
    throw new ConfigError(`Malformed ${what}: ${error instanceof Error ? error.message : error}`);
  }
  if (record === null || typeof record !== "object" || Array.isArray(record)) throw new ConfigError(`Invalid ${what}: expected a JSON object`);
  return record as Record<string, unknown>;
}

function checkStoredPrefix(prefix: string): void {
  try {
    checkPrefix(prefix);
  } catch (error) {
    throw asRequestError(error);
  }
}

/** A batch refused before anything was sent: the request's fault (400). */
function asRequestError(error: unknown): unknown {
  if (error instanceof ConfigError) return new StorageError(error.message, { status: 400 });
  return error;
}

/** A random id of 53 bits: attempts never share one. */
function randomId(): number {
  const words = crypto.getRandomValues(new Uint32Array(2));
  return (words[0] & 0x1fffff) * 2 ** 32 + words[1];
}

function toNumber(value: unknown): number {
  if (typeof value === "number") return value;
  switch (value) {
    case "NaN":
    case "nan":
    case "-nan":
      return NaN;
    case "Infinity":
    case "inf":
    case "+inf":
      return Infinity;
    case "-Infinity":
    case "-inf":
      return -Infinity;
  }
  return value === undefined || value === null ? NaN : Number(value);
}

/** A number as an SQL literal (finite: the read API checks ranges). */
function num(n: number): string {
  if (!Number.isFinite(n)) return n > 0 ? "inf" : n < 0 ? "-inf" : "nan";
  return `toFloat64(${String(n)})`;
}

/** An integer as an SQL literal. */
function int(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new StorageError(`Invalid integer ${n}: expected 0 to 2^53 - 1`, { status: 400 });
  return String(n);
}

/** A string as an SQL literal. */
function str(s: string): string {
  return `'${escape(s, "'")}'`;
}

function escape(s: string, quote: string): string {
  let out = "";
  for (const c of s) {
    if (c === "\\") out += "\\\\";
    else if (c === "\t") out += "\\t";
    else if (c === "\n") out += "\\n";
    else if (c === "\r") out += "\\r";
    else if (c === "\0") out += "\\0";
    else if (quote !== "" && c === quote) out += `\\${c}`;
    else out += c;
  }
  return out;
}

function unescapeTsv(cell: string): string {
  if (!cell.includes("\\")) return cell;
  return cell.replace(/\\(.)/g, (_, c: string) => ({ t: "\t", n: "\n", r: "\r", "0": "\0", b: "\b", f: "\f" } as Record<string, string>)[c] ?? c);
}
