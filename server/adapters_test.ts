// The runtime adapters against clients that hold connections: a real server in a child
// process (testing/fixtures/adapter_server.ts) under a low `ulimit -n`, flooded with idle
// TCP connections, slowloris headers and bodies, and idle keep-alive connections.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { LISTEN_BACKLOG, resolveLimits } from "./adapters.ts";
import type { ConnectionLimits } from "./adapters.ts";
import { runtimeName, scriptCommand } from "../testing/run_script.ts";
import { sleep } from "../testing/temp.ts";

const FIXTURE = new URL("../testing/fixtures/adapter_server.ts", import.meta.url);
/** The child's soft limit on open files; the floods open more connections than this. */
const FD_LIMIT = 256;
/** Generous: waiting this long is never what a test asserts. */
const DEADLINE_MS = 40_000;

interface Child {
  url: string;
  port: number;
  process: ChildProcess;
  /** Everything the child wrote to stderr so far. */
  stderr(): string;
  stop(): Promise<void>;
}

/** Starts the fixture under `ulimit -n FD_LIMIT` and resolves with the URL it prints. */
async function startServer(args: string[]): Promise<Child> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "ml-dash-adapters-"));
  const { cmd, args: cmdArgs } = scriptCommand(FIXTURE, [root, ...args]);
  const child = spawn("bash", ["-c", `ulimit -n ${FD_LIMIT} && exec "$0" "$@"`, cmd, ...cmdArgs], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout!.setEncoding("utf8").on("data", (s: string) => {
      out += s;
      const line = /^(http:\/\/\S+)\n/m.exec(out);
      if (line) resolve(line[1]);
    });
    child.once("exit", (code) => reject(new Error(`fixture exited (${code}) before listening: ${stderr}`)));
  });
  return {
    url,
    port: Number(new URL(url).port),
    process: child,
    stderr: () => stderr,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGKILL");
        await exited;
      }
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}

function alive(child: Child): boolean {
  return child.process.exitCode === null && child.process.signalCode === null;
}

/** Resolves once `done()` holds; rejects with `what` after DEADLINE_MS. */
async function waitFor(what: string, done: () => boolean): Promise<void> {
  const start = Date.now();
  while (!done()) {
    if (Date.now() - start > DEADLINE_MS) throw new Error(`Gave up waiting: ${what}`);
    await sleep(50);
  }
}

/** A client socket that records whether the server ended it (rather than this side). */
interface Probe {
  socket: net.Socket;
  /** False when the server refused the connection. */
  connected: boolean;
  /** True once the server closed or reset the connection. */
  closedByServer(): boolean;
  /** Everything received. */
  received(): string;
}

/** Connects; resolves once connected or refused (a server at its cap may stop listening). */
function connect(port: number): Promise<Probe> {
  return new Promise((resolve) => {
    let ended = false;
    let received = "";
    const socket = net.connect(port, "127.0.0.1");
    socket.setEncoding("utf8");
    socket.on("data", (s: string) => (received += s));
    // A FIN or a reset from the server; destroy() on this side raises neither.
    socket.on("end", () => (ended = true));
    socket.on("error", () => (ended = true));
    const probe = (connected: boolean): Probe => ({ socket, connected, closedByServer: () => ended, received: () => received });
    socket.once("connect", () => resolve(probe(true)));
    socket.once("error", () => resolve(probe(false)));
  });
}

/** `GET /api/v1/experiments` on a fresh connection, retried until it answers or the deadline passes. */
async function getExperiments(url: string): Promise<number> {
  const start = Date.now();
  for (;;) {
    try {
      const res = await fetch(`${url}/api/v1/experiments`, { signal: AbortSignal.timeout(5_000) });
      await res.body?.cancel();
      return res.status;
    } catch (error) {
      if (Date.now() - start > DEADLINE_MS) throw error;
      await sleep(200);
    }
  }
}

/** Opens `count` connections that never send a byte; some may be refused or closed at once. */
async function flood(port: number, count: number): Promise<net.Socket[]> {
  const sockets: net.Socket[] = [];
  let settled = 0;
  for (let i = 0; i < count; i++) {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => settled++);
    socket.once("error", () => settled++);
    socket.on("error", () => {});
    sockets.push(socket);
  }
  await waitFor(`${count} connections to settle`, () => settled === count);
  return sockets;
}

/** Sends `text` one byte at a time until the server ends the connection or the text runs out. */
async function trickle(probe: Probe, text: string, gapMs: number): Promise<void> {
  for (let i = 0; i < text.length && !probe.closedByServer(); i++) {
    probe.socket.write(text[i]);
    await sleep(gapMs);
  }
}

test("resolveLimits() fills in the defaults and keeps the connection cap below the fd limit", () => {
  const limits = resolveLimits({}, FD_LIMIT);
  assert.ok(limits.maxConnections + LISTEN_BACKLOG < FD_LIMIT, `cap ${limits.maxConnections} and a full queue fit under the limit`);
  assert.ok(limits.maxConnections > 0);
  assert.equal(resolveLimits({ maxConnections: 5 }, FD_LIMIT).maxConnections, 5);
  assert.equal(resolveLimits({ maxConnections: 5 }, 1).maxConnections, 1, "never below one connection");
  assert.ok(limits.idleTimeoutMs > 15_000, "longer than the event streams' ping interval");
  assert.ok(limits.headersTimeoutMs > 0 && limits.requestTimeoutMs >= limits.headersTimeoutMs);
});

test("serve(): more idle connections than the fd limit leave the server alive, and it answers once they close", async () => {
  const child = await startServer(["serve"]);
  let sockets: net.Socket[] = [];
  try {
    sockets = await flood(child.port, 1_100);
    // Time for the server to accept what it can; its failures come within milliseconds.
    await sleep(1_000);
    assert.ok(alive(child), `the server died: ${child.stderr()}`);
    for (const socket of sockets) socket.destroy();
    assert.equal(await getExperiments(child.url), 200);
    assert.ok(alive(child), `the server died: ${child.stderr()}`);
  } finally {
    for (const socket of sockets) socket.destroy();
    await child.stop();
  }
});

// Bun.serve has no connection cap; it leaves the excess in the kernel's queue.
test("connections beyond maxConnections are refused or closed by the server, and it answers once the others close", { skip: runtimeName() === "bun" }, async () => {
  const cap = 5;
  const child = await startServer(["limits", JSON.stringify({ maxConnections: cap } satisfies ConnectionLimits)]);
  const probes: Probe[] = [];
  try {
    for (let i = 0; i < cap * 2; i++) probes.push(await connect(child.port));
    await waitFor(`${cap} connections closed by the server`, () => probes.filter((p) => p.closedByServer()).length >= cap);
    assert.equal(probes.filter((p) => p.closedByServer()).length, cap);
    assert.ok(alive(child), `the server died: ${child.stderr()}`);
    for (const probe of probes) probe.socket.destroy();
    assert.equal(await getExperiments(child.url), 200);
  } finally {
    for (const probe of probes) probe.socket.destroy();
    await child.stop();
  }
});

test("a slowloris client sending its headers a byte at a time is disconnected by the server", async () => {
  const child = await startServer(["limits", JSON.stringify({ headersTimeoutMs: 1_000 } satisfies ConnectionLimits)]);
  try {
    const probe = await connect(child.port);
    assert.ok(probe.connected);
    // Outlasts any header timeout here (Bun's is 10 s): a byte every 100 ms for 40 s.
    const headers = `GET /api/v1/experiments HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ${"a".repeat(350)}`;
    await trickle(probe, headers, 100);
    assert.ok(probe.closedByServer(), "the server still holds the connection after the whole text");
    assert.ok(alive(child), `the server died: ${child.stderr()}`);
    assert.equal(await getExperiments(child.url), 200);
  } finally {
    await child.stop();
  }
});

test("a request body that trickles in is cut off by the server", async () => {
  const limits: ConnectionLimits = { headersTimeoutMs: 1_000, requestTimeoutMs: 2_000, idleTimeoutMs: 2_000 };
  const child = await startServer(["limits", JSON.stringify(limits)]);
  try {
    const probe = await connect(child.port);
    assert.ok(probe.connected);
    // The body announced is far longer than what is sent, so only a timeout can end the request.
    probe.socket.write(
      "POST /api/v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
    );
    await trickle(probe, " ".repeat(400), 100);
    assert.ok(probe.closedByServer(), "the server still holds the connection after 400 bytes at 10 bytes/s");
    assert.ok(alive(child), `the server died: ${child.stderr()}`);
  } finally {
    await child.stop();
  }
});

test("an idle keep-alive connection is closed by the server after the idle timeout", async () => {
  const child = await startServer(["limits", JSON.stringify({ idleTimeoutMs: 1_000 } satisfies ConnectionLimits)]);
  try {
    const probe = await connect(child.port);
    assert.ok(probe.connected);
    probe.socket.write("GET /api/v1/experiments HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n");
    await waitFor("the response", () => /^HTTP\/1\.1 200 /.test(probe.received()));
    await waitFor("the server to close the idle connection", () => probe.closedByServer());
    assert.ok(alive(child), `the server died: ${child.stderr()}`);
  } finally {
    await child.stop();
  }
});
