/**
 * Bundles a fixture the way a platform's tool does before it runs it:
 * esbuild with the conditions wrangler sets for Cloudflare (`workerd`,
 * `worker`, `browser`), or those of Vercel's edge (`edge-light`, `worker`,
 * `browser`). The code is returned, with every esbuild error and warning.
 *
 * @example
 * ```ts ignore
 * import { bundleFor } from "./edge_bundle.ts";
 *
 * const { code, messages } = await bundleFor("testing/fixtures/cloudflare_worker.ts", "workerd");
 * ```
 *
 * @module
 */
import { build, type BuildOptions, type Message } from "esbuild";
import { sourceFile } from "./source.ts";

/** The platforms the fixtures are bundled for. */
export type EdgeTarget = "workerd" | "edge-light" | "browser";

const CONDITIONS: Record<EdgeTarget, string[]> = {
  "workerd": ["workerd", "worker", "browser"],
  "edge-light": ["edge-light", "worker", "browser"],
  "browser": ["browser"],
};

/**
 * Bundles the module at `path` (relative to the repository's root) in memory.
 *
 * @param path Such as `mod.ts`.
 * @param options esbuild's options (the entry point, bundling and silence are set here).
 * @returns The code and every error and warning, `file: text` each.
 */
export async function bundle(path: string, options: BuildOptions): Promise<{ code: string; messages: string[] }> {
  const result = await build({ entryPoints: [sourceFile(path)], bundle: true, write: false, logLevel: "silent", ...options })
    .catch((error: { errors?: Message[]; warnings?: Message[] }) => ({ outputFiles: [], errors: error.errors ?? [], warnings: error.warnings ?? [] }));
  const messages = [...result.errors, ...result.warnings].map((m) => `${m.location?.file ?? ""}: ${m.text}`);
  return { code: result.outputFiles?.map((f) => f.text).join("\n") ?? "", messages };
}

/**
 * Bundles the module at `path` for `target`, with that platform's conditions.
 *
 * @param path Such as `mod.ts`.
 * @param target The platform whose conditions apply.
 * @param options esbuild options over the defaults (format ESM, not minified).
 * @returns The code and the messages, `file: text` each.
 */
export function bundleFor(path: string, target: EdgeTarget, options: BuildOptions = {}): Promise<{ code: string; messages: string[] }> {
  return bundle(path, {
    format: "esm",
    platform: target === "browser" ? "browser" : "neutral",
    conditions: CONDITIONS[target],
    mainFields: ["browser", "module", "main"],
    ...options,
  });
}
