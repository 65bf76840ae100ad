/**
 * The store conformance suite: the same `node:test` cases for any
 * {@linkcode Store}, so that every store gives the answers the JSONL store
 * gives. A store's test file calls {@linkcode storeConformance} with a factory
 * that makes an empty store for each case.
 *
 * Where stores may differ, the cases check the rule rather than the answer: a
 * downsample keeps at most `points` real points, in order, with the series'
 * smallest and largest values; times are numbers.
 *
 * @example
 * ```ts ignore
 * import { storeConformance } from "./store_conformance.ts";
 * import { JsonlStore } from "./jsonl_store.ts";
 *
 * storeConformance("JsonlStore", () => Promise.resolve(new JsonlStore(tempDir())));
 * ```
 *
 * @module
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Batch } from "../storage/backend.ts";
import { ConfigError } from "../storage/errors.ts";
import type { BatchKey, Change, Store } from "./store.ts";

/** Options of {@linkcode storeConformance}. */
export interface ConformanceOptions {
  /** Skip every case with this message (e.g. a database that is not installed). */
  skip?: string;
}

const P = "alice/mnist/run-1";

/** Metric records as the protocol hands them to a store: JSON text, one record a line. */
function records(rows: Record<string, number | string>[]): string {
  return rows.map((r) => JSON.stringify(r)).join("\n");
}

function key(seq: number, prefix = P, session = "s1"): BatchKey {
  return { prefix, session, seq };
}

/** What a value looks like on the wire (undefined fields gone). */
function wire<T>(value: T): T {
  return JSON.parse(JSON.stringify(value));
}

/** The call fails as the handler answers `status`: a StorageError with it, or (400) a ConfigError. */
async function rejectsWithStatus(call: () => Promise<unknown>, status: number): Promise<void> {
  await assert.rejects(async () => await call(), (error: unknown) => {
    const answered = error instanceof ConfigError ? 400 : (error as { status?: number }).status;
    assert.equal(answered, status, `expected status ${status}, got ${String(error)}`);
    return true;
  });
}

/**
 * Registers the conformance cases for stores made by `makeStore`.
 *
 * @param name The store's name, shown in the test names.
 * @param makeStore Makes a new, empty store; each case closes the store it got.
 * @param options `skip` to skip every case with a message.
 */
export function storeConformance(name: string, makeStore: () => Promise<Store>, options: ConformanceOptions = {}): void {
  const withStore = (title: string, body: (store: Store) => Promise<void>): void => {
    it(title, { skip: options.skip }, async () => {
      const store = await makeStore();
      try {
        await body(store);
      } finally {
        await store.close();
      }
    });
  };

  describe(`${name} conformance`, () => {
    withStore("a batch is stored, reported as stored, and makes its experiment exist", async (store) => {
      assert.equal(await store.exists(P), false);
      assert.equal(await store.has(key(0)), false);
      const result = await store.ingest(key(0), {
        metadata: { prefix: P, readme: "first run", tags: ["cnn"] },
        metrics: { train: [records([{ _ts: 1, step: 0, loss: 1 }, { _ts: 2, step: 1, loss: 0.5 }])] },
      });
      assert.deepEqual(result, { duplicate: false });
      assert.equal(await store.has(key(0)), true);
      assert.equal(await store.has(key(1)), false);
      assert.equal(await store.exists(P), true);
      assert.equal(await store.exists("alice/mnist/other"), false);
      const view = await store.experiment(P);
      assert.equal(view.prefix, P);
      assert.equal(view.metadata?.readme, "first run");
      assert.deepEqual(view.metadata?.tags, ["cnn"]);
      assert.equal(view.metadata?.prefix, P);
      assert.equal(typeof view.metadata?.createdAt, "number");
      assert.deepEqual(wire(view.summary), { "train/loss": { count: 2, min: 0.5, max: 1, last: 0.5, lastStep: 1 } });
    });

    withStore("an experiment without metadata still exists and has its prefix", async (store) => {
      await store.ingest(key(0), { metrics: { train: [records([{ _ts: 1, step: 0, loss: 1 }])] } });
      assert.equal(await store.exists(P), true);
      assert.equal((await store.experiment(P)).metadata?.prefix, P);
      assert.deepEqual((await store.list({ offset: 0 })).experiments.map((e) => e.prefix), [P]);
    });

    withStore("the same batch key twice is stored once and answered as a duplicate", async (store) => {
      const batch = (): Batch => ({ metrics: { train: [records([{ _ts: 1, step: 0, loss: 1 }])] }, logs: [JSON.stringify({ _ts: 1, level: "info", message: "hi" })] });
      assert.deepEqual(await store.ingest(key(0), batch()), { duplicate: false });
      assert.deepEqual(await store.ingest(key(0), batch()), { duplicate: true });
      assert.deepEqual(await store.ingest(key(0, P, "s2"), batch()), { duplicate: false });
      const view = await store.experiment(P);
      assert.equal(view.summary["train/loss"].count, 2);
      assert.equal((await store.logs(P, { offset: 0 })).total, 2);
    });

    withStore("open gives params, files, the last step of each metric and the largest seq of each session", async (store) => {
      await store.ingest(key(0), {
        params: { lr: 0.1, "model/layers": 3 },
        metrics: { train: [records([{ _ts: 1, step: 0, loss: 1 }, { _ts: 2, step: 7, loss: 0.5 }])], eval: [records([{ _ts: 2, step: 4, acc: 0.9 }])] },
        files: [{ path: "config.txt", mime: "text/plain", size: 2, _ts: 3, data: new TextEncoder().encode("hi") }],
      });
      await store.ingest(key(5), { metrics: { train: [records([{ _ts: 3, step: 9, loss: 0.4 }])] } });
      const state = await store.open(P, ["s1", "never"]);
      assert.deepEqual(state.params, { lr: 0.1, "model/layers": 3 });
      assert.deepEqual(state.steps, { train: 9, eval: 4 });
      assert.deepEqual(state.sessions, { s1: 5, never: null });
      assert.deepEqual(wire(state.files), [{ path: "config.txt", size: 2, mime: "text/plain", _ts: 3 }]);
      const empty = await store.open("alice/mnist/new");
      assert.deepEqual(empty.params, {});
      assert.deepEqual(empty.files, []);
      assert.deepEqual(empty.steps, {});
      assert.equal(empty.sessions, undefined);
    });

    withStore("params are merged: later values win, other keys stay, a key named __proto__ is data", async (store) => {
      await store.ingest(key(0), { params: { lr: 0.1, batch: 32, nested: { a: 1 } } });
      await store.ingest(key(1), { params: { lr: 0.01, optimizer: "adam" } });
      await store.ingest(key(2), JSON.parse('{"params":{"__proto__":"x"}}') as Batch);
      const params = (await store.experiment(P)).params;
      assert.equal(params.lr, 0.01);
      assert.equal(params.batch, 32);
      assert.equal(params.optimizer, "adam");
      assert.deepEqual(params.nested, { a: 1 });
      assert.equal(Object.getPrototypeOf(params), Object.prototype);
      assert.equal(Object.getOwnPropertyDescriptor(params, "__proto__")?.value, "x");
      assert.deepEqual((await store.open(P)).params, params);
    });

    withStore("status is merged; a new RUNNING session drops the last one's error and host", async (store) => {
      await store.ingest(key(0), { status: { status: "RUNNING", startedAt: 10, heartbeatAt: Date.now() / 1000, heartbeatInterval: 5, host: "gpu-1", pid: 42 } });
      await store.ingest(key(1), { status: { status: "FAILED", endedAt: 20, error: "out of memory" } });
      let status = (await store.experiment(P)).status!;
      assert.equal(status.status, "FAILED");
      assert.equal(status.error, "out of memory");
      assert.equal(status.host, "gpu-1");
      assert.equal(status.startedAt, 10);
      assert.equal(status.endedAt, 20);
      assert.equal(status.stale, false);
      await store.ingest(key(0, P, "s2"), { status: { status: "RUNNING", startedAt: 30, endedAt: null } });
      status = (await store.experiment(P)).status!;
      assert.equal(status.status, "RUNNING");
      assert.equal(status.endedAt, null);
      assert.equal(status.pid, 42);
      assert.equal("error" in status, false);
      assert.equal("host" in status, false);
      const listed = (await store.list({ offset: 0 })).experiments[0];
      assert.equal(listed.status, "RUNNING");
      assert.equal(listed.startedAt, 30);
      assert.equal(listed.endedAt, null);
    });

    withStore("an experiment without status is listed as UNKNOWN and its view has status null", async (store) => {
      await store.ingest(key(0), { params: { a: 1 } });
      assert.equal((await store.experiment(P)).status, null);
      assert.equal((await store.list({ offset: 0 })).experiments[0].status, "UNKNOWN");
    });

    withStore("the summary counts every value of each key; min and max are finite; last and lastStep are the last record's", async (store) => {
      await store.ingest(key(0), {
        metrics: {
          train: [records([{ _ts: 1, step: 0, loss: 3, acc: 0.1 }, { _ts: 2, step: 1, loss: "NaN", acc: 0.2 }])],
          default: [records([{ _ts: 1, step: 0, lr: 0.1 }])],
        },
      });
      await store.ingest(key(1), { metrics: { train: [records([{ _ts: 3, step: 2, loss: -1, acc: "Infinity" }])] } });
      const summary = (await store.experiment(P)).summary;
      assert.deepEqual(Object.keys(summary), ["lr", "train/acc", "train/loss"]);
      assert.deepEqual(summary["train/loss"], { count: 3, min: -1, max: 3, last: -1, lastStep: 2 });
      assert.deepEqual(summary["train/acc"], { count: 3, min: 0.1, max: 0.2, last: Infinity, lastStep: 2 });
      assert.deepEqual(summary.lr, { count: 1, min: 0.1, max: 0.1, last: 0.1, lastStep: 0 });
    });

    withStore("a series is answered in order with x as step, as _ts or as another field of the same records", async (store) => {
      const rows = Array.from({ length: 50 }, (_, i) => ({ _ts: 1000 + i / 2, step: i, loss: 100 - i, epoch: i * 10 }));
      await store.ingest(key(0), { metrics: { train: [records(rows.slice(0, 20))] } });
      await store.ingest(key(1), { metrics: { train: [records(rows.slice(20)), records([{ _ts: 2000, step: 50, other: 1 }])] } });
      const byStep = await store.series(P, "train/loss", { x: "step", offset: 0, points: 1000 });
      assert.deepEqual(byStep, { x: rows.map((r) => r.step), value: rows.map((r) => r.loss), total: 50, downsampled: false });
      const byTime = await store.series(P, "train/loss", { x: "_ts", offset: 0, points: 1000 });
      assert.deepEqual(byTime.x, rows.map((r) => r._ts));
      const byEpoch = await store.series(P, "train/loss", { x: "epoch", offset: 0, points: 1000 });
      assert.deepEqual(byEpoch.x, rows.map((r) => r.epoch));
      assert.deepEqual(byEpoch.value, rows.map((r) => r.loss));
      const none = await store.series(P, "train/missing", { x: "step", offset: 0, points: 1000 });
      assert.deepEqual(none, { x: [], value: [], total: 0, downsampled: false });
    });

    withStore("asked for time, a series answers each point's _ts beside its x, also when steps and times are in different orders", async (store) => {
      const rows = [{ _ts: 5, step: 5, acc: 0.9 }, { _ts: 9, step: 3, acc: 0.7 }, { _ts: 6, step: 5, acc: 0.8 }, { _ts: 4, step: 5, acc: 0.6 }];
      await store.ingest(key(0), { metrics: { m: [records(rows)] } });
      const page = await store.series(P, "m/acc", { x: "step", offset: 0, points: 1000, time: true });
      const points = page.x.map((x, i) => [x, page.time![i], page.value[i]]);
      assert.deepEqual(points.sort((a, b) => a[1] - b[1]), [[5, 4, 0.6], [5, 5, 0.9], [5, 6, 0.8], [3, 9, 0.7]]);
      assert.equal((await store.series(P, "m/acc", { x: "step", offset: 0, points: 1000 })).time, undefined, "only when asked");
    });

    withStore("a series range and its paging apply before downsampling; total counts the range", async (store) => {
      const rows = Array.from({ length: 100 }, (_, i) => ({ _ts: 1 + i, step: i, loss: i * 2 }));
      await store.ingest(key(0), { metrics: { train: [records(rows)] } });
      const ranged = await store.series(P, "train/loss", { x: "step", from: 10, to: 19, offset: 0, points: 1000 });
      assert.deepEqual(ranged.x, [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
      assert.equal(ranged.total, 10);
      const paged = await store.series(P, "train/loss", { x: "step", from: 10, to: 19, offset: 2, limit: 3, points: 1000 });
      assert.deepEqual(paged, { x: [12, 13, 14], value: [24, 26, 28], total: 10, downsampled: false });
      const byTime = await store.series(P, "train/loss", { x: "_ts", from: 50.5, offset: 0, limit: 2, points: 1000 });
      assert.deepEqual(byTime.x, [51, 52]);
      assert.equal(byTime.total, 50);
    });

    withStore("a long series is min-max downsampled: at most `points` real points, in order, keeping spikes", async (store) => {
      const n = 5000;
      const rows = Array.from({ length: n }, (_, i) => ({ _ts: i, step: i, loss: i === 1234 ? 1e6 : i === 3210 ? -1e6 : Math.sin(i / 50) }));
      for (let b = 0; b < 5; b++) await store.ingest(key(b), { metrics: { train: [records(rows.slice(b * 1000, (b + 1) * 1000))] } });
      for (const x of ["step", "_ts"]) {
        const page = await store.series(P, "train/loss", { x, offset: 0, points: 200 });
        assert.equal(page.downsampled, true);
        assert.equal(page.total, n);
        assert.ok(page.x.length <= 200 && page.x.length >= 100, `${page.x.length} points`);
        assert.equal(page.x.length, page.value.length);
        for (let i = 0; i < page.x.length; i++) {
          assert.equal(page.value[i], rows[page.x[i]].loss, `point ${i} is real`);
          if (i > 0) assert.ok(page.x[i] > page.x[i - 1], "in order");
        }
        assert.ok(page.value.includes(1e6) && page.value.includes(-1e6), "the spikes survive");
        assert.ok(page.value.includes(1) || page.value.some((v) => v > 0.99), "each bucket keeps its max");
      }
      const small = await store.series(P, "train/loss", { x: "step", offset: 0, points: 2 });
      assert.ok(small.x.length <= 2 && small.x.length >= 1);
    });

    withStore("NaN and ±Infinity are kept as the values they were logged as", async (store) => {
      await store.ingest(key(0), { metrics: { train: [records([{ _ts: 1, step: 0, loss: "NaN" }, { _ts: 2, step: 1, loss: "Infinity" }, { _ts: 3, step: 2, loss: "-Infinity" }, { _ts: 4, step: 3, loss: 1.5 }])] } });
      const page = await store.series(P, "train/loss", { x: "step", offset: 0, points: 1000 });
      assert.deepEqual(page.x, [0, 1, 2, 3]);
      assert.ok(Number.isNaN(page.value[0]));
      assert.deepEqual(page.value.slice(1), [Infinity, -Infinity, 1.5]);
      const all = Array.from({ length: 40 }, (_, i) => ({ _ts: i, step: i, v: "NaN" }));
      await store.ingest(key(1), { metrics: { nans: [records(all)] } });
      const reduced = await store.series(P, "nans/v", { x: "step", offset: 0, points: 4 });
      assert.equal(reduced.downsampled, true);
      assert.ok(reduced.value.length >= 1 && reduced.value.every((v) => Number.isNaN(v)));
      assert.deepEqual((await store.experiment(P)).summary["nans/v"], { count: 40, min: null, max: null, last: NaN, lastStep: 39 });
    });

    withStore("logs are answered in order, paged, and filtered by level and above", async (store) => {
      const levels = ["debug", "info", "warn", "error", "fatal", "info", "custom"];
      const lines = levels.map((level, i) => JSON.stringify({ _ts: i, level, message: `m${i}`, extra: { i } }));
      await store.ingest(key(0), { logs: lines.slice(0, 4) });
      await store.ingest(key(1), { logs: [lines.slice(4).join("\n")] });
      const all = await store.logs(P, { offset: 0 });
      assert.equal(all.total, 7);
      assert.deepEqual(all.logs.map((l) => l.message), ["m0", "m1", "m2", "m3", "m4", "m5", "m6"]);
      assert.deepEqual(all.logs[0], { _ts: 0, level: "debug", message: "m0", extra: { i: 0 } });
      const page = await store.logs(P, { offset: 2, limit: 2 });
      assert.deepEqual(page.logs.map((l) => l.message), ["m2", "m3"]);
      assert.equal(page.total, 7);
      const warn = await store.logs(P, { level: "warn", offset: 0 });
      assert.deepEqual(warn.logs.map((l) => l.message), ["m2", "m3", "m4"]);
      assert.equal(warn.total, 3);
      const info = await store.logs(P, { level: "info", offset: 1, limit: 10 });
      assert.deepEqual(info.logs.map((l) => l.message), ["m2", "m3", "m4", "m5", "m6"]);
      assert.equal(info.total, 6);
    });

    withStore("files are kept with their type; the latest save of a path wins; a missing file is undefined", async (store) => {
      const bytes = new Uint8Array(256).map((_, i) => i);
      await store.ingest(key(0), {
        files: [
          { path: "plots/loss.png", mime: "image/png", size: 256, _ts: 1, data: bytes },
          { path: "notes.txt", mime: "text/plain", size: 3, _ts: 1, data: new TextEncoder().encode("old") },
        ],
      });
      await store.ingest(key(1), { files: [{ path: "notes.txt", mime: "text/markdown", size: 3, _ts: 2, data: new TextEncoder().encode("new") }] });
      const png = await store.file(P, "plots/loss.png");
      assert.deepEqual(png, { data: bytes, mime: "image/png" });
      const notes = await store.file(P, "notes.txt");
      assert.equal(new TextDecoder().decode(notes!.data), "new");
      assert.equal(notes!.mime, "text/markdown");
      assert.equal(await store.file(P, "nothing.txt"), undefined);
      const files = (await store.experiment(P)).files;
      assert.deepEqual(wire(files), [
        { path: "plots/loss.png", size: 256, mime: "image/png", _ts: 1 },
        { path: "notes.txt", size: 3, mime: "text/markdown", _ts: 2 },
      ]);
      await rejectsWithStatus(() => store.file(P, "../outside.txt"), 400);
    });

    withStore("listing is sorted by prefix, filtered by prefix and status, and paged with a total", async (store) => {
      const prefixes = ["bob/x/r2", "alice/b/r1", "alice/a/r2", "alice/a/r1", "alice/ab/r1"];
      for (const [i, prefix] of prefixes.entries()) {
        await store.ingest(key(0, prefix), {
          metadata: { prefix, tags: [`t${i}`] },
          status: { status: i % 2 === 0 ? "COMPLETED" : "RUNNING", startedAt: i, heartbeatAt: Date.now() / 1000, heartbeatInterval: 60 },
        });
      }
      const all = await store.list({ offset: 0 });
      assert.equal(all.total, 5);
      assert.deepEqual(all.experiments.map((e) => e.prefix), ["alice/a/r1", "alice/a/r2", "alice/ab/r1", "alice/b/r1", "bob/x/r2"]);
      const first = all.experiments[0];
      assert.equal(first.status, "RUNNING");
      assert.equal(first.stale, false);
      assert.deepEqual(first.tags, ["t3"]);
      assert.equal(first.startedAt, 3);
      assert.equal(typeof first.createdAt, "number");
      assert.equal(typeof first.heartbeatAt, "number");
      assert.deepEqual((await store.list({ prefix: "alice/a", offset: 0 })).experiments.map((e) => e.prefix), ["alice/a/r1", "alice/a/r2"]);
      assert.deepEqual((await store.list({ prefix: "alice/a/", offset: 0 })).experiments.map((e) => e.prefix), ["alice/a/r1", "alice/a/r2"]);
      assert.deepEqual((await store.list({ prefix: "alice/a/r1", offset: 0 })).experiments.map((e) => e.prefix), ["alice/a/r1"]);
      const done = await store.list({ status: "completed", offset: 0 });
      assert.deepEqual(done.experiments.map((e) => e.prefix), ["alice/a/r2", "alice/ab/r1", "bob/x/r2"]);
      const page = await store.list({ offset: 1, limit: 2 });
      assert.deepEqual(page.experiments.map((e) => e.prefix), ["alice/a/r2", "alice/ab/r1"]);
      assert.equal(page.total, 5);
      assert.deepEqual(await store.list({ prefix: "carol", offset: 0 }), { experiments: [], total: 0 });
    });

    withStore("a RUNNING run whose heartbeats stopped is stale, in its view and in the listing", async (store) => {
      const now = Date.now() / 1000;
      await store.ingest(key(0, "alice/a/dead"), { status: { status: "RUNNING", startedAt: now - 600, heartbeatAt: now - 300, heartbeatInterval: 5 } });
      await store.ingest(key(0, "alice/a/live"), { status: { status: "RUNNING", startedAt: now - 600, heartbeatAt: now, heartbeatInterval: 5 } });
      await store.ingest(key(0, "alice/a/done"), { status: { status: "COMPLETED", startedAt: now - 600, heartbeatAt: now - 300, heartbeatInterval: 5, endedAt: now - 300 } });
      assert.equal((await store.experiment("alice/a/dead")).status?.stale, true);
      assert.equal((await store.experiment("alice/a/live")).status?.stale, false);
      assert.equal((await store.experiment("alice/a/done")).status?.stale, false);
      const stale = await store.list({ status: "stale", offset: 0 });
      assert.deepEqual(stale.experiments.map((e) => e.prefix), ["alice/a/dead"]);
      assert.equal(stale.experiments[0].status, "RUNNING");
      assert.deepEqual((await store.list({ status: "RUNNING", offset: 0 })).experiments.map((e) => e.prefix), ["alice/a/dead", "alice/a/live"]);
    });

    withStore("bad input is refused with a 4xx status and nothing of the batch is stored", async (store) => {
      await rejectsWithStatus(() => store.ingest(key(0, "../escape/x"), { params: { a: 1 } }), 400);
      await rejectsWithStatus(() => store.ingest(key(0, "single"), { params: { a: 1 } }), 400);
      await rejectsWithStatus(() => store.ingest(key(0), { params: { a: 1 }, metrics: { ".hidden": [records([{ _ts: 1, step: 0, v: 1 }])] } }), 400);
      await rejectsWithStatus(
        () => store.ingest(key(1), { params: { b: 1 }, files: [{ path: "../up.txt", mime: "text/plain", size: 1, _ts: 1, data: new Uint8Array(1) }] }),
        400,
      );
      assert.equal(await store.has(key(0)), false);
      assert.equal(await store.has(key(1)), false);
      // Nothing of either batch is kept, not even its params.
      const params = (await store.open(P)).params;
      assert.equal("a" in params, false);
      assert.equal("b" in params, false);
    });

    withStore("a watcher hears of a new experiment, its metrics, its logs and a change of status", async (store) => {
      const changes: Change[] = [];
      let wake: (() => void) | undefined;
      const stop = await store.watch((change) => {
        changes.push(change);
        wake?.();
      });
      const until = async (match: (c: Change) => boolean): Promise<void> => {
        while (!changes.some(match)) await new Promise<void>((resolve) => (wake = resolve));
      };
      try {
        await store.ingest(key(0), { status: { status: "RUNNING", startedAt: 1 }, metrics: { train: [records([{ _ts: 1, step: 0, loss: 1 }])] } });
        await until((c) => c.kind === "experiment" && c.prefix === P && c.status === "RUNNING");
        await until((c) => c.kind === "metrics" && c.prefix === P);
        await store.ingest(key(1), { logs: [JSON.stringify({ _ts: 1, level: "info", message: "hi" })] });
        await until((c) => c.kind === "logs" && c.prefix === P);
        await store.ingest(key(2), { status: { status: "COMPLETED", endedAt: 2 } });
        await until((c) => c.kind === "experiment" && c.prefix === P && c.status === "COMPLETED");
      } finally {
        stop();
      }
    });
  });
}
