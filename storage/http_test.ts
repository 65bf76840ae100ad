// Remote mode end to end: mod.ts (both APIs) → storage/http.ts → a real server on
// a loopback port, read back through the read API. Covers retries (fault
// injection option of the handler), a server down at start, a server killed and
// restarted as a child process, tokens, the outbox and a Deno run without files.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { Experiment, startRun, StorageError } from "../mod.ts";
import type { Batch } from "../mod.ts";
import { serve } from "../server.ts";
import type { Fault } from "../server.ts";
import { HttpBackend } from "./http.ts";
import { DashReader } from "./jsonl.ts";
import { denoPath, runScript, spawnScript } from "../testing/run_script.ts";
import { sleep, tempDir } from "../testing/temp.ts";
import { freePort } from "../testing/net.ts";

function fixture(name: string): URL {
  return new URL(`../testing/fixtures/${name}`, import.meta.url);
}

async function get(url: string, pathname: string): Promise<Record<string, unknown>> {
  const res = await fetch(url + pathname);
  assert.equal(res.status, 200, `${pathname}: ${res.status}`);
  return await res.json();
}

/** Resolves with the first match of `pattern` in the child's stdout (fails after a generous deadline). */
function waitForOutput(child: ChildProcess, pattern: RegExp): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let text = "";
    let errors = "";
    const deadline = setTimeout(() => reject(new Error(`No ${pattern} in output:\n${text}\n${errors}`)), 30_000);
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => (errors += chunk));
    child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      text += chunk;
      const match = pattern.exec(text);
      if (match) {
        clearTimeout(deadline);
        resolve(match);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(deadline);
      reject(new Error(`Child exited (${code}) before ${pattern}:\n${text}\n${errors}`));
    });
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
}

/** Starts `ml-dash serve` as a child process and resolves with it and its URL. */
async function startServerProcess(root: string, port: number): Promise<{ child: ChildProcess; url: string }> {
  const child = spawnScript(new URL("../cli.ts", import.meta.url), { args: ["serve", "--root", root, "--port", String(port)] });
  const match = await waitForOutput(child, /at (http:\/\/\S+)/);
  return { child, url: match[1] };
}

/** The same script for local and remote mode, so that what each stored can be compared. */
async function trainingScript(exp: Experiment): Promise<void> {
  exp.params.set({ lr: 0.001, model: { depth: 50, name: "resnet" } });
  exp.log("Training started");
  for (let epoch = 0; epoch < 30; epoch++) {
    exp.metrics.log({ epoch, train: { loss: 1 / (epoch + 1), acc: epoch / 30 }, eval: { loss: 2 / (epoch + 1) } });
  }
  exp.logs.warn("almost done", { epoch: 29 });
  await exp.files.saveJson("config.json", { lr: 0.001 });
  await exp.files.saveBytes("weights.bin", new Uint8Array([0, 1, 2, 255]));
}

async function stored(reader: DashReader, prefix: string): Promise<unknown> {
  const summary = await reader.summary(prefix);
  const status = await reader.status(prefix);
  return {
    params: await reader.params(prefix),
    summary,
    logs: (await reader.logs(prefix)).map((l) => [l.level, l.message]),
    files: (await reader.files(prefix)).map((f) => [f.path, f.size, f.mime]),
    status: status?.status,
    metadata: { ...(await reader.experiment(prefix)), createdAt: undefined, updatedAt: undefined },
  };
}

test("the Experiment API in remote mode stores what local mode stores, and the read API returns it", async () => {
  const localRoot = tempDir("http");
  const serverRoot = tempDir("http");
  const server = await serve({ root: serverRoot, port: 0, quiet: true });
  try {
    const options = { prefix: "alice/remote/same", readme: "both modes", tags: ["x"] };
    await new Experiment({ ...options, dashRoot: localRoot }).run(trainingScript);
    await new Experiment({ ...options, dashUrl: server.url }).run(trainingScript);
    assert.deepEqual(await stored(new DashReader(serverRoot), options.prefix), await stored(new DashReader(localRoot), options.prefix));

    const one = await get(server.url, "/api/v1/experiment?prefix=alice/remote/same");
    assert.equal((one.status as { status: string }).status, "COMPLETED");
    assert.equal((one.summary as Record<string, { count: number }>)["train/loss"].count, 30);
    const series = await get(server.url, "/api/v1/series?prefix=alice/remote/same&key=eval/loss&x=epoch");
    assert.deepEqual(series.x, Array.from({ length: 30 }, (_, i) => i));
    assert.equal((await fetch(`${server.url}/api/v1/file?prefix=alice/remote/same&path=weights.bin`).then((r) => r.arrayBuffer())).byteLength, 4);
  } finally {
    await server.close();
  }
});

test("the Run API in remote mode (startRun with dashUrl) stores keys, config and status like local mode", async () => {
  const localRoot = tempDir("http");
  const serverRoot = tempDir("http");
  const server = await serve({ root: serverRoot, port: 0, quiet: true });
  try {
    const script = (run: { log(v: Record<string, number>, step?: number): void; logConfig(c: Record<string, unknown>): void }): void => {
      for (let step = 0; step < 100; step++) run.log({ "train/loss": 100 - step, lr: 0.1 });
      run.logConfig({ early_stopped_at: 99 });
    };
    const options = { owner: "bob", project: "cifar", runName: "baseline", config: { lr: 0.1, batch: 128 } };
    await startRun("resnet", { ...options, dashRoot: localRoot }, script);
    await startRun("resnet", { ...options, dashUrl: server.url }, script);
    const prefix = "bob/cifar/resnet/baseline";
    assert.deepEqual(await stored(new DashReader(serverRoot), prefix), await stored(new DashReader(localRoot), prefix));
    const series = await get(server.url, `/api/v1/series?prefix=${prefix}&key=train/loss&points=10`);
    assert.equal(series.total, 100);
    assert.equal(series.downsampled, true);
  } finally {
    await server.close();
  }
});

test("a remote run resumed on the server continues its steps", async () => {
  const server = await serve({ root: tempDir("http"), port: 0, quiet: true });
  try {
    for (let session = 0; session < 2; session++) {
      await new Experiment({ prefix: "alice/resume/run", dashUrl: server.url }).run((exp) => {
        exp.metrics("train").log({ loss: session });
        exp.metrics("train").log({ loss: session });
      });
    }
    const series = await get(server.url, "/api/v1/series?prefix=alice/resume/run&key=train/loss&points=100");
    assert.deepEqual(series.x, [0, 1, 2, 3]);
  } finally {
    await server.close();
  }
});

test("hybrid mode (dashRoot and dashUrl) writes every record to both", async () => {
  const localRoot = tempDir("http");
  const serverRoot = tempDir("http");
  const server = await serve({ root: serverRoot, port: 0, quiet: true });
  try {
    await new Experiment({ prefix: "alice/hybrid/run", dashRoot: localRoot, dashUrl: server.url }).run(trainingScript);
    const local = await stored(new DashReader(localRoot), "alice/hybrid/run");
    assert.deepEqual(await stored(new DashReader(serverRoot), "alice/hybrid/run"), local);
    assert.equal((local as { summary: Record<string, { count: number }> }).summary["train/acc"].count, 30);
  } finally {
    await server.close();
  }
});

test("hybrid mode: a batch retried while the server is down is not written twice to the local root", async () => {
  const localRoot = tempDir("http");
  const serverRoot = tempDir("http");
  let server = await serve({ root: serverRoot, port: 0, quiet: true });
  const port = server.port;
  const oldTimeout = process.env.ML_DASH_HTTP_TIMEOUT;
  process.env.ML_DASH_HTTP_TIMEOUT = "0.02"; // give up fast, so the core itself retries the batch
  try {
    const exp = new Experiment({ prefix: "alice/hybrid/retry", dashRoot: localRoot, dashUrl: server.url, flushInterval: 3600 });
    await exp.run.start();
    for (let step = 0; step < 50; step++) exp.metrics("train").log({ loss: step });
    await exp.flush();
    await server.close();
    for (let step = 50; step < 100; step++) exp.metrics("train").log({ loss: step });
    await assert.rejects(exp.flush(), /Could not send/);
    await assert.rejects(exp.flush(), /Could not send/);
    server = await serve({ root: serverRoot, port, quiet: true });
    await exp.flush();
    await exp.run.complete();
    const local = await new DashReader(localRoot).series("alice/hybrid/retry", "train/loss");
    assert.deepEqual(local.step, Array.from({ length: 100 }, (_, i) => i));
    const remote = await get(server.url, "/api/v1/series?prefix=alice/hybrid/retry&key=train/loss&points=1000");
    assert.deepEqual(remote.x, local.step);
  } finally {
    if (oldTimeout === undefined) delete process.env.ML_DASH_HTTP_TIMEOUT;
    else process.env.ML_DASH_HTTP_TIMEOUT = oldTimeout;
    await server.close();
  }
});

test("a remote run whose loop never yields is told so, and still stores every record at the end", async () => {
  const server = await serve({ root: tempDir("http"), port: 0, quiet: true });
  const warnings: string[] = [];
  const original = console.warn;
  console.warn = (...args: unknown[]) => warnings.push(args.join(" "));
  try {
    await new Experiment({ prefix: "alice/sync/loop", dashUrl: server.url }).run((exp) => {
      for (let step = 0; step < 60_000; step++) exp.metrics("train").log({ loss: step });
    });
    const series = await get(server.url, "/api/v1/series?prefix=alice/sync/loop&key=train/loss&points=100");
    assert.equal(series.total, 60_000);
  } finally {
    console.warn = original;
    await server.close();
  }
  assert.equal(warnings.length, 1, warnings.join("\n"));
  assert.match(warnings[0], /records are waiting: the program has not yielded to the event loop/);
});

test("remote mode with the server down at start: the run starts with a warning and keeps what it logs in the outbox; strict rejects", async () => {
  const outboxRoot = tempDir("http");
  const dead = `http://127.0.0.1:${await freePort()}`;
  const saved = { timeout: process.env.ML_DASH_HTTP_TIMEOUT, root: process.env.ML_DASH_ROOT };
  process.env.ML_DASH_HTTP_TIMEOUT = "0.1";
  process.env.ML_DASH_ROOT = outboxRoot;
  const warnings: string[] = [];
  const original = console.warn;
  console.warn = (...args: unknown[]) => warnings.push(args.join(" "));
  try {
    await assert.rejects(new Experiment({ prefix: "alice/down/strict", dashUrl: dead, strict: true }).run.start(), /Could not open "alice\/down\/strict"/);
    const exp = new Experiment({ prefix: "alice/down/run", dashUrl: dead });
    await exp.run.start();
    for (let step = 0; step < 5; step++) exp.metrics("train").log({ loss: step });
    await assert.rejects(exp.run.complete(), /saved in the outbox/);
  } finally {
    console.warn = original;
    for (const [name, value] of [["ML_DASH_HTTP_TIMEOUT", saved.timeout], ["ML_DASH_ROOT", saved.root]] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
  assert.ok(warnings.some((w) => /Could not open "alice\/down\/run".*the run starts without what was recorded before/.test(w)), warnings.join("\n"));
  const { steps } = outboxRecords(path.join(outboxRoot, ".outbox", encodeURIComponent("alice/down/run")));
  assert.deepEqual(steps, [0, 1, 2, 3, 4]);
});

test("hybrid mode with the server down at start: the run starts, the local root gets everything, flush() reports the server", async () => {
  const localRoot = tempDir("http");
  const down = await serve({ root: tempDir("http"), port: 0, quiet: true });
  await down.close();
  const oldTimeout = process.env.ML_DASH_HTTP_TIMEOUT;
  process.env.ML_DASH_HTTP_TIMEOUT = "0.05";
  const warnings: string[] = [];
  const original = console.warn;
  console.warn = (...args: unknown[]) => warnings.push(args.join(" "));
  try {
    const exp = new Experiment({ prefix: "alice/hybrid/down", dashRoot: localRoot, dashUrl: down.url });
    await exp.run.start();
    for (let step = 0; step < 5; step++) exp.metrics("train").log({ loss: step });
    await assert.rejects(exp.flush(), /Could not send/);
    await assert.rejects(exp.run.complete(), /Could not send/);
  } finally {
    console.warn = original;
    if (oldTimeout === undefined) delete process.env.ML_DASH_HTTP_TIMEOUT;
    else process.env.ML_DASH_HTTP_TIMEOUT = oldTimeout;
  }
  assert.ok(warnings.some((w) => /Could not open/.test(w)), warnings.join("\n"));
  const reader = new DashReader(localRoot);
  assert.deepEqual((await reader.series("alice/hybrid/down", "train/loss")).step, [0, 1, 2, 3, 4]);
  assert.equal((await reader.status("alice/hybrid/down"))?.status, "COMPLETED");
});

test("hybrid mode with a local write failing: the server still gets every record", async () => {
  const localRoot = tempDir("http");
  fs.mkdirSync(path.join(localRoot, "alice/hybrid/diskfull/logs.jsonl"), { recursive: true }); // a real fault: the file cannot be opened
  const server = await serve({ root: tempDir("http"), port: 0, quiet: true });
  const original = console.warn;
  console.warn = () => {};
  try {
    const exp = new Experiment({ prefix: "alice/hybrid/diskfull", dashRoot: localRoot, dashUrl: server.url, metricBatchSize: 5 });
    await exp.run.start();
    for (let step = 0; step < 20; step++) {
      exp.metrics("train").log({ loss: step });
      if (step % 5 === 4) {
        exp.log(`step ${step}`);
        await exp.flush().catch(() => {});
      }
    }
    await assert.rejects(exp.run.complete(), /logs\.jsonl/);
    const series = await get(server.url, "/api/v1/series?prefix=alice/hybrid/diskfull&key=train/loss&points=100");
    assert.deepEqual(series.x, Array.from({ length: 20 }, (_, i) => i));
    const one = await get(server.url, "/api/v1/experiment?prefix=alice/hybrid/diskfull");
    assert.equal((one.status as { status: string }).status, "COMPLETED");
  } finally {
    console.warn = original;
    await server.close();
  }
});

for (const mode of ["hybrid", "remote"] as const) {
  test(`${mode} mode at process.exit(): the records the server has not acknowledged are saved in the outbox${mode === "hybrid" ? ", and all reach the local root" : ""}`, async () => {
    const localRoot = tempDir("http");
    const serverRoot = tempDir("http");
    const prefix = `alice/exit/${mode}`;
    const result = await runScript(fixture("remote_exit.ts"), { args: [mode, localRoot, serverRoot], cwd: tempDir("http"), env: { ML_DASH_ROOT: localRoot } });
    assert.equal(result.code, 0, result.stderr);
    if (mode === "hybrid") {
      const reader = new DashReader(localRoot);
      assert.deepEqual((await reader.series(prefix, "train/loss")).step, Array.from({ length: 10 }, (_, i) => i));
      assert.deepEqual((await reader.logs(prefix)).map((l) => l.message), ["buffered"]);
    }
    const dir = path.join(localRoot, ".outbox", encodeURIComponent(prefix));
    const { steps, files } = outboxRecords(dir);
    assert.deepEqual(steps, Array.from({ length: 9 }, (_, i) => i + 1), "the records sent before the exit are not in the outbox");
    const server = await serve({ root: serverRoot, port: 0, quiet: true });
    try {
      await postOutboxFiles(server.url, dir, files);
      const series = await get(server.url, `/api/v1/series?prefix=${prefix}&key=train/loss&points=1000`);
      assert.deepEqual(series.x, Array.from({ length: 10 }, (_, i) => i));
      assert.equal((await get(server.url, `/api/v1/logs?prefix=${prefix}`)).total, 1);
    } finally {
      await server.close();
    }
  });
}

test("hybrid mode at process.exit() with the server down and the outbox unwritable: the local root still gets every record", async () => {
  const localRoot = tempDir("http");
  const dead = `http://127.0.0.1:${await freePort()}`;
  const result = await runScript(fixture("hybrid_exit_no_outbox.ts"), { args: [localRoot, dead], cwd: tempDir("http"), env: { ML_DASH_HTTP_TIMEOUT: "0.1" } });
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /outbox/, "the lost server copy is reported");
  const series = await new DashReader(localRoot).series("alice/hybrid/nooutbox", "train/loss");
  assert.deepEqual(series.step, Array.from({ length: 10 }, (_, i) => i));
});

test("at process.exit(), batches held by a write in progress (the server stopped with SIGSTOP, a request hanging) are saved in the outbox", async () => {
  const serverRoot = tempDir("http");
  const outboxRoot = tempDir("http");
  const port = await freePort();
  let server = await startServerProcess(serverRoot, port);
  const prefix = "alice/exit/inflight";
  const client = spawnScript(fixture("remote_commands.ts"), { args: [server.url, prefix], cwd: tempDir("http"), env: { ML_DASH_ROOT: outboxRoot, ML_DASH_HTTP_TIMEOUT: "0.3" } });
  const send = async (command: string): Promise<void> => {
    client.stdin!.write(`${command}\n`);
    await waitForOutput(client, new RegExp(`^done ${command}$`, "m"));
  };
  try {
    await waitForOutput(client, /^started$/m);
    await send("log 0");
    await send("flushwait"); // stored
    // Down: batch 1 fails past the bound and is spooled; it waits to be sent again.
    server.child.kill("SIGKILL");
    await exited(server.child);
    await send("log 1");
    await send("flushwait");
    // Back, but stopped: the next flush takes batches 1 and 2, and the request for 1 hangs.
    server = await startServerProcess(serverRoot, port);
    server.child.kill("SIGSTOP");
    await send("log 2");
    await send("flush");
    await sleep(300);
    await send("log 3");
    client.stdin!.write("exit\n");
    assert.equal(await exited(client), 0);
    const { steps } = outboxRecords(path.join(outboxRoot, ".outbox", encodeURIComponent(prefix)));
    assert.deepEqual(steps, [1, 2, 3], "the batch being sent, the one behind it and the buffered one");
  } finally {
    client.kill("SIGKILL");
    server.child.kill("SIGCONT");
    server.child.kill("SIGKILL");
    await exited(server.child);
  }
});

test("fault injection option: 500 and 429 (Retry-After) answers, and a 500 after storing, are retried; nothing lost, nothing duplicated", async () => {
  const root = tempDir("http");
  const faults: Fault[] = [
    { status: 500, times: 2 },
    { status: 429, times: 1, retryAfter: 1 },
    { status: 500, times: 2, afterStore: true },
    { status: 503, times: 1, path: "/api/v1/open" },
  ];
  const server = await serve({ root, port: 0, quiet: true, faults });
  try {
    await new Experiment({ prefix: "alice/faults/run", dashUrl: server.url, metricBatchSize: 25 }).run(async (exp) => {
      for (let step = 0; step < 200; step++) {
        exp.metrics("train").log({ step, loss: step });
        if (step % 20 === 0) await sleep(1);
      }
    });
    assert.equal(server.handler.stats.faultsInjected, 6, "every fault was served");
    assert.ok(server.handler.stats.duplicates >= 2, "the batches stored before a 500 came back and were recognised");
    const series = await get(server.url, "/api/v1/series?prefix=alice/faults/run&key=train/loss&points=1000");
    assert.deepEqual(series.x, Array.from({ length: 200 }, (_, i) => i));
    const status = await get(server.url, "/api/v1/experiment?prefix=alice/faults/run");
    assert.equal((status.status as { status: string }).status, "COMPLETED");
  } finally {
    await server.close();
  }
});

test("a batch written again after a failure keeps its sequence numbers, so the server stores it once (fault injection option)", async () => {
  const root = tempDir("http");
  const server = await serve({ root, port: 0, quiet: true, faults: [{ status: 500, times: 1000, afterStore: true }] });
  try {
    const backend = new HttpBackend({ url: server.url, giveUpAfterMs: 200, initialDelayMs: 10, outbox: false });
    const batch: Batch = { metadata: { prefix: "alice/seq/run" }, metrics: { train: ['{"_ts":1,"step":0,"loss":1}'] } };
    await assert.rejects(backend.write("alice/seq/run", batch), (e: Error) => e instanceof StorageError && /500/.test(e.message) && /kept in memory/.test(e.message));
    assert.equal(server.handler.stats.batches, 1);
    // The caller retries the same batch (the buffer does so at its next flush).
    await assert.rejects(backend.write("alice/seq/run", batch), StorageError);
    assert.equal(server.handler.stats.batches, 1, "stored once");
    assert.ok(server.handler.stats.duplicates >= 1);
  } finally {
    await server.close();
  }
});

/** A batch of one metric record at `step`, for tests that drive the backend directly. */
function stepBatch(prefix: string, step: number): Batch {
  return { metadata: { prefix }, metrics: { train: [`{"_ts":${step + 1},"step":${step},"loss":${step}}`] } };
}

/** Runs `fn` with a stand-in `document` whose page is hidden, so that the backend takes its page path. */
async function withHiddenPage<T>(fn: () => Promise<T>): Promise<T> {
  const globals = globalThis as { document?: unknown };
  const saved = globals.document;
  globals.document = { visibilityState: "hidden" };
  try {
    return await fn();
  } finally {
    if (saved === undefined) delete globals.document;
    else globals.document = saved;
  }
}

test("a batch sent as the page hides (a stand-in document, the page hiding called directly) to a server that is down is sent again by a later write", async () => {
  const prefix = "alice/page/hidden";
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const backend = new HttpBackend({ url, giveUpAfterMs: 300, initialDelayMs: 10, outbox: false });
  const second = stepBatch(prefix, 1);
  await withHiddenPage(async () => {
    backend.writeAtExit(prefix, stepBatch(prefix, 0));
    // The server is still down: this write fails too (and its batch stays with the caller, as the buffer keeps it).
    await assert.rejects(backend.write(prefix, second), StorageError);
  });
  const server = await serve({ root: tempDir("http"), port, quiet: true });
  try {
    await backend.write(prefix, second);
    await backend.write(prefix, stepBatch(prefix, 2));
    const remote = await get(server.url, `/api/v1/series?prefix=${prefix}&key=train/loss&points=1000`);
    assert.deepEqual(remote.x, [0, 1, 2]);
  } finally {
    await server.close();
  }
});

/** A loopback HTTP server that reads request bodies at `bytesPerS` and answers `{}` once it has a whole body. */
async function slowReadingServer(bytesPerS: number): Promise<{ url: string; close(): void }> {
  const net = await import("node:net");
  const sockets = new Set<import("node:net").Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    let head = "";
    let bodyLeft = -1;
    socket.on("data", (chunk: Uint8Array) => {
      let body = chunk.length;
      if (bodyLeft < 0) {
        head += new TextDecoder("latin1").decode(chunk);
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) return;
        bodyLeft = Number(/content-length: *(\d+)/i.exec(head.slice(0, end))?.[1] ?? 0);
        body = head.length - end - 4;
      }
      bodyLeft -= body;
      if (bodyLeft <= 0) {
        socket.end('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}');
        return;
      }
      socket.pause();
      setTimeout(() => socket.resume(), body / bytesPerS * 1000);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    close: () => {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

test("a large batch to a server that reads it slowly but steadily is sent, though the upload takes longer than the bound", { timeout: 60_000 }, async () => {
  // 2 MiB read at 1 MiB/s: about 2 s, over the bound (1 s at least), within the bound plus the body at 256 KiB/s (9 s).
  const slow = await slowReadingServer(1024 * 1024);
  try {
    const backend = new HttpBackend({ url: slow.url, giveUpAfterMs: 200, gzip: false, outbox: false });
    const line = '{"_ts":1,"step":0,"loss":0.5,"pad":"' + "x".repeat(1000) + '"}';
    const chunk = Array.from({ length: 2048 }, () => line).join("\n");
    await backend.write("alice/slow/upload", { metrics: { train: [chunk] } });
  } finally {
    slow.close();
  }
});

test("metric chunks given as UTF-8 bytes (as the server holds them) are sent as their text, whole or split", async () => {
  const root = tempDir("http");
  const server = await serve({ root, port: 0, quiet: true });
  try {
    const chunk = (from: number) => new TextEncoder().encode(Array.from({ length: 10 }, (_, i) => JSON.stringify({ _ts: 1, step: from + i, "ünï": i })).join("\n"));
    await new HttpBackend({ url: server.url, outbox: false }).write("alice/bytes/whole", { metadata: { prefix: "alice/bytes/whole" }, metrics: { train: [chunk(0), chunk(10)] } });
    await new HttpBackend({ url: server.url, maxBytesPerRequest: 300, outbox: false }).write("alice/bytes/split", { metadata: { prefix: "alice/bytes/split" }, metrics: { train: [chunk(0), chunk(10)] } });
    for (const prefix of ["alice/bytes/whole", "alice/bytes/split"]) {
      const series = await get(server.url, `/api/v1/series?prefix=${prefix}&key=${encodeURIComponent("train/ünï")}&points=1000`);
      assert.deepEqual(series.x, Array.from({ length: 20 }, (_, i) => i), prefix);
    }
  } finally {
    await server.close();
  }
});

test("a batch split into several requests keeps a metric named __proto__ (a name like any other)", async () => {
  const root = tempDir("http");
  const server = await serve({ root, port: 0, quiet: true });
  try {
    const lines = (from: number): string => Array.from({ length: 10 }, (_, i) => JSON.stringify({ _ts: 1, step: from + i, loss: i })).join("\n");
    const metrics = Object.create(null) as Record<string, string[]>;
    metrics["__proto__"] = [lines(0), lines(10)];
    await new HttpBackend({ url: server.url, maxBytesPerRequest: 300, outbox: false }).write("alice/proto/split", { metadata: { prefix: "alice/proto/split" }, metrics });
    const series = await get(server.url, `/api/v1/series?prefix=alice/proto/split&key=${encodeURIComponent("__proto__/loss")}&points=1000`);
    assert.deepEqual(series.x, Array.from({ length: 20 }, (_, i) => i));
  } finally {
    await server.close();
  }
});

test("a batch larger than maxBytesPerRequest is split into several requests, stored once and in order, status last", async () => {
  const root = tempDir("http");
  const server = await serve({ root, port: 0, quiet: true });
  try {
    const backend = new HttpBackend({ url: server.url, maxBytesPerRequest: 2000, gzip: true, outbox: false });
    const chunks: string[] = [];
    for (let c = 0; c < 20; c++) {
      const lines = [];
      for (let i = 0; i < 10; i++) lines.push(JSON.stringify({ _ts: 1, step: c * 10 + i, loss: i }));
      chunks.push(lines.join("\n"));
    }
    await backend.write("alice/split/run", { metadata: { prefix: "alice/split/run" }, metrics: { train: chunks }, status: { status: "COMPLETED" } });
    assert.ok(server.handler.stats.batches > 5, `${server.handler.stats.batches} requests`);
    assert.equal(server.handler.stats.gzipBatches, server.handler.stats.batches, "gzip: true compresses every request");
    const series = await get(server.url, "/api/v1/series?prefix=alice/split/run&key=train/loss&points=1000");
    assert.deepEqual(series.x, Array.from({ length: 200 }, (_, i) => i));
  } finally {
    await server.close();
  }
});

test("the server down at start and up later: the run waits, then nothing is lost", async () => {
  const root = tempDir("http");
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const client = spawnScript(fixture("remote_client.ts"), { args: [url, "alice/late/run", "100", "0"], cwd: tempDir("http") });
  let clientOut = "";
  client.stdout?.setEncoding("utf8").on("data", (s: string) => (clientOut += s));
  await sleep(1000);
  assert.equal(clientOut, "", "the client cannot start while the server is down");
  const server = await serve({ root, port, quiet: true });
  try {
    assert.equal(await exited(client), 0);
    assert.match(clientOut, /done/);
    const series = await get(url, "/api/v1/series?prefix=alice/late/run&key=train/loss&points=1000");
    assert.deepEqual(series.x, Array.from({ length: 100 }, (_, i) => i));
    const logs = await get(url, "/api/v1/logs?prefix=alice/late/run");
    assert.equal(logs.total, 2);
  } finally {
    await server.close();
  }
});

test("a remote run left open when the script ends: the exit hook sends every buffered record", async () => {
  const server = await serve({ root: tempDir("http"), port: 0, quiet: true });
  try {
    const client = spawnScript(fixture("remote_client.ts"), { args: [server.url, "alice/open/run", "100", "0", "open"], cwd: tempDir("http") });
    assert.equal(await exited(client), 0);
    const series = await get(server.url, "/api/v1/series?prefix=alice/open/run&key=train/loss&points=1000");
    assert.deepEqual(series.x, Array.from({ length: 100 }, (_, i) => i));
    assert.equal((await get(server.url, "/api/v1/logs?prefix=alice/open/run")).total, 2);
    const one = await get(server.url, "/api/v1/experiment?prefix=alice/open/run");
    assert.equal((one.status as { status: string }).status, "RUNNING");
  } finally {
    await server.close();
  }
});

test("the server killed (SIGKILL) and restarted mid-run as a child process: nothing lost, nothing duplicated", async () => {
  const root = tempDir("http");
  let server = await startServerProcess(root, 0);
  const port = Number(new URL(server.url).port);
  const client = spawnScript(fixture("remote_client.ts"), { args: [server.url, "alice/restart/run", "400", "4"], cwd: tempDir("http") });
  try {
    await waitForOutput(client, /step 150/);
    server.child.kill("SIGKILL");
    await exited(server.child);
    await sleep(500);
    server = await startServerProcess(root, port);
    assert.equal(await exited(client), 0);
    const series = await get(server.url, "/api/v1/series?prefix=alice/restart/run&key=train/loss&points=100000");
    assert.equal(series.total, 400, "no record lost or stored twice");
    assert.deepEqual(series.x, Array.from({ length: 400 }, (_, i) => i));
    const logs = await get(server.url, "/api/v1/logs?prefix=alice/restart/run");
    assert.equal(logs.total, 8);
    const one = await get(server.url, "/api/v1/experiment?prefix=alice/restart/run");
    assert.equal((one.status as { status: string }).status, "COMPLETED");
    assert.deepEqual(one.params, { steps: 400, "optimizer.name": "sgd", "optimizer.lr": 0.1 });
  } finally {
    client.kill("SIGKILL");
    server.child.kill("SIGTERM");
    await exited(server.child);
  }
});

test("401 without a token or with a wrong one; the token comes from the option, ML_DASH_TOKEN, or ~/.dash/credentials.json", async () => {
  const root = tempDir("http");
  const server = await serve({ root, port: 0, quiet: true, token: "good-token" });
  try {
    await assert.rejects(
      new Experiment({ prefix: "alice/auth/wrong", dashUrl: server.url, token: "bad-token" }).run.start(),
      (e: Error) => e instanceof StorageError && /401/.test(e.message) && !e.message.includes("bad-token"),
    );
    await new Experiment({ prefix: "alice/auth/option", dashUrl: server.url, token: "good-token" }).run((exp) => exp.log("ok"));

    const home = tempDir("http");
    const run = (env: Record<string, string | undefined>) =>
      runScript(fixture("remote_token.ts"), { args: [server.url, "alice/auth/child"], env: { HOME: home, ML_DASH_TOKEN: undefined, ...env }, cwd: home });
    const none = await run({});
    assert.match(none.stdout, /error: .*401.*Missing token/);
    assert.match((await run({ ML_DASH_TOKEN: "wrong" })).stdout, /error: .*401.*Invalid token/);
    assert.equal((await run({ ML_DASH_TOKEN: "good-token" })).stdout.trim(), "ok");
    fs.mkdirSync(path.join(home, ".dash"));
    fs.writeFileSync(path.join(home, ".dash", "credentials.json"), JSON.stringify({ [server.url]: { token: "good-token" } }), { mode: 0o600 });
    assert.equal((await run({})).stdout.trim(), "ok", "the credentials file");
    const list = await get(server.url, "/api/v1/experiments");
    assert.deepEqual((list.experiments as { prefix: string }[]).map((e) => e.prefix), ["alice/auth/child", "alice/auth/option"]);
  } finally {
    await server.close();
  }
});

test("the server unreachable past the bound: flush() rejects naming the outbox, which holds protocol bodies another server accepts", async () => {
  const serverRoot = tempDir("http");
  const cwd = tempDir("http");
  const result = await runScript(fixture("remote_outbox.ts"), {
    args: [serverRoot, "alice/outbox/run"],
    env: { ML_DASH_HTTP_TIMEOUT: "0.3", ML_DASH_ROOT: undefined },
    cwd,
  });
  assert.equal(result.code, 0, result.stderr);
  const error = JSON.parse(result.stdout.trim().split("\n").pop()!) as { name: string; message: string };
  assert.equal(error.name, "StorageError");
  assert.match(error.message, /outbox \.dash\/\.outbox\/alice%2Foutbox%2Frun/);
  assert.match(error.message, /ml-dash sync/);
  const dir = path.join(cwd, ".dash", ".outbox", "alice%2Foutbox%2Frun");
  const files = fs.readdirSync(dir);
  assert.ok(files.length >= 1);
  const server = await serve({ root: serverRoot, port: 0, quiet: true });
  try {
    for (const file of files) assert.match(file, /^[0-9a-f-]+-\d+\.json$/);
    await postOutboxFiles(server.url, dir, files);
    const series = await get(server.url, "/api/v1/series?prefix=alice/outbox/run&key=train/loss");
    assert.deepEqual(series.x, [0, 1, 2, 3, 4]);
  } finally {
    await server.close();
  }
});

/** Posts outbox files to a server as `ml-dash sync` does, each acknowledged. */
async function postOutboxFiles(url: string, dir: string, files: string[]): Promise<void> {
  for (const file of files) {
    const res = await fetch(`${url}/api/v1/batch`, { method: "POST", body: fs.readFileSync(path.join(dir, file), "utf8"), headers: { "content-type": "application/json" } });
    assert.equal(res.status, 200);
    await res.body?.cancel();
  }
}

/** The metric records of the outbox files of a prefix, by step, and the files. */
function outboxRecords(dir: string): { steps: number[]; files: string[] } {
  const files = fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [];
  const steps: number[] = [];
  for (const file of files) {
    const body = JSON.parse(fs.readFileSync(path.join(dir, file), "utf8")) as { batch: { metrics?: Record<string, (string | { step: number })[]> } };
    for (const item of body.batch.metrics?.train ?? []) {
      if (typeof item === "string") for (const line of item.split("\n")) steps.push(JSON.parse(line).step);
      else steps.push(item.step);
    }
  }
  return { steps: steps.sort((a, b) => a - b), files };
}

test("a server down for the rest of the run: every batch reaches the outbox, and a script that never completes still ends", async () => {
  const serverRoot = tempDir("http");
  const cwd = tempDir("http");
  const result = await runScript(fixture("remote_outage.ts"), {
    args: [serverRoot, "alice/outage/run"],
    env: { ML_DASH_HTTP_TIMEOUT: "0.1", ML_DASH_ROOT: undefined },
    cwd,
    timeoutMs: 30_000,
  });
  assert.equal(result.code, 0, `the process ended on its own: ${result.stderr.slice(0, 500)}`);
  assert.ok(result.stderr.split("\n").length < 20, "failures are reported once, not once per attempt");
  const dir = path.join(cwd, ".dash", ".outbox", "alice%2Foutage%2Frun");
  const { steps, files } = outboxRecords(dir);
  assert.deepEqual(steps, Array.from({ length: 51 }, (_, i) => i), "every record is in the outbox, once");
  const server = await serve({ root: serverRoot, port: 0, quiet: true });
  try {
    await postOutboxFiles(server.url, dir, files);
    const series = await get(server.url, "/api/v1/series?prefix=alice/outage/run&key=train/loss&points=1000");
    assert.deepEqual(series.x, Array.from({ length: 51 }, (_, i) => i));
  } finally {
    await server.close();
  }
});

test("a batch the server refuses (413) stays in the outbox and does not hold back the batches after it", async () => {
  const server = await serve({ root: tempDir("http"), port: 0, quiet: true, maxBodyBytes: 4000 });
  const cwd = tempDir("http");
  try {
    const exp = new Experiment({ prefix: "alice/refused/run", dashUrl: server.url, dashRoot: path.join(cwd, ".dash") });
    await exp.run.start();
    for (let step = 0; step < 10; step++) exp.metrics("train").log({ loss: step });
    // The file goes in a request of its own: the records logged with it are not refused with it.
    await assert.rejects(exp.files.saveBytes("big.bin", new Uint8Array(5000)), /refused it.*not sent again.*outbox/);
    for (let step = 10; step < 20; step++) exp.metrics("train").log({ loss: step });
    await exp.run.complete();
    const series = await get(server.url, "/api/v1/series?prefix=alice/refused/run&key=train/loss&points=1000");
    assert.equal(series.total, 20);
    const one = await get(server.url, "/api/v1/experiment?prefix=alice/refused/run");
    assert.equal((one.status as { status: string }).status, "COMPLETED");
    assert.equal(fs.readdirSync(path.join(cwd, ".dash", ".outbox", "alice%2Frefused%2Frun")).length, 1, "the refused batch is kept");
  } finally {
    await server.close();
  }
});

test("mod.ts under deno run --allow-net=127.0.0.1 --deny-read --deny-write logs to the server; without a filesystem the queue is bounded in memory", async () => {
  const root = tempDir("http");
  const server = await serve({ root, port: 0, quiet: true });
  const dead = `http://127.0.0.1:${await freePort()}`;
  let script = fileURLToPath(fixture("remote_denied.ts"));
  if (!fs.existsSync(script)) script = script.replace(/\.ts$/, ".js");
  try {
    const child = spawn(denoPath(), ["run", "--allow-net=127.0.0.1", "--deny-read", "--deny-write", script, server.url, "alice/denied/run", dead], {
      cwd: tempDir("http"),
      env: { ...process.env, HOME: tempDir("http"), ML_DASH_TOKEN: "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    assert.equal(await exited(child), 0, stderr);
    const lines = stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines[0], { logged: true });
    assert.match(lines[1].error, /no filesystem for an outbox: 1 batch\(es\) are kept in memory \(at most 2\)/);
    assert.match(lines[2].error, /no filesystem for an outbox: 2 batch\(es\)/);
    assert.match(lines[3].error, /In-memory queue for .* is full/);
    assert.doesNotMatch(stderr, /PermissionDenied|NotCapable|Requires (read|write) access/);

    const one = await get(server.url, "/api/v1/experiment?prefix=alice/denied/run");
    assert.equal((one.status as { status: string }).status, "COMPLETED");
    assert.equal((one.summary as Record<string, { count: number }>)["train/loss"].count, 100);
    assert.deepEqual(one.params, { lr: 0.5 });
    const note = await fetch(`${server.url}/api/v1/file?prefix=alice/denied/run&path=note.txt`);
    assert.equal(await note.text(), "written without a filesystem");
  } finally {
    await server.close();
  }
});

test("the httpTimeout option bounds a server that accepts connections and never answers: start and complete settle, and the records are in the outbox", { timeout: 60_000 }, async () => {
  const net = await import("node:net");
  const sockets = new Set<import("node:net").Socket>();
  const silent = net.createServer((socket) => void sockets.add(socket)); // reads nothing, answers nothing
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(silent.address() as { port: number }).port}`;
  const outboxRoot = tempDir("http");
  const savedRoot = process.env.ML_DASH_ROOT;
  process.env.ML_DASH_ROOT = outboxRoot;
  const original = console.warn;
  console.warn = () => {};
  try {
    const exp = new Experiment({ prefix: "alice/silent/run", dashUrl: url, httpTimeout: 0.2 });
    await exp.run.start();
    for (let step = 0; step < 3; step++) exp.metrics("train").log({ loss: step });
    await assert.rejects(exp.run.complete(), /saved in the outbox/);
  } finally {
    console.warn = original;
    if (savedRoot === undefined) delete process.env.ML_DASH_ROOT;
    else process.env.ML_DASH_ROOT = savedRoot;
    for (const socket of sockets) socket.destroy();
    silent.close();
  }
  const { steps } = outboxRecords(path.join(outboxRoot, ".outbox", encodeURIComponent("alice/silent/run")));
  assert.deepEqual(steps, [0, 1, 2]);
});

test("the httpTimeout option must be a number of seconds, 0 or more", () => {
  for (const bad of [-1, Number.NaN, "5"]) {
    assert.throws(() => new Experiment({ prefix: "alice/x/y", dashUrl: "http://127.0.0.1:1", httpTimeout: bad as number }).run, /Invalid httpTimeout .*: expected a number of seconds, 0 or more/);
  }
});
