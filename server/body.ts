/**
 * Reading request bodies within limits: the largest body, and a byte budget
 * that the bodies of requests in progress share.
 *
 * @example
 * ```ts
 * import { BodyBudget, readBodyBytes } from "./body.ts";
 *
 * const budget = new BodyBudget(1 << 20);
 * const bytes = await readBodyBytes(new Request("http://x/", { method: "POST", body: "{}" }), 1024, budget);
 * budget.give(bytes.byteLength);
 * console.log(bytes.byteLength); // 2
 * ```
 *
 * @module
 */
import { HttpError } from "./answers.ts";

/**
 * The bytes that request bodies being read or stored may hold together. A body
 * takes its share as it arrives and gives it back when handled; a body that
 * does not fit while others hold the budget gets 503, which clients retry
 * later. One body is always let in, so a body of the largest size still passes.
 *
 * @example Share a budget
 * ```ts
 * import { BodyBudget } from "./body.ts";
 *
 * const budget = new BodyBudget(100);
 * budget.take(80); // the first body always fits
 * try {
 *   budget.take(40);
 * } catch (error) {
 *   console.log((error as { status: number }).status); // 503
 * }
 * budget.give(80);
 * budget.take(40);
 * ```
 */
export class BodyBudget {
  #limit: number;
  #held = 0;

  /**
   * Makes a budget of `limit` bytes.
   *
   * @param limit The bytes that bodies in progress may hold together.
   */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /**
   * Takes bytes from the budget for a body that arrives.
   *
   * @param bytes How many bytes the body holds.
   * @throws {HttpError} With status 503 when other bodies hold the budget and these bytes do not fit.
   */
  take(bytes: number): void {
    if (this.#held > 0 && this.#held + bytes > this.#limit) {
      throw new HttpError(503, `Busy: request bodies being handled hold ${this.#held} of the ${this.#limit} bytes allowed; retry later`);
    }
    this.#held += bytes;
  }

  /**
   * Gives back bytes that a handled body held.
   *
   * @param bytes How many bytes to give back.
   */
  give(bytes: number): void {
    this.#held -= bytes;
  }
}

/**
 * Reads a body of at most `limit` bytes (after gzip decompression), taking its
 * size from the budget; the caller gives it back.
 *
 * @param req The request whose body to read.
 * @param limit The largest body in bytes, after decompression.
 * @param budget The budget that the body's bytes are taken from.
 * @returns The body's bytes.
 * @throws {HttpError} With status 413 for a body over `limit`, 503 when the budget is held by others.
 *
 * @example Read a body
 * ```ts
 * import { BodyBudget, readBodyBytes } from "./body.ts";
 *
 * const budget = new BodyBudget(1024);
 * const request = new Request("http://localhost/", { method: "POST", body: "hello" });
 * const bytes = await readBodyBytes(request, 100, budget);
 * console.log(new TextDecoder().decode(bytes)); // hello
 * budget.give(bytes.byteLength);
 * ```
 */
export async function readBodyBytes(req: Request, limit: number, budget: BodyBudget): Promise<Uint8Array> {
  const length = req.headers.get("content-length");
  if (length !== null && !/^\d+$/.test(length.trim())) {
    throw new HttpError(400, `Invalid Content-Length ${JSON.stringify(length)}: expected a count of bytes`);
  }
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
  if (!stream) throw badRequest("Missing body: expected JSON");
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
    throw badRequest(`Unreadable body: ${error instanceof Error ? error.message : error}`);
  }
  return chunks.length === 1 ? chunks[0] : concat(chunks, size);
}

/** Reads a body of `length` bytes (its Content-Length) into one buffer; more or fewer bytes are an error. */
async function readDeclared(stream: ReadableStream<Uint8Array>, length: number): Promise<Uint8Array> {
  const body = new Uint8Array(length);
  let size = 0;
  try {
    for await (const chunk of stream) {
      if (size + chunk.byteLength > length) throw badRequest(`Malformed body: longer than its Content-Length ${length}`);
      body.set(chunk, size);
      size += chunk.byteLength;
    }
  } catch (error) {
    if (error instanceof HttpError) throw error;
    throw badRequest(`Unreadable body: ${error instanceof Error ? error.message : error}`);
  }
  if (size !== length) throw badRequest(`Unreadable body: ${size} of its ${length} bytes arrived`);
  return body;
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


function badRequest(message: string): HttpError {
  return new HttpError(400, message);
}
