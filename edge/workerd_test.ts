// A Cloudflare module Worker in the real workerd (through Miniflare), without
// nodejs_compat: bundled as wrangler does, it logs one experiment per request
// to a real server on a loopback port, finished with ctx.waitUntil.
import { after, before, test } from "node:test";
import { rmSync } from "node:fs";
import { deepEqual, equal, match } from "node:assert/strict";
import { serve } from "../server.ts";
import type { DashServer } from "../server.ts";
import { bundleFor } from "../testing/edge_bundle.ts";
import { Miniflare } from "miniflare";
import { tempDir } from "../testing/temp.ts";
import { longerTimeoutsOnBun } from "../testing/run_script.ts";
import { waitForExperiment } from "../testing/edge_server.ts";

await longerTimeoutsOnBun();

let server: DashServer;
let root: string;
let worker: Miniflare | undefined;

before(async () => {
  root = tempDir("workerd");
  server = await serve({ root, port: 0, quiet: true });
});

after(async () => {
  await worker?.dispose();
  await server?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

test("a Worker without nodejs_compat logs an experiment per request to the server, finished with ctx.waitUntil", { timeout: 120_000 }, async () => {
  const { code, messages } = await bundleFor("testing/fixtures/cloudflare_worker.ts", "workerd");
  deepEqual(messages, []);
  worker = new Miniflare({ modules: true, script: code, compatibilityDate: "2025-01-01", bindings: { DASH_URL: server.url } });
  for (const id of ["a", "b"]) {
    const response = await worker.dispatchFetch(`http://worker.test/?id=${id}`);
    equal(await response.text(), `logged ${id}`);
  }
  for (const id of ["a", "b"]) {
    const experiment = await waitForExperiment(server.url, `alice/workerd/${id}`);
    equal(experiment.status.status, "COMPLETED");
    equal(experiment.summary["train/loss"].count, 1);
  }
});

test("local mode in a Worker (no file system) rejects at start, naming the runtime and the way out", { timeout: 120_000 }, async () => {
  const response = await worker!.dispatchFetch("http://worker.test/?id=local");
  match(await response.text(), /No file system in this runtime \(workerd\): .* log to a server instead \(the dashUrl option or ML_DASH_URL\)/);
});
