import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  ConfigError,
  dxp,
  Experiment,
  InvalidMetricError,
  RUN,
  startRun,
  UsageError,
} from "./mod.ts";
import { DashReader, JsonlBackend } from "./storage/jsonl.ts";
import { fileSystem, PartialWriteError } from "./storage/file_system.ts";
import { sleep, tempDir } from "./testing/temp.ts";
import { captureWarnings, readJson, readLines } from "./testing/files.ts";

function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const old = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  return fn().finally(() => {
    for (const [k, v] of Object.entries(old)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
}

describe("Experiment API", () => {
  it("run(fn) records RUNNING while the callback runs and COMPLETED after", async () => {
    const root = tempDir("test");
    const dir = path.join(root, "alice/proj/exp");
    let during: unknown;
    const result = await new Experiment({ prefix: "alice/proj/exp", dashRoot: root }).run(() => {
      during = readJson(path.join(dir, "status.json")).status;
      return 42;
    });
    assert.equal(result, 42);
    assert.equal(during, "RUNNING");
    const status = readJson(path.join(dir, "status.json"));
    assert.equal(status.status, "COMPLETED");
    assert.equal(typeof status.endedAt, "number");
    assert.equal(typeof status.heartbeatAt, "number");
    assert.equal(status.pid, process.pid);
    assert.equal(status.host, os.hostname());
  });

  it("run(fn) records FAILED and rethrows when the callback throws", async () => {
    const root = tempDir("test");
    const boom = new Error("diverged");
    await assert.rejects(
      new Experiment({ prefix: "alice/proj/fail", dashRoot: root }).run((exp) => {
        exp.metrics("train").log({ loss: 1 });
        throw boom;
      }),
      (e) => e === boom,
    );
    const status = readJson(path.join(root, "alice/proj/fail/status.json"));
    assert.equal(status.status, "FAILED");
    assert.match(String(status.error), /diverged/);
    assert.equal(readLines(path.join(root, "alice/proj/fail/metrics/train.jsonl")).length, 1);
  });

  it("run.start/complete/fail/cancel set the status by hand", async () => {
    const root = tempDir("test");
    const statusOf = (name: string) => readJson(path.join(root, "a/p", name, "status.json")).status;
    for (const [name, end] of [["c", "complete"], ["f", "fail"], ["x", "cancel"]] as const) {
      const exp = new Experiment({ prefix: `a/p/${name}`, dashRoot: root });
      assert.equal(await exp.run.start(), exp);
      assert.equal(statusOf(name), "RUNNING");
      exp.log("working");
      await (end === "fail" ? exp.run.fail(new Error("x")) : exp.run[end]());
    }
    assert.equal(statusOf("c"), "COMPLETED");
    assert.equal(statusOf("f"), "FAILED");
    assert.equal(statusOf("x"), "CANCELLED");
  });

  it("await using completes and flushes when the scope ends", async () => {
    const root = tempDir("test");
    {
      await using exp = await new Experiment({
        prefix: "a/p/disposed",
        dashRoot: root,
        flushInterval: 3600,
        metricBatchSize: 1_000_000,
      }).run.start();
      exp.metrics("train").log({ loss: 0.5 });
      assert.equal(readLines(path.join(root, "a/p/disposed/metrics/train.jsonl")).length, 0);
    }
    assert.equal(readLines(path.join(root, "a/p/disposed/metrics/train.jsonl")).length, 1);
    assert.equal(readJson(path.join(root, "a/p/disposed/status.json")).status, "COMPLETED");
  });

  it("stores readme, tags and metadata in experiment.json", async () => {
    const root = tempDir("test");
    await new Experiment({
      prefix: "alice/cv/resnet",
      dashRoot: root,
      readme: "ResNet-50 baseline",
      tags: ["resnet", "baseline"],
      metadata: { gpu: "none" },
    }).run(() => {});
    const meta = readJson(path.join(root, "alice/cv/resnet/experiment.json"));
    assert.equal(meta.prefix, "alice/cv/resnet");
    assert.equal(meta.readme, "ResNet-50 baseline");
    assert.deepEqual(meta.tags, ["resnet", "baseline"]);
    assert.deepEqual(meta.metadata, { gpu: "none" });
    assert.equal(typeof meta.createdAt, "number");
  });

  it("reopening a prefix resumes: metrics append, params merge, status RUNNING again", async () => {
    const root = tempDir("test");
    const dir = path.join(root, "alice/ml/long");
    await new Experiment({ prefix: "alice/ml/long", dashRoot: root }).run((exp) => {
      exp.params.set({ lr: 0.1, batch: 32 });
      exp.metrics("train").log({ loss: 0.5, epoch: 1 });
    });
    const createdAt = readJson(path.join(dir, "experiment.json")).createdAt;
    let statusDuring: unknown;
    let paramsSeen: unknown;
    await new Experiment({ prefix: "alice/ml/long", dashRoot: root }).run((exp) => {
      statusDuring = readJson(path.join(dir, "status.json")).status;
      paramsSeen = exp.params.get();
      exp.params.set({ lr: 0.01 });
      exp.metrics("train").log({ loss: 0.3, epoch: 2 });
    });
    assert.equal(statusDuring, "RUNNING");
    assert.deepEqual(paramsSeen, { lr: 0.1, batch: 32 });
    assert.deepEqual(readLines(path.join(dir, "metrics/train.jsonl")).map((r) => [r.step, r.epoch]), [[0, 1], [1, 2]], "steps continue");
    assert.deepEqual(readJson(path.join(dir, "parameters.json")).data, { lr: 0.01, batch: 32 });
    assert.equal(readJson(path.join(dir, "experiment.json")).createdAt, createdAt);
    assert.equal(readJson(path.join(dir, "status.json")).status, "COMPLETED");
  });

  it("exp.log and exp.logs.<level> write level, message and metadata", async () => {
    const root = tempDir("test");
    await new Experiment({ prefix: "a/p/logs", dashRoot: root }).run((exp) => {
      exp.log("Training started");
      exp.log("lr dropped", { level: "warn", lr: 0.01 });
      exp.logs.debug("d");
      exp.logs.info("i", { epoch: 3 });
      exp.logs.warn("w");
      exp.logs.error("e");
      exp.logs.fatal("f");
    });
    const lines = readLines(path.join(root, "a/p/logs/logs.jsonl"));
    assert.deepEqual(lines.map((l) => [l.level, l.message]), [
      ["info", "Training started"],
      ["warn", "lr dropped"],
      ["debug", "d"],
      ["info", "i"],
      ["warn", "w"],
      ["error", "e"],
      ["fatal", "f"],
    ]);
    assert.equal(lines[1].lr, 0.01);
    assert.equal(lines[3].epoch, 3);
    assert.ok(lines.every((l) => typeof l._ts === "number" && Math.abs((l._ts as number) - Date.now() / 1000) < 60));
  });

  it("params.set flattens nested objects to dot keys and merges; get returns them", async () => {
    const root = tempDir("test");
    await new Experiment({ prefix: "a/p/params", dashRoot: root }).run((exp) => {
      exp.params.set({ learning_rate: 0.001, model: { depth: 50, head: { dropout: 0.1 } } });
      exp.params.set({ model: { depth: 101 }, layers: [1, 2] });
      assert.deepEqual(exp.params.get(), {
        learning_rate: 0.001,
        "model.depth": 101,
        "model.head.dropout": 0.1,
        layers: [1, 2],
      });
    });
    const file = readJson(path.join(root, "a/p/params/parameters.json"));
    assert.deepEqual(file.data, { learning_rate: 0.001, "model.depth": 101, "model.head.dropout": 0.1, layers: [1, 2] });
    assert.equal(typeof file.version, "number");
  });

  it("metrics(name).log appends records with _ts and an auto step; an explicit step is kept", async () => {
    const root = tempDir("test");
    await new Experiment({ prefix: "a/p/m", dashRoot: root }).run((exp) => {
      exp.metrics("train").log({ loss: 0.5, epoch: 0 });
      exp.metrics("train").log({ loss: 0.4, epoch: 0 });
      exp.metrics("train").log({ loss: 0.3, step: 10 });
      exp.metrics("train").log({ loss: 0.2 });
    });
    const rows = readLines(path.join(root, "a/p/m/metrics/train.jsonl"));
    assert.deepEqual(rows.map((r) => [r.step, r.loss]), [[0, 0.5], [1, 0.4], [10, 0.3], [11, 0.2]]);
    assert.equal(rows[0].epoch, 0);
    assert.ok(rows.every((r) => typeof r._ts === "number"));
  });

  it("metrics.log splits groups into named metrics and shares the other fields", async () => {
    const root = tempDir("test");
    await new Experiment({ prefix: "a/p/g", dashRoot: root }).run((exp) => {
      exp.metrics.log({ epoch: 1, train: { loss: 0.5, acc: 0.8 }, eval: { loss: 0.6 } });
      exp.metrics.log({ epoch: 2, lr: 0.1 });
    });
    const dir = path.join(root, "a/p/g/metrics");
    assert.deepEqual(readLines(path.join(dir, "train.jsonl")).map(({ _ts, ...r }) => r), [{ step: 0, epoch: 1, loss: 0.5, acc: 0.8 }]);
    assert.deepEqual(readLines(path.join(dir, "eval.jsonl")).map(({ _ts, ...r }) => r), [{ step: 0, epoch: 1, loss: 0.6 }]);
    assert.deepEqual(readLines(path.join(dir, "default.jsonl")).map(({ _ts, ...r }) => r), [{ step: 0, epoch: 2, lr: 0.1 }]);
  });

  it("files saves text, JSON, bytes and copies of local files, and lists them", async () => {
    const root = tempDir("test");
    const local = path.join(root, "weights.bin");
    fs.writeFileSync(local, new Uint8Array([1, 2, 3, 4]));
    await new Experiment({ prefix: "a/p/files", dashRoot: root }).run(async (exp) => {
      await exp.files.saveText("notes/readme.txt", "hello");
      await exp.files.saveJson("config.json", { a: 1 });
      await exp.files.saveBytes("raw.bin", new Uint8Array([9, 8]));
      const copied = await exp.files.copy(local);
      assert.equal(copied.path, "weights.bin");
      assert.equal(copied.size, 4);
    });
    const dir = path.join(root, "a/p/files/files");
    assert.equal(fs.readFileSync(path.join(dir, "notes/readme.txt"), "utf8"), "hello");
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8")), { a: 1 });
    assert.deepEqual([...fs.readFileSync(path.join(dir, "raw.bin"))], [9, 8]);
    assert.deepEqual([...fs.readFileSync(path.join(dir, "weights.bin"))], [1, 2, 3, 4]);
    let listed: string[] = [];
    await new Experiment({ prefix: "a/p/files", dashRoot: root }).run((exp) => {
      listed = exp.files.list().map((f) => f.path).sort();
    });
    assert.deepEqual(listed, ["config.json", "notes/readme.txt", "raw.bin", "weights.bin"]);
  });

  it("flush() resolves once everything logged so far is on disk", async () => {
    const root = tempDir("test");
    const exp = new Experiment({ prefix: "a/p/flush", dashRoot: root, flushInterval: 3600, metricBatchSize: 1_000_000 });
    await exp.run.start();
    const file = path.join(root, "a/p/flush/metrics/train.jsonl");
    for (let i = 0; i < 50; i++) exp.metrics("train").log({ loss: i });
    exp.log("a line");
    await sleep(20);
    assert.equal(readLines(file).length, 0, "below the batch size nothing is written before the timer");
    await exp.flush();
    assert.equal(readLines(file).length, 50);
    assert.equal(readLines(path.join(root, "a/p/flush/logs.jsonl")).length, 1);
    await exp.run.complete();
  });

  it("logging before start or after the end throws a UsageError", async () => {
    const root = tempDir("test");
    const exp = new Experiment({ prefix: "a/p/early", dashRoot: root });
    assert.throws(() => exp.log("x"), UsageError);
    assert.throws(() => exp.metrics("train").log({ loss: 1 }), UsageError);
    assert.throws(() => exp.params.set({ a: 1 }), UsageError);
    const starts = await Promise.allSettled([exp.run.start(), exp.run.start()]);
    assert.deepEqual(starts.map((r) => r.status).sort(), ["fulfilled", "rejected"], "two starts at once: one fails");
    await assert.rejects(exp.run.start(), UsageError);
    await exp.run.complete();
    assert.throws(() => exp.log("late"), /not running/);
    await assert.rejects(exp.run.complete(), UsageError);
  });
});

describe("RUN and dxp", () => {
  it("RUN reads ML_DASH_PREFIX, ML_DASH_ROOT, ML_DASH_URL and ML_DASH_USER", async () => {
    await withEnv({
      ML_DASH_PREFIX: "env/proj/x",
      ML_DASH_ROOT: "/tmp/somewhere",
      ML_DASH_URL: "http://127.0.0.1:1",
      ML_DASH_USER: "carol",
    }, async () => {
      assert.equal(RUN.prefix, "env/proj/x");
      assert.equal(RUN.dashRoot, "/tmp/somewhere");
      assert.equal(RUN.dashUrl, "http://127.0.0.1:1");
      assert.equal(RUN.user, "carol");
    });
  });

  it("RUN is settable and dxp logs to the prefix and root it names", async () => {
    const root = tempDir("test");
    RUN.prefix = "geyang/scratch/some-experiment";
    RUN.dashRoot = root;
    try {
      await dxp.run(() => dxp.metrics("train").log({ step: 0, loss: 1.0 }));
    } finally {
      RUN.prefix = undefined;
      RUN.dashRoot = undefined as unknown as string;
    }
    const rows = readLines(path.join(root, "geyang/scratch/some-experiment/metrics/train.jsonl"));
    assert.deepEqual(rows.map((r) => r.loss), [1]);
    assert.equal(dxp.run.length, 1);
  });

  it("dxp without a prefix fails with a ConfigError that says how to set one", async () => {
    await withEnv({}, async () => {
      if (RUN.prefix !== undefined) return; // the environment sets one
      await assert.rejects(dxp.run(() => {}), (e) => e instanceof ConfigError && /RUN\.prefix|ML_DASH_PREFIX/.test(e.message));
    });
  });
});

describe("Run API", () => {
  it("startRun with a callback runs under owner/project/experiment/runName and completes", async () => {
    const root = tempDir("test");
    const prefix = await startRun("resnet-cifar10", { config: { lr: 0.1 }, dashRoot: root, owner: "bob", project: "vision", runName: "r1" }, (run) => {
      for (let step = 0; step < 5; step++) run.log({ "train/loss": 1 / (step + 1) }, step);
      return run.prefix;
    });
    assert.equal(prefix, "bob/vision/resnet-cifar10/r1");
    const dir = path.join(root, prefix);
    assert.equal(readJson(path.join(dir, "status.json")).status, "COMPLETED");
    assert.deepEqual(readJson(path.join(dir, "parameters.json")).data, { lr: 0.1 });
    assert.deepEqual(readLines(path.join(dir, "metrics/train.jsonl")).map((r) => r.step), [0, 1, 2, 3, 4]);
  });

  it("startRun with a callback records failed and rethrows", async () => {
    const root = tempDir("test");
    let prefix = "";
    await assert.rejects(startRun("exp", { dashRoot: root }, (run) => {
      prefix = run.prefix;
      throw new Error("nan loss");
    }), /nan loss/);
    assert.equal(readJson(path.join(root, prefix, "status.json")).status, "FAILED");
  });

  it("run.log auto-increments from 0 and an explicit step moves the counter", async () => {
    const root = tempDir("test");
    const run = startRun("steps", { dashRoot: root, runName: "s" });
    await run.start();
    run.log({ loss: 0.5 });
    run.log({ loss: 0.4 });
    run.log({ loss: 0.3 }, 10);
    run.log({ loss: 0.2 });
    await run.finish();
    const rows = readLines(path.join(root, run.prefix, "metrics/default.jsonl"));
    assert.deepEqual(rows.map((r) => [r.step, r.loss]), [[0, 0.5], [1, 0.4], [10, 0.3], [11, 0.2]]);
  });

  it("keys group/name land in metric group; other keys in the default metric, at one step", async () => {
    const root = tempDir("test");
    await startRun("keys", { dashRoot: root, runName: "k" }, (run) => {
      run.log({ "train/loss": 0.45, "train/accuracy": 0.82, "val/loss": 0.5, lr: 0.1 }, 7);
    });
    const dir = path.join(root, "local/default/keys/k/metrics");
    assert.deepEqual(readLines(path.join(dir, "train.jsonl")).map(({ _ts, ...r }) => r), [{ step: 7, loss: 0.45, accuracy: 0.82 }]);
    assert.deepEqual(readLines(path.join(dir, "val.jsonl")).map(({ _ts, ...r }) => r), [{ step: 7, loss: 0.5 }]);
    assert.deepEqual(readLines(path.join(dir, "default.jsonl")).map(({ _ts, ...r }) => r), [{ step: 7, lr: 0.1 }]);
    const keys = await new DashReader(root).metricKeys("local/default/keys/k");
    assert.deepEqual(keys, ["lr", "train/accuracy", "train/loss", "val/loss"]);
  });

  it("a resumed run continues its steps after the last one recorded", async () => {
    const root = tempDir("test");
    for (let session = 0; session < 2; session++) {
      await startRun("resume", { dashRoot: root, runName: "r" }, (run) => {
        run.log({ "train/loss": 1, lr: 0.1 });
        run.log({ "train/loss": 2, lr: 0.1 });
      });
    }
    const dir = path.join(root, "local/default/resume/r/metrics");
    assert.deepEqual(readLines(path.join(dir, "train.jsonl")).map((r) => r.step), [0, 1, 2, 3]);
    assert.deepEqual(readLines(path.join(dir, "default.jsonl")).map((r) => r.step), [0, 1, 2, 3]);
  });

  it("logConfig merges into the config", async () => {
    const root = tempDir("test");
    const run = startRun("cfg", { dashRoot: root, config: { lr: 0.1, optimizer: "sgd" } });
    await run.start();
    run.logConfig({ optimizer: "adam" });
    run.logConfig({ early_stopped_at: 50 });
    await run.finish("completed");
    assert.deepEqual(readJson(path.join(root, run.prefix, "parameters.json")).data, {
      lr: 0.1,
      optimizer: "adam",
      early_stopped_at: 50,
    });
  });

  it("finish maps completed, failed and interrupted onto COMPLETED, FAILED and CANCELLED", async () => {
    const root = tempDir("test");
    for (const [given, stored] of [["completed", "COMPLETED"], ["failed", "FAILED"], ["interrupted", "CANCELLED"]] as const) {
      const run = startRun("fin", { dashRoot: root, runName: given });
      await run.start();
      await run.finish(given);
      assert.equal(readJson(path.join(root, run.prefix, "status.json")).status, stored);
    }
    const run = await startRun("fin", { dashRoot: root, runName: "bad" }).start();
    await assert.rejects(run.finish("done" as "completed"), ConfigError);
    await run.finish();
  });

  it("a default run name is unique and sorts by start time", async () => {
    const a = startRun("names", { dashRoot: tempDir("test") });
    await sleep(1100);
    const b = startRun("names", { dashRoot: tempDir("test") });
    const c = startRun("names", { dashRoot: tempDir("test") });
    assert.notEqual(b.name, c.name);
    assert.ok(a.name < b.name, `${a.name} < ${b.name}`);
    assert.match(a.name, /^run-\d{8}-\d{6}-[a-z0-9]+$/);
  });
});

describe("Buffer", () => {
  it("a microtask writes one tick's calls together once a batch is full", async () => {
    const root = tempDir("test");
    const exp = new Experiment({ prefix: "a/p/tick", dashRoot: root, metricBatchSize: 10, flushInterval: 3600 });
    await exp.run.start();
    const file = path.join(root, "a/p/tick/metrics/train.jsonl");
    for (let i = 0; i < 25; i++) exp.metrics("train").log({ i });
    assert.equal(readLines(file).length, 0, "log() itself does not write");
    await sleep(0);
    assert.equal(readLines(file).length, 25, "the whole tick is written, not only full batches");
    for (let i = 0; i < 5; i++) exp.metrics("train").log({ i });
    await sleep(10);
    assert.equal(readLines(file).length, 25, "a partial batch waits for the timer");
    await exp.run.complete();
    assert.equal(readLines(file).length, 30);
  });

  it("log() keeps the values it was given even if the caller reuses its object", async () => {
    const root = tempDir("test");
    await new Experiment({ prefix: "a/p/reuse", dashRoot: root }).run((exp) => {
      const fields = { loss: 1, acc: 0.5 };
      for (let i = 0; i < 3; i++) {
        fields.loss = i;
        exp.metrics("train").log(fields);
      }
      fields.loss = 99;
    });
    assert.deepEqual(readLines(path.join(root, "a/p/reuse/metrics/train.jsonl")).map((r) => r.loss), [0, 1, 2]);
  });

  it("keeps every record, in order, across many batches written while the caller rarely yields", async () => {
    const root = tempDir("test");
    await new Experiment({ prefix: "a/p/many", dashRoot: root }).run(async (exp) => {
      for (let i = 0; i < 30_000; i++) {
        exp.metrics("train").log({ i });
        if (i % 5_000 === 0) await Promise.resolve();
      }
    });
    const rows = readLines(path.join(root, "a/p/many/metrics/train.jsonl"));
    assert.equal(rows.length, 30_000);
    assert.ok(rows.every((r, i) => r.i === i && r.step === i));
  });

  it("records whose keys are many-byte characters, longer than a buffer's first size, are written whole", async () => {
    const root = tempDir("test");
    // 3-byte characters and 4-byte ones (surrogate pairs), so that the UTF-8 of a line is longer than its text.
    const keys = ["损失".repeat(40), "😀".repeat(60), "plain"];
    await new Experiment({ prefix: "a/p/utf8", dashRoot: root }).run(async (exp) => {
      for (let i = 0; i < 3_000; i++) exp.metrics("train").log({ [keys[0]]: i, [keys[1]]: -i, [keys[2]]: i / 7 });
      await Promise.resolve();
      for (let i = 3_000; i < 3_010; i++) exp.metrics("train").log({ [keys[0]]: i, [keys[1]]: -i, [keys[2]]: i / 7 });
    });
    const rows = readLines(path.join(root, "a/p/utf8/metrics/train.jsonl"));
    assert.equal(rows.length, 3_010);
    rows.forEach((row, i) => {
      const expected = { _ts: row._ts, step: i, [keys[0]]: i, [keys[1]]: -i, [keys[2]]: i / 7 };
      if (JSON.stringify(row) !== JSON.stringify(expected)) assert.fail(`row ${i}: ${JSON.stringify(row).slice(0, 80)}`);
    });
  });

  it("batches waiting for a retry keep their records while the buffers of written batches are reused", async () => {
    const root = tempDir("test");
    const exp = new Experiment({ prefix: "a/p/reused", dashRoot: root, flushInterval: 3600 });
    await exp.run.start();
    const train = exp.metrics("train");
    const logRange = (from: number, to: number): void => {
      for (let i = from; i < to; i++) train.log({ i, half: i / 2 });
    };
    logRange(0, 2_000);
    await exp.flush();
    // A real fault: the metrics folder is replaced by a file, so the appends fail and their batches wait.
    const metrics = path.join(root, "a/p/reused/metrics");
    fs.rmSync(metrics, { recursive: true });
    fs.writeFileSync(metrics, "");
    await captureWarnings(async () => {
      logRange(2_000, 4_000);
      await assert.rejects(exp.flush());
      logRange(4_000, 6_000);
      await assert.rejects(exp.flush());
    });
    fs.rmSync(metrics);
    fs.mkdirSync(metrics);
    logRange(6_000, 8_000);
    await exp.run.complete();
    const rows = readLines(path.join(metrics, "train.jsonl"));
    assert.equal(rows.length, 6_000, "the records logged before the fault went with the folder");
    rows.forEach((row, n) => {
      const i = n + 2_000;
      if (row.i !== i || row.half !== i / 2 || row.step !== i) assert.fail(`row ${n}: ${JSON.stringify(row)}`);
    });
  });

  it("the timer flushes a partial batch every flushInterval seconds", async () => {
    const root = tempDir("test");
    const exp = new Experiment({ prefix: "a/p/timer", dashRoot: root, flushInterval: 0.05 });
    await exp.run.start();
    const file = path.join(root, "a/p/timer/metrics/train.jsonl");
    exp.metrics("train").log({ loss: 1 });
    exp.log("line");
    for (let i = 0; i < 100 && readLines(file).length === 0; i++) await sleep(20);
    assert.equal(readLines(file).length, 1);
    assert.equal(readLines(path.join(root, "a/p/timer/logs.jsonl")).length, 1);
    const first = readJson(path.join(root, "a/p/timer/status.json")).heartbeatAt as number;
    await sleep(150);
    assert.ok((readJson(path.join(root, "a/p/timer/status.json")).heartbeatAt as number) > first, "the heartbeat moves");
    await exp.run.complete();
  });

  it("batch sizes and the flush interval come from ML_DASH_* env vars", async () => {
    const root = tempDir("test");
    await withEnv({ ML_DASH_METRIC_BATCH_SIZE: "3", ML_DASH_LOG_BATCH_SIZE: "2", ML_DASH_FLUSH_INTERVAL: "3600" }, async () => {
      const exp = new Experiment({ prefix: "a/p/env", dashRoot: root });
      await exp.run.start();
      exp.metrics("train").log({ a: 1 });
      exp.metrics("train").log({ a: 2 });
      exp.log("one");
      await sleep(5);
      assert.equal(readLines(path.join(root, "a/p/env/metrics/train.jsonl")).length, 0);
      exp.metrics("train").log({ a: 3 });
      exp.log("two");
      await sleep(5);
      assert.equal(readLines(path.join(root, "a/p/env/metrics/train.jsonl")).length, 3);
      assert.equal(readLines(path.join(root, "a/p/env/logs.jsonl")).length, 2);
      await exp.run.complete();
    });
  });

  it("an unusable ML_DASH_* value warns and falls back to the default", async () => {
    const warnings = await captureWarnings(() =>
      withEnv({ ML_DASH_FLUSH_INTERVAL: "soon" }, async () => {
        new Experiment({ prefix: "a/p/badenv", dashRoot: tempDir("test") });
      })
    );
    assert.ok(warnings.some((w) => w.includes("ML_DASH_FLUSH_INTERVAL") && w.includes('"soon"')), warnings.join("\n"));
  });
});

describe("Bad input", () => {
  for (const [value, stored] of [[NaN, "NaN"], [Infinity, "Infinity"], [-Infinity, "-Infinity"]] as const) {
    it(`${stored} is recorded as the string "${stored}" with one warning per key`, async () => {
      const root = tempDir("test");
      const warnings = await captureWarnings(() =>
        new Experiment({ prefix: "a/p/nonfinite", dashRoot: root }).run((exp) => {
          exp.metrics("train").log({ loss: value, acc: 0.5 });
          exp.metrics("train").log({ loss: value, acc: 0.6 });
        })
      );
      const rows = readLines(path.join(root, "a/p/nonfinite/metrics/train.jsonl"));
      assert.deepEqual(rows.map((r) => [r.loss, r.acc]), [[stored, 0.5], [stored, 0.6]]);
      assert.equal(warnings.length, 1, warnings.join("\n"));
      assert.match(warnings[0], new RegExp(`${stored.replace("-", "\\-")}.*train/loss`));
    });
  }

  for (const value of ["0.5", { v: 1 }, true, null, undefined]) {
    it(`a non-numeric value ${JSON.stringify(value)} warns once, the rest of the call is recorded`, async () => {
      const root = tempDir("test");
      const warnings = await captureWarnings(() =>
        startRun("bad", { dashRoot: root, runName: "r" }, (run) => {
          run.log({ loss: value as unknown as number, acc: 0.5 });
          run.log({ loss: value as unknown as number, acc: 0.6 });
        })
      );
      const rows = readLines(path.join(root, "local/default/bad/r/metrics/default.jsonl"));
      assert.deepEqual(rows.map(({ _ts, ...r }) => r), [{ step: 0, acc: 0.5 }, { step: 1, acc: 0.6 }]);
      assert.equal(warnings.length, 1, warnings.join("\n"));
      assert.match(warnings[0], /expected a finite number/);
      assert.match(warnings[0], /"loss"/);
    });
  }

  it("an empty key warns and the rest of the call is recorded", async () => {
    const root = tempDir("test");
    const warnings = await captureWarnings(() =>
      new Experiment({ prefix: "a/p/empty", dashRoot: root }).run((exp) => exp.metrics("train").log({ "": 1, loss: 2 }))
    );
    const rows = readLines(path.join(root, "a/p/empty/metrics/train.jsonl"));
    assert.deepEqual(rows.map(({ _ts, ...r }) => r), [{ step: 0, loss: 2 }]);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /key "" .*cannot be empty/);
  });

  for (const [name, value] of [["NaN", NaN], ["Infinity", Infinity], ["-Infinity", -Infinity], ["a string", "x"], ["an object", {}], ["an empty key", 1]] as const) {
    it(`strict mode throws InvalidMetricError for ${name} and records nothing of that call`, async () => {
      const root = tempDir("test");
      const key = name === "an empty key" ? "" : "loss";
      await startRun("strict", { dashRoot: root, runName: "r", strict: true }, (run) => {
        assert.throws(() => run.log({ acc: 1, [key]: value as number, "train/x": 2 }), InvalidMetricError);
        run.log({ acc: 2 });
      });
      await new Experiment({ prefix: "a/p/strict", dashRoot: root, strict: true }).run((exp) => {
        assert.throws(() => exp.metrics("train").log({ acc: 1, [key]: value }), InvalidMetricError);
        assert.throws(() => exp.metrics.log({ eval: { acc: 1 }, train: { [key]: value } }), InvalidMetricError);
      });
      const rows = readLines(path.join(root, "local/default/strict/r/metrics/default.jsonl"));
      assert.deepEqual(rows.map((r) => r.acc), [2]);
      assert.equal(fs.existsSync(path.join(root, "local/default/strict/r/metrics/train.jsonl")), false);
      assert.equal(fs.existsSync(path.join(root, "a/p/strict/metrics")), false);
    });
  }

  for (const [prefix, rule] of [
    ["../x/y", 'a segment cannot be ".."'],
    ["/abs/x", "cannot be absolute"],
    ["a//b", "a segment cannot be empty"],
    ["a\\b", "backslash"],
    ["a/b\0c", "NUL"],
    ["a/./b", 'a segment cannot be "."'],
    ["C:/x/y", "cannot be absolute"],
    ["", "cannot be empty"],
    ["single", "at least"],
  ]) {
    it(`prefix ${JSON.stringify(prefix)} throws a ConfigError at construction and creates nothing`, () => {
      const root = tempDir("test");
      const dashRoot = path.join(root, "inner", ".dash");
      assert.throws(
        () => new Experiment({ prefix, dashRoot }),
        (e) => e instanceof ConfigError && e.message.includes(JSON.stringify(prefix)) && e.message.includes(rule),
      );
      assert.deepEqual(fs.readdirSync(root), []);
    });
  }

  for (const [experiment, runName] of [["..", "r"], ["x", ".."], ["a/../../b", "r"], ["x", "a\\b"]]) {
    it(`startRun(${JSON.stringify(experiment)}, { runName: ${JSON.stringify(runName)} }) throws a ConfigError and creates nothing`, () => {
      const root = tempDir("test");
      assert.throws(() => startRun(experiment, { runName, dashRoot: path.join(root, ".dash") }), ConfigError);
      assert.deepEqual(fs.readdirSync(root), []);
    });
  }

  it("unknown options, bad URLs, bad metric names and bad file paths throw ConfigError", async () => {
    assert.throws(() => new Experiment({ prefix: "a/b/c", dashroot: ".dash" } as never), /Unknown option "dashroot"/);
    assert.throws(() => startRun("x", { lr: 0.1 } as never), /Unknown option "lr"/);
    assert.throws(() => new Experiment({ prefix: "a/b/c", dashUrl: "not a url" }), /Invalid dashUrl "not a url"/);
    assert.throws(() => new Experiment({ prefix: "a/b/c", dashUrl: "ftp://x" }), /Invalid dashUrl/);
    assert.throws(() => new Experiment({ prefix: "a/b/c", flushInterval: -1 }), /Invalid flushInterval -1/);
    assert.throws(() => new Experiment({ prefix: "a/b/c", tags: "x" as never }), /Invalid tags/);
    const root = tempDir("test");
    await new Experiment({ prefix: "a/b/c", dashRoot: root }).run(async (exp) => {
      assert.throws(() => exp.metrics("../evil"), /Invalid metric name "..\/evil"/);
      assert.throws(() => exp.metrics(""), ConfigError);
      await assert.rejects(exp.files.saveText("../../escape.txt", "x"), /Invalid file path/);
      await assert.rejects(exp.files.saveText("/etc/x", "x"), /cannot be absolute/);
    });
    assert.deepEqual(fs.readdirSync(root), ["a"]);
  });

  it("a write that fails keeps the data, flush() rejects with a StorageError, and a later flush writes it all", async () => {
    const root = tempDir("test");
    const exp = new Experiment({ prefix: "a/b/io", dashRoot: root, metricBatchSize: 10 });
    await exp.run.start();
    exp.metrics("train").log({ loss: 0 });
    await exp.flush();
    // A real fault: the metrics folder is replaced by a file, so opening a new metric file fails.
    const metrics = path.join(root, "a/b/io/metrics");
    fs.rmSync(metrics, { recursive: true });
    fs.writeFileSync(metrics, "");
    const warnings = await captureWarnings(async () => {
      for (let i = 0; i < 25; i++) exp.metrics("eval").log({ acc: i });
      exp.log("still logging");
      await sleep(10);
    });
    assert.equal(warnings.length, 1, "a failed background write warns once");
    await assert.rejects(exp.flush(), (e: Error) => e.name === "StorageError" && e.message.includes(JSON.stringify(root)));
    fs.rmSync(metrics);
    fs.mkdirSync(metrics);
    await exp.flush();
    await exp.run.complete();
    assert.deepEqual(readLines(path.join(metrics, "eval.jsonl")).map((r) => r.acc), Array.from({ length: 25 }, (_, i) => i));
    assert.equal(readLines(path.join(root, "a/b/io/logs.jsonl")).length, 1);
  });

  it("a batch that failed half-way is written again without repeating the part already stored", async () => {
    const root = tempDir("test");
    const exp = new Experiment({ prefix: "a/b/half", dashRoot: root, metricBatchSize: 1_000_000 });
    await exp.run.start();
    // A real fault after the metrics: logs.jsonl is a folder, so appending the batch's log line fails.
    const logs = path.join(root, "a/b/half/logs.jsonl");
    fs.mkdirSync(logs);
    for (let i = 0; i < 5; i++) exp.metrics("train").log({ loss: i });
    exp.log("after the metrics");
    await captureWarnings(() => assert.rejects(exp.flush(), (e: Error) => e.name === "StorageError"));
    assert.equal(readLines(path.join(root, "a/b/half/metrics/train.jsonl")).length, 5, "the metrics were stored before the failure");
    fs.rmdirSync(logs);
    await exp.run.complete();
    assert.deepEqual(readLines(path.join(root, "a/b/half/metrics/train.jsonl")).map((r) => r.step), [0, 1, 2, 3, 4]);
    assert.deepEqual(readLines(logs).map((r) => r.message), ["after the metrics"]);
  });

  it("a write that fails half-way (fake: a disk that fills up in the middle of a write) resumes without repeating or gluing records", async () => {
    const root = tempDir("test");
    const backend = new JsonlBackend(root);
    await backend.open("a/b/full");
    // Six chunks of about 480 KB, written in one piece or several (as its buffer allows).
    const line = (i: number): string => JSON.stringify({ _ts: 1, step: i, loss: i, pad: "x".repeat(200) });
    const chunks = Array.from({ length: 6 }, (_, c) => Array.from({ length: 2000 }, (_, i) => line(c * 2000 + i)).join("\n"));
    const batch = { metrics: { train: chunks } };
    const original = fileSystem.openAppend;
    let failed = false;
    // A disk that fills up cannot be had on demand here: the first write stores half its bytes, then fails.
    fileSystem.openAppend = (file) => {
      const real = original(file);
      return {
        ...real,
        write(bytes, length) {
          if (failed || length === 0) return real.write(bytes, length);
          failed = true;
          real.write(bytes, length >> 1);
          throw new PartialWriteError(length >> 1, new Error("ENOSPC: no space left on device"));
        },
      };
    };
    try {
      await assert.rejects(backend.write("a/b/full", batch), /ENOSPC/);
    } finally {
      fileSystem.openAppend = original;
    }
    await backend.write("a/b/full", batch); // the same batch again, as the buffer retries it
    await backend.close();
    const series = await new DashReader(root).series("a/b/full", "train/loss");
    assert.deepEqual(series.step, Array.from({ length: 12_000 }, (_, i) => i), "every record once, in order");
  });

  it("in strict mode a failed write makes the next log() throw the StorageError", async () => {
    const root = tempDir("test");
    const exp = new Experiment({ prefix: "a/b/strictio", dashRoot: root, strict: true });
    await exp.run.start();
    const metrics = path.join(root, "a/b/strictio/metrics");
    fs.writeFileSync(metrics, "");
    exp.metrics("train").log({ loss: 1 });
    await assert.rejects(exp.flush(), /StorageError|Could not write/);
    assert.throws(() => exp.metrics("train").log({ loss: 2 }), (e: Error) => e.name === "StorageError");
    fs.rmSync(metrics);
    await exp.run.complete();
    assert.deepEqual(readLines(path.join(metrics, "train.jsonl")).map((r) => r.loss), [1]);
  });

  it("an unwritable root rejects start with a StorageError that names it", async () => {
    const root = tempDir("test");
    const blocker = path.join(root, "file");
    fs.writeFileSync(blocker, "");
    const exp = new Experiment({ prefix: "a/b/c", dashRoot: path.join(blocker, "dash") });
    await assert.rejects(exp.run.start(), (e: Error) => e.name === "StorageError" && e.message.includes(JSON.stringify(path.join(blocker, "dash"))));
  });
});
