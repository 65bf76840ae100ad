/**
 * Runs every benchmark on every runtime, one child process at a time, collects
 * the `RESULT {json}` lines they print, and prints one table: runtime, figure,
 * value, baseline, ratio, target, met? — then the machine it ran on.
 *
 * Deno runs the .ts files (`deno run -A`), Bun runs them directly, and Node runs
 * the build that `tsc -p bench/tsconfig.json` writes to `.build-bench/`.
 *
 * Usage: `npm run bench` (= `deno run -A bench/run_all.ts`), with options
 *   --quick                      small N: checks that everything works, in a minute or two
 *   --runtimes=deno,bun,node     which runtimes (default: all three)
 *   --only=startup,read_series   which scripts (default: all)
 *   --markdown                   also print the table as Markdown (for docs/performance.md)
 *   --json=FILE                  also write the rows and the machine as JSON
 *
 * @module
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { argString, fmt, hasFlag } from "./_common.ts";

type Runtime = "deno" | "bun" | "node";

const repo = fileURLToPath(new URL("..", import.meta.url));
const bin = (name: string) => path.join(repo, "node_modules", ".bin", name);
const quick = hasFlag("quick");
const runtimes = argString("runtimes", "deno,bun,node").split(",").filter(Boolean) as Runtime[];
const only = argString("only", "").split(",").filter(Boolean);

/** A bench script with its arguments for a full run and for `--quick`. */
interface Script {
  file: string;
  full: string[];
  quick: string[];
}

const SCRIPTS: Script[] = [
  { file: "log_throughput.ts", full: ["--points=20000000"], quick: ["--points=400000"] },
  { file: "memory_sync_loop.ts", full: ["--points=20000000"], quick: ["--points=1000000"] },
  { file: "remote_throughput.ts", full: ["--points=4000000"], quick: ["--points=400000"] },
  { file: "remote_many_clients.ts", full: ["--points=8000000", "--clients=16"], quick: ["--points=640000", "--clients=16"] },
  { file: "read_series.ts", full: ["--points=10000000", "--experiments=10000"], quick: ["--points=500000", "--experiments=1000"] },
  { file: "startup.ts", full: ["--runs=15"], quick: ["--runs=5"] },
  {
    file: "clickhouse.ts",
    full: ["--points=2000000", "--series=10000000", "--experiments=10000", "--chart=1000000"],
    quick: ["--points=400000", "--series=500000", "--experiments=1000", "--chart=100000"],
  },
];

/** One row of a benchmark's output (see `emit` in _common.ts). */
interface Row {
  runtime: string;
  figure: string;
  value: number | null;
  baseline?: number;
  unit: string;
  note?: string;
  error?: string;
}

/**
 * A target of the performance issue. Node is held to half of each target
 * (half the rate, twice the time or memory); a baseline comparison holds on all.
 */
interface Target {
  match: RegExp;
  op: ">=" | "<=";
  value: number;
  /** Also require value / baseline ≥ 1 (not slower than the naive baseline). */
  beatBaseline?: boolean;
}

const TARGETS: Target[] = [
  { match: /^local points\/s$/, op: ">=", value: 5_000_000, beatBaseline: true },
  { match: /^local peak RSS$/, op: "<=", value: 150 },
  { match: /^amortized log\(\) cost$/, op: "<=", value: 250 },
  { match: /^log\(\) max$/, op: "<=", value: 1_000_000 },
  { match: /^sync-loop peak RSS$/, op: "<=", value: 150 },
  { match: /^remote (1 client|single client|one client|client) ?points\/s$|^remote points\/s$/, op: ">=", value: 2_000_000 },
  { match: /^remote many clients points\/s$/, op: ">=", value: 1_000_000 },
  { match: /^summary \+ downsample$/, op: "<=", value: 2 },
  { match: /^list experiments$/, op: "<=", value: 1 },
  { match: /^import mod\.ts$/, op: "<=", value: 15 },
  { match: /^open \+ first point$/, op: "<=", value: 5 },
  // The ClickHouse store (bench/clickhouse.ts): each figure beside the JSONL store's in the same run.
  { match: /^clickhouse ingest points\/s$/, op: ">=", value: 0, beatBaseline: true },
  { match: /^clickhouse 2 servers points\/s$/, op: ">=", value: 0, beatBaseline: true },
  { match: /^clickhouse summary \+ downsample$/, op: "<=", value: 0.5 },
  { match: /^clickhouse list experiments$/, op: "<=", value: 0.3 },
  { match: /^clickhouse first chart, cold$/, op: "<=", value: 300 },
];

function targetOf(row: Row): { op: string; value: number; beatBaseline?: boolean } | undefined {
  const t = TARGETS.find((t) => t.match.test(row.figure));
  if (!t) return undefined;
  const factor = row.runtime === "node" ? 2 : 1;
  return { op: t.op, value: t.op === ">=" ? t.value / factor : t.value * factor, beatBaseline: t.beatBaseline };
}

function format(value: number | null | undefined, unit: string): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "";
  switch (unit) {
    case "points/s":
      return `${fmt(value)}/s`;
    case "ns":
    case "ns/call":
      return value >= 100_000 ? `${fmt(value / 1e6, 2)} ms` : `${fmt(value)} ns`;
    case "ms":
      return `${fmt(value, 1)} ms`;
    case "s":
      return `${fmt(value, 2)} s`;
    case "MB":
      return `${fmt(value)} MB`;
    default:
      return `${fmt(value, 2)} ${unit}`;
  }
}

/** Table cells of a row: runtime, figure, value, baseline, ratio, target, met?, note. */
function cells(row: Row): string[] {
  if (row.value === null) return [row.runtime, row.figure, "ERROR", "", "", "", "no", row.error ?? "failed"];
  const target = targetOf(row);
  const ratio = row.baseline ? row.value / row.baseline : undefined;
  let met = "";
  if (target) {
    const ok = target.op === ">=" ? row.value >= target.value : row.value <= target.value;
    const okBaseline = !target.beatBaseline || (ratio !== undefined && ratio >= 1);
    met = ok && okBaseline ? "yes" : !ok ? "no" : "no (slower than baseline)";
  }
  return [
    row.runtime,
    row.figure,
    format(row.value, row.unit),
    format(row.baseline, row.unit),
    ratio === undefined ? "" : `${ratio.toFixed(2)}×`,
    target ? `${target.op === ">=" ? "≥" : "≤"} ${format(target.value, row.unit)}` : "",
    met,
    row.note ?? "",
  ];
}

// ─── Running the scripts ────────────────────────────────────────────────────

/** Compiles the scripts and the library for Node into .build-bench/. */
function compileForNode(): string | undefined {
  const out = spawnSync(bin("tsc"), ["-p", "bench/tsconfig.json"], { cwd: repo, encoding: "utf8" });
  // The build folder keeps itself out of git.
  fs.mkdirSync(path.join(repo, ".build-bench"), { recursive: true });
  fs.writeFileSync(path.join(repo, ".build-bench", ".gitignore"), "*\n");
  if (out.status !== 0) return `tsc failed: ${(out.stdout + out.stderr).trim().split("\n").slice(0, 5).join(" | ")}`;
  return undefined;
}

function command(runtime: Runtime, file: string): string[] {
  if (runtime === "deno") return [bin("deno"), "run", "-A", path.join("bench", file)];
  if (runtime === "bun") return [bin("bun"), path.join("bench", file)];
  return ["node", path.join(".build-bench", "bench", file.replace(/\.ts$/, ".js"))];
}

/** Runs one script, echoing its output indented, and returns its result rows (an error row if it fails). */
function runScript(runtime: Runtime, script: Script): Promise<Row[]> {
  const [cmd, ...args] = [...command(runtime, script.file), ...(quick ? script.quick : script.full)];
  console.log(`\n$ ${[path.relative(repo, cmd) || cmd, ...args].join(" ")}`);
  const started = performance.now();
  // Each script writes its temporary directories (GBs at full N) under its own TMPDIR, removed afterwards.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ml-dash-bench-run-"));
  const child = spawn(cmd, args, { cwd: repo, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, TMPDIR: tmp } });
  const rows: Row[] = [];
  let tail = "";
  let pending = "";
  const onOut = (chunk: Buffer) => {
    pending += chunk.toString();
    const lines = pending.split("\n");
    pending = lines.pop()!;
    for (const line of lines) {
      if (line.startsWith("RESULT ")) rows.push(JSON.parse(line.slice("RESULT ".length)));
      else console.log(`  ${line}`);
    }
  };
  child.stdout.on("data", onOut);
  child.stderr.on("data", (chunk: Buffer) => {
    tail = (tail + chunk.toString()).slice(-4000);
    process.stderr.write(chunk);
  });
  const limitMs = (quick ? 5 : 25) * 60_000;
  const timer = setTimeout(() => child.kill("SIGKILL"), limitMs);
  return new Promise((resolve) => {
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      fs.rmSync(tmp, { recursive: true, force: true });
      if (pending) onOut(Buffer.from("\n"));
      const seconds = (performance.now() - started) / 1000;
      console.log(`  (${seconds.toFixed(1)} s, exit ${code ?? signal})`);
      // A row without a note says which arguments it ran with (N).
      const given = args.filter((a) => a.startsWith("--")).map((a) => a.slice(2).replace(/=(\d+)$/, (_, n) => `=${fmt(Number(n))}`));
      for (const row of rows) row.note ??= given.join(" ");
      if (code === 0) return resolve(rows);
      const last = tail.trim().split("\n").filter((l) => /error/i.test(l)).pop() ?? tail.trim().split("\n").pop() ?? "";
      const why = signal === "SIGKILL" ? `killed after ${limitMs / 60_000} min` : `exit ${code}: ${last.trim().slice(0, 160)}`;
      resolve([...rows, { runtime, figure: script.file, value: null, unit: "", error: why }]);
    });
  });
}

// ─── The machine ────────────────────────────────────────────────────────────

function versionOf(cmd: string, args: string[]): string {
  const out = spawnSync(cmd, args, { encoding: "utf8" });
  return out.status === 0 ? out.stdout.trim().split("\n")[0] : "unavailable";
}

/** The commit measured, and the library files that differ from it. */
function codeVersion(): string {
  const head = versionOf("git", ["-C", repo, "rev-parse", "--short", "HEAD"]);
  const status = spawnSync("git", ["-C", repo, "status", "--porcelain", "--", "mod.ts", "storage", "server.ts", "cli.ts"], { encoding: "utf8" });
  const changed = (status.stdout ?? "").split("\n").filter(Boolean).map((l) => l.slice(3));
  return changed.length ? `${head} + uncommitted changes to ${changed.join(", ")}` : head;
}

function machine(): Record<string, string> {
  let cpu = os.cpus()[0]?.model ?? "unknown";
  try {
    const line = fs.readFileSync("/proc/cpuinfo", "utf8").split("\n").find((l) => l.startsWith("model name"));
    if (line) cpu = line.split(":")[1].trim();
  } catch {
    // Not Linux: os.cpus() is all there is.
  }
  return {
    cpu,
    cores: String(os.cpus().length),
    memory: `${fmt(os.totalmem() / 2 ** 30, 1)} GiB`,
    os: `${os.type()} ${os.release()}`,
    deno: versionOf(bin("deno"), ["--version"]),
    bun: versionOf(bin("bun"), ["--version"]),
    node: versionOf("node", ["--version"]),
    typescript: versionOf(bin("tsc"), ["--version"]),
    code: codeVersion(),
    "load average at start": os.loadavg().map((l) => l.toFixed(2)).join(" "),
  };
}

// ─── Main ───────────────────────────────────────────────────────────────────

const host = machine();
const startedAt = new Date();
const rows: Row[] = [];
for (const runtime of runtimes) {
  if (runtime === "node") {
    const failure = compileForNode();
    if (failure) {
      console.log(`\n${failure}`);
      rows.push({ runtime, figure: "tsc build", value: null, unit: "", error: failure });
      continue;
    }
  }
  for (const script of SCRIPTS) {
    if (only.length > 0 && !only.includes(script.file.replace(/\.ts$/, ""))) continue;
    if (!fs.existsSync(path.join(repo, "bench", script.file))) {
      console.log(`\n(bench/${script.file} does not exist yet: skipped)`);
      continue;
    }
    rows.push(...await runScript(runtime, script));
  }
}
host["load average at end"] = os.loadavg().map((l) => l.toFixed(2)).join(" ");
const minutes = (Date.now() - startedAt.getTime()) / 60_000;

const header = ["runtime", "figure", "value", "baseline", "ratio", "target", "met?", "note"];
const table = [header, ...rows.map(cells)];
const widths = header.map((_, i) => Math.max(...table.map((r) => r[i].length)));
const rightAligned = new Set([2, 3, 4]);
const line = (r: string[]) => r.map((c, i) => (rightAligned.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ").trimEnd();
console.log(`\nml-dash benchmarks — ${quick ? "QUICK run (small N: the targets are stated for the full N)" : "full run"}, ${startedAt.toISOString().slice(0, 16).replace("T", " ")} UTC, ${minutes.toFixed(1)} min`);
console.log("Node is held to half of each target; every benchmark checked that every point arrived.\n");
console.log(line(header));
console.log(widths.map((w) => "─".repeat(w)).join("  "));
for (const r of table.slice(1)) console.log(line(r));
console.log("");
for (const [key, value] of Object.entries(host)) console.log(`${key.padEnd(22)} ${value}`);

if (hasFlag("markdown")) {
  console.log("\n| " + header.join(" | ") + " |");
  console.log("|" + header.map((_, i) => (rightAligned.has(i) ? "---:" : "---")).join("|") + "|");
  for (const r of table.slice(1)) console.log("| " + r.map((c) => c.replace(/\|/g, "\\|")).join(" | ") + " |");
}
const jsonFile = argString("json", "");
if (jsonFile) fs.writeFileSync(jsonFile, JSON.stringify({ quick, startedAt, minutes, machine: host, rows }, null, 2) + "\n");
if (rows.some((r) => r.value === null)) process.exitCode = 1;
