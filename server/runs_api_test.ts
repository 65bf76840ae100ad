// GET /api/v1/runs through the real handler over a JSONL store in a temp dir:
// rows with status, times, tags, params and each key's last / min / max, the
// folder, the filter language, pages, users' names that are Object.prototype's,
// and a 400 with a message; POST /api/v1/meta's token, guard, body checks and
// ingest session.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createHandler, type DashHandler } from "./handler.ts";
import { JsonlStore } from "./jsonl_store.ts";
import { editRun, EditSession } from "./runs_api.ts";

const line = (record: Record<string, unknown>): string => JSON.stringify(record);

describe("GET /api/v1/runs", () => {
  let root: string;
  let handler: DashHandler;

  before(async () => {
    root = mkdtempSync(join(tmpdir(), "ml-dash-runs-api-"));
    const store = new JsonlStore(root);
    handler = createHandler({ store });
    const runs: [string, number, string, number[]][] = [
      ["alice/sweep/lr-0.1", 0.1, "FAILED", [0.5, 0.2, 0.4]],
      ["alice/sweep/lr-0.001", 0.001, "COMPLETED", [0.3, 0.95, 0.93]],
      ["alice/sweepy/other", 0.001, "COMPLETED", [0.99]],
    ];
    for (const [prefix, lr, status, accs] of runs) {
      await store.ingest({ prefix, session: "s", seq: 0 }, {
        metadata: { prefix, tags: ["team=vision", "sweep"], readme: `run ${prefix}`, metadata: { gpu: "a100" } },
        status: { status: status as "FAILED", startedAt: 100, endedAt: 160, heartbeatAt: 160 },
        params: { lr, "model.depth": 4 },
        metrics: { val: accs.map((acc, step) => line({ _ts: 100 + step, step, acc })) },
      });
    }
  });

  after(async () => {
    await handler?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const get = async (query: string): Promise<{ status: number; body: Record<string, any> }> => {
    const res = await handler(new Request(`http://localhost/api/v1/runs${query}`));
    return { status: res.status, body: await res.json() };
  };

  it("answers a row per run of the folder with status, times, tags, params and each key's last, min and max", async () => {
    const { status, body } = await get("?prefix=alice/sweep");
    assert.equal(status, 200);
    assert.deepEqual(body.runs.map((r: { prefix: string }) => r.prefix), ["alice/sweep/lr-0.001", "alice/sweep/lr-0.1"]);
    const row = body.runs[1];
    assert.equal(row.name, "lr-0.1");
    assert.equal(row.status, "FAILED");
    assert.equal(row.startedAt, 100);
    assert.equal(row.endedAt, 160);
    assert.deepEqual(row.tags, ["team=vision", "sweep"]);
    assert.equal(row.readme, "run alice/sweep/lr-0.1");
    assert.deepEqual(row.metadata, { gpu: "a100" });
    assert.deepEqual(row.params, { lr: 0.1, "model.depth": 4 });
    assert.deepEqual(row.metrics["val/acc"], { last: 0.4, min: 0.2, max: 0.5, count: 3 });
    assert.equal(body.total, 2);
  });

  it("answers the runs of a top-level folder (one segment)", async () => {
    const { status, body } = await get("?prefix=alice");
    assert.equal(status, 200);
    assert.equal(body.runs.length, 3);
  });

  it("answers every run without a prefix", async () => {
    const { body } = await get("");
    assert.equal(body.runs.length, 3);
  });

  it("keeps the runs that match a filter in the MLflow language", async () => {
    const names = async (filter: string): Promise<string[]> =>
      (await get(`?filter=${encodeURIComponent(filter)}`)).body.runs.map((r: { name: string }) => r.name);
    assert.deepEqual(await names("metrics.val/acc > 0.9 and params.lr = '0.001'"), ["lr-0.001", "other"]);
    assert.deepEqual(await names("attributes.status = 'FAILED'"), ["lr-0.1"]);
    assert.deepEqual(await names("tags.team = 'vision' and tags.sweep = 'true' and attributes.name LIKE 'lr-%'"), ["lr-0.001", "lr-0.1"]);
    assert.deepEqual(await names("attributes.duration = 60 and params.model.depth = '4' and metrics.val/acc < 0.5"), ["lr-0.1"]);
  });

  it("answers 400 with the parser's message for a bad filter", async () => {
    const { status, body } = await get(`?filter=${encodeURIComponent("metrics.val/acc >")}`);
    assert.equal(status, 400);
    assert.match(body.error, /^Invalid filter "metrics\.val\/acc >": expected a number/);
    const unknown = await get(`?filter=${encodeURIComponent("attributes.color = 'red'")}`);
    assert.equal(unknown.status, 400);
    assert.match(unknown.body.error, /color/);
  });

  it("answers a page of the runs with limit and offset, the total and whether more follow", async () => {
    const first = await get("?limit=2");
    assert.equal(first.status, 200);
    assert.deepEqual(first.body.runs.map((r: { name: string }) => r.name), ["lr-0.001", "lr-0.1"]);
    assert.equal(first.body.total, 3);
    assert.equal(first.body.truncated, true);
    const rest = await get("?limit=2&offset=2");
    assert.deepEqual(rest.body.runs.map((r: { name: string }) => r.name), ["other"]);
    assert.equal(rest.body.truncated, false);
    const filtered = await get(`?limit=1&offset=1&filter=${encodeURIComponent("params.lr = '0.001'")}`);
    assert.deepEqual(filtered.body.runs.map((r: { name: string }) => r.name), ["other"]);
    assert.equal(filtered.body.total, 2);
    assert.equal(filtered.body.truncated, false);
    const all = await get("");
    assert.equal(all.body.truncated, false);
    assert.equal(all.body.offset, 0);
  });

  it("answers 400 with a message for a limit or offset that is not a whole number in range", async () => {
    for (const query of ["?limit=0", "?limit=10001", "?limit=-1", "?limit=abc", "?limit=1.5", "?offset=-1", "?offset=x", "?limit="]) {
      const { status, body } = await get(query);
      assert.equal(status, 400, query);
      assert.match(body.error, /^Invalid (limit|offset) ".*": expected a whole number from \d+ to \d+$/, query);
    }
  });

  it("answers 400 for a prefix the path rules refuse", async () => {
    const { status, body } = await get("?prefix=../x");
    assert.equal(status, 400);
    assert.match(body.error, /\.\./);
  });
});

describe("GET /api/v1/runs with users' names that are Object.prototype's", () => {
  let root: string;
  let handler: DashHandler;

  before(async () => {
    root = mkdtempSync(join(tmpdir(), "ml-dash-runs-proto-"));
    const store = new JsonlStore(root);
    handler = createHandler({ store });
    for (const [prefix, value] of [["bob/a", 1], ["bob/b", 0]] as const) {
      await store.ingest({ prefix, session: "s", seq: 0 }, {
        params: JSON.parse(`{"__proto__": ${value}, "constructor": "c${value}"}`),
        // The default metric's fields are keys of their own: "__proto__" and "constructor".
        metrics: { default: [`{"_ts":1,"step":0,"__proto__":${value},"constructor":${value + 10}}`] },
      });
    }
  });

  after(async () => {
    await handler?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  // Deno has no __proto__ accessor: with plain {} maps in place of null-prototype ones this fails on Bun and Node.
  it("keeps a param and a metric named __proto__ or constructor as data, and filters on them", async () => {
    const res = await handler(new Request("http://localhost/api/v1/runs"));
    assert.equal(res.status, 200);
    const text = await res.text();
    const row = JSON.parse(text).runs[0];
    assert.match(text, /"params":\{"__proto__":1,"constructor":"c1"\}/);
    assert.match(text, /"__proto__":\{"last":1,"min":1,"max":1,"count":1\}/);
    assert.deepEqual(row.metrics.constructor, { last: 11, min: 11, max: 11, count: 1 });
    const names = async (filter: string): Promise<string[]> => {
      const answer = await handler(new Request(`http://localhost/api/v1/runs?filter=${encodeURIComponent(filter)}`));
      assert.equal(answer.status, 200, filter);
      return (await answer.json()).runs.map((r: { name: string }) => r.name);
    };
    assert.deepEqual(await names("metrics.__proto__ > 0.5"), ["a"]);
    assert.deepEqual(await names("metrics.constructor < 10.5"), ["b"]);
    assert.deepEqual(await names("params.__proto__ = '0'"), ["b"]);
    assert.deepEqual(await names("params.constructor = 'c1'"), ["a"]);
  });
});

describe("POST /api/v1/meta", () => {
  let root: string;
  let handler: DashHandler;
  let store: JsonlStore;

  before(async () => {
    root = mkdtempSync(join(tmpdir(), "ml-dash-meta-api-"));
    store = new JsonlStore(root);
    handler = createHandler({ store, token: "s3cret" });
    await store.ingest({ prefix: "alice/a", session: "s", seq: 0 }, { metadata: { prefix: "alice/a", tags: ["old"], readme: "old", metadata: { gpu: "a100" } } });
  });

  after(async () => {
    await handler?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  /** The (session, seq) pairs a run's ledger log holds, in the order stored. */
  const storedBatches = (prefix: string): [string, number][] => {
    const log = join(root, prefix, ".sessions.jsonl");
    if (!existsSync(log)) return [];
    return readFileSync(log, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.stored).map((e) => e.stored);
  };

  const post = async (body: unknown, token?: string): Promise<{ status: number; body: Record<string, any> }> => {
    const headers: Record<string, string> = { "content-type": "application/json", host: "localhost" };
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await handler(new Request("http://localhost/api/v1/meta", { method: "POST", headers, body: typeof body === "string" ? body : JSON.stringify(body) }));
    return { status: res.status, body: await res.json() };
  };

  it("needs the write token when the server has one", async () => {
    assert.equal((await post({ prefix: "alice/a", readme: "x" })).status, 401);
    assert.equal((await post({ prefix: "alice/a", readme: "x" }, "wrong")).status, 401);
  });

  it("sets the description and tags through the store's ingest, keeping the rest of the record", async () => {
    const { status, body } = await post({ prefix: "alice/a", readme: "the best run", tags: ["keep", " best "] }, "s3cret");
    assert.equal(status, 200);
    assert.deepEqual(body, { ok: true, readme: "the best run", tags: ["keep", "best"] });
    const res = await handler(new Request("http://localhost/api/v1/experiment?prefix=alice/a", { headers: { authorization: "Bearer s3cret" } }));
    const view = await res.json();
    assert.equal(view.metadata.readme, "the best run");
    assert.deepEqual(view.metadata.tags, ["keep", "best"]);
    assert.deepEqual(view.metadata.metadata, { gpu: "a100" });
  });

  it("answers 403 to a foreign Origin and 415 to text/plain, before the token", async () => {
    const request = (headers: Record<string, string>): Promise<Response> =>
      handler(new Request("http://localhost/api/v1/meta", {
        method: "POST",
        headers: { host: "localhost", authorization: "Bearer s3cret", ...headers },
        body: JSON.stringify({ prefix: "alice/a", readme: "from elsewhere" }),
      }));
    const foreign = await request({ "content-type": "application/json", origin: "https://evil.example" });
    assert.equal(foreign.status, 403);
    assert.match((await foreign.json()).error, /origin/i);
    const plain = await request({ "content-type": "text/plain" });
    assert.equal(plain.status, 415);
    assert.match((await plain.json()).error, /application\/json/);
    const res = await handler(new Request("http://localhost/api/v1/experiment?prefix=alice/a", { headers: { authorization: "Bearer s3cret" } }));
    assert.notEqual((await res.json()).metadata.readme, "from elsewhere");
  });

  it("stores a process's edits under one session, a seq apiece, and a new process under another", async () => {
    await store.ingest({ prefix: "alice/edited", session: "s", seq: 0 }, { metadata: { prefix: "alice/edited" } });
    for (const readme of ["one", "two", "three"]) {
      const { status, body } = await post({ prefix: "alice/edited", readme }, "s3cret");
      assert.equal(status, 200);
      assert.equal(body.readme, readme, "no edit is taken for a retry of the one before");
    }
    const stored = storedBatches("alice/edited").filter(([session]) => session.startsWith("dashboard-edit-"));
    assert.deepEqual(stored.map(([, seq]) => seq), [0, 1, 2]);
    assert.equal(new Set(stored.map(([session]) => session)).size, 1);

    const restarted = new EditSession();
    assert.notEqual(restarted.id, stored[0][0]);
    const again = await editRun(store, new TextEncoder().encode(JSON.stringify({ prefix: "alice/edited", readme: "after a restart" })), restarted);
    assert.equal((await again.json()).readme, "after a restart");
  });

  it("answers 400 for a bad body and 404 for an unknown run", async () => {
    assert.equal((await post("not json", "s3cret")).status, 400);
    assert.equal((await post([1], "s3cret")).status, 400);
    assert.match((await post({ prefix: "alice/a", tags: [""] }, "s3cret")).body.error, /^Invalid tag ""/);
    assert.equal((await post({ prefix: "alice/a", readme: 5 }, "s3cret")).status, 400);
    assert.equal((await post({ prefix: "../x" }, "s3cret")).status, 400);
    const unknown = await post({ prefix: "alice/nope", readme: "x" }, "s3cret");
    assert.equal(unknown.status, 404);
    assert.match(unknown.body.error, /Unknown experiment "alice\/nope"/);
  });
});
