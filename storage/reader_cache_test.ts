import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DashReader } from "./jsonl.ts";

/** A root with experiments `alice/p/e0` … `alice/p/e<n-1>`, each with metric `train` of `rows` rows. */
function makeRoot(experiments: number, rows: number): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "ml-dash-cache-"));
  for (let e = 0; e < experiments; e++) appendRows(root, e, 0, rows);
  return root;
}

/** Appends rows `from` … `to - 1` to experiment `e`: loss = e + step / 1000, acc = step % 7. */
function appendRows(root: string, e: number, from: number, to: number): void {
  const dir = path.join(root, `alice/p/e${e}`);
  fs.mkdirSync(path.join(dir, "metrics"), { recursive: true });
  fs.writeFileSync(path.join(dir, "experiment.json"), JSON.stringify({ prefix: `alice/p/e${e}` }));
  const lines = [];
  for (let step = from; step < to; step++) lines.push(JSON.stringify({ _ts: 1000 + step, step, loss: loss(e, step), acc: step % 7 }));
  fs.appendFileSync(path.join(dir, "metrics/train.jsonl"), lines.join("\n") + "\n");
}

function loss(e: number, step: number): number {
  return e + step / 1000;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** Reads `train/loss` of experiment `e` and checks it against what was written. */
async function checkLoss(reader: DashReader, e: number, rows: number): Promise<void> {
  const series = await reader.series(`alice/p/e${e}`, "train/loss");
  assert.deepEqual(series.step, range(rows));
  assert.deepEqual(series.value, range(rows).map((step) => loss(e, step)));
}

// 1,000 rows of three arrays: about 72 KB each as the reader estimates it.
const ROWS = 1000;

describe("DashReader cache bounded in bytes", () => {
  it("keeps the estimated bytes under cacheBytes while reading many series, and answers stay right", async () => {
    const root = makeRoot(8, ROWS);
    const cacheBytes = 160_000;
    const reader = new DashReader(root, { cacheBytes });
    for (let round = 0; round < 2; round++) {
      for (let e = 0; e < 8; e++) {
        await checkLoss(reader, e, ROWS);
        const { entries, bytes } = reader.cacheStats();
        assert.ok(bytes <= cacheBytes, `${bytes} bytes cached, over the bound of ${cacheBytes}`);
        assert.ok(entries >= 1 && entries <= 2, `${entries} entries`);
      }
    }
  });

  it("a series read again after rows were appended has them all, whether it was evicted or not", async () => {
    const root = makeRoot(3, ROWS);
    const reader = new DashReader(root, { cacheBytes: 160_000 });
    for (let e = 0; e < 3; e++) await checkLoss(reader, e, ROWS);
    for (let e = 0; e < 3; e++) appendRows(root, e, ROWS, ROWS + 10);
    for (let e = 2; e >= 0; e--) await checkLoss(reader, e, ROWS + 10);
    const series = await reader.series("alice/p/e1", "train/acc", { x: "loss" });
    assert.deepEqual(series.x, range(ROWS + 10).map((step) => loss(1, step)));
    assert.ok(reader.cacheStats().bytes <= 160_000);
  });

  it("a series larger than cacheBytes is read but not cached; a returned series is the caller's to change", async () => {
    const root = makeRoot(2, ROWS);
    const reader = new DashReader(root, { cacheBytes: 50_000 });
    await checkLoss(reader, 0, ROWS);
    assert.deepEqual(reader.cacheStats(), { entries: 0, bytes: 0 });
    const small = new DashReader(root, { cacheBytes: 1 << 20 });
    (await small.series("alice/p/e0", "train/loss")).value.fill(-1);
    await checkLoss(small, 0, ROWS);
    assert.equal(small.cacheStats().entries, 1);
  });

  it("summaries of every experiment read are evicted too, not kept for each prefix ever read", async () => {
    const root = makeRoot(40, 5);
    const cacheBytes = 4_000;
    const reader = new DashReader(root, { cacheBytes });
    for (let e = 0; e < 40; e++) {
      const summary = await reader.summary(`alice/p/e${e}`);
      assert.deepEqual(summary["train/loss"], { count: 5, min: e, max: loss(e, 4), last: loss(e, 4), lastStep: 4 });
      assert.ok(reader.cacheStats().bytes <= cacheBytes);
    }
    assert.ok(reader.cacheStats().entries < 40, `${reader.cacheStats().entries} summaries cached`);
  });

  it("the cache count option bounds entries as well; 0 in either option turns the cache off", async () => {
    const root = makeRoot(4, 10);
    const counted = new DashReader(root, { cache: 2 });
    for (let e = 0; e < 4; e++) await checkLoss(counted, e, 10);
    assert.equal(counted.cacheStats().entries, 2);
    for (const options of [{ cache: 0 }, { cacheBytes: 0 }]) {
      const off = new DashReader(root, options);
      for (let e = 0; e < 4; e++) await checkLoss(off, e, 10);
      assert.deepEqual(off.cacheStats(), { entries: 0, bytes: 0 });
    }
    const byDefault = new DashReader(root);
    for (let e = 0; e < 4; e++) await checkLoss(byDefault, e, 10);
    assert.equal(byDefault.cacheStats().entries, 4);
    assert.throws(() => new DashReader(root, { cacheBytes: -1 }), RangeError);
  });
});
