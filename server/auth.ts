/**
 * Bearer tokens: a write token and, optionally, a read token.
 *
 * @module
 */

/** The tokens a handler requires. */
export interface Tokens {
  /** Required for writes (and reads, unless `readToken` is set). Unset: writes are open. */
  token?: string;
  /** Allows reads; when set, reads need it or `token`. Unset: reads are open. */
  readToken?: string;
}

/**
 * Returns a 401 response when the request lacks the token it needs, else undefined.
 * Reads also accept the token as `?access_token=`, which browsers' event
 * streams and images can send.
 *
 * @param req The request.
 * @param url The request's URL, parsed.
 * @param write Whether the request writes.
 * @param options The tokens required.
 * @returns A 401 response, or undefined when the request may go on.
 *
 * @example Require a token for writes
 * ```ts
 * import { authorize } from "./auth.ts";
 *
 * const url = new URL("http://localhost/api/v1/batch");
 * const bare = new Request(url, { method: "POST" });
 * const signed = new Request(url, { method: "POST", headers: { authorization: "Bearer s3cret" } });
 * console.log(authorize(bare, url, true, { token: "s3cret" })?.status); // 401
 * console.log(authorize(signed, url, true, { token: "s3cret" })); // undefined
 * console.log(authorize(bare, url, false, { token: "s3cret" })); // undefined
 * ```
 */
export function authorize(req: Request, url: URL, write: boolean, options: Tokens): Response | undefined {
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

