/**
 * Remote logging throughput: the workload of bench/log_throughput.ts (N points,
 * 4 numeric fields per `log()` call, through the Experiment API) sent to an
 * ml-dash server over loopback. The server runs as a child process on the same
 * runtime (`ml-dash serve`), or in this process with `--in-process`. Every point
 * is checked on the server's disk. Also compares gzip on and off for the same
 * batches sent through the HTTP backend directly.
 *
 * Run: `deno run -A bench/remote_throughput.ts --points=4000000` (or bun; node on the compiled file).
 *
 * @module
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { Experiment } from "../mod.ts";
import { serve } from "../server.ts";
import { HttpBackend } from "../storage/http.ts";
import { argInt, countLines, emit, fmt, hasFlag, PeakRss, runtimeName, tempDir } from "./_common.ts";

const POINTS = argInt("points", 4_000_000);
const CALLS = Math.floor(POINTS / 4);

interface Server {
  url: string;
  close(): Promise<void>;
}

/** `ml-dash serve` as a child process on this runtime (the compiled cli.js under Node). */
async function childServer(root: string): Promise<Server> {
  const here = fileURLToPath(import.meta.url);
  const cli = path.join(path.dirname(here), "..", here.endsWith(".ts") ? "cli.ts" : "cli.js");
  const args = ["serve", "--root", root, "--port", "0"];
  const child: ChildProcess = runtimeName() === "deno"
    ? spawn(process.execPath, ["run", "-A", cli, ...args], { stdio: ["ignore", "pipe", "inherit"] })
    : spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "pipe", "inherit"] });
  const url = await new Promise<string>((resolve, reject) => {
    let text = "";
    child.stdout!.setEncoding("utf8").on("data", (s: string) => {
      text += s;
      const match = /at (http:\/\/\S+)/.exec(text);
      if (match) resolve(match[1]);
    });
    child.once("exit", (code) => reject(new Error(`server exited (${code}): ${text}`)));
  });
  return {
    url,
    close: () =>
      new Promise((resolve) => {
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}

async function inProcessServer(root: string): Promise<Server> {
  const server = await serve({ root, port: 0, quiet: true });
  return { url: server.url, close: () => server.close() };
}

/** The log_throughput workload, to a server; the clock stops when complete() is acknowledged. */
async function tracker(url: string, serverRoot: string): Promise<{ pointsPerSec: number; seconds: number; peakRssMB: number }> {
  const rss = new PeakRss();
  const t0 = performance.now();
  const exp = new Experiment({ prefix: "bench/remote/throughput", dashUrl: url });
  await exp.run.start();
  const train = exp.metrics("train");
  for (let i = 0; i < CALLS; i++) {
    train.log({ loss: 1 / (i + 1), acc: i / CALLS, lr: 0.001, epoch: i >> 12 });
    if ((i & 0x3fff) === 0) {
      rss.sample();
      // A training loop waits on I/O now and then (data loading, GPU sync): a macrotask,
      // which lets requests go out while the loop runs. A microtask would not.
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
  }
  await exp.run.complete();
  const seconds = (performance.now() - t0) / 1000;
  rss.sample();
  const lines = countLines(path.join(serverRoot, "bench/remote/throughput/metrics/train.jsonl"));
  if (lines !== CALLS) throw new Error(`Expected ${CALLS} records on the server's disk, found ${lines}`);
  return { pointsPerSec: POINTS / seconds, seconds, peakRssMB: rss.peak / 2 ** 20 };
}

/** Sends the same 8 MiB-or-so batches through HttpBackend with gzip off or on. */
async function gzipCompare(url: string, serverRoot: string, gzip: boolean): Promise<number> {
  const calls = Math.min(CALLS, 500_000);
  const chunks: string[] = [];
  let lines: string[] = [];
  for (let i = 0; i < calls; i++) {
    lines.push(`{"_ts":${Date.now() / 1000},"step":${i},"loss":${1 / (i + 1)},"acc":${i / calls},"lr":0.001,"epoch":${i >> 12}}`);
    if (lines.length === 1024) {
      chunks.push(lines.join("\n"));
      lines = [];
    }
  }
  if (lines.length) chunks.push(lines.join("\n"));
  const prefix = `bench/remote/gzip-${gzip}`;
  const backend = new HttpBackend({ url, gzip, outbox: false });
  const t0 = performance.now();
  await backend.write(prefix, { metadata: { prefix }, metrics: { train: chunks } });
  const seconds = (performance.now() - t0) / 1000;
  const stored = countLines(path.join(serverRoot, prefix, "metrics/train.jsonl"));
  if (stored !== calls) throw new Error(`gzip=${gzip}: expected ${calls} records, found ${stored}`);
  return (calls * 4) / seconds;
}

const runtime = runtimeName();
const serverRoot = tempDir("remote");
const where = hasFlag("in-process") ? "in this process" : "a child process";
const server = hasFlag("in-process") ? await inProcessServer(serverRoot) : await childServer(serverRoot);
try {
  const ours = await tracker(server.url, serverRoot);
  const plain = await gzipCompare(server.url, serverRoot, false);
  const zipped = await gzipCompare(server.url, serverRoot, true);
  console.log(`remote_throughput on ${runtime}: ${fmt(POINTS)} points (${fmt(CALLS)} calls × 4 fields) to a server in ${where} over loopback, every point checked on the server's disk`);
  console.log(`  ml-dash remote  ${fmt(ours.pointsPerSec).padStart(12)} points/s  ${ours.seconds.toFixed(2)} s  peak RSS ${fmt(ours.peakRssMB)} MB`);
  console.log(`  HttpBackend batches, gzip off ${fmt(plain).padStart(12)} points/s`);
  console.log(`  HttpBackend batches, gzip on  ${fmt(zipped).padStart(12)} points/s  (gzip is off by default on loopback)`);
  emit([
    { runtime, figure: "remote points/s", value: ours.pointsPerSec, unit: "points/s" },
    { runtime, figure: "remote peak RSS", value: ours.peakRssMB, unit: "MB" },
    { runtime, figure: "remote batches gzip off", value: plain, unit: "points/s" },
    { runtime, figure: "remote batches gzip on", value: zipped, unit: "points/s" },
  ]);
} finally {
  await server.close();
  fs.rmSync(serverRoot, { recursive: true, force: true });
}
