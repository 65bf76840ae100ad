// Tests of the read index (storage/read_index.ts) as the writer keeps it and the reader
// trusts it: each way an index goes wrong (missing, torn by a crash, older than the data,
// a JSONL edited by hand or truncated, garbage, several writing processes) gives the same
// answers as a full scan of the JSONL with JSON.parse.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { minMaxDownsample } from "./downsample.ts";
import { DashReader, JsonlBackend } from "./jsonl.ts";
import type { KeySummary } from "./jsonl.ts";
import { metricIndexPath, metricPath } from "./layout.ts";
import { BLOCK_RECORDS, downsampleRange, encodeBlock, loadIndex, MetricIndex, summarize } from "./read_index.ts";
import type { RangePoints } from "./read_index.ts";
import { runScript } from "../testing/run_script.ts";
import { tempDir } from "../testing/temp.ts";

const PREFIX = "alice/index/run";
const TEST_TIMEOUT = { timeout: 120_000 };

/** A value that is sometimes NaN or ±Infinity (stored as strings), with a spike. */
function lossAt(i: number): number | string {
  if (i % 997 === 5) return "NaN";
  if (i === 3001) return "Infinity";
  if (i === 4002) return "-Infinity";
  return i === 2500 ? 1e6 : 1 / (1 + i * 1e-3) + ((i * 7919) % 101) * 1e-5;
}

function record(i: number): string {
  const fields: Record<string, number | string> = { _ts: 1000 + i / 10, step: i, loss: lossAt(i) };
  if (i % 3 === 0) fields.acc = i / 7;
  return JSON.stringify(fields);
}

/** Writes records `[from, to)` through the writer in batches of `batch`, closing it after (one session). */
async function writeSession(root: string, from: number, to: number, batch = 100): Promise<void> {
  const backend = new JsonlBackend(root);
  for (let i = from; i < to; i += batch) {
    const lines = [];
    for (let j = i; j < Math.min(to, i + batch); j++) lines.push(record(j));
    await backend.write(PREFIX, { metrics: { train: [lines.join("\n")] } });
  }
  await backend.close();
}

/** The summary a full scan gives: JSON.parse of every whole line. */
function scannedSummary(file: string): Record<string, KeySummary> {
  const result = new Map<string, KeySummary>();
  const text = fs.readFileSync(file, "utf8");
  for (const line of text.slice(0, text.lastIndexOf("\n") + 1).split("\n")) {
    if (line === "") continue;
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(line);
    } catch {
      continue;
    }
    const step = "step" in parsed ? Number(parsed.step) : null;
    for (const [name, raw] of Object.entries(parsed)) {
      if (name === "step" || name === "_ts") continue;
      const value = Number(raw);
      const s = result.get(`train/${name}`) ?? { count: 0, min: null, max: null, last: null, lastStep: null };
      result.set(`train/${name}`, s);
      s.count++;
      s.last = value;
      s.lastStep = step;
      if (Number.isFinite(value)) {
        if (s.min === null || value < s.min) s.min = value;
        if (s.max === null || value > s.max) s.max = value;
      }
    }
  }
  return Object.fromEntries([...result].sort(([a], [b]) => a.localeCompare(b)));
}

/** Every point of `loss` by a full scan: JSON.parse of every whole line. */
function scannedPoints(file: string): RangePoints {
  const points: RangePoints = { step: [], ts: [], value: [] };
  const text = fs.readFileSync(file, "utf8");
  for (const line of text.slice(0, text.lastIndexOf("\n") + 1).split("\n")) {
    if (line === "") continue;
    try {
      const parsed = JSON.parse(line);
      if (!("loss" in parsed)) continue;
      points.step.push(Number(parsed.step));
      points.ts.push(Number(parsed._ts));
      points.value.push(Number(parsed.loss));
    } catch {
      // Not a record.
    }
  }
  return points;
}

/** What a reader answers with a fresh look at the files: summary, a chart, a zoom, a zoom small enough to be exact. */
async function answers(root: string): Promise<unknown> {
  const reader = new DashReader(root);
  return {
    summary: await reader.summary(PREFIX),
    chart: await reader.downsampled(PREFIX, "train/loss", { x: "step", points: 40 }),
    byTime: await reader.downsampled(PREFIX, "train/loss", { x: "_ts", from: 1100, to: 1400, points: 40 }),
    zoom: await reader.downsampled(PREFIX, "train/loss", { x: "step", from: 1500, to: 1530, points: 100 }),
  };
}

/** The same questions answered by a full scan: an index built from the JSONL alone, and JSON.parse for the summary and the exact zoom. */
function fullScanAnswers(file: string): unknown {
  const index = new MetricIndex();
  index.scanFile(file, fs.statSync(file).size);
  const blocks = index.blocks();
  const all = scannedPoints(file);
  const read = (from: number, to: number): RangePoints => {
    const keep = all.step.map((s, i) => [s, i]).filter(([s]) => s >= from && s <= to).map(([, i]) => i);
    return { step: keep.map((i) => all.step[i]), ts: keep.map((i) => all.ts[i]), value: keep.map((i) => all.value[i]) };
  };
  const readPoints = (start: number, end: number): RangePoints => {
    const text = fs.readFileSync(file).subarray(start, end).toString("utf8");
    const points: RangePoints = { step: [], ts: [], value: [] };
    for (const line of text.split("\n")) {
      try {
        const parsed = JSON.parse(line);
        if (!("loss" in parsed)) continue;
        points.step.push(Number(parsed.step));
        points.ts.push(Number(parsed._ts));
        points.value.push(Number(parsed.loss));
      } catch {
        // Not a record.
      }
    }
    return points;
  };
  const zoom = read(1500, 1530);
  return {
    summary: scannedSummary(file),
    chart: downsampleRange(blocks, "loss", { x: "step", points: 40 }, readPoints),
    byTime: downsampleRange(blocks, "loss", { x: "_ts", from: 1100, to: 1400, points: 40 }, readPoints),
    zoom: { x: zoom.step, value: zoom.value, ts: zoom.ts, total: zoom.value.length, downsampled: false },
  };
}

function files(root: string): { file: string; index: string } {
  const file = metricPath(root, PREFIX, "train");
  return { file, index: metricIndexPath(file) };
}

describe("the read index the writer keeps", () => {
  it("covers every record written over several sessions, blocks for blocks as a full scan builds them", async () => {
    const root = tempDir("index");
    await writeSession(root, 0, 1500);
    await writeSession(root, 1500, 1700, 7);
    await writeSession(root, 1700, 5000, 333);
    const { file } = files(root);
    const { index, stale } = loadIndex(file);
    assert.equal(stale, false);
    assert.equal(index.records, 5000);
    assert.equal(index.bytes, fs.statSync(file).size);
    const scanned = new MetricIndex();
    scanned.scanFile(file, fs.statSync(file).size);
    assert.deepEqual(index.blocks().map(encodeBlock), scanned.blocks().map(encodeBlock));
    assert.deepEqual(await answers(root), fullScanAnswers(file));
  });

  it("a writer goes on from the last block line that matches the JSONL, also one superseded by another writer's", async () => {
    const root = tempDir("index");
    await writeSession(root, 0, 3000);
    const { file, index } = files(root);
    // What another writer that knew fewer records of the last block would have written at its close.
    const text = fs.readFileSync(file, "utf8");
    const prefix = text.split("\n").slice(0, 2 * BLOCK_RECORDS + 500).join("\n") + "\n";
    const older = new MetricIndex();
    older.feed(prefix, 0, Buffer.byteLength(prefix), true);
    fs.appendFileSync(index, encodeBlock(older.openBlock()!) + "\n");
    await writeSession(root, 3000, 5000);
    const kept = loadIndex(file);
    assert.equal(kept.stale, false);
    const scanned = new MetricIndex();
    scanned.scanFile(file, fs.statSync(file).size);
    assert.deepEqual(kept.index.blocks().map(encodeBlock), scanned.blocks().map(encodeBlock));
  });

  it("summaries are exact and NaN and ±Infinity are kept as a full scan reads them", async () => {
    const root = tempDir("index");
    await writeSession(root, 0, 5000);
    const { file } = files(root);
    const summary = await new DashReader(root).summary(PREFIX);
    assert.deepEqual(summary, scannedSummary(file));
    assert.equal(summary["train/loss"].max, 1e6);
    const chart = await new DashReader(root).downsampled(PREFIX, "train/loss", { x: "step", points: 10 });
    assert.ok(chart.value.includes(Infinity) && chart.value.includes(-Infinity), "the extremes a chart keeps include ±Infinity");
    assert.equal(chart.total, 5000);
    assert.ok(chart.x.length <= 10);
  });

  it("a range small enough answers its real points in order, as the series and minMaxDownsample do", async () => {
    const root = tempDir("index");
    await writeSession(root, 0, 5000);
    const reader = new DashReader(root);
    const series = await reader.series(PREFIX, "train/loss");
    const inRange = series.step.map((s, i) => [s, i]).filter(([s]) => s >= 990 && s <= 2100).map(([, i]) => i);
    const expected = minMaxDownsample(inRange.map((i) => series.step[i]), inRange.map((i) => series.value[i]), 3000);
    const zoom = await reader.downsampled(PREFIX, "train/loss", { x: "step", from: 990, to: 2100, points: 3000 });
    assert.deepEqual({ x: zoom.x, value: zoom.value }, { x: expected.x, value: expected.value });
    assert.equal(zoom.total, inRange.length);
    const reduced = await reader.downsampled(PREFIX, "train/loss", { x: "step", from: 990, to: 2100, points: 100 });
    const expectedReduced = minMaxDownsample(inRange.map((i) => series.step[i]), inRange.map((i) => series.value[i]), 100);
    assert.deepEqual({ x: reduced.x, value: reduced.value }, { x: expectedReduced.x, value: expectedReduced.value });
  });

  it("a summary and a chart read the index, not the records: values changed in place in an inner block are not seen", async () => {
    const root = tempDir("index");
    await writeSession(root, 0, 5000);
    const { file } = files(root);
    const chart = (): Promise<unknown> => new DashReader(root).downsampled(PREFIX, "train/loss", { x: "step", points: 6 });
    const before = { summary: await new DashReader(root).summary(PREFIX), chart: await chart() };
    // Same length, not the last line of its block: only a read of the records would see it.
    const text = fs.readFileSync(file, "utf8");
    const at = text.indexOf('"step":400,"loss":0.') + '"step":400,"loss":'.length;
    fs.writeFileSync(file, text.slice(0, at) + "9" + text.slice(at + 1));
    assert.deepEqual({ summary: await new DashReader(root).summary(PREFIX), chart: await chart() }, before);
    const index = new MetricIndex();
    index.scanFile(file, fs.statSync(file).size);
    const scannedChart = downsampleRange(index.blocks(), "loss", { x: "step", points: 6 }, () => ({ step: [], ts: [], value: [] }));
    assert.notDeepEqual(scannedChart, before.chart, "a full scan sees the change");
  });
});

describe("an index that went wrong gives the same answers as a full scan", () => {
  it("missing: rebuilt from the JSONL, and written again", async () => {
    const root = tempDir("index");
    await writeSession(root, 0, 5000);
    const { file, index } = files(root);
    fs.rmSync(index);
    assert.deepEqual(await answers(root), fullScanAnswers(file));
    assert.ok(fs.existsSync(index), "the reader wrote the index again");
    assert.equal(loadIndex(file).stale, false);
  });

  it("torn by a crash mid-write of its last line", async () => {
    const root = tempDir("index");
    await writeSession(root, 0, 5000);
    const { file, index } = files(root);
    fs.truncateSync(index, fs.statSync(index).size - 40);
    assert.deepEqual(await answers(root), fullScanAnswers(file));
  });

  it("a crash of the writer: the block it was filling is read from the JSONL", async () => {
    const root = tempDir("index");
    await writeSession(root, 0, 3000);
    const { file } = files(root);
    const backend = new JsonlBackend(root);
    for (let i = 3000; i < 5000; i += 100) {
      await backend.write(PREFIX, { metrics: { train: [Array.from({ length: 100 }, (_, j) => record(i + j)).join("\n")] } });
    }
    // No close: the open block never reaches the index file, as when the process is killed.
    assert.deepEqual(await answers(root), fullScanAnswers(file));
    await backend.close();
  });

  it("older than the data: lines appended by another program are indexed from where the index ends", async () => {
    const root = tempDir("index");
    await writeSession(root, 0, 3000);
    const { file } = files(root);
    const reader = new DashReader(root);
    await reader.summary(PREFIX);
    fs.appendFileSync(file, Array.from({ length: 2000 }, (_, i) => record(3000 + i) + "\n").join(""));
    assert.deepEqual(await answers(root), fullScanAnswers(file));
    assert.deepEqual(await reader.summary(PREFIX), scannedSummary(file), "a reader that cached the index reads the tail");
    await writeSession(root, 5000, 5500);
    assert.deepEqual(await answers(root), fullScanAnswers(file), "and the writer picks up after them");
  });

  it("keys written with escapes (by another program) are summarised under the names JSON.parse reads", async () => {
    const root = tempDir("index");
    await writeSession(root, 0, 10);
    const { file } = files(root);
    const lines = Array.from({ length: 2000 }, (_, i) => `{"step":${10 + i},"lo\\u0073s":${i},"a\\\\b":${-i},"_ts":${1000 + i}}\n`);
    fs.appendFileSync(file, lines.join(""));
    const summary = await new DashReader(root).summary(PREFIX);
    assert.deepEqual(summary, scannedSummary(file));
    assert.deepEqual(Object.keys(summary).sort(), ["train/a\\b", "train/acc", "train/loss"]);
  });

  it("a JSONL edited by hand (a value changed in the middle)", async () => {
    const root = tempDir("index");
    await writeSession(root, 0, 5000);
    const { file } = files(root);
    const text = fs.readFileSync(file, "utf8");
    const at = text.indexOf('{"_ts":1150,"step":1500,');
    const end = text.indexOf("\n", at);
    fs.writeFileSync(file, text.slice(0, at) + JSON.stringify({ _ts: 1150, step: 1500, loss: -42.125 }) + text.slice(end));
    const expected = fullScanAnswers(file) as { summary: Record<string, KeySummary> };
    assert.equal(expected.summary["train/loss"].min, -42.125);
    assert.deepEqual(await answers(root), expected);
  });

  it("a JSONL truncated, then appended to", async () => {
    const root = tempDir("index");
    await writeSession(root, 0, 5000);
    const { file } = files(root);
    const text = fs.readFileSync(file, "utf8");
    const cut = text.indexOf('"step":2222,');
    fs.truncateSync(file, text.lastIndexOf("\n", cut) + 1);
    assert.deepEqual(await answers(root), fullScanAnswers(file));
    fs.appendFileSync(file, Array.from({ length: 1500 }, (_, i) => JSON.stringify({ _ts: 9000 + i, step: 2222 + i, loss: -i }) + "\n").join(""));
    assert.deepEqual(await answers(root), fullScanAnswers(file));
  });

  it("an index file that is garbage, or of another format", async () => {
    const root = tempDir("index");
    await writeSession(root, 0, 5000);
    const { file, index } = files(root);
    fs.writeFileSync(index, "[2,0,0]\n{\"not\":\"an index\"}\n\u0000\u0001\n");
    assert.deepEqual(await answers(root), fullScanAnswers(file));
  });

  it("a JSONL with a torn last line: the torn line is left out until it is whole", async () => {
    const root = tempDir("index");
    await writeSession(root, 0, 2000);
    const { file } = files(root);
    fs.appendFileSync(file, '{"_ts":5,"step":2000,"loss":-1');
    const expected = fullScanAnswers(file);
    assert.deepEqual(await answers(root), expected);
    assert.equal((expected as { summary: Record<string, KeySummary> }).summary["train/loss"].count, 2000);
  });

  it("two processes appending to one metric file at once: every record counted once", TEST_TIMEOUT, async () => {
    const root = tempDir("index");
    const script = new URL("../testing/fixtures/metrics_concurrent.ts", import.meta.url);
    const results = await Promise.all(["0", "1"].map((marker) => runScript(script, { args: [root, PREFIX, marker, "5000"], timeoutMs: 100_000 })));
    for (const result of results) assert.equal(result.code, 0, result.stderr);
    const { file } = files(root);
    const markers = fs.readFileSync(file, "utf8").trim().split("\n").map((line) => JSON.parse(line).step >= 1_000_000);
    const switches = markers.filter((m, i) => i > 0 && m !== markers[i - 1]).length;
    assert.ok(switches >= 2, `the two processes' appends interleave (${switches} switches)`);
    const kept = loadIndex(file);
    assert.equal(kept.stale, false, "the index the two writers appended to checks out as it is");
    assert.equal(kept.index.records, 10_000);
    const summary = await new DashReader(root).summary(PREFIX);
    assert.equal(summary["train/loss"].count, 10_000);
    assert.deepEqual(summary, scannedSummary(file));
    const { index } = loadIndex(file);
    const scanned = new MetricIndex();
    scanned.scanFile(file, fs.statSync(file).size);
    assert.deepEqual(index.blocks().map(encodeBlock), scanned.blocks().map(encodeBlock));
    assert.deepEqual(summarize(index.blocks()), summarize(scanned.blocks()));
  });
});

describe("blocks", () => {
  it("hold BLOCK_RECORDS records each, counted from the file's start, whatever the batches", () => {
    const index = new MetricIndex();
    let offset = 0;
    for (let i = 0; i < 3000; i += 250) {
      const chunk = Array.from({ length: 250 }, (_, j) => record(i + j)).join("\n");
      index.feed(chunk, offset, Buffer.byteLength(chunk), false);
      offset += Buffer.byteLength(chunk) + 1;
    }
    assert.deepEqual(index.blocks().map((b) => [b.first, b.records]), [[0, BLOCK_RECORDS], [BLOCK_RECORDS, BLOCK_RECORDS], [2 * BLOCK_RECORDS, 3000 - 2 * BLOCK_RECORDS]]);
    assert.equal(index.bytes, offset);
  });

  it("read numbers in every JSON form as JSON.parse does: exponents, signs, long decimals, large integers", () => {
    const dir = tempDir("index");
    const file = path.join(dir, "metrics.jsonl");
    const forms = ["0", "-0", "1e3", "-2.5E-7", "0.1", "123456789012345", "1234567890123456789", "0.30000000000000004", "-1.7976931348623157e308",
      "5e-324", "1e-30", "0.000000000000000000000001", "12.", "3.14159265358979323846", "0.30000000000000010", "0.29999999999999998", "0.30000000000000016", "-0.30000000000000004", '"NaN"', '"-Infinity"', '"Infinity"'];
    const lines = [];
    for (let i = 0; i < 3 * BLOCK_RECORDS; i++) lines.push(`{"step":${i},"a":${forms[i % forms.length]},"b":${forms[(i * 7) % forms.length]}}`);
    fs.writeFileSync(file, lines.join("\n") + "\n");
    const expected = new Map<string, KeySummary>();
    for (const line of lines) {
      for (const [name, raw] of Object.entries(JSON.parse(line.replace('"a":12.,', '"a":12,').replace('"b":12.}', '"b":12}')))) {
        if (name === "step") continue;
        const value = Number(raw);
        const s = expected.get(name) ?? { count: 0, min: null, max: null, last: null, lastStep: null };
        expected.set(name, s);
        s.count++;
        s.last = value;
        s.lastStep = JSON.parse(line.slice(0, line.indexOf(",")) + "}").step;
        if (Number.isFinite(value)) {
          if (s.min === null || value < s.min) s.min = value;
          if (s.max === null || value > s.max) s.max = value;
        }
      }
    }
    assert.deepEqual(summarize(loadIndex(file).index.blocks()), expected);
  });

  it("count bytes of lines that are not ASCII as UTF-8", () => {
    const dir = tempDir("index");
    const file = path.join(dir, "x.jsonl");
    const text = Array.from({ length: 2100 }, (_, i) => JSON.stringify({ step: i, "损失": i % 5, note: i % 2 ? "é" : "" })).join("\n") + "\n";
    fs.writeFileSync(file, text);
    const { index } = loadIndex(file);
    assert.equal(index.bytes, Buffer.byteLength(text));
    assert.equal(index.blocks()[1].start, Buffer.byteLength(text.split("\n").slice(0, BLOCK_RECORDS).join("\n") + "\n"));
    assert.equal(summarize(index.blocks()).get("损失")?.max, 4);
  });
});
