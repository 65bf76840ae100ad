/**
 * The remote backend: sends batches to an ml-dash server (`server.ts`, or any
 * server that speaks the same protocol) with `fetch`.
 *
 * Every batch travels as `POST /api/v1/batch` with the experiment's prefix, this
 * backend's session id and a sequence number, so the server stores it once
 * however often it is retried. Failed sends are retried with exponential
 * backoff and jitter (honouring `Retry-After`); a batch is kept until the server
 * acknowledges it. When the server stays unreachable past a bound, batches are
 * spooled to `<root>/.outbox/` where a filesystem exists (for `ml-dash sync`),
 * and kept in a bounded in-memory queue where none does. This module imports
 * nothing that needs a filesystem until an experiment is opened (the outbox is
 * made ready then, for a process that exits) or it reads credentials.
 *
 * @example Log to a server
 * ```ts ignore
 * import { Experiment } from "../mod.ts";
 *
 * await new Experiment({ prefix: "alice/demo/x", dashUrl: "http://127.0.0.1:8787" })
 *   .run(async (exp) => exp.metrics("train").log({ loss: 0.5 }));
 * ```
 *
 * @module
 */
import { checkUrl } from "./backend.ts";
import type { Backend, Batch, ExistingState } from "./backend.ts";
import { StorageError } from "./errors.ts";
import { outboxDir, outboxFile, replaceFileSync } from "./layout.ts";
import { encodeJson, encodeNdjson, JSON_TYPE, NDJSON_TYPE, textOf } from "./protocol.ts";
import { isPage, permissionGranted, readEnv } from "./runtime.ts";

/** Options of {@linkcode HttpBackend}. */
export interface HttpBackendOptions {
  /** The server's base URL, e.g. `http://127.0.0.1:8787`. */
  url: string;
  /** Bearer token; default `ML_DASH_TOKEN`, then `~/.dash/credentials.json`. */
  token?: string;
  /** Directory whose `.outbox/` receives unsent batches (default `ML_DASH_ROOT`, else `.dash`). */
  outboxRoot?: string;
  /** `false` keeps unsent batches in memory only, even where a filesystem exists. */
  outbox?: boolean;
  /** The session id (default: a random UUID). */
  session?: string;
  /**
   * Stop retrying a batch after this many ms and spool it, a request that hangs included (default
   * `ML_DASH_HTTP_TIMEOUT` seconds, else 30 s). A request with a large body gets more: the time left
   * plus its body at 256 KiB/s, so that a slow upload that progresses is not cut short.
   */
  giveUpAfterMs?: number;
  /** First retry delay in ms (default 100); it doubles up to `maxDelayMs`. */
  initialDelayMs?: number;
  /** Longest retry delay in ms (default 2000). */
  maxDelayMs?: number;
  /** Compress bodies with gzip: `true`, `false`, or `"auto"` (default: bodies over 64 KiB to a non-loopback host). */
  gzip?: boolean | "auto";
  /** Unacknowledged batches kept in memory when there is no outbox (default 1000). */
  maxQueuedBatches?: number;
  /** Bytes of records per request; larger batches are split (default 8 MiB). */
  maxBytesPerRequest?: number;
  /**
   * When the server stays unreachable past the bound at `open()`, resolve with an
   * empty state marked `unreachable` instead of rejecting, so that a run can start and
   * keep its records for the server (default `false`). A refusal (401, 400) still rejects.
   */
  openWhenUnreachable?: boolean;
}

/** One request of the protocol, with its body ready to send. */
interface Envelope {
  prefix: string;
  session: string;
  seq: number;
  batch: Batch;
  body?: string;
  acked: boolean;
  spooled?: string;
  /** Handed over as a page hid: the buffer holds its batch no more, so the next write sends it if the server did not acknowledge it. */
  orphaned?: boolean;
}

/** Why a request failed. */
interface Failure {
  message: string;
  retryable: boolean;
  /** The HTTP status the server answered, if it answered. */
  status?: number;
  retryAfterMs?: number;
}

/** The error for a failed request: the server's status, if it answered, and whether a retry can help. */
function failureError(message: string, failure: Failure, cause?: unknown): StorageError {
  const { status, retryable } = failure;
  return new StorageError(message, cause === undefined ? { status, retryable } : { cause, status, retryable });
}

type FileSystem = typeof import("./file_system.ts").fileSystem;

/**
 * Sends batches to an ml-dash server. Used by `mod.ts` when `dashUrl` is set
 * (with `dashRoot` too, records go to both).
 *
 * @example Use the backend directly (a server must listen on the URL)
 * ```ts ignore
 * import { HttpBackend } from "./http.ts";
 *
 * const backend = new HttpBackend({ url: "http://127.0.0.1:8787" });
 * await backend.open("alice/demo/x");
 * // Metric records travel as JSON text, one record a line.
 * await backend.write("alice/demo/x", { metrics: { train: ['{"_ts":1,"step":0,"loss":1}'] } });
 * await backend.close();
 * ```
 */
export class HttpBackend implements Backend {
  /** The server URL, for error messages. */
  readonly description: string;
  /** This backend's session id. */
  readonly session: string;
  #base: string;
  #options: HttpBackendOptions;
  #giveUpAfterMs: number;
  #seq = 0;
  #envelopes = new WeakMap<Batch, Envelope[]>();
  #pending = new Set<Envelope>();
  #down = false;
  #token: Promise<string | undefined> | undefined;
  /** The token once known: as a page hides, nothing can be awaited. */
  #resolvedToken: string | undefined;
  #fs: Promise<FileSystem | undefined> | undefined;
  /** The outbox's file system once loaded: at process exit nothing can be awaited. */
  #loadedFs: FileSystem | undefined;

  /**
   * Creates a backend for one server; nothing is sent until `open()`.
   *
   * @param options The server URL, token, retry bounds and outbox.
   * @throws {ConfigError} For a URL that is not http(s).
   */
  constructor(options: HttpBackendOptions) {
    checkUrl(options.url);
    this.#options = options;
    this.#base = options.url.replace(/\/+$/, "");
    this.description = this.#base;
    this.session = options.session ?? crypto.randomUUID();
    const envTimeout = Number(readEnv("ML_DASH_HTTP_TIMEOUT"));
    this.#giveUpAfterMs = options.giveUpAfterMs ?? (envTimeout >= 0 && readEnv("ML_DASH_HTTP_TIMEOUT") ? envTimeout * 1000 : 30_000);
  }

  /**
   * Asks the server for what the experiment holds (`POST /api/v1/open`),
   * retrying while it is unreachable, up to the bound.
   *
   * @param prefix The experiment's prefix.
   * @returns Parameters and files recorded by earlier sessions.
   */
  async open(prefix: string): Promise<ExistingState> {
    try {
      // The outbox is made ready now, so that a process.exit() later can still spool to it.
      const [state] = await Promise.all([this.post("/api/v1/open", JSON.stringify({ prefix })) as Promise<Partial<ExistingState>>, this.#filesystem()]);
      return { params: state.params ?? {}, files: state.files ?? [], steps: state.steps ?? {} };
    } catch (error) {
      const message = `Could not open "${prefix}" on ${this.#base}: ${errorText(error)}`;
      if (this.#down && this.#options.openWhenUnreachable) return { params: {}, files: [], steps: {}, unreachable: message };
      throw error instanceof StorageError
        ? new StorageError(message, { cause: error, status: error.status, retryable: error.retryable })
        : new StorageError(message, { cause: error });
    }
  }

  /**
   * Posts JSON to a path of the server, retrying network errors, 5xx and 429
   * up to the bound, and returns the parsed answer. The building block of
   * `open()`; `ml-dash sync` uses it to send outbox files.
   *
   * @param pathname The API path, e.g. `/api/v1/open`.
   * @param body JSON text.
   * @returns The parsed JSON answer.
   * @throws {StorageError} When the server refuses it or stays unreachable.
   */
  async post(pathname: string, body: string): Promise<unknown> {
    const result = await this.#postRetrying(pathname, body, JSON_TYPE, false);
    if ("value" in result) return result.value;
    throw failureError(result.message, result);
  }

  /**
   * Posts with retries (network errors, 5xx, 408, 429) up to the bound, or once
   * when `onceWhileDown` and the server has been out for a whole bound already.
   * Returns the answer, or the last failure.
   */
  async #postRetrying(pathname: string, body: string, type: string, onceWhileDown: boolean): Promise<{ value: unknown } | Failure> {
    const started = Date.now();
    for (let attempt = 0;; attempt++) {
      // A server that accepts the connection and never answers is bounded too (a Worker's waitUntil budget is 30 s).
      const result = await this.#post(pathname, body, type, this.#giveUpAfterMs - (Date.now() - started));
      if ("value" in result) {
        this.#down = false;
        return result;
      }
      const waited = Date.now() - started;
      if (!result.retryable || (onceWhileDown && this.#down) || waited >= this.#giveUpAfterMs) {
        // Out for the whole bound: later batches are tried once and kept, until a request succeeds again.
        if (result.retryable) this.#down = true;
        return result;
      }
      await sleep(Math.min(this.#delay(attempt, result), Math.max(0, this.#giveUpAfterMs - waited)));
    }
  }

  /**
   * Sends a batch and resolves once the server has acknowledged it. A batch
   * passed again (a retry) keeps its sequence numbers, so it is never stored twice.
   *
   * @param prefix The experiment's prefix.
   * @param batch The records and state patches.
   * @throws {StorageError} When the server stays unreachable past the bound or
   * refuses the batch; the message says where the batch is kept.
   */
  async write(prefix: string, batch: Batch): Promise<void> {
    const envelopes = [...this.#unackedOrphans(), ...await this.#envelopesOf(prefix, batch)];
    for (let i = 0; i < envelopes.length; i++) {
      const envelope = envelopes[i];
      if (envelope.acked) continue;
      const failure = await this.#deliver(envelope);
      if (!failure) continue;
      const unsent = envelopes.slice(i).filter((e) => !e.acked);
      const error = await this.#keep(unsent, failure);
      if (!failure.retryable) {
        // A refused request would be refused again: it stays in the outbox (if there is one), and what follows goes on.
        const refused = unsent[0];
        refused.acked = true;
        this.#pending.delete(refused);
        if (!refused.spooled) {
          throw failureError(`Could not send a batch to ${this.#base}: ${failure.message}; the server refused it and there is no outbox to keep it in, so it was dropped`, failure);
        }
      }
      throw error;
    }
  }

  /**
   * Spools batches that wait behind a failed one to the outbox without sending
   * them, so that they outlive the process; they are still sent, in order, by
   * later writes.
   *
   * @param prefix The experiment's prefix.
   * @param batches The batches, oldest first.
   */
  async keep(prefix: string, batches: Batch[]): Promise<void> {
    for (const batch of batches) {
      const envelopes = (await this.#envelopesOf(prefix, batch)).filter((e) => !e.acked);
      if (envelopes.length > 0) await this.#keep(envelopes, { message: "kept behind an earlier batch", retryable: true });
    }
  }

  /**
   * At process exit, where nothing asynchronous runs any more: saves the batch,
   * and every batch not yet acknowledged (one being sent, ones waiting for a
   * retry), to the outbox synchronously, for `ml-dash sync`. A batch that the
   * server did store after all is recognised there by its sequence number.
   *
   * @param prefix The experiment's prefix.
   * @param batch The records and state patches.
   * @throws {StorageError} Where there is no outbox, or it cannot be written.
   */
  writeAtExit = (prefix: string, batch: Batch): void => {
    this.#makeEnvelopes(prefix, batch);
    const unsent = [...this.#pending].filter((e) => !e.acked && !e.spooled);
    if (unsent.length === 0) return;
    const fs = this.#loadedFs;
    if (!fs && isPage()) return this.#sendAsPageHides(unsent);
    if (!fs) throw new StorageError(`Could not keep ${unsent.length} batch(es) for ${this.#base} at exit: there is no outbox (no filesystem, or it was not ready)`);
    try {
      this.#spool(fs, unsent);
    } catch (error) {
      throw new StorageError(`Could not keep ${unsent.length} batch(es) for ${this.#base} at exit in the outbox: ${errorText(error)}`, { cause: error });
    }
  };

  /**
   * A page is hidden or left, and nothing may be awaited: the batches go with
   * `fetch(..., { keepalive: true })`, which the browser completes after the
   * page is gone, as many as fit in its 64 KiB of keepalive bodies, in order.
   * A batch counts as sent only once the server answers ok: should the page
   * stay, the next write sends again what was not acknowledged (the server
   * recognises a batch that comes twice by its sequence number).
   */
  #sendAsPageHides(envelopes: Envelope[]): void {
    let budget = KEEPALIVE_BYTES;
    for (const [i, envelope] of envelopes.entries()) {
      const body = utf8Bytes(envelope.body ??= encodeNdjson(envelope));
      if (body.length > budget) {
        throw new StorageError(
          `Could not send ${envelopes.length - i} batch(es) to ${this.#base} as the page was hidden: over the browser's ${KEEPALIVE_BYTES / 1024} KiB for requests that outlive a page (flush more often, or call run.flush() before leaving the page)`,
        );
      }
      budget -= body.length;
      const headers: Record<string, string> = { "content-type": NDJSON_TYPE };
      if (this.#resolvedToken) headers.authorization = `Bearer ${this.#resolvedToken}`;
      envelope.orphaned = true;
      fetch(this.#base + "/api/v1/batch", { method: "POST", headers, body: body as BodyInit, keepalive: true })
        .then((response) => response.ok && this.#acknowledge(envelope))
        .catch(() => {});
    }
  }

  /** The batches handed over as a page hid that the server has not acknowledged, oldest first. */
  #unackedOrphans(): Envelope[] {
    return [...this.#pending].filter((e) => e.orphaned && !e.acked).sort((a, b) => a.seq - b.seq);
  }

  #acknowledge(envelope: Envelope): void {
    envelope.acked = true;
    envelope.body = undefined;
    this.#pending.delete(envelope);
  }

  /** The requests of a batch: made once, so that a retry keeps its sequence numbers. */
  async #envelopesOf(prefix: string, batch: Batch): Promise<Envelope[]> {
    const made = this.#envelopes.get(batch);
    if (made) return made;
    const parts = this.#split(batch);
    const max = this.#options.maxQueuedBatches ?? 1000;
    if (this.#pending.size + parts.length > max && !(await this.#filesystem())) {
      throw new StorageError(
        `In-memory queue for ${this.#base} is full: ${this.#pending.size} batches are waiting for the server and there is no filesystem for an outbox; the new batch was not queued (raise maxQueuedBatches or bring the server back)`,
      );
    }
    return this.#makeEnvelopes(prefix, batch, parts);
  }

  #makeEnvelopes(prefix: string, batch: Batch, parts?: Batch[]): Envelope[] {
    let envelopes = this.#envelopes.get(batch);
    if (envelopes) return envelopes;
    parts ??= this.#split(batch);
    envelopes = parts.map((part) => ({ prefix, session: this.session, seq: this.#seq++, batch: part, acked: false }));
    this.#envelopes.set(batch, envelopes);
    for (const e of envelopes) this.#pending.add(e);
    return envelopes;
  }

  #split(batch: Batch): Batch[] {
    return splitBatch(batch, this.#options.maxBytesPerRequest ?? 8 * 1024 * 1024);
  }

  /** Nothing to release: connections are pooled by `fetch`. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Sends one envelope with retries; returns the last failure if it was not acknowledged. */
  async #deliver(envelope: Envelope): Promise<Failure | undefined> {
    envelope.body ??= encodeNdjson(envelope);
    const result = await this.#postRetrying("/api/v1/batch", envelope.body, NDJSON_TYPE, true);
    if (!("value" in result)) return result;
    this.#acknowledge(envelope);
    if (envelope.spooled) await this.#unspool(envelope.spooled);
    return undefined;
  }

  /** Spools unacknowledged envelopes (or keeps them in memory) and builds the error that says where. */
  async #keep(envelopes: Envelope[], failure: Failure): Promise<StorageError> {
    const fs = await this.#filesystem();
    const reason = `Could not send a batch to ${this.#base}: ${failure.message}`;
    if (fs) {
      const dir = this.#outboxDir(envelopes[0].prefix);
      try {
        this.#spool(fs, envelopes);
        if (!failure.retryable) {
          return failureError(
            `${reason}; the server refused it, so it is not sent again: it is saved in the outbox ${dir} (${envelopes[0].spooled}), and later batches go on`,
            failure,
          );
        }
        return failureError(
          `${reason}; ${envelopes.length} batch(es) saved in the outbox ${dir} — they are retried at the next flush, or send them with "ml-dash sync --outbox-only --url ${this.#base} --root ${this.#outboxRoot()}"`,
          failure,
        );
      } catch (error) {
        return failureError(`${reason}; could not write the outbox ${dir} (${errorText(error)}): the data is kept in memory and retried at the next flush`, failure, error);
      }
    }
    return failureError(
      `${reason}; no filesystem for an outbox: ${this.#pending.size} batch(es) are kept in memory (at most ${this.#options.maxQueuedBatches ?? 1000}) and retried at the next flush`,
      failure,
    );
  }

  /** Writes each envelope not yet spooled to `<outbox>/<prefix>/<session>-<seq>.json` (temp file + rename). */
  #spool(fs: FileSystem, envelopes: Envelope[]): void {
    for (const envelope of envelopes) {
      if (envelope.spooled) continue;
      fs.makeDirectory(this.#outboxDir(envelope.prefix));
      const file = outboxFile(this.#outboxRoot(), envelope.prefix, envelope.session, envelope.seq);
      // The outbox holds the JSON form of the protocol: one file, one request, readable with jq.
      replaceFileSync(fs, file, encodeJson(envelope));
      envelope.spooled = file;
    }
  }

  #outboxRoot(): string {
    return this.#options.outboxRoot ?? readEnv("ML_DASH_ROOT") ?? ".dash";
  }

  #outboxDir(prefix: string): string {
    return outboxDir(this.#outboxRoot(), prefix);
  }

  async #unspool(file: string): Promise<void> {
    const fs = await this.#filesystem();
    try {
      fs?.remove(file);
    } catch {
      // Left behind, it is sent again by `ml-dash sync` and recognised as a duplicate.
    }
  }

  /** The sync file operations where files may be written (not in Deno with --deny-write, nor where there is no filesystem). */
  #filesystem(): Promise<FileSystem | undefined> {
    if (this.#options.outbox === false) return Promise.resolve(undefined);
    return this.#fs ??= (async () => {
      if (!permissionGranted("write", this.#outboxRoot())) return undefined;
      const { fileSystem, hasFileSystem } = await import("./file_system.ts");
      return hasFileSystem ? this.#loadedFs = fileSystem : undefined;
    })();
  }

  #delay(attempt: number, failure: Failure): number {
    if (failure.retryAfterMs !== undefined) return failure.retryAfterMs;
    const base = Math.min(this.#options.maxDelayMs ?? 2000, (this.#options.initialDelayMs ?? 100) * 2 ** attempt);
    return base / 2 + Math.random() * base / 2;
  }

  /** One POST; resolves to the parsed answer or a failure (never rejects). */
  async #post(pathname: string, body: string, contentType: string, timeLeftMs: number): Promise<{ value: unknown } | Failure> {
    this.#token ??= resolveToken(this.#base, this.#options.token);
    const token = this.#resolvedToken = await this.#token;
    const headers: Record<string, string> = { "content-type": contentType };
    if (token) headers.authorization = `Bearer ${token}`;
    let payload: Uint8Array;
    if (this.#shouldGzip(body)) {
      payload = await gzip(body);
      headers["content-encoding"] = "gzip";
    } else {
      payload = utf8Bytes(body);
    }
    let response: Response;
    try {
      const signal = AbortSignal.timeout(requestTimeoutMs(timeLeftMs, payload.length));
      response = await fetch(this.#base + pathname, { method: "POST", headers, body: payload as BodyInit, signal });
    } catch (error) {
      if (isNetDenied(error)) {
        return { message: `network access to ${new URL(this.#base).host} is not granted to this Deno process or worker (${errorText(error)}): grant it with --allow-net or the worker's permissions`, retryable: false };
      }
      return { message: `network error: ${errorText(error)}`, retryable: true };
    }
    let text = "";
    try {
      text = await response.text();
    } catch (error) {
      return { message: `network error while reading the answer: ${errorText(error)}`, retryable: true };
    }
    if (response.ok) {
      try {
        return { value: JSON.parse(text) };
      } catch {
        return { message: `the server answered ${response.status} with a body that is not JSON`, retryable: true, status: response.status };
      }
    }
    let detail = text.slice(0, 300);
    try {
      detail = (JSON.parse(text) as { error?: string }).error ?? detail;
    } catch {
      // Not JSON: the text itself.
    }
    const status = response.status;
    return {
      message: `the server answered ${status}${detail ? `: ${detail}` : ""}`,
      retryable: status >= 500 || status === 429 || status === 408,
      status,
      retryAfterMs: parseRetryAfter(response.headers.get("retry-after")),
    };
  }

  #shouldGzip(body: string): boolean {
    const option = this.#options.gzip ?? "auto";
    if (option === false || typeof CompressionStream === "undefined") return false;
    if (option === true) return true;
    const host = new URL(this.#base).hostname;
    const loopback = host === "localhost" || host === "[::1]" || /^127\./.test(host);
    return !loopback && body.length >= 64 * 1024;
  }
}

/**
 * Posts one protocol body (`{prefix, session, seq, batch}` as JSON text) to a
 * server, retrying like {@linkcode HttpBackend}. Used by `ml-dash sync`.
 *
 * @param url The server's base URL.
 * @param body The JSON text of the envelope.
 * @param options Token and retry bound in ms.
 * @returns Whether the server already had the batch.
 * @throws {StorageError} When the server refuses it or stays unreachable.
 *
 * @example Re-send an outbox file (a server must listen on the URL)
 * ```ts ignore
 * import { postEnvelope } from "./http.ts";
 * import { readFileSync } from "node:fs";
 *
 * await postEnvelope("http://127.0.0.1:8787", readFileSync("file.json", "utf8"));
 * ```
 */
export async function postEnvelope(
  url: string,
  body: string,
  options: { token?: string; giveUpAfterMs?: number } = {},
): Promise<{ duplicate: boolean }> {
  const backend = new HttpBackend({ url, token: options.token, giveUpAfterMs: options.giveUpAfterMs, outbox: false });
  const answer = await backend.post("/api/v1/batch", body) as { duplicate?: boolean };
  return { duplicate: answer.duplicate === true };
}

// ─── Token and credentials ──────────────────────────────────────────────────

/**
 * The path of the credentials file, `~/.dash/credentials.json` (`HOME`, else
 * `USERPROFILE`), or undefined where the home directory cannot be read.
 *
 * @returns The path, or undefined.
 *
 * @example
 * ```ts
 * import { credentialsPath } from "./http.ts";
 *
 * console.log(credentialsPath()); // "/home/alice/.dash/credentials.json"
 * ```
 */
export function credentialsPath(): string | undefined {
  const home = readEnv("HOME") || readEnv("USERPROFILE");
  return home ? `${home.replace(/[\\/]+$/, "")}/.dash/credentials.json` : undefined;
}

/**
 * The key of a server in the credentials file: its origin and path, without a trailing slash.
 *
 * @param url The server URL.
 * @returns The key, e.g. `http://127.0.0.1:8787`.
 *
 * @example
 * ```ts
 * import { credentialsKey } from "./http.ts";
 *
 * console.log(credentialsKey("http://127.0.0.1:8787/")); // "http://127.0.0.1:8787"
 * ```
 */
export function credentialsKey(url: string): string {
  const parsed = new URL(url);
  return (parsed.origin + parsed.pathname).replace(/\/+$/, "");
}

/**
 * Finds the token for a server: the explicit one, then `ML_DASH_TOKEN`, then
 * the entry for the URL in `~/.dash/credentials.json` (`{ "<url>": { "token": "..." } }`).
 * Where reading is denied (Deno `--deny-read`) the file is skipped.
 *
 * @param url The server URL.
 * @param token An explicit token, which wins.
 * @returns The token, or undefined.
 *
 * @example
 * ```ts
 * import { resolveToken } from "./http.ts";
 *
 * const token = await resolveToken("http://127.0.0.1:8787", "explicit-token");
 * console.log(token); // "explicit-token": an explicit token wins over ML_DASH_TOKEN and the file
 * ```
 */
export async function resolveToken(url: string, token?: string): Promise<string | undefined> {
  if (token) return token;
  const fromEnv = readEnv("ML_DASH_TOKEN");
  if (fromEnv) return fromEnv;
  const file = credentialsPath();
  if (!file || !permissionGranted("read", file)) return undefined;
  try {
    const { fileSystem } = await import("./file_system.ts");
    const all = JSON.parse(fileSystem.readText(file) ?? "{}") as Record<string, { token?: string }>;
    const key = credentialsKey(url);
    const entry = all[key] ?? Object.entries(all).find(([k]) => safeOrigin(k) === safeOrigin(key))?.[1];
    return typeof entry?.token === "string" ? entry.token : undefined;
  } catch {
    return undefined;
  }
}

function safeOrigin(url: string): string | undefined {
  try {
    return new URL(url).origin;
  } catch {
    return undefined;
  }
}

// ─── Helpers ────────────────────────────────────────────────────────────────

/** What a browser lets the keepalive requests of a page carry, all together (the Fetch standard's quota). */
const KEEPALIVE_BYTES = 64 * 1024;

/** However little of the bound is left, a request may take this long (a small bound still lets a healthy server answer once). */
const MIN_REQUEST_MS = 1000;

/** The slowest upload still counted as progressing: a request gets the time its body takes at this rate on top of the bound. */
const SLOW_UPLOAD_BYTES_PER_S = 256 * 1024;

/** How long one request may take: what is left of the bound (at least {@linkcode MIN_REQUEST_MS}) plus its body at the slow upload rate. */
function requestTimeoutMs(timeLeftMs: number, bodyBytes: number): number {
  return Math.max(MIN_REQUEST_MS, timeLeftMs) + Math.ceil(bodyBytes / SLOW_UPLOAD_BYTES_PER_S * 1000);
}

/** Whether a failed fetch was refused by Deno's permissions (`NotCapable` in a worker without net, `PermissionDenied`): retrying cannot help. */
function isNetDenied(error: unknown): boolean {
  const name = (error as { name?: unknown } | null)?.name;
  return name === "NotCapable" || name === "PermissionDenied";
}

/**
 * Splits a batch whose text exceeds `maxBytes` into several requests, at the
 * boundaries of its JSON-text chunks: state first, then files, records, and
 * the status last (a reader that sees COMPLETED has the data before it).
 */
function splitBatch(batch: Batch, maxBytes: number): Batch[] {
  let bytes = 0;
  let text = true;
  for (const name in batch.metrics ?? {}) {
    for (const chunk of batch.metrics![name]) {
      bytes += chunk.length;
      text &&= typeof chunk === "string";
    }
  }
  for (const line of batch.logs ?? []) bytes += line.length;
  // Files always travel in requests of their own: a server that refuses one (too large) refuses nothing else.
  if (!batch.files && bytes <= maxBytes && text) return [batch];
  const parts: Batch[] = [];
  const head: Batch = {};
  if (batch.metadata) head.metadata = batch.metadata;
  if (batch.params) head.params = batch.params;
  if (Object.keys(head).length > 0) parts.push(head);
  let current: Batch = {};
  let size = 0;
  const add = (length: number, put: (b: Batch) => void): void => {
    if (size > 0 && size + length > maxBytes) {
      parts.push(current);
      current = {};
      size = 0;
    }
    put(current);
    size += length;
  };
  for (const file of batch.files ?? []) parts.push({ files: [file] });
  for (const name in batch.metrics ?? {}) {
    for (const chunk of batch.metrics![name]) add(chunk.length, (b) => ((b.metrics ??= Object.create(null) as Record<string, string[]>)[name] ??= []).push(textOf(chunk)));
  }
  for (const line of batch.logs ?? []) add(line.length, (b) => (b.logs ??= []).push(line));
  if (size > 0) parts.push(current);
  if (batch.status) parts.push({ status: batch.status });
  return parts;
}

const encoder = new TextEncoder();

/** The UTF-8 bytes of a body, by encodeInto a buffer of the right size: on Deno and Node about twice as fast as letting fetch encode a string. */
function utf8Bytes(text: string): Uint8Array {
  const ascii = new Uint8Array(text.length);
  if (encoder.encodeInto(text, ascii).read === text.length) return ascii;
  const bytes = new Uint8Array(text.length * 3);
  return bytes.subarray(0, encoder.encodeInto(text, bytes).written);
}

async function gzip(text: string): Promise<Uint8Array> {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function parseRetryAfter(value: string | null): number | undefined {
  if (value === null) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function errorText(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error as { cause?: unknown }).cause;
    return cause instanceof Error ? `${error.message} (${cause.message})` : error.message;
  }
  return String(error);
}

