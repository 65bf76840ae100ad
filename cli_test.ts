// The ml-dash command as real processes, on experiments written by the library.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { test } from "node:test";
import { main } from "./cli.ts";
import { Experiment } from "./mod.ts";
import { serve } from "./server.ts";
import { HttpBackend } from "./storage/http.ts";
import { DashReader } from "./storage/jsonl.ts";
import { runScript, spawnScript } from "./testing/run_script.ts";
import type { RunScriptResult } from "./testing/run_script.ts";
import { tempDir } from "./testing/temp.ts";

const CLI = new URL("./cli.ts", import.meta.url);

function cli(args: string[], env: Record<string, string | undefined> = {}): Promise<RunScriptResult> {
  return runScript(CLI, { args, env: { ML_DASH_ROOT: undefined, ML_DASH_TOKEN: undefined, ...env }, timeoutMs: 60_000 });
}

/** Runs `main(argv)` in this process; returns its exit code and what it printed with console.log and console.error. */
async function runMain(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const { log, error } = console;
  let stdout = "";
  let stderr = "";
  console.log = (...parts: unknown[]): void => void (stdout += `${parts.join(" ")}\n`);
  console.error = (...parts: unknown[]): void => void (stderr += `${parts.join(" ")}\n`);
  try {
    const code = await main(argv);
    return { code, stdout, stderr };
  } finally {
    console.log = log;
    console.error = error;
  }
}

/** Writes three experiments with the library: completed, failed and cancelled. */
async function writeFixtures(root: string): Promise<void> {
  await new Experiment({ prefix: "alice/mnist/baseline", dashRoot: root, readme: "the baseline", tags: ["small"] }).run(async (exp) => {
    exp.params.set({ lr: 0.001, model: { depth: 4 } });
    for (let step = 0; step < 10; step++) {
      exp.metrics("train").log({ step, loss: 1 / (step + 1), acc: step / 10 });
      if (step % 2 === 0) exp.metrics("eval").log({ step, loss: 2 / (step + 1) });
    }
    exp.metrics("default").log({ step: 3, lr: 0.5 });
    exp.log("done", { level: "info" });
    await exp.files.saveText("notes.txt", "hello");
  });
  await new Experiment({ prefix: "alice/mnist/broken", dashRoot: root }).run(() => {
    throw new Error("diverged");
  }).catch(() => {});
  const exp = new Experiment({ prefix: "bob/cifar/stopped", dashRoot: root });
  await exp.run.start();
  exp.metrics("train").log({ loss: 3 });
  await exp.run.cancel();
}

test("ml-dash ls lists experiments written by the library, with a glob, --status and --json", async () => {
  const root = tempDir("cli");
  await writeFixtures(root);
  const all = await cli(["ls", "--root", root]);
  assert.equal(all.code, 0, all.stderr);
  assert.match(all.stdout, /STATUS\s+STARTED\s+PREFIX/);
  assert.match(all.stdout, /COMPLETED .* alice\/mnist\/baseline/);
  assert.match(all.stdout, /FAILED .* alice\/mnist\/broken/);
  assert.match(all.stdout, /CANCELLED .* bob\/cifar\/stopped/);

  const glob = await cli(["ls", "alice/*", "--root", root, "--json"]);
  assert.deepEqual(JSON.parse(glob.stdout).map((e: { prefix: string }) => e.prefix), ["alice/mnist/baseline", "alice/mnist/broken"]);
  const deep = await cli(["ls", "**/b*", "--root", root, "--json"]);
  assert.deepEqual(JSON.parse(deep.stdout).map((e: { prefix: string }) => e.prefix), ["alice/mnist/baseline", "alice/mnist/broken"]);
  const failed = await cli(["ls", "--status", "failed", "--root", root, "--json"]);
  assert.deepEqual(JSON.parse(failed.stdout).map((e: { prefix: string }) => e.prefix), ["alice/mnist/broken"]);
  const fromEnv = await cli(["ls", "bob", "--json"], { ML_DASH_ROOT: root });
  assert.deepEqual(JSON.parse(fromEnv.stdout).map((e: { prefix: string }) => e.prefix), ["bob/cifar/stopped"]);
  const bad = await cli(["ls", "--status", "weird", "--root", root]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /invalid --status "weird"/);
});

test("ml-dash show prints metadata, status, params and count/min/max/last per key", async () => {
  const root = tempDir("cli");
  await writeFixtures(root);
  const shown = await cli(["show", "alice/mnist/baseline", "--root", root]);
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, /status\s+COMPLETED/);
  assert.match(shown.stdout, /readme\s+the baseline/);
  assert.match(shown.stdout, /tags\s+small/);
  assert.match(shown.stdout, /lr = 0\.001/);
  assert.match(shown.stdout, /model\.depth = 4/);
  assert.match(shown.stdout, /KEY\s+COUNT\s+MIN\s+MAX\s+LAST\s+LAST STEP/);
  assert.match(shown.stdout, /train\/loss\s+10\s+0\.1\s+1\s+0\.1\s+9/);
  assert.match(shown.stdout, /eval\/loss\s+5\s+0\.222222\s+2\s+0\.222222\s+8/);
  assert.match(shown.stdout, /notes\.txt\s+5 B\s+text\/plain/);
  const failed = await cli(["show", "alice/mnist/broken", "--root", root]);
  assert.match(failed.stdout, /status\s+FAILED/);
  assert.match(failed.stdout, /error\s+.*diverged/);
  const json = JSON.parse((await cli(["show", "alice/mnist/baseline", "--json", "--root", root])).stdout);
  assert.equal(json.summary["train/acc"].max, 0.9);
  assert.deepEqual(json.params, { lr: 0.001, "model.depth": 4 });
});

test("ml-dash export writes CSV (one row per step, one column per key) and JSONL, to stdout or --out", async () => {
  const root = tempDir("cli");
  await writeFixtures(root);
  const csv = await cli(["export", "alice/mnist/baseline", "--format", "csv", "--root", root]);
  assert.equal(csv.code, 0, csv.stderr);
  const rows = csv.stdout.trim().split("\n");
  assert.equal(rows[0], "step,eval/loss,lr,train/acc,train/loss");
  assert.equal(rows.length, 11);
  assert.equal(rows[1], "0,2,,0,1");
  assert.equal(rows[2], "1,,,0.1,0.5");
  assert.equal(rows[4], "3,,0.5,0.3,0.25");

  const out = path.join(tempDir("cli"), "out.jsonl");
  const jsonl = await cli(["export", "alice/mnist/baseline", "--format", "jsonl", "--out", out, "--root", root]);
  assert.equal(jsonl.code, 0, jsonl.stderr);
  const records = fs.readFileSync(out, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(records.length, 10);
  assert.deepEqual(records[3], { step: 3, "train/loss": 0.25, "train/acc": 0.3, lr: 0.5 });
  const bad = await cli(["export", "alice/mnist/baseline", "--format", "xlsx", "--root", root]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /invalid --format "xlsx": expected csv or jsonl/);
});

test("an unknown prefix prints a message naming it and exits with code 1 (show, export)", async () => {
  const root = tempDir("cli");
  await writeFixtures(root);
  for (const args of [["show", "nobody/x/y"], ["export", "nobody/x/y", "--format", "csv"]]) {
    const result = await cli([...args, "--root", root]);
    assert.equal(result.code, 1, args.join(" "));
    assert.match(result.stderr, /Unknown experiment "nobody\/x\/y"/);
  }
});

test("--help works for ml-dash and for every command; unknown commands and options exit 2", async () => {
  const top = await cli(["--help"]);
  assert.equal(top.code, 0);
  for (const command of ["serve", "sync", "login", "logout", "ls", "show", "export"]) {
    assert.match(top.stdout, new RegExp(`^  ${command}\\s`, "m"));
    const help = await cli([command, "--help"]);
    assert.equal(help.code, 0, command);
    assert.match(help.stdout, new RegExp(`^Usage: ml-dash ${command}`), command);
  }
  const unknown = await cli(["frobnicate"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
  const option = await cli(["ls", "--colour"]);
  assert.equal(option.code, 2);
  assert.match(option.stderr, /unknown option --colour/);
});

test("ml-dash login stores the token in ~/.dash/credentials.json with mode 0600; logout removes it", async () => {
  const home = tempDir("cli");
  const url = "http://127.0.0.1:9/";
  const login = await cli(["login", "--url", url, "--token", "tok-123"], { HOME: home });
  assert.equal(login.code, 0, login.stderr);
  assert.ok(!login.stdout.includes("tok-123"), "the token is never printed");
  const file = path.join(home, ".dash", "credentials.json");
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  assert.deepEqual(JSON.parse(fs.readFileSync(file, "utf8")), { "http://127.0.0.1:9": { token: "tok-123" } });
  await cli(["login", "--url", "http://example.test:8787", "--token", "other"], { HOME: home });
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);

  const logout = await cli(["logout", "--url", url], { HOME: home });
  assert.equal(logout.code, 0, logout.stderr);
  assert.deepEqual(JSON.parse(fs.readFileSync(file, "utf8")), { "http://example.test:8787": { token: "other" } });
  assert.equal((await cli(["logout"], { HOME: home })).code, 0);
  assert.ok(!fs.existsSync(file));
});

test("ml-dash login tightens an existing ~/.dash folder to mode 0700", async () => {
  const home = tempDir("cli");
  const dir = path.join(home, ".dash");
  fs.mkdirSync(dir, { mode: 0o755 });
  fs.chmodSync(dir, 0o755);
  const login = await cli(["login", "--url", "http://127.0.0.1:9", "--token", "tok"], { HOME: home });
  assert.equal(login.code, 0, login.stderr);
  assert.equal((fs.statSync(dir).mode & 0o777).toString(8), "700");
  assert.equal((fs.statSync(path.join(dir, "credentials.json")).mode & 0o777).toString(8), "600");
  assert.deepEqual(fs.readdirSync(dir), ["credentials.json"], "no temporary file is left");
});

test("ml-dash login writes a temporary file of a random name, created exclusively: a symlink planted at a guessable name gets nothing", async () => {
  const home = tempDir("cli");
  const result = await runScript(new URL("./testing/fixtures/login_planted_tmp.ts", import.meta.url), {
    args: ["login", "--url", "http://127.0.0.1:9", "--token", "secret-tok"],
    env: { HOME: home, ML_DASH_TOKEN: undefined },
    timeoutMs: 60_000,
  });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(fs.readFileSync(path.join(home, "decoy"), "utf8"), "", "the planted link's target receives nothing");
  const file = path.join(home, ".dash", "credentials.json");
  assert.ok(fs.lstatSync(file).isFile(), "credentials.json is a file, not the planted link");
  assert.equal((fs.lstatSync(file).mode & 0o777).toString(8), "600");
  assert.deepEqual(JSON.parse(fs.readFileSync(file, "utf8")), { "http://127.0.0.1:9": { token: "secret-tok" } });
});

function waitForUrl(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    child.stdout?.setEncoding("utf8").on("data", (s: string) => {
      text += s;
      const match = /at (http:\/\/\S+)/.exec(text);
      if (match) resolve(match[1]);
    });
    child.stderr?.setEncoding("utf8").on("data", (s: string) => (text += s));
    child.once("exit", (code) => reject(new Error(`serve exited (${code}):\n${text}`)));
  });
}

test("ml-dash serve runs the server (read API on the root, token for writes) and refuses 0.0.0.0 without a token", async () => {
  const root = tempDir("cli");
  await writeFixtures(root);
  const child = spawnScript(CLI, { args: ["serve", "--root", root, "--port", "0", "--token", "tok"] });
  try {
    const url = await waitForUrl(child);
    const list = await (await fetch(`${url}/api/v1/experiments`)).json();
    assert.equal(list.total, 3);
    const write = await fetch(`${url}/api/v1/batch`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    assert.equal(write.status, 401);
    await write.body?.cancel();
  } finally {
    child.kill("SIGTERM");
    await new Promise((resolve) => child.once("exit", resolve));
  }
  const refused = await cli(["serve", "--root", root, "--port", "0", "--host", "0.0.0.0"]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /Refusing to listen on 0\.0\.0\.0 without a token/);
});

test("ml-dash sync sends local experiments; a rerun stores nothing twice, and data added later is sent", async () => {
  const root = tempDir("cli");
  await writeFixtures(root);
  const serverRoot = tempDir("cli");
  const server = await serve({ root: serverRoot, port: 0, quiet: true, token: "sync-token" });
  try {
    const first = await cli(["sync", "--url", server.url, "--root", root, "--token", "sync-token"]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /synced 3 experiment\(s\)/);
    const local = new DashReader(root);
    const remote = new DashReader(serverRoot);
    for (const prefix of ["alice/mnist/baseline", "alice/mnist/broken", "bob/cifar/stopped"]) {
      assert.deepEqual(await remote.summary(prefix), await local.summary(prefix), prefix);
      assert.deepEqual(await remote.params(prefix), await local.params(prefix), prefix);
      assert.equal((await remote.status(prefix))?.status, (await local.status(prefix))?.status, prefix);
      assert.deepEqual(await remote.logs(prefix), await local.logs(prefix), prefix);
    }
    assert.deepEqual((await remote.files("alice/mnist/baseline")).map((f) => f.path), ["notes.txt"]);

    const batches = server.handler.stats.batches;
    const again = await cli(["sync", "--url", server.url, "--root", root], { ML_DASH_TOKEN: "sync-token" });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /alice\/mnist\/baseline: 0 new line\(s\), 0 file\(s\) sent/);
    assert.equal(server.handler.stats.batches, batches, "a rerun stores nothing");
    assert.deepEqual(await remote.summary("alice/mnist/baseline"), await local.summary("alice/mnist/baseline"));

    // Resume the experiment locally and sync again: only the new lines go.
    await new Experiment({ prefix: "alice/mnist/baseline", dashRoot: root }).run((exp) => {
      for (let step = 10; step < 15; step++) exp.metrics("train").log({ step, loss: 0.01, acc: 1 });
    });
    const third = await cli(["sync", "--url", server.url, "--root", root, "--token", "sync-token"]);
    assert.match(third.stdout, /alice\/mnist\/baseline: 5 new line\(s\)/);
    assert.equal((await remote.summary("alice/mnist/baseline"))["train/loss"].count, 15);
    assert.deepEqual(await remote.summary("alice/mnist/baseline"), await local.summary("alice/mnist/baseline"));

    const denied = await cli(["sync", "--url", server.url, "--root", root, "--token", "wrong"]);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /401/);
  } finally {
    await server.close();
  }
});

test("ml-dash sync sends the outbox batches and removes them", async () => {
  const root = tempDir("cli");
  const serverRoot = tempDir("cli");
  const down = await serve({ root: serverRoot, port: 0, quiet: true });
  const url = down.url;
  await down.close();
  // A backend that gives up at once spools its batches to <root>/.outbox/.
  const backend = new HttpBackend({ url, outboxRoot: root, giveUpAfterMs: 0 });
  const lines = Array.from({ length: 20 }, (_, step) => JSON.stringify({ _ts: 1, step, loss: step }));
  await assert.rejects(backend.write("alice/spool/run", { metadata: { prefix: "alice/spool/run" }, metrics: { train: [lines.slice(0, 10).join("\n")] } }), /outbox/);
  await assert.rejects(backend.write("alice/spool/run", { metrics: { train: [lines.slice(10).join("\n")] }, status: { status: "COMPLETED" } }), /outbox/);
  const outbox = path.join(root, ".outbox", "alice%2Fspool%2Frun");
  assert.equal(fs.readdirSync(outbox).length, 2);

  const port = Number(new URL(url).port);
  const server = await serve({ root: serverRoot, port, quiet: true });
  try {
    const sync = await cli(["sync", "--url", url, "--root", root]);
    assert.equal(sync.code, 0, sync.stderr);
    assert.match(sync.stdout, /outbox: 2 batch\(es\) sent/);
    assert.ok(!fs.existsSync(outbox), "the outbox is emptied");
    const series = new DashReader(serverRoot).series("alice/spool/run", "train/loss");
    assert.deepEqual((await series).step, Array.from({ length: 20 }, (_, i) => i));
    assert.equal((await new DashReader(serverRoot).status("alice/spool/run"))?.status, "COMPLETED");
  } finally {
    await server.close();
  }
});

test("ml-dash sync --outbox-only sends the outbox and not the experiments (a hybrid root); a refused batch stays and the rest go on", async () => {
  const root = tempDir("cli");
  await writeFixtures(root);
  const serverRoot = tempDir("cli");
  const down = await serve({ root: serverRoot, port: 0, quiet: true });
  const url = down.url;
  await down.close();
  const backend = new HttpBackend({ url, outboxRoot: root, giveUpAfterMs: 0 });
  const line = (step: number) => JSON.stringify({ _ts: 1, step, loss: step });
  await assert.rejects(backend.write("alice/spool/run", { metadata: { prefix: "alice/spool/run" }, files: [{ path: "big.bin", size: 6000, mime: "application/octet-stream", _ts: 1, data: new Uint8Array(6000) }] }), /outbox/);
  await assert.rejects(backend.write("alice/spool/run", { metrics: { train: [line(0)] } }), /outbox/);
  const port = Number(new URL(url).port);
  const server = await serve({ root: serverRoot, port, quiet: true, maxBodyBytes: 4000 });
  try {
    const sync = await cli(["sync", "--outbox-only", "--url", url, "--root", root]);
    assert.equal(sync.code, 1, "a refused batch makes the exit code 1");
    assert.match(sync.stderr, /413/);
    assert.match(sync.stdout, /outbox: 2 batch\(es\) sent/, "the metadata sent with the file is not refused with it");
    assert.equal(fs.readdirSync(path.join(root, ".outbox", "alice%2Fspool%2Frun")).length, 1, "the refused batch stays");
    assert.deepEqual((await new DashReader(serverRoot).series("alice/spool/run", "train/loss")).step, [0]);
    assert.deepEqual((await new DashReader(serverRoot).listExperiments()).map((e) => e.prefix), ["alice/spool/run"], "no local experiment was sent");
  } finally {
    await server.close();
  }
});

test("ml-dash sync replays outbox sessions in the order they began, so a resumed run's last status wins", async () => {
  const root = tempDir("cli");
  const dir = path.join(root, ".outbox", encodeURIComponent("alice/resumed/run"));
  fs.mkdirSync(dir, { recursive: true });
  const write = (session: string, status: string, time: number): void => {
    const file = path.join(dir, `${session}-0.json`);
    fs.writeFileSync(file, JSON.stringify({ prefix: "alice/resumed/run", session, seq: 0, batch: { metadata: {}, status: { status } } }));
    fs.utimesSync(file, time, time);
  };
  write("zzzz-older-session", "FAILED", 1_000_000);
  write("aaaa-newer-session", "COMPLETED", 2_000_000);
  const serverRoot = tempDir("cli");
  const server = await serve({ root: serverRoot, port: 0, quiet: true });
  try {
    const sync = await cli(["sync", "--outbox-only", "--url", server.url, "--root", root]);
    assert.equal(sync.code, 0, sync.stderr);
    assert.equal((await new DashReader(serverRoot).status("alice/resumed/run"))?.status, "COMPLETED");
  } finally {
    await server.close();
  }
});

/** Runs `ml-dash serve` with `args` (and a free port) until `use` is done. */
async function withServe(args: string[], env: Record<string, string | undefined>, use: (url: string) => Promise<void>): Promise<void> {
  const child = spawnScript(CLI, { args: ["serve", "--port", "0", ...args], env: { ML_DASH_SERVER_TOKEN: undefined, ...env } });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  try {
    await use(await waitForUrl(child));
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
}

/** POSTs a valid one-batch envelope and returns the answer's status. */
async function postBatch(url: string, token?: string): Promise<number> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  const body = JSON.stringify({ prefix: "alice/token/run", session: `s-${Math.random().toString(36).slice(2)}`, seq: 0, batch: { metadata: {} } });
  const response = await fetch(`${url}/api/v1/batch`, { method: "POST", headers, body });
  await response.body?.cancel();
  return response.status;
}

async function getStatus(url: string, token?: string): Promise<number> {
  const response = await fetch(`${url}/api/v1/experiments`, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
  await response.body?.cancel();
  return response.status;
}

test("ml-dash serve --token-file and --read-token-file read the tokens from files (a trailing newline dropped), and ML_DASH_SERVER_TOKEN from the environment", async () => {
  const root = tempDir("cli");
  const writeFile = path.join(tempDir("cli"), "write-token");
  const readFile = path.join(tempDir("cli"), "read-token");
  fs.writeFileSync(writeFile, "file-tok\n");
  fs.writeFileSync(readFile, "read-tok\r\n");
  await withServe(["--root", root, "--token-file", writeFile, "--read-token-file", readFile], {}, async (url) => {
    assert.equal(await postBatch(url), 401, "a write without the token");
    assert.equal(await postBatch(url, "file-tok"), 200, "a write with the token, without the file's newline");
    assert.equal(await getStatus(url), 401, "a read without the read token");
    assert.equal(await getStatus(url, "read-tok"), 200, "a read with the read token");
  });
  await withServe(["--root", root], { ML_DASH_SERVER_TOKEN: "env-tok" }, async (url) => {
    assert.equal(await postBatch(url), 401);
    assert.equal(await postBatch(url, "env-tok"), 200);
  });
});

test("ml-dash serve: an empty, unreadable or multi-line token file is a clear error; --token with --token-file is a usage error", async () => {
  const root = tempDir("cli");
  const dir = tempDir("cli");
  const empty = path.join(dir, "empty");
  fs.writeFileSync(empty, "\n");
  const twoLines = path.join(dir, "two");
  fs.writeFileSync(twoLines, "a\nb\n");
  const missing = path.join(dir, "missing");
  const cases: [string[], number, RegExp][] = [
    [["--token-file", empty], 1, /Empty --token-file ".*empty": expected the token on one line/],
    [["--token-file", twoLines], 1, /Invalid --token-file ".*two": expected the token on one line, received 2 lines/],
    [["--token-file", missing], 1, /Cannot read --token-file ".*missing": .*(ENOENT|no such file|not found)/i],
    [["--read-token-file", missing], 1, /Cannot read --read-token-file ".*missing"/],
    [["--token", "t", "--token-file", empty], 2, /expected --token or --token-file, received both/],
  ];
  for (const [args, code, message] of cases) {
    const result = await cli(["serve", "--root", root, "--port", "0", ...args]);
    assert.equal(result.code, code, `${args.join(" ")}: ${result.stderr}`);
    assert.match(result.stderr, message);
  }
});

test("ml-dash sync sends a parameter that changed back (A, then B, then A again): the server ends with A", async () => {
  const root = tempDir("cli");
  const prefix = "alice/params/run";
  const setLr = (lr: number): Promise<void> =>
    new Experiment({ prefix, dashRoot: root }).run((exp) => {
      exp.params.set({ lr });
    });
  const serverRoot = tempDir("cli");
  const server = await serve({ root: serverRoot, port: 0, quiet: true });
  try {
    const remote = new DashReader(serverRoot);
    for (const lr of [0.1, 0.2, 0.1]) {
      await setLr(lr);
      const sync = await cli(["sync", "--url", server.url, "--root", root]);
      assert.equal(sync.code, 0, sync.stderr);
      assert.deepEqual(await remote.params(prefix), { lr }, `after setting lr to ${lr}`);
    }
    const batches = server.handler.stats.batches;
    assert.equal((await cli(["sync", "--url", server.url, "--root", root])).code, 0);
    assert.equal(server.handler.stats.batches, batches, "an unchanged state is not sent again");
  } finally {
    await server.close();
  }
});

test("ml-dash sync sends the parameters of parameters.jsonl, also those the parameters.json snapshot lacks", async () => {
  const root = tempDir("cli");
  const prefix = "alice/params/log";
  await new Experiment({ prefix, dashRoot: root }).run((exp) => {
    exp.params.set({ lr: 0.1 });
  });
  // A second process's patch that reached the log but not the snapshot.
  fs.appendFileSync(path.join(root, ...prefix.split("/"), "parameters.jsonl"), JSON.stringify({ batch: 64 }) + "\n");
  const serverRoot = tempDir("cli");
  const server = await serve({ root: serverRoot, port: 0, quiet: true });
  try {
    const sync = await cli(["sync", "--url", server.url, "--root", root]);
    assert.equal(sync.code, 0, sync.stderr);
    assert.deepEqual(await new DashReader(serverRoot).params(prefix), { lr: 0.1, batch: 64 });
  } finally {
    await server.close();
  }
});

test("ml-dash sync reports and skips a file the server refuses, sends the other files and the later experiments, and exits 1 naming what it skipped", async () => {
  const root = tempDir("cli");
  await new Experiment({ prefix: "alice/files/run", dashRoot: root }).run(async (exp) => {
    exp.metrics("train").log({ step: 0, loss: 1 });
    await exp.files.saveBytes("big.bin", new Uint8Array(6000));
    await exp.files.saveText("small.txt", "small");
  });
  await new Experiment({ prefix: "bob/later/run", dashRoot: root }).run(async (exp) => {
    exp.params.set({ lr: 0.5 });
    exp.metrics("train").log({ step: 0, loss: 2 });
    await exp.files.saveText("notes.txt", "later");
  });
  const serverRoot = tempDir("cli");
  // The big file's base64 does not fit in a request; everything else does.
  const server = await serve({ root: serverRoot, port: 0, quiet: true, maxBodyBytes: 4000 });
  try {
    const sync = await cli(["sync", "--url", server.url, "--root", root]);
    assert.equal(sync.code, 1, `a skipped file makes the exit code 1\n${sync.stdout}\n${sync.stderr}`);
    assert.match(sync.stderr, /refused 1 part\(s\), skipped:\n {2}alice\/files\/run: file "big\.bin": the server answered 413/);
    const remote = new DashReader(serverRoot);
    const local = new DashReader(root);
    assert.deepEqual((await remote.files("alice/files/run")).map((f) => f.path), ["small.txt"]);
    assert.equal((await remote.status("alice/files/run"))?.status, "COMPLETED");
    assert.deepEqual(await remote.summary("alice/files/run"), await local.summary("alice/files/run"));
    for (const read of [(r: DashReader) => r.summary("bob/later/run"), (r: DashReader) => r.params("bob/later/run")]) {
      assert.deepEqual(await read(remote), await read(local));
    }
    assert.deepEqual((await remote.files("bob/later/run")).map((f) => f.path), ["notes.txt"]);
    assert.equal((await remote.status("bob/later/run"))?.status, "COMPLETED");

    const again = await cli(["sync", "--url", server.url, "--root", root]);
    assert.equal(again.code, 0, `the refused file is not tried again: ${again.stderr}`);
  } finally {
    await server.close();
  }
});

/** A GET of the experiments list naming `host` in its Host header (fetch may not set Host; node:http does). */
function getWithHost(url: string, host: string): Promise<number> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const request = http.request({ hostname, port: Number(port), path: "/api/v1/experiments", headers: { host } }, (response) => {
      response.resume();
      response.on("end", () => resolve(response.statusCode ?? 0));
    });
    request.on("error", reject);
    request.end();
  });
}

test("ml-dash serve --allowed-host answers requests that name that host and refuses others", async () => {
  const root = tempDir("cli");
  await withServe(["--root", root, "--allowed-host", "foo.example", "--allowed-host", "baz.example"], {}, async (url) => {
    assert.equal(await getWithHost(url, "foo.example"), 200);
    assert.equal(await getWithHost(url, "baz.example:8787"), 200);
    assert.ok([403, 421].includes(await getWithHost(url, "bar.example")), "another host is refused");
  });
});

test("ml-dash serve --cors-origin needs a token, and --cache-mb a positive integer; --help lists the new flags", async () => {
  const help = await cli(["serve", "--help"]);
  for (const name of ["--token-file F", "--read-token-file F", "--allowed-host NAME", "--cors-origin ORIGIN", "--cache-mb N"]) {
    assert.match(help.stdout, new RegExp(`^  ${name}\\s`, "m"), name);
  }
  const root = tempDir("cli");
  const badHost = await cli(["serve", "--root", root, "--port", "0", "--allowed-host", "foo.example:8080"]);
  assert.equal(badHost.code, 2);
  assert.match(badHost.stderr, /invalid --allowed-host "foo\.example:8080": expected a host name without port/);
  const noToken = await cli(["serve", "--root", root, "--port", "0", "--cors-origin", "https://app.example"]);
  assert.equal(noToken.code, 1, noToken.stderr);
  assert.match(noToken.stderr, /https:\/\/app\.example.*without a token/);
  const badOrigin = await cli(["serve", "--root", root, "--port", "0", "--token", "t", "--cors-origin", "https://app.example/page"]);
  assert.equal(badOrigin.code, 2);
  assert.match(badOrigin.stderr, /invalid --cors-origin "https:\/\/app\.example\/page": expected an origin such as https:\/\/app\.example/);
  for (const value of ["0", "-1", "1.5", "lots"]) {
    const bad = await cli(["serve", "--root", root, "--port", "0", "--cache-mb", value]);
    assert.equal(bad.code, 2, value);
    assert.match(bad.stderr, new RegExp(`invalid --cache-mb "${value.replace(".", "\\.")}": expected a positive whole number of megabytes`));
  }
  await withServe(["--root", root, "--token", "t", "--cors-origin", "https://app.example", "--cache-mb", "16"], {}, async (url) => {
    assert.equal(await getStatus(url), 200);
  });
});

test("importing cli.ts runs no command line: it prints nothing and sets no exit code", async () => {
  const root = tempDir("cli");
  for (const args of [["frobnicate"], ["ls", "--root", root], ["--help"]]) {
    const result = await runScript(new URL("./testing/fixtures/import_cli.ts", import.meta.url), { args, timeoutMs: 60_000 });
    assert.deepEqual(result, { code: 0, signal: null, stdout: "", stderr: "" }, args.join(" "));
  }
});

test("main() runs a command line in the calling process and returns its exit code, leaving process.exitCode alone", async () => {
  const root = tempDir("cli");
  await writeFixtures(root);
  const before = process.exitCode;
  const listed = await runMain(["ls", "bob/*", "--json", "--root", root]);
  assert.equal(listed.code, 0, listed.stderr);
  assert.deepEqual(JSON.parse(listed.stdout).map((e: { prefix: string }) => e.prefix), ["bob/cifar/stopped"]);
  const unknown = await runMain(["frobnicate"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
  const missing = await runMain(["show", "nobody/x/y", "--root", root]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /Unknown experiment "nobody\/x\/y"/);
  assert.equal(process.exitCode, before);
});

test("options: --name=value and --name value, repeated list options, -h; a flag given a value, an option without one and an unknown short option exit 2 with the usage", async () => {
  const root = tempDir("cli");
  await writeFixtures(root);
  const equals = await runMain(["ls", "--status=failed", `--root=${root}`, "--json"]);
  assert.equal(equals.code, 0, equals.stderr);
  assert.deepEqual(JSON.parse(equals.stdout).map((e: { prefix: string }) => e.prefix), ["alice/mnist/broken"]);
  const help = await runMain(["show", "-h"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: ml-dash show/);
  const cases: [string[], RegExp][] = [
    [["ls", "--json=yes"], /^ml-dash ls: option --json takes no value\nUsage: ml-dash ls /],
    [["ls", "--root"], /^ml-dash ls: option --root needs a value\nUsage: ml-dash ls /],
    [["ls", "-x"], /^ml-dash ls: unknown option -x\nUsage: ml-dash ls /],
    [["ls", "--colour=red"], /^ml-dash ls: unknown option --colour\nUsage: ml-dash ls /],
    [["ls", "--constructor"], /^ml-dash ls: unknown option --constructor\n/],
    [["serve", "--allowed-host", "a.example", "--allowed-host", "b.example:1"], /invalid --allowed-host "b\.example:1"/],
    [["serve", "--port", "-1"], /invalid --port "-1": expected 0 to 65535/],
    [["show", "a/b", "c/d", "--root", root], /^ml-dash show: expected one prefix, received 2\nUsage: ml-dash show /],
  ];
  for (const [argv, message] of cases) {
    const result = await runMain(argv);
    assert.equal(result.code, 2, argv.join(" "));
    assert.match(result.stderr, message, argv.join(" "));
  }
});

test("ml-dash export writes non-finite values as the metric file holds them and leaves out a torn line that a resumed run closed, as show does", async () => {
  const root = tempDir("cli");
  const prefix = "alice/nonfinite/run";
  await new Experiment({ prefix, dashRoot: root }).run((exp) => {
    exp.metrics("train").log({ step: 0, loss: NaN, acc: Infinity });
    exp.metrics("train").log({ step: 1, loss: 0.5, acc: -Infinity });
  });
  // A crash mid-write, then the next run's newline before its own records.
  const file = path.join(root, ...prefix.split("/"), "metrics", "train.jsonl");
  fs.appendFileSync(file, '{"_ts":1,"step":2,"loss":0.12\n{"_ts":1,"step":3,"loss":0.25,"acc":1}\n');
  const csv = await cli(["export", prefix, "--root", root]);
  assert.equal(csv.code, 0, csv.stderr);
  assert.equal(csv.stdout, "step,train/acc,train/loss\n0,Infinity,NaN\n1,-Infinity,0.5\n3,1,0.25\n");
  const jsonl = await cli(["export", prefix, "--format", "jsonl", "--root", root]);
  assert.equal(jsonl.stdout, ['{"step":0,"train/loss":"NaN","train/acc":"Infinity"}', '{"step":1,"train/loss":0.5,"train/acc":"-Infinity"}', '{"step":3,"train/loss":0.25,"train/acc":1}', ""].join("\n"));
  const shown = JSON.parse((await cli(["show", prefix, "--json", "--root", root])).stdout);
  assert.equal(shown.summary["train/loss"].count, 3, "show counts the same records");
});

test("ml-dash sync sends status.json as it is (no reader-computed field), and skips an experiment whose prefix the server refuses", async () => {
  const root = tempDir("cli");
  await writeFixtures(root);
  // An experiment.json in a folder of one segment: no prefix the library or the server takes.
  fs.mkdirSync(path.join(root, "solo"));
  fs.copyFileSync(path.join(root, "alice", "mnist", "baseline", "experiment.json"), path.join(root, "solo", "experiment.json"));
  const serverRoot = tempDir("cli");
  const server = await serve({ root: serverRoot, port: 0, quiet: true });
  try {
    const sync = await cli(["sync", "--url", server.url, "--root", root]);
    assert.equal(sync.code, 1, sync.stderr);
    assert.match(sync.stderr, /skipped:\n {2}solo: the whole experiment: the server answered 400: Invalid prefix "solo"/);
    assert.match(sync.stdout, /synced 4 experiment\(s\)/);
    for (const prefix of ["alice/mnist/baseline", "alice/mnist/broken", "bob/cifar/stopped"]) {
      const statusFile = (dir: string): unknown => JSON.parse(fs.readFileSync(path.join(dir, ...prefix.split("/"), "status.json"), "utf8"));
      assert.deepEqual(statusFile(serverRoot), statusFile(root), prefix);
    }
  } finally {
    await server.close();
  }
});
