/**
 * The dashboard's files: `GET /` and `GET /dashboard/*` from the `dashboard/`
 * folder found next to this module or above it.
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { errorJson } from "./answers.ts";

let foundDashboard: string | undefined;

/** Finds `dashboard/index.html` next to this module or in a folder above it (source tree, .build/, dist/). */
function dashboardDir(): string | undefined {
  if (foundDashboard) return foundDashboard;
  let dir: string;
  try {
    dir = path.dirname(fileURLToPath(import.meta.url));
  } catch {
    return undefined;
  }
  for (let i = 0; i < 4; i++) {
    const candidate = path.join(dir, "dashboard");
    if (fs.existsSync(path.join(candidate, "index.html"))) return foundDashboard = candidate;
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return undefined;
}

/**
 * Answers `GET /` and `GET /dashboard/*` with a file of the dashboard folder.
 *
 * @param pathname The request's path.
 * @param configured The dashboard folder, or undefined to find `dashboard/` next to this module or above it.
 * @returns The file, or a JSON error (404 for what is not there, 400 for a malformed path).
 *
 * @example Serve a file of a folder
 * ```ts
 * import { serveStatic } from "./static.ts";
 *
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/index.html`, "<h1>ml-dash</h1>");
 * const response = serveStatic("/", dir);
 * console.log(response.headers.get("content-type")); // text/html; charset=utf-8
 * console.log(await response.text()); // <h1>ml-dash</h1>
 * console.log(serveStatic("/dashboard/../secret", dir).status); // 404
 * ```
 */
export function serveStatic(pathname: string, configured: string | undefined): Response {
  let rel: string;
  if (pathname === "/" || pathname === "/index.html") rel = "index.html";
  else if (pathname === "/dashboard" || pathname === "/dashboard/") rel = "index.html";
  else if (pathname.startsWith("/dashboard/")) rel = pathname.slice("/dashboard/".length);
  else return errorJson(404, `Not found: ${pathname}`);
  let decoded: string;
  try {
    decoded = decodeURIComponent(rel);
  } catch {
    return errorJson(400, `Invalid path ${JSON.stringify(pathname)}`);
  }
  const segments = decoded.split("/");
  if (segments.some((s) => s === "" || s === "." || s === ".." || s.includes("\\") || s.includes("\0"))) {
    return errorJson(404, `Not found: ${pathname}`);
  }
  const dir = configured ?? dashboardDir();
  if (!dir) return errorJson(404, "The dashboard is not installed: no dashboard/index.html was found");
  let data: Uint8Array;
  try {
    data = new Uint8Array(fs.readFileSync(path.join(dir, ...segments)));
  } catch {
    return errorJson(404, `Not found: ${pathname}`);
  }
  // No other site may frame the dashboard (clickjacking of its buttons).
  return new Response(data as BodyInit, {
    headers: {
      "content-type": contentType(decoded),
      "cache-control": "no-cache",
      "content-security-policy": "frame-ancestors 'none'",
      "x-frame-options": "DENY",
    },
  });
}

/**
 * The content type of a dashboard file, by its extension.
 *
 * @param file The file's name or path.
 * @returns Its media type, `application/octet-stream` for an unknown extension.
 *
 * @example Look a type up
 * ```ts
 * import { contentType } from "./static.ts";
 *
 * console.log(contentType("app.js")); // text/javascript; charset=utf-8
 * console.log(contentType("data.bin")); // application/octet-stream
 * ```
 */
export function contentType(file: string): string {
  const ext = file.slice(file.lastIndexOf(".") + 1).toLowerCase();
  const types: Record<string, string> = {
    html: "text/html; charset=utf-8", js: "text/javascript; charset=utf-8", mjs: "text/javascript; charset=utf-8",
    css: "text/css; charset=utf-8", json: "application/json", svg: "image/svg+xml", png: "image/png",
    jpg: "image/jpeg", jpeg: "image/jpeg", gif: "image/gif", ico: "image/x-icon", txt: "text/plain; charset=utf-8",
    md: "text/markdown; charset=utf-8", csv: "text/csv; charset=utf-8", woff2: "font/woff2",
  };
  return types[ext] ?? "application/octet-stream";
}

