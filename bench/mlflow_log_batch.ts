/**
 * MLflow `runs/log-batch` throughput: one server (`serve()` from server.ts, on
 * this runtime, in a child process, loopback, the JSONL store) and a TypeScript
 * load generator that sends log-batch requests of 1,000 metrics each (10 keys ×
 * 100 steps), shaped as the MLflow Python client sends them, from C concurrent
 * senders into R runs. The bodies are built before the clock starts; the figure
 * is points / (last answer − first request). Every point is then counted back
 * through `metrics/get-history`.
 *
 * Run: `deno run -A bench/mlflow_log_batch.ts --points=2000000 --senders=8 --runs=4` (or bun).
 *
 * @module
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import { serve } from "../server.ts";
import { argInt, argString, emit, fmt, hasFlag, runtimeName, selfCommand, tempDir, wallClockMs } from "./_common.ts";

const POINTS = argInt("points", 2_000_000);
const SENDERS = argInt("senders", 8);
const RUNS = argInt("runs", 4);
const KEYS = 10;
const STEPS_PER_REQUEST = 100;
const API = "/api/2.0/mlflow";

/** The server process: serves a temp root and prints its URL. */
async function server(): Promise<void> {
  const root = argString("root", "");
  const running = await serve({ root, port: 0, quiet: true });
  console.log(`URL ${running.url}`);
  await new Promise((resolve) => process.stdin.once("end", resolve).resume());
  await running.close();
}

async function post(url: string, endpoint: string, body: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${url}${API}/${endpoint}`, { method: "POST", headers: { "content-type": "application/json" }, body });
  const answer = await res.json() as Record<string, unknown>;
  if (res.status !== 200) throw new Error(`${endpoint} answered ${res.status}: ${JSON.stringify(answer)}`);
  return answer;
}

/** The bodies of every request, run by run: 1,000 points each, steps that never repeat within a run. */
function bodies(runIds: string[], requests: number): string[] {
  const out: string[] = [];
  const t0 = 1_700_000_000_000;
  for (let r = 0; r < requests; r++) {
    const runId = runIds[r % runIds.length];
    const first = Math.floor(r / runIds.length) * STEPS_PER_REQUEST;
    const metrics = [];
    for (let s = 0; s < STEPS_PER_REQUEST; s++) {
      const step = first + s;
      for (let k = 0; k < KEYS; k++) metrics.push({ key: `train/m${k}`, value: Math.sin(step + k), timestamp: t0 + step, step });
    }
    out.push(JSON.stringify({ run_id: runId, metrics, params: [], tags: [] }));
  }
  return out;
}

/** Starts the server in a child process on this runtime; its URL and how to stop it. */
async function startServer(): Promise<{ url: string; stop: () => void }> {
  const root = tempDir("mlflow");
  const [exec, ...args] = selfCommand(import.meta.url, ["--serve", `--root=${root}`]);
  const child = spawn(exec, args, { stdio: ["pipe", "pipe", "inherit"] });
  const url = await new Promise<string>((resolve, reject) => {
    let text = "";
    child.stdout!.on("data", (chunk) => {
      text += chunk;
      const found = /URL (\S+)/.exec(text);
      if (found) resolve(found[1]);
    });
    child.on("exit", (code) => reject(new Error(`The server exited with ${code}`)));
  });
  return {
    url,
    stop: () => {
      child.stdin!.end();
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}

async function main(): Promise<void> {
  // --url=http://127.0.0.1:PORT loads a server started elsewhere (e.g. under a profiler) instead of one of our own.
  const external = argString("url", "");
  const { url, stop } = external ? { url: external.replace(/\/$/, ""), stop: () => {} } : await startServer();
  try {
    const { experiment_id } = await post(url, "experiments/create", JSON.stringify({ name: external ? `bench/mlflow-${Date.now()}` : "bench/mlflow" })) as { experiment_id: string };
    const runIds: string[] = [];
    for (let i = 0; i < RUNS; i++) {
      const { run } = await post(url, "runs/create", JSON.stringify({ experiment_id, run_name: `run-${i}`, start_time: Date.now(), tags: [] })) as { run: { info: { run_id: string } } };
      runIds.push(run.info.run_id);
    }
    const requests = Math.ceil(POINTS / (KEYS * STEPS_PER_REQUEST));
    const all = bodies(runIds, requests);
    // Requests of one run go one at a time (as one client's would); senders work on different runs.
    const queues = runIds.map((_, i) => all.filter((_, r) => r % runIds.length === i));
    const start = wallClockMs();
    await Promise.all(Array.from({ length: SENDERS }, async (_, s) => {
      const mine = queues.filter((_, i) => i % SENDERS === s);
      await Promise.all(mine.map(async (queue) => {
        for (const body of queue) await post(url, "runs/log-batch", body);
      }));
    }));
    const seconds = (wallClockMs() - start) / 1000;
    const points = requests * KEYS * STEPS_PER_REQUEST;
    let counted = 0;
    for (const runId of runIds) {
      for (let k = 0; k < KEYS; k++) {
        const res = await fetch(`${url}${API}/metrics/get-history?run_id=${runId}&metric_key=train/m${k}&max_results=10000000`);
        counted += ((await res.json()) as { metrics: unknown[] }).metrics.length;
      }
    }
    if (counted !== points) throw new Error(`Sent ${points} points, the server holds ${counted}`);
    const rate = points / seconds;
    console.log(`${runtimeName()}: ${fmt(points)} points in ${requests} log-batch requests (${SENDERS} senders, ${RUNS} runs) in ${fmt(seconds, 2)} s: ${fmt(rate)} points/s; all ${fmt(counted)} read back`);
    emit([{ runtime: runtimeName(), figure: "mlflow log-batch points/s", value: Math.round(rate), unit: "points/s" }]);
  } finally {
    stop();
  }
}

if (hasFlag("serve")) await server();
else await main();
