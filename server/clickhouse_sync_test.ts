// Moving in: `ml-dash sync --root <dir> --url <server>` (a real child process)
// sends a local root written by the library into a server over a real
// ClickHouse, and every read of the read API answers there as it does from a
// server over the local root.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Experiment } from "../mod.ts";
import { serve } from "../server.ts";
import { type ClickHouseServer, clickHouseSkipReason, startClickHouse } from "../testing/clickhouse.ts";
import { runScript } from "../testing/run_script.ts";
import { tempDir } from "../testing/temp.ts";

const skip = clickHouseSkipReason();
if (skip) console.log(`# skipping the ClickHouse sync test: ${skip}`);
let clickhouse: ClickHouseServer | undefined;

before(async () => {
  if (!skip) [clickhouse] = await startClickHouse();
});

after(async () => {
  await clickhouse?.stop();
});

/** Several experiments written by the library: params, metrics of several names, logs of every level, files, each end. */
async function writeRoot(root: string): Promise<string[]> {
  await new Experiment({ prefix: "alice/mnist/baseline", dashRoot: root, readme: "the baseline", tags: ["small", "mnist"] }).run(async (exp) => {
    exp.params.set({ lr: 0.001, model: { depth: 4, act: "relu" }, seeds: [1, 2] });
    for (let step = 0; step < 3000; step++) {
      exp.metrics("train").log({ step, loss: 1 / (step + 1) + (step % 17) * 1e-3, acc: step / 3000 });
      if (step % 10 === 0) exp.metrics("eval").log({ step, loss: 2 / (step + 1), epoch: step / 100 });
    }
    exp.metrics("default").log({ step: 3, lr: 0.5 });
    for (const level of ["debug", "info", "warn", "error", "fatal"] as const) exp.log(`a ${level} line`, { level, metadata: { level } });
    await exp.files.saveText("notes.txt", "hello");
    await exp.files.saveBytes("weights.bin", new Uint8Array([0, 1, 2, 250, 255]), "application/octet-stream");
  });
  // Resumed: a second session adds points, params and a line.
  await new Experiment({ prefix: "alice/mnist/baseline", dashRoot: root }).run((exp) => {
    exp.params.set({ lr: 0.0005, resumed: true });
    for (let step = 3001; step < 3100; step++) exp.metrics("train").log({ step, loss: 0.001, acc: 1 });
    exp.log("resumed");
  });
  await new Experiment({ prefix: "alice/mnist/broken", dashRoot: root }).run((exp) => {
    exp.metrics("train").log({ step: 0, loss: 9 });
    throw new Error("diverged");
  }).catch(() => {});
  const stopped = new Experiment({ prefix: "bob/cifar/stopped", dashRoot: root, tags: ["cifar"] });
  await stopped.run.start();
  stopped.metrics("train").log({ loss: 3 });
  await stopped.run.cancel();
  for (let i = 0; i < 5; i++) {
    await new Experiment({ prefix: `bob/sweep/run-${i}`, dashRoot: root }).run((exp) => {
      exp.params.set({ i });
      exp.metrics("train").log({ step: 0, loss: i });
    });
  }
  return ["alice/mnist/baseline", "alice/mnist/broken", "bob/cifar/stopped", ...Array.from({ length: 5 }, (_, i) => `bob/sweep/run-${i}`)];
}

/**
 * GETs a read API path from a server; the JSON, or the bytes for a file. The
 * times a server stamps an experiment with when it first stores it
 * (`createdAt`, `updatedAt`) are left out: every server stamps its own.
 */
async function read(base: string, path: string): Promise<unknown> {
  const res = await fetch(`${base}/api/v1/${path}`);
  if (path.startsWith("file?")) return { status: res.status, type: res.headers.get("content-type"), bytes: [...new Uint8Array(await res.arrayBuffer())] };
  return { status: res.status, body: JSON.parse(await res.text(), (key, value) => (key === "createdAt" || key === "updatedAt" ? undefined : value)) };
}

interface SeriesAnswer {
  key: string;
  x: (number | null)[];
  value: (number | null)[];
  total: number;
  downsampled: boolean;
}

/**
 * Each store chooses its own buckets: a downsampled answer has the same key,
 * total and size limit, and only real points of the series, in order.
 */
async function assertSameDownsample(local: string, path: string, there: SeriesAnswer, here: SeriesAnswer): Promise<void> {
  assert.deepEqual({ key: there.key, total: there.total, downsampled: there.downsampled }, { key: here.key, total: here.total, downsampled: here.downsampled }, path);
  const points = Number(new URLSearchParams(path.split("?")[1]).get("points") ?? 1000);
  assert.ok(there.x.length <= points && there.x.length === there.value.length, `${path}: ${there.x.length} points`);
  const all = (await read(local, path.replace(/points=\d+/, "points=1000000").replace(/$/, path.includes("points=") ? "" : "&points=1000000"))) as { body: SeriesAnswer };
  const real = new Set(all.body.x.map((x, i) => `${x} ${all.body.value[i]}`));
  for (let i = 0; i < there.x.length; i++) {
    assert.ok(real.has(`${there.x[i]} ${there.value[i]}`), `${path}: (${there.x[i]}, ${there.value[i]}) is a real point`);
    if (i > 0) assert.ok(there.x[i]! >= there.x[i - 1]!, `${path}: in order`);
  }
}

describe("ml-dash sync into a ClickHouse-backed server", { skip }, () => {
  it("moves a local root in: every read answers as from the local root", async () => {
    const root = tempDir("ch-sync");
    const prefixes = await writeRoot(root);
    const local = await serve({ root, port: 0, quiet: true });
    const remote = await serve({ clickhouse: `${clickhouse!.url}/moved_in_${process.pid}`, port: 0, quiet: true, token: "sync-token" });
    try {
      const sync = await runScript(new URL("../cli.ts", import.meta.url), {
        args: ["sync", "--root", root, "--url", remote.url, "--token", "sync-token"],
        env: { ML_DASH_ROOT: undefined, ML_DASH_TOKEN: undefined },
        timeoutMs: 120_000,
      });
      assert.equal(sync.code, 0, sync.stderr);
      assert.match(sync.stdout, new RegExp(`synced ${prefixes.length} experiment\\(s\\)`));

      const paths = ["experiments?offset=0", "experiments?prefix=bob/&offset=1&limit=3", "experiments?status=completed", "experiments?status=cancelled"];
      for (const prefix of prefixes) {
        const p = `prefix=${encodeURIComponent(prefix)}`;
        paths.push(`experiment?${p}`, `logs?${p}`, `logs?${p}&level=warn`, `logs?${p}&offset=2&limit=2`);
        const detail = (await read(local.url, `experiment?${p}`)) as { body: { summary: Record<string, unknown>; files: { path: string }[] } };
        for (const key of Object.keys(detail.body.summary)) {
          const k = `${p}&key=${encodeURIComponent(key)}`;
          paths.push(`series?${k}`, `series?${k}&x=_ts`, `series?${k}&points=100`, `series?${k}&from=10&to=500&offset=5&limit=50`);
        }
        for (const file of detail.body.files) paths.push(`file?${p}&path=${encodeURIComponent(file.path)}`);
      }
      paths.push("series?prefix=alice/mnist/baseline&key=eval/loss&x=epoch", "file?prefix=alice/mnist/baseline&path=missing.txt");
      for (const path of paths) {
        const [there, here] = [await read(remote.url, path), await read(local.url, path)] as { body: SeriesAnswer }[];
        if (here.body?.downsampled) await assertSameDownsample(local.url, path, there.body, here.body);
        else assert.deepEqual(there, here, path);
      }
    } finally {
      await remote.close();
      await local.close();
    }
  });
});
