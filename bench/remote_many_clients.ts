/**
 * Remote throughput, many clients: one server (`serve()` from server.ts, on this
 * runtime, loopback) and C client processes started together, each logging its
 * share of N points (4 numeric fields per `log()` call) through
 * `new Experiment({ prefix, dashUrl })` into its own experiment. Every client
 * opens its experiment, then all are started at once; the aggregate is
 * N / (last client's durable complete() − first client's first log()), so
 * process start-up is not counted. Every point is then checked on the server's disk.
 *
 * Run: `deno run -A bench/remote_many_clients.ts --points=8000000 --clients=16` (or bun; node on the compiled file).
 *
 * @module
 */
import { spawn } from "node:child_process";
import * as path from "node:path";
import { setImmediate } from "node:timers";
import { Experiment } from "../mod.ts";
import { argInt, argString, countLines, emit, fmt, hasFlag, PeakRss, runtimeName, selfCommand, tempDir, wallClockMs } from "./_common.ts";

const POINTS = argInt("points", 8_000_000);
const CLIENTS = argInt("clients", 16);

interface ClientReport {
  index: number;
  startMs: number;
  endMs: number;
  peakRssMB: number;
}

/** One client process: logs its share to the server, then prints its timings. */
async function client(): Promise<void> {
  const index = argInt("index", 0);
  const calls = Math.floor(argInt("points", 0) / 4);
  const rss = new PeakRss();
  const exp = new Experiment({ prefix: `bench/remote/client-${index}`, dashUrl: argString("url", "") });
  await exp.run.start();
  const train = exp.metrics("train");
  // Every client opens its experiment first; the parent then starts them all at once.
  console.log("READY");
  await new Promise((resolve) => process.stdin.once("data", resolve));
  process.stdin.pause();
  const startMs = wallClockMs();
  for (let i = 0; i < calls; i++) {
    train.log({ loss: 1 / (i + 1), acc: i / calls, lr: 0.001, epoch: i >> 12 });
    if ((i & 0xfff) === 0) {
      rss.sample();
      // A training loop that waits for data or the GPU now and then lets I/O run.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  await exp.run.complete();
  const endMs = wallClockMs();
  rss.sample();
  console.log(`CLIENT ${JSON.stringify({ index, startMs, endMs, peakRssMB: rss.peak / 2 ** 20 } satisfies ClientReport)}`);
}

/** A client process: `ready` resolves when its experiment is open, `go()` starts it, `done` has its report. */
interface ClientProcess {
  ready: Promise<void>;
  go(): void;
  done: Promise<ClientReport>;
}

function startClient(index: number, url: string, points: number, home: string): ClientProcess {
  const [cmd, ...args] = selfCommand(import.meta.url, ["--client", `--index=${index}`, `--points=${points}`, `--url=${url}`]);
  // HOME and the working directory are an empty folder: no stored credentials are read, and an
  // outbox (if the server stopped answering) would land there, not in the repository.
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
    child.on("error", reject);
    child.on("close", (code) => {
      const line = stdout.split("\n").find((l) => l.startsWith("CLIENT "));
      if (code !== 0 || !line) reject(new Error(`Client ${index} failed (exit ${code}): ${stderr.slice(-2000)}`));
      else resolve(JSON.parse(line.slice("CLIENT ".length)));
    });
  });
  // A client that dies before it is ready must not leave the parent waiting.
  return { ready: Promise.race([ready, done.then(() => {})]), go: () => child.stdin.end("go\n"), done };
}

async function main(): Promise<void> {
  const { serve } = await import("../server.ts");
  const runtime = runtimeName();
  const root = tempDir("remote-server");
  const home = tempDir("remote-home");
  const perClient = Math.floor(POINTS / CLIENTS / 4) * 4;
  const rss = new PeakRss();
  const server = await serve({ root, port: 0, quiet: true });
  const sampler = setInterval(() => rss.sample(), 100);
  let reports: ClientReport[];
  try {
    const clients = Array.from({ length: CLIENTS }, (_, i) => startClient(i, server.url, perClient, home));
    await Promise.all(clients.map((c) => c.ready));
    for (const c of clients) c.go();
    reports = await Promise.all(clients.map((c) => c.done));
  } finally {
    clearInterval(sampler);
    await server.close();
  }
  rss.sample();
  let missing = 0;
  for (let i = 0; i < CLIENTS; i++) {
    const lines = countLines(path.join(root, `bench/remote/client-${i}/metrics/train.jsonl`));
    missing += perClient / 4 - lines;
  }
  if (missing !== 0) throw new Error(`${missing} records missing (or duplicated, if negative) on the server's disk`);
  const total = perClient * CLIENTS;
  const seconds = (Math.max(...reports.map((r) => r.endMs)) - Math.min(...reports.map((r) => r.startMs))) / 1000;
  const slowest = Math.max(...reports.map((r) => r.endMs - r.startMs)) / 1000;
  const clientRss = Math.max(...reports.map((r) => r.peakRssMB));
  console.log(`remote_many_clients on ${runtime}: ${CLIENTS} client processes × ${fmt(perClient)} points = ${fmt(total)} points, every point checked on the server's disk`);
  console.log(`  aggregate ${fmt(total / seconds)} points/s  ${seconds.toFixed(2)} s (slowest client ${slowest.toFixed(2)} s)`);
  console.log(`  server peak RSS ${fmt(rss.peak / 2 ** 20)} MB, client peak RSS ${fmt(clientRss)} MB`);
  emit([
    { runtime, figure: "remote many clients points/s", value: total / seconds, unit: "points/s", note: `${CLIENTS} clients, ${fmt(total)} points` },
    { runtime, figure: "remote server peak RSS", value: rss.peak / 2 ** 20, unit: "MB" },
  ]);
}

if (hasFlag("client")) await client();
else await main();
