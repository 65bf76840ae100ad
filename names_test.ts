import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { checkPrefix, ConfigError, Experiment, InvalidMetricError, startRun } from "./mod.ts";
import { DashReader } from "./storage/jsonl.ts";
import { tempDir } from "./testing/temp.ts";

/** An object with own keys such as `__proto__`, as JSON.parse makes it (a literal would set the prototype). */
function own<T = unknown>(json: string): Record<string, T> {
  return JSON.parse(json);
}

/** Every line of a JSONL file, parsed; fails on a line that is not a JSON object. */
function objectLines(file: string): Record<string, unknown>[] {
  const lines = fs.readFileSync(file, "utf8").split("\n").filter((l) => l !== "");
  return lines.map((line) => {
    const record = JSON.parse(line);
    assert.equal(typeof record, "object", `not a record: ${line}`);
    return record;
  });
}

/** Runs `fn` with console.warn captured; returns the warnings. */
function captureWarnings(fn: () => void): string[] {
  const warnings: string[] = [];
  const original = console.warn;
  console.warn = (...args: unknown[]) => warnings.push(args.join(" "));
  try {
    fn();
  } finally {
    console.warn = original;
  }
  return warnings;
}

/** The metric files of an experiment (not their read indexes, `<name>.jsonl.idx`). */
function metricFiles(root: string, prefix: string): string[] {
  return fs.readdirSync(path.join(root, prefix, "metrics")).filter((name) => name.endsWith(".jsonl")).sort();
}

describe("names that are Object.prototype's own (__proto__, constructor)", () => {
  it("Experiment API: a metric, field and param named __proto__ read back exactly", async () => {
    const root = tempDir("names");
    const prefix = "alice/proto/exp";
    const exp = new Experiment({ prefix, dashRoot: root, metadata: own('{"__proto__":{"a":1},"constructor":2}') });
    await exp.run.start();
    exp.params.set(own('{"__proto__":[1,2],"constructor":"c","model":{"__proto__":3}}'));
    exp.metrics("__proto__").log(own('{"__proto__":1,"constructor":2}'));
    // A non-finite value and an explicit step take the careful path, which builds the record.
    const nan = Object.defineProperty({ step: 7, constructor: 3 }, "__proto__", { value: NaN, enumerable: true });
    const warnings = captureWarnings(() => exp.metrics("__proto__").log(nan));
    assert.match(warnings.join("\n"), /"__proto__\/__proto__"/);
    exp.metrics.log(own('{"__proto__":5,"constructor":{"__proto__":6}}'));
    exp.log("hello", own('{"__proto__":{"b":1}}'));
    assert.deepEqual(exp.params.get(), own('{"__proto__":[1,2],"constructor":"c","model.__proto__":3}'));
    await exp.run.complete();

    assert.deepEqual(metricFiles(root, prefix), ["__proto__.jsonl", "constructor.jsonl"]);
    const rows = objectLines(path.join(root, prefix, "metrics/__proto__.jsonl"));
    assert.deepEqual(rows.map(({ _ts: _, ...rest }) => rest), [
      own('{"step":0,"__proto__":1,"constructor":2}'),
      own('{"step":7,"__proto__":"NaN","constructor":3}'),
    ]);
    assert.deepEqual(objectLines(path.join(root, prefix, "metrics/constructor.jsonl")).map(({ _ts: _, ...r }) => r), [
      own('{"step":0,"__proto__":6}'),
    ]);

    const reader = new DashReader(root);
    assert.deepEqual(await reader.params(prefix), own('{"__proto__":[1,2],"constructor":"c","model.__proto__":3}'));
    assert.deepEqual((await reader.experiment(prefix))?.metadata, own('{"__proto__":{"a":1},"constructor":2}'));
    assert.deepEqual(Object.keys(await reader.summary(prefix)), ["__proto__/__proto__", "__proto__/constructor", "constructor/__proto__"]);
    const series = await reader.series(prefix, "__proto__/__proto__");
    assert.deepEqual([series.step, series.value], [[0, 7], [1, NaN]]);
    assert.deepEqual((await reader.logs(prefix))[0].__proto__, { b: 1 });
  });

  it("Run API: keys __proto__ and __proto__/constructor, config __proto__ and constructor read back exactly", async () => {
    const root = tempDir("names");
    const config = own('{"__proto__":{"lr":0.1},"constructor":[3]}');
    const run = startRun("exp", { dashRoot: root, owner: "alice", project: "proto", runName: "r1", config });
    await run.start();
    run.log(own<number>('{"__proto__":1,"__proto__/constructor":2,"__proto__/__proto__":3}'));
    run.log(own<number>('{"__proto__":4,"__proto__/constructor":5,"__proto__/__proto__":6}'));
    await run.finish();

    const prefix = "alice/proto/exp/r1";
    assert.deepEqual(metricFiles(root, prefix), ["__proto__.jsonl", "default.jsonl"]);
    for (const file of metricFiles(root, prefix)) assert.equal(objectLines(path.join(root, prefix, "metrics", file)).length, 2);
    const reader = new DashReader(root);
    assert.deepEqual(await reader.params(prefix), own('{"__proto__.lr":0.1,"constructor":[3]}'));
    const summary = await reader.summary(prefix);
    assert.deepEqual(Object.keys(summary), ["__proto__", "__proto__/__proto__", "__proto__/constructor"]);
    assert.deepEqual(summary["__proto__/constructor"], { count: 2, min: 2, max: 5, last: 5, lastStep: 1 });
    assert.deepEqual((await reader.series(prefix, "__proto__")).value, [1, 4]);
    assert.deepEqual((await reader.series(prefix, "__proto__/constructor")).value, [2, 5]);
    assert.deepEqual((await reader.series(prefix, "__proto__/__proto__")).step, [0, 1]);
    assert.deepEqual(await reader.lastSteps(prefix), own('{"__proto__":1,"default":1}'));
  });

  it("a resumed run continues the steps of a metric named __proto__", async () => {
    const root = tempDir("names");
    const options = { dashRoot: root, owner: "alice", project: "proto", runName: "r2" };
    await startRun("exp", options, (run) => run.log(own<number>('{"__proto__/a":1}'), 4));
    await startRun("exp", options, (run) => run.log(own<number>('{"__proto__/a":2}')));
    const series = await new DashReader(root).series("alice/proto/exp/r2", "__proto__/a");
    assert.deepEqual(series.step, [4, 5]);
  });
});

/** `levels` plain objects one inside the other: `{ a: { a: ... { a: leaf } } }`. */
function nested(levels: number, leaf: unknown = 1): Record<string, unknown> {
  let value = leaf;
  for (let i = 0; i < levels; i++) value = { a: value };
  return value as Record<string, unknown>;
}

/** `levels` arrays one inside the other. */
function nestedArray(levels: number): unknown[] {
  let value: unknown[] = [];
  for (let i = 1; i < levels; i++) value = [value];
  return value;
}

const CJK_100 = "测".repeat(100); // 300 bytes of UTF-8
const isConfigError = (bytes: number, limit: number) => (e: unknown): boolean =>
  e instanceof ConfigError && e.message.includes(`${bytes} bytes, the limit is ${limit}`);

describe("names longer than a file system takes, and nesting deeper than a stack", () => {
  it("a prefix segment over 255 bytes of UTF-8 throws a ConfigError that names the limit", () => {
    const root = tempDir("names");
    assert.throws(() => new Experiment({ prefix: `alice/${CJK_100}/x`, dashRoot: root }), isConfigError(300, 255));
    assert.throws(() => checkPrefix(`alice/proj/${"a".repeat(256)}`), isConfigError(256, 255));
    assert.throws(() => startRun(CJK_100, { dashRoot: root }), isConfigError(300, 255));
    assert.throws(() => startRun("exp", { runName: "😀".repeat(64), dashRoot: root }), isConfigError(256, 255));
    new Experiment({ prefix: `alice/${"测".repeat(85)}/${"😀".repeat(63)}`, dashRoot: root });
    assert.deepEqual(fs.readdirSync(root), []);
  });

  it("a metric name whose file name would be over 255 bytes throws; one that fits is written", async () => {
    const root = tempDir("names");
    const exp = new Experiment({ prefix: "alice/long/names", dashRoot: root });
    await exp.run.start();
    assert.throws(() => exp.metrics(CJK_100), isConfigError(300, 249));
    assert.throws(() => exp.metrics.log({ [CJK_100]: { loss: 1 } }), isConfigError(300, 249));
    assert.throws(() => exp.metrics("m".repeat(250)), isConfigError(250, 249));
    exp.metrics("测".repeat(83)).log({ loss: 1 });
    await exp.run.complete();
    assert.deepEqual(metricFiles(root, "alice/long/names"), [`${"测".repeat(83)}.jsonl`]);
  });

  it("a field name over 255 bytes is not recorded, with a warning (InvalidMetricError when strict)", async () => {
    const root = tempDir("names");
    const exp = new Experiment({ prefix: "alice/long/fields", dashRoot: root });
    await exp.run.start();
    const fits = "测".repeat(85);
    const warnings = captureWarnings(() => {
      exp.metrics("m").log({ [CJK_100]: 1, ok: 2 });
      exp.metrics("m").log({ ["😀".repeat(64)]: 1, [fits]: 3, step: 5 });
    });
    assert.equal(warnings.length, 2);
    assert.match(warnings[0], /300 bytes, the limit is 255/);
    assert.match(warnings[1], /256 bytes, the limit is 255/);
    const run = startRun("exp", { dashRoot: root, owner: "alice", project: "long", runName: "r", strict: true });
    await run.start();
    // A group that cannot be a metric makes the whole key a field of the default metric: 305 bytes.
    assert.throws(() => run.log({ [`${CJK_100}/loss`]: 1 }), (e: unknown) => e instanceof InvalidMetricError && /305 bytes, the limit is 255/.test(e.message));
    await run.finish();
    await exp.run.complete();
    const rows = objectLines(path.join(root, "alice/long/fields/metrics/m.jsonl")).map(({ _ts: _, ...r }) => r);
    assert.deepEqual(rows, [{ step: 0, ok: 2 }, { step: 5, [fits]: 3 }]);
    assert.equal(fs.existsSync(path.join(root, "alice/long/exp/r/metrics")), false);
  });

  it("a saved file's name too long for its temporary name throws a ConfigError, and the run goes on", async () => {
    const root = tempDir("names");
    const exp = new Experiment({ prefix: "alice/long/files", dashRoot: root });
    await exp.run.start();
    await assert.rejects(exp.files.saveText(CJK_100, "x"), isConfigError(300, 223));
    await assert.rejects(exp.files.saveText(`${CJK_100}/a.txt`, "x"), isConfigError(300, 255));
    await assert.rejects(exp.files.saveText("f".repeat(224), "x"), isConfigError(224, 223));
    await exp.files.saveText("f".repeat(223), "x");
    exp.metrics("m").log({ loss: 1 });
    await exp.run.complete();
    assert.deepEqual(fs.readdirSync(path.join(root, "alice/long/files/files")), ["f".repeat(223)]);
  });

  it("params, config and metadata nested 100,000 levels deep throw a ConfigError; 64 levels are taken", async () => {
    const root = tempDir("names");
    const tooDeep = (e: unknown): boolean => e instanceof ConfigError && /nested more than 64 levels/.test(e.message);
    assert.throws(() => new Experiment({ prefix: "alice/deep/meta", dashRoot: root, metadata: nested(100_000) }), tooDeep);
    assert.throws(() => new Experiment({ prefix: "alice/deep/meta", dashRoot: root, metadata: nested(65) }), tooDeep);
    const exp = new Experiment({ prefix: "alice/deep/params", dashRoot: root, metadata: nested(64) });
    await exp.run.start();
    assert.throws(() => exp.params.set(nested(100_000)), tooDeep);
    assert.throws(() => exp.params.set({ list: nestedArray(100_000) }), tooDeep);
    assert.throws(() => exp.params.set(nested(65)), tooDeep);
    exp.params.set(nested(64));
    exp.params.set({ b: nested(62, nestedArray(1)) });
    const warnings = captureWarnings(() => exp.log("deep meta", { detail: nested(100_000) }));
    assert.match(warnings.join("\n"), /nested more than 64 levels/);
    await exp.run.complete();
    assert.throws(() => startRun("exp", { dashRoot: root, config: nested(100_000) }), tooDeep);
    const reader = new DashReader(root);
    assert.deepEqual(Object.keys(await reader.params("alice/deep/params")), [Array(64).fill("a").join("."), `b.${Array(62).fill("a").join(".")}`]);
    assert.equal((await reader.logs("alice/deep/params"))[0].message, "deep meta");
  });
});
