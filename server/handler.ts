/**
 * The server's fetch handler, `(req: Request) => Promise<Response>`: it routes,
 * checks hosts, origins and tokens, reads bodies within their limits, decodes
 * the protocol and answers over a {@linkcode Store}. It knows nothing of files.
 *
 * @example Answer a request without a network
 * ```ts ignore
 * import { createHandler } from "./handler.ts";
 *
 * const handler = createHandler({ root: ".dash" });
 * const res = await handler(new Request("http://x/api/v1/experiments"));
 * console.log(await res.json()); // { experiments: [...], total: n }
 * await handler.close();
 * ```
 *
 * @module
 */
import { ConfigError, StorageError } from "../storage/errors.ts";
import { decodeOpenRequest, decodeRequest, ProtocolError } from "../storage/protocol.ts";
import { errorJson, HttpError, json } from "./answers.ts";
import { authorize } from "./auth.ts";
import { BodyBudget, readBodyBytes } from "./body.ts";
import { EventHub } from "./events.ts";
import { RequestGuard } from "./guard.ts";
import { JsonlStore } from "./jsonl_store.ts";
import { answerMlflow, isMlflowPath, isMlflowWrite } from "./mlflow.ts";
import { getExperiment, getFile, getLogs, getSeries, listExperiments } from "./read_api.ts";
import { editRun, listRuns } from "./runs_api.ts";
import { serveStatic } from "./static.ts";
import type { Store } from "./store.ts";

/**
 * A fault the handler injects instead of answering normally, for tests of
 * client retries: the next `times` matching requests get `status`.
 */
export interface Fault {
  /** The HTTP status to answer with, e.g. 500 or 429. */
  status: number;
  /** How many requests get it (default 1). */
  times?: number;
  /** Seconds sent in a `Retry-After` header. */
  retryAfter?: number;
  /** Store the batch first, then answer with the fault (a lost acknowledgement). */
  afterStore?: boolean;
  /** The path it applies to (default `/api/v1/batch`). */
  path?: string;
}

/** Options of {@linkcode createHandler}. */
export interface HandlerOptions {
  /** The directory that holds the experiments (the `.dash` layout): a {@linkcode JsonlStore} over it. Give this or `store`. */
  root?: string;
  /** Where experiments are kept (default: a JSONL store over `root`). The handler closes it. */
  store?: Store;
  /** Bearer token required for writes (and reads, unless `readToken` is set). Unset: no auth for writes. */
  token?: string;
  /** Bearer token that allows reads; when set, reads need it or `token`. Unset: reads are open. */
  readToken?: string;
  /** Largest request body accepted, in bytes, after decompression (default 64 MiB). */
  maxBodyBytes?: number;
  /** Bytes that the bodies of concurrent requests may hold together; more get 503 (default 128 MiB). */
  maxConcurrentBodyBytes?: number;
  /** Mebibytes of memory that cached series and summaries may take (default 256; with `root`). */
  cacheMb?: number;
  /** The most runs one answer of `GET /api/v1/runs` holds (default 10,000; clients read page after page). */
  maxRunsPage?: number;
  /** Faults to inject, consumed in order (tests of retries). */
  faults?: Fault[];
  /** The dashboard folder (default: `dashboard/` found next to this module or above it). */
  dashboardDir?: string;
  /** Seconds between looks at the root while event-stream clients are connected (default 1; with `root`). */
  pollInterval?: number;
  /** Receives one line per failed request (never a token). Default: nothing. */
  log?: (line: string) => void;
  /**
   * The host names (without port) that requests may name in their `Host` header,
   * against DNS rebinding; others get 421. Unset: any. `serve()` sets
   * the loopback names when it binds a loopback address.
   */
  allowedHosts?: string[];
  /**
   * Browser origins (`https://app.example`) that may read and write across
   * origins (CORS). Needs `token`: a page of an allowed origin must still present it.
   */
  corsOrigins?: string[];
}

/** Counters kept by a handler. */
export interface HandlerStats {
  /** Batches stored. */
  batches: number;
  /** Batches acknowledged as already stored. */
  duplicates: number;
  /** Batches that arrived gzip-compressed. */
  gzipBatches: number;
  /** Faults injected so far. */
  faultsInjected: number;
}

/** The handler returned by {@linkcode createHandler}: a fetch handler with counters and a `close()`. */
export interface DashHandler {
  /** Answers one request. */
  (req: Request): Promise<Response>;
  /** Counters, for tests and monitoring. */
  readonly stats: HandlerStats;
  /** Ends event streams, stops timers and closes files. */
  close(): Promise<void>;
}

/** The largest request body by default, in bytes. */
export const DEFAULT_MAX_BODY: number = 64 * 1024 * 1024;
const DEFAULT_CONCURRENT_BODIES = 128 * 1024 * 1024;

/** The routes of the API, each `METHOD path`. */
const API_PATHS = ["/api/v1/batch", "/api/v1/open", "/api/v1/experiments", "/api/v1/experiment", "/api/v1/runs", "/api/v1/meta", "/api/v1/series", "/api/v1/logs", "/api/v1/file", "/api/v1/events"];

/**
 * Creates the server's fetch handler: ingest (`POST /api/v1/batch`,
 * `POST /api/v1/open`), the read API (`GET /api/v1/...`), server-sent events
 * (`GET /api/v1/events`) and the dashboard (`GET /`, `GET /dashboard/*`).
 *
 * @param options The store (or root), tokens, limits and faults to inject.
 * @returns The handler, with `stats` and `close()`.
 * @throws {ConfigError} Without a store or root, or for CORS origins without a token.
 *
 * @example Answer a request without a server
 * ```ts
 * import { createHandler } from "./handler.ts";
 * import { JsonlStore } from "./jsonl_store.ts";
 *
 * const handler = createHandler({ store: new JsonlStore(await Deno.makeTempDir()) });
 * const res = await handler(new Request("http://localhost/api/v1/experiments"));
 * console.log(res.status, await res.json()); // 200 { experiments: [], total: 0 }
 * await handler.close();
 * ```
 */
export function createHandler(options: HandlerOptions): DashHandler {
  const store = openStore(options);
  if (options.corsOrigins?.length && options.token === undefined) {
    throw new ConfigError(`Refusing to allow the origins ${options.corsOrigins.join(", ")} without a token: any page of theirs could write; pass a token (--token)`);
  }
  const guard = newGuard(options);
  const maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const bodies = new BodyBudget(options.maxConcurrentBodyBytes ?? DEFAULT_CONCURRENT_BODIES);
  const log = options.log ?? (() => {});
  const hub = new EventHub(store);
  const faults = (options.faults ?? []).map((f) => ({ ...f, left: f.times ?? 1 }));
  const stats: HandlerStats = { batches: 0, duplicates: 0, gzipBatches: 0, faultsInjected: 0 };

  const takeFault = (pathname: string): (Fault & { left: number }) | undefined => {
    const fault = faults.find((f) => f.left > 0 && (f.path ?? "/api/v1/batch") === pathname);
    if (fault) {
      fault.left--;
      stats.faultsInjected++;
    }
    return fault;
  };

  const ingest = async (req: Request): Promise<Response> => {
    const fault = takeFault("/api/v1/batch");
    if (fault && !fault.afterStore) return faultResponse(fault);
    const body = await readBodyBytes(req, maxBody, bodies);
    try {
      if (req.headers.get("content-encoding")?.toLowerCase() === "gzip") stats.gzipBatches++;
      const request = decodeRequest(body, /ndjson/i.test(req.headers.get("content-type") ?? ""));
      // The envelope is checked first: a duplicate is acknowledged without reading its records.
      let duplicate = await store.has(request);
      if (!duplicate) ({ duplicate } = await store.ingest(request, request.batch()));
      if (duplicate) stats.duplicates++;
      else stats.batches++;
      if (fault) return faultResponse(fault);
      return json({ ok: true, duplicate });
    } finally {
      bodies.give(body.byteLength);
    }
  };

  const open = async (req: Request): Promise<Response> => {
    const fault = takeFault("/api/v1/open");
    if (fault) return faultResponse(fault);
    const bytes = await readBodyBytes(req, maxBody, bodies);
    bodies.give(bytes.byteLength);
    const { prefix, sessions } = decodeOpenRequest(bytes);
    return json(await store.open(prefix, sessions));
  };

  const edit = async (req: Request): Promise<Response> => {
    const bytes = await readBodyBytes(req, maxBody, bodies);
    try {
      return await editRun(store, bytes);
    } finally {
      bodies.give(bytes.byteLength);
    }
  };

  const route = async (req: Request, url: URL, write: boolean): Promise<Response> => {
    if (!url.pathname.startsWith("/api/")) {
      if (req.method === "GET" || req.method === "HEAD") return serveStatic(url.pathname, options.dashboardDir);
      return errorJson(405, `Method ${req.method} is not allowed on ${url.pathname}`);
    }
    const mlflow = isMlflowPath(url.pathname);
    const denied = authorize(req, url, mlflow ? isMlflowWrite(req.method, url.pathname) : write, options);
    if (denied) return denied;
    if (mlflow) return await answerMlflow(store, req, url, { maxBody, bodies });
    switch (`${req.method} ${url.pathname}`) {
      case "POST /api/v1/batch":
        return await ingest(req);
      case "POST /api/v1/open":
        return await open(req);
      case "GET /api/v1/experiments":
        return await listExperiments(store, url);
      case "GET /api/v1/experiment":
        return await getExperiment(store, url);
      case "GET /api/v1/runs":
        return await listRuns(store, url, options.maxRunsPage);
      case "POST /api/v1/meta":
        return await edit(req);
      case "GET /api/v1/series":
        return await getSeries(store, url);
      case "GET /api/v1/logs":
        return await getLogs(store, url);
      case "GET /api/v1/file":
        return await getFile(store, url);
      case "GET /api/v1/events":
        return hub.subscribe();
    }
    if (API_PATHS.includes(url.pathname)) return errorJson(405, `Method ${req.method} is not allowed on ${url.pathname}`);
    return errorJson(404, `Unknown API path ${url.pathname}`);
  };

  const answer = async (req: Request, url: URL, write: boolean): Promise<Response> => {
    const name = `${req.method} ${url.pathname}`;
    try {
      return await route(req, url, write);
    } catch (error) {
      const status = statusOf(error);
      const message = error instanceof Error ? error.message : String(error);
      log(`${name} → ${status}: ${message}`);
      return errorJson(status, status === 500 ? `Internal error: ${message}` : message);
    }
  };

  const handler = async (req: Request): Promise<Response> => {
    let url: URL;
    try {
      url = new URL(req.url);
    } catch {
      return errorJson(400, `Malformed request URL ${JSON.stringify(req.url.slice(0, 200))}`);
    }
    const write = url.pathname.startsWith("/api/") && (req.method === "POST" || req.method === "PUT");
    const refused = guard.check(req, write);
    if (refused) {
      log(`${req.method} ${url.pathname} → ${refused.status}: refused (host ${JSON.stringify(req.headers.get("host"))}, origin ${JSON.stringify(req.headers.get("origin"))})`);
      return refused;
    }
    if (req.method === "OPTIONS" && req.headers.has("access-control-request-method")) return guard.preflight(req);
    return guard.withCors(req, await answer(req, url, write));
  };

  return Object.assign(handler, {
    stats,
    close: async (): Promise<void> => {
      hub.close();
      await store.close();
    },
  });
}

function openStore(options: HandlerOptions): Store {
  if (options?.store) return options.store;
  if (typeof options?.root !== "string" || options.root === "") {
    throw new ConfigError(`Invalid root ${JSON.stringify(options?.root)}: expected a directory path (or a store)`);
  }
  return new JsonlStore(options.root, { cacheMb: options.cacheMb, pollInterval: (options.pollInterval ?? 1) * 1000 });
}

function newGuard(options: HandlerOptions): RequestGuard {
  try {
    return new RequestGuard({ allowedHosts: options.allowedHosts, corsOrigins: options.corsOrigins });
  } catch (error) {
    throw new ConfigError(error instanceof Error ? error.message : String(error));
  }
}

/** The status to answer an error with: the request's fault is a 4xx, anything else 500. */
function statusOf(error: unknown): number {
  if (error instanceof HttpError || error instanceof ProtocolError) return error.status;
  if (error instanceof ConfigError) return 400;
  if (error instanceof StorageError && error.status !== undefined) return error.status;
  return 500;
}

function faultResponse(fault: Fault): Response {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (fault.retryAfter !== undefined) headers["retry-after"] = String(fault.retryAfter);
  return new Response(JSON.stringify({ error: `Injected fault: status ${fault.status}` }), { status: fault.status, headers });
}
