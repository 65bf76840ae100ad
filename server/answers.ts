/**
 * Answers of the server: JSON bodies, and the error that carries its status.
 *
 * @example
 * ```ts
 * import { HttpError, json } from "./answers.ts";
 *
 * console.log(json({ ok: true }).status); // 200
 * console.log(new HttpError(404, "Unknown experiment").status); // 404
 * ```
 *
 * @module
 */

/**
 * An error the handler answers with its status and message.
 *
 * @example Carry a status
 * ```ts
 * import { HttpError } from "./answers.ts";
 *
 * const error = new HttpError(413, "Too large");
 * console.log(error.status, error.message); // 413 Too large
 * ```
 */
export class HttpError extends Error {
  /**
   * Makes an error that the handler answers with `status`.
   *
   * @param status The HTTP status.
   * @param message What was wrong, for the client.
   */
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/**
 * A JSON answer.
 *
 * @param value The body.
 * @param status The HTTP status (default 200).
 * @returns The response.
 *
 * @example Answer with JSON
 * ```ts
 * import { json } from "./answers.ts";
 *
 * const response = json({ ok: true }, 201);
 * console.log(response.status, await response.text()); // 201 {"ok":true}
 * ```
 */
export function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json" } });
}

/**
 * An error answer `{"error": message}`.
 *
 * @param status The HTTP status.
 * @param message What was wrong.
 * @returns The response.
 *
 * @example Answer with an error
 * ```ts
 * import { errorJson } from "./answers.ts";
 *
 * const response = errorJson(404, "Unknown experiment");
 * console.log(response.status, await response.text()); // 404 {"error":"Unknown experiment"}
 * ```
 */
export function errorJson(status: number, message: string): Response {
  return json({ error: message }, status);
}
