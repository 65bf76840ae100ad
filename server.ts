/// <reference lib="dom" preserve="true" />
/**
 * The ml-dash server. {@linkcode createHandler} is a Web-standard fetch handler
 * (`(req: Request) => Promise<Response>`) that ingests batches from
 * `storage/http.ts` clients and serves a read API, server-sent events and the
 * dashboard over a store: by default the JSONL store, which keeps the `.dash`
 * layout on the server's disk. {@linkcode serve} runs the handler on Deno, Bun
 * or Node through a small adapter per runtime.
 *
 * The parts, one concept a file, in `server/`: `handler.ts` (routing and error
 * answers), `guard.ts` (hosts, origins, CORS), `auth.ts` (tokens), `body.ts`
 * (bodies within limits), `read_api.ts`, `events.ts` (server-sent events),
 * `static.ts` (the dashboard's files), `store.ts` (the `Store` contract),
 * `jsonl_store.ts` with `ledger.ts` and `jsonl_watch.ts` (the JSONL store), and
 * `adapters.ts` (one adapter per runtime). The wire protocol is
 * `storage/protocol.ts`.
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
import { ConfigError } from "./storage/errors.ts";
import { pickAdapter } from "./server/adapters.ts";
import type { ConnectionLimits, Listener } from "./server/adapters.ts";
import { createHandler, DEFAULT_MAX_BODY } from "./server/handler.ts";
import type { DashHandler, HandlerOptions } from "./server/handler.ts";
import { RequestGuard } from "./server/guard.ts";
import { ClickHouseStore } from "./server/clickhouse_store.ts";
import { readEnv } from "./storage/runtime.ts";

export { createHandler } from "./server/handler.ts";
export type { DashHandler, Fault, HandlerOptions, HandlerStats } from "./server/handler.ts";
export type { BatchEnvelope, WireBatch } from "./storage/protocol.ts";
export { JsonlStore } from "./server/jsonl_store.ts";
export type { JsonlStoreOptions } from "./server/jsonl_store.ts";
export { ClickHouseStore } from "./server/clickhouse_store.ts";
export type { ClickHouseInfo, ClickHouseStoreOptions } from "./server/clickhouse_store.ts";
// The Store contract and the types of its answers.
export type * from "./server/store.ts";
export type { ConnectionLimits } from "./server/adapters.ts";


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
  /**
   * Keep experiments in ClickHouse instead of `root`: its HTTP interface,
   * `http://[user:password@]host:8123/<database>[?cluster=name]` (see
   * {@linkcode ClickHouseStore.connect}). Default, when no `store` is given:
   * the variable `ML_DASH_CLICKHOUSE_URL`; unset, the JSONL store of `root`.
   */
  clickhouse?: string;
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
  const clickhouse = options.store ? undefined : options.clickhouse ?? readEnv("ML_DASH_CLICKHOUSE_URL");
  // Connecting checks the address and the credentials and makes the tables: a server that could not store anything does not start.
  const store = clickhouse ? await ClickHouseStore.connect(clickhouse) : options.store;
  const handler = createHandler({ ...options, store, allowedHosts, log: options.log ?? (options.quiet ? undefined : (l) => console.error(`ml-dash: ${l}`)) });
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
  say(`serving ${describeStore(store, options.root)} at ${url}`);
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

function describeStore(store: ServeOptions["store"], root: string | undefined): string {
  if (store instanceof ClickHouseStore) {
    const { database, url, user, version, cluster } = store.info;
    return `ClickHouse database ${JSON.stringify(database)} at ${url} (ClickHouse ${version}${user !== undefined ? `, user ${JSON.stringify(user)}` : ""}${cluster ? `, cluster ${JSON.stringify(cluster)}` : ""})`;
  }
  return store ? "a store" : JSON.stringify(root);
}

function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || hostname === "[::1]" || /^127\./.test(hostname);
}

