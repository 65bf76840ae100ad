import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ConfigError, Experiment, startRun } from "./mod.ts";
import { DashReader } from "./storage/jsonl.ts";

function tempRoot(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "ml-dash-names-"));
}

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

function metricFiles(root: string, prefix: string): string[] {
  return fs.readdirSync(path.join(root, prefix, "metrics")).sort();
}

describe("names that are Object.prototype's own (__proto__, constructor)", () => {
  it("Experiment API: a metric, field and param named __proto__ read back exactly", async () => {
    const root = tempRoot();
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
    const root = tempRoot();
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
    const root = tempRoot();
    const options = { dashRoot: root, owner: "alice", project: "proto", runName: "r2" };
    await startRun("exp", options, (run) => run.log(own<number>('{"__proto__/a":1}'), 4));
    await startRun("exp", options, (run) => run.log(own<number>('{"__proto__/a":2}')));
    const series = await new DashReader(root).series("alice/proto/exp/r2", "__proto__/a");
    assert.deepEqual(series.step, [4, 5]);
  });
});
