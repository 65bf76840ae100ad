// MLflow's REST API over real HTTP on a loopback port, with requests shaped as the
// MLflow Python client sends them: experiments, runs, metrics, params, tags, search,
// history, artifacts and errors; and a run logged with the Experiment API read back.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { serve } from "../server.ts";
import type { DashServer, ServeOptions } from "../server.ts";
import { type ClickHouseServer, clickHouseSkipReason, startClickHouse, TEST_CLUSTER, TEST_USER } from "../testing/clickhouse.ts";
import { ClickHouseStore } from "./clickhouse_store.ts";
import { longerTimeoutsOnBun } from "../testing/run_script.ts";
import { Experiment } from "../mod.ts";

const API = "/api/2.0/mlflow";
const ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts";

// Answers are checked field by field: a loose type keeps the assertions short.
// deno-lint-ignore no-explicit-any
type Json = Record<string, any>;

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "ml-dash-mlflow-"));
}

/** The store the servers of the cases below run on: the JSONL store in `root`, or a database of ClickHouse named after it. */
let storeOf: (root: string) => Partial<ServeOptions> | Promise<Partial<ServeOptions>> = () => ({});
/** Whether the store keeps the `.dash` layout in `root`, where some cases also look. */
let onDisk = true;

async function withServer(root: string, work: (server: DashServer) => Promise<void>, options: { token?: string; readToken?: string } = {}): Promise<void> {
  const server = await serve({ root, port: 0, quiet: true, ...(await storeOf(root)), ...options });
  try {
    await work(server);
  } finally {
    await server.close();
  }
}

async function call(server: DashServer, method: "GET" | "POST", endpoint: string, body: Json = {}, headers: Record<string, string> = {}): Promise<{ status: number; body: Json }> {
  let url = `${server.url}${API}/${endpoint}`;
  const init: RequestInit = { method, headers: { ...headers } };
  if (method === "GET") {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(body)) for (const item of Array.isArray(v) ? v : [v]) query.append(k, String(item));
    url += `?${query}`;
  } else {
    init.headers = { "content-type": "application/json", ...headers };
    init.body = JSON.stringify(body);
  }
  const res = await fetch(url, init);
  return { status: res.status, body: await res.json() };
}

async function ok(server: DashServer, method: "GET" | "POST", endpoint: string, body: Json = {}): Promise<Json> {
  const answer = await call(server, method, endpoint, body);
  assert.equal(answer.status, 200, `${endpoint}: ${JSON.stringify(answer.body)}`);
  return answer.body;
}

async function createRun(server: DashServer, experimentId: string, runName: string, startTime = 1_700_000_000_123): Promise<Json> {
  const { run } = await ok(server, "POST", "runs/create", {
    experiment_id: experimentId,
    user_id: "alice",
    start_time: startTime,
    run_name: runName,
    tags: [
      { key: "mlflow.user", value: "alice" },
      { key: "mlflow.source.name", value: "train.py" },
      { key: "mlflow.source.type", value: "LOCAL" },
      { key: "mlflow.runName", value: runName },
    ],
  });
  return run;
}

async function history(server: DashServer, runId: string, key: string): Promise<Json[]> {
  return (await ok(server, "GET", "metrics/get-history", { run_id: runId, run_uuid: runId, metric_key: key })).metrics;
}

function tagsOf(run: Json): Map<string, string> {
  return new Map((run.data.tags as Json[]).map((t) => [t.key, t.value]));
}

/** The cases, run on each store. */
function cases(): void {
  it("experiments: an unknown name is 404 RESOURCE_DOES_NOT_EXIST, create makes it, get, get-by-name and search find it, also after a restart", async () => {
    const root = tempDir();
    let id = "";
    await withServer(root, async (server) => {
      const unknown = await call(server, "GET", "experiments/get-by-name", { experiment_name: "mnist" });
      assert.equal(unknown.status, 404);
      assert.equal(unknown.body.error_code, "RESOURCE_DOES_NOT_EXIST");
      assert.match(unknown.body.message, /mnist/);
      id = (await ok(server, "POST", "experiments/create", { name: "mnist", tags: [{ key: "team", value: "vision" }] })).experiment_id;
      assert.match(id, /^[1-9]\d*$/);
      const again = await call(server, "POST", "experiments/create", { name: "mnist" });
      assert.equal(again.status, 400);
      assert.equal(again.body.error_code, "RESOURCE_ALREADY_EXISTS");
      const byName = (await ok(server, "GET", "experiments/get-by-name", { experiment_name: "mnist" })).experiment;
      assert.deepEqual(byName, {
        experiment_id: id,
        name: "mnist",
        artifact_location: `mlflow-artifacts:/${id}`,
        lifecycle_stage: "active",
        creation_time: byName.creation_time,
        last_update_time: byName.creation_time,
        tags: [{ key: "team", value: "vision" }],
      });
      assert.ok(byName.creation_time > 1_600_000_000_000);
      assert.equal((await ok(server, "GET", "experiments/get", { experiment_id: "0" })).experiment.name, "Default");
      assert.equal((await ok(server, "GET", "experiments/get-by-name", { experiment_name: "Default" })).experiment.experiment_id, "0");
    });
    await withServer(root, async (server) => {
      assert.equal((await ok(server, "GET", "experiments/get", { experiment_id: id })).experiment.name, "mnist");
      const all = await ok(server, "POST", "experiments/search", { max_results: 10, view_type: "ACTIVE_ONLY" });
      assert.deepEqual(all.experiments.map((e: Json) => e.name).sort(), ["Default", "mnist"]);
      const filtered = await ok(server, "POST", "experiments/search", { filter: "name LIKE 'mn%'" });
      assert.deepEqual(filtered.experiments.map((e: Json) => e.experiment_id), [id]);
      const tagged = await ok(server, "POST", "experiments/search", { filter: "tags.team = 'vision'" });
      assert.deepEqual(tagged.experiments.map((e: Json) => e.name), ["mnist"]);
      const paged = await ok(server, "POST", "experiments/search", { max_results: 1, order_by: ["name ASC"] });
      assert.deepEqual(paged.experiments.map((e: Json) => e.name), ["Default"]);
      const rest = await ok(server, "POST", "experiments/search", { max_results: 1, order_by: ["name ASC"], page_token: paged.next_page_token });
      assert.deepEqual(rest.experiments.map((e: Json) => e.name), ["mnist"]);
      assert.equal(rest.next_page_token, undefined);
      const missing = await call(server, "GET", "experiments/get", { experiment_id: "12345" });
      assert.equal(missing.status, 404);
      assert.equal(missing.body.error_code, "RESOURCE_DOES_NOT_EXIST");
    });
  });

  it("experiment names the prefix rules refuse are encoded, not refused, and runs land in the folder of the name", async () => {
    const root = tempDir();
    await withServer(root, async (server) => {
      for (const name of ["/Users/alice/exp", "../up", "a/.hidden", "~tilde", "_mlflow"]) {
        const id = (await ok(server, "POST", "experiments/create", { name })).experiment_id;
        assert.equal((await ok(server, "GET", "experiments/get-by-name", { experiment_name: name })).experiment.experiment_id, id, name);
        assert.equal((await ok(server, "GET", "experiments/get", { experiment_id: id })).experiment.name, name);
        const run = await createRun(server, id, "r");
        assert.equal((await ok(server, "GET", "runs/get", { run_id: run.info.run_id })).run.info.experiment_id, id);
      }
      const plain = (await ok(server, "POST", "experiments/create", { name: "team/vision" })).experiment_id;
      await createRun(server, plain, "baseline");
      if (onDisk) {
        assert.ok(fs.existsSync(path.join(root, "team", "vision", "baseline", "experiment.json")), "a name that is a valid path is the folder itself");
        assert.ok(!fs.existsSync(path.join(root, "Users")), "a leading / never becomes an absolute or top-level path");
        assert.ok(fs.existsSync(path.join(root, "~%2FUsers%2Falice%2Fexp", "r", "experiment.json")));
      }
    });
  });

  it("runs: create, log-batch, log-metric, log-parameter, set-tag, update and get keep times, status, params, tags and the note", async () => {
    const root = tempDir();
    await withServer(root, async (server) => {
      const experimentId = (await ok(server, "POST", "experiments/create", { name: "cifar" })).experiment_id;
      const run = await createRun(server, experimentId, "baseline");
      const runId = run.info.run_id;
      assert.match(runId, /^[0-9a-f]{32}$/);
      assert.deepEqual(run.info, {
        run_id: runId,
        run_uuid: runId,
        run_name: "baseline",
        experiment_id: experimentId,
        user_id: "alice",
        status: "RUNNING",
        start_time: 1_700_000_000_123,
        artifact_uri: `mlflow-artifacts:/${experimentId}/${runId}/artifacts`,
        lifecycle_stage: "active",
      });
      assert.deepEqual(await ok(server, "POST", "runs/log-batch", {
        run_id: runId,
        metrics: [
          { key: "train/loss", value: 0.5, timestamp: 1_700_000_001_001, step: 0 },
          { key: "train/acc", value: 0.1, timestamp: 1_700_000_001_001, step: 0 },
          { key: "train/loss", value: 0.25, timestamp: 1_700_000_002_002, step: 1 },
          { key: "lr", value: 0.01, timestamp: 1_700_000_001_001, step: 0 },
        ],
        params: [{ key: "lr", value: "0.01" }, { key: "model", value: "resnet50" }],
        tags: [{ key: "team", value: "vision" }],
      }), {});
      await ok(server, "POST", "runs/log-metric", { run_id: runId, run_uuid: runId, key: "train/loss", value: 0.125, timestamp: 1_700_000_003_003, step: 2 });
      await ok(server, "POST", "runs/log-parameter", { run_id: runId, run_uuid: runId, key: "epochs", value: "10" });
      await ok(server, "POST", "runs/set-tag", { run_id: runId, run_uuid: runId, key: "mlflow.note.content", value: "# Baseline\nresnet50" });
      await ok(server, "POST", "runs/set-tag", { run_id: runId, run_uuid: runId, key: "team", value: "nlp" });
      const updated = await ok(server, "POST", "runs/update", { run_id: runId, run_uuid: runId, status: "FINISHED", end_time: 1_700_000_009_999 });
      assert.equal(updated.run_info.status, "FINISHED");
      assert.equal(updated.run_info.end_time, 1_700_000_009_999);

      const got = (await ok(server, "GET", "runs/get", { run_id: runId })).run;
      assert.equal(got.info.start_time, 1_700_000_000_123);
      assert.equal(got.info.end_time, 1_700_000_009_999);
      const metrics = new Map((got.data.metrics as Json[]).map((m) => [m.key, m]));
      assert.deepEqual(metrics.get("train/loss"), { key: "train/loss", value: 0.125, timestamp: 1_700_000_003_003, step: 2 });
      assert.deepEqual(metrics.get("train/acc"), { key: "train/acc", value: 0.1, timestamp: 1_700_000_001_001, step: 0 });
      assert.deepEqual(metrics.get("lr"), { key: "lr", value: 0.01, timestamp: 1_700_000_001_001, step: 0 });
      assert.deepEqual(new Map((got.data.params as Json[]).map((p) => [p.key, p.value])), new Map([["lr", "0.01"], ["model", "resnet50"], ["epochs", "10"]]));
      const tags = tagsOf(got);
      assert.equal(tags.get("team"), "nlp");
      assert.equal(tags.get("mlflow.runName"), "baseline");
      assert.equal(tags.get("mlflow.user"), "alice");
      assert.equal(tags.get("mlflow.note.content"), "# Baseline\nresnet50");

      // Our layout: metric train with fields loss and acc, the default metric with lr, COMPLETED, the note as readme.
      if (onDisk) {
        const dir = path.join(root, "cifar", "baseline");
        const train = fs.readFileSync(path.join(dir, "metrics", "train.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
        assert.deepEqual(train[0], { _ts: 1_700_000_001.001, step: 0, loss: 0.5, acc: 0.1 });
        assert.equal(JSON.parse(fs.readFileSync(path.join(dir, "status.json"), "utf8")).status, "COMPLETED");
        assert.equal(JSON.parse(fs.readFileSync(path.join(dir, "experiment.json"), "utf8")).readme, "# Baseline\nresnet50");
      }
    });
  });

  it("statuses map both ways: FINISHED COMPLETED, KILLED CANCELLED, FAILED FAILED; an unknown status is 400", async () => {
    const root = tempDir();
    await withServer(root, async (server) => {
      for (const [mlflow, ours] of [["FINISHED", "COMPLETED"], ["KILLED", "CANCELLED"], ["FAILED", "FAILED"], ["RUNNING", "RUNNING"]]) {
        const run = await createRun(server, "0", `status-${mlflow}`);
        const info = (await ok(server, "POST", "runs/update", { run_id: run.info.run_id, status: mlflow, end_time: 1_700_000_000_500 })).run_info;
        assert.equal(info.status, mlflow);
        if (onDisk) {
          const stored = JSON.parse(fs.readFileSync(path.join(root, "Default", `status-${mlflow}`, "status.json"), "utf8"));
          assert.equal(stored.status, ours);
        }
      }
      const run = await createRun(server, "0", "bad-status");
      const bad = await call(server, "POST", "runs/update", { run_id: run.info.run_id, status: "DONE" });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error_code, "INVALID_PARAMETER_VALUE");
      assert.match(bad.body.message, /Invalid status "DONE": expected RUNNING, SCHEDULED, FINISHED, FAILED or KILLED/);
    });
  });

  it("params cannot change: the same value again is accepted, another is 400 INVALID_PARAMETER_VALUE and nothing of its batch is stored", async () => {
    const root = tempDir();
    await withServer(root, async (server) => {
      const runId = (await createRun(server, "0", "p")).info.run_id;
      await ok(server, "POST", "runs/log-parameter", { run_id: runId, key: "lr", value: "0.1" });
      await ok(server, "POST", "runs/log-parameter", { run_id: runId, key: "lr", value: "0.1" });
      const changed = await call(server, "POST", "runs/log-batch", {
        run_id: runId,
        params: [{ key: "lr", value: "0.2" }],
        metrics: [{ key: "loss", value: 1, timestamp: 1, step: 0 }],
      });
      assert.equal(changed.status, 400);
      assert.equal(changed.body.error_code, "INVALID_PARAMETER_VALUE");
      assert.match(changed.body.message, /key='lr' was already logged with value='0\.1'.*new value '0\.2'/);
      const inOneBatch = await call(server, "POST", "runs/log-batch", { run_id: runId, params: [{ key: "x", value: "1" }, { key: "x", value: "2" }] });
      assert.equal(inOneBatch.status, 400);
      const run = (await ok(server, "GET", "runs/get", { run_id: runId })).run;
      assert.deepEqual(run.data.params, [{ key: "lr", value: "0.1" }]);
      assert.deepEqual(run.data.metrics, []);
    });
  });

  it("a retried log-batch stores each point once, also after a restart; distinct points at the same step are all kept", async () => {
    const root = tempDir();
    const batch = (runId: string): Json => ({
      run_id: runId,
      metrics: [
        { key: "loss", value: 1, timestamp: 1_700_000_000_000, step: 0 },
        { key: "loss", value: 0.5, timestamp: 1_700_000_000_100, step: 1 },
        { key: "loss", value: 0.5, timestamp: 1_700_000_000_100, step: 1 },
      ],
    });
    let runId = "";
    await withServer(root, async (server) => {
      runId = (await createRun(server, "0", "retry")).info.run_id;
      await ok(server, "POST", "runs/log-batch", batch(runId));
      await ok(server, "POST", "runs/log-batch", batch(runId));
      assert.equal((await history(server, runId, "loss")).length, 2);
    });
    await withServer(root, async (server) => {
      await ok(server, "POST", "runs/log-batch", batch(runId));
      await ok(server, "POST", "runs/log-metric", { run_id: runId, key: "loss", value: 0.7, timestamp: 1_700_000_000_100, step: 1 });
      const points = await history(server, runId, "loss");
      assert.deepEqual(points.map((p) => p.value), [1, 0.5, 0.7]);
    });
  });

  it("latest is the value at the highest step, then the latest timestamp; NaN and ±Infinity round-trip", async () => {
    const root = tempDir();
    await withServer(root, async (server) => {
      const runId = (await createRun(server, "0", "latest")).info.run_id;
      await ok(server, "POST", "runs/log-batch", {
        run_id: runId,
        metrics: [
          { key: "acc", value: 0.9, timestamp: 5000, step: 5 },
          { key: "acc", value: 0.7, timestamp: 9000, step: 3 },
          { key: "acc", value: 0.8, timestamp: 6000, step: 5 },
          { key: "acc", value: 0.6, timestamp: 4000, step: 5 },
          { key: "bad", value: "NaN", timestamp: 1, step: 0 },
          { key: "big", value: "Infinity", timestamp: 1, step: 0 },
          { key: "big", value: "-Infinity", timestamp: 2, step: 1 },
        ],
      });
      const run = (await ok(server, "GET", "runs/get", { run_id: runId })).run;
      const metrics = new Map((run.data.metrics as Json[]).map((m) => [m.key, m]));
      assert.deepEqual(metrics.get("acc"), { key: "acc", value: 0.8, timestamp: 6000, step: 5 });
      assert.equal(metrics.get("bad")!.value, "NaN");
      assert.equal(metrics.get("big")!.value, "-Infinity");
      assert.deepEqual((await history(server, runId, "big")).map((p) => p.value), ["Infinity", "-Infinity"]);
    });
  });

  it("metric keys that collide with reserved names are escaped, stored apart and read back as sent", async () => {
    const root = tempDir();
    await withServer(root, async (server) => {
      const runId = (await createRun(server, "0", "keys")).info.run_id;
      const keys = ["step", "_ts", "default/x", "x", ".hidden/y", "~tilde", "a/step", "a/b/c", "/lead", "__proto__", "train/__proto__"];
      await ok(server, "POST", "runs/log-batch", {
        run_id: runId,
        metrics: keys.map((key, i) => ({ key, value: i + 0.5, timestamp: 1_700_000_000_000, step: 7 })),
      });
      for (const [i, key] of keys.entries()) {
        assert.deepEqual(await history(server, runId, key), [{ key, value: i + 0.5, timestamp: 1_700_000_000_000, step: 7 }], key);
      }
      const run = (await ok(server, "GET", "runs/get", { run_id: runId })).run;
      assert.deepEqual((run.data.metrics as Json[]).map((m) => m.key).sort(), [...keys].sort());
      if (onDisk) {
        const records = fs.readFileSync(path.join(root, "Default", "keys", "metrics", "default.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
        for (const record of records) assert.equal(record.step, 7, "the step field is never overwritten");
      }
    });
  });

  it("metrics/get-history pages with max_results and page_token", async () => {
    const root = tempDir();
    await withServer(root, async (server) => {
      const runId = (await createRun(server, "0", "pages")).info.run_id;
      const metrics = Array.from({ length: 25 }, (_, step) => ({ key: "train/loss", value: 1 / (step + 1), timestamp: 1_700_000_000_000 + step, step }));
      await ok(server, "POST", "runs/log-batch", { run_id: runId, metrics });
      const seen: Json[] = [];
      let token: string | undefined;
      let pages = 0;
      do {
        const body: Json = { run_id: runId, metric_key: "train/loss", max_results: 10 };
        if (token) body.page_token = token;
        const page = await ok(server, "GET", "metrics/get-history", body);
        seen.push(...page.metrics);
        token = page.next_page_token;
        pages++;
      } while (token);
      assert.equal(pages, 3);
      assert.deepEqual(seen, metrics);
      assert.deepEqual(await history(server, runId, "missing/key"), []);
    });
  });

  it("runs/search filters, orders and pages runs of the experiments asked for", async () => {
    const root = tempDir();
    await withServer(root, async (server) => {
      const experimentId = (await ok(server, "POST", "experiments/create", { name: "sweep" })).experiment_id;
      const other = (await ok(server, "POST", "experiments/create", { name: "other" })).experiment_id;
      await createRun(server, other, "elsewhere");
      for (const [i, lr] of ["0.1", "0.01", "0.001"].entries()) {
        const runId = (await createRun(server, experimentId, `lr-${lr}`, 1_700_000_000_000 + i)).info.run_id;
        await ok(server, "POST", "runs/log-batch", {
          run_id: runId,
          metrics: [{ key: "eval/acc", value: 0.5 + i / 10, timestamp: 1, step: 0 }],
          params: [{ key: "lr", value: lr }],
          tags: [{ key: "group", value: i === 0 ? "a" : "b" }],
        });
      }
      const search = (body: Json): Promise<Json> => ok(server, "POST", "runs/search", { experiment_ids: [experimentId], run_view_type: "ACTIVE_ONLY", ...body });
      const names = (page: Json): string[] => (page.runs ?? []).map((r: Json) => r.info.run_name);
      assert.deepEqual(names(await search({})), ["lr-0.001", "lr-0.01", "lr-0.1"], "newest first by default");
      assert.deepEqual(names(await search({ filter: "metrics.`eval/acc` > 0.55" })).sort(), ["lr-0.001", "lr-0.01"]);
      assert.deepEqual(names(await search({ filter: "params.lr = '0.01' AND tags.group = 'b'" })), ["lr-0.01"]);
      assert.deepEqual(names(await search({ filter: "attributes.run_name LIKE 'lr-0.0%' AND attributes.status = 'RUNNING'", order_by: ["metrics.`eval/acc` ASC"] })), ["lr-0.01", "lr-0.001"]);
      assert.deepEqual(names(await search({ filter: "tags.mlflow.runName IN ('lr-0.1')" })), ["lr-0.1"]);
      const first = await search({ max_results: 2, order_by: ["params.lr ASC"] });
      assert.deepEqual(names(first), ["lr-0.001", "lr-0.01"]);
      const second = await search({ max_results: 2, order_by: ["params.lr ASC"], page_token: first.next_page_token });
      assert.deepEqual(names(second), ["lr-0.1"]);
      assert.equal(second.next_page_token, undefined);
      assert.deepEqual(names(await ok(server, "POST", "runs/search", { experiment_ids: [experimentId, other] })).length, 4);
      const bad = await call(server, "POST", "runs/search", { experiment_ids: [experimentId], filter: "metrics.acc >> 1" });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error_code, "INVALID_PARAMETER_VALUE");
      assert.match(bad.body.message, /Invalid filter/);
    });
  });

  it("a run logged with the Experiment API reads back through experiments/search, runs/search, runs/get and metrics/get-history", async () => {
    const root = tempDir();
    await withServer(root, async (server) => {
      await new Experiment({ prefix: "alice/vision/resnet-1", dashUrl: server.url, readme: "from TypeScript" }).run((exp) => {
        exp.params.set({ lr: 0.001, model: { depth: 50 } });
        for (let step = 0; step < 5; step++) exp.metrics("train").log({ step, loss: 1 / (step + 1) });
      });
      const found = await ok(server, "POST", "experiments/search", { filter: "name = 'alice/vision'" });
      assert.equal(found.experiments.length, 1);
      const experimentId = found.experiments[0].experiment_id;
      assert.equal((await ok(server, "GET", "experiments/get-by-name", { experiment_name: "alice/vision" })).experiment.experiment_id, experimentId);
      const { runs } = await ok(server, "POST", "runs/search", { experiment_ids: [experimentId], filter: "params.`model.depth` = '50' AND metrics.`train/loss` < 0.3" });
      assert.equal(runs.length, 1);
      const run = runs[0];
      assert.equal(run.info.run_name, "resnet-1");
      assert.equal(run.info.status, "FINISHED");
      assert.ok(run.info.end_time >= run.info.start_time);
      assert.equal(tagsOf(run).get("mlflow.note.content"), "from TypeScript");
      assert.deepEqual(new Map((run.data.params as Json[]).map((p) => [p.key, p.value])), new Map([["lr", "0.001"], ["model.depth", "50"]]));
      const points = await history(server, run.info.run_id, "train/loss");
      assert.deepEqual(points.map((p) => [p.step, p.value]), [[0, 1], [1, 0.5], [2, 1 / 3], [3, 0.25], [4, 0.2]]);
      assert.ok(points.every((p) => Number.isInteger(p.timestamp) && p.timestamp > 1_600_000_000_000));
      assert.equal((await ok(server, "GET", "runs/get", { run_id: run.info.run_id })).run.info.run_id, run.info.run_id);
    });
  });

  it("artifacts: PUT raw bytes, GET them back, list folders and files; dot-files are kept; a missing one is 404", async () => {
    const root = tempDir();
    await withServer(root, async (server) => {
      const run = await createRun(server, "0", "art");
      const base = `${server.url}${ARTIFACTS}/0/${run.info.run_id}/artifacts`;
      const bytes = new Uint8Array(300_000).map((_, i) => (i * 7) & 255);
      for (const [name, body, type] of [["model/weights.bin", bytes, "application/octet-stream"], ["model/MLmodel", "flavors: {}\n", "text/plain"], ["notes.txt", "hi", "text/plain"], [".hydra/config.yaml", "a: 1\n", ""]] as const) {
        const res = await fetch(`${base}/${name}`, { method: "PUT", body, headers: type ? { "content-type": type } : {} });
        assert.equal(res.status, 200, name);
        assert.deepEqual(await res.json(), {});
      }
      const back = await fetch(`${base}/model/weights.bin`);
      assert.equal(back.status, 200);
      assert.deepEqual(new Uint8Array(await back.arrayBuffer()), bytes);
      assert.equal(await (await fetch(`${base}/.hydra/config.yaml`)).text(), "a: 1\n");
      const list = async (sub: string): Promise<Json> => (await fetch(`${server.url}${ARTIFACTS}?path=${encodeURIComponent(`0/${run.info.run_id}/artifacts${sub}`)}`)).json();
      assert.deepEqual(await list(""), { files: [{ path: ".hydra", is_dir: true }, { path: "model", is_dir: true }, { path: "notes.txt", is_dir: false, file_size: 2 }] });
      assert.deepEqual(await list("/model"), { files: [{ path: "MLmodel", is_dir: false, file_size: 12 }, { path: "weights.bin", is_dir: false, file_size: 300_000 }] });
      const missingFile = await fetch(`${base}/nothing.txt`);
      assert.equal(missingFile.status, 404);
      assert.equal((await missingFile.json()).error_code, "RESOURCE_DOES_NOT_EXIST");
      const wrongExperiment = await fetch(`${server.url}${ARTIFACTS}/42/${run.info.run_id}/artifacts/notes.txt`);
      assert.equal(wrongExperiment.status, 404);
      const escape = await fetch(`${base}/a%2F..%2F..%2Fescape.txt`, { method: "PUT", body: "x" });
      assert.equal(escape.status, 400);
    });
  });

  it("a token arrives as Bearer: writes without it are 401, with it they pass; PUT is a write", async () => {
    const root = tempDir();
    await withServer(root, async (server) => {
      const denied = await call(server, "POST", "experiments/create", { name: "x" });
      assert.equal(denied.status, 401);
      const auth = { authorization: "Bearer s3cret" };
      const created = await call(server, "POST", "experiments/create", { name: "x" }, auth);
      assert.equal(created.status, 200);
      const run = await call(server, "POST", "runs/create", { experiment_id: created.body.experiment_id }, auth);
      const url = `${server.url}${ARTIFACTS}/${created.body.experiment_id}/${run.body.run.info.run_id}/artifacts/a.txt`;
      assert.equal((await fetch(url, { method: "PUT", body: "x" })).status, 401);
      assert.equal((await fetch(url, { method: "PUT", body: "x", headers: auth })).status, 200);
    }, { token: "s3cret" });
  });

  it("with a read token, the searches the client POSTs need only it; writes still need the write token", async () => {
    const root = tempDir();
    await withServer(root, async (server) => {
      const write = { authorization: "Bearer w" };
      const read = { authorization: "Bearer r" };
      const created = await call(server, "POST", "experiments/create", { name: "tokens" }, write);
      assert.equal(created.status, 200);
      assert.equal((await call(server, "POST", "experiments/search", { max_results: 10 }, read)).status, 200);
      assert.equal((await call(server, "POST", "runs/search", { experiment_ids: [created.body.experiment_id] }, read)).status, 200);
      assert.equal((await call(server, "POST", "experiments/create", { name: "other" }, read)).status, 401);
    }, { token: "w", readToken: "r" });
  });

  it("an artifact saved as text/html is served sandboxed, as a download, never as a page of the server's origin", async () => {
    const root = tempDir();
    await withServer(root, async (server) => {
      const experimentId = (await ok(server, "POST", "experiments/create", { name: "xss" })).experiment_id;
      const runId = (await createRun(server, experimentId, "r")).info.run_id;
      const url = `${server.url}${ARTIFACTS}/${experimentId}/${runId}/artifacts/page.html`;
      assert.equal((await fetch(url, { method: "PUT", body: "<script>alert(1)</script>", headers: { "content-type": "text/html" } })).status, 200);
      const res = await fetch(url);
      assert.equal(await res.text(), "<script>alert(1)</script>");
      assert.equal(res.headers.get("content-security-policy"), "sandbox");
      assert.equal(res.headers.get("x-content-type-options"), "nosniff");
      assert.match(res.headers.get("content-disposition") ?? "", /^attachment/);
    });
  });

  it("malformed requests are 4xx with MLflow's error_code and a message, never 5xx", async () => {
    const root = tempDir();
    await withServer(root, async (server) => {
      const runId = (await createRun(server, "0", "bad")).info.run_id;
      const raw = async (endpoint: string, body: string): Promise<{ status: number; body: Json }> => {
        const res = await fetch(`${server.url}${API}/${endpoint}`, { method: "POST", headers: { "content-type": "application/json" }, body });
        return { status: res.status, body: await res.json() };
      };
      const cases: [string, string][] = [
        ["runs/log-batch", "{not json"],
        ["runs/log-batch", "[1,2]"],
        ["runs/log-batch", JSON.stringify({ run_id: runId, metrics: "x" })],
        ["runs/log-batch", JSON.stringify({ run_id: runId, metrics: [{ key: "", value: 1, timestamp: 1, step: 0 }] })],
        ["runs/log-batch", JSON.stringify({ run_id: runId, metrics: [{ key: "a", value: "high", timestamp: 1, step: 0 }] })],
        ["runs/log-batch", JSON.stringify({ run_id: runId, metrics: [{ key: "a", value: 1, timestamp: 1.5, step: 0 }] })],
        ["runs/log-batch", JSON.stringify({ run_id: runId, metrics: [{ key: `${"m".repeat(300)}/x`, value: 1, timestamp: 1, step: 0 }] })],
        ["runs/log-batch", JSON.stringify({ run_id: runId, params: [{ key: "a", value: { nested: 1 } }] })],
        ["runs/log-batch", JSON.stringify({ run_id: runId, tags: [null] })],
        ["runs/log-batch", JSON.stringify({ metrics: [] })],
        ["runs/log-metric", JSON.stringify({ run_id: "f".repeat(32), key: "a", value: 1, timestamp: 1 })],
        ["runs/log-metric", JSON.stringify({ run_id: "../etc", key: "a", value: 1, timestamp: 1 })],
        ["runs/create", JSON.stringify({ experiment_id: "not-a-number" })],
        ["runs/create", JSON.stringify({ experiment_id: "999" })],
        ["runs/create", JSON.stringify({ experiment_id: "0", tags: [{ key: "mlflow.runName", value: "x".repeat(400) }] })],
        ["runs/create", JSON.stringify({ experiment_id: "0", start_time: "yesterday" })],
        ["experiments/create", JSON.stringify({ name: "" })],
        ["experiments/create", JSON.stringify({ name: ["x"] })],
        ["experiments/create", JSON.stringify({ name: "y".repeat(400) })],
        ["experiments/search", JSON.stringify({ max_results: 0 })],
        ["experiments/search", JSON.stringify({ page_token: "garbage" })],
        ["runs/search", JSON.stringify({ experiment_ids: "0" })],
        ["runs/search", JSON.stringify({ experiment_ids: ["0"], order_by: ["metrics.loss UP"] })],
        ["metrics/get-history", JSON.stringify({ run_id: runId })],
        ["runs/update", JSON.stringify({ run_id: runId, end_time: "later" })],
      ];
      for (const [endpoint, body] of cases) {
        const answer = await raw(endpoint, body);
        assert.ok(answer.status >= 400 && answer.status < 500, `${endpoint} ${body.slice(0, 80)} → ${answer.status} ${JSON.stringify(answer.body)}`);
        assert.equal(typeof answer.body.error_code, "string", endpoint);
        assert.ok(answer.body.message.length > 10, endpoint);
      }
      const unknown = await call(server, "POST", "model-versions/create", {});
      assert.deepEqual([unknown.status, unknown.body.error_code], [404, "ENDPOINT_NOT_FOUND"]);
      const wrongMethod = await call(server, "GET", "runs/log-batch", { run_id: runId });
      assert.equal(wrongMethod.status, 405);
      assert.deepEqual(await ok(server, "POST", "logged-models/search", { experiment_ids: ["0"] }), { models: [] });
    });
  });
}

await longerTimeoutsOnBun();

describe("MLflow API on the JSONL store", () => {
  cases();
});

describe("MLflow API on the ClickHouse store", { skip: clickHouseSkipReason() }, () => {
  let servers: ClickHouseServer[] = [];
  before(async () => {
    servers = await startClickHouse();
    const base = servers[0].url.replace("http://", `http://${TEST_USER.name}:${TEST_USER.password}@`);
    // One database a case: the root's unique name, the same again when a case restarts its server.
    storeOf = (root) => ({ clickhouse: `${base}/mlflow_${path.basename(root).replace(/[^A-Za-z0-9]/g, "_")}` });
    onDisk = false;
  });
  after(async () => {
    storeOf = () => ({});
    onDisk = true;
    await Promise.all(servers.map((s) => s.stop()));
  });
  cases();
});

describe("MLflow API on a ClickHouse cluster of two shards", { skip: clickHouseSkipReason() }, () => {
  let shards: ClickHouseServer[] = [];
  before(async () => {
    shards = await startClickHouse({ count: 2 });
    storeOf = async (root) => {
      const name = `mlflow_${path.basename(root).replace(/[^A-Za-z0-9]/g, "_")}`;
      // Each shard but the first gets its local tables through itself (see the README's cluster section).
      await (await ClickHouseStore.connect(`${shards[1].url}/${name}`)).close();
      return { clickhouse: `${shards[0].url}/${name}?cluster=${TEST_CLUSTER}` };
    };
    onDisk = false;
  });
  after(async () => {
    storeOf = () => ({});
    onDisk = true;
    await Promise.all(shards.map((s) => s.stop()));
  });
  cases();
});
