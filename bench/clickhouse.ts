/**
 * The ClickHouse store side by side with the JSONL store, in the same run, on
 * a real `clickhouse-server` started for it (testing/clickhouse.ts):
 *
 * - **ingest**: the remote_throughput workload (4 numeric fields per `log()`
 *   call, `new Experiment({ dashUrl })` in a client process) through one
 *   `ml-dash serve --root` (the baseline), through one `ml-dash serve
 *   --clickhouse`, and through two such servers over one ClickHouse with one
 *   client each (the aggregate, against one server's). Every point is read back
 *   through the read API: every step once, every value as logged.
 * - **summary + downsample**: a single-key series of S points stored in each
 *   store, then the store's summary (count / min / max / last, checked) and the
 *   series min-max downsampled to 2,000 points (checked: real points, in order,
 *   the spike kept).
 * - **list**: E small experiments in each store, all listed (every one found
 *   and COMPLETED).
 * - **first chart**: a C-point run, then a freshly started server (ClickHouse's
 *   mark cache dropped) answers what the dashboard asks for its first chart
 *   (experiments, experiment, series at 1,000 points); the server time is the
 *   sum of the three answers' times over loopback.
 *
 * `--only=ingest,series,list,chart` runs some of the parts. Skips with a message when clickhouse-server is not installed.
 *
 * Run: `deno run -A bench/clickhouse.ts --points=2000000 --series=10000000 --experiments=10000 --chart=1000000`
 * (or bun; node on the compiled file).
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { Experiment } from "../mod.ts";
import { ClickHouseStore } from "../server/clickhouse_store.ts";
import { JsonlStore } from "../server/jsonl_store.ts";
import type { Store } from "../server/store.ts";
import { findClickHouse, startClickHouse } from "../testing/clickhouse.ts";
import { argInt, argString, emit, fmt, hasFlag, runtimeName, selfCommand, tempDir, wallClockMs } from "./_common.ts";

const POINTS = argInt("points", 2_000_000);
const SERIES = argInt("series", 10_000_000);
const EXPERIMENTS = argInt("experiments", 10_000);
const CHART = argInt("chart", 1_000_000);
const TARGET_POINTS = 2_000;
/** `--only=ingest,series,list,chart`: which parts to run (default: all). */
const ONLY = argString("only", "").split(",").filter(Boolean);
const part = (name: string): boolean => ONLY.length === 0 || ONLY.includes(name);
const runtime = runtimeName();
const results: Record<string, unknown>[] = [];

// ─── A client process ───────────────────────────────────────────────────────

/** Logs `--points` points into `--prefix` through `--url`, then prints when it started and ended. */
async function client(): Promise<void> {
  const calls = Math.floor(argInt("points", 0) / 4);
  const exp = new Experiment({ prefix: argString("prefix", ""), dashUrl: argString("url", "") });
  await exp.run.start();
  const train = exp.metrics("train");
  console.log("READY");
  await new Promise((resolve) => process.stdin.once("data", resolve));
  process.stdin.pause();
  const startMs = wallClockMs();
  for (let i = 0; i < calls; i++) {
    train.log({ loss: 1 / (i + 1), acc: i / calls, lr: 0.001, epoch: i >> 12 });
    if ((i & 0x3fff) === 0) await new Promise((resolve) => setTimeout(resolve, 0));
  }
  await exp.run.complete();
  const cpu = process.cpuUsage();
  console.log(`CLIENT ${JSON.stringify({ startMs, endMs: wallClockMs(), cpuSeconds: (cpu.user + cpu.system) / 1e6 })}`);
}

interface ClientProcess {
  ready: Promise<void>;
  go(): void;
  done: Promise<ClientReport>;
}

interface ClientReport {
  startMs: number;
  endMs: number;
  cpuSeconds: number;
}

function startClient(url: string, prefix: string, points: number, home: string): ClientProcess {
  const [cmd, ...args] = selfCommand(import.meta.url, ["--client", `--points=${points}`, `--url=${url}`, `--prefix=${prefix}`]);
  // HOME is an empty folder: no stored credentials are read, and an outbox would land there.
  const child = spawn(cmd, args, { cwd: home, stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, HOME: home } });
  let stdout = "";
  let stderr = "";
  let onReady = (): void => {};
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  child.stdout.on("data", (chunk) => {
    stdout += chunk;
    if (stdout.includes("READY\n")) onReady();
  });
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const done = new Promise<ClientReport>((resolve, reject) => {
    child.on("close", (code) => {
      const line = stdout.split("\n").find((l) => l.startsWith("CLIENT "));
      if (code !== 0 || !line) reject(new Error(`Client of ${prefix} failed (exit ${code}): ${stderr.slice(-2000)}`));
      else resolve(JSON.parse(line.slice("CLIENT ".length)));
    });
  });
  return { ready: Promise.race([ready, done.then(() => {})]), go: () => child.stdin.end("go\n"), done };
}

/** What a run of clients measured: the aggregate rate, and the CPU seconds each process spent on it. */
interface IngestRun {
  pointsPerSec: number;
  seconds: number;
  clientCpu: number;
  serverCpu: number;
  clickhouseCpu: number;
}

/**
 * Clients started together; the aggregate is their points over first start to
 * last end. The CPU seconds of the servers and of ClickHouse are read from
 * /proc around the run (0 where there is no /proc).
 */
async function runClients(targets: { url: string; prefix: string }[], perClient: number, home: string, pids: { servers: number[]; clickhouse?: number }): Promise<IngestRun> {
  const clients = targets.map((t) => startClient(t.url, t.prefix, perClient, home));
  await Promise.all(clients.map((c) => c.ready));
  const before = pids.servers.map(cpuSeconds);
  const chBefore = pids.clickhouse ? cpuSeconds(pids.clickhouse) : 0;
  for (const c of clients) c.go();
  const reports = await Promise.all(clients.map((c) => c.done));
  const serverCpu = pids.servers.map(cpuSeconds).reduce((sum, after, i) => sum + after - before[i], 0);
  const clickhouseCpu = pids.clickhouse ? cpuSeconds(pids.clickhouse) - chBefore : 0;
  const seconds = (Math.max(...reports.map((r) => r.endMs)) - Math.min(...reports.map((r) => r.startMs))) / 1000;
  const clientCpu = reports.reduce((sum, r) => sum + r.cpuSeconds, 0);
  return { pointsPerSec: (perClient * targets.length) / seconds, seconds, clientCpu, serverCpu, clickhouseCpu };
}

/** User + system CPU seconds of a process so far, from /proc (0 elsewhere). */
function cpuSeconds(pid: number): number {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /s, "").split(" ");
    // After the command: state is field 3, utime 14 and stime 15 (in clock ticks, 100 a second on Linux).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

function describeRun(name: string, run: IngestRun, baseline?: { name: string; rate: number }): string {
  const ratio = baseline ? `  (${(run.pointsPerSec / baseline.rate).toFixed(2)}× ${baseline.name})` : "";
  const cpu = `CPU s: clients ${run.clientCpu.toFixed(1)}, server(s) ${run.serverCpu.toFixed(1)}${run.clickhouseCpu ? `, ClickHouse ${run.clickhouseCpu.toFixed(1)}` : ""}`;
  return `    ${name.padEnd(34)} ${fmt(run.pointsPerSec).padStart(10)} points/s  ${run.seconds.toFixed(2)} s${ratio}\n      ${cpu}`;
}

// ─── Servers ────────────────────────────────────────────────────────────────

interface Server {
  url: string;
  pid: number;
  close(): Promise<void>;
}

/** `ml-dash serve` as a child process on this runtime (the compiled cli.js under Node). */
async function childServer(args: string[]): Promise<Server> {
  const here = fileURLToPath(import.meta.url);
  const cli = path.join(path.dirname(here), "..", here.endsWith(".ts") ? "cli.ts" : "cli.js");
  const all = ["serve", "--port", "0", ...args];
  const child: ChildProcess = runtime === "deno"
    ? spawn(process.execPath, ["run", "-A", cli, ...all], { stdio: ["ignore", "pipe", "inherit"] })
    : spawn(process.execPath, [cli, ...all], { stdio: ["ignore", "pipe", "inherit"] });
  const url = await new Promise<string>((resolve, reject) => {
    let text = "";
    child.stdout!.setEncoding("utf8").on("data", (s: string) => {
      text += s;
      const match = /serving .* at (http:\/\/\S+)\n/.exec(text);
      if (match) resolve(match[1]);
    });
    child.once("exit", (code) => reject(new Error(`server exited (${code}): ${text}`)));
  });
  return {
    url,
    pid: child.pid!,
    close: () =>
      new Promise((resolve) => {
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url);
  const text = await res.text();
  if (!res.ok) throw new Error(`GET ${url} answered ${res.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}

interface SeriesAnswer {
  x: (number | null)[];
  value: (number | null)[];
  total: number;
  downsampled: boolean;
}

/** Reads every point of the client workload back through the read API: each step once, each value as logged. */
async function checkIngested(url: string, prefix: string, points: number): Promise<void> {
  const calls = points / 4;
  const detail = await getJson<{ summary: Record<string, { count: number }> }>(`${url}/api/v1/experiment?prefix=${encodeURIComponent(prefix)}`);
  for (const key of ["train/loss", "train/acc", "train/lr", "train/epoch"]) {
    if (detail.summary[key]?.count !== calls) throw new Error(`${prefix} ${key}: expected ${calls} points, the summary counts ${detail.summary[key]?.count}`);
  }
  const page = 500_000;
  for (let offset = 0; offset < calls; offset += page) {
    const q = `prefix=${encodeURIComponent(prefix)}&key=train/loss&points=1000000&offset=${offset}&limit=${page}`;
    const s = await getJson<SeriesAnswer>(`${url}/api/v1/series?${q}`);
    if (s.total !== calls) throw new Error(`${prefix}: expected ${calls} points, the series has ${s.total}`);
    const n = Math.min(page, calls - offset);
    if (s.x.length !== n || s.downsampled) throw new Error(`${prefix}: expected ${n} points at offset ${offset}, read ${s.x.length}`);
    for (let j = 0; j < n; j++) {
      const step = offset + j;
      if (s.x[j] !== step || s.value[j] !== 1 / (step + 1)) throw new Error(`${prefix}: point ${step} read as (${s.x[j]}, ${s.value[j]})`);
    }
  }
}

// ─── Stores filled directly ─────────────────────────────────────────────────

/** The loss at step i: noisy, decreasing, with one spike in the middle that a downsample must keep. */
function loss(i: number, n: number): number {
  return i === (n >> 1) ? 1e6 : 1 / (1 + i * 1e-4) + ((i * 2654435761) % 1000) * 1e-6;
}

/** Stores an n-point series `train/loss` in batches of 100,000 records, as a client would send them. */
async function fillSeries(store: Store, prefix: string, n: number): Promise<void> {
  const t0 = Date.now() / 1000;
  await store.ingest({ prefix, session: "fill", seq: 0 }, { metadata: { prefix }, status: { status: "RUNNING", startedAt: t0 } });
  let seq = 1;
  for (let start = 0; start < n; start += 100_000) {
    const lines: string[] = [];
    for (let i = start; i < Math.min(n, start + 100_000); i++) lines.push(`{"_ts":${t0 + i * 1e-3},"step":${i},"loss":${loss(i, n)}}`);
    await store.ingest({ prefix, session: "fill", seq: seq++ }, { metrics: { train: [lines.join("\n")] } });
  }
  await store.ingest({ prefix, session: "fill", seq }, { status: { status: "COMPLETED", endedAt: Date.now() / 1000 } });
}

/**
 * Waits (at most a minute) until ClickHouse merges no parts, so that reads are
 * timed in the steady state rather than beside the merges of the inserts just made.
 *
 * @returns The seconds waited.
 */
async function mergesDone(url: string): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < 60_000) {
    const res = await fetch(`${url}/?query=${encodeURIComponent("SELECT count() FROM system.merges")}`);
    if ((await res.text()).trim() === "0") break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return (performance.now() - t0) / 1000;
}

/** Times the store's summary and its series downsampled to 2,000 points, checking both. */
async function summaryAndDownsample(store: Store, prefix: string, n: number): Promise<{ summary: number; downsample: number }> {
  let min = Infinity, max = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = loss(i, n);
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const t0 = performance.now();
  const s = (await store.experiment(prefix)).summary["train/loss"];
  const t1 = performance.now();
  if (s?.count !== n || s.min !== min || s.max !== max || s.last !== loss(n - 1, n) || s.lastStep !== n - 1) {
    throw new Error(`Summary ${JSON.stringify(s)} differs from what was written`);
  }
  const page = await store.series(prefix, "train/loss", { x: "step", offset: 0, points: TARGET_POINTS });
  const t2 = performance.now();
  if (!page.downsampled || page.total !== n || page.x.length > TARGET_POINTS || page.x.length < TARGET_POINTS / 2) {
    throw new Error(`Downsampled to ${page.x.length} of ${page.total} points`);
  }
  for (let i = 0; i < page.x.length; i++) {
    if (page.value[i] !== loss(page.x[i], n)) throw new Error(`Point (${page.x[i]}, ${page.value[i]}) was never logged`);
    if (i > 0 && page.x[i] < page.x[i - 1]) throw new Error(`Points out of order at ${i}`);
  }
  if (!page.value.includes(1e6)) throw new Error("The spike was lost in downsampling");
  return { summary: (t1 - t0) / 1000, downsample: (t2 - t1) / 1000 };
}

/** Stores `count` one-point experiments, 32 at a time. */
async function fillExperiments(store: Store, count: number): Promise<void> {
  for (let start = 0; start < count; start += 32) {
    const batch: Promise<unknown>[] = [];
    for (let i = start; i < Math.min(count, start + 32); i++) {
      const prefix = `bench/list/group-${String(i % 100).padStart(2, "0")}/exp-${String(i).padStart(5, "0")}`;
      const now = Date.now() / 1000;
      batch.push(store.ingest({ prefix, session: "s", seq: 0 }, {
        metadata: { prefix, tags: ["bench"] },
        status: { status: "COMPLETED", startedAt: now, endedAt: now },
        metrics: { train: [`{"_ts":${now},"step":0,"loss":${1 / (i + 1)}}`] },
      }));
    }
    await Promise.all(batch);
  }
}

async function listAll(store: Store, count: number): Promise<number> {
  const t0 = performance.now();
  const page = await store.list({ offset: 0 });
  const seconds = (performance.now() - t0) / 1000;
  if (page.total !== count || page.experiments.length !== count) throw new Error(`Expected ${count} experiments, listed ${page.total}`);
  const notDone = page.experiments.filter((e) => e.status !== "COMPLETED").length;
  if (notDone > 0) throw new Error(`${notDone} experiments are not COMPLETED`);
  return seconds;
}

/** What the dashboard asks a server for its first chart, each answer timed over loopback. */
async function firstChart(url: string, prefix: string, n: number): Promise<number> {
  let ms = 0;
  const time = async <T>(path: string): Promise<T> => {
    const t0 = performance.now();
    const answer = await getJson<T>(`${url}/api/v1/${path}`);
    ms += performance.now() - t0;
    return answer;
  };
  const list = await time<{ total: number }>("experiments?offset=0&limit=1000");
  if (list.total < 1) throw new Error("The server lists no experiment");
  const detail = await time<{ summary: Record<string, { count: number }> }>(`experiment?prefix=${encodeURIComponent(prefix)}`);
  if (detail.summary["train/loss"]?.count !== n) throw new Error(`Expected ${n} points, the summary counts ${detail.summary["train/loss"]?.count}`);
  const s = await time<SeriesAnswer>(`series?prefix=${encodeURIComponent(prefix)}&key=train/loss&points=1000&x=step`);
  if (s.total !== n || s.x.length > 1000 || s.x.length < 500) throw new Error(`First chart: ${s.x.length} of ${s.total} points`);
  return ms;
}

// ─── Main ───────────────────────────────────────────────────────────────────

/** Runs a measurement; a thrown error becomes an error row instead of ending the benchmark. */
async function attempt(figure: string, work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.log(`  ${figure}: FAILED: ${message}`);
    results.push({ runtime, figure, value: null, unit: "", error: message.slice(0, 200) });
  }
}

async function main(): Promise<void> {
  if (!findClickHouse()) {
    console.log("clickhouse: skipped, clickhouse-server is not installed (apt-get install -y clickhouse-server)");
    return;
  }
  const [clickhouse] = await startClickHouse();
  const home = tempDir("clickhouse-home");
  const root = tempDir("clickhouse-jsonl");
  const db = (name: string): string => `${clickhouse.url}/${name}`;
  console.log(`clickhouse on ${runtime}: ClickHouse ${(await (await fetch(`${clickhouse.url}/?query=SELECT%20version()`)).text()).trim()} on loopback, beside the JSONL store (shared, busy machine: rely on the same-run ratios)`);
  try {
    const perClient = Math.floor(POINTS / 4) * 4;
    if (part("ingest")) await attempt("clickhouse ingest points/s", async () => {
      const jsonl = await childServer(["--root", path.join(root, "served")]);
      const a = await childServer(["--clickhouse", db("ingest")]);
      const b = await childServer(["--clickhouse", db("ingest")]);
      try {
        const jsonlRun = await runClients([{ url: jsonl.url, prefix: "bench/ingest/jsonl" }], perClient, home, { servers: [jsonl.pid] });
        await checkIngested(jsonl.url, "bench/ingest/jsonl", perClient);
        const one = await runClients([{ url: a.url, prefix: "bench/ingest/one" }], perClient, home, { servers: [a.pid], clickhouse: clickhouse.pid });
        await checkIngested(b.url, "bench/ingest/one", perClient);
        const two = await runClients(
          [{ url: a.url, prefix: "bench/ingest/two-a" }, { url: b.url, prefix: "bench/ingest/two-b" }],
          perClient,
          home,
          { servers: [a.pid, b.pid], clickhouse: clickhouse.pid },
        );
        await checkIngested(b.url, "bench/ingest/two-a", perClient);
        await checkIngested(a.url, "bench/ingest/two-b", perClient);
        console.log(`  ingest (${fmt(perClient)} points a client, every one read back)`);
        console.log(describeRun("JSONL store, one server", jsonlRun));
        console.log(describeRun("ClickHouse, one server", one, { name: "JSONL", rate: jsonlRun.pointsPerSec }));
        console.log(describeRun("ClickHouse, two servers, 2 clients", two, { name: "one server", rate: one.pointsPerSec }));
        results.push(
          { runtime, figure: "clickhouse ingest points/s", value: one.pointsPerSec, baseline: jsonlRun.pointsPerSec, unit: "points/s", note: `one server; baseline: JSONL store` },
          { runtime, figure: "clickhouse 2 servers points/s", value: two.pointsPerSec, baseline: one.pointsPerSec, unit: "points/s", note: `2 clients; baseline: one server` },
        );
      } finally {
        await Promise.all([jsonl.close(), a.close(), b.close()]);
      }
    });

    if (part("series")) await attempt("clickhouse summary + downsample", async () => {
      const prefix = "bench/read/series";
      const jsonl = new JsonlStore(path.join(root, "series"));
      const ch = await ClickHouseStore.connect(db("series"));
      try {
        let t0 = performance.now();
        await fillSeries(jsonl, prefix, SERIES);
        const jsonlFill = (performance.now() - t0) / 1000;
        t0 = performance.now();
        await fillSeries(ch, prefix, SERIES);
        const chFill = (performance.now() - t0) / 1000;
        const merging = await mergesDone(clickhouse.url);
        const j = await summaryAndDownsample(jsonl, prefix, SERIES);
        const c = await summaryAndDownsample(ch, prefix, SERIES);
        console.log(`  (ClickHouse finished merging the inserted parts ${merging.toFixed(1)} s after the last insert; the reads start then)`);
        console.log(`  ${fmt(SERIES)}-point series (stored in ${jsonlFill.toFixed(1)} s JSONL, ${chFill.toFixed(1)} s ClickHouse, through the stores)`);
        console.log(`    summary              JSONL ${j.summary.toFixed(3)} s   ClickHouse ${c.summary.toFixed(3)} s`);
        console.log(`    downsample to ${fmt(TARGET_POINTS)}  JSONL ${j.downsample.toFixed(3)} s   ClickHouse ${c.downsample.toFixed(3)} s`);
        results.push(
          { runtime, figure: "clickhouse summary + downsample", value: c.summary + c.downsample, baseline: j.summary + j.downsample, unit: "s", note: `${fmt(SERIES)} points; baseline: JSONL store` },
          { runtime, figure: "clickhouse store points/s", value: SERIES / chFill, baseline: SERIES / jsonlFill, unit: "points/s", note: `batches of 100,000 records, through the store` },
        );
      } finally {
        await Promise.all([jsonl.close(), ch.close()]);
      }
    });

    if (part("list")) await attempt("clickhouse list experiments", async () => {
      const jsonl = new JsonlStore(path.join(root, "list"));
      const ch = await ClickHouseStore.connect(db("list"));
      try {
        await fillExperiments(jsonl, EXPERIMENTS);
        await fillExperiments(ch, EXPERIMENTS);
        const j = await listAll(jsonl, EXPERIMENTS);
        const c = await listAll(ch, EXPERIMENTS);
        console.log(`  list ${fmt(EXPERIMENTS)} experiments  JSONL ${j.toFixed(3)} s   ClickHouse ${c.toFixed(3)} s`);
        results.push({ runtime, figure: "clickhouse list experiments", value: c, baseline: j, unit: "s", note: `${fmt(EXPERIMENTS)} experiments; baseline: JSONL store` });
      } finally {
        await Promise.all([jsonl.close(), ch.close()]);
      }
    });

    if (part("chart")) await attempt("clickhouse first chart, cold", async () => {
      const prefix = "bench/chart/run";
      const jsonlRoot = path.join(root, "chart");
      const jsonl = new JsonlStore(jsonlRoot);
      const ch = await ClickHouseStore.connect(db("chart"));
      await fillSeries(jsonl, prefix, CHART);
      await fillSeries(ch, prefix, CHART);
      await Promise.all([jsonl.close(), ch.close()]);
      await fetch(`${clickhouse.url}/?query=${encodeURIComponent("SYSTEM DROP MARK CACHE")}`, { method: "POST" }).then((r) => r.text());
      const chServer = await childServer(["--clickhouse", db("chart")]);
      const jsonlServer = await childServer(["--root", jsonlRoot]);
      try {
        const c = await firstChart(chServer.url, prefix, CHART);
        const j = await firstChart(jsonlServer.url, prefix, CHART);
        console.log(`  first chart of a ${fmt(CHART)}-point run, fresh server  JSONL ${fmt(j, 1)} ms   ClickHouse ${fmt(c, 1)} ms`);
        results.push({ runtime, figure: "clickhouse first chart, cold", value: c, baseline: j, unit: "ms", note: `${fmt(CHART)} points; baseline: JSONL store` });
      } finally {
        await Promise.all([chServer.close(), jsonlServer.close()]);
      }
    });
  } finally {
    await clickhouse.stop();
    fs.rmSync(root, { recursive: true, force: true });
    fs.rmSync(home, { recursive: true, force: true });
  }
  emit(results);
  if (hasFlag("fail-on-error") && results.some((r) => r.value === null)) process.exitCode = 1;
}

if (hasFlag("client")) await client();
else await main();
