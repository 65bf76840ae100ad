// Tests that run real child processes (fixtures in testing/fixtures/process_*.ts, on
// the runtime that runs the tests) and check the .dash/ directory they leave behind,
// read back through DashReader: flushing at exit and on signals, timers that never
// keep a process alive, bounded memory, concurrent writers, denied permissions.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { spawn, spawnSync } from "node:child_process";
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { DashReader } from "./storage/jsonl.ts";
import { denoPath, runScript, spawnScript } from "./testing/run_script.ts";

/** Rows and log lines process_lifecycle.ts logs before it ends. */
const LIFECYCLE_RECORDS = 1000;
/** Kill a child that has not ended after this long: it hangs. */
const HANG_GUARD_MS = 20_000;
/**
 * Heap the 2,000,000-point loop may retain. Measured after a full GC: 0.1-1.5 MiB with
 * the buffer bounded; kept in memory, the 500,000 rows retain about 50 MiB on each runtime.
 */
const MAX_HEAP_GROWTH = 24 * 2 ** 20;
/** Deno: ml-dash's exit and signal hooks are Deno's own events rather than `process`'s. */
const IS_DENO = "Deno" in globalThis;
/** Per-test limit (bun's default of 5 s is short for tests that spawn processes). */
const TEST_TIMEOUT = { timeout: 60_000 };

function fixture(name: string): URL {
  return new URL(`./testing/fixtures/${name}`, import.meta.url);
}

/** What an ended child left: exit code or signal, and its output. */
interface Ended {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Collects a child's output; `ended` settles when it exits (or rejects when it hangs). */
function watch(child: ChildProcess): { ended: Promise<Ended>; line: (text: string) => Promise<string> } {
  let stdout = "";
  let stderr = "";
  const waiters: (() => void)[] = [];
  child.stdout!.setEncoding("utf8").on("data", (s: string) => {
    stdout += s;
    for (const wake of waiters) wake();
  });
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  const ended = new Promise<Ended>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`Child hung for ${HANG_GUARD_MS} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, HANG_GUARD_MS);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      for (const wake of waiters) wake();
      resolve({ code, signal, stdout, stderr });
    });
  });
  // Resolves with the first stdout line that starts with `text`.
  const line = (text: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const found = stdout.split("\n").find((l) => l.startsWith(text) && stdout.includes(l + "\n"));
        if (found !== undefined) resolve(found);
        else if (child.exitCode !== null || child.signalCode !== null) {
          reject(new Error(`Child ended before printing "${text}"\nstdout: ${stdout}\nstderr: ${stderr}`));
        }
      };
      waiters.push(check);
      check();
    });
  return { ended, line };
}

/** Checks that every row and the log line process_lifecycle.ts logged are on disk. */
async function assertLifecycleRecords(reader: DashReader, prefix: string): Promise<void> {
  const series = await reader.series(prefix, "train/loss");
  assert.equal(series.step.length, LIFECYCLE_RECORDS, `metric rows of ${prefix}`);
  assert.deepEqual(series.step, Array.from({ length: LIFECYCLE_RECORDS }, (_, i) => i));
  assert.equal(series.value[LIFECYCLE_RECORDS - 1], 1 / LIFECYCLE_RECORDS);
  const logs = await reader.logs(prefix);
  assert.deepEqual(logs.map((l) => [l.message, l.records]), [["buffered", LIFECYCLE_RECORDS]]);
}

/** A temporary dash root per test group, removed afterwards. */
function tempRoot(): { path: string } {
  const root = { path: "" };
  before(() => {
    root.path = mkdtempSync(join(tmpdir(), "ml-dash-process-"));
  });
  after(() => rmSync(root.path, { recursive: true, force: true }));
  return root;
}

describe("Buffered records reach the disk when the process ends", () => {
  const root = tempRoot();

  it("at natural exit, with the run left open", TEST_TIMEOUT, async () => {
    const result = await runScript(fixture("process_lifecycle.ts"), { args: [root.path, "natural"], timeoutMs: HANG_GUARD_MS });
    assert.equal(result.code, 0, result.stderr);
    await assertLifecycleRecords(new DashReader(root.path), "test/process/natural");
  });

  it("when an uncaught error ends the script: the run is FAILED with the error", TEST_TIMEOUT, async () => {
    const result = await runScript(fixture("process_lifecycle.ts"), { args: [root.path, "crash"], timeoutMs: HANG_GUARD_MS });
    assert.notEqual(result.code, 0, "the error still ends the process");
    assert.match(result.stderr, /boom in the training loop/);
    const reader = new DashReader(root.path);
    await assertLifecycleRecords(reader, "test/process/crash");
    const status = await reader.status("test/process/crash");
    assert.equal(status?.status, "FAILED");
    assert.match(String(status?.error), /boom in the training loop/);
    assert.equal(typeof status?.endedAt, "number");
  });

  it("when the script calls process.exit(0)", TEST_TIMEOUT, async () => {
    const result = await runScript(fixture("process_lifecycle.ts"), { args: [root.path, "exit"], timeoutMs: HANG_GUARD_MS });
    assert.equal(result.code, 0, result.stderr);
    await assertLifecycleRecords(new DashReader(root.path), "test/process/exit");
  });
});

describe("SIGINT and SIGTERM", () => {
  const root = tempRoot();

  for (const [signal, exitCode] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    it(`${signal} flushes, records CANCELLED and exits with ${exitCode}`, TEST_TIMEOUT, async () => {
      const dashRoot = join(root.path, signal);
      const child = spawnScript(fixture("process_lifecycle.ts"), { args: [dashRoot, "signal"] });
      child.stdin!.end();
      const { ended, line } = watch(child);
      // One handler each for SIGINT and SIGTERM: ml-dash's, while the run is open.
      assert.equal(await line("ready"), "ready 1 1");
      sendSignal(child, signal);
      const result = await ended;
      assert.deepEqual({ code: result.code, signal: result.signal }, { code: exitCode, signal: null }, result.stderr);
      const reader = new DashReader(dashRoot);
      const status = await reader.status("test/process/signal");
      assert.equal(status?.status, "CANCELLED");
      assert.equal(typeof status?.endedAt, "number");
      await assertLifecycleRecords(reader, "test/process/signal");
    });
  }

  for (const when of ["before", "after"] as const) {
    it(`a SIGINT handler the script installed ${when} the run started stays in charge`, TEST_TIMEOUT, async () => {
      const child = spawnScript(fixture("process_lifecycle.ts"), { args: [root.path, `handler-${when}`] });
      child.stdin!.end();
      const { ended, line } = watch(child);
      // Installed before the run, the user's handler keeps ml-dash from adding its own to `process`.
      // On Deno, ml-dash's is a Deno signal listener, always added, that defers to the user's.
      assert.equal(await line("ready"), when === "before" && !IS_DENO ? "ready 1 1" : "ready 2 1");
      sendSignal(child, "SIGINT");
      const result = await ended;
      // The user's handler exits with 7, 300 ms after it ran: ml-dash neither exited first nor ended the run.
      assert.deepEqual({ code: result.code, signal: result.signal }, { code: 7, signal: null }, result.stderr);
      assert.match(result.stdout, /^user handler$/m);
      const reader = new DashReader(root.path);
      assert.equal((await reader.status(`test/process/handler-${when}`))?.status, "RUNNING");
      await assertLifecycleRecords(reader, `test/process/handler-${when}`);
    });
  }

  it("the exit and signal handlers exist only while a run is open", TEST_TIMEOUT, async () => {
    // In a fresh process: a run left open elsewhere in the test process would keep the handlers.
    const result = await runScript(fixture("process_listeners.ts"), { args: [root.path], timeoutMs: HANG_GUARD_MS });
    assert.equal(result.code, 0, result.stderr);
    // Counts of SIGINT, SIGTERM, beforeExit and exit listeners.
    const stages = JSON.parse(result.stdout.trim()) as Record<string, number[]>;
    // No signal handler in a fresh process (Node itself may listen to "exit").
    const idle = stages.idle;
    assert.deepEqual(idle.slice(0, 2), [0, 0]);
    const open = idle.map((n) => n + 1);
    assert.deepEqual(stages, {
      idle,
      oneOpen: open,
      twoOpen: open,
      oneCompleted: open,
      bothEnded: idle,
      inCallback: open,
      afterCallback: idle,
      afterFailedCallback: idle,
    });
  });
});

describe("Timers", () => {
  const root = tempRoot();

  it("an open run never keeps the process alive, though its timer ticks", TEST_TIMEOUT, async () => {
    // Hangs (and fails at the time limit) if the flush timer keeps the event loop alive.
    const result = await runScript(fixture("process_lifecycle.ts"), { args: [root.path, "unfinished"], timeoutMs: HANG_GUARD_MS });
    assert.equal(result.code, 0, result.stderr);
    const reader = new DashReader(root.path);
    const status = await reader.status("test/process/unfinished");
    assert.equal(status?.status, "RUNNING");
    assert.ok(status!.heartbeatAt! > status!.startedAt!, "the timer ticked (heartbeat) before the script ended");
    await assertLifecycleRecords(reader, "test/process/unfinished");
  });
});

describe("Memory", () => {
  const root = tempRoot();

  it("stays bounded when 2,000,000 points are logged in a loop that never awaits", TEST_TIMEOUT, async () => {
    const result = await runScript(fixture("process_sync_loop.ts"), { args: [root.path], timeoutMs: HANG_GUARD_MS });
    assert.equal(result.code, 0, result.stderr);
    const { bytesOnDisk, heapGrowth } = JSON.parse(result.stdout.trim()) as { bytesOnDisk: number; heapGrowth: number };
    assert.ok(bytesOnDisk > 0, "rows reached the disk before the loop's first await");
    assert.ok(heapGrowth < MAX_HEAP_GROWTH, `heap grew by ${(heapGrowth / 2 ** 20).toFixed(1)} MiB`);
    const series = await new DashReader(root.path).series("test/process/sync-loop", "train/loss");
    assert.equal(series.step.length, 500_000);
    series.step.forEach((step, i) => {
      if (step !== i) assert.fail(`row ${i} has step ${step}`);
    });
  });
});

describe("Concurrent writers", () => {
  const root = tempRoot();

  it("two processes appending to one experiment lose and mangle nothing", TEST_TIMEOUT, async () => {
    const count = 200_000;
    const LOG_EVERY = 100; // as in process_append.ts
    const writers = ["A", "B"].map((marker) => {
      const child = spawnScript(fixture("process_append.ts"), { args: [root.path, marker, String(count)] });
      return { marker, child, ...watch(child) };
    });
    await Promise.all(writers.map((w) => w.line("ready")));
    for (const w of writers) w.child.stdin!.end("go\n");
    for (const w of writers) {
      const result = await w.ended;
      assert.equal(result.code, 0, result.stderr);
    }

    const dir = join(root.path, "test", "process", "shared");
    const readRows = (file: string): Record<string, unknown>[] => {
      const text = readFileSync(join(dir, file), "utf8");
      assert.ok(text.endsWith("\n"), `${file} ends with a whole line`);
      return text.slice(0, -1).split("\n").map((line) => {
        try {
          return JSON.parse(line);
        } catch {
          assert.fail(`${file}: mangled line ${line.slice(0, 200)}`);
        }
      });
    };

    const next = { A: 0, B: 0 };
    let runs = 0;
    let last = "";
    for (const row of readRows("metrics/shared.jsonl")) {
      const marker = "A" in row ? "A" : "B";
      const n = next[marker]++;
      if (Object.keys(row).length !== 3 || row._ts === undefined || row.step !== n || row[marker] !== n) {
        assert.fail(`metrics: expected ${marker} = step = ${n}, found ${JSON.stringify(row)}`);
      }
      if (marker !== last) runs++;
      last = marker;
    }
    assert.deepEqual(next, { A: count, B: count }, "metric rows per writer");
    assert.ok(runs > 2, `the writers' appends interleave (${runs} runs of one writer)`);

    const nextLog = { A: 0, B: 0 };
    for (const row of readRows("logs.jsonl")) {
      const marker = row.writer === "A" ? "A" : "B";
      const i = LOG_EVERY * nextLog[marker]++;
      if (row.level !== "info" || row.message !== `${marker} ${i}` || row.i !== i || Object.keys(row).length !== 5) {
        assert.fail(`logs: expected "${marker} ${i}", found ${JSON.stringify(row)}`);
      }
    }
    assert.deepEqual(nextLog, { A: count / LOG_EVERY, B: count / LOG_EVERY }, "log lines per writer");

    const reader = new DashReader(root.path);
    for (const marker of ["A", "B"]) assert.equal((await reader.series("test/process/shared", `shared/${marker}`)).step.length, count);
    assert.equal((await reader.status("test/process/shared"))?.status, "COMPLETED");
  });
});

describe("Denied permissions (Deno with --deny-read --deny-write --deny-env)", () => {
  // The .ts fixture in the source tree (also when Node runs the compiled tests from .build/).
  const repoRoot = resolve(dirname(denoPath()), "..", "..");
  const script = join(repoRoot, "testing", "fixtures", "process_denied.ts");
  const denied = (args: string[]): Promise<Ended> => {
    const child = spawn(denoPath(), ["run", "--deny-read", "--deny-write", "--deny-env", script, ...args], {
      env: { ...process.env, ML_DASH_ROOT: "from-env", ML_DASH_PREFIX: "from/env/x", NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    return watch(child).ended;
  };

  it("mod.ts imports no filesystem module statically", TEST_TIMEOUT, () => {
    // node:fs loads under --deny-read, so the module graph tells what the permission test cannot.
    const info = spawnSync(denoPath(), ["info", "--json", "mod.ts"], { cwd: repoRoot, encoding: "utf8" });
    assert.equal(info.status, 0, info.stderr);
    const graph = JSON.parse(info.stdout) as {
      roots: string[];
      modules: { specifier: string; dependencies?: { code?: { specifier: string }; isDynamic?: boolean }[] }[];
    };
    const bySpecifier = new Map(graph.modules.map((m) => [m.specifier, m]));
    const loaded = new Set<string>(graph.roots);
    for (const specifier of loaded) {
      for (const dep of bySpecifier.get(specifier)?.dependencies ?? []) {
        if (dep.code && !dep.isDynamic) loaded.add(dep.code.specifier);
      }
    }
    assert.ok(loaded.size >= 1 && [...loaded][0].endsWith("/mod.ts"));
    assert.deepEqual([...loaded].filter((s) => /^(node:)?fs(\/|$)/.test(s)), [], `loaded with mod.ts: ${[...loaded].join(", ")}`);
  });

  it("importing mod.ts starts no I/O and no timer: the process ends at once", TEST_TIMEOUT, async () => {
    const result = await denied(["import"]);
    assert.deepEqual(result, { code: 0, signal: null, stdout: "", stderr: "" });
  });

  it("the API works until local storage is needed, then fails with a clear StorageError", TEST_TIMEOUT, async () => {
    const dashRoot = join(tmpdir(), "ml-dash-denied-root");
    const result = await denied(["use", dashRoot]);
    assert.equal(result.code, 0, result.stderr);
    const report = JSON.parse(result.stdout.trim());
    // Env access denied: RUN falls back to its defaults.
    assert.deepEqual(report.run, { ok: true, value: { dashRoot: ".dash", user: "local" } });
    assert.deepEqual(report.construct, { ok: true, value: "test/process/denied" });
    assert.equal(report.logBeforeStart.ok, false);
    assert.equal(report.logBeforeStart.usageError, true, report.logBeforeStart.message);
    assert.match(report.logBeforeStart.message, /not running/);
    assert.equal(report.start.ok, false);
    assert.equal(report.start.storageError, true, report.start.message);
    assert.ok(report.start.message.includes(JSON.stringify(dashRoot)), `names the dash root: ${report.start.message}`);
    assert.match(report.start.message, /permission denied/i);
  });
});

describe("Reading what a crashed writer left", () => {
  const root = tempRoot();

  it("a live run is not stale; killed, its torn last line is skipped and it turns stale", TEST_TIMEOUT, async () => {
    const prefix = "test/process/heartbeat";
    const child = spawnScript(fixture("process_lifecycle.ts"), { args: [root.path, "heartbeat"] });
    child.stdin!.end();
    const { ended, line } = watch(child);
    await line("ready");
    const reader = new DashReader(root.path);
    // Longer than a stale reader's patience (3 intervals of 0.2 s + 1 s) without a heartbeat.
    await sleep(2000);
    const live = await reader.listExperiments({ prefix });
    assert.deepEqual(live.map((e) => [e.prefix, e.status, e.stale]), [[prefix, "RUNNING", false]]);

    child.kill("SIGKILL");
    assert.equal((await ended).signal, "SIGKILL");
    const metricFile = join(root.path, ...prefix.split("/"), "metrics", "train.jsonl");
    appendFileSync(metricFile, `{"_ts":${Date.now() / 1000},"step":${LIFECYCLE_RECORDS},"lo`);
    await assertLifecycleRecords(reader, prefix);
    assert.equal((await reader.summary(prefix))["train/loss"].count, LIFECYCLE_RECORDS);

    // Stale once the heartbeat is 3 intervals of 0.2 s + 1 s old (DashReader's default patience).
    const { heartbeatAt } = (await reader.status(prefix))!;
    await sleep(Math.max(0, (heartbeatAt! + 0.2 * 3 + 1.2) * 1000 - Date.now()));
    const dead = await reader.listExperiments({ prefix });
    assert.deepEqual(dead.map((e) => [e.prefix, e.status, e.stale]), [[prefix, "RUNNING", true]]);
    assert.deepEqual((await reader.listExperiments({ status: "stale" })).map((e) => e.prefix), [prefix]);
  });
});

/**
 * Sends a signal through process.kill: Deno's ChildProcess reports a child it
 * signalled with `child.kill()` as ended by that signal, even when the child caught
 * it and exited with a code of its own.
 */
function sendSignal(child: ChildProcess, signal: NodeJS.Signals): void {
  process.kill(child.pid!, signal);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
