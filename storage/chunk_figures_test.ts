import assert from "node:assert/strict";
import fs from "node:fs";
import { describe, it } from "node:test";
import { Experiment } from "../mod.ts";
import { keyFigures, newChunkFigures, noteRecord, noteValue } from "./chunk_figures.ts";
import { metricIndexPath, metricPath } from "./layout.ts";
import { decodeBlock, encodeBlock, MetricIndex } from "./read_index.ts";
import { captureWarnings } from "../testing/files.ts";
import { tempDir } from "../testing/temp.ts";

const PREFIX = "alice/figures/run";

/** The blocks of the index file as the writer left them: each block's last line (a later line for a block replaces an earlier one). */
function writtenBlocks(file: string): string[] {
  const byFirst = new Map<number, string>();
  for (const line of fs.readFileSync(metricIndexPath(file), "utf8").split("\n")) {
    const block = line === "" ? undefined : decodeBlock(line);
    if (block !== undefined) byFirst.set(block.first, encodeBlock(block));
  }
  return [...byFirst.values()];
}

function scannedBlocks(file: string): string[] {
  const scanned = new MetricIndex();
  scanned.scanFile(file, fs.statSync(file).size);
  return scanned.blocks().map(encodeBlock);
}

/** Awkward values: non-finite ones, -0, ties, keys in some records only, keys of many bytes. */
function fieldsAt(i: number): Record<string, number> {
  const fields: Record<string, number> = { loss: i % 97 === 0 ? -0 : 1 / (i + 1) };
  if (i % 3 === 0) fields["损失/验证"] = i % 5 === 0 ? 0.5 : -i;
  if (i % 7 === 0) fields["😀"] = i % 14 === 0 ? NaN : Infinity;
  if (i % 11 === 0) fields.rare = i % 22 === 0 ? -Infinity : 2;
  if (i % 13 === 0) fields.tie = 1;
  return fields;
}

describe("the figures the buffer keeps for the read index", () => {
  it("give the writer the index a full scan of the JSONL builds, over awkward values, flushes at any record and steps out of order", async () => {
    const root = tempDir("figures");
    const exp = new Experiment({ prefix: PREFIX, dashRoot: root });
    await exp.run.start();
    const train = exp.metrics("train");
    await captureWarnings(async () => {
      for (let i = 0; i < 5000; i++) {
        if (i % 500 < 250) train.log(fieldsAt(i));
        else train.log({ ...fieldsAt(i), step: 10_000 - i }); // an explicit step: the careful path
        if (i % 777 === 0 || i === 1024 + 300) await exp.flush(); // chunks that end anywhere in a block
      }
    });
    await exp.run.complete();
    const file = metricPath(root, PREFIX, "train");
    const written = writtenBlocks(file);
    assert.equal(written.length, 5);
    assert.deepEqual(written, scannedBlocks(file));
  });

  it("give the writer the index a full scan builds when a session resumes a file at a record within a block", async () => {
    const root = tempDir("figures");
    for (const [from, to] of [[0, 700], [700, 3000]]) {
      const exp = new Experiment({ prefix: PREFIX, dashRoot: root });
      await exp.run.start();
      const train = exp.metrics("train");
      for (let i = from; i < to; i++) train.log({ loss: 1 / (i + 1), acc: i % 10, lr: 0.001 });
      await exp.run.complete();
    }
    const file = metricPath(root, PREFIX, "train");
    assert.deepEqual(writtenBlocks(file), scannedBlocks(file));
  });

  it("keep min and max over finite values and lo and hi as the first lowest and highest that is not NaN", () => {
    const figures = newChunkFigures();
    const values = [NaN, Infinity, 2, -1, -1, 5, -Infinity, NaN];
    values.forEach((value, at) => {
      noteRecord(figures, at, 100 + at);
      noteValue(keyFigures(figures, 0, "x"), value, at, 100 + at, at);
    });
    const [x] = figures.keys;
    assert.deepEqual([x.count, x.min, x.max, x.last, x.lastStep], [8, -1, 5, NaN, 7]);
    assert.deepEqual([x.lo, x.loAt, x.hi, x.hiAt], [-Infinity, 6, Infinity, 1]);
    assert.deepEqual([figures.records, figures.stepMin, figures.stepMax, figures.tsMin, figures.tsMax], [8, 0, 7, 100, 107]);
  });
});
