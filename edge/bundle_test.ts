// The module bundled as a new user would, with esbuild's defaults: for the
// browser (ESM, IIFE, CommonJS), with the conditions wrangler sets for a
// Cloudflare Worker, and the storage and server entry points as CommonJS for
// Node. Each bundle builds with no error and no warning, and keeps no `node:`
// import for a browser or a Worker to attempt.
import { test } from "node:test";
import { deepEqual, doesNotMatch, equal } from "node:assert/strict";
import { bundle, bundleFor } from "../testing/edge_bundle.ts";

const NODE_IMPORT = /(?:from\s*|import\s*\(\s*|require\s*\(\s*)["']node:/;

/** The code without its comments: esbuild keeps the JSDoc of class members, whose examples import node: modules. */
function withoutComments(code: string): string {
  return code.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
}

for (const format of ["esm", "iife", "cjs"] as const) {
  test(`mod.ts bundles for the browser as ${format} with esbuild's defaults, no warning and no node: import`, async () => {
    const { code, messages } = await bundle("mod.ts", { platform: "browser", format });
    deepEqual(messages, []);
    doesNotMatch(withoutComments(code), NODE_IMPORT);
  });
}

test("mod.ts bundles with the conditions wrangler sets for a Worker (workerd, worker, browser), no warning and no node: import", async () => {
  const { code, messages } = await bundleFor("mod.ts", "workerd");
  deepEqual(messages, []);
  doesNotMatch(withoutComments(code), NODE_IMPORT);
});

for (const entry of ["storage/jsonl.ts", "storage/http.ts"]) {
  test(`${entry} bundles as CommonJS for Node (no top-level await), with no warning`, async () => {
    const { messages } = await bundle(entry, { platform: "node", format: "cjs" });
    deepEqual(messages, []);
  });
}

test("server.ts bundles as CommonJS for Node: no top-level await anywhere in its graph", async () => {
  const { messages } = await bundle("server.ts", { platform: "node", format: "cjs" });
  equal(messages.filter((m) => /top-level await/i.test(m)).join("\n"), "");
});
