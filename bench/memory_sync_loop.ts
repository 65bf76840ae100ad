/**
 * Memory when the caller never yields: N points (4 numeric fields per `log()`
 * call) logged in a loop that never awaits, so no microtask or timer can run
 * until the loop ends. The peak RSS is sampled inside the loop; at the end the
 * experiment is completed and every point is checked on disk.
 *
 * Run: `deno run -A bench/memory_sync_loop.ts --points=20000000` (or bun; node on the compiled file).
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Experiment } from "../mod.ts";
import { argInt, countLines, emit, fmt, PeakRss, runtimeName, tempDir } from "./_common.ts";

const POINTS = argInt("points", 20_000_000);
const CALLS = Math.floor(POINTS / 4);

const runtime = runtimeName();
const root = tempDir("sync-loop");
const rss = new PeakRss();
rss.sample();
const startRssMB = rss.peak / 2 ** 20;

const exp = new Experiment({ prefix: "bench/local/sync-loop", dashRoot: root });
await exp.run.start();
const train = exp.metrics("train");
const t0 = performance.now();
// No await in here: the buffer must keep memory bounded on its own.
for (let i = 0; i < CALLS; i++) {
  train.log({ loss: 1 / (i + 1), acc: i / CALLS, lr: 0.001, epoch: i >> 12 });
  if ((i & 0x3fff) === 0) rss.sample();
}
const loopSeconds = (performance.now() - t0) / 1000;
rss.sample();
await exp.run.complete();
const seconds = (performance.now() - t0) / 1000;
rss.sample();

const lines = countLines(path.join(root, "bench/local/sync-loop/metrics/train.jsonl"));
if (lines !== CALLS) throw new Error(`Expected ${CALLS} records on disk, found ${lines}`);
fs.rmSync(root, { recursive: true, force: true }); // about 1.7 GB at N = 20,000,000
const peakRssMB = rss.peak / 2 ** 20;

console.log(`memory_sync_loop on ${runtime}: ${fmt(POINTS)} points (${fmt(CALLS)} calls × 4 fields), loop never awaits, every point checked on disk`);
console.log(`  peak RSS ${fmt(peakRssMB)} MB (${fmt(startRssMB)} MB before the loop)`);
console.log(`  ${fmt(POINTS / seconds)} points/s  loop ${loopSeconds.toFixed(2)} s, until durable ${seconds.toFixed(2)} s`);
emit([
  { runtime, figure: "sync-loop peak RSS", value: peakRssMB, unit: "MB", note: `${fmt(POINTS)} points; ${fmt(startRssMB)} MB before the loop` },
  { runtime, figure: "sync-loop points/s", value: POINTS / seconds, unit: "points/s" },
]);
