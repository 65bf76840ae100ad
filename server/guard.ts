/**
 * What a request must show before the handler looks at it: a `Host` the server
 * answers to (against DNS rebinding), an origin that may write (against
 * cross-site writes from a page the user happens to visit), a write body of a
 * type no plain HTML form or `no-cors` fetch can send, and the CORS headers for
 * the browser origins allowed on purpose.
 *
 * Runtime-neutral: it reads only `Request` headers and builds `Response`s.
 *
 * @example Guard a handler
 * ```ts
 * import { RequestGuard } from "./guard.ts";
 *
 * const guard = new RequestGuard({ allowedHosts: RequestGuard.LOOPBACK });
 * const req = new Request("http://127.0.0.1:8787/api/v1/experiments", {
 *   headers: { host: "rebind.attacker.example:8787" },
 * });
 * console.log(guard.check(req, false)?.status); // 421
 * ```
 *
 * @module
 */

/** Options of {@linkcode RequestGuard}. */
export interface GuardOptions {
  /**
   * Host names (without port) that requests may name in `Host`; `*.localhost`
   * is implied by `localhost`. Unset: any host is answered (a server bound to a
   * non-loopback address, behind a token).
   */
  allowedHosts?: readonly string[];
  /** Browser origins (`https://app.example`) allowed to read and write across origins. */
  corsOrigins?: readonly string[];
}

const WRITE_TYPES = ["application/json", "application/x-ndjson"];
const CORS_METHODS = "GET, POST, PUT, OPTIONS";
const CORS_HEADERS = "authorization, content-type, content-encoding";

/**
 * Checks requests against the allowed hosts and origins, and adds CORS headers for allowed origins.
 *
 * @example Refuse a cross-origin write
 * ```ts
 * import { RequestGuard } from "./guard.ts";
 *
 * const guard = new RequestGuard({ corsOrigins: ["https://app.example"] });
 * const write = (origin: string): Request =>
 *   new Request("http://localhost:8787/api/v1/batch", {
 *     method: "POST",
 *     headers: { host: "localhost:8787", origin, "content-type": "application/json" },
 *   });
 * console.log(guard.check(write("https://evil.example"), true)?.status); // 403
 * console.log(guard.check(write("https://app.example"), true)); // undefined
 * ```
 */
export class RequestGuard {
  /** The names of the loopback interface. */
  static readonly LOOPBACK: readonly string[] = ["127.0.0.1", "localhost", "[::1]", "::1"];

  #hosts: Set<string> | undefined;
  #origins: Set<string>;

  /**
   * Makes a guard for the given hosts and origins.
   *
   * @param options The allowed hosts and CORS origins.
   * @throws {TypeError} For an origin that is not `scheme://host[:port]`.
   */
  constructor(options: GuardOptions = {}) {
    this.#hosts = options.allowedHosts ? new Set(options.allowedHosts.map((h) => h.toLowerCase())) : undefined;
    this.#origins = new Set((options.corsOrigins ?? []).map(checkOrigin));
  }

  /** Whether any browser origin is allowed across origins. */
  get allowsCors(): boolean {
    return this.#origins.size > 0;
  }

  /**
   * Returns the refusal for a request that names a host the server does not
   * answer to, or a write from a foreign origin or of a type a page could send
   * without asking; else undefined.
   *
   * @param req The request.
   * @param write Whether it writes.
   * @returns A 421, 403 or 415 response, or undefined.
   */
  check(req: Request, write: boolean): Response | undefined {
    const host = req.headers.get("host");
    if (this.#hosts && !this.#hostAllowed(host)) {
      return refusal(421, `Unknown host ${JSON.stringify(host ?? "")}: this server answers to ${[...this.#hosts].join(", ")} (add a name with --allowed-host)`);
    }
    if (!write) return undefined;
    const origin = req.headers.get("origin");
    const site = req.headers.get("sec-fetch-site");
    const foreign = origin !== null ? !this.#ownOrigin(origin, host) : site === "cross-site";
    if (foreign && !(origin !== null && this.#origins.has(origin))) {
      return refusal(403, `Cross-origin write refused: origin ${JSON.stringify(origin ?? site)} may not write here (allow it with --cors-origin)`);
    }
    const type = (req.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
    if (req.method !== "PUT" && !WRITE_TYPES.includes(type)) {
      return refusal(415, `Unsupported Content-Type ${JSON.stringify(type)}: expected ${WRITE_TYPES.join(" or ")}`);
    }
    return undefined;
  }

  /**
   * Answers a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`).
   *
   * @param req The preflight request.
   * @returns 204 with the allowed methods and headers for an allowed origin, else 403.
   */
  preflight(req: Request): Response {
    const origin = req.headers.get("origin");
    if (origin === null || !this.#origins.has(origin)) {
      return refusal(403, `Cross-origin request refused: origin ${JSON.stringify(origin)} is not allowed (allow it with --cors-origin)`);
    }
    return new Response(null, {
      status: 204,
      headers: {
        "access-control-allow-origin": origin,
        "access-control-allow-methods": CORS_METHODS,
        "access-control-allow-headers": CORS_HEADERS,
        "access-control-max-age": "600",
        "vary": "Origin",
      },
    });
  }

  /**
   * Adds `Access-Control-Allow-Origin` to the answer of a request from an allowed origin.
   *
   * @param req The request.
   * @param res Its answer.
   * @returns The answer, with CORS headers where the origin is allowed.
   */
  withCors(req: Request, res: Response): Response {
    if (this.#origins.size === 0) return res;
    const origin = req.headers.get("origin");
    if (origin === null || !this.#origins.has(origin)) return res;
    try {
      res.headers.set("access-control-allow-origin", origin);
      res.headers.set("access-control-expose-headers", "retry-after");
      res.headers.append("vary", "Origin");
      return res;
    } catch {
      // Headers of some responses are immutable: copy them.
      const headers = new Headers(res.headers);
      headers.set("access-control-allow-origin", origin);
      headers.set("access-control-expose-headers", "retry-after");
      headers.append("vary", "Origin");
      return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
    }
  }

  #hostAllowed(host: string | null): boolean {
    if (host === null) return false;
    const name = hostName(host).toLowerCase();
    return this.#hosts!.has(name) || (this.#hosts!.has("localhost") && name.endsWith(".localhost"));
  }

  #ownOrigin(origin: string, host: string | null): boolean {
    if (host === null) return false;
    try {
      return new URL(origin).host === new URL(`http://${host}`).host;
    } catch {
      return false;
    }
  }
}

/** The name part of a `Host` header value: `[::1]:8787` → `[::1]`, `localhost:1` → `localhost`. */
function hostName(host: string): string {
  if (host.startsWith("[")) {
    const end = host.indexOf("]");
    return end < 0 ? host : host.slice(0, end + 1);
  }
  const colon = host.indexOf(":");
  return colon < 0 ? host : host.slice(0, colon);
}

/**
 * Whether the text is a browser origin, `scheme://host[:port]` with scheme
 * http or https and nothing after it.
 *
 * @param text The text.
 * @returns True for an origin such as `https://app.example`.
 *
 * @example
 * ```ts
 * import { isOrigin } from "./guard.ts";
 *
 * console.log(isOrigin("https://app.example"), isOrigin("https://app.example/x")); // true false
 * ```
 */
export function isOrigin(text: string): boolean {
  try {
    const url = new URL(text);
    return /^https?:$/.test(url.protocol) && url.origin === text;
  } catch {
    return false;
  }
}

function checkOrigin(origin: string): string {
  if (!isOrigin(origin)) {
    throw new TypeError(`Invalid CORS origin ${JSON.stringify(origin)}: expected scheme://host[:port], such as https://app.example, with no path or trailing slash`);
  }
  return origin;
}

function refusal(status: number, message: string): Response {
  return new Response(JSON.stringify({ error: message }), { status, headers: { "content-type": "application/json" } });
}
