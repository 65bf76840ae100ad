/**
 * The ml-dash server: a Web-standard fetch handler (`(req: Request) =>
 * Promise<Response>`) that ingests batches from `storage/http.ts` clients, stores
 * them through `storage/jsonl.ts` (a remote experiment has the same layout on
 * the server's disk as a local one), and serves a read API, server-sent events
 * and the dashboard. {@linkcode serve} runs the handler on Deno, Bun or Node
 * through a small adapter per runtime.
 *
 * @example Serve `.dash/` on 127.0.0.1:8787
 * ```ts ignore
 * import { serve } from "./server.ts";
 *
 * const server = await serve({ root: ".dash", port: 8787 });
 * console.log(server.url);
 * await server.close();
 * ```
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { checkPrefix } from "./storage/backend.ts";
import type { Batch, ExperimentRecord, FileUpload, LogRecord, MetricRecord } from "./storage/backend.ts";
import { ConfigError } from "./storage/errors.ts";
import { DashReader, JsonlBackend, OutsideRootError } from "./storage/jsonl.ts";
import type { ExperimentSummary, KeySummary } from "./storage/jsonl.ts";
import { minMaxDownsample } from "./storage/downsample.ts";
import { processId } from "./storage/runtime.ts";
import { RequestGuard } from "./server/guard.ts";
import { EventHub } from "./server/events.ts";
import { pickAdapter } from "./server/adapters.ts";
import type { ConnectionLimits, Listener } from "./server/adapters.ts";

// ─── Options and types ──────────────────────────────────────────────────────

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
  /** The directory that holds the experiments (the `.dash` layout). */
  root: string;
  /** Bearer token required for writes (and reads, unless `readToken` is set). Unset: no auth for writes. */
  token?: string;
  /** Bearer token that allows reads; when set, reads need it or `token`. Unset: reads are open. */
  readToken?: string;
  /** Largest request body accepted, in bytes, after decompression (default 64 MiB). */
  maxBodyBytes?: number;
  /** Bytes that the bodies of concurrent requests may hold together; more get 503 (default 128 MiB). */
  maxConcurrentBodyBytes?: number;
  /** Mebibytes of memory that cached series and summaries may take (default 256). */
  cacheMb?: number;
  /** Faults to inject, consumed in order (tests of retries). */
  faults?: Fault[];
  /** The dashboard folder (default: `dashboard/` found next to this module or above it). */
  dashboardDir?: string;
  /** Seconds between scans of the root while event-stream clients are connected (default 1). */
  pollInterval?: number;
  /** Receives one line per failed request (never a token). Default: nothing. */
  log?: (line: string) => void;
  /**
   * The host names (without port) that requests may name in their `Host` header,
   * against DNS rebinding; others get 421. Unset: any. {@linkcode serve} sets
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

/**
 * A batch as it travels over HTTP: like {@linkcode Batch}, but file contents
 * are base64 strings, and an item of `metrics[name]` or `logs` is either a
 * record object or JSON text holding one or more records separated by "\n".
 */
export interface WireBatch extends Omit<Batch, "files" | "metrics" | "logs"> {
  /** Metric records by metric name: record objects or JSON text, one record a line. */
  metrics?: Record<string, (string | MetricRecord)[]>;
  /** Log records: record objects or JSON text, one record a line. */
  logs?: (string | LogRecord)[];
  /** Files, with `data` as base64. */
  files?: (Omit<FileUpload, "data"> & { data: string })[];
}

/** The body of `POST /api/v1/batch`. */
export interface BatchEnvelope {
  /** The experiment's prefix. */
  prefix: string;
  /** The sender's session id: `[A-Za-z0-9._:-]`, 1 to 200 characters. */
  session: string;
  /** The batch's sequence number in its session: an integer from 0 to 2^53 - 1. */
  seq: number;
  /** The records and state patches. */
  batch: WireBatch;
}

// ─── The handler ────────────────────────────────────────────────────────────

const DEFAULT_MAX_BODY = 64 * 1024 * 1024;
const DEFAULT_CONCURRENT_BODIES = 128 * 1024 * 1024;
const DEFAULT_CACHE_MB = 256;
const BATCH_FIELDS = ["metadata", "status", "params", "metrics", "logs", "files"];
const STATUSES: readonly string[] = ["RUNNING", "COMPLETED", "FAILED", "CANCELLED"];

/**
 * Creates the server's fetch handler: ingest (`POST /api/v1/batch`,
 * `POST /api/v1/open`), the read API (`GET /api/v1/...`), server-sent events
 * (`GET /api/v1/events`) and the dashboard (`GET /`, `GET /dashboard/*`).
 *
 * @param options The root directory, tokens, limits and faults to inject.
 * @returns The handler, with `stats` and `close()`.
 *
 * @example Answer a request without a network
 * ```ts ignore
 * import { createHandler } from "./server.ts";
 *
 * const handler = createHandler({ root: ".dash" });
 * const res = await handler(new Request("http://x/api/v1/experiments"));
 * console.log(await res.json()); // { experiments: [...], total: n }
 * await handler.close();
 * ```
 */
export function createHandler(options: HandlerOptions): DashHandler {
  if (typeof options?.root !== "string" || options.root === "") {
    throw new ConfigError(`Invalid root ${JSON.stringify(options?.root)}: expected a directory path`);
  }
  const root = options.root;
  if (options.corsOrigins?.length && options.token === undefined) {
    throw new ConfigError(`Refusing to allow the origins ${options.corsOrigins.join(", ")} without a token: any page of theirs could write; pass a token (--token)`);
  }
  const guard = newGuard(options);
  const maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const bodies = new BodyBudget(options.maxConcurrentBodyBytes ?? DEFAULT_CONCURRENT_BODIES);
  const log = options.log ?? (() => {});
  const backend = new JsonlBackend(root);
  const reader = new DashReader(root, { cacheBytes: (options.cacheMb ?? DEFAULT_CACHE_MB) * 2 ** 20 });
  const ledger = new SessionLedger(root, (dir) => backend.checkInside(dir));
  const hub = new EventHub(root, reader, (options.pollInterval ?? 1) * 1000);
  const faults = (options.faults ?? []).map((f) => ({ ...f, left: f.times ?? 1 }));
  const stats: HandlerStats = { batches: 0, duplicates: 0, gzipBatches: 0, faultsInjected: 0 };
  let idleClose: ReturnType<typeof setTimeout> | undefined;

  const takeFault = (pathname: string): (Fault & { left: number }) | undefined => {
    const fault = faults.find((f) => f.left > 0 && (f.path ?? "/api/v1/batch") === pathname);
    if (fault) {
      fault.left--;
      stats.faultsInjected++;
    }
    return fault;
  };

  // Appended files stay open while batches arrive; two idle seconds close (and fsync) them.
  const closeFilesWhenIdle = (): void => {
    if (idleClose !== undefined) clearTimeout(idleClose);
    idleClose = setTimeout(() => {
      idleClose = undefined;
      backend.close().catch((e) => log(`closing files failed: ${e}`));
    }, 2000);
    unref(idleClose);
  };

  const ingest = async (req: Request): Promise<Response> => {
    const fault = takeFault("/api/v1/batch");
    if (fault && !fault.afterStore) return faultResponse(fault);
    const body = await readBodyBytes(req, maxBody, bodies);
    try {
      return store(req, body, fault);
    } finally {
      bodies.give(body.byteLength);
    }
  };

  const store = (req: Request, body: Uint8Array, fault: (Fault & { left: number }) | undefined): Response => {
    if (req.headers.get("content-encoding")?.toLowerCase() === "gzip") stats.gzipBatches++;
    const ndjson = /ndjson/i.test(req.headers.get("content-type") ?? "");
    // The header is checked first: a duplicate is acknowledged without reading its records.
    const { head, rest } = ndjson ? splitNdjson(body) : { head: parseJson(utf8(body)), rest: body.subarray(body.length) };
    const envelope = parseEnvelope(head, ndjson);
    const { prefix, session, seq } = envelope;
    // From here to the end the work is synchronous: no other request interleaves.
    const duplicate = ledger.has(prefix, session, seq);
    if (!duplicate) {
      const batch = decodeBatch(envelope.batch, prefix);
      if (ndjson) addSections(batch, envelope.sections!, rest);
      const isNew = !hub.knows(prefix) && !fs.existsSync(path.join(root, ...prefix.split("/"), "experiment.json"));
      // Every stored prefix gets an experiment.json, which is what makes it an experiment for readers.
      if (isNew && !batch.metadata) batch.metadata = { prefix };
      // Applying a batch is made all-or-nothing by the ledger: see SessionLedger.begin.
      try {
        ledger.begin(prefix, appendedFiles(batch));
        try {
          backend.writeSync(prefix, batch);
        } catch (error) {
          ledger.rollBack(prefix);
          throw error;
        }
        ledger.add(prefix, session, seq);
      } catch (error) {
        throw notStored(error);
      }
      stats.batches++;
      closeFilesWhenIdle();
      hub.ingested(prefix, batch, isNew);
    } else {
      stats.duplicates++;
    }
    if (fault) return faultResponse(fault);
    return json({ ok: true, duplicate });
  };

  const open = async (req: Request): Promise<Response> => {
    const fault = takeFault("/api/v1/open");
    if (fault) return faultResponse(fault);
    const bytes = await readBodyBytes(req, maxBody, bodies);
    bodies.give(bytes.byteLength);
    const body = parseJson(utf8(bytes));
    if (!isObject(body)) throw new BadRequest(`Invalid body: expected an object {"prefix": string}`);
    const prefix = checkedPrefix(body.prefix, "prefix");
    ledger.recover(prefix);
    const sessions = body.sessions;
    if (sessions !== undefined && !(Array.isArray(sessions) && sessions.every((s) => typeof s === "string"))) {
      throw new BadRequest(`Invalid "sessions": expected an array of session ids`);
    }
    const result: Record<string, unknown> = {
      params: await reader.params(prefix),
      files: await reader.files(prefix),
      steps: await reader.lastSteps(prefix),
    };
    if (sessions) result.sessions = Object.fromEntries(sessions.map((s) => [s, ledger.maxSeq(prefix, s) ?? null]));
    return json(result);
  };

  const handler = async (req: Request): Promise<Response> => {
    let url: URL;
    try {
      url = new URL(req.url);
    } catch {
      return errorJson(400, `Malformed request URL ${JSON.stringify(req.url.slice(0, 200))}`);
    }
    const route = `${req.method} ${url.pathname}`;
    const api = url.pathname.startsWith("/api/");
    const write = api && (req.method === "POST" || req.method === "PUT");
    const refused = guard.check(req, write);
    if (refused) {
      log(`${route} → ${refused.status}: refused (host ${JSON.stringify(req.headers.get("host"))}, origin ${JSON.stringify(req.headers.get("origin"))})`);
      return refused;
    }
    if (req.method === "OPTIONS" && req.headers.has("access-control-request-method")) return guard.preflight(req);
    return guard.withCors(req, await answer(req, url, route, write));
  };

  const answer = async (req: Request, url: URL, route: string, write: boolean): Promise<Response> => {
    try {
      if (url.pathname.startsWith("/api/")) {
        const denied = authorize(req, url, write, options);
        if (denied) return denied;
        // A read of one experiment first undoes a batch that a crash cut short (the list takes any prefix filter).
        const readPrefix = url.searchParams.get("prefix");
        if (!write && readPrefix && url.pathname !== "/api/v1/experiments") ledger.recover(checkedPrefix(readPrefix, "prefix"));
        switch (route) {
          case "POST /api/v1/batch":
            return await ingest(req);
          case "POST /api/v1/open":
            return await open(req);
          case "GET /api/v1/experiments":
            return await listExperiments(reader, url);
          case "GET /api/v1/experiment":
            return await getExperiment(reader, url);
          case "GET /api/v1/series":
            return await getSeries(reader, url);
          case "GET /api/v1/logs":
            return await getLogs(reader, url);
          case "GET /api/v1/file":
            return await getFile(reader, root, url);
          case "GET /api/v1/events":
            return hub.subscribe();
        }
        const known = ["/api/v1/batch", "/api/v1/open", "/api/v1/experiments", "/api/v1/experiment", "/api/v1/series", "/api/v1/logs", "/api/v1/file", "/api/v1/events"];
        if (known.includes(url.pathname)) return errorJson(405, `Method ${req.method} is not allowed on ${url.pathname}`);
        return errorJson(404, `Unknown API path ${url.pathname}`);
      }
      if (req.method === "GET" || req.method === "HEAD") return serveStatic(url.pathname, options.dashboardDir);
      return errorJson(405, `Method ${req.method} is not allowed on ${url.pathname}`);
    } catch (error) {
      if (error instanceof HttpError) {
        log(`${route} → ${error.status}: ${error.message}`);
        return errorJson(error.status, error.message);
      }
      if (error instanceof ConfigError) {
        log(`${route} → 400: ${error.message}`);
        return errorJson(400, error.message);
      }
      const message = error instanceof Error ? error.message : String(error);
      log(`${route} → 500: ${message}`);
      return errorJson(500, `Internal error: ${message}`);
    }
  };

  return Object.assign(handler, {
    stats,
    close: async (): Promise<void> => {
      if (idleClose !== undefined) clearTimeout(idleClose);
      hub.close();
      await backend.close();
    },
  });
}

// ─── Auth ───────────────────────────────────────────────────────────────────

function newGuard(options: HandlerOptions): RequestGuard {
  try {
    return new RequestGuard({ allowedHosts: options.allowedHosts, corsOrigins: options.corsOrigins });
  } catch (error) {
    throw new ConfigError(error instanceof Error ? error.message : String(error));
  }
}

/** Returns a 401 response when the request lacks the token it needs, else undefined. */
function authorize(req: Request, url: URL, write: boolean, options: HandlerOptions): Response | undefined {
  const { token, readToken } = options;
  const header = req.headers.get("authorization") ?? "";
  const match = /^Bearer\s+(.+)$/i.exec(header.trim());
  // Browsers cannot set headers on EventSource or <img>: reads also accept ?access_token=.
  const given = match?.[1] ?? (write ? undefined : url.searchParams.get("access_token") ?? undefined);
  if (write) {
    if (token === undefined || (given !== undefined && safeEqual(given, token))) return undefined;
  } else {
    if (readToken === undefined) return undefined;
    if (given !== undefined && (safeEqual(given, readToken) || (token !== undefined && safeEqual(given, token)))) return undefined;
  }
  const what = write ? "writes" : "reads";
  const message = given === undefined
    ? `Missing token: ${what} need an Authorization: Bearer <token> header`
    : `Invalid token: the token given is not accepted for ${what}`;
  return new Response(JSON.stringify({ error: message }), {
    status: 401,
    headers: { "content-type": "application/json", "www-authenticate": 'Bearer realm="ml-dash"' },
  });
}

/** Compares two strings in time that depends only on their lengths, not on where they differ. */
function safeEqual(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  const n = Math.max(x.length, y.length);
  let diff = x.length ^ y.length;
  for (let i = 0; i < n; i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

// ─── Ingest: body, validation, idempotency ──────────────────────────────────

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

class BadRequest extends HttpError {
  constructor(message: string) {
    super(400, message);
  }
}

/**
 * The bytes that request bodies being read or stored may hold together. A body
 * takes its share as it arrives and gives it back when handled; a body that
 * does not fit while others hold the budget gets 503, which clients retry
 * later. One body is always let in, so a body of the largest size still passes.
 */
class BodyBudget {
  #limit: number;
  #held = 0;

  constructor(limit: number) {
    this.#limit = limit;
  }

  take(bytes: number): void {
    if (this.#held > 0 && this.#held + bytes > this.#limit) {
      throw new HttpError(503, `Busy: request bodies being handled hold ${this.#held} of the ${this.#limit} bytes allowed; retry later`);
    }
    this.#held += bytes;
  }

  give(bytes: number): void {
    this.#held -= bytes;
  }
}

/** Reads a body of at most `limit` bytes (after gzip decompression), taking its size from the budget; the caller gives it back. */
async function readBodyBytes(req: Request, limit: number, budget: BodyBudget): Promise<Uint8Array> {
  const length = req.headers.get("content-length");
  const declared = length === null ? NaN : Number(length);
  if (declared > limit) throw tooLarge(limit);
  if (Number.isFinite(declared)) budget.take(declared);
  let taken = Number.isFinite(declared) ? declared : 0;
  try {
    const body = await readBodyWithin(req, limit, declared, (bytes) => {
      budget.take(bytes);
      taken += bytes;
    });
    // The budget holds the body's own size from here (a gzip body's is its decompressed size).
    budget.give(taken - body.byteLength);
    return body;
  } catch (error) {
    budget.give(taken);
    throw error;
  }
}

async function readBodyWithin(req: Request, limit: number, declared: number, onChunk: (bytes: number) => void): Promise<Uint8Array> {
  const encoding = req.headers.get("content-encoding")?.toLowerCase();
  if (encoding && encoding !== "gzip" && encoding !== "identity") {
    throw new HttpError(415, `Unsupported Content-Encoding "${encoding}": expected gzip or none`);
  }
  let stream = req.body;
  if (!stream) throw new BadRequest("Missing body: expected JSON");
  // The length is known and within the limit: read straight into a buffer of that size
  // (on Deno several times faster than req.arrayBuffer(), which grows its buffer as it reads).
  if (encoding !== "gzip" && Number.isFinite(declared)) return readDeclared(stream, declared);
  if (encoding === "gzip") stream = stream.pipeThrough(new DecompressionStream("gzip"));
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        reader.cancel().catch(() => {});
        throw tooLarge(limit);
      }
      onChunk(value.byteLength);
      chunks.push(value);
    }
  } catch (error) {
    if (error instanceof HttpError) throw error;
    throw new BadRequest(`Unreadable body: ${error instanceof Error ? error.message : error}`);
  }
  return chunks.length === 1 ? chunks[0] : concat(chunks, size);
}

/** Reads a body of `length` bytes (its Content-Length) into one buffer; more or fewer bytes are an error. */
async function readDeclared(stream: ReadableStream<Uint8Array>, length: number): Promise<Uint8Array> {
  const body = new Uint8Array(length);
  let size = 0;
  try {
    for await (const chunk of stream) {
      if (size + chunk.byteLength > length) throw new BadRequest(`Malformed body: longer than its Content-Length ${length}`);
      body.set(chunk, size);
      size += chunk.byteLength;
    }
  } catch (error) {
    if (error instanceof HttpError) throw error;
    throw new BadRequest(`Unreadable body: ${error instanceof Error ? error.message : error}`);
  }
  if (size !== length) throw new BadRequest(`Unreadable body: ${size} of its ${length} bytes arrived`);
  return body;
}

// ignoreBOM: a byte order mark stays in the text, where JSON.parse refuses it, as it would the stored line.
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** The text of UTF-8 bytes; BadRequest if they are not valid UTF-8. */
function utf8(bytes: Uint8Array, what = "body"): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw new BadRequest(`Malformed ${what}: it is not valid UTF-8`);
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new BadRequest(`Malformed JSON: ${error instanceof Error ? error.message : error}`);
  }
}

/** An NDJSON body: the header (first line) parsed, and the bytes of the record lines after it. */
function splitNdjson(body: Uint8Array): { head: unknown; rest: Uint8Array } {
  const newline = body.indexOf(10);
  const end = newline < 0 ? body.length : newline;
  let head: unknown;
  try {
    head = JSON.parse(utf8(body.subarray(0, end), "header line"));
  } catch (error) {
    if (error instanceof HttpError) throw error;
    throw new BadRequest(`Malformed JSON in the header line: ${error instanceof Error ? error.message : error}`);
  }
  let rest = body.subarray(newline < 0 ? body.length : newline + 1);
  if (rest.length > 0 && rest[rest.length - 1] === 10) rest = rest.subarray(0, -1);
  return { head, rest };
}

/** A section of an NDJSON body: `lines` record lines for a metric (`name`) or for the logs. */
interface Section {
  kind: "metrics" | "logs";
  name?: string;
  lines: number;
}

function checkSections(value: unknown): Section[] {
  if (!Array.isArray(value)) throw new BadRequest(`Invalid "sections": expected an array of {kind, name, lines}, received ${typeName(value)}`);
  return value.map((s, i) => {
    if (!isObject(s)) throw new BadRequest(`Invalid "sections[${i}]": expected an object, received ${typeName(s)}`);
    if (s.kind !== "metrics" && s.kind !== "logs") throw new BadRequest(`Unknown event kind "sections[${i}].kind" ${JSON.stringify(s.kind)}: expected metrics or logs`);
    if (s.kind === "metrics" && (typeof s.name !== "string" || !isMetricName(s.name))) {
      throw new BadRequest(`Invalid "sections[${i}].name" ${JSON.stringify(s.name)}: expected a metric name of at most ${MAX_METRIC_NAME_BYTES} bytes without "/", "\\" or NUL that does not start with "."`);
    }
    if (typeof s.lines !== "number" || !Number.isSafeInteger(s.lines) || s.lines < 0) {
      throw new BadRequest(`Invalid "sections[${i}].lines" ${JSON.stringify(s.lines)}: expected a count of lines`);
    }
    return { kind: s.kind, name: s.name as string | undefined, lines: s.lines };
  });
}

const METRIC_NAME = /^[^/\\\0.][^/\\\0]*$/;
/** A metric is stored as `<name>.jsonl`: with the suffix, the name must fit a file name's 255 bytes. */
const MAX_METRIC_NAME_BYTES = 255 - ".jsonl".length;

function isMetricName(name: string): boolean {
  // A UTF-16 unit is at most 3 bytes of UTF-8: short names need no encoding.
  const fits = name.length <= MAX_METRIC_NAME_BYTES / 3 || new TextEncoder().encode(name).byteLength <= MAX_METRIC_NAME_BYTES;
  return fits && METRIC_NAME.test(name);
}

/** Checks the record lines of an NDJSON body against its sections and adds them to the batch. */
function addSections(batch: Batch, sections: Section[], rest: Uint8Array): void {
  const lines = lineEnds(rest);
  const expected = sections.reduce((n, s) => n + s.lines, 0);
  if (lines.length !== expected) {
    throw new BadRequest(`Malformed NDJSON body: the sections announce ${expected} record line(s), the body has ${lines.length}`);
  }
  let at = 0;
  for (const section of sections) {
    const first = at === 0 ? 0 : lines[at - 1] + 1;
    if (section.kind === "metrics") {
      const where = `metrics.${section.name}`;
      const chunks: Uint8Array[] = [];
      // Chunks of 1,024 lines, the shape mod.ts gives the JSONL backend; the bytes are kept, not decoded.
      for (let i = 0, start = first, chunkStart = first; i < section.lines; i++) {
        const end = lines[at + i];
        if (!isPlainMetricLine(rest, start, end)) {
          const line = `${where} line ${at + i + 2}`;
          checkLine(utf8(rest.subarray(start, end), line), line, checkMetricRecord);
        }
        if ((i + 1) % 1024 === 0 || i === section.lines - 1) {
          chunks.push(rest.subarray(chunkStart, end));
          chunkStart = end + 1;
        }
        start = end + 1;
      }
      const metrics = batch.metrics ??= Object.create(null) as Record<string, string[]>;
      (metrics[section.name!] ??= []).push(...chunks);
    } else {
      const text = section.lines === 0 ? "" : utf8(rest.subarray(first, lines[at + section.lines - 1]), "logs");
      const part = section.lines === 0 ? [] : text.split("\n");
      for (let i = 0; i < part.length; i++) checkLine(part[i], `logs line ${at + i + 2}`, checkLogRecord);
      (batch.logs ??= []).push(...chunked(part));
    }
    at += section.lines;
  }
}

/** Where each line of `bytes` ends (the index of its "\n", or the end for the last line); none if empty. */
function lineEnds(bytes: Uint8Array): number[] {
  if (bytes.length === 0) return [];
  const ends: number[] = [];
  for (let at = bytes.indexOf(10); at !== -1; at = bytes.indexOf(10, at + 1)) ends.push(at);
  ends.push(bytes.length);
  return ends;
}

/** Lines joined into chunks of 1,024, the shape mod.ts gives the JSONL backend. */
function chunked(lines: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < lines.length; i += 1024) out.push(lines.slice(i, i + 1024).join("\n"));
  return out;
}

const OPEN_RECORD = new TextEncoder().encode('{"_ts":');
const STEP_KEY = new TextEncoder().encode(',"step":');
const NON_FINITE = ["NaN", "Infinity", "-Infinity"].map((word) => new TextEncoder().encode(`"${word}"`));

/**
 * Whether `bytes[start, end)` is a metric record as mod.ts writes it:
 * `{"_ts":<number>,"step":<number>` then `,"<key>":<number or "NaN"/"Infinity"/"-Infinity">`
 * fields and `}`, keys of printable ASCII without escapes. Checked on the
 * bytes, without decoding them; any other line is decoded and parsed.
 */
function isPlainMetricLine(bytes: Uint8Array, start: number, end: number): boolean {
  let i = literalEnd(bytes, start, OPEN_RECORD);
  if (i > 0) i = numberEnd(bytes, i, end);
  if (i > 0) i = literalEnd(bytes, i, STEP_KEY);
  if (i > 0) i = numberEnd(bytes, i, end);
  while (i > 0 && i < end && bytes[i] === 44) {
    i = plainKeyEnd(bytes, i + 1, end);
    if (i < 0 || bytes[i] !== 58) return false;
    i++;
    i = bytes[i] === 34 ? nonFiniteEnd(bytes, i) : numberEnd(bytes, i, end);
  }
  return i === end - 1 && bytes[i] === 125;
}

/** The index after `literal` at `at`, or -1. */
function literalEnd(bytes: Uint8Array, at: number, literal: Uint8Array): number {
  for (let k = 0; k < literal.length; k++) if (bytes[at + k] !== literal[k]) return -1;
  return at + literal.length;
}

/** The index after a JSON number at `at` (before `end`), or -1. */
function numberEnd(bytes: Uint8Array, at: number, end: number): number {
  let i = at;
  if (bytes[i] === 45) i++;
  if (bytes[i] === 48) i++;
  else if (isDigit(bytes[i])) while (i < end && isDigit(bytes[i])) i++;
  else return -1;
  if (bytes[i] === 46) {
    if (!isDigit(bytes[++i])) return -1;
    while (i < end && isDigit(bytes[i])) i++;
  }
  if (bytes[i] === 101 || bytes[i] === 69) {
    i++;
    if (bytes[i] === 43 || bytes[i] === 45) i++;
    if (!isDigit(bytes[i])) return -1;
    while (i < end && isDigit(bytes[i])) i++;
  }
  return i;
}

/** The index after a quoted key of printable ASCII without escapes at `at`, or -1. */
function plainKeyEnd(bytes: Uint8Array, at: number, end: number): number {
  if (bytes[at] !== 34) return -1;
  for (let i = at + 1; i < end; i++) {
    const c = bytes[i];
    if (c === 34) return i > at + 1 ? i + 1 : -1;
    if (c < 32 || c === 92 || c > 126) return -1;
  }
  return -1;
}

/** The index after `"NaN"`, `"Infinity"` or `"-Infinity"` at `at`, or -1. */
function nonFiniteEnd(bytes: Uint8Array, at: number): number {
  for (const word of NON_FINITE) {
    const after = literalEnd(bytes, at, word);
    if (after > 0) return after;
  }
  return -1;
}

function isDigit(c: number | undefined): boolean {
  return c !== undefined && c >= 48 && c <= 57;
}

function checkLine(line: string, where: string, check: (r: Record<string, unknown>, where: string) => void): void {
  let record: unknown;
  try {
    record = JSON.parse(line);
  } catch (error) {
    throw new BadRequest(`Malformed JSON in ${where}: ${error instanceof Error ? error.message : error}`);
  }
  if (!isObject(record)) throw new BadRequest(`Invalid ${where}: expected an object, received ${typeName(record)}`);
  check(record, where);
}

/**
 * How deep JSON may nest: deeper values would overflow the stack of whoever
 * serializes them again. The library takes 64 levels of a user's value; the
 * envelope around it adds a few.
 */
const MAX_DEPTH = 64 + 8;

/** Refuses JSON nested deeper than {@linkcode MAX_DEPTH}, without recursion. */
function checkDepth(value: unknown, where: string): void {
  const stack: unknown[] = [value];
  const depths: number[] = [1];
  while (stack.length > 0) {
    const v = stack.pop();
    const depth = depths.pop()!;
    if (typeof v !== "object" || v === null) continue;
    if (depth > MAX_DEPTH) throw new BadRequest(`Invalid ${where}: JSON nested more than ${MAX_DEPTH} levels deep`);
    for (const child of Object.values(v)) {
      if (typeof child !== "object" || child === null) continue;
      stack.push(child);
      depths.push(depth + 1);
    }
  }
}

function tooLarge(limit: number): HttpError {
  return new HttpError(413, `Body too large: the limit is ${limit} bytes; send smaller batches`);
}

function concat(chunks: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

function checkedPrefix(value: unknown, where: string): string {
  if (typeof value !== "string") throw new BadRequest(`Invalid "${where}": expected a string, received ${typeName(value)}`);
  try {
    checkPrefix(value);
  } catch (error) {
    throw new BadRequest(error instanceof Error ? error.message : String(error));
  }
  return value;
}

/** Checks the envelope and every record's type; throws BadRequest naming the first problem. */
interface ParsedEnvelope {
  prefix: string;
  session: string;
  seq: number;
  batch: Record<string, unknown>;
  sections?: Section[];
}

/** Checks the envelope's prefix, session and seq, and the batch's field names (its content is checked by decodeBatch). */
function parseEnvelope(body: unknown, ndjson: boolean): ParsedEnvelope {
  checkDepth(body, ndjson ? "header line" : "body");
  const fields = ndjson ? ["prefix", "session", "seq", "batch", "sections"] : ["prefix", "session", "seq", "batch"];
  if (!isObject(body)) throw new BadRequest(`Invalid body: expected an object {${fields.join(", ")}}, received ${typeName(body)}`);
  for (const key of Object.keys(body)) {
    if (!fields.includes(key)) throw new BadRequest(`Unknown field "${key}": expected ${fields.join(", ")}`);
  }
  const prefix = checkedPrefix(body.prefix, "prefix");
  const session = body.session;
  if (typeof session !== "string" || !/^[A-Za-z0-9._:-]{1,200}$/.test(session)) {
    throw new BadRequest(`Invalid "session" ${JSON.stringify(session)}: expected 1 to 200 characters of A-Z a-z 0-9 . _ : -`);
  }
  const seq = body.seq;
  if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 0) {
    throw new BadRequest(`Invalid "seq" ${JSON.stringify(seq)}: expected an integer from 0 to 2^53 - 1`);
  }
  const batch = body.batch ?? {};
  if (!isObject(batch)) throw new BadRequest(`Invalid "batch": expected an object, received ${typeName(batch)}`);
  for (const key of Object.keys(batch)) {
    if (!BATCH_FIELDS.includes(key)) {
      throw new BadRequest(`Unknown event kind "batch.${key}": expected ${BATCH_FIELDS.join(", ")}`);
    }
  }
  const sections = ndjson ? checkSections(body.sections ?? []) : undefined;
  return { prefix, session, seq, batch, sections };
}

/** Checks every event of a batch and returns it as the JSONL backend takes it. */
function decodeBatch(batch: Record<string, unknown>, prefix: string): Batch {
  checkMetadata(batch.metadata, prefix);
  checkStatus(batch.status);
  checkParams(batch.params);
  const decoded: Batch = {};
  if (batch.metadata !== undefined) decoded.metadata = batch.metadata as ExperimentRecord;
  if (batch.params !== undefined) decoded.params = batch.params as Batch["params"];
  const files = checkFiles(batch.files);
  if (files) decoded.files = files;
  const metrics = checkMetrics(batch.metrics);
  if (metrics) decoded.metrics = metrics;
  const logs = checkLogs(batch.logs);
  if (logs) decoded.logs = logs;
  if (batch.status !== undefined) decoded.status = batch.status as Batch["status"];
  return decoded;
}

function checkMetadata(value: unknown, prefix: string): void {
  if (value === undefined) return;
  if (!isObject(value)) throw new BadRequest(`Invalid "batch.metadata": expected an object, received ${typeName(value)}`);
  const m = value as ExperimentRecord;
  if (m.prefix !== undefined && m.prefix !== prefix) {
    throw new BadRequest(`Invalid "batch.metadata.prefix" ${JSON.stringify(m.prefix)}: it must equal the envelope's prefix ${JSON.stringify(prefix)}`);
  }
  if (m.readme !== undefined && typeof m.readme !== "string") throw new BadRequest(`Invalid "batch.metadata.readme": expected a string, received ${typeName(m.readme)}`);
  if (m.tags !== undefined && !(Array.isArray(m.tags) && m.tags.every((t) => typeof t === "string"))) {
    throw new BadRequest(`Invalid "batch.metadata.tags": expected an array of strings`);
  }
  if (m.metadata !== undefined && !isObject(m.metadata)) throw new BadRequest(`Invalid "batch.metadata.metadata": expected an object, received ${typeName(m.metadata)}`);
}

function checkStatus(value: unknown): void {
  if (value === undefined) return;
  if (!isObject(value)) throw new BadRequest(`Invalid "batch.status": expected an object, received ${typeName(value)}`);
  const s = value as Record<string, unknown>;
  if (s.status !== undefined && !STATUSES.includes(s.status as string)) {
    throw new BadRequest(`Invalid "batch.status.status" ${JSON.stringify(s.status)}: expected one of ${STATUSES.join(", ")}`);
  }
  for (const key of ["startedAt", "heartbeatAt", "heartbeatInterval", "pid"]) {
    if (s[key] !== undefined && typeof s[key] !== "number") throw new BadRequest(`Invalid "batch.status.${key}": expected a number, received ${typeName(s[key])}`);
  }
  if (s.endedAt !== undefined && s.endedAt !== null && typeof s.endedAt !== "number") {
    throw new BadRequest(`Invalid "batch.status.endedAt": expected a number or null, received ${typeName(s.endedAt)}`);
  }
  for (const key of ["host", "error"]) {
    if (s[key] !== undefined && typeof s[key] !== "string") throw new BadRequest(`Invalid "batch.status.${key}": expected a string, received ${typeName(s[key])}`);
  }
}

function checkParams(value: unknown): void {
  if (value === undefined) return;
  if (!isObject(value)) throw new BadRequest(`Invalid "batch.params": expected an object of flattened parameters, received ${typeName(value)}`);
}

/**
 * Checks `batch.metrics` and returns it as the JSONL backend takes it: per
 * metric, chunks of JSON text. An item is a record object or a string of one or
 * more records separated by "\n" (what `mod.ts` sends); strings are kept as sent.
 */
function checkMetrics(value: unknown): Record<string, string[]> | undefined {
  if (value === undefined) return undefined;
  if (!isObject(value)) throw new BadRequest(`Invalid "batch.metrics": expected an object of metric name → records, received ${typeName(value)}`);
  const out: Record<string, string[]> = Object.create(null);
  for (const name in value) {
    if (!isMetricName(name)) {
      throw new BadRequest(`Invalid metric name ${JSON.stringify(name)}: expected a non-empty name of at most ${MAX_METRIC_NAME_BYTES} bytes without "/", "\\" or NUL that does not start with "."`);
    }
    const items = value[name];
    if (!Array.isArray(items)) throw new BadRequest(`Invalid "batch.metrics.${name}": expected an array of records, received ${typeName(items)}`);
    out[name] = items.map((item, i) => checkedChunk(item, `batch.metrics.${name}[${i}]`, checkMetricRecord));
  }
  return out;
}

function checkMetricRecord(r: Record<string, unknown>, where: string): void {
  if (typeof r._ts !== "number") throw new BadRequest(`Invalid "${where}._ts": expected a number, received ${typeName(r._ts)}`);
  if (typeof r.step !== "number") throw new BadRequest(`Invalid "${where}.step": expected a number, received ${typeName(r.step)}`);
  for (const field in r) {
    const v = r[field];
    if (typeof v === "number" || v === "NaN" || v === "Infinity" || v === "-Infinity") continue;
    throw new BadRequest(`Invalid "${where}.${field}": expected a number or "NaN", "Infinity", "-Infinity", received ${typeName(v)}`);
  }
}

function checkLogRecord(r: Record<string, unknown>, where: string): void {
  checkDepth(r, where);
  if (typeof r._ts !== "number") throw new BadRequest(`Invalid "${where}._ts": expected a number, received ${typeName(r._ts)}`);
  if (typeof r.level !== "string") throw new BadRequest(`Invalid "${where}.level": expected a string, received ${typeName(r.level)}`);
  if (typeof r.message !== "string") throw new BadRequest(`Invalid "${where}.message": expected a string, received ${typeName(r.message)}`);
}

/** An item of metrics or logs: a record object (serialized here) or JSON text of records, one a line (checked, kept). */
function checkedChunk(item: unknown, where: string, check: (r: Record<string, unknown>, where: string) => void): string {
  if (isObject(item)) {
    check(item, where);
    return JSON.stringify(item);
  }
  if (typeof item !== "string") throw new BadRequest(`Invalid "${where}": expected a record object or JSON text, received ${typeName(item)}`);
  const text = item.endsWith("\n") ? item.slice(0, -1) : item;
  let lines = 1;
  for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) lines++;
  let records: unknown[];
  try {
    records = JSON.parse(`[${text.replaceAll("\n", ",")}]`);
  } catch (error) {
    throw new BadRequest(`Malformed JSON text in "${where}": ${error instanceof Error ? error.message : error} (expected one JSON object a line)`);
  }
  if (records.length !== lines) throw new BadRequest(`Malformed JSON text in "${where}": expected exactly one JSON object on each of its ${lines} lines`);
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    const at = lines === 1 ? where : `${where} line ${i + 1}`;
    if (!isObject(r)) throw new BadRequest(`Invalid "${at}": expected an object, received ${typeName(r)}`);
    check(r, at);
  }
  return text;
}

function checkLogs(value: unknown): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) throw new BadRequest(`Invalid "batch.logs": expected an array of records, received ${typeName(value)}`);
  return value.map((item, i) => checkedChunk(item, `batch.logs[${i}]`, checkLogRecord));
}

function checkFiles(value: unknown): FileUpload[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) throw new BadRequest(`Invalid "batch.files": expected an array, received ${typeName(value)}`);
  return value.map((f, i) => {
    if (!isObject(f)) throw new BadRequest(`Invalid "batch.files[${i}]": expected an object, received ${typeName(f)}`);
    if (typeof f.path !== "string") throw new BadRequest(`Invalid "batch.files[${i}].path": expected a string, received ${typeName(f.path)}`);
    try {
      checkPrefix(`files/${f.path}`);
    } catch (error) {
      throw new BadRequest(`Invalid "batch.files[${i}].path": ${error instanceof Error ? error.message : error}`);
    }
    if (typeof f.mime !== "string" || !MIME.test(f.mime)) {
      throw new BadRequest(`Invalid "batch.files[${i}].mime" ${JSON.stringify(f.mime)}: expected a media type such as "text/plain", in printable ASCII`);
    }
    if (typeof f._ts !== "number") throw new BadRequest(`Invalid "batch.files[${i}]._ts": expected a number, received ${typeName(f._ts)}`);
    if (typeof f.data !== "string" || f.data.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(f.data)) {
      throw new BadRequest(`Invalid "batch.files[${i}].data": expected the file's content as a base64 string`);
    }
    const data = new Uint8Array(Buffer.from(f.data, "base64"));
    return { path: f.path, size: data.byteLength, mime: f.mime, _ts: f._ts, data };
  });
}

/**
 * Which (session, seq) pairs each experiment has stored, kept in
 * `<experiment>/.sessions.json` so that retries stay idempotent across restarts:
 * per session, `upTo` (every seq from 0 to it was stored), the stored seqs above
 * it, and the largest seq stored.
 */
class SessionLedger {
  #root: string;
  #checkInside: (dir: string) => void;
  #cache = new Map<string, LedgerFile>();

  /** `checkInside` throws for a folder that a link would lead outside the root. */
  constructor(root: string, checkInside: (dir: string) => void) {
    this.#root = root;
    this.#checkInside = checkInside;
  }

  has(prefix: string, session: string, seq: number): boolean {
    const s = this.#load(prefix).sessions[session];
    return s !== undefined && (seq <= s.upTo || s.above.includes(seq));
  }

  maxSeq(prefix: string, session: string): number | undefined {
    return this.#load(prefix).sessions[session]?.max;
  }

  /**
   * Notes the sizes of the files a batch appends to before it is applied. If the
   * server dies before `add()` records the batch, the next load cuts those files
   * back to these sizes, so that the client's retry is stored once, not twice.
   * (JSON state files are merged, so applying them again changes nothing.)
   */
  begin(prefix: string, files: string[]): void {
    const ledger = this.#load(prefix);
    const dir = this.#dir(prefix);
    this.#checkInside(dir);
    fs.mkdirSync(dir, { recursive: true });
    ledger.applying = Object.fromEntries(files.map((f) => [f, fileSize(path.join(dir, f))]));
    this.#save(prefix, ledger);
  }

  /** Undoes a batch that a crash cut short, before anything reads the experiment (see `begin`). */
  recover(prefix: string): void {
    if (!this.#cache.has(prefix) && fs.existsSync(this.#file(prefix))) this.#load(prefix);
  }

  /** Cuts the files of a batch that was not recorded back to their sizes before it. */
  rollBack(prefix: string): void {
    const ledger = this.#load(prefix);
    this.#undoApplying(prefix, ledger);
    this.#save(prefix, ledger);
  }

  /**
   * Records a stored batch. If the ledger cannot be saved, the batch is rolled
   * back and the error rethrown: only a ledger that is on disk may later answer
   * "duplicate", since the next start undoes a batch the saved ledger does not hold.
   */
  add(prefix: string, session: string, seq: number): void {
    const ledger = this.#load(prefix);
    const applying = ledger.applying;
    delete ledger.applying;
    const s = ledger.sessions[session] ??= { upTo: -1, above: [], max: -1, at: 0 };
    s.at = Date.now() / 1000;
    s.max = Math.max(s.max, seq);
    if (seq === s.upTo + 1) {
      s.upTo = seq;
      s.above.sort((a, b) => a - b);
      while (s.above.length > 0 && s.above[0] <= s.upTo + 1) {
        s.upTo = Math.max(s.upTo, s.above.shift()!);
      }
    } else if (seq > s.upTo) {
      s.above.push(seq);
      if (s.above.length > MAX_SEQS_ABOVE) s.above.splice(0, s.above.length - MAX_SEQS_ABOVE);
    }
    const ids = Object.keys(ledger.sessions);
    if (ids.length > MAX_SESSIONS) {
      ids.sort((a, b) => ledger.sessions[a].at - ledger.sessions[b].at);
      for (const id of ids.slice(0, ids.length - MAX_SESSIONS)) delete ledger.sessions[id];
    }
    try {
      this.#save(prefix, ledger);
    } catch (error) {
      // The ledger on disk still notes the batch as being applied: make the files match it.
      this.#cutBack(prefix, applying ?? {});
      throw error;
    }
  }

  #save(prefix: string, ledger: LedgerFile): void {
    const file = this.#file(prefix);
    const tmp = `${file}.${processId() ?? 0}.tmp`;
    try {
      fs.writeFileSync(tmp, JSON.stringify(ledger));
      fs.renameSync(tmp, file);
    } catch (error) {
      // What is in memory is not on disk: forget it, the next load reads the disk's.
      this.#cache.delete(prefix);
      fs.rmSync(tmp, { force: true });
      throw error;
    }
  }

  #undoApplying(prefix: string, ledger: LedgerFile): void {
    if (!ledger.applying) return;
    this.#cutBack(prefix, ledger.applying);
    delete ledger.applying;
  }

  #cutBack(prefix: string, sizes: Record<string, number>): void {
    const dir = this.#dir(prefix);
    for (const [file, size] of Object.entries(sizes)) {
      const full = path.join(dir, file);
      if (fileSize(full) > size) fs.truncateSync(full, size);
    }
  }

  #dir(prefix: string): string {
    return path.join(this.#root, ...prefix.split("/"));
  }

  #file(prefix: string): string {
    return path.join(this.#dir(prefix), ".sessions.json");
  }

  #load(prefix: string): LedgerFile {
    let ledger = this.#cache.get(prefix);
    if (ledger) return ledger;
    try {
      ledger = JSON.parse(fs.readFileSync(this.#file(prefix), "utf8")) as LedgerFile;
      if (!isObject(ledger?.sessions)) ledger = undefined;
    } catch {
      ledger = undefined;
    }
    // Session ids are names from clients: a null prototype keeps "__proto__" an ordinary key.
    ledger = { version: 1, sessions: Object.assign(Object.create(null), ledger?.sessions), applying: ledger?.applying };
    if (ledger.applying) {
      // The last batch was cut short by a crash: undo what it appended.
      this.#undoApplying(prefix, ledger);
      this.#save(prefix, ledger);
    } else {
      delete ledger.applying;
    }
    this.#cache.set(prefix, ledger);
    if (this.#cache.size > MAX_CACHED_LEDGERS) this.#cache.delete(this.#cache.keys().next().value!);
    return ledger;
  }
}

const MAX_SESSIONS = 10_000;
/** Ledgers kept in memory; the oldest loaded is dropped first (it is on disk). */
const MAX_CACHED_LEDGERS = 1_000;
const MAX_SEQS_ABOVE = 10_000;

interface LedgerFile {
  version: 1;
  sessions: Record<string, { upTo: number; above: number[]; max: number; at: number }>;
  /** While a batch is being applied: the sizes its append-only files had before. */
  applying?: Record<string, number>;
}

/** The append-only files a batch adds lines to, relative to its experiment's folder. */
function appendedFiles(batch: Batch): string[] {
  const files = Object.keys(batch.metrics ?? {}).map((name) => `metrics/${name}.jsonl`);
  if (batch.logs) files.push("logs.jsonl");
  if (batch.params) files.push("parameters.jsonl");
  if (batch.files) files.push("files.jsonl");
  return files;
}

/** A batch that could not be stored and was rolled back: the client keeps it and retries later. */
function notStored(error: unknown): unknown {
  if (error instanceof HttpError || error instanceof ConfigError) return error;
  if (error instanceof OutsideRootError) return new HttpError(403, error.message);
  const message = error instanceof Error ? error.message : String(error);
  return new HttpError(503, `Could not store the batch, and nothing of it was kept: ${message}; retry later`);
}

function faultResponse(fault: Fault): Response {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (fault.retryAfter !== undefined) headers["retry-after"] = String(fault.retryAfter);
  return new Response(JSON.stringify({ error: `Injected fault: status ${fault.status}` }), { status: fault.status, headers });
}

// ─── Read API ───────────────────────────────────────────────────────────────

function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json" } });
}

function errorJson(status: number, message: string): Response {
  return json({ error: message }, status);
}

function requiredParam(url: URL, name: string): string {
  const value = url.searchParams.get(name);
  if (value === null || value === "") throw new BadRequest(`Missing query parameter "${name}"`);
  return value;
}

function intParam(url: URL, name: string, fallback: number | undefined, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const text = url.searchParams.get(name);
  if (text === null || text === "") return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new BadRequest(`Invalid query parameter ${name}=${JSON.stringify(text)}: expected an integer from 0 to ${max}`);
  }
  return value;
}

function numberParam(url: URL, name: string): number | undefined {
  const text = url.searchParams.get(name);
  if (text === null || text === "") return undefined;
  const value = Number(text);
  if (!Number.isFinite(value)) throw new BadRequest(`Invalid query parameter ${name}=${JSON.stringify(text)}: expected a number`);
  return value;
}

async function existingPrefix(reader: DashReader, url: URL): Promise<string> {
  const prefix = checkedPrefix(requiredParam(url, "prefix"), "prefix");
  if (!(await reader.exists(prefix))) throw new HttpError(404, `Unknown experiment "${prefix}"`);
  return prefix;
}

async function listExperiments(reader: DashReader, url: URL): Promise<Response> {
  const prefix = url.searchParams.get("prefix") || undefined;
  const status = url.searchParams.get("status") || undefined;
  const offset = intParam(url, "offset", 0)!;
  const limit = intParam(url, "limit", undefined);
  const all: ExperimentSummary[] = await reader.listExperiments({ prefix, status });
  const experiments = all.slice(offset, limit === undefined ? undefined : offset + limit);
  return json({ experiments, total: all.length });
}

async function getExperiment(reader: DashReader, url: URL): Promise<Response> {
  const prefix = await existingPrefix(reader, url);
  const overview = await reader.overview(prefix);
  return json({ ...overview, summary: finiteOrNull(overview.summary) });
}

async function getSeries(reader: DashReader, url: URL): Promise<Response> {
  const prefix = await existingPrefix(reader, url);
  const key = requiredParam(url, "key");
  const points = intParam(url, "points", 1000, 1_000_000)!;
  const xName = url.searchParams.get("x") || "step";
  const from = numberParam(url, "from");
  const to = numberParam(url, "to");
  const offset = intParam(url, "offset", 0)!;
  const limit = intParam(url, "limit", undefined);
  const byField = xName !== "step" && xName !== "_ts";
  const series = await reader.series(prefix, key, byField ? { x: xName } : {});
  let x = byField ? series.x! : xName === "_ts" ? series.ts : series.step;
  let value = series.value;
  // Without a range every point counts: a long series is not copied once more for each request.
  if (from !== undefined || to !== undefined) {
    const inRange = (v: number): boolean => (from === undefined || v >= from) && (to === undefined || v <= to);
    value = value.filter((_, i) => inRange(x[i]));
    x = x.filter(inRange);
  }
  const total = x.length;
  if (offset > 0 || limit !== undefined) {
    const end = limit === undefined ? undefined : offset + limit;
    x = x.slice(offset, end);
    value = value.slice(offset, end);
  }
  const reduced = minMaxDownsample(x, value, points);
  return json({ key, x: reduced.x, value: reduced.value.map(nullIfNotFinite), total, downsampled: reduced.downsampled });
}

async function getLogs(reader: DashReader, url: URL): Promise<Response> {
  const prefix = await existingPrefix(reader, url);
  const level = url.searchParams.get("level") || undefined;
  if (level !== undefined && !["debug", "info", "warn", "error", "fatal"].includes(level)) {
    throw new BadRequest(`Invalid query parameter level=${JSON.stringify(level)}: expected debug, info, warn, error or fatal`);
  }
  const offset = intParam(url, "offset", 0)!;
  const limit = intParam(url, "limit", undefined);
  const all = await reader.logs(prefix, { level });
  return json({ logs: all.slice(offset, limit === undefined ? undefined : offset + limit), total: all.length });
}

async function getFile(reader: DashReader, root: string, url: URL): Promise<Response> {
  const prefix = await existingPrefix(reader, url);
  const file = requiredParam(url, "path");
  let target: string;
  try {
    target = reader.filePath(prefix, file);
  } catch {
    throw new BadRequest(`Invalid file path ${JSON.stringify(file)}: expected a relative path without "..", "." or empty segments`);
  }
  let data: Uint8Array;
  try {
    data = new Uint8Array(fs.readFileSync(insideRoot(root, target, `file "${file}"`)));
  } catch (error) {
    if (error instanceof HttpError) throw error;
    throw new HttpError(404, `Unknown file "${file}" in experiment "${prefix}"`);
  }
  const info = (await reader.files(prefix)).find((f) => f.path === file);
  const type = info?.mime !== undefined && MIME.test(info.mime) ? info.mime : contentType(file);
  // A saved file is anyone's upload: it must not run as a page of the dashboard's origin.
  const headers: Record<string, string> = {
    "content-type": type,
    "x-content-type-options": "nosniff",
    "content-security-policy": "sandbox",
  };
  if (!INLINE_MIME.test(type)) headers["content-disposition"] = attachment(file.split("/").pop()!);
  return new Response(data as BodyInit, { headers });
}

/** A media type as a header carries it: `type/subtype`, then parameters, in printable ASCII. */
const MIME = /^[\w.+-]+\/[\w.+-]+(\s*;[\x20-\x7e]*)?$/;
/** The whole type, parameters aside, must be one a browser shows without running it. */
const INLINE_MIME = /^(image\/(png|jpeg|gif|webp)|text\/plain)\s*(;[\x20-\x7e]*)?$/i;

/** `Content-Disposition: attachment` with an ASCII name and the exact name as UTF-8 (RFC 6266 `filename*`). */
function attachment(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\%]/g, "_");
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)}`;
}

/**
 * The path, checked to resolve (symbolic links followed) to a place inside the
 * root: a link planted in the root must not serve or take files elsewhere.
 */
function insideRoot(root: string, target: string, what: string): string {
  const real = fs.realpathSync(target);
  const base = fs.realpathSync(root);
  if (real !== base && !real.startsWith(base + path.sep)) {
    throw new HttpError(403, `Refused ${what}: it is a link that leads outside the root`);
  }
  return real;
}

function nullIfNotFinite(value: number): number | null {
  return Number.isFinite(value) ? value : null;
}

function finiteOrNull(summary: Record<string, KeySummary>): Record<string, KeySummary> {
  for (const key in summary) {
    const s = summary[key] as unknown as Record<string, number | null>;
    for (const field in s) if (typeof s[field] === "number" && !Number.isFinite(s[field])) s[field] = null;
  }
  return summary;
}

// ─── The dashboard: static files ────────────────────────────────────────────

let foundDashboard: string | undefined;

/** Finds `dashboard/index.html` next to this module or in a folder above it (source tree, .build/, dist/). */
function dashboardDir(): string | undefined {
  if (foundDashboard) return foundDashboard;
  let dir: string;
  try {
    dir = path.dirname(fileURLToPath(import.meta.url));
  } catch {
    return undefined;
  }
  for (let i = 0; i < 4; i++) {
    const candidate = path.join(dir, "dashboard");
    if (fs.existsSync(path.join(candidate, "index.html"))) return foundDashboard = candidate;
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return undefined;
}

function serveStatic(pathname: string, configured: string | undefined): Response {
  let rel: string;
  if (pathname === "/" || pathname === "/index.html") rel = "index.html";
  else if (pathname === "/dashboard" || pathname === "/dashboard/") rel = "index.html";
  else if (pathname.startsWith("/dashboard/")) rel = pathname.slice("/dashboard/".length);
  else return errorJson(404, `Not found: ${pathname}`);
  let decoded: string;
  try {
    decoded = decodeURIComponent(rel);
  } catch {
    return errorJson(400, `Invalid path ${JSON.stringify(pathname)}`);
  }
  const segments = decoded.split("/");
  if (segments.some((s) => s === "" || s === "." || s === ".." || s.includes("\\") || s.includes("\0"))) {
    return errorJson(404, `Not found: ${pathname}`);
  }
  const dir = configured ?? dashboardDir();
  if (!dir) return errorJson(404, "The dashboard is not installed: no dashboard/index.html was found");
  let data: Uint8Array;
  try {
    data = new Uint8Array(fs.readFileSync(path.join(dir, ...segments)));
  } catch {
    return errorJson(404, `Not found: ${pathname}`);
  }
  // No other site may frame the dashboard (clickjacking of its buttons).
  return new Response(data as BodyInit, {
    headers: {
      "content-type": contentType(decoded),
      "cache-control": "no-cache",
      "content-security-policy": "frame-ancestors 'none'",
      "x-frame-options": "DENY",
    },
  });
}

function contentType(file: string): string {
  const ext = file.slice(file.lastIndexOf(".") + 1).toLowerCase();
  const types: Record<string, string> = {
    html: "text/html; charset=utf-8", js: "text/javascript; charset=utf-8", mjs: "text/javascript; charset=utf-8",
    css: "text/css; charset=utf-8", json: "application/json", svg: "image/svg+xml", png: "image/png",
    jpg: "image/jpeg", jpeg: "image/jpeg", gif: "image/gif", ico: "image/x-icon", txt: "text/plain; charset=utf-8",
    md: "text/markdown; charset=utf-8", csv: "text/csv; charset=utf-8", woff2: "font/woff2",
  };
  return types[ext] ?? "application/octet-stream";
}

// ─── serve(): one small adapter per runtime ─────────────────────────────────

/** Options of {@linkcode serve}. */
export interface ServeOptions extends HandlerOptions {
  /** Port (default 8787; 0 picks a free one). */
  port?: number;
  /** Interface to bind (default `127.0.0.1`). */
  hostname?: string;
  /** Allow a non-loopback hostname without a token (anyone who can reach it can write). */
  insecure?: boolean;
  /** Print nothing (default: one line on start, one per failed request). */
  quiet?: boolean;
  /**
   * Bound to a loopback address, the server answers only requests whose `Host`
   * names loopback (`127.0.0.1`, `localhost`, `[::1]`) or one of these names; bound
   * elsewhere, these names only, when given (else any, behind the token).
   */
  allowedHosts?: string[];
  /** Timeouts and the connection cap (defaults: idle 60 s, headers 15 s, 1,000 connections below the file limit). */
  limits?: ConnectionLimits;
}

/** A running server. */
export interface DashServer {
  /** Base URL, e.g. `http://127.0.0.1:8787`. */
  readonly url: string;
  /** The bound port. */
  readonly port: number;
  /** The handler it runs. */
  readonly handler: DashHandler;
  /** Stops accepting connections, ends event streams and closes files. */
  close(): Promise<void>;
}


/**
 * Runs {@linkcode createHandler} on `node:http` (Deno and Node) or `Bun.serve`
 * (Bun), chosen from `navigator.userAgent`, with timeouts and a connection cap
 * against held connections (see `server/adapters.ts`). Binds 127.0.0.1 by
 * default; without a token it refuses a non-loopback hostname unless `insecure`.
 *
 * @param options The handler's options plus port, hostname and `insecure`.
 * @returns The running server: its URL, port and `close()`.
 * @throws {ConfigError} For a non-loopback hostname without a token (and not `insecure`).
 *
 * @example Start, use, stop
 * ```ts ignore
 * import { serve } from "./server.ts";
 *
 * const server = await serve({ root: ".dash", port: 0, quiet: true });
 * const res = await fetch(`${server.url}/api/v1/experiments`);
 * console.log((await res.json()).total);
 * await server.close();
 * ```
 */
export async function serve(options: ServeOptions): Promise<DashServer> {
  const hostname = options.hostname ?? "127.0.0.1";
  const port = options.port ?? 8787;
  const loopback = isLoopback(hostname);
  if (!loopback && options.token === undefined && !options.insecure) {
    throw new ConfigError(
      `Refusing to listen on ${hostname} without a token: anyone who can reach it could write; pass a token (--token) or insecure: true (--insecure)`,
    );
  }
  const say = options.quiet ? () => {} : (line: string) => console.log(`ml-dash: ${line}`);
  const allowedHosts = loopback ? [...RequestGuard.LOOPBACK, hostname, ...(options.allowedHosts ?? [])] : options.allowedHosts;
  const handler = createHandler({ ...options, allowedHosts, log: options.log ?? (options.quiet ? undefined : (l) => console.error(`ml-dash: ${l}`)) });
  const adapter = pickAdapter();
  let listener: Listener;
  try {
    listener = await adapter(handler, port, hostname, options.maxBodyBytes ?? DEFAULT_MAX_BODY, options.limits);
  } catch (error) {
    await handler.close();
    throw error;
  }
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  const url = `http://${host}:${listener.port}`;
  say(`serving ${JSON.stringify(options.root)} at ${url}`);
  if (options.token === undefined) {
    say(loopback
      ? `no token: anyone on this machine can write; bound to ${hostname} only`
      : `WARNING: no token and listening on ${hostname}: anyone who can reach it can write`);
  } else {
    say(`writes need the token${options.readToken !== undefined ? ", reads need the read token" : "; reads are open"}`);
  }
  return {
    url,
    port: listener.port,
    handler,
    close: async (): Promise<void> => {
      // The handler first ends the event streams (Deno's listener waits for open requests), and
      // again after the listener, for files that a request still in flight opened meanwhile.
      await handler.close();
      await listener.close();
      await handler.close();
    },
  };
}

function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || hostname === "[::1]" || /^127\./.test(hostname);
}

function unref(timer: unknown): void {
  if (typeof timer === "object" && timer !== null && "unref" in timer && typeof timer.unref === "function") timer.unref();
}

function fileSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}
