// A Vercel edge function in the real edge-runtime: bundled with the edge-light
// condition, it logs one experiment per request to a real server on a loopback
// port, finished with event.waitUntil.
import { after, before, test } from "node:test";
import { rmSync } from "node:fs";
import { deepEqual, equal } from "node:assert/strict";
import { serve } from "../server.ts";
import type { DashServer } from "../server.ts";
import { bundleFor } from "../testing/edge_bundle.ts";
import { waitForExperiment } from "../testing/edge_server.ts";
import { longerTimeoutsOnBun, runtimeName } from "../testing/run_script.ts";
import { tempDir } from "../testing/temp.ts";

await longerTimeoutsOnBun();

// edge-runtime is a Node package (node:vm); under Deno its own modules do not resolve
// (@edge-runtime/primitives/load), so the test runs on Node and Bun.
const skip = runtimeName() === "deno" ? "edge-runtime does not start under Deno (its @edge-runtime/primitives/load does not resolve); Node and Bun run this test" : false;
let server: DashServer;
let root: string;

before(async () => {
  root = tempDir("edge-runtime");
  server = await serve({ root, port: 0, quiet: true });
});

after(async () => {
  await server?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

test("a Vercel edge function logs an experiment per request to the server, finished with event.waitUntil", { skip, timeout: 60_000 }, async () => {
  const { EdgeRuntime } = await import("edge-runtime");
  const { code, messages } = await bundleFor("testing/fixtures/vercel_edge.ts", "edge-light", { format: "iife", define: { DASH_URL: JSON.stringify(server.url) } });
  deepEqual(messages, []);
  const runtime = new EdgeRuntime({ initialCode: code });
  for (const id of ["a", "b"]) {
    const response = await runtime.dispatchFetch(`http://edge.test/?id=${id}`);
    equal(await response.text(), `logged ${id}`);
    await response.waitUntil();
  }
  for (const id of ["a", "b"]) {
    const experiment = await waitForExperiment(server.url, `alice/edge-light/${id}`);
    equal(experiment.status.status, "COMPLETED");
    equal(experiment.summary["train/loss"].count, 1);
  }
});
