/**
 * Local logging throughput: N points (4 numeric fields per `log()` call)
 * through the Experiment API to JSONL, against a naive baseline
 * (`JSON.stringify` per call + one `appendFile` per 1,000 calls) in the same run,
 * and against the same run with the read index off (its file's name taken by a
 * folder, so that the writer keeps none), twice each, alternating, for what the
 * index costs. The runs without the index files still keep the figures the
 * buffer hands the index (they are kept in log()); for the whole cost, give
 * `--against=<another checkout's mod.ts>` (one whose buffer keeps no figures;
 * `.build/mod.js` there on Node): its tracker then runs twice, read index off,
 * alternating with ours (read index on), and both CPU per point are printed.
 * Prints points/s, per-call p50/p99/max in ns, the amortized in-loop cost per
 * call, and peak RSS; checks that every point reached the disk.
 *
 * Run: `deno run -A bench/log_throughput.ts --points=4000000` (or bun; node on the compiled file).
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Experiment } from "../mod.ts";
import { argInt, argString, countLines, emit, fmt, PeakRss, percentile, runtimeName, tempDir } from "./_common.ts";

/** Each run writes gigabytes at N = 20,000,000: its folder goes once it is counted. */
function removeDir(root: string): void {
  fs.rmSync(root, { recursive: true, force: true });
}

function cpuSince(start: { user: number; system: number }): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1e6;
}

const POINTS = argInt("points", 4_000_000);
const CALLS = Math.floor(POINTS / 4);
const LATENCY_CALLS = Math.min(CALLS, 500_000);

interface Figures {
  pointsPerSec: number;
  seconds: number;
  /** CPU time of the process (every thread), which a busy machine changes less than the wall clock. */
  cpuSeconds: number;
  peakRssMB: number;
}

/** Our tracker: the whole run, from start to a durable complete(); `readIndex: false` keeps the writer from keeping its read index. */
async function tracker(root: string, calls = CALLS, readIndex = true, Tracker: typeof Experiment = Experiment): Promise<Figures> {
  if (!readIndex) fs.mkdirSync(path.join(root, "bench/local/throughput/metrics/train.jsonl.idx"), { recursive: true });
  const rss = new PeakRss();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const exp = new Tracker({ prefix: "bench/local/throughput", dashRoot: root });
  await exp.run.start();
  const train = exp.metrics("train");
  for (let i = 0; i < calls; i++) {
    train.log({ loss: 1 / (i + 1), acc: i / CALLS, lr: 0.001, epoch: i >> 12 });
    if ((i & 0x3fff) === 0) {
      rss.sample();
      await Promise.resolve(); // a training loop yields now and then (data loading, GPU sync)
    }
  }
  await exp.run.complete();
  const seconds = (performance.now() - t0) / 1000;
  const cpuSeconds = cpuSince(cpu0);
  rss.sample();
  const lines = countLines(path.join(root, "bench/local/throughput/metrics/train.jsonl"));
  if (lines !== calls) throw new Error(`Expected ${calls} records on disk, found ${lines}`);
  removeDir(root);
  return { pointsPerSec: (calls * 4) / seconds, seconds, cpuSeconds, peakRssMB: rss.peak / 2 ** 20 };
}

/** The naive baseline: stringify each call, append every 1,000 calls. */
async function baseline(root: string, calls = CALLS): Promise<Figures> {
  const rss = new PeakRss();
  const file = path.join(root, "baseline.jsonl");
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let lines: string[] = [];
  for (let i = 0; i < calls; i++) {
    lines.push(JSON.stringify({ _ts: Date.now() / 1000, step: i, loss: 1 / (i + 1), acc: i / CALLS, lr: 0.001, epoch: i >> 12 }) + "\n");
    if (lines.length === 1000) {
      await fs.promises.appendFile(file, lines.join(""));
      lines = [];
    }
    if ((i & 0x3fff) === 0) rss.sample();
  }
  if (lines.length) await fs.promises.appendFile(file, lines.join(""));
  const seconds = (performance.now() - t0) / 1000;
  const cpuSeconds = cpuSince(cpu0);
  rss.sample();
  if (countLines(file) !== calls) throw new Error("baseline lost records");
  removeDir(root);
  return { pointsPerSec: (calls * 4) / seconds, seconds, cpuSeconds, peakRssMB: rss.peak / 2 ** 20 };
}

/** Per-call latency of log(), and the amortized cost: (loop with logging − loop without) / calls. */
async function latency(root: string): Promise<{ p50: number; p99: number; max: number; amortizedNs: number }> {
  const samples = new Float64Array(LATENCY_CALLS);
  const exp = new Experiment({ prefix: "bench/local/latency", dashRoot: root });
  await exp.run.start();
  const train = exp.metrics("train");
  for (let i = 0; i < LATENCY_CALLS; i++) {
    const t = performance.now();
    train.log({ loss: 1 / (i + 1), acc: i / CALLS, lr: 0.001, epoch: i >> 12 });
    samples[i] = performance.now() - t;
    if ((i & 0x3fff) === 0) await Promise.resolve();
  }
  await exp.run.complete();
  samples.sort();

  let sink = 0;
  const work = (i: number) => {
    // Stand-in for a training step's arithmetic, the same in both loops.
    sink += Math.sqrt(i) * 1e-9;
  };
  const loop = async (withLog: boolean): Promise<number> => {
    const e = new Experiment({ prefix: `bench/local/amortized-${withLog}`, dashRoot: root });
    await e.run.start();
    const m = e.metrics("train");
    const t0 = performance.now();
    for (let i = 0; i < CALLS; i++) {
      work(i);
      if (withLog) m.log({ loss: 1 / (i + 1), acc: i / CALLS, lr: 0.001, epoch: i >> 12 });
      if ((i & 0x3fff) === 0) await Promise.resolve();
    }
    await e.run.complete();
    return performance.now() - t0;
  };
  await loop(false);
  const without = await loop(false);
  const withLogging = await loop(true);
  if (sink < 0) console.log(sink);
  removeDir(root);
  return {
    p50: percentile(samples, 50) * 1e6,
    p99: percentile(samples, 99) * 1e6,
    max: samples[samples.length - 1] * 1e6,
    amortizedNs: ((withLogging - without) * 1e6) / CALLS,
  };
}

const runtime = runtimeName();
// Both warm up first (JIT, heap growth), so that neither pays for it in the figures.
await tracker(tempDir("warm-ours"), Math.min(CALLS, 250_000));
await baseline(tempDir("warm-naive"), Math.min(CALLS, 250_000));
const ours = await tracker(tempDir("ours"));
const naive = await baseline(tempDir("naive"));
const withRuns = [ours, await tracker(tempDir("ours"))];
const withoutRuns = [await tracker(tempDir("no-index"), CALLS, false), await tracker(tempDir("no-index"), CALLS, false)];
const withIndex = withRuns.map((r) => r.pointsPerSec);
const withoutIndex = withoutRuns.map((r) => r.pointsPerSec);
const indexCost = 1 - (withIndex[0] + withIndex[1]) / (withoutIndex[0] + withoutIndex[1]);
const cpuPerPoint = (runs: Figures[]): number => (runs[0].cpuSeconds + runs[1].cpuSeconds) * 1e9 / (2 * CALLS * 4);
const indexCpuCost = cpuPerPoint(withRuns) / cpuPerPoint(withoutRuns) - 1;
const againstPath = argString("against", "");
const against = againstPath === "" ? undefined : ((await import(path.resolve(againstPath))) as { Experiment: typeof Experiment }).Experiment;
const againstRuns: Figures[] = [];
const oursAgain: Figures[] = [];
if (against !== undefined) {
  await tracker(tempDir("warm-against"), Math.min(CALLS, 250_000), false, against);
  for (let i = 0; i < 2; i++) {
    againstRuns.push(await tracker(tempDir("against"), CALLS, false, against));
    oursAgain.push(await tracker(tempDir("ours"), CALLS));
  }
}
const lat = await latency(tempDir("latency"));

console.log(`log_throughput on ${runtime}: ${fmt(POINTS)} points (${fmt(CALLS)} calls × 4 fields), every point checked on disk`);
console.log(`  ml-dash   ${fmt(ours.pointsPerSec).padStart(12)} points/s  ${ours.seconds.toFixed(2)} s (CPU ${ours.cpuSeconds.toFixed(2)} s)  peak RSS ${fmt(ours.peakRssMB)} MB`);
console.log(`  baseline  ${fmt(naive.pointsPerSec).padStart(12)} points/s  ${naive.seconds.toFixed(2)} s (CPU ${naive.cpuSeconds.toFixed(2)} s)  peak RSS ${fmt(naive.peakRssMB)} MB`);
console.log(`  ratio     ${(ours.pointsPerSec / naive.pointsPerSec).toFixed(2)}× the baseline`);
console.log(`  read index: with ${withIndex.map((v) => fmt(v)).join(", ")} points/s, without ${withoutIndex.map((v) => fmt(v)).join(", ")}: it costs ${(indexCost * 100).toFixed(0)} % of the throughput`);
console.log(`  read index: CPU per point ${fmt(cpuPerPoint(withRuns), 1)} ns with, ${fmt(cpuPerPoint(withoutRuns), 1)} ns without: ${(indexCpuCost * 100).toFixed(0)} % more`);
if (against !== undefined) {
  const cost = cpuPerPoint(oursAgain) / cpuPerPoint(againstRuns) - 1;
  console.log(`  against ${againstPath}: CPU per point ${fmt(cpuPerPoint(againstRuns), 1)} ns there without the read index, ${fmt(cpuPerPoint(oursAgain), 1)} ns here with it: ${(cost * 100).toFixed(0)} % more`);
}
console.log(`  log() per call: p50 ${fmt(lat.p50)} ns  p99 ${fmt(lat.p99)} ns  max ${fmt(lat.max / 1000, 2)} µs (performance.now() resolution applies)`);
console.log(`  amortized cost in a loop: ${fmt(lat.amortizedNs)} ns per call`);
emit([
  { runtime, figure: "local points/s", value: ours.pointsPerSec, baseline: naive.pointsPerSec, unit: "points/s", note: `CPU ${ours.cpuSeconds.toFixed(2)} s, baseline ${naive.cpuSeconds.toFixed(2)} s` },
  { runtime, figure: "local points/s, read index off", value: (withoutIndex[0] + withoutIndex[1]) / 2, unit: "points/s", note: "the same run without the read index" },
  { runtime, figure: "read index cost", value: indexCost * 100, unit: "%", note: "1 − with / without, two runs each, alternating" },
  { runtime, figure: "read index CPU cost", value: indexCpuCost * 100, unit: "%", note: "CPU per point with / without − 1" },
  { runtime, figure: "local peak RSS", value: ours.peakRssMB, baseline: naive.peakRssMB, unit: "MB" },
  { runtime, figure: "log() p50", value: lat.p50, unit: "ns" },
  { runtime, figure: "log() p99", value: lat.p99, unit: "ns" },
  { runtime, figure: "log() max", value: lat.max, unit: "ns" },
  { runtime, figure: "amortized log() cost", value: lat.amortizedNs, unit: "ns/call" },
]);
