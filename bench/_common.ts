/**
 * Helpers shared by the benchmarks: runtime name, memory sampling, line counting.
 *
 * @module
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

/** The runtime this script runs on. */
export function runtimeName(): "deno" | "bun" | "node" {
  const agent = globalThis.navigator?.userAgent ?? "";
  if (agent.startsWith("Deno/")) return "deno";
  if (agent.startsWith("Bun/")) return "bun";
  return "node";
}

/** Tracks the peak resident set size, sampled whenever `sample()` is called. */
export class PeakRss {
  /** The highest RSS seen, in bytes. */
  peak = 0;
  /** Samples the current RSS. */
  sample(): void {
    const rss = process.memoryUsage.rss?.() ?? process.memoryUsage().rss;
    if (rss > this.peak) this.peak = rss;
  }
}

/** A fresh temporary directory. */
export function tempDir(name: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `ml-dash-bench-${name}-`));
}

/** Counts the lines of a file without holding it in memory. */
export function countLines(file: string): number {
  const fd = fs.openSync(file, "r");
  const buffer = new Uint8Array(1 << 22);
  let lines = 0;
  try {
    for (;;) {
      const n = fs.readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) break;
      for (let i = 0; i < n; i++) if (buffer[i] === 10) lines++;
    }
  } finally {
    fs.closeSync(fd);
  }
  return lines;
}

/** Reads an integer from the command line (`--name=value`) or returns the default. */
export function argInt(name: string, fallback: number): number {
  const args = globalThis.process?.argv ?? [];
  const found = args.find((a) => a.startsWith(`--${name}=`));
  return found ? Number(found.slice(name.length + 3).replace(/_/g, "")) : fallback;
}

/** The p-th percentile (0–100) of sorted numbers. */
export function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}

/** Formats a number with thousands separators. */
export function fmt(n: number, digits = 0): string {
  return n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** Prints one result line as JSON (for run_all.ts) after the human-readable table. */
export function emit(results: Record<string, unknown>[]): void {
  for (const r of results) console.log(`RESULT ${JSON.stringify(r)}`);
}

/**
 * The command that runs a bench module again on this runtime, in a fresh
 * process: `[executable, ...args]`. `moduleUrl` is the module's `import.meta.url`
 * (the compiled .js under Node).
 */
export function selfCommand(moduleUrl: string, args: string[]): string[] {
  const file = fileURLToPath(moduleUrl);
  const exec = process.execPath;
  return runtimeName() === "deno" ? [exec, "run", "-A", file, ...args] : [exec, file, ...args];
}

/** Wall-clock time in ms with sub-millisecond resolution, comparable across processes. */
export function wallClockMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Reads a string from the command line (`--name=value`) or returns the default. */
export function argString(name: string, fallback: string): string {
  const args = globalThis.process?.argv ?? [];
  const found = args.find((a) => a.startsWith(`--${name}=`));
  return found ? found.slice(name.length + 3) : fallback;
}

/** Whether a flag (`--name`) is on the command line. */
export function hasFlag(name: string): boolean {
  return (globalThis.process?.argv ?? []).includes(`--${name}`);
}
