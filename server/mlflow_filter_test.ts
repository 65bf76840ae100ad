// The MLflow search language: parsing filters and order_by items, evaluating them against runs.
import assert from "node:assert/strict";
import { test } from "node:test";
import { compareTargets, EXPERIMENT_ATTRIBUTES, FilterSyntaxError, matches, parseFilter, parseOrderBy } from "./mlflow_filter.ts";
import type { FilterTarget } from "./mlflow_filter.ts";

function run(options: { metrics?: Record<string, number>; params?: Record<string, string>; tags?: Record<string, string>; attributes?: Record<string, string | number | null> }): FilterTarget {
  return {
    metrics: new Map(Object.entries(options.metrics ?? {})),
    params: new Map(Object.entries(options.params ?? {})),
    tags: new Map(Object.entries(options.tags ?? {})),
    attributes: new Map(Object.entries(options.attributes ?? {})),
  };
}

const RESNET = run({
  metrics: { "train/loss": 0.25, acc: 0.9 },
  params: { model: "ResNet50", lr: "0.1" },
  tags: { "mlflow.runName": "baseline", team: "vision" },
  attributes: { status: "FINISHED", run_name: "baseline", run_id: "a".repeat(32), start_time: 1000, end_time: null },
});

test("parseFilter() reads each entity, backticks and double quotes for keys, and every comparator", () => {
  assert.deepEqual(parseFilter("metrics.`train/loss` <= 0.5 AND params.model LIKE 'Res%' AND tags.\"mlflow.runName\" != 'x'"), [
    { entity: "metric", key: "train/loss", comparator: "<=", value: 0.5 },
    { entity: "param", key: "model", comparator: "LIKE", value: "Res%" },
    { entity: "tag", key: "mlflow.runName", comparator: "!=", value: "x" },
  ]);
  assert.deepEqual(parseFilter("attributes.status IN ('FINISHED', 'FAILED') and run_name not in ('a')"), [
    { entity: "attribute", key: "status", comparator: "IN", value: ["FINISHED", "FAILED"] },
    { entity: "attribute", key: "run_name", comparator: "NOT IN", value: ["a"] },
  ]);
  assert.deepEqual(parseFilter("metric.acc >= -1e-3 AND attr.start_time > 5 AND param.lr ILIKE '0.%' AND tag.team = 'it''s'"), [
    { entity: "metric", key: "acc", comparator: ">=", value: -0.001 },
    { entity: "attribute", key: "start_time", comparator: ">", value: 5 },
    { entity: "param", key: "lr", comparator: "ILIKE", value: "0.%" },
    { entity: "tag", key: "team", comparator: "=", value: "it's" },
  ]);
  assert.deepEqual(parseFilter("   "), []);
});

test("parseFilter() refuses what the language does not allow, saying what it expected", () => {
  const refused: [string, RegExp][] = [
    ["metrics.loss < 'a'", /expected a number to compare metrics\.loss with, found "a"/],
    ["params.lr = 0.1", /expected a quoted string to compare params\.lr with/],
    ["params.lr < '1'", /Invalid comparator < for params\.lr: expected one of =, !=, LIKE, ILIKE, IN, NOT IN/],
    ["metrics.loss LIKE 1", /Invalid comparator LIKE for metrics\.loss/],
    ["metrics.a < 1 OR metrics.b < 1", /expected AND between comparisons \(OR is not supported\)/],
    ["foo.bar = 'x'", /unknown entity "foo": expected metrics, params, tags or attributes/],
    ["attributes.color = 'red'", /unknown attribute "color"/],
    ["tags.x = 'unclosed", /the ' opened at position 9 is never closed/],
    ["metrics.loss", /expected a comparator/],
    ["tags.x IN 'a'", /expected \( to start a list/],
    ["tags.x IN ('a' 'b')", /expected , or \) in the list/],
    ["metrics. < 1", /expected a key after the dot/],
    ["metrics.loss < 1 AND", /expected an identifier/],
    ["metrics.loss ! 1", /unexpected character "!"/],
  ];
  for (const [filter, message] of refused) {
    assert.throws(() => parseFilter(filter), (e: unknown) => e instanceof FilterSyntaxError && e.status === 400 && message.test(e.message), filter);
  }
});

test("matches() compares metrics as numbers and params, tags and attributes as strings", () => {
  const yes = [
    "metrics.`train/loss` < 0.3",
    "metrics.acc = 0.9 AND metrics.acc != 1",
    "params.model = 'ResNet50'",
    "params.model LIKE 'Res%50'",
    "params.model ILIKE 'resnet__'",
    "tags.team IN ('nlp', 'vision')",
    "tags.team NOT IN ('nlp')",
    "attributes.status = 'FINISHED' AND attributes.start_time >= 1000",
    "tags.`mlflow.runName` = 'baseline'",
  ];
  for (const filter of yes) assert.equal(matches(parseFilter(filter), RESNET), true, filter);
  const no = [
    "metrics.`train/loss` > 0.3",
    "params.model LIKE 'res%'",
    "params.model LIKE 'Res'",
    "tags.team IN ('nlp')",
    "metrics.missing < 100",
    "params.missing != 'x'",
    "attributes.end_time > 0",
    "metrics.acc > 0 AND params.lr = '0.2'",
  ];
  for (const filter of no) assert.equal(matches(parseFilter(filter), RESNET), false, filter);
});

test("LIKE patterns treat regular expression characters literally", () => {
  const target = run({ params: { path: "a.b(c)*" }, tags: { name: "lr-0.1/x[1]{2}|$^+?\\" } });
  assert.equal(matches(parseFilter("params.path LIKE 'a.b(c)*'"), target), true);
  assert.equal(matches(parseFilter("tags.name LIKE 'lr-0.1/x[1]{2}|$^+?\\\\'"), target), true);
  assert.equal(matches(parseFilter("tags.name ILIKE 'LR-%'"), target), true);
  assert.equal(matches(parseFilter("params.path LIKE 'a_b%'"), target), true);
  assert.equal(matches(parseFilter("params.path LIKE 'aXb(c)*'"), target), false);
});

test("parseOrderBy() and compareTargets() sort by a key, descending on request, missing keys last", () => {
  assert.deepEqual(parseOrderBy("metrics.`train/loss` DESC"), { entity: "metric", key: "train/loss", ascending: false });
  assert.deepEqual(parseOrderBy("attributes.start_time"), { entity: "attribute", key: "start_time", ascending: true });
  assert.throws(() => parseOrderBy("metrics.loss SIDEWAYS"), /expected ASC or DESC, found "SIDEWAYS"/);
  assert.throws(() => parseOrderBy(""), /expected an identifier/);
  const runs = [run({ metrics: { loss: 2 } }), run({}), run({ metrics: { loss: 1 } }), run({ metrics: { loss: 3 } })];
  const loss = (r: FilterTarget): number | undefined => r.metrics.get("loss");
  assert.deepEqual([...runs].sort((a, b) => compareTargets([parseOrderBy("metrics.loss")], a, b)).map(loss), [1, 2, 3, undefined]);
  assert.deepEqual([...runs].sort((a, b) => compareTargets([parseOrderBy("metrics.loss DESC")], a, b)).map(loss), [3, 2, 1, undefined]);
  const named = [run({ params: { m: "b" } }), run({ params: { m: "a" } })];
  assert.deepEqual(named.sort((a, b) => compareTargets([parseOrderBy("params.m")], a, b)).map((r) => r.params.get("m")), ["a", "b"]);
});

test("experiments have their own attributes", () => {
  const experiment = run({ attributes: { name: "mnist", creation_time: 5 } });
  assert.equal(matches(parseFilter("name LIKE 'mn%' AND creation_time > 1", { attributes: EXPERIMENT_ATTRIBUTES }), experiment), true);
  assert.throws(() => parseFilter("attributes.status = 'x'", { attributes: EXPERIMENT_ATTRIBUTES }), /unknown attribute "status"/);
});

test("parseFilter() reads a metric key with a slash without backticks", () => {
  assert.deepEqual(parseFilter("metrics.val/acc > 0.9 and params.lr = '0.001'"), [
    { entity: "metric", key: "val/acc", comparator: ">", value: 0.9 },
    { entity: "param", key: "lr", comparator: "=", value: "0.001" },
  ]);
  assert.equal(matches(parseFilter("metrics.train/loss < 0.5"), RESNET), true);
});
