/**
 * The path of a module of the repository, from a test anywhere in it: the
 * `.ts` source where Deno and Bun run the tests, the tsc-compiled `.js` in
 * `.build/` where Node runs them.
 *
 * @example
 * ```ts
 * import { sourceFile } from "./source.ts";
 *
 * console.log(sourceFile("mod.ts")); // .../mod.ts, or .../.build/mod.js under Node
 * ```
 *
 * @module
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The repository's root: the folder above testing/ (in `.build/` under Node). */
export const ROOT: string = fileURLToPath(new URL("..", import.meta.url));

/** The checkout itself, where package.json, node_modules and the sources are (ROOT is `.build/` under Node). */
export const CHECKOUT: string = ROOT.replace(/\.build\/?$/, "");

/**
 * The file that runs for the module at `path` (relative to the root).
 *
 * @param path Such as `mod.ts` or `storage/jsonl.ts`.
 * @returns Its absolute path: the `.ts` file, or its `.js` sibling where only that exists.
 */
export function sourceFile(path: string): string {
  const ts = ROOT + path;
  return existsSync(ts) ? ts : ts.replace(/\.ts$/, ".js");
}
