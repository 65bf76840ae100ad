/**
 * The read API over a {@linkcode Store}: `GET /api/v1/experiments`,
 * `/experiment`, `/series`, `/logs` and `/file`. Query parameters are checked
 * here (400 with a message for a bad one); numbers that JSON cannot hold
 * (NaN, ±Infinity) are answered as null.
 *
 * @example
 * ```ts ignore
 * import { listExperiments } from "./read_api.ts";
 * import { JsonlStore } from "./jsonl_store.ts";
 *
 * const res = await listExperiments(new JsonlStore(".dash"), new URL("http://x/api/v1/experiments?limit=10"));
 * ```
 *
 * @module
 */
import { checkedPrefix, LOG_LEVELS, MIME } from "../storage/protocol.ts";
import { HttpError, json } from "./answers.ts";
import { contentType } from "./static.ts";
import type { KeySummary, Store } from "./store.ts";

/**
 * `GET /api/v1/experiments?prefix=&status=&offset=&limit=`.
 *
 * @param store The store.
 * @param url The request's URL.
 * @returns `{experiments, total}`. *
 * @example List the experiments
 * ```ts
 * import { JsonlStore } from "./jsonl_store.ts";
 * import { listExperiments } from "./read_api.ts";
 *
 * const store = new JsonlStore(await Deno.makeTempDir());
 * const key = { prefix: "alice/run-1", session: "s1", seq: 0 };
 * await store.ingest(key, { params: { lr: 0.1 } });
 * const res = await listExperiments(store, new URL("http://localhost/api/v1/experiments?limit=10"));
 * console.log((await res.json()).total); // 1
 * await store.close();
 * ```
 */
export async function listExperiments(store: Store, url: URL): Promise<Response> {
  const prefix = url.searchParams.get("prefix") || undefined;
  const status = url.searchParams.get("status") || undefined;
  const page = await store.list({ prefix, status, offset: intParam(url, "offset", 0)!, limit: intParam(url, "limit", undefined) });
  return json(page);
}

/**
 * `GET /api/v1/experiment?prefix=`.
 *
 * @param store The store.
 * @param url The request's URL.
 * @returns The experiment's overview. *
 * @example Read an experiment's overview
 * ```ts
 * import { JsonlStore } from "./jsonl_store.ts";
 * import { getExperiment } from "./read_api.ts";
 *
 * const store = new JsonlStore(await Deno.makeTempDir());
 * const key = { prefix: "alice/run-1", session: "s1", seq: 0 };
 * await store.ingest(key, { params: { lr: 0.1 } });
 * const res = await getExperiment(store, new URL("http://localhost/api/v1/experiment?prefix=alice/run-1"));
 * console.log((await res.json()).params); // { lr: 0.1 }
 * await store.close();
 * ```
 */
export async function getExperiment(store: Store, url: URL): Promise<Response> {
  const prefix = await existingPrefix(store, url);
  const overview = await store.experiment(prefix);
  return json({ ...overview, summary: finiteOrNull(overview.summary) });
}

/**
 * `GET /api/v1/series?prefix=&key=&x=&from=&to=&offset=&limit=&points=`.
 *
 * @param store The store.
 * @param url The request's URL.
 * @returns `{key, x, value, total, downsampled}`. *
 * @example Read a series
 * ```ts
 * import { JsonlStore } from "./jsonl_store.ts";
 * import { getSeries } from "./read_api.ts";
 *
 * const store = new JsonlStore(await Deno.makeTempDir());
 * const key = { prefix: "alice/run-1", session: "s1", seq: 0 };
 * await store.ingest(key, { metrics: { train: ['{"_ts":1,"step":0,"loss":0.5}\n{"_ts":2,"step":1,"loss":0.4}'] } });
 * const res = await getSeries(store, new URL("http://localhost/api/v1/series?prefix=alice/run-1&key=train/loss"));
 * const { x, value } = await res.json();
 * console.log(x, value); // [ 0, 1 ] [ 0.5, 0.4 ]
 * await store.close();
 * ```
 */
export async function getSeries(store: Store, url: URL): Promise<Response> {
  const prefix = await existingPrefix(store, url);
  const key = requiredParam(url, "key");
  const page = await store.series(prefix, key, {
    x: url.searchParams.get("x") || "step",
    from: numberParam(url, "from"),
    to: numberParam(url, "to"),
    offset: intParam(url, "offset", 0)!,
    limit: intParam(url, "limit", undefined),
    points: intParam(url, "points", 1000, 1_000_000)!,
  });
  return json({ key, x: page.x, value: page.value.map(nullIfNotFinite), total: page.total, downsampled: page.downsampled });
}

/**
 * `GET /api/v1/logs?prefix=&level=&offset=&limit=`.
 *
 * @param store The store.
 * @param url The request's URL.
 * @returns `{logs, total}`. *
 * @example Read the logs of a level
 * ```ts
 * import { JsonlStore } from "./jsonl_store.ts";
 * import { getLogs } from "./read_api.ts";
 *
 * const store = new JsonlStore(await Deno.makeTempDir());
 * const key = { prefix: "alice/run-1", session: "s1", seq: 0 };
 * await store.ingest(key, { logs: ['{"_ts":1,"level":"info","message":"started"}'] });
 * const res = await getLogs(store, new URL("http://localhost/api/v1/logs?prefix=alice/run-1&level=info"));
 * console.log((await res.json()).logs[0].message); // started
 * await store.close();
 * ```
 */
export async function getLogs(store: Store, url: URL): Promise<Response> {
  const prefix = await existingPrefix(store, url);
  const level = url.searchParams.get("level") || undefined;
  if (level !== undefined && !LOG_LEVELS.includes(level)) {
    throw new HttpError(400, `Invalid query parameter level=${JSON.stringify(level)}: expected debug, info, warn, error or fatal`);
  }
  return json(await store.logs(prefix, { level, offset: intParam(url, "offset", 0)!, limit: intParam(url, "limit", undefined) }));
}

/**
 * `GET /api/v1/file?prefix=&path=`: the file, as a sandboxed download unless its whole type is one a browser shows without running it.
 *
 * @param store The store.
 * @param url The request's URL.
 * @returns The file's bytes. *
 * @example Download a file
 * ```ts
 * import { JsonlStore } from "./jsonl_store.ts";
 * import { getFile } from "./read_api.ts";
 *
 * const store = new JsonlStore(await Deno.makeTempDir());
 * const key = { prefix: "alice/run-1", session: "s1", seq: 0 };
 * const data = new TextEncoder().encode("hello");
 * await store.ingest(key, { files: [{ path: "notes.txt", data, size: data.length, mime: "text/plain", _ts: 1 }] });
 * const res = await getFile(store, new URL("http://localhost/api/v1/file?prefix=alice/run-1&path=notes.txt"));
 * console.log(res.headers.get("content-type"), await res.text()); // text/plain hello
 * await store.close();
 * ```
 */
export async function getFile(store: Store, url: URL): Promise<Response> {
  const prefix = await existingPrefix(store, url);
  const file = requiredParam(url, "path");
  const stored = await store.file(prefix, file);
  if (!stored) throw new HttpError(404, `Unknown file "${file}" in experiment "${prefix}"`);
  return new Response(stored.data as BodyInit, { headers: savedFileHeaders(stored.mime, file) });
}

/**
 * The headers of a saved file's download. A saved file is anyone's upload: it
 * must not run as a page of the dashboard's origin, so it is sandboxed, never
 * sniffed, and a download unless its whole type is one a browser shows without
 * running it.
 *
 * @param mime The type it was saved with, if any (one that is not a media type is replaced by the name's).
 * @param file Its path.
 * @returns The headers.
 *
 * @example
 * ```ts
 * import { savedFileHeaders } from "./read_api.ts";
 *
 * console.log(savedFileHeaders("text/html", "x.html")["content-disposition"]); // attachment; filename="x.html"; ...
 * ```
 */
export function savedFileHeaders(mime: string | undefined, file: string): Record<string, string> {
  const type = mime !== undefined && MIME.test(mime) ? mime : contentType(file);
  const headers: Record<string, string> = {
    "content-type": type,
    "x-content-type-options": "nosniff",
    "content-security-policy": "sandbox",
  };
  if (!INLINE_MIME.test(type)) headers["content-disposition"] = attachment(file.split("/").pop()!);
  return headers;
}

/** The whole type, parameters aside, must be one a browser shows without running it. */
const INLINE_MIME = /^(image\/(png|jpeg|gif|webp)|text\/plain)\s*(;[\x20-\x7e]*)?$/i;

/** `Content-Disposition: attachment` with an ASCII name and the exact name as UTF-8 (RFC 6266 `filename*`). */
function attachment(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\%]/g, "_");
  const exact = encodeURIComponent(name).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename="${ascii}"; filename*=UTF-8''${exact}`;
}

async function existingPrefix(store: Store, url: URL): Promise<string> {
  const prefix = queryPrefix(requiredParam(url, "prefix"));
  if (!(await store.exists(prefix))) throw new HttpError(404, `Unknown experiment "${prefix}"`);
  return prefix;
}

/**
 * A `prefix` query parameter, checked.
 *
 * @param value The parameter's value.
 * @returns The prefix.
 * @throws {HttpError} 400 for a prefix the path rules refuse.
 *
 * @example Check a prefix from a query
 * ```ts
 * import { queryPrefix } from "./read_api.ts";
 *
 * console.log(queryPrefix("alice/run-1")); // alice/run-1
 * try {
 *   queryPrefix("../x");
 * } catch (error) {
 *   console.log((error as { status: number }).status); // 400
 * }
 * ```
 */
export function queryPrefix(value: string): string {
  try {
    return checkedPrefix(value, "prefix");
  } catch (error) {
    throw new HttpError(400, error instanceof Error ? error.message : String(error));
  }
}

function requiredParam(url: URL, name: string): string {
  const value = url.searchParams.get(name);
  if (value === null || value === "") throw new HttpError(400, `Missing query parameter "${name}"`);
  return value;
}

function intParam(url: URL, name: string, fallback: number | undefined, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const text = url.searchParams.get(name);
  if (text === null || text === "") return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new HttpError(400, `Invalid query parameter ${name}=${JSON.stringify(text)}: expected an integer from 0 to ${max}`);
  }
  return value;
}

function numberParam(url: URL, name: string): number | undefined {
  const text = url.searchParams.get(name);
  if (text === null || text === "") return undefined;
  const value = Number(text);
  if (!Number.isFinite(value)) throw new HttpError(400, `Invalid query parameter ${name}=${JSON.stringify(text)}: expected a number`);
  return value;
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
