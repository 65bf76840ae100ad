// Checks the test harness itself: a fixture runs as a child on the same runtime.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { denoPath, runScript, runtimeName } from "./testing/run_script.ts";

test("runScript() runs a fixture on the runtime that runs the tests", async () => {
  const result = await runScript(
    new URL("./testing/fixtures/hello.ts", import.meta.url),
    { args: ["a b", "c"], timeoutMs: 30_000 },
  );
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.signal, null);
  assert.deepEqual(result.stdout.trim().split("\n"), [
    "hello",
    runtimeName(),
    "a b",
    "c",
  ]);
});

test("denoPath() finds the Deno binary installed by npm", () => {
  const result = spawnSync(denoPath(), ["--version"], { encoding: "utf8" });
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /^deno \d+\.\d+\.\d+/);
});
