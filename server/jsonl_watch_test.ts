// The watcher of a real JSONL root: what it reports for a script writing into
// the root directly, and that each tick looks only at what changed.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { DashReader } from "../storage/jsonl.ts";
import { RootWatcher } from "./jsonl_watch.ts";
import type { Change } from "./store.ts";

function writeExperiment(root: string, prefix: string): string {
  const dir = path.join(root, ...prefix.split("/"));
  fs.mkdirSync(path.join(dir, "metrics"), { recursive: true });
  fs.writeFileSync(path.join(dir, "experiment.json"), JSON.stringify({ prefix }));
  fs.writeFileSync(path.join(dir, "status.json"), JSON.stringify({ status: "RUNNING", startedAt: 1, heartbeatAt: Date.now() / 1000 }));
  return dir;
}

/** Collects changes; `until` resolves once one matches. */
function collector(): { onChange(change: Change): void; changes: Change[]; until(match: (c: Change) => boolean): Promise<void> } {
  const changes: Change[] = [];
  let wake: (() => void) | undefined;
  return {
    changes,
    onChange(change) {
      changes.push(change);
      wake?.();
    },
    async until(match) {
      while (!changes.some(match)) await new Promise<void>((resolve) => (wake = resolve));
    },
  };
}

test("with 300 experiments and a client connected, a tick looks only at the experiment a script wrote to, and its events arrive", async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "ml-dash-events-"));
  for (let i = 0; i < 300; i++) writeExperiment(root, `alice/sweep/run-${i}`);
  const interval = 20;
  const watcher = new RootWatcher(root, new DashReader(root), interval, 1_000_000);
  const seen = collector();
  try {
    await watcher.start(seen.onChange);
    const afterStart = watcher.experimentsScanned;
    assert.equal(afterStart, 300, "the first scan looks at every experiment");
    const dir = path.join(root, "alice", "sweep", "run-7");
    fs.appendFileSync(path.join(dir, "metrics", "train.jsonl"), '{"_ts":1,"step":0,"loss":1}\n');
    await seen.until((c) => c.prefix === "alice/sweep/run-7");
    assert.deepEqual(seen.changes, [{ kind: "metrics", prefix: "alice/sweep/run-7" }]);
    // Ten more ticks with nothing changed.
    await new Promise((resolve) => setTimeout(resolve, interval * 10));
    const scanned = watcher.experimentsScanned - afterStart;
    assert.ok(scanned >= 1 && scanned < 300, `the ticks looked at ${scanned} experiments, not all 300 each`);
  } finally {
    watcher.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test("a new experiment written by a script is announced, and a full scan every few ticks catches what a watch may miss", async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "ml-dash-events-"));
  writeExperiment(root, "alice/a/one");
  const watcher = new RootWatcher(root, new DashReader(root), 20, 5);
  const seen = collector();
  try {
    await watcher.start(seen.onChange);
    writeExperiment(root, "alice/a/two");
    await seen.until((c) => c.prefix === "alice/a/two");
    assert.deepEqual(seen.changes[0], { kind: "experiment", prefix: "alice/a/two", status: "RUNNING" });
  } finally {
    watcher.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
});
