// What a remote-only Cloudflare Worker loads, minified and gzipped: the single
// bundle wrangler uploads (esbuild inlines mod.ts's lazy imports, the JSONL
// backend included), and, with code splitting, the chunks such a Worker
// actually runs (no JSONL backend, no file system). The figures are printed for
// docs/performance.md; the budgets fail a change that grows them without a
// reason given in the same commit (raise them there).
import { test } from "node:test";
import { ok } from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { bundleFor } from "../testing/edge_bundle.ts";
import { build, type Metafile } from "esbuild";
import { sourceFile } from "../testing/source.ts";

// Raised from 20 KiB when the JSONL writer gained its read index (about 1,400 lines, never run in a Worker).
const BUDGET_SINGLE_BUNDLE = 28 * 1024;
const BUDGET_REMOTE_CHUNKS = 16 * 1024;
const WORKER = "testing/fixtures/cloudflare_worker.ts";

function gzipped(bytes: Uint8Array | string): number {
  return gzipSync(bytes, { level: 9 }).length;
}

test(`a remote-only Worker's single bundle, minified and gzipped, stays within ${BUDGET_SINGLE_BUNDLE} bytes`, async () => {
  const { code, messages } = await bundleFor(WORKER, "workerd", { minify: true });
  ok(messages.length === 0, messages.join("\n"));
  const size = gzipped(code);
  console.log(`worker bundle: ${code.length} bytes minified, ${size} gzipped`);
  ok(size <= BUDGET_SINGLE_BUNDLE, `${size} gzipped bytes`);
});

test(`what a remote-only Worker runs (code splitting: no JSONL backend), minified and gzipped, stays within ${BUDGET_REMOTE_CHUNKS} bytes`, async () => {
  const result = await build({
    entryPoints: [sourceFile(WORKER)], bundle: true, write: false, minify: true, splitting: true, format: "esm", outdir: "out", metafile: true, // nothing is written (write: false)
    platform: "neutral", conditions: ["workerd", "worker", "browser"], mainFields: ["browser", "module", "main"], logLevel: "silent",
  });
  const outputs = (result.metafile as Metafile).outputs;
  const loaded = remoteChunks(outputs);
  let size = 0;
  for (const file of result.outputFiles) if (loaded.has(file.path.slice(file.path.lastIndexOf("/") + 1))) size += gzipped(file.contents);
  console.log(`worker, remote chunks only: ${[...loaded].length} chunks, ${size} bytes gzipped`);
  ok(size <= BUDGET_REMOTE_CHUNKS, `${size} gzipped bytes`);
});

/** The chunks reachable from the entry without going through the JSONL backend's chunk. */
function remoteChunks(outputs: Metafile["outputs"]): Set<string> {
  const name = (path: string): string => path.slice(path.lastIndexOf("/") + 1);
  const byName = new Map(Object.entries(outputs).map(([path, output]) => [name(path), output]));
  const isLocal = (output: Metafile["outputs"][string]): boolean => Object.keys(output.inputs).some((input) => /storage\/(jsonl|file_system)\.[jt]s$/.test(input));
  const entry = [...byName].find(([, output]) => output.entryPoint)![0];
  const seen = new Set<string>();
  const visit = (chunk: string): void => {
    const output = byName.get(chunk);
    if (!output || seen.has(chunk) || isLocal(output)) return;
    seen.add(chunk);
    for (const imported of output.imports) visit(name(imported.path));
  };
  visit(entry);
  return seen;
}
