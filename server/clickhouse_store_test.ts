// The store conformance suite on the ClickHouse store, against a real
// clickhouse-server started for this file (each case in its own database);
// then what only a database shared by servers has: two stores over one
// database see each other's batches, once, and hear of each other's changes.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import * as net from "node:net";
import { after, before, describe, it } from "node:test";
import { type ClickHouseServer, clickHouseSkipReason, startClickHouse, TEST_CLUSTER, TEST_USER } from "../testing/clickhouse.ts";
import { spawnScript } from "../testing/run_script.ts";
import { serve } from "../server.ts";
import { ClickHouseStore, SCHEMA_VERSION } from "./clickhouse_store.ts";
import { storeConformance } from "./store_conformance.ts";
import type { Change } from "./store.ts";

const skip = clickHouseSkipReason();
if (skip) console.log(`# skipping the ClickHouse store tests: ${skip}`);
let server: ClickHouseServer | undefined;
/** Two more servers, one shard each of the cluster TEST_CLUSTER. */
let shards: ClickHouseServer[] = [];
let databases = 0;

before(async () => {
  if (skip) return;
  [server] = await startClickHouse();
  shards = await startClickHouse({ count: 2 });
});

after(async () => {
  await server?.stop();
  for (const shard of shards) await shard.stop();
});

function database(): string {
  return `${server!.url}/conformance_${process.pid}_${databases++}`;
}

storeConformance("ClickHouseStore", () => ClickHouseStore.connect(database(), { pollInterval: 50 }), { skip });

/** A store over the two-shard cluster: each shard's local table made first, through the shard itself. */
async function clusterStore(options: { pollInterval?: number } = {}): Promise<ClickHouseStore> {
  const name = `cluster_${process.pid}_${databases++}`;
  for (const shard of shards.slice(1)) await (await ClickHouseStore.connect(`${shard.url}/${name}`)).close();
  return await ClickHouseStore.connect(`${shards[0].url}/${name}?cluster=${TEST_CLUSTER}`, options);
}

storeConformance("ClickHouseStore on a cluster of two shards", () => clusterStore({ pollInterval: 50 }), { skip });

const P = "alice/shared/run-1";
const line = (step: number): string => JSON.stringify({ _ts: 1000 + step, step, loss: 1 / (step + 1) });

async function sql(db: string, query: string): Promise<string> {
  const res = await fetch(`${server!.url}/?database=${db}`, { method: "POST", body: query });
  const text = await res.text();
  if (!res.ok) throw new Error(text);
  return text;
}

describe("ClickHouseStore: servers sharing a database", { skip }, () => {
  it("a batch stored through one server is a duplicate for another, and seen once by both", async () => {
    const url = database();
    const [a, b] = [await ClickHouseStore.connect(url), await ClickHouseStore.connect(url)];
    try {
      const batch = { metrics: { train: [line(0)] } };
      assert.deepEqual(await a.ingest({ prefix: P, session: "s", seq: 0 }, batch), { duplicate: false });
      assert.equal(await b.has({ prefix: P, session: "s", seq: 0 }), true);
      assert.deepEqual(await b.ingest({ prefix: P, session: "s", seq: 0 }, batch), { duplicate: true });
      for (const store of [a, b]) assert.equal((await store.experiment(P)).summary["train/loss"].count, 1);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("the same batch stored by two servers at once is seen once by every read", async () => {
    const url = database();
    const [a, b] = [await ClickHouseStore.connect(url), await ClickHouseStore.connect(url)];
    try {
      for (let seq = 0; seq < 20; seq++) {
        const batch = () => ({ metrics: { train: [line(seq)] }, logs: [JSON.stringify({ _ts: seq, level: "info", message: `m${seq}` })], params: { [`p${seq}`]: seq } });
        await Promise.all([a.ingest({ prefix: P, session: "s", seq }, batch()), b.ingest({ prefix: P, session: "s", seq }, batch())]);
      }
      const commits = Number(await sql(url.split("/").pop()!, "SELECT count() FROM ml_dash_rows WHERE kind = 'commit'"));
      assert.ok(commits >= 20, `${commits} commits`);
      for (const store of [a, b]) {
        const page = await store.series(P, "train/loss", { x: "step", offset: 0, points: 1000 });
        assert.deepEqual(page.x, Array.from({ length: 20 }, (_, i) => i));
        assert.equal((await store.experiment(P)).summary["train/loss"].count, 20);
        assert.equal((await store.logs(P, { offset: 0 })).total, 20);
        assert.equal(Object.keys((await store.open(P)).params).length, 20);
      }
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("the rows of a server that died before its commit are never seen, and the retry is stored once", async () => {
    const url = database();
    const db = url.split("/").pop()!;
    const store = await ClickHouseStore.connect(url);
    try {
      // What a server that was killed after writing the points, before the commit row, leaves behind.
      await sql(db, `INSERT INTO ml_dash_rows (prefix, kind, name, field, session, seq, attempt, ord, line, step, ts, value, text)
        VALUES ('${P}', 'point', 'train', 'loss', 's', 0, 12345, 1, 0, 0, 1000, 1, '')`);
      assert.equal(await store.exists(P), false);
      assert.equal(await store.has({ prefix: P, session: "s", seq: 0 }), false);
      assert.deepEqual(await store.ingest({ prefix: P, session: "s", seq: 0 }, { metrics: { train: [line(0)] } }), { duplicate: false });
      assert.deepEqual((await store.experiment(P)).summary["train/loss"], { count: 1, min: 1, max: 1, last: 1, lastStep: 0 });
    } finally {
      await store.close();
    }
  });

  it("a watcher on one server hears of the batches stored through another", async () => {
    const url = database();
    const [a, b] = [await ClickHouseStore.connect(url), await ClickHouseStore.connect(url, { pollInterval: 50 })];
    const changes: Change[] = [];
    const stop = await b.watch((change) => changes.push(change));
    try {
      await a.ingest({ prefix: P, session: "s", seq: 0 }, { status: { status: "RUNNING" }, metrics: { train: [line(0)] } });
      // A bound only so that a broken poll fails instead of hanging the suite.
      for (let i = 0; i < 1500 && !changes.some((c) => c.kind === "metrics" && c.prefix === P); i++) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.ok(changes.some((c) => c.kind === "metrics" && c.prefix === P), "the metrics change arrived");
      assert.ok(changes.some((c) => c.kind === "experiment" && c.prefix === P && c.status === "RUNNING"));
    } finally {
      stop();
      await a.close();
      await b.close();
    }
  });
});

describe("ClickHouseStore: connecting", { skip }, () => {
  it("with the user's password it connects and says what it connected to", async () => {
    const base = server!.url.replace("http://", `http://${TEST_USER.name}:${TEST_USER.password}@`);
    const store = await ClickHouseStore.connect(`${base}/with_user`);
    assert.equal(store.info.user, TEST_USER.name);
    assert.equal(store.info.database, "with_user");
    assert.match(store.info.version, /^\d+\.\d+/);
    assert.equal(store.info.url.includes(TEST_USER.password), false);
    await store.close();
  });

  it("a wrong password fails with a message that says the credentials were refused", async () => {
    const base = server!.url.replace("http://", `http://${TEST_USER.name}:wrong@`);
    await assert.rejects(ClickHouseStore.connect(`${base}/x`), /refused the credentials of user "dash"/);
  });

  it("an unreachable ClickHouse fails with a message that names it", async () => {
    const closed = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, "127.0.0.1", () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    await assert.rejects(ClickHouseStore.connect(`http://127.0.0.1:${closed}/x`, { timeoutMs: 5000 }), /Could not connect to ClickHouse at http:\/\/127\.0\.0\.1:\d+/);
  });

  it("tables of a newer schema are refused; the current one is recorded once", async () => {
    const url = database();
    const db = url.split("/").pop()!;
    await (await ClickHouseStore.connect(url)).close();
    await (await ClickHouseStore.connect(url)).close();
    assert.equal((await sql(db, "SELECT count(), max(version) FROM ml_dash_schema")).trim(), `${SCHEMA_VERSION}\t${SCHEMA_VERSION}`);
    await sql(db, "INSERT INTO ml_dash_schema (version) VALUES (99)");
    await assert.rejects(ClickHouseStore.connect(url), new RegExp(`schema version 99, newer than this ml-dash's ${SCHEMA_VERSION}`));
  });
});

/** Starts an ml-dash server process over `clickhouse`; resolves with it and its URL once it listens. */
async function startServer(clickhouse: string, port = 0): Promise<{ child: ChildProcess; url: string }> {
  const child = spawnScript(new URL("../testing/fixtures/clickhouse_server.ts", import.meta.url), { args: [clickhouse, String(port)] });
  let out = "";
  let err = "";
  child.stderr!.on("data", (chunk) => (err += chunk));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on("data", (chunk) => {
      out += chunk;
      const line = out.split("\n").find((l) => l.startsWith("http://"));
      if (line) resolve(line.trim());
    });
    child.once("exit", (code) => reject(new Error(`the server exited with ${code}: ${err}`)));
  });
  return { child, url };
}

async function stopServer(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = once(child, "exit");
  process.kill(child.pid!, signal);
  await gone;
}

/** Posts a batch; true once a server acknowledged it (stored now or before). */
let failedPosts = 0;

async function post(url: string, prefix: string, session: string, seq: number, steps: number[]): Promise<boolean> {
  const body = JSON.stringify({ prefix, session, seq, batch: { metrics: { train: steps.map((step) => ({ _ts: 1000 + step, step, loss: step / 7 })) } } });
  try {
    const res = await fetch(`${url}/api/v1/batch`, { method: "POST", headers: { "content-type": "application/json" }, body });
    await res.body?.cancel();
    if (!res.ok) failedPosts++;
    return res.ok;
  } catch {
    failedPosts++;
    return false;
  }
}

/** Two ml-dash servers over `clickhouse`, clients alternating, the second SIGKILLed mid-run and restarted: every point read back once. */
async function killOneOfTwo(clickhouse: string): Promise<void> {
  {
    const servers = [await startServer(clickhouse), await startServer(clickhouse)];
    try {
      const clients = 4;
      const batches = 40;
      const perBatch = 25;
      let sent = 0;
      let killed: Promise<void> | undefined;
      const run = async (client: number): Promise<void> => {
        const prefix = `team/kill/client-${client}`;
        for (let seq = 0; seq < batches; seq++) {
          const steps = Array.from({ length: perBatch }, (_, i) => seq * perBatch + i);
          // Every fifth batch goes to both servers at once; the others to one, alternating, and to the other on failure.
          if (seq % 5 === 0) await Promise.all(servers.map((s) => post(s.url, prefix, `c${client}`, seq, steps)));
          for (let attempt = client + seq; !(await post(servers[attempt % 2].url, prefix, `c${client}`, seq, steps)); attempt++) {
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
          if (++sent === Math.floor((clients * batches) / 3)) {
            // Mid-run, with the other clients' requests in flight: kill the second server, then start it again on its port.
            const port = Number(new URL(servers[1].url).port);
            killed = stopServer(servers[1].child, "SIGKILL").then(async () => {
              servers[1] = await startServer(clickhouse, port);
            });
          }
        }
      };
      await Promise.all(Array.from({ length: clients }, (_, c) => run(c)));
      await killed;
      console.log(`# ${failedPosts} posts failed (to the killed server) and were sent again`);
      assert.ok(killed !== undefined && failedPosts > 0, "the server was killed while clients were sending");
      const expected = Array.from({ length: batches * perBatch }, (_, i) => i);
      for (const server of servers) {
        for (let c = 0; c < clients; c++) {
          const prefix = `team/kill/client-${c}`;
          const res = await fetch(`${server.url}/api/v1/series?prefix=${prefix}&key=train/loss&points=1000000`);
          const page = await res.json() as { x: number[]; total: number };
          assert.equal(page.total, expected.length, `${prefix} through ${server.url}`);
          assert.deepEqual(page.x, expected);
          const view = await (await fetch(`${server.url}/api/v1/experiment?prefix=${prefix}`)).json() as { summary: Record<string, { count: number }> };
          assert.equal(view.summary["train/loss"]?.count, expected.length, `${prefix} through ${server.url}: summary ${JSON.stringify(view.summary)}`);
        }
      }
    } finally {
      for (const server of servers) await stopServer(server.child);
    }
  }
}

describe("ml-dash servers over one ClickHouse", { skip }, () => {
  it("with clients alternating between two servers, one killed with SIGKILL mid-run and restarted, every point is stored once and none is missing", async () => {
    await killOneOfTwo(database());
  });

  it("the same on a cluster of two shards", async () => {
    const store = await clusterStore();
    await store.close();
    await killOneOfTwo(`${shards[0].url}/${store.info.database}?cluster=${TEST_CLUSTER}`);
  });

  it("a run logged through one server reaches the event stream of the other", async () => {
    const clickhouse = database();
    const [a, b] = [await startServer(clickhouse), await startServer(clickhouse)];
    const controller = new AbortController();
    try {
      const res = await fetch(`${b.url}/api/v1/events`, { signal: controller.signal });
      const reader = res.body!.getReader();
      const decoder = new TextDecoder();
      let text = "";
      while (!text.includes(": connected")) text += decoder.decode((await reader.read()).value);
      const started = Date.now();
      assert.equal(await post(a.url, "team/live/run", "s", 0, [0, 1, 2]), true);
      while (!/event: metrics\ndata: \{"prefix":"team\/live\/run"\}/.test(text)) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value);
      }
      assert.match(text, /event: experiment\ndata: \{"prefix":"team\/live\/run","status":"UNKNOWN"\}/);
      assert.match(text, /event: metrics\ndata: \{"prefix":"team\/live\/run"\}/);
      console.log(`# a batch through server A reached server B's event stream after ${Date.now() - started} ms`);
    } finally {
      controller.abort();
      await stopServer(a.child);
      await stopServer(b.child);
    }
  });
});

describe("serve() over ClickHouse", { skip }, () => {
  it("says which ClickHouse it serves, and fails at start when the credentials are wrong", async () => {
    const lines: string[] = [];
    const log = console.log;
    console.log = (line: string) => lines.push(line);
    let running;
    try {
      running = await serve({ clickhouse: `${server!.url}/served`, port: 0 });
    } finally {
      console.log = log;
    }
    try {
      assert.match(lines[0], /^ml-dash: serving ClickHouse database "served" at http:\/\/127\.0\.0\.1:\d+ \(ClickHouse \d+\.\d+/);
      const res = await fetch(`${running.url}/api/v1/experiments`);
      assert.deepEqual(await res.json(), { experiments: [], total: 0 });
    } finally {
      await running.close();
    }
    const wrong = server!.url.replace("http://", `http://${TEST_USER.name}:wrong@`);
    await assert.rejects(serve({ clickhouse: `${wrong}/served`, port: 0, quiet: true }), /ClickHouse at http:\/\/127\.0\.0\.1:\d+ refused the credentials of user "dash"/);
  });
});

describe("ClickHouseStore on a cluster", { skip }, () => {
  it("keeps each experiment on one shard, spreads experiments over both, and reads them all", async () => {
    const store = await clusterStore();
    try {
      const prefixes = Array.from({ length: 20 }, (_, i) => `team/spread/run-${i}`);
      for (const prefix of prefixes) await store.ingest({ prefix, session: "s", seq: 0 }, { params: { a: 1 }, metrics: { train: [[line(0), line(1)].join("\n")] } });
      const held: string[][] = [];
      for (const shard of shards) {
        const res = await fetch(`${shard.url}/?database=${store.info.database}`, { method: "POST", body: "SELECT DISTINCT prefix FROM ml_dash_rows ORDER BY prefix FORMAT TabSeparated" });
        held.push((await res.text()).split("\n").filter((l) => l !== ""));
      }
      assert.ok(held[0].length > 0 && held[1].length > 0, `rows on both shards: ${held[0].length} and ${held[1].length}`);
      assert.equal(held[0].filter((p) => held[1].includes(p)).length, 0, "no experiment on both");
      assert.equal(held[0].length + held[1].length, 20);
      const page = await store.list({ offset: 0 });
      assert.equal(page.total, 20);
      for (const prefix of prefixes) assert.equal((await store.experiment(prefix)).summary["train/loss"].count, 2);
    } finally {
      await store.close();
    }
  });
});
