// Tests of the JSONL writer (JsonlBackend) against a root that changes under it: links
// planted in the root, folders removed while it writes, torn last lines, parameters set
// by several processes at once, and names such as "__proto__"; read back through
// DashReader and as plain JSON lines.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { Experiment, StorageError } from "../mod.ts";
import type { Batch } from "../mod.ts";
import { DashReader, JsonlBackend, readParams } from "./jsonl.ts";
import { spawnScript } from "../testing/run_script.ts";
import { tempDir } from "../testing/temp.ts";
import { captureWarnings, readJson, readLines } from "../testing/files.ts";

/** Per-test limit (bun's default of 5 s is short for tests that spawn processes). */
const TEST_TIMEOUT = { timeout: 60_000 };
/** Kill a child that has not ended after this long: it hangs. */
const HANG_GUARD_MS = 45_000;

/** A metric batch of records `{_ts, step, loss}`. */
function metricBatch(metric: string, steps: number[]): Batch {
  return { metrics: { [metric]: [steps.map((step) => JSON.stringify({ _ts: 1, step, loss: step / 10 })).join("\n")] } };
}

function lines(file: string): string[] {
  return fs.readFileSync(file, "utf8").split("\n").filter((line) => line !== "");
}

/** Asserts that `work` rejects with a StorageError about a link leading outside the root. */
async function rejectsOutside(work: () => Promise<unknown>): Promise<void> {
  await assert.rejects(work, (error: Error) => {
    assert.ok(error instanceof StorageError, `expected a StorageError, got ${error}`);
    assert.match(error.message, /expected a path inside the root .*, found a link/);
    return true;
  });
}

describe("JsonlBackend and links planted in the root", () => {
  it("refuses an experiment folder that is a link leading outside the root", async () => {
    const root = tempDir("jsonl");
    const outside = tempDir("jsonl");
    fs.mkdirSync(path.join(root, "alice/demo"), { recursive: true });
    fs.symlinkSync(outside, path.join(root, "alice/demo/x"));
    const backend = new JsonlBackend(root);
    await rejectsOutside(() => backend.open("alice/demo/x"));
    await rejectsOutside(() => backend.write("alice/demo/x", { metadata: { prefix: "alice/demo/x" }, ...metricBatch("train", [0]) }));
    assert.throws(() => backend.writeSync("alice/demo/x", metricBatch("train", [1])), StorageError);
    await backend.close();
    assert.deepEqual(fs.readdirSync(outside), []);
  });

  it("refuses a folder above the experiment that is a link leading outside the root", async () => {
    const root = tempDir("jsonl");
    const outside = tempDir("jsonl");
    fs.symlinkSync(outside, path.join(root, "alice"));
    const backend = new JsonlBackend(root);
    await rejectsOutside(() => backend.write("alice/demo/x", metricBatch("train", [0])));
    await backend.close();
    assert.deepEqual(fs.readdirSync(outside), []);
  });

  it("refuses a metric file or logs.jsonl that is a link leading outside the root, even a dangling one", async () => {
    const root = tempDir("jsonl");
    const outside = tempDir("jsonl");
    const first = new JsonlBackend(root);
    await first.write("alice/demo/x", { metadata: { prefix: "alice/demo/x" }, ...metricBatch("other", [0]) });
    await first.close();
    const dir = path.join(root, "alice/demo/x");
    fs.writeFileSync(path.join(outside, "victim.txt"), "keep\n");
    fs.symlinkSync(path.join(outside, "victim.txt"), path.join(dir, "metrics/train.jsonl"));
    fs.symlinkSync(path.join(outside, "new.txt"), path.join(dir, "logs.jsonl"));
    const backend = new JsonlBackend(root);
    await rejectsOutside(() => backend.write("alice/demo/x", metricBatch("train", [1])));
    await rejectsOutside(() => backend.write("alice/demo/x", { logs: [JSON.stringify({ _ts: 1, level: "info", message: "m" })] }));
    await backend.close();
    assert.equal(fs.readFileSync(path.join(outside, "victim.txt"), "utf8"), "keep\n");
    assert.deepEqual(fs.readdirSync(outside), ["victim.txt"]);
  });

  it("refuses a files/<dir> that is a link leading outside the root", async () => {
    const root = tempDir("jsonl");
    const outside = tempDir("jsonl");
    const dir = path.join(root, "alice/demo/x");
    fs.mkdirSync(path.join(dir, "files"), { recursive: true });
    fs.symlinkSync(outside, path.join(dir, "files/notes"));
    const backend = new JsonlBackend(root);
    const data = new TextEncoder().encode("hello");
    const file = { path: "notes/readme.txt", size: data.length, mime: "text/plain", _ts: 1, data };
    await rejectsOutside(() => backend.write("alice/demo/x", { files: [file] }));
    await backend.close();
    assert.deepEqual(fs.readdirSync(outside), []);
  });

  it("writes through links that stay inside the root, and under a root that is itself a link", async () => {
    const real = tempDir("jsonl");
    const root = path.join(tempDir("jsonl"), "root-link");
    fs.symlinkSync(real, root);
    fs.mkdirSync(path.join(real, "elsewhere"));
    fs.mkdirSync(path.join(real, "alice"));
    fs.symlinkSync(path.join(real, "elsewhere"), path.join(real, "alice/demo"));
    const backend = new JsonlBackend(root);
    await backend.write("alice/demo/x", metricBatch("train", [0, 1]));
    await backend.close();
    assert.deepEqual((await new DashReader(root).series("alice/demo/x", "train/loss")).step, [0, 1]);
    assert.equal(lines(path.join(real, "elsewhere/x/metrics/train.jsonl")).length, 2);
  });
});

describe("JsonlBackend and a folder removed while it writes", () => {
  for (const how of ["write", "writeSync"] as const) {
    it(`${how}: after rm -rf of the experiment folder, later records are on disk and a new metric works`, async () => {
      const root = tempDir("jsonl");
      const prefix = "alice/demo/removed";
      const dir = path.join(root, prefix);
      const backend = new JsonlBackend(root);
      const store = (batch: Batch): Promise<void> => how === "write" ? backend.write(prefix, batch) : Promise.resolve(backend.writeSync(prefix, batch));
      await backend.open(prefix);
      await store({ metadata: { prefix, tags: ["t"] }, status: { status: "RUNNING", heartbeatAt: 1 }, ...metricBatch("train", [0]) });
      await store({ logs: [JSON.stringify({ _ts: 1, level: "info", message: "before" })] });
      fs.rmSync(dir, { recursive: true, force: true });
      await store(metricBatch("train", [1, 2]));
      await store(metricBatch("eval", [2]));
      await store({ logs: [JSON.stringify({ _ts: 2, level: "info", message: "after" })] });
      await store({ status: { heartbeatAt: 2 } });
      await backend.close();

      const reader = new DashReader(root);
      assert.deepEqual((await reader.series(prefix, "train/loss")).step, [1, 2]);
      assert.deepEqual((await reader.series(prefix, "eval/loss")).step, [2]);
      assert.deepEqual((await reader.logs(prefix)).map((l) => l.message), ["after"]);
      const [listed] = await reader.listExperiments();
      assert.equal(listed?.prefix, prefix, "experiment.json is there again");
      assert.deepEqual(listed.tags, ["t"]);
      assert.equal(listed.status, "RUNNING");
      assert.equal((await reader.status(prefix))?.heartbeatAt, 2);
    });
  }

  it("after rm -rf of metrics/ or of one metric file, later records are on disk", async () => {
    const root = tempDir("jsonl");
    const prefix = "alice/demo/partly";
    const dir = path.join(root, prefix);
    const backend = new JsonlBackend(root);
    await backend.write(prefix, { ...metricBatch("train", [0]) });
    await backend.write(prefix, { ...metricBatch("eval", [0]) });
    fs.rmSync(path.join(dir, "metrics/train.jsonl"));
    await backend.write(prefix, metricBatch("train", [1]));
    assert.deepEqual((await new DashReader(root).series(prefix, "train/loss")).step, [1]);
    fs.rmSync(path.join(dir, "metrics"), { recursive: true });
    await backend.write(prefix, metricBatch("eval", [1]));
    await backend.write(prefix, metricBatch("test", [1]));
    await backend.close();
    const reader = new DashReader(root);
    assert.deepEqual((await reader.series(prefix, "eval/loss")).step, [1]);
    assert.deepEqual((await reader.series(prefix, "test/loss")).step, [1]);
    assert.equal(fs.existsSync(path.join(dir, "metrics/train.jsonl")), false, "train.jsonl went with metrics/");
  });
});

describe("JsonlBackend and a torn last line", () => {
  const torn = '{"_ts":1,"step":0,"loss":0.5}\n{"_ts":1,"step"';

  for (const how of ["write", "writeSync"] as const) {
    it(`${how}: a record appended after a torn last line starts a line of its own`, async () => {
      const root = tempDir("jsonl");
      const prefix = "alice/demo/torn";
      const dir = path.join(root, prefix);
      fs.mkdirSync(path.join(dir, "metrics"), { recursive: true });
      fs.writeFileSync(path.join(dir, "metrics/train.jsonl"), torn);
      fs.writeFileSync(path.join(dir, "logs.jsonl"), '{"_ts":1,"level":"info","mess');
      const backend = new JsonlBackend(root);
      await backend.open(prefix);
      const batch: Batch = { ...metricBatch("train", [1]), logs: [JSON.stringify({ _ts: 2, level: "info", message: "resumed" })] };
      if (how === "write") await backend.write(prefix, batch);
      else backend.writeSync(prefix, batch);
      await backend.close();

      const reader = new DashReader(root);
      assert.deepEqual((await reader.series(prefix, "train/loss")).step, [0, 1]);
      assert.deepEqual((await reader.logs(prefix)).map((l) => l.message), ["resumed"]);
      const last = lines(path.join(dir, "metrics/train.jsonl")).at(-1)!;
      assert.deepEqual(JSON.parse(last), { _ts: 1, step: 1, loss: 0.1 });
      assert.deepEqual(JSON.parse(lines(path.join(dir, "logs.jsonl")).at(-1)!), { _ts: 2, level: "info", message: "resumed" });
    });
  }

  it("a file that ends with a whole line gets no empty line", async () => {
    const root = tempDir("jsonl");
    const file = path.join(root, "alice/demo/whole/metrics/train.jsonl");
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, '{"_ts":1,"step":0,"loss":0.5}\n');
    const backend = new JsonlBackend(root);
    await backend.write("alice/demo/whole", metricBatch("train", [1]));
    await backend.close();
    assert.equal(fs.readFileSync(file, "utf8"), '{"_ts":1,"step":0,"loss":0.5}\n{"_ts":1,"step":1,"loss":0.1}\n');
  });
});

/** Collects a child's output; `ended` settles when it exits (or rejects when it hangs). */
function watch(child: ChildProcess): { ended: Promise<number | null>; ready: Promise<void>; output: () => string } {
  let output = "";
  let onReady = (): void => {};
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  child.stdout!.setEncoding("utf8").on("data", (s: string) => {
    output += s;
    if (output.includes("ready\n")) onReady();
  });
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (output += s));
  const ended = new Promise<number | null>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`Child hung for ${HANG_GUARD_MS} ms\n${output}`));
    }, HANG_GUARD_MS);
    child.on("close", (code) => {
      clearTimeout(timer);
      onReady();
      resolve(code);
    });
  });
  return { ended, ready, output: () => output };
}

describe("parameters set by several processes", () => {
  it("two processes each setting 200 distinct keys at once: all 400 are read back", TEST_TIMEOUT, async () => {
    const root = tempDir("jsonl");
    const script = new URL("../testing/fixtures/params_concurrent.ts", import.meta.url);
    const children = ["a", "b"].map((marker) => spawnScript(script, { args: [root, marker, "200"] }));
    const watched = children.map(watch);
    await Promise.all(watched.map((w) => w.ready));
    for (const child of children) child.stdin!.write("go\n");
    const codes = await Promise.all(watched.map((w) => w.ended));
    assert.deepEqual(codes, [0, 0], watched.map((w) => w.output()).join("\n"));

    const expected = Object.fromEntries(["a", "b"].flatMap((m) => Array.from({ length: 200 }, (_, i) => [`${m}_${i}`, i])));
    const params = await new DashReader(root).params("test/params/shared");
    assert.equal(Object.keys(params).length, 400);
    assert.deepEqual(params, expected);
    assert.deepEqual((await new JsonlBackend(root).open("test/params/shared")).params, expected, "a resumed run sees them all");
  });

  it("an existing parameters.json is the base that later sets apply over; later sets win", async () => {
    const root = tempDir("jsonl");
    const prefix = "alice/demo/legacy";
    const dir = path.join(root, prefix);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "parameters.json"), JSON.stringify({ version: 3, data: { lr: 0.1, depth: 50 }, updatedAt: 1 }));
    const backend = new JsonlBackend(root);
    assert.deepEqual((await backend.open(prefix)).params, { lr: 0.1, depth: 50 });
    await backend.write(prefix, { params: { lr: 0.01, batch: 32 } });
    await backend.write(prefix, { params: { lr: 0.001 } });
    await backend.close();
    assert.deepEqual(await new DashReader(root).params(prefix), { lr: 0.001, depth: 50, batch: 32 });
    assert.deepEqual(readParams(dir), { lr: 0.001, depth: 50, batch: 32 });
    assert.deepEqual(lines(path.join(dir, "parameters.jsonl")).map((l) => JSON.parse(l)), [{ lr: 0.01, batch: 32 }, { lr: 0.001 }]);
  });
});

describe("names that are special to JavaScript objects", () => {
  it('a metric, a field and a parameter named "__proto__" are written and read back exactly', async () => {
    const root = tempDir("jsonl");
    const prefix = "alice/demo/proto";
    const dir = path.join(root, prefix);
    const record = '{"_ts":1,"step":3,"__proto__":1.5}';
    // JSON.parse makes "__proto__" an own key, as a batch from the server or a fixed buffer has it.
    const batch = JSON.parse(
      `{"params":{"__proto__":"p","constructor":"c"},` +
        `"metrics":{"__proto__":[${JSON.stringify(record)}],"default":[${JSON.stringify('{"_ts":1,"step":4,"__proto__":2.5}')}]}}`,
    ) as Batch;
    const backend = new JsonlBackend(root);
    await backend.write(prefix, batch);
    await backend.close();

    assert.deepEqual(lines(path.join(dir, "metrics/__proto__.jsonl")), [record]);
    const reader = new DashReader(root);
    assert.deepEqual((await reader.series(prefix, "__proto__/__proto__")).value, [1.5]);
    assert.deepEqual((await reader.series(prefix, "__proto__")).value, [2.5]);
    const summary = await reader.summary(prefix);
    assert.deepEqual(Object.keys(summary), ["__proto__", "__proto__/__proto__"]);
    assert.equal(summary["__proto__/__proto__"].last, 1.5);

    const params = await reader.params(prefix);
    assert.deepEqual(Object.keys(params), ["__proto__", "constructor"]);
    assert.equal(Object.getOwnPropertyDescriptor(params, "__proto__")?.value, "p");
    assert.equal(Object.getPrototypeOf(params), Object.prototype, "the same plain object as before");
    const state = await new JsonlBackend(root).open(prefix);
    assert.equal(Object.getOwnPropertyDescriptor(state.params, "__proto__")?.value, "p");
    assert.equal(Object.getOwnPropertyDescriptor(state.steps, "__proto__")?.value, 3);
    assert.equal(JSON.parse(fs.readFileSync(path.join(dir, "parameters.json"), "utf8")).data.__proto__, "p");
  });
});

// ─── The writer's open files, and the reader (moved from mod_test.ts) ───────

describe("JSONL backend", () => {
  const openFiles = (): number => fs.readdirSync("/proc/self/fd").length;

  it("keeps a bounded number of files open, however many experiments it writes", { skip: !fs.existsSync("/proc/self/fd") }, async () => {
    const root = tempDir("test");
    const backend = new JsonlBackend(root);
    const before = openFiles();
    for (let i = 0; i < 300; i++) {
      await backend.write(`a/p/e${i}`, { metrics: { train: ['{"_ts":1,"step":0,"loss":1}'] }, logs: ['{"_ts":1,"level":"info","message":"m"}'] });
    }
    assert.ok(openFiles() - before <= 130, `${openFiles() - before} files open`);
    await backend.close();
    assert.ok(openFiles() - before <= 2);
    assert.equal(readLines(path.join(root, "a/p/e0/metrics/train.jsonl")).length, 1);
  });

  it("closes an experiment's files when its status says it ended", { skip: !fs.existsSync("/proc/self/fd") }, async () => {
    const backend = new JsonlBackend(tempDir("test"));
    const before = openFiles();
    await backend.write("a/p/x", { metrics: { train: ['{"_ts":1,"step":0,"loss":1}'] }, status: { status: "RUNNING" } });
    assert.equal(openFiles() - before, 1);
    await backend.write("a/p/x", { metrics: { train: ['{"_ts":1,"step":1,"loss":1}'] }, status: { status: "COMPLETED" } });
    assert.equal(openFiles() - before, 0);
    await backend.close();
  });
});

describe("Reader", () => {
  async function fixture(root: string): Promise<void> {
    await new Experiment({ prefix: "alice/proj/done", dashRoot: root, tags: ["t1"] }).run((exp) => {
      for (let i = 0; i < 10; i++) exp.metrics("train").log({ loss: 10 - i, acc: i / 10 });
      exp.metrics("val").log({ loss: Infinity });
      exp.log("debug line", { level: "debug" });
      exp.log("info line");
      exp.log("error line", { level: "error" });
      exp.params.set({ lr: 0.1 });
    });
    await assert.rejects(new Experiment({ prefix: "alice/proj/failed", dashRoot: root }).run(() => {
      throw new Error("x");
    }));
    await captureWarnings(() => undefined);
  }

  it("lists experiments with status, filtered by prefix and status", async () => {
    const root = tempDir("test");
    await captureWarnings(() => fixture(root));
    const reader = new DashReader(root);
    const all = await reader.listExperiments();
    assert.deepEqual(all.map((e) => [e.prefix, e.status, e.stale]), [
      ["alice/proj/done", "COMPLETED", false],
      ["alice/proj/failed", "FAILED", false],
    ]);
    assert.deepEqual(all[0].tags, ["t1"]);
    assert.deepEqual((await reader.listExperiments({ status: "FAILED" })).map((e) => e.prefix), ["alice/proj/failed"]);
    assert.deepEqual((await reader.listExperiments({ prefix: "alice/proj/done" })).map((e) => e.prefix), ["alice/proj/done"]);
    assert.deepEqual((await reader.listExperiments({ prefix: "alice/proj" })).length, 2);
    assert.deepEqual(await reader.listExperiments({ prefix: "alice/proj/do" }), [], "a prefix matches whole segments");
    assert.deepEqual(await reader.listExperiments({ prefix: "bob" }), []);
  });

  it("marks a RUNNING experiment with an old heartbeat as stale", async () => {
    const root = tempDir("test");
    const exp = new Experiment({ prefix: "a/p/live", dashRoot: root, flushInterval: 1 });
    await exp.run.start();
    const reader = new DashReader(root);
    assert.equal((await reader.listExperiments())[0].stale, false);
    const file = path.join(root, "a/p/live/status.json");
    await exp.run.complete();
    fs.writeFileSync(file, JSON.stringify({ ...readJson(file), status: "RUNNING", heartbeatAt: Date.now() / 1000 - 60 }));
    assert.equal((await reader.listExperiments())[0].stale, true);
    assert.equal((await reader.status("a/p/live"))?.stale, true);
    assert.deepEqual((await reader.listExperiments({ status: "stale" })).map((e) => e.prefix), ["a/p/live"]);
  });

  it("reads metadata, params, keys, series, summaries and logs", async () => {
    const root = tempDir("test");
    await captureWarnings(() => fixture(root));
    const reader = new DashReader(root);
    const prefix = "alice/proj/done";
    assert.equal((await reader.experiment(prefix))?.prefix, prefix);
    assert.deepEqual(await reader.params(prefix), { lr: 0.1 });
    assert.deepEqual(await reader.metricKeys(prefix), ["train/acc", "train/loss", "val/loss"]);
    const series = await reader.series(prefix, "train/loss");
    assert.deepEqual(series.step, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual(series.value, [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]);
    assert.equal(series.ts.length, 10);
    assert.deepEqual((await reader.series(prefix, "val/loss")).value, [Infinity]);
    const summary = await reader.summary(prefix);
    assert.deepEqual(summary["train/loss"], { count: 10, min: 1, max: 10, last: 1, lastStep: 9 });
    assert.deepEqual(summary["val/loss"], { count: 1, min: null, max: null, last: Infinity, lastStep: 0 });
    assert.deepEqual((await reader.logs(prefix)).map((l) => l.message), ["debug line", "info line", "error line"]);
    assert.deepEqual((await reader.logs(prefix, { level: "info" })).map((l) => l.message), ["info line", "error line"]);
    assert.deepEqual((await reader.logs(prefix, { offset: 1, limit: 1 })).map((l) => l.message), ["info line"]);
  });

  it("series can return another field of the metric as x", async () => {
    const root = tempDir("test");
    await new Experiment({ prefix: "a/p/x", dashRoot: root }).run((exp) => {
      for (let i = 0; i < 4; i++) exp.metrics("train").log({ loss: i, epoch: Math.floor(i / 2) });
    });
    const series = await new DashReader(root).series("a/p/x", "train/loss", { x: "epoch" });
    assert.deepEqual(series.x, [0, 0, 1, 1]);
  });

  it("reads files larger than one read block, and keys that need escaping", async () => {
    const root = tempDir("test");
    const n = 120_000;
    await new Experiment({ prefix: "a/p/big", dashRoot: root }).run(async (exp) => {
      for (let i = 0; i < n; i++) {
        exp.metrics("train").log({ loss: 1 / (i + 1), acc: i / n, padding_to_make_lines_long: 123456.789 });
        if (i % 10_000 === 0) await Promise.resolve();
      }
      exp.metrics("odd").log({ 'quote"key': 1, "back\\slash": 2, "ünï": 3 });
    });
    assert.ok(fs.statSync(path.join(root, "a/p/big/metrics/train.jsonl")).size > 8 << 20, "spans several read blocks");
    const reader = new DashReader(root);
    const series = await reader.series("a/p/big", "train/loss");
    assert.equal(series.value.length, n);
    assert.ok(series.step.every((s, i) => s === i));
    assert.equal(series.value[n - 1], 1 / n);
    const summary = await reader.summary("a/p/big");
    assert.deepEqual(summary["train/acc"], { count: n, min: 0, max: (n - 1) / n, last: (n - 1) / n, lastStep: n - 1 });
    assert.deepEqual(Object.keys(summary).filter((k) => k.startsWith("odd/")).sort(), ['odd/back\\slash', 'odd/quote"key', "odd/ünï"]);
    assert.deepEqual((await reader.series("a/p/big", 'odd/quote"key')).value, [1]);
  });

  it("reads back every number exactly as written, in every form JSON gives it", async () => {
    const root = tempDir("test");
    const values = [
      0, -0, 1, -1, 0.1, 0.001, 1e-7, -2.5e-8, 123456789012345, 1234567890123456, 2 ** 53 + 2, 1e21, 1.5e300, -1.7976931348623157e308,
      5e-324, Number.MIN_VALUE * 3, 1 / 3, 0.30000000000000004, 1796168161.666, 42.125e10, 9.999999999999999e22, 1e23,
    ];
    // And doubles of 1 to 17 significant digits at many scales, from a fixed pseudo-random sequence.
    let seed = 12345;
    const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 2000; i++) {
      const digits = 1 + (i % 17);
      const scale = Math.floor(next() * 60) - 30;
      values.push(Number(`${(next() * 10).toPrecision(digits)}e${scale}`) * (next() < 0.5 ? -1 : 1));
    }
    values.push(1e23);
    await new Experiment({ prefix: "a/p/numbers", dashRoot: root }).run((exp) => {
      for (const [i, value] of values.entries()) exp.metrics("train").log({ step: i * 1e6, value });
    });
    const reader = new DashReader(root);
    const series = await reader.series("a/p/numbers", "train/value");
    assert.deepEqual(series.value, values.map((v) => Object.is(v, -0) ? 0 : v), "JSON writes -0 as 0");
    assert.deepEqual(series.step, values.map((_, i) => i * 1e6));
    const summary = (await reader.summary("a/p/numbers"))["train/value"];
    assert.deepEqual(summary, { count: values.length, min: -1.7976931348623157e308, max: 1.5e300, last: 1e23, lastStep: (values.length - 1) * 1e6 });
    assert.equal(series.value.filter((v, i) => !Object.is(v, values[i])).length, 1, "only -0 differs");
  });

  it("reads a line longer than a read block whole", async () => {
    const root = tempDir("test");
    const long = "x".repeat(9 << 20);
    await new Experiment({ prefix: "a/p/long", dashRoot: root }).run((exp) => {
      exp.log("before");
      exp.log(long);
      exp.log("after");
    });
    const logs = await new DashReader(root).logs("a/p/long");
    assert.deepEqual(logs.map((l) => l.message.length), [6, long.length, 5]);
    assert.equal(logs[1].message, long);
  });

  it("skips a mangled line in the middle of a file", async () => {
    const root = tempDir("test");
    await new Experiment({ prefix: "a/p/mangled", dashRoot: root }).run((exp) => exp.metrics("train").log({ loss: 1 }));
    const file = path.join(root, "a/p/mangled/metrics/train.jsonl");
    fs.appendFileSync(file, '{"_ts":1,"step":1,"lo\n{"_ts":2,"step":2,"loss":3}\n');
    assert.deepEqual((await new DashReader(root).series("a/p/mangled", "train/loss")).value, [1, 3]);
  });

  it("a reader that caches series and summaries reads only what was appended since, and starts over for a replaced file", async () => {
    const root = tempDir("test");
    const exp = new Experiment({ prefix: "a/p/live", dashRoot: root });
    await exp.run.start();
    const reader = new DashReader(root, { cache: 4 });
    exp.metrics("train").log({ loss: 1 });
    await exp.flush();
    assert.deepEqual((await reader.series("a/p/live", "train/loss")).value, [1]);
    const file = path.join(root, "a/p/live/metrics/train.jsonl");
    fs.appendFileSync(file, '{"_ts":1,"step":1,"loss":2}\n{"_ts":1,"step":2,"lo');
    assert.deepEqual((await reader.series("a/p/live", "train/loss")).value, [1, 2], "the torn line waits");
    fs.appendFileSync(file, 'ss":3}\n');
    assert.deepEqual((await reader.series("a/p/live", "train/loss")).step, [0, 1, 2], "and is read once whole");
    // Rewriting bytes already read (which a writer never does) shows they are not read again.
    const text = fs.readFileSync(file, "utf8");
    fs.writeFileSync(file, text.replace('"loss":2}', '"loss":7}') + '{"_ts":1,"step":3,"loss":4}\n');
    assert.deepEqual((await reader.series("a/p/live", "train/loss")).value, [1, 2, 3, 4]);
    assert.deepEqual((await reader.summary("a/p/live"))["train/loss"], { count: 4, min: 1, max: 7, last: 4, lastStep: 3 });
    fs.appendFileSync(file, '{"_ts":1,"step":4,"loss":0}\n');
    assert.deepEqual((await reader.summary("a/p/live"))["train/loss"], { count: 5, min: 0, max: 7, last: 0, lastStep: 4 });
    fs.writeFileSync(file, '{"_ts":1,"step":0,"loss":9}\n');
    assert.deepEqual((await reader.series("a/p/live", "train/loss")).value, [9]);
    await exp.run.complete();
  });

  it("skips a torn last line", async () => {
    const root = tempDir("test");
    await new Experiment({ prefix: "a/p/torn", dashRoot: root }).run((exp) => {
      exp.metrics("train").log({ loss: 1 });
      exp.metrics("train").log({ loss: 2 });
    });
    fs.appendFileSync(path.join(root, "a/p/torn/metrics/train.jsonl"), '{"_ts":1,"step":2,"lo');
    const series = await new DashReader(root).series("a/p/torn", "train/loss");
    assert.deepEqual(series.value, [1, 2]);
  });
});
