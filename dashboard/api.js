// @ts-check
// The server's read API: URLs (with the read token of the page's own URL), JSON
// GETs with a cap on concurrent requests, and the server-sent event stream.
// Also the shapes of what the server answers.

/**
 * An experiment as listed by GET experiments.
 * @typedef {object} ExperimentSummary
 * @property {string} prefix
 * @property {string} status RUNNING, COMPLETED, FAILED, CANCELLED or UNKNOWN
 * @property {boolean} [stale] a RUNNING run whose heartbeat stopped
 * @property {string[]} tags
 * @property {string} [readme]
 * @property {number} [createdAt] epoch seconds, like the other times
 * @property {number} [startedAt]
 * @property {number | null} [endedAt]
 * @property {number} [heartbeatAt]
 */

/**
 * Count, min, max and last value of a metric key.
 * @typedef {object} KeySummary
 * @property {number} count
 * @property {number | null} min
 * @property {number | null} max
 * @property {number | null} last
 * @property {number | null} lastStep
 */

/**
 * A saved file.
 * @typedef {object} SavedFile
 * @property {string} path
 * @property {number} size bytes
 * @property {string} [mime]
 * @property {number} _ts when it was saved
 */

/**
 * status.json of a run.
 * @typedef {object} RunStatus
 * @property {string} [status]
 * @property {boolean} [stale]
 * @property {number} [startedAt]
 * @property {number | null} [endedAt]
 * @property {number} [heartbeatAt]
 * @property {number} [pid]
 * @property {string} [host]
 * @property {string} [error]
 */

/**
 * An experiment as GET experiment describes it; `error` when it could not be read.
 * @typedef {object} ExperimentDetail
 * @property {string} prefix
 * @property {{ tags?: string[], readme?: string, createdAt?: number, metadata?: Record<string, unknown> } | null} [metadata]
 * @property {RunStatus | null} [status]
 * @property {Record<string, unknown>} [params]
 * @property {Record<string, KeySummary>} [summary]
 * @property {SavedFile[]} [files]
 * @property {string} [error]
 */

/**
 * A row of GET runs: a run with its params and each metric key's last, min and max.
 * @typedef {object} RunRow
 * @property {string} prefix
 * @property {string} name
 * @property {string} status with STALE for a run whose heartbeat stopped
 * @property {boolean} [stale]
 * @property {number} [createdAt]
 * @property {number} [startedAt]
 * @property {number | null} [endedAt]
 * @property {number} [heartbeatAt]
 * @property {string[]} tags
 * @property {string} [readme]
 * @property {Record<string, unknown>} [metadata]
 * @property {Record<string, unknown>} params
 * @property {Record<string, { last: number | null, min: number | null, max: number | null, count: number }>} metrics
 */

/**
 * A page of GET experiments.
 * @typedef {{ experiments: ExperimentSummary[], total?: number }} ExperimentPage
 */

/**
 * GET series: parallel arrays of x and values, at most about one point per pixel.
 * @typedef {{ x: (number | string | null)[], value: (number | string | null)[], total?: number, downsampled?: boolean }} SeriesPage
 */

/**
 * A log line: its time, level and message, and any other fields it was logged with.
 * @typedef {{ _ts: number, level: string, message: unknown, [field: string]: unknown }} LogLine
 */

/**
 * A page of GET logs.
 * @typedef {{ logs: LogLine[], total: number }} LogPage
 */

/**
 * Query parameters; undefined, null and "" are left out.
 * @typedef {Record<string, string | number | null | undefined>} Query
 */

const API = new URL("../api/v1/", import.meta.url);
// A server with a read token: open the page as /?access_token=T (sent with every read).
const ACCESS_TOKEN = new URLSearchParams(location.search).get("access_token");
const FETCH_CONCURRENCY = 4; // the event stream holds one of the browser's 6 connections
const STREAM_RETRY_MS = 3000;

/**
 * The URL of an API endpoint with its query.
 * @param {string} path
 * @param {Query} [params]
 * @returns {URL}
 */
function apiUrl(path, params = {}) {
  const url = new URL(path, API);
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, String(v));
  }
  if (ACCESS_TOKEN) url.searchParams.set("access_token", ACCESS_TOKEN);
  return url;
}

let active = 0;
/** @type {(() => void)[]} */
const waiting = [];

/**
 * A request that failed: the server's status and message, or status 0 when the
 * server could not be reached.
 */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} message
   */
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/**
 * GET a JSON endpoint, at most FETCH_CONCURRENCY at once.
 * @param {string} path
 * @param {Query} [params]
 * @returns {Promise<any>}
 */
export async function fetchJson(path, params = {}) {
  return await limited(() => requestJson(apiUrl(path, params), {}));
}

/**
 * Sends a JSON body to a write endpoint with the write token given.
 * @param {string} path
 * @param {unknown} body
 * @param {string} [token] the server's write token, when it has one
 * @returns {Promise<any>}
 */
export async function postJson(path, body, token) {
  /** @type {Record<string, string>} */
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  return await limited(() => requestJson(apiUrl(path), { method: "POST", headers, body: JSON.stringify(body) }));
}

/**
 * Runs a request once fewer than FETCH_CONCURRENCY are under way.
 * @template T
 * @param {() => Promise<T>} request
 * @returns {Promise<T>}
 */
async function limited(request) {
  if (active >= FETCH_CONCURRENCY) await new Promise((resolve) => waiting.push(() => resolve(undefined)));
  active++;
  try {
    return await request();
  } finally {
    active--;
    waiting.shift()?.();
  }
}

/**
 * A request's JSON answer; an ApiError with the server's message when it fails.
 * @param {URL} url
 * @param {RequestInit} init
 * @returns {Promise<any>}
 */
async function requestJson(url, init) {
  /** @type {Response} */
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError(0, "Could not reach the server");
  }
  if (!response.ok) {
    const body = await response.text().catch(() => "");
    throw new ApiError(response.status, serverMessage(body) || `${response.status} ${response.statusText}`);
  }
  return await response.json();
}

/**
 * The message of an error answer `{"error": "..."}`, else its start.
 * @param {string} body
 * @returns {string}
 */
function serverMessage(body) {
  try {
    const parsed = JSON.parse(body);
    if (parsed && typeof parsed.error === "string") return parsed.error;
  } catch {
    // Not JSON: the text itself.
  }
  return body.slice(0, 200);
}

/**
 * The download URL of a saved file.
 * @param {string} prefix
 * @param {string} path
 * @returns {string}
 */
export function fileUrl(prefix, path) {
  return apiUrl("file", { prefix, path }).href;
}

/**
 * What an event of the stream says changed.
 * @typedef {{ prefix?: string } | null} StreamEvent
 */

/**
 * Listeners of the event stream: the connection opening and failing (the
 * browser reconnects by itself), and events by type (experiment, metrics, logs).
 * @typedef {object} StreamListeners
 * @property {() => void} onOpen
 * @property {() => void} onError
 * @property {Record<string, (event: StreamEvent) => void>} onEvent
 */

/**
 * Opens the server's event stream, if the browser has EventSource.
 * @param {StreamListeners} listeners
 */
export function openEventStream(listeners) {
  if (!("EventSource" in globalThis)) return;
  const source = new EventSource(apiUrl("events"));
  source.addEventListener("open", listeners.onOpen);
  source.addEventListener("error", () => {
    listeners.onError();
    // The browser gives up on an answer that is not a stream (a proxy's 502): start over.
    if (source.readyState === EventSource.CLOSED) setTimeout(() => openEventStream(listeners), STREAM_RETRY_MS);
  });
  for (const [type, listener] of Object.entries(listeners.onEvent)) {
    source.addEventListener(type, (event) => listener(parseEvent(event.data)));
  }
}

/**
 * @param {string} text
 * @returns {StreamEvent}
 */
function parseEvent(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/**
 * The message of a failed request, to show.
 * @param {unknown} error
 * @returns {string}
 */
export function errorMessage(error) {
  return error instanceof Error ? error.message : String(error);
}
