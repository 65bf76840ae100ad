/**
 * Reading: a single-key series of N points written with the library itself
 * (`exp.metrics("train").log({ loss })`, yielding now and then), then
 * - in a new process (cold): `DashReader.summary` (count / min / max / last,
 *   checked against what was written) and `DashReader.downsampled` to 2,000
 *   points, through the read index the writer kept;
 * - in this process: the same with a new reader, against a naive full parse in
 *   the same run (read the file, `JSON.parse` each line, min-max buckets), and
 *   the whole series read without the index (`DashReader.series` +
 *   `minMaxDownsample`, what charts did before the index);
 * - a zoom to 1 % of the steps (`DashReader.downsampled` with from / to);
 * - the first chart of a 1,000,000-point run from a freshly started server
 *   (`ml-dash serve` in a new process): its experiment (the summary), then its series;
 * and, in another root, E small experiments (one point each) listed with
 * `DashReader.listExperiments`, every one of them found and COMPLETED.
 * A step that throws (e.g. a file too large for one string) is reported as an
 * error row, not hidden.
 *
 * Run: `deno run -A bench/read_series.ts --points=10000000 --experiments=10000` (or bun; node on the compiled file).
 *
 * @module
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { fileURLToPath } from "node:url";
import { Experiment } from "../mod.ts";
import { DashReader } from "../storage/jsonl.ts";
import { minMaxDownsample } from "../storage/downsample.ts";
import { argInt, argString, emit, fmt, runtimeName, selfCommand, tempDir } from "./_common.ts";

const POINTS = argInt("points", 10_000_000);
const EXPERIMENTS = argInt("experiments", 10_000);
const CHART_POINTS = argInt("chart-points", 1_000_000);
const TARGET_POINTS = 2_000;
const PREFIX = "bench/read/series";
const KEY = "train/loss";
const runtime = runtimeName();
const results: Record<string, unknown>[] = [];

/** What a summary and a chart must show of the series written. */
interface Expected {
  count: number;
  min: number;
  max: number;
  last: number;
}

/** Summary + downsample through the index with a new reader; throws if the answers are not what was written. */
async function summaryAndChart(root: string, expected: Expected): Promise<void> {
  const reader = new DashReader(root);
  const summary = (await reader.summary(PREFIX))[KEY];
  if (summary?.count !== expected.count || summary.min !== expected.min || summary.max !== expected.max || summary.last !== expected.last) {
    throw new Error(`Summary ${JSON.stringify(summary)} differs from what was written ${JSON.stringify(expected)}`);
  }
  const chart = await reader.downsampled(PREFIX, KEY, { x: "step", points: TARGET_POINTS });
  checkChart(chart.value, chart.total, expected);
}

function checkChart(value: number[], total: number, expected: Expected): void {
  if (total !== expected.count) throw new Error(`Expected ${expected.count} points in the chart's range, found ${total}`);
  if (value.length > TARGET_POINTS || value.length < TARGET_POINTS / 2) throw new Error(`Downsampled to ${value.length} points`);
  if (!value.includes(expected.max)) throw new Error("The spike was lost in downsampling");
}

// ── A cold reader: this script run again with --cold=<root> ──
const coldRoot = argString("cold", "");
if (coldRoot !== "") {
  const expected = JSON.parse(argString("expected", "{}")) as Expected;
  const t0 = performance.now();
  await summaryAndChart(coldRoot, expected);
  console.log(`COLD ${JSON.stringify({ seconds: (performance.now() - t0) / 1000 })}`);
  process.exit(0);
}

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

/** Writes a noisy decreasing loss of `points` points with one spike; returns what a summary must say. */
async function writeSeries(root: string, points: number): Promise<Expected> {
  const expected: Expected = { count: points, min: Infinity, max: -Infinity, last: NaN };
  const exp = new Experiment({ prefix: PREFIX, dashRoot: root });
  await exp.run.start();
  const train = exp.metrics("train");
  for (let i = 0; i < points; i++) {
    const loss = i === (points >> 1) ? 1e6 : 1 / (1 + i * 1e-4) + ((i * 2654435761) % 1000) * 1e-6;
    if (loss < expected.min) expected.min = loss;
    if (loss > expected.max) expected.max = loss;
    expected.last = loss;
    train.log({ loss });
    if ((i & 0xffff) === 0) await Promise.resolve();
  }
  await exp.run.complete();
  return expected;
}

/** The naive full parse: read the file a few MB at a time, JSON.parse each line, summarise, min-max buckets. */
function naiveSummaryAndChart(file: string, expected: Expected): void {
  const fd = fs.openSync(file, "r");
  const buffer = new Uint8Array(4 << 20);
  const decoder = new TextDecoder();
  const step: number[] = [];
  const value: number[] = [];
  let min = Infinity;
  let max = -Infinity;
  let last = NaN;
  let rest = "";
  try {
    for (;;) {
      const n = fs.readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) break;
      const lines = (rest + decoder.decode(buffer.subarray(0, n), { stream: true })).split("\n");
      rest = lines.pop()!;
      for (const line of lines) {
        const record = JSON.parse(line);
        const v = Number(record.loss);
        step.push(record.step);
        value.push(v);
        if (v < min) min = v;
        if (v > max) max = v;
        last = v;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  if (value.length !== expected.count || min !== expected.min || max !== expected.max || last !== expected.last) {
    throw new Error("The naive parse read something else than was written");
  }
  const out = minMaxDownsample(step, value, TARGET_POINTS);
  checkChart(out.value, value.length, expected);
}

/** The command that runs the CLI on this runtime (the compiled cli.js under Node). */
function cliCommand(args: string[]): string[] {
  const compiled = !import.meta.url.endsWith(".ts");
  const cli = fileURLToPath(new URL(compiled ? "../cli.js" : "../cli.ts", import.meta.url));
  return runtime === "deno" ? [process.execPath, "run", "-A", cli, ...args] : [process.execPath, cli, ...args];
}

/** Starts `ml-dash serve` on a free port in a new process; resolves with its URL and a way to stop it. */
function startServer(root: string): Promise<{ url: string; stop: () => void }> {
  const [cmd, ...args] = cliCommand(["serve", "--root", root, "--port", "0"]);
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  return new Promise((resolve, reject) => {
    let output = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`The server did not start: ${output}`));
    }, 30_000);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      const found = /serving .* at (http:\/\/\S+)/.exec(output);
      if (found) {
        clearTimeout(timer);
        resolve({ url: found[1], stop: () => child.kill("SIGTERM") });
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.on("error", reject);
  });
}

// ── A long series ──
const seriesRoot = tempDir("read-series");
const writeStart = performance.now();
const expected = await writeSeries(seriesRoot, POINTS);
const writeSeconds = (performance.now() - writeStart) / 1000;
const file = `${seriesRoot}/${PREFIX}/metrics/train.jsonl`;
console.log(`read_series on ${runtime}: ${fmt(POINTS)}-point series written in ${writeSeconds.toFixed(2)} s (${fmt(POINTS / writeSeconds)} points/s), ${fmt(fs.statSync(file).size / 2 ** 20)} MB of JSONL`);

const coldStart = performance.now();
let coldWall = NaN;
let coldResult = NaN;
const coldSeconds = await timed("summary + downsample", () => {
  const [cmd, ...args] = selfCommand(import.meta.url, [`--cold=${seriesRoot}`, `--expected=${JSON.stringify(expected)}`]);
  const out = spawnSync(cmd, args, { encoding: "utf8" });
  coldWall = (performance.now() - coldStart) / 1000;
  const line = out.stdout.split("\n").find((l) => l.startsWith("COLD "));
  if (out.status !== 0 || !line) return Promise.reject(new Error(`The cold reader failed: ${out.stderr.slice(-500)}`));
  coldResult = JSON.parse(line.slice(5)).seconds;
  return Promise.resolve();
});
if (coldSeconds !== undefined) {
  console.log(`  summary + downsample, new process   ${coldResult.toFixed(3)} s  (the process from spawn to exit: ${coldWall.toFixed(2)} s)`);
  results.push({ runtime, figure: "summary + downsample", value: coldResult, unit: "s", note: `${fmt(POINTS)} points, read index, new process` });
}

const indexSeconds = await timed("summary + downsample (index, this process)", () => summaryAndChart(seriesRoot, expected));
const naiveSeconds = await timed("naive full parse", () => Promise.resolve(naiveSummaryAndChart(file, expected)));
if (indexSeconds !== undefined && naiveSeconds !== undefined) {
  console.log(`  summary + downsample, this process  ${indexSeconds.toFixed(3)} s`);
  console.log(`  naive full parse (JSON.parse)       ${naiveSeconds.toFixed(3)} s  → the index is ${(naiveSeconds / indexSeconds).toFixed(0)}× faster`);
  results.push({ runtime, figure: "summary + downsample (in process)", value: indexSeconds, baseline: naiveSeconds, unit: "s", note: "baseline: naive JSON.parse of every line" });
}

const zoomReader = new DashReader(seriesRoot);
await zoomReader.summary(PREFIX);
const from = Math.floor(POINTS * 0.495);
const to = from + Math.floor(POINTS / 100) - 1;
const zoomSeconds = await timed("zoom to 1 %", async () => {
  const zoom = await zoomReader.downsampled(PREFIX, KEY, { x: "step", from, to, points: TARGET_POINTS });
  if (zoom.total !== to - from + 1) throw new Error(`Expected ${to - from + 1} points in the zoom, found ${zoom.total}`);
  if (!zoom.value.includes(expected.max)) throw new Error("The zoom lost the spike");
});
if (zoomSeconds !== undefined) {
  console.log(`  zoom to 1 % of the steps            ${(zoomSeconds * 1000).toFixed(1)} ms`);
  results.push({ runtime, figure: "zoom to 1 %", value: zoomSeconds * 1000, unit: "ms", note: `${fmt(POINTS / 100)} of ${fmt(POINTS)} points` });
}

const seriesSeconds = await timed("series + downsample to 2,000", async () => {
  const series = await new DashReader(seriesRoot).series(PREFIX, KEY);
  if (series.value.length !== POINTS) throw new Error(`Expected ${POINTS} points, read ${series.value.length}`);
  checkChart(minMaxDownsample(series.step, series.value, TARGET_POINTS).value, series.value.length, expected);
});
if (seriesSeconds !== undefined) {
  console.log(`  whole series read, no index         ${seriesSeconds.toFixed(3)} s`);
  results.push({ runtime, figure: "series + downsample to 2,000", value: seriesSeconds, unit: "s", note: `${fmt(POINTS)} points, every record read` });
}

// ── The first chart from a freshly started server ──
const chartRoot = tempDir("read-chart");
const chartExpected = await writeSeries(chartRoot, CHART_POINTS);
const server = await startServer(chartRoot);
try {
  const chartSeconds = await timed("first chart from a new server", async () => {
    const q = (path: string, params: Record<string, string>) => fetch(`${server.url}/api/v1/${path}?${new URLSearchParams(params)}`).then((r) => r.json());
    const detail = await q("experiment", { prefix: PREFIX });
    if (detail.summary?.[KEY]?.count !== CHART_POINTS) throw new Error(`The experiment shows ${JSON.stringify(detail.summary?.[KEY])}`);
    const page = await q("series", { prefix: PREFIX, key: KEY, x: "step", points: String(TARGET_POINTS) });
    checkChart(page.value.map(Number), page.total, chartExpected);
  });
  if (chartSeconds !== undefined) {
    console.log(`  first chart, new server (${fmt(CHART_POINTS)} points) ${(chartSeconds * 1000).toFixed(0)} ms`);
    results.push({ runtime, figure: "first chart from a new server", value: chartSeconds * 1000, unit: "ms", note: `${fmt(CHART_POINTS)} points: experiment + series` });
  }
} finally {
  server.stop();
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
