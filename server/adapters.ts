/**
 * Runs a Web-standard fetch handler (`(req: Request) => Promise<Response>`) as
 * an HTTP/1.1 server on Deno, Bun or Node, one small adapter per runtime, each
 * hardened against clients that hold connections open: a failed `accept()`
 * (say, out of file descriptors) never ends the process, connections idle past
 * a timeout are closed, requests whose headers or body trickle in too slowly
 * are cut off, and the number of open connections is capped below the
 * process's file-descriptor limit.
 *
 * Deno runs the Node adapter (`node:http`): `Deno.serve` rejects an uncaught
 * promise when `accept()` fails (the process dies) and has no idle or header
 * timeouts, while Deno's `node:http` keeps the timeouts and the cap of Node's.
 *
 * @example Serve a handler on a free port
 * ```ts ignore
 * import { pickAdapter } from "./adapters.ts";
 *
 * const listen = pickAdapter();
 * const listener = await listen(async () => new Response("hi"), 0, "127.0.0.1", 1 << 20);
 * console.log(listener.port);
 * await listener.close();
 * ```
 *
 * @module
 */

import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { bunNamespace, denoNamespace, runtimeKey } from "../storage/runtime.ts";

/** Default {@linkcode ConnectionLimits.idleTimeoutMs}: event streams ping every 15 s, so well above that. */
export const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
/** Default {@linkcode ConnectionLimits.headersTimeoutMs}. */
export const DEFAULT_HEADERS_TIMEOUT_MS = 15_000;
/** Default {@linkcode ConnectionLimits.requestTimeoutMs} (Node's own default). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 300_000;
/** Default {@linkcode ConnectionLimits.maxConnections}, before the file-descriptor clamp. */
export const DEFAULT_MAX_CONNECTIONS = 1_000;
/** File descriptors always left for files, pipes and the runtime, however low the limit. */
export const FD_RESERVE_MIN = 64;
/** Share of the file-descriptor limit left for files, pipes and the runtime. */
export const FD_RESERVE_SHARE: number = 1 / 8;
/**
 * Length of the kernel's queue of connections not yet accepted. At the cap the
 * server stops listening, but it may first accept what the queue holds, and
 * Deno's `node:http` stops accepting for good at `EMFILE`: the cap leaves room.
 */
export const LISTEN_BACKLOG = 64;
/** Delay before listening again when that failed (say, `EMFILE` for the socket). */
const RELISTEN_RETRY_MS = 100;

/** How long connections may idle or dawdle, and how many may be open at once. */
export interface ConnectionLimits {
  /**
   * Close a connection after this many milliseconds without a byte in either
   * direction: a keep-alive connection between requests, a stalled body, a
   * silent client (default {@linkcode DEFAULT_IDLE_TIMEOUT_MS}). Bun counts in
   * whole seconds, at most 255.
   */
  idleTimeoutMs?: number;
  /**
   * Close a connection whose request headers have not all arrived this many
   * milliseconds after it opened or after its previous response (default
   * {@linkcode DEFAULT_HEADERS_TIMEOUT_MS}). Bun's own limit (10 s) applies on Bun.
   */
  headersTimeoutMs?: number;
  /**
   * Close a connection whose whole request, body included, has not arrived
   * after this many milliseconds, however steadily it trickles (default
   * {@linkcode DEFAULT_REQUEST_TIMEOUT_MS}). Not available on Bun, where the
   * idle timeout cuts off a stalled body.
   */
  requestTimeoutMs?: number;
  /**
   * Most connections open at once: at the cap the server stops listening, so
   * new connections are refused, until one closes (default
   * {@linkcode DEFAULT_MAX_CONNECTIONS}). Lowered to fit the file-descriptor
   * limit where it can be read (Linux). Bun has no such cap: it keeps the
   * excess waiting in the kernel's queue until fds free up.
   */
  maxConnections?: number;
}

/** A listening server, as an adapter returns it. */
export interface Listener {
  /** The bound port. */
  port: number;
  /** Stops accepting, closes every open connection and resolves when done. */
  close(): Promise<void>;
}

/** A fetch handler: one request in, one response out. */
export type FetchHandler = (req: Request) => Promise<Response>;

/**
 * Starts `handler` on `hostname:port` (port 0 picks a free one) and resolves
 * once it listens. `maxBody` is the handler's own body limit, in bytes; the
 * server may refuse bodies well beyond it.
 */
export type Adapter = (
  handler: FetchHandler,
  port: number,
  hostname: string,
  maxBody: number,
  limits?: ConnectionLimits,
) => Promise<Listener>;

/**
 * The adapter for the runtime this code runs on, from `navigator.userAgent`:
 * {@linkcode serveDeno}, {@linkcode serveBun} or {@linkcode serveNode}.
 *
 * @returns the adapter
 *
 * @example Small timeouts, for a test
 * ```ts ignore
 * import { pickAdapter } from "./adapters.ts";
 *
 * const listener = await pickAdapter()(
 *   async () => new Response("ok"),
 *   0,
 *   "127.0.0.1",
 *   1 << 20,
 *   { idleTimeoutMs: 1_000, headersTimeoutMs: 1_000, maxConnections: 10 },
 * );
 * await listener.close();
 * ```
 */
export function pickAdapter(): Adapter {
  const runtime = runtimeKey();
  if (runtime === "deno") return serveDeno;
  if (runtime === "bun") return serveBun;
  return serveNode;
}

/** Every limit of {@linkcode ConnectionLimits}, defaults filled in and the cap clamped. */
export type ResolvedLimits = Required<ConnectionLimits>;

/**
 * Fills in the defaults of `limits` and lowers `maxConnections` to what the
 * file-descriptor limit `fdLimit` leaves after the reserve
 * ({@linkcode FD_RESERVE_MIN}, {@linkcode FD_RESERVE_SHARE}) and a full
 * accept queue ({@linkcode LISTEN_BACKLOG}).
 *
 * @param limits the caller's limits
 * @param fdLimit the soft limit on open files, if known
 * @returns every limit, with a cap of at least 1
 *
 * @example A soft limit of 256 leaves room for 128 connections
 * ```ts ignore
 * import { resolveLimits } from "./adapters.ts";
 *
 * console.log(resolveLimits({}, 256).maxConnections); // 256 - 64 - 64
 * ```
 */
export function resolveLimits(limits: ConnectionLimits = {}, fdLimit?: number): ResolvedLimits {
  const wanted = limits.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const reserve = Math.max(FD_RESERVE_MIN, Math.ceil((fdLimit ?? 0) * FD_RESERVE_SHARE)) + LISTEN_BACKLOG;
  const room = fdLimit === undefined ? Infinity : fdLimit - reserve;
  return {
    idleTimeoutMs: limits.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    headersTimeoutMs: limits.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS,
    requestTimeoutMs: limits.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
    maxConnections: Math.max(1, Math.min(wanted, room)),
  };
}

/**
 * The soft limit on open files of this process, read from `/proc/self/limits`
 * (Linux); `undefined` elsewhere, when it says "unlimited", or when Deno may not
 * read it (asked without prompting).
 *
 * @param readText reads a file as UTF-8, e.g. `(p) => fs.readFileSync(p, "utf8")`
 * @returns the limit, or `undefined`
 *
 * @example
 * ```ts ignore
 * import * as fs from "node:fs";
 * import { openFileLimit } from "./adapters.ts";
 *
 * console.log(openFileLimit((p) => fs.readFileSync(p, "utf8")) ?? "unknown");
 * ```
 */
export function openFileLimit(readText: (path: string) => string): number | undefined {
  const file = "/proc/self/limits";
  if (!mayRead(file)) return undefined;
  try {
    const match = /^Max open files\s+(\d+)/m.exec(readText(file));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

interface DenoPermissions {
  permissions: { querySync(d: { name: "read"; path: string }): { state: string } };
}

function mayRead(file: string): boolean {
  const deno = denoNamespace<DenoPermissions>();
  // Deno would prompt on a terminal for a path it may not read.
  return deno === undefined || deno.permissions.querySync({ name: "read", path: file }).state === "granted";
}

/**
 * The Deno adapter: the Node adapter, as Deno runs `node:http`. `Deno.serve`
 * cannot be hardened: its accept loop rejects an uncaught promise on `EMFILE`
 * (the process exits), and it never closes idle or slow connections.
 *
 * @example
 * ```ts ignore
 * import { serveDeno } from "./adapters.ts";
 *
 * const listener = await serveDeno(async () => new Response("ok"), 0, "127.0.0.1", 1 << 20);
 * await listener.close();
 * ```
 */
export const serveDeno: Adapter = (handler, port, hostname, maxBody, limits): Promise<Listener> =>
  serveNode(handler, port, hostname, maxBody, limits);

interface BunServer {
  port: number;
  stop(closeActive?: boolean): Promise<void> | void;
}

/** Bun's `idleTimeout` is whole seconds, 0 (off) to 255. */
const BUN_MAX_IDLE_S = 255;

/**
 * The Bun adapter (`Bun.serve`). Bun survives a failed `accept()` by itself
 * and times out headers after 10 s; this sets its idle timeout and body limit.
 *
 * @example
 * ```ts ignore
 * import { serveBun } from "./adapters.ts";
 *
 * const listener = await serveBun(async () => new Response("ok"), 0, "127.0.0.1", 1 << 20, { idleTimeoutMs: 5_000 });
 * await listener.close();
 * ```
 */
export const serveBun: Adapter = (handler, port, hostname, maxBody, limits): Promise<Listener> => {
  const bun = bunNamespace<{ serve(o: object): BunServer }>()!;
  const { idleTimeoutMs } = resolveLimits(limits);
  const idleTimeout = Math.min(BUN_MAX_IDLE_S, Math.max(1, Math.ceil(idleTimeoutMs / 1000)));
  const server = bun.serve({ port, hostname, fetch: handler, idleTimeout, maxRequestBodySize: maxBody + 1024 * 1024 });
  return Promise.resolve({ port: server.port, close: async () => void await server.stop(true) });
};

/**
 * The Node adapter (`node:http`), also used on Deno. Sets the server's header,
 * request, keep-alive and socket timeouts and its connection cap, and keeps an
 * `error` listener so that a failed `accept()` never throws.
 *
 * @example
 * ```ts ignore
 * import { serveNode } from "./adapters.ts";
 *
 * const listener = await serveNode(async () => new Response("ok"), 0, "127.0.0.1", 1 << 20, { maxConnections: 100 });
 * await listener.close();
 * ```
 */
export const serveNode: Adapter = async (handler, port, hostname, _maxBody, limits): Promise<Listener> => {
  const http = await import("node:http");
  const { Readable } = await import("node:stream");
  const fs = await import("node:fs");
  const net = await import("node:net");
  const resolved = resolveLimits(limits, openFileLimit((file) => fs.readFileSync(file, "utf8")));
  const origin = `http://${hostname.includes(":") ? `[${hostname}]` : hostname}`;
  const server = http.createServer(nodeServerOptions(resolved), (req, res) => {
    const request = toRequest(req, origin, Readable);
    if (request instanceof Error) return void answerMalformed(res, request);
    handler(request).then((response) => sendResponse(req, res, response)).catch(() => {
      if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
      res.end();
    });
  });
  applyLimits(server, resolved);
  await listen(server, port, hostname);
  const address = server.address();
  const bound = typeof address === "object" && address ? address.port : port;
  const gate = capConnections(server, resolved.maxConnections, {
    // net.Server's own close: http.Server's would also end the idle keep-alive connections.
    pause: () => void net.Server.prototype.close.call(server),
    resume: () => listen(server, bound, hostname),
  });
  return {
    port: bound,
    close: () => {
      gate.stop();
      return closeServer(server);
    },
  };
};

interface NodeServerOptions {
  headersTimeout: number;
  requestTimeout: number;
  keepAliveTimeout: number;
  connectionsCheckingInterval: number;
}

/** Node checks header and request deadlines on a timer; a coarse one would let them overrun. */
const MAX_CHECK_INTERVAL_MS = 1_000;

function nodeServerOptions(limits: ResolvedLimits): NodeServerOptions {
  // Node refuses a header deadline beyond the request deadline.
  const requestTimeout = Math.max(limits.requestTimeoutMs, limits.headersTimeoutMs);
  return {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout,
    keepAliveTimeout: limits.idleTimeoutMs,
    connectionsCheckingInterval: Math.max(10, Math.min(MAX_CHECK_INTERVAL_MS, limits.headersTimeoutMs / 4)),
  };
}

function applyLimits(server: Server, limits: ResolvedLimits): void {
  // Some runtimes' node:http read these properties only, not the constructor options.
  const options = nodeServerOptions(limits);
  server.headersTimeout = options.headersTimeout;
  server.requestTimeout = options.requestTimeout;
  server.keepAliveTimeout = options.keepAliveTimeout;
  // Without a 'timeout' listener, Node destroys a socket silent this long: a stalled body, a mute client.
  server.timeout = limits.idleTimeoutMs;
  server.maxConnections = limits.maxConnections;
}

type ReadableClass = typeof import("node:stream").Readable;

function toRequest(req: IncomingMessage, origin: string, readable: ReadableClass): Request | Error {
  try {
    // The URL comes from the socket's own address, not the client's Host header, which may be anything.
    const url = new URL(req.url ?? "/", origin);
    const headers = new Headers();
    for (let i = 0; i < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
    const hasBody = req.method !== "GET" && req.method !== "HEAD";
    return new Request(url, {
      method: req.method,
      headers,
      body: hasBody ? (readable.toWeb(req) as unknown as ReadableStream<Uint8Array>) : undefined,
      duplex: "half",
    } as RequestInit);
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}

function answerMalformed(res: ServerResponse, error: Error): void {
  res.writeHead(400, { "content-type": "application/json" });
  res.end(JSON.stringify({ error: `Malformed request: ${error.message}` }));
}

async function sendResponse(req: IncomingMessage, res: ServerResponse, response: Response): Promise<void> {
  res.writeHead(response.status, Object.fromEntries(response.headers));
  if (!response.body || req.method === "HEAD") return void res.end();
  const reader = response.body.getReader();
  res.on("close", () => void reader.cancel().catch(() => {}));
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (!res.write(value)) await new Promise((r) => res.once("drain", r));
  }
  res.end();
}

interface Gate {
  /** No more listening again: the server is closing. */
  stop(): void;
}

/**
 * Stops listening while `cap` connections are open and listens again once one
 * closes. Refusing at the listening socket, rather than accepting and closing
 * each connection over the cap (Node's `maxConnections`, kept as a backstop),
 * takes no file descriptors: on Deno, the fds of connections closed at once
 * are freed too late for a flood, and its accept loop dies at `EMFILE`.
 */
function capConnections(server: Server, cap: number, listening: { pause(): void; resume(): Promise<void> }): Gate {
  let open = 0;
  let paused = false;
  let stopped = false;
  const resume = (): void => {
    if (stopped || !paused || open >= cap) return;
    paused = false;
    listening.resume().catch(() => {
      paused = true;
      setTimeout(resume, RELISTEN_RETRY_MS);
    });
  };
  server.on("connection", (socket: { once(event: "close", f: () => void): void }) => {
    open++;
    socket.once("close", () => {
      open--;
      resume();
    });
    if (open < cap || paused || stopped) return;
    paused = true;
    listening.pause();
  });
  // Accept errors (EMFILE and the like) arrive here; they must not throw.
  server.on("error", () => {});
  return { stop: () => void (stopped = true) };
}

function listen(server: Server, port: number, hostname: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port, host: hostname, backlog: LISTEN_BACKLOG }, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
