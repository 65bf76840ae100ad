// Schema 2 of the ClickHouse store, against a real clickhouse-server: the
// tiles that summaries and long downsamples read, the upgrade of schema-1
// tables with their data kept, and values stored bit for bit.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type ClickHouseServer, clickHouseSkipReason, startClickHouse } from "../testing/clickhouse.ts";
import { ClickHouseStore, SCHEMA_VERSION } from "./clickhouse_store.ts";

const skip = clickHouseSkipReason();
if (skip) console.log(`# skipping the ClickHouse tile tests: ${skip}`);
let server: ClickHouseServer | undefined;
let databases = 0;

before(async () => {
  if (!skip) [server] = await startClickHouse();
});

after(async () => {
  await server?.stop();
});

function database(): { url: string; name: string } {
  const name = `tiles_${process.pid}_${databases++}`;
  return { url: `${server!.url}/${name}`, name };
}

async function sql(db: string, query: string): Promise<string> {
  const res = await fetch(`${server!.url}/?database=${db}`, { method: "POST", body: query });
  const text = await res.text();
  if (!res.ok) throw new Error(text);
  return text;
}

const P = "alice/tiles/run-1";
const records = (rows: object[]): string => rows.map((r) => JSON.stringify(r)).join("\n");

/** The tables and rows that ml-dash with schema 1 left behind. */
async function makeSchema1(db: string): Promise<void> {
  await fetch(`${server!.url}/`, { method: "POST", body: `CREATE DATABASE ${db}` }).then((r) => r.text());
  await sql(db, "CREATE TABLE ml_dash_schema (version UInt32, applied DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY version");
  await sql(db, "INSERT INTO ml_dash_schema (version) VALUES (1)");
  await sql(
    db,
    `CREATE TABLE ml_dash_rows (prefix String, kind Enum8('commit' = 1, 'point' = 2, 'log' = 3, 'state' = 4, 'file' = 5),
      name String, field String, session String, seq UInt64, attempt UInt64, ord UInt64, line UInt32,
      step Float64, ts Float64, value Float64, text String) ENGINE = MergeTree ORDER BY (prefix, kind, name, field, ord, line)`,
  );
  const rows: string[] = [];
  const point = (seq: number, attempt: number, ord: number, line: number, step: number, value: string): void => {
    rows.push([P, "point", "train", "loss", "s", seq, attempt, ord, line, step, 1000 + step, value, ""].join("\t"));
  };
  const commit = (seq: number, attempt: number, ord: number): void => {
    rows.push([P, "commit", "", "", "s", seq, attempt, ord, 0, 0, 0, 1, ""].join("\t"));
  };
  // Batch 0: steps 0-299 (step 5 NaN); batch 1: steps 300-309, stored twice (attempts 222 and 333,
  // both committed: the first counts); an attempt that never committed: steps 1000-1009.
  for (let i = 0; i < 300; i++) point(0, 111, 1000, i, i, i === 5 ? "nan" : i === 150 ? "1000" : String(i % 7));
  commit(0, 111, 1000);
  for (const attempt of [222, 333]) {
    for (let i = 0; i < 10; i++) point(1, attempt, attempt * 10, i, 300 + i, String(-i));
    commit(1, attempt, attempt * 10);
  }
  for (let i = 0; i < 10; i++) point(2, 444, 5000, i, 1000 + i, "-99");
  rows.push([P, "state", "params", "lr", "s", 0, 111, 1000, 300, 0, 0, 0, "0.5"].join("\t"));
  await sql(db, `INSERT INTO ml_dash_rows FORMAT TabSeparated\n${rows.join("\n")}\n`);
}

describe("ClickHouseStore schema 2", { skip }, () => {
  it("upgrades schema-1 tables: the tiles are made from the stored points, every answer as before", async () => {
    const { url, name } = database();
    await makeSchema1(name);
    const store = await ClickHouseStore.connect(url);
    try {
      assert.equal(store.info.schema, SCHEMA_VERSION);
      assert.equal((await sql(name, "SELECT max(version) FROM ml_dash_schema")).trim(), String(SCHEMA_VERSION));
      const view = await store.experiment(P);
      assert.deepEqual(view.params, { lr: 0.5 });
      assert.deepEqual(view.summary["train/loss"], { count: 310, min: -9, max: 1000, last: -9, lastStep: 309 });
      const all = await store.series(P, "train/loss", { x: "step", offset: 0, points: 1000 });
      assert.equal(all.total, 310);
      assert.deepEqual(all.x, Array.from({ length: 310 }, (_, i) => i));
      // 4 tiles (128 + 128 + 44 records, then 10): 2 buckets over them, each its lowest and highest.
      const reduced = await store.series(P, "train/loss", { x: "step", offset: 0, points: 4 });
      assert.equal(reduced.downsampled, true);
      assert.equal(reduced.total, 310);
      assert.ok(reduced.value.includes(1000) && reduced.value.includes(-9), `${reduced.value}`);
      for (const [i, x] of reduced.x.entries()) assert.ok(Object.is(reduced.value[i], all.value[x]), `point ${x} is real`);
      // A second connection upgrades nothing twice.
      await (await ClickHouseStore.connect(url)).close();
      // 3 + 1 + 1 tiles of the committed attempts; none of 444, which never committed.
      assert.equal((await sql(name, "SELECT count() FROM ml_dash_tiles")).trim(), "5");
      assert.deepEqual((await store.experiment(P)).summary["train/loss"].count, 310);
    } finally {
      await store.close();
    }
  });

  it("two servers upgrading the same schema-1 tables at once: every answer as from one upgrade", async () => {
    const { url, name } = database();
    await makeSchema1(name);
    // More committed batches than a backfill reads at once, so the two upgrades overlap for a while.
    const batches = 400;
    const rows: string[] = [];
    for (let b = 0; b < batches; b++) {
      const attempt = 10_000 + b;
      for (let i = 0; i < 200; i++) rows.push([P, "point", "eval", "acc", "s", 100 + b, attempt, 10_000 + b, i, b * 200 + i, b * 200 + i, (i % 10) / 10, ""].join("\t"));
      rows.push([P, "commit", "", "", "s", 100 + b, attempt, 10_000 + b, 0, 0, 0, 1, ""].join("\t"));
    }
    await sql(name, `INSERT INTO ml_dash_rows FORMAT TabSeparated\n${rows.join("\n")}\n`);
    const stores = await Promise.all([ClickHouseStore.connect(url), ClickHouseStore.connect(url)]);
    try {
      for (const store of stores) {
        const view = await store.experiment(P);
        assert.deepEqual(view.summary["train/loss"], { count: 310, min: -9, max: 1000, last: -9, lastStep: 309 });
        assert.deepEqual(view.summary["eval/acc"], { count: batches * 200, min: 0, max: 0.9, last: 0.9, lastStep: batches * 200 - 1 });
        const reduced = await store.series(P, "eval/acc", { x: "step", offset: 0, points: 100 });
        assert.equal(reduced.downsampled, true);
        assert.equal(reduced.total, batches * 200);
        for (const [i, x] of reduced.x.entries()) assert.equal(reduced.value[i], (x % 10) / 10, `point ${x} is real`);
        for (let i = 1; i < reduced.x.length; i++) assert.ok(reduced.x[i] > reduced.x[i - 1], "in order, each point once");
        const loss = await store.series(P, "train/loss", { x: "step", offset: 0, points: 4 });
        assert.equal(loss.total, 310);
      }
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it("the upgrade makes no tiles for a batch not yet committed: the server storing it writes them", async () => {
    const { url, name } = database();
    // Attempt 444 of makeSchema1 has its points but no commit row: a batch another server is storing.
    await makeSchema1(name);
    const store = await ClickHouseStore.connect(url);
    try {
      assert.equal((await sql(name, "SELECT count() FROM ml_dash_tiles WHERE attempt = 444")).trim(), "0");
      // That server's tiles and commit row arrive: counted once.
      await sql(
        name,
        `INSERT INTO ml_dash_tiles SELECT '${P}', 'train', 'loss', 444, 5000, 0, 10, 10, 10, 1000, 2000, -99, 1000, 2000, -99, 1000, 2000, -99, -99, -99, 1009, -99`,
      );
      await sql(name, `INSERT INTO ml_dash_rows (prefix, kind, session, seq, attempt, ord, value) VALUES ('${P}', 'commit', 's', 2, 444, 5000, 1)`);
      assert.deepEqual((await store.experiment(P)).summary["train/loss"], { count: 320, min: -99, max: 1000, last: -99, lastStep: 1009 });
    } finally {
      await store.close();
    }
  });

  it("a long series is downsampled over its tiles: real points, in order, each bucket's lowest and highest", async () => {
    const { url, name } = database();
    const store = await ClickHouseStore.connect(url);
    try {
      const n = 100_000;
      const loss = (i: number): number => (i === 31_337 ? 1e9 : i === 77_777 ? -1e9 : Math.sin(i / 1000) + (i % 13) * 1e-3);
      for (let b = 0; b < 10; b++) {
        const rows = Array.from({ length: n / 10 }, (_, j) => b * (n / 10) + j).map((i) => ({ _ts: i / 10, step: i, loss: loss(i) }));
        await store.ingest({ prefix: P, session: "s", seq: b }, { metrics: { train: [records(rows)] } });
      }
      // 10 batches of 10,000 records: 79 tiles each.
      assert.equal((await sql(name, "SELECT count(), sum(n) FROM ml_dash_tiles")).trim(), `790\t${n}`);
      for (const x of ["step", "_ts"]) {
        const page = await store.series(P, "train/loss", { x, offset: 0, points: 200 });
        assert.equal(page.downsampled, true);
        assert.equal(page.total, n);
        assert.ok(page.x.length <= 200 && page.x.length >= 100, `${page.x.length} points`);
        for (let i = 0; i < page.x.length; i++) {
          const step = x === "step" ? page.x[i] : Math.round(page.x[i] * 10);
          assert.equal(page.value[i], loss(step), `point ${i} is real`);
          if (i > 0) assert.ok(page.x[i] > page.x[i - 1], "in order");
        }
        assert.ok(page.value.includes(1e9) && page.value.includes(-1e9), "the spikes survive");
      }
      assert.deepEqual((await store.experiment(P)).summary["train/loss"], { count: n, min: -1e9, max: 1e9, last: loss(n - 1), lastStep: n - 1 });
    } finally {
      await store.close();
    }
  });

  it("a batch too long for one insert is seen whole or not at all: a bad record in its second insert leaves nothing seen, the retry is stored once", async () => {
    const { url, name } = database();
    const store = await ClickHouseStore.connect(url);
    try {
      const n = 200_000;
      const rows = Array.from({ length: n }, (_, i) => ({ _ts: i, step: i, loss: i / 3 })) as { _ts: number; step: number; loss: number | string }[];
      const logs = Array.from({ length: 150_000 }, (_, i) => JSON.stringify({ _ts: i, level: "info", message: `m${i}` }));
      const bad = [...rows.slice(0, -1), { _ts: n, step: n, loss: "bad" }];
      const key = { prefix: P, session: "s", seq: 0 };
      await assert.rejects(store.ingest(key, { metrics: { train: [records(bad)] } }), (error: Error & { status?: number }) => error.status === 400);
      assert.ok(Number(await sql(name, "SELECT count() FROM ml_dash_rows WHERE kind = 'point'")) >= 131_072, "its first insert was sent");
      assert.equal(await store.exists(P), false);
      assert.equal(await store.has(key), false);
      assert.deepEqual(await store.ingest(key, { metrics: { train: [records(rows)] }, logs: [logs.join("\n")] }), { duplicate: false });
      assert.deepEqual(await store.ingest(key, { metrics: { train: [records(rows)] }, logs: [logs.join("\n")] }), { duplicate: true });
      assert.equal((await store.experiment(P)).summary["train/loss"].count, n);
      assert.equal((await store.series(P, "train/loss", { x: "step", offset: 0, limit: 10, points: 1000 })).total, n);
      assert.equal((await store.logs(P, { offset: 0, limit: 1 })).total, logs.length);
    } finally {
      await store.close();
    }
  });

  it("values are stored bit for bit, as logged", async () => {
    const { url } = database();
    const store = await ClickHouseStore.connect(url);
    try {
      // 1/3567 is one that ClickHouse 18.16 reads as text one unit in the last place off.
      const values = [1 / 3567, 0.1 + 0.2, Math.PI, 5e-324, 1.7976931348623157e308, 123456789.12345679];
      await store.ingest({ prefix: P, session: "s", seq: 0 }, { metrics: { train: [records(values.map((v, i) => ({ _ts: 1 + i / 3, step: i, v })))] } });
      const page = await store.series(P, "train/v", { x: "step", offset: 0, points: 1000, time: true });
      assert.deepEqual(page.value, values);
      assert.deepEqual(page.time, values.map((_, i) => 1 + i / 3));
    } finally {
      await store.close();
    }
  });
});
