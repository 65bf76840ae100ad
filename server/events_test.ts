// The live-event hub over a real root: what it sends for a script writing into
// the root directly, and that each tick looks only at what changed.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { DashReader } from "../storage/jsonl.ts";
import { EventHub } from "./events.ts";

function writeExperiment(root: string, prefix: string): string {
  const dir = path.join(root, ...prefix.split("/"));
  fs.mkdirSync(path.join(dir, "metrics"), { recursive: true });
  fs.writeFileSync(path.join(dir, "experiment.json"), JSON.stringify({ prefix }));
  fs.writeFileSync(path.join(dir, "status.json"), JSON.stringify({ status: "RUNNING", startedAt: 1, heartbeatAt: Date.now() / 1000 }));
  return dir;
}

/** Reads events from a stream until `until` returns true for the text read so far. */
async function readUntil(reader: ReadableStreamDefaultReader<Uint8Array>, until: (text: string) => boolean): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  while (!until(text)) {
    const { done, value } = await reader.read();
    if (done) break;
    text += decoder.decode(value);
  }
  return text;
}

test("with 300 experiments and a client connected, a tick looks only at the experiment a script wrote to, and its events arrive", async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "ml-dash-events-"));
  for (let i = 0; i < 300; i++) writeExperiment(root, `alice/sweep/run-${i}`);
  const interval = 20;
  const hub = new EventHub(root, new DashReader(root), interval, 1_000_000);
  const stream = hub.subscribe().body!.getReader();
  try {
    await readUntil(stream, (t) => t.includes(": connected"));
    const afterStart = hub.experimentsScanned;
    assert.equal(afterStart, 300, "the first scan looks at every experiment");
    const dir = path.join(root, "alice", "sweep", "run-7");
    fs.appendFileSync(path.join(dir, "metrics", "train.jsonl"), '{"_ts":1,"step":0,"loss":1}\n');
    const text = await readUntil(stream, (t) => t.includes('"prefix":"alice/sweep/run-7"'));
    assert.match(text, /event: metrics\ndata: \{"prefix":"alice\/sweep\/run-7"\}/);
    // Ten more ticks with nothing changed.
    await new Promise((resolve) => setTimeout(resolve, interval * 10));
    const scanned = hub.experimentsScanned - afterStart;
    assert.ok(scanned >= 1 && scanned < 300, `the ticks looked at ${scanned} experiments, not all 300 each`);
  } finally {
    await stream.cancel();
    hub.close();
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test("a new experiment written by a script is announced, and a full scan every few ticks catches what a watch may miss", async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "ml-dash-events-"));
  writeExperiment(root, "alice/a/one");
  const hub = new EventHub(root, new DashReader(root), 20, 5);
  const stream = hub.subscribe().body!.getReader();
  try {
    await readUntil(stream, (t) => t.includes(": connected"));
    writeExperiment(root, "alice/a/two");
    const text = await readUntil(stream, (t) => t.includes('"prefix":"alice/a/two"'));
    assert.match(text, /event: experiment\ndata: \{"prefix":"alice\/a\/two","status":"RUNNING"\}/);
  } finally {
    await stream.cancel();
    hub.close();
    fs.rmSync(root, { recursive: true, force: true });
  }
});
