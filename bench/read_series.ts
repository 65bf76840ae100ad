/**
 * Reading: a single-key series of N points written with the library itself
 * (`exp.metrics("train").log({ loss })`, yielding now and then), then
 * - `DashReader.summary` (count / min / max / last), checked against what was written;
 * - `DashReader.series` + min-max downsampling to 2,000 points (storage/downsample.ts);
 * and, in a second root, E small experiments (one point each) listed with
 * `DashReader.listExperiments`, every one of them found and COMPLETED.
 * A step that throws (e.g. a file too large for one string) is reported as an
 * error row, not hidden.
 *
 * Run: `deno run -A bench/read_series.ts --points=10000000 --experiments=10000` (or bun; node on the compiled file).
 *
 * @module
 */
import { Experiment } from "../mod.ts";
import { DashReader } from "../storage/jsonl.ts";
import { minMaxDownsample } from "../storage/downsample.ts";
import { argInt, emit, fmt, runtimeName, tempDir } from "./_common.ts";

const POINTS = argInt("points", 10_000_000);
const EXPERIMENTS = argInt("experiments", 10_000);
const TARGET_POINTS = 2_000;
const PREFIX = "bench/read/series";
const runtime = runtimeName();
const results: Record<string, unknown>[] = [];

/** Runs a timed step; a thrown error becomes an error row instead of ending the benchmark. */
async function timed(figure: string, work: () => Promise<void>): Promise<number | undefined> {
  const t0 = performance.now();
  try {
    await work();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.log(`  ${figure}: FAILED after ${((performance.now() - t0) / 1000).toFixed(2)} s: ${message}`);
    results.push({ runtime, figure, value: null, unit: "s", error: message.slice(0, 200) });
    return undefined;
  }
  return (performance.now() - t0) / 1000;
}

// ── A long series ──
const seriesRoot = tempDir("read-series");
const writeStart = performance.now();
let expectedMin = Infinity;
let expectedMax = -Infinity;
let expectedLast = NaN;
{
  const exp = new Experiment({ prefix: PREFIX, dashRoot: seriesRoot });
  await exp.run.start();
  const train = exp.metrics("train");
  for (let i = 0; i < POINTS; i++) {
    // A noisy decreasing loss, with one spike the downsampling must keep.
    const loss = i === (POINTS >> 1) ? 1e6 : 1 / (1 + i * 1e-4) + ((i * 2654435761) % 1000) * 1e-6;
    if (loss < expectedMin) expectedMin = loss;
    if (loss > expectedMax) expectedMax = loss;
    expectedLast = loss;
    train.log({ loss });
    if ((i & 0xffff) === 0) await Promise.resolve();
  }
  await exp.run.complete();
}
const writeSeconds = (performance.now() - writeStart) / 1000;
console.log(`read_series on ${runtime}: ${fmt(POINTS)}-point series written in ${writeSeconds.toFixed(2)} s (${fmt(POINTS / writeSeconds)} points/s)`);

const reader = new DashReader(seriesRoot);
const summarySeconds = await timed("summary of series", async () => {
  const summary = (await reader.summary(PREFIX))["train/loss"];
  if (summary?.count !== POINTS) throw new Error(`Expected count ${POINTS}, got ${summary?.count}`);
  if (summary.min !== expectedMin || summary.max !== expectedMax || summary.last !== expectedLast) {
    throw new Error(`Summary ${JSON.stringify(summary)} differs from what was written`);
  }
});
const downsampleSeconds = await timed("series + downsample to 2,000", async () => {
  const series = await reader.series(PREFIX, "train/loss");
  if (series.value.length !== POINTS) throw new Error(`Expected ${POINTS} points, read ${series.value.length}`);
  const out = minMaxDownsample(series.step, series.value, TARGET_POINTS);
  if (out.value.length > TARGET_POINTS || out.value.length < TARGET_POINTS / 2) {
    throw new Error(`Downsampled to ${out.value.length} points`);
  }
  if (!out.value.includes(expectedMax)) throw new Error("The spike was lost in downsampling");
});
if (summarySeconds !== undefined) {
  console.log(`  summary (count/min/max/last)        ${summarySeconds.toFixed(3)} s`);
  results.push({ runtime, figure: "summary of series", value: summarySeconds, unit: "s", note: `${fmt(POINTS)} points` });
}
if (downsampleSeconds !== undefined) {
  console.log(`  series + min-max to ${fmt(TARGET_POINTS)} points   ${downsampleSeconds.toFixed(3)} s`);
  results.push({ runtime, figure: "series + downsample to 2,000", value: downsampleSeconds, unit: "s", note: `${fmt(POINTS)} points` });
}
if (summarySeconds !== undefined && downsampleSeconds !== undefined) {
  const total = summarySeconds + downsampleSeconds;
  console.log(`  both                                ${total.toFixed(3)} s`);
  results.push({ runtime, figure: "summary + downsample", value: total, unit: "s", note: `${fmt(POINTS)} points` });
} else {
  results.push({ runtime, figure: "summary + downsample", value: null, unit: "s", error: "a step failed" });
}

// ── Many experiments ──
const listRoot = tempDir("read-list");
const createStart = performance.now();
const CONCURRENCY = 32;
for (let start = 0; start < EXPERIMENTS; start += CONCURRENCY) {
  const batch: Promise<void>[] = [];
  for (let i = start; i < Math.min(EXPERIMENTS, start + CONCURRENCY); i++) {
    const prefix = `bench/list/group-${String(i % 100).padStart(2, "0")}/exp-${String(i).padStart(5, "0")}`;
    batch.push(new Experiment({ prefix, dashRoot: listRoot, tags: ["bench"] }).run((exp) => {
      exp.metrics("train").log({ loss: 1 / (i + 1) });
    }));
  }
  await Promise.all(batch);
}
const createSeconds = (performance.now() - createStart) / 1000;
console.log(`  ${fmt(EXPERIMENTS)} experiments created in ${createSeconds.toFixed(2)} s`);
const listSeconds = await timed("list experiments", async () => {
  const list = await new DashReader(listRoot).listExperiments();
  if (list.length !== EXPERIMENTS) throw new Error(`Expected ${EXPERIMENTS} experiments, listed ${list.length}`);
  const notDone = list.filter((e) => e.status !== "COMPLETED").length;
  if (notDone > 0) throw new Error(`${notDone} experiments are not COMPLETED`);
});
if (listSeconds !== undefined) {
  console.log(`  listExperiments                     ${listSeconds.toFixed(3)} s`);
  results.push({ runtime, figure: "list experiments", value: listSeconds, unit: "s", note: `${fmt(EXPERIMENTS)} experiments` });
}
emit(results);
