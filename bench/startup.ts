/**
 * Start-up cost, each sample in a fresh process: the time of
 * `await import("../mod.ts")` measured with `performance.now()` inside the
 * child (_startup_child.ts, which imports nothing before the clock starts), and
 * the time to open a local experiment, log its first point and flush it to disk
 * (which includes loading the JSONL backend and the runtime's `node:fs`). The
 * point is checked on disk. The second figure is measured again with `node:fs`
 * loaded before the clock starts, as in a script that already uses it. One
 * warm-up process runs first (Deno caches transpiled code).
 *
 * Run: `deno run -A bench/startup.ts --runs=15` (or bun; node on the compiled file).
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import * as path from "node:path";
import { argInt, countLines, emit, fmt, runtimeName, selfCommand, tempDir } from "./_common.ts";

const RUNS = argInt("runs", 15);

interface Sample {
  importMs: number;
  firstPointMs: number;
}

/** One fresh process running _startup_child.ts; its point is checked on disk. */
function sampleOnce(warm = false): Sample {
  const cwd = tempDir("startup");
  const child = new URL(`./_startup_child${import.meta.url.endsWith(".ts") ? ".ts" : ".js"}`, import.meta.url);
  const [cmd, ...args] = selfCommand(child.href, warm ? ["--warm"] : []);
  const out = spawnSync(cmd, args, { cwd, encoding: "utf8" });
  const line = out.stdout.split("\n").find((l) => l.startsWith("SAMPLE "));
  if (out.status !== 0 || !line) throw new Error(`Start-up child failed (exit ${out.status}): ${out.stderr}`);
  const lines = countLines(path.join(cwd, ".dash/bench/local/startup/metrics/train.jsonl"));
  if (lines !== 1) throw new Error(`Expected 1 record on disk, found ${lines}`);
  rmSync(cwd, { recursive: true, force: true });
  return JSON.parse(line.slice("SAMPLE ".length));
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

const runtime = runtimeName();
sampleOnce(); // warm-up
const samples: Sample[] = [];
for (let i = 0; i < RUNS; i++) samples.push(sampleOnce());
const warmFirsts: number[] = [];
for (let i = 0; i < RUNS; i++) warmFirsts.push(sampleOnce(true).firstPointMs);
const imports = samples.map((s) => s.importMs);
const firsts = samples.map((s) => s.firstPointMs);
const range = (v: number[]) => `min ${fmt(Math.min(...v), 2)}  max ${fmt(Math.max(...v), 2)}`;
console.log(`startup on ${runtime}: ${RUNS} fresh processes (after one warm-up), the point checked on disk`);
console.log(`  import mod.ts                      median ${fmt(median(imports), 2)} ms  ${range(imports)}`);
console.log(`  open + first log + flush (local)   median ${fmt(median(firsts), 2)} ms  ${range(firsts)}`);
console.log(`  the same, node:fs already loaded   median ${fmt(median(warmFirsts), 2)} ms  ${range(warmFirsts)}`);
emit([
  { runtime, figure: "import mod.ts", value: median(imports), unit: "ms", note: `median of ${RUNS}` },
  { runtime, figure: "open + first point", value: median(firsts), unit: "ms", note: `median of ${RUNS}` },
  { runtime, figure: "open + first point, fs loaded", value: median(warmFirsts), unit: "ms", note: `median of ${RUNS}; node:fs imported before` },
]);
