/**
 * The wire protocol between a client (`storage/http.ts`, `ml-dash sync`) and
 * the server: the envelope of `POST /api/v1/batch` in its JSON and NDJSON
 * forms, how a client encodes a {@linkcode Batch}, and how the server decodes
 * and checks one. Decoding is strict: the first problem is a
 * {@linkcode ProtocolError} that names it (the server answers 400).
 *
 * @example Encode a batch and decode it again
 * ```ts
 * import { decodeRequest, encodeNdjson } from "./protocol.ts";
 *
 * const body = encodeNdjson({
 *   prefix: "alice/mnist/run-1",
 *   session: "s1",
 *   seq: 0,
 *   batch: { metrics: { train: ['{"_ts":1,"step":0,"loss":0.5}'] } },
 * });
 * const request = decodeRequest(new TextEncoder().encode(body), true);
 * console.log(request.prefix, request.seq); // alice/mnist/run-1 0
 * console.log(request.batch().metrics?.train.length); // 1
 * ```
 *
 * @module
 */
import { CHUNK_LINES, checkFilePath, checkPrefix, isValidMetricName, LOG_LEVELS, MAX_METRIC_NAME_BYTES, STATUSES } from "./backend.ts";

export { CHUNK_LINES, LOG_LEVELS, STATUSES };
import type { Batch, ExperimentRecord, FileUpload, LogRecord, MetricRecord } from "./backend.ts";


/** The content type of the NDJSON form of a request. */
export const NDJSON_TYPE = "application/x-ndjson";

/** The content type of the JSON form of a request. */
export const JSON_TYPE = "application/json";


/** The event kinds a batch may hold. */
export const BATCH_FIELDS: readonly string[] = ["metadata", "status", "params", "metrics", "logs", "files"];

/** A media type as a header carries it: `type/subtype`, then parameters, in printable ASCII. */
export const MIME: RegExp = /^[\w.+-]+\/[\w.+-]+(\s*;[\x20-\x7e]*)?$/;

/**
 * A request that does not follow the protocol; the message names the first problem.
 *
 * @example Tell a protocol error by its status
 * ```ts
 * import { decodeRequest, ProtocolError } from "./protocol.ts";
 *
 * try {
 *   decodeRequest(new TextEncoder().encode("[]"), false);
 * } catch (error) {
 *   console.log(error instanceof ProtocolError && error.status); // 400
 * }
 * ```
 */
export class ProtocolError extends Error {
  /** The HTTP status the server answers with. */
  readonly status = 400;
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

/** A decoded request: its envelope, checked, and its batch, decoded on demand (a duplicate is acknowledged without it). */
export interface DecodedRequest {
  /** The experiment's prefix. */
  prefix: string;
  /** The sender's session id. */
  session: string;
  /** The batch's sequence number in its session. */
  seq: number;
  /** Checks every record and returns the batch as a backend takes it. */
  batch(): Batch;
}

/**
 * Decodes the body of `POST /api/v1/batch`: the envelope at once, the records when asked.
 *
 * @param body The request body.
 * @param ndjson Whether it is the NDJSON form (else JSON).
 * @returns The envelope's fields and a function that decodes the batch.
 * @throws {ProtocolError} For the first problem found.
 *
 * @example Decode the JSON form
 * ```ts
 * import { decodeRequest } from "./protocol.ts";
 *
 * const body = JSON.stringify({ prefix: "alice/run-1", session: "s1", seq: 3, batch: { params: { lr: 0.1 } } });
 * const request = decodeRequest(new TextEncoder().encode(body), false);
 * console.log(request.session, request.seq); // s1 3
 * console.log(request.batch().params); // { lr: 0.1 }
 * ```
 */
export function decodeRequest(body: Uint8Array, ndjson: boolean): DecodedRequest {
  const { head, rest } = ndjson ? splitNdjson(body) : { head: parseJson(utf8(body)), rest: body.subarray(body.length) };
  const envelope = parseEnvelope(head, ndjson);
  return {
    prefix: envelope.prefix,
    session: envelope.session,
    seq: envelope.seq,
    batch: (): Batch => {
      const batch = decodeBatch(envelope.batch, envelope.prefix);
      if (ndjson) addSections(batch, envelope.sections!, rest);
      return batch;
    },
  };
}

/** The body of `POST /api/v1/open`. */
export interface OpenRequest {
  /** The experiment's prefix. */
  prefix: string;
  /** Session ids whose largest stored seq the client asks for. */
  sessions?: string[];
}

/**
 * Decodes the body of `POST /api/v1/open`.
 *
 * @param body The request body.
 * @returns The prefix and the sessions asked about.
 * @throws {ProtocolError} For a body that is not `{"prefix": string, "sessions"?: string[]}`.
 *
 * @example
 * ```ts
 * import { decodeOpenRequest } from "./protocol.ts";
 *
 * const open = decodeOpenRequest(new TextEncoder().encode('{"prefix":"a/b/c","sessions":["s1"]}'));
 * console.log(open.sessions); // ["s1"]
 * ```
 */
export function decodeOpenRequest(body: Uint8Array): OpenRequest {
  const value = parseJson(utf8(body));
  if (!isObject(value)) throw new ProtocolError(`Invalid body: expected an object {"prefix": string}`);
  const prefix = checkedPrefix(value.prefix, "prefix");
  const sessions = value.sessions;
  if (sessions !== undefined && !(Array.isArray(sessions) && sessions.every((s) => typeof s === "string"))) {
    throw new ProtocolError(`Invalid "sessions": expected an array of session ids`);
  }
  return sessions === undefined ? { prefix } : { prefix, sessions: sessions as string[] };
}

/** What a client sends: an envelope around a batch in its in-memory form (file data as bytes). */
export interface OutgoingEnvelope {
  /** The experiment's prefix. */
  prefix: string;
  /** The sender's session id. */
  session: string;
  /** The batch's sequence number in its session. */
  seq: number;
  /** The records and state patches. */
  batch: Batch;
}

// ─── Encoding ───────────────────────────────────────────────────────────────

/**
 * The NDJSON form of a request: a header line (prefix, session, seq, the state
 * events and `sections` that count the record lines), then the metric and log
 * records as they are, one a line. Records are never escaped into JSON strings.
 *
 * @param envelope The request.
 * @returns The body, ending with a newline.
 *
 * @example
 * ```ts
 * import { encodeNdjson } from "./protocol.ts";
 *
 * const body = encodeNdjson({ prefix: "a/b/c", session: "s1", seq: 0, batch: { logs: ['{"_ts":1,"level":"info","message":"hi"}'] } });
 * console.log(body.split("\n").length); // 3: the header, one log line, and the end
 * ```
 */
export function encodeNdjson(envelope: OutgoingEnvelope): string {
  const { metrics, logs, ...state } = envelope.batch;
  const sections: Section[] = [];
  const parts: string[] = [];
  for (const name in metrics ?? {}) {
    let lines = 0;
    for (const chunk of metrics![name]) {
      if (chunk.length === 0) continue;
      const text = textOf(chunk);
      lines += countLines(text);
      parts.push(text);
    }
    if (lines > 0) sections.push({ kind: "metrics", name, lines });
  }
  let logLines = 0;
  for (const line of logs ?? []) {
    if (line === "") continue;
    logLines += countLines(line);
    parts.push(line);
  }
  if (logLines > 0) sections.push({ kind: "logs", lines: logLines });
  const head = JSON.stringify({ prefix: envelope.prefix, session: envelope.session, seq: envelope.seq, batch: toWire(state), sections });
  return parts.length > 0 ? `${head}\n${parts.join("\n")}\n` : `${head}\n`;
}

/**
 * The JSON form of a request (`{prefix, session, seq, batch}`), as the outbox keeps it.
 *
 * @param envelope The request.
 * @returns The body.
 *
 * @example
 * ```ts
 * import { encodeJson } from "./protocol.ts";
 *
 * console.log(encodeJson({ prefix: "a/b/c", session: "s1", seq: 2, batch: { params: { lr: 0.1 } } }));
 * ```
 */
export function encodeJson(envelope: OutgoingEnvelope): string {
  return JSON.stringify({ prefix: envelope.prefix, session: envelope.session, seq: envelope.seq, batch: toWire(envelope.batch) });
}

/**
 * A metric chunk as text: the buffer gives text; bytes (as the server holds them) are decoded.
 *
 * @param chunk JSON text lines, as a string or UTF-8 bytes.
 * @returns The text.
 *
 * @example Read a chunk as text
 * ```ts
 * import { textOf } from "./protocol.ts";
 *
 * console.log(textOf(new TextEncoder().encode('{"step":0}'))); // {"step":0}
 * console.log(textOf('{"step":1}')); // {"step":1}
 * ```
 */
export function textOf(chunk: string | Uint8Array): string {
  return typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk);
}

function countLines(text: string): number {
  let lines = 1;
  for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) lines++;
  return lines;
}

/** The batch as JSON travels: file contents as base64. */
function toWire(batch: Omit<Batch, "metrics" | "logs">): unknown {
  if (!batch.files) return batch;
  return { ...batch, files: batch.files.map((f) => ({ path: f.path, size: f.size, mime: f.mime, _ts: f._ts, data: toBase64(f.data) })) };
}

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

// ─── Decoding ───────────────────────────────────────────────────────────────

// ignoreBOM: a byte order mark stays in the text, where JSON.parse refuses it, as it would the stored line.
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * The text of UTF-8 bytes.
 *
 * @param bytes The bytes.
 * @param what What they are, for the error message (default "body").
 * @returns The text.
 * @throws {ProtocolError} If the bytes are not valid UTF-8.
 *
 * @example Decode strictly
 * ```ts
 * import { utf8 } from "./protocol.ts";
 *
 * console.log(utf8(new Uint8Array([104, 105]))); // hi
 * try {
 *   utf8(new Uint8Array([0xff]));
 * } catch (error) {
 *   console.log((error as Error).message); // Malformed body: it is not valid UTF-8
 * }
 * ```
 */
export function utf8(bytes: Uint8Array, what = "body"): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw new ProtocolError(`Malformed ${what}: it is not valid UTF-8`);
  }
}

/**
 * Parses JSON text.
 *
 * @param text The text.
 * @returns The value.
 * @throws {ProtocolError} For text that is not JSON.
 *
 * @example Parse or refuse
 * ```ts
 * import { parseJson, ProtocolError } from "./protocol.ts";
 *
 * console.log(parseJson('{"a":1}')); // { a: 1 }
 * try {
 *   parseJson("{");
 * } catch (error) {
 *   console.log(error instanceof ProtocolError); // true
 * }
 * ```
 */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ProtocolError(`Malformed JSON: ${error instanceof Error ? error.message : error}`);
  }
}

/**
 * Splits an NDJSON body into its header (first line), parsed, and the bytes of
 * the record lines after it (without the last newline).
 *
 * @param body The body.
 * @returns The parsed header and the rest of the bytes.
 * @throws {ProtocolError} For a header line that is not UTF-8 JSON.
 *
 * @example Split a body
 * ```ts
 * import { splitNdjson } from "./protocol.ts";
 *
 * const { head, rest } = splitNdjson(new TextEncoder().encode('{"seq":0}\n{"step":0}\n'));
 * console.log(head, new TextDecoder().decode(rest)); // { seq: 0 } {"step":0}
 * ```
 */
export function splitNdjson(body: Uint8Array): { head: unknown; rest: Uint8Array } {
  const newline = body.indexOf(10);
  const end = newline < 0 ? body.length : newline;
  let head: unknown;
  try {
    head = JSON.parse(utf8(body.subarray(0, end), "header line"));
  } catch (error) {
    if (error instanceof ProtocolError) throw error;
    throw new ProtocolError(`Malformed JSON in the header line: ${error instanceof Error ? error.message : error}`);
  }
  let rest = body.subarray(newline < 0 ? body.length : newline + 1);
  if (rest.length > 0 && rest[rest.length - 1] === 10) rest = rest.subarray(0, -1);
  return { head, rest };
}

/** A section of an NDJSON body: `lines` record lines for a metric (`name`) or for the logs. */
export interface Section {
  /** Whether the lines are metric records or log records. */
  kind: "metrics" | "logs";
  /** The metric's name (for `metrics`). */
  name?: string;
  /** How many record lines the section holds. */
  lines: number;
}

function checkSections(value: unknown): Section[] {
  if (!Array.isArray(value)) throw new ProtocolError(`Invalid "sections": expected an array of {kind, name, lines}, received ${typeName(value)}`);
  return value.map((s, i) => {
    if (!isObject(s)) throw new ProtocolError(`Invalid "sections[${i}]": expected an object, received ${typeName(s)}`);
    if (s.kind !== "metrics" && s.kind !== "logs") throw new ProtocolError(`Unknown event kind "sections[${i}].kind" ${JSON.stringify(s.kind)}: expected metrics or logs`);
    if (s.kind === "metrics" && (typeof s.name !== "string" || !isValidMetricName(s.name))) {
      throw new ProtocolError(`Invalid "sections[${i}].name" ${JSON.stringify(s.name)}: expected a metric name of at most ${MAX_METRIC_NAME_BYTES} bytes without "/", "\\" or NUL that does not start with "."`);
    }
    if (typeof s.lines !== "number" || !Number.isSafeInteger(s.lines) || s.lines < 0) {
      throw new ProtocolError(`Invalid "sections[${i}].lines" ${JSON.stringify(s.lines)}: expected a count of lines`);
    }
    return { kind: s.kind, name: s.name as string | undefined, lines: s.lines };
  });
}

/**
 * Checks the record lines of an NDJSON body against its sections and adds them to the batch.
 *
 * @param batch The batch to add the records to.
 * @param sections The sections the header announced.
 * @param rest The record lines of the body.
 * @throws {ProtocolError} When the lines do not match the sections or a record is malformed.
 *
 * @example Add a metric's lines
 * ```ts
 * import type { Batch } from "./backend.ts";
 * import { addSections } from "./protocol.ts";
 *
 * const batch: Batch = {};
 * const rest = new TextEncoder().encode('{"_ts":1,"step":0,"loss":0.5}\n{"_ts":2,"step":1,"loss":0.4}');
 * addSections(batch, [{ kind: "metrics", name: "train", lines: 2 }], rest);
 * console.log(Object.keys(batch.metrics ?? {})); // [ "train" ]
 * ```
 */
export function addSections(batch: Batch, sections: Section[], rest: Uint8Array): void {
  const lines = lineEnds(rest);
  const expected = sections.reduce((n, s) => n + s.lines, 0);
  if (lines.length !== expected) {
    throw new ProtocolError(`Malformed NDJSON body: the sections announce ${expected} record line(s), the body has ${lines.length}`);
  }
  let at = 0;
  for (const section of sections) {
    const first = at === 0 ? 0 : lines[at - 1] + 1;
    if (section.kind === "metrics") {
      const where = `metrics.${section.name}`;
      const chunks: Uint8Array[] = [];
      // Chunks of CHUNK_LINES lines, the shape mod.ts gives the JSONL backend; the bytes are kept, not decoded.
      for (let i = 0, start = first, chunkStart = first; i < section.lines; i++) {
        const end = lines[at + i];
        if (!isPlainMetricLine(rest, start, end)) {
          const line = `${where} line ${at + i + 2}`;
          checkLine(utf8(rest.subarray(start, end), line), line, checkMetricRecord);
        }
        if ((i + 1) % CHUNK_LINES === 0 || i === section.lines - 1) {
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

/** Lines joined into chunks of CHUNK_LINES, the shape mod.ts gives the JSONL backend. */
function chunked(lines: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < lines.length; i += CHUNK_LINES) out.push(lines.slice(i, i + CHUNK_LINES).join("\n"));
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
    throw new ProtocolError(`Malformed JSON in ${where}: ${error instanceof Error ? error.message : error}`);
  }
  if (!isObject(record)) throw new ProtocolError(`Invalid ${where}: expected an object, received ${typeName(record)}`);
  check(record, where);
}

/**
 * How deep JSON may nest: deeper values would overflow the stack of whoever
 * serializes them again. The library takes 64 levels of a user's value; the
 * envelope around it adds a few.
 */
export const MAX_DEPTH: number = 64 + 8;

/**
 * Refuses JSON nested deeper than {@linkcode MAX_DEPTH}, without recursion.
 *
 * @param value The parsed value.
 * @param where What it is, for the error message.
 * @throws {ProtocolError} For a value nested too deep.
 *
 * @example Refuse deep nesting
 * ```ts
 * import { checkDepth, MAX_DEPTH } from "./protocol.ts";
 *
 * checkDepth({ a: [1, 2] }, "body");
 * let deep: unknown = 0;
 * for (let i = 0; i <= MAX_DEPTH; i++) deep = [deep];
 * try {
 *   checkDepth(deep, "body");
 * } catch (error) {
 *   console.log((error as Error).message.startsWith("Invalid body")); // true
 * }
 * ```
 */
export function checkDepth(value: unknown, where: string): void {
  const stack: unknown[] = [value];
  const depths: number[] = [1];
  while (stack.length > 0) {
    const v = stack.pop();
    const depth = depths.pop()!;
    if (typeof v !== "object" || v === null) continue;
    if (depth > MAX_DEPTH) throw new ProtocolError(`Invalid ${where}: JSON nested more than ${MAX_DEPTH} levels deep`);
    for (const child of Object.values(v)) {
      if (typeof child !== "object" || child === null) continue;
      stack.push(child);
      depths.push(depth + 1);
    }
  }
}

/**
 * Whether a value is a plain JSON object (not null, not an array).
 *
 * @param value The value.
 * @returns True for an object.
 *
 * @example Tell objects from arrays
 * ```ts
 * import { isObject } from "./protocol.ts";
 *
 * console.log(isObject({}), isObject([]), isObject(null)); // true false false
 * ```
 */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The name of a JSON value's type, as error messages say it.
 *
 * @param value The value.
 * @returns "null", "an array", "an object" or "a" and the `typeof`.
 *
 * @example Name types
 * ```ts
 * import { typeName } from "./protocol.ts";
 *
 * console.log(typeName([]), typeName(1)); // an array a number
 * ```
 */
export function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

/**
 * Checks that a value is a valid experiment prefix.
 *
 * @param value The value.
 * @param where The field it came from, for the error message.
 * @returns The prefix.
 * @throws {ProtocolError} For a value that is not a string or not a valid prefix.
 *
 * @example Check a prefix
 * ```ts
 * import { checkedPrefix, ProtocolError } from "./protocol.ts";
 *
 * console.log(checkedPrefix("alice/run-1", "prefix")); // alice/run-1
 * try {
 *   checkedPrefix("../x", "prefix");
 * } catch (error) {
 *   console.log(error instanceof ProtocolError); // true
 * }
 * ```
 */
export function checkedPrefix(value: unknown, where: string): string {
  if (typeof value !== "string") throw new ProtocolError(`Invalid "${where}": expected a string, received ${typeName(value)}`);
  try {
    checkPrefix(value);
  } catch (error) {
    throw new ProtocolError(error instanceof Error ? error.message : String(error));
  }
  return value;
}

/** An envelope whose fields {@linkcode parseEnvelope} checked; the batch's content is not checked yet. */
export interface ParsedEnvelope {
  /** The experiment's prefix. */
  prefix: string;
  /** The sender's session id. */
  session: string;
  /** The batch's sequence number in its session. */
  seq: number;
  /** The batch as sent, with known field names. */
  batch: Record<string, unknown>;
  /** The sections of the record lines (NDJSON form only). */
  sections?: Section[];
}

/**
 * Checks the envelope's prefix, session and seq, and the batch's field names
 * (its content is checked by {@linkcode decodeBatch}).
 *
 * @param body The parsed body (JSON form) or header line (NDJSON form).
 * @param ndjson Whether it is the NDJSON form, which may carry `sections`.
 * @returns The checked envelope.
 * @throws {ProtocolError} For the first problem found.
 *
 * @example Check an envelope
 * ```ts
 * import { parseEnvelope } from "./protocol.ts";
 *
 * const envelope = parseEnvelope({ prefix: "alice/run-1", session: "s1", seq: 0 }, false);
 * console.log(envelope.prefix, envelope.batch); // alice/run-1 {}
 * ```
 */
export function parseEnvelope(body: unknown, ndjson: boolean): ParsedEnvelope {
  checkDepth(body, ndjson ? "header line" : "body");
  const fields = ndjson ? ["prefix", "session", "seq", "batch", "sections"] : ["prefix", "session", "seq", "batch"];
  if (!isObject(body)) throw new ProtocolError(`Invalid body: expected an object {${fields.join(", ")}}, received ${typeName(body)}`);
  for (const key of Object.keys(body)) {
    if (!fields.includes(key)) throw new ProtocolError(`Unknown field "${key}": expected ${fields.join(", ")}`);
  }
  const prefix = checkedPrefix(body.prefix, "prefix");
  const session = body.session;
  if (typeof session !== "string" || !/^[A-Za-z0-9._:-]{1,200}$/.test(session)) {
    throw new ProtocolError(`Invalid "session" ${JSON.stringify(session)}: expected 1 to 200 characters of A-Z a-z 0-9 . _ : -`);
  }
  const seq = body.seq;
  if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 0) {
    throw new ProtocolError(`Invalid "seq" ${JSON.stringify(seq)}: expected an integer from 0 to 2^53 - 1`);
  }
  const batch = body.batch ?? {};
  if (!isObject(batch)) throw new ProtocolError(`Invalid "batch": expected an object, received ${typeName(batch)}`);
  for (const key of Object.keys(batch)) {
    if (!BATCH_FIELDS.includes(key)) {
      throw new ProtocolError(`Unknown event kind "batch.${key}": expected ${BATCH_FIELDS.join(", ")}`);
    }
  }
  const sections = ndjson ? checkSections(body.sections ?? []) : undefined;
  return { prefix, session, seq, batch, sections };
}

/**
 * Checks every event of a batch and returns it as the JSONL backend takes it.
 *
 * @param batch The batch of a checked envelope.
 * @param prefix The envelope's prefix (an experiment record must name the same).
 * @returns The decoded batch.
 * @throws {ProtocolError} For the first problem found.
 *
 * @example Decode a batch
 * ```ts
 * import { decodeBatch } from "./protocol.ts";
 *
 * console.log(decodeBatch({ params: { lr: 0.1 } }, "alice/run-1")); // { params: { lr: 0.1 } }
 * ```
 */
export function decodeBatch(batch: Record<string, unknown>, prefix: string): Batch {
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
  if (!isObject(value)) throw new ProtocolError(`Invalid "batch.metadata": expected an object, received ${typeName(value)}`);
  const m = value as ExperimentRecord;
  if (m.prefix !== undefined && m.prefix !== prefix) {
    throw new ProtocolError(`Invalid "batch.metadata.prefix" ${JSON.stringify(m.prefix)}: it must equal the envelope's prefix ${JSON.stringify(prefix)}`);
  }
  if (m.readme !== undefined && typeof m.readme !== "string") throw new ProtocolError(`Invalid "batch.metadata.readme": expected a string, received ${typeName(m.readme)}`);
  if (m.tags !== undefined && !(Array.isArray(m.tags) && m.tags.every((t) => typeof t === "string"))) {
    throw new ProtocolError(`Invalid "batch.metadata.tags": expected an array of strings`);
  }
  if (m.metadata !== undefined && !isObject(m.metadata)) throw new ProtocolError(`Invalid "batch.metadata.metadata": expected an object, received ${typeName(m.metadata)}`);
}

function checkStatus(value: unknown): void {
  if (value === undefined) return;
  if (!isObject(value)) throw new ProtocolError(`Invalid "batch.status": expected an object, received ${typeName(value)}`);
  const s = value as Record<string, unknown>;
  if (s.status !== undefined && !STATUSES.includes(s.status as string)) {
    throw new ProtocolError(`Invalid "batch.status.status" ${JSON.stringify(s.status)}: expected one of ${STATUSES.join(", ")}`);
  }
  for (const key of ["startedAt", "heartbeatAt", "heartbeatInterval", "pid"]) {
    if (s[key] !== undefined && typeof s[key] !== "number") throw new ProtocolError(`Invalid "batch.status.${key}": expected a number, received ${typeName(s[key])}`);
  }
  if (s.endedAt !== undefined && s.endedAt !== null && typeof s.endedAt !== "number") {
    throw new ProtocolError(`Invalid "batch.status.endedAt": expected a number or null, received ${typeName(s.endedAt)}`);
  }
  for (const key of ["host", "error"]) {
    if (s[key] !== undefined && typeof s[key] !== "string") throw new ProtocolError(`Invalid "batch.status.${key}": expected a string, received ${typeName(s[key])}`);
  }
}

function checkParams(value: unknown): void {
  if (value === undefined) return;
  if (!isObject(value)) throw new ProtocolError(`Invalid "batch.params": expected an object of flattened parameters, received ${typeName(value)}`);
}

/**
 * Checks `batch.metrics` and returns it as the JSONL backend takes it: per
 * metric, chunks of JSON text. An item is a record object or a string of one or
 * more records separated by "\n" (what `mod.ts` sends); strings are kept as sent.
 */
function checkMetrics(value: unknown): Record<string, string[]> | undefined {
  if (value === undefined) return undefined;
  if (!isObject(value)) throw new ProtocolError(`Invalid "batch.metrics": expected an object of metric name → records, received ${typeName(value)}`);
  const out: Record<string, string[]> = Object.create(null);
  for (const name in value) {
    if (!isValidMetricName(name)) {
      throw new ProtocolError(`Invalid metric name ${JSON.stringify(name)}: expected a non-empty name of at most ${MAX_METRIC_NAME_BYTES} bytes without "/", "\\" or NUL that does not start with "."`);
    }
    const items = value[name];
    if (!Array.isArray(items)) throw new ProtocolError(`Invalid "batch.metrics.${name}": expected an array of records, received ${typeName(items)}`);
    out[name] = items.map((item, i) => checkedChunk(item, `batch.metrics.${name}[${i}]`, checkMetricRecord));
  }
  return out;
}

function checkMetricRecord(r: Record<string, unknown>, where: string): void {
  if (typeof r._ts !== "number") throw new ProtocolError(`Invalid "${where}._ts": expected a number, received ${typeName(r._ts)}`);
  if (typeof r.step !== "number") throw new ProtocolError(`Invalid "${where}.step": expected a number, received ${typeName(r.step)}`);
  for (const field in r) {
    const v = r[field];
    if (typeof v === "number" || v === "NaN" || v === "Infinity" || v === "-Infinity") continue;
    throw new ProtocolError(`Invalid "${where}.${field}": expected a number or "NaN", "Infinity", "-Infinity", received ${typeName(v)}`);
  }
}

function checkLogRecord(r: Record<string, unknown>, where: string): void {
  checkDepth(r, where);
  if (typeof r._ts !== "number") throw new ProtocolError(`Invalid "${where}._ts": expected a number, received ${typeName(r._ts)}`);
  if (typeof r.level !== "string") throw new ProtocolError(`Invalid "${where}.level": expected a string, received ${typeName(r.level)}`);
  if (typeof r.message !== "string") throw new ProtocolError(`Invalid "${where}.message": expected a string, received ${typeName(r.message)}`);
}

/** An item of metrics or logs: a record object (serialized here) or JSON text of records, one a line (checked, kept). */
function checkedChunk(item: unknown, where: string, check: (r: Record<string, unknown>, where: string) => void): string {
  if (isObject(item)) {
    check(item, where);
    return JSON.stringify(item);
  }
  if (typeof item !== "string") throw new ProtocolError(`Invalid "${where}": expected a record object or JSON text, received ${typeName(item)}`);
  const text = item.endsWith("\n") ? item.slice(0, -1) : item;
  let lines = 1;
  for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) lines++;
  let records: unknown[];
  try {
    records = JSON.parse(`[${text.replaceAll("\n", ",")}]`);
  } catch (error) {
    throw new ProtocolError(`Malformed JSON text in "${where}": ${error instanceof Error ? error.message : error} (expected one JSON object a line)`);
  }
  if (records.length !== lines) throw new ProtocolError(`Malformed JSON text in "${where}": expected exactly one JSON object on each of its ${lines} lines`);
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    const at = lines === 1 ? where : `${where} line ${i + 1}`;
    if (!isObject(r)) throw new ProtocolError(`Invalid "${at}": expected an object, received ${typeName(r)}`);
    check(r, at);
  }
  return text;
}

function checkLogs(value: unknown): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) throw new ProtocolError(`Invalid "batch.logs": expected an array of records, received ${typeName(value)}`);
  return value.map((item, i) => checkedChunk(item, `batch.logs[${i}]`, checkLogRecord));
}

function checkFiles(value: unknown): FileUpload[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) throw new ProtocolError(`Invalid "batch.files": expected an array, received ${typeName(value)}`);
  return value.map((f, i) => {
    if (!isObject(f)) throw new ProtocolError(`Invalid "batch.files[${i}]": expected an object, received ${typeName(f)}`);
    if (typeof f.path !== "string") throw new ProtocolError(`Invalid "batch.files[${i}].path": expected a string, received ${typeName(f.path)}`);
    try {
      checkFilePath(f.path);
    } catch (error) {
      throw new ProtocolError(`Invalid "batch.files[${i}].path": ${error instanceof Error ? error.message : error}`);
    }
    if (typeof f.mime !== "string" || !MIME.test(f.mime)) {
      throw new ProtocolError(`Invalid "batch.files[${i}].mime" ${JSON.stringify(f.mime)}: expected a media type such as "text/plain", in printable ASCII`);
    }
    if (typeof f._ts !== "number") throw new ProtocolError(`Invalid "batch.files[${i}]._ts": expected a number, received ${typeName(f._ts)}`);
    if (typeof f.data !== "string" || f.data.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(f.data)) {
      throw new ProtocolError(`Invalid "batch.files[${i}].data": expected the file's content as a base64 string`);
    }
    const data = new Uint8Array(Buffer.from(f.data, "base64"));
    return { path: f.path, size: data.byteLength, mime: f.mime, _ts: f._ts, data };
  });
}

