#!/usr/bin/env node
/**
 * The `ml-dash` command: `serve`, `sync`, `login`, `logout`, `ls`, `show` and
 * `export`. Runs on Deno (`deno run -A cli.ts`), Bun (`bun cli.ts`) and Node
 * (`node dist/cli.js`, the package's bin). Importing the module runs nothing:
 * {@linkcode main} runs a command line and returns its exit code.
 *
 * @example
 * ```sh
 * ml-dash serve --root .dash --port 8787
 * ml-dash ls "alice/*" --status running
 * ml-dash export alice/mnist/baseline --format csv --out baseline.csv
 * ```
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import process from "node:process";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import type { ParseArgsOptionsConfig } from "node:util";
import { checkUrl } from "./storage/backend.ts";
import { ConfigError } from "./storage/errors.ts";
import {
  entryPath,
  experimentDir,
  FILES_INDEX,
  isOutboxFile,
  LOGS_FILE,
  metricOfFile,
  METRICS_DIR,
  outboxPath,
  parseOutboxFileName,
  replaceFileSync,
} from "./storage/layout.ts";
import { readEnv } from "./storage/runtime.ts";
import type { ExperimentRecord, ParamValue, StatusRecord } from "./mod.ts";
import { serve } from "./server.ts";
import type { DashServer, ServeOptions } from "./server.ts";
import { isOrigin } from "./server/guard.ts";
import { DashReader, wholeLines } from "./storage/jsonl.ts";
import type { ExperimentSummary, KeySummary } from "./storage/jsonl.ts";
import { credentialsKey, credentialsPath, HttpBackend, postEnvelope, resolveToken } from "./storage/http.ts";

// ─── Commands and their help ────────────────────────────────────────────────

interface Command {
  usage: string;
  summary: string;
  flags: FlagSpec;
  help: string;
  run(args: ParsedArgs): Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  serve: {
    usage:
      "ml-dash serve [--root .dash] [--port 8787] [--host 127.0.0.1] [--token T | --token-file F] [--read-token T | --read-token-file F] [--insecure] [--max-body BYTES] [--allowed-host NAME]... [--cors-origin ORIGIN]... [--cache-mb N] [--clickhouse URL]",
    summary: "run the server: ingest, read API, live events and the dashboard",
    flags: {
      root: "string",
      port: "string",
      host: "string",
      token: "string",
      "token-file": "string",
      "read-token": "string",
      "read-token-file": "string",
      insecure: "boolean",
      "max-body": "string",
      "allowed-host": "list",
      "cors-origin": "list",
      "cache-mb": "string",
      clickhouse: "string",
    },
    help: `Serves the experiments under --root over HTTP until interrupted.
  --root DIR              the directory of experiments (default ML_DASH_ROOT, else .dash)
  --port N                the port (default 8787; 0 picks a free one)
  --host NAME             the interface (default 127.0.0.1)
  --token T               writes need "Authorization: Bearer T" (default ML_DASH_SERVER_TOKEN)
  --token-file F          read the write token from file F (one line), so it stays out of ps
  --read-token T          reads need this token (or the write token)
  --read-token-file F     read the read token from file F (one line)
  --insecure              allow a non-loopback --host without a token
  --max-body BYTES        largest request body (default 67108864)
  --allowed-host NAME     a host name requests may give in their Host header (repeatable;
                          against DNS rebinding, others are refused)
  --cors-origin ORIGIN    a browser origin such as https://app.example that may call the
                          API across origins (repeatable; needs a token)
  --cache-mb N            megabytes of memory for the server's series cache (a positive integer)
  --clickhouse URL        keep experiments in ClickHouse instead of --root:
                          http://[user:password@]host:8123/<database> (default ML_DASH_CLICKHOUSE_URL)`,
    run: runServe,
  },
  sync: {
    usage: "ml-dash sync --url U [--root .dash] [--token T] [--outbox-only]",
    summary: "send the outbox and the local experiments to a server",
    flags: { url: "string", root: "string", token: "string", "outbox-only": "boolean" },
    help: `Sends the batches spooled in <root>/.outbox/ (then deletes them), then every
experiment under --root. Each experiment's files are sent in chunks under
session ids derived from the experiment, and the server says how far it got:
running sync again sends only what is new, and a sync that was interrupted
resumes where it stopped. Nothing is stored twice. A batch the server refuses
is reported and left in the outbox; the others go on.
  --outbox-only  send the outbox only (for a root written in hybrid mode, with
                 dashRoot and dashUrl: the server has its experiments already)
  --url U    the server (required)
  --root DIR the local directory (default ML_DASH_ROOT, else .dash)
  --token T  the token (default ML_DASH_TOKEN, then ~/.dash/credentials.json)`,
    run: runSync,
  },
  login: {
    usage: "ml-dash login --url U --token T",
    summary: "store a server's token in ~/.dash/credentials.json (mode 0600)",
    flags: { url: "string", token: "string" },
    help: `Stores the token for the server in ~/.dash/credentials.json, readable by you
only (mode 0600). Clients use it when no token option and no ML_DASH_TOKEN is set.`,
    run: runLogin,
  },
  logout: {
    usage: "ml-dash logout [--url U]",
    summary: "forget a server's token (or all tokens)",
    flags: { url: "string" },
    help: `Removes the server's entry from ~/.dash/credentials.json; without --url,
removes the file.`,
    run: runLogout,
  },
  ls: {
    usage: "ml-dash ls [prefix-glob] [--status S] [--json] [--root .dash]",
    summary: "list experiments",
    flags: { status: "string", json: "boolean", root: "string" },
    help: `Lists the experiments under --root. The glob matches whole prefixes or their
leading segments: "*" within a segment, "**" across segments ("alice/*" lists
all of alice's projects). Without a wildcard it is a plain prefix.
  --status S  only running, completed, failed, cancelled, or stale
  --json      print JSON
  --root DIR  the directory (default ML_DASH_ROOT, else .dash)`,
    run: runLs,
  },
  show: {
    usage: "ml-dash show <prefix> [--json] [--root .dash]",
    summary: "an experiment's metadata, status, parameters and metric summary",
    flags: { json: "boolean", root: "string" },
    help: `Prints the experiment's metadata, status, parameters, and per metric key its
count, min, max and last value, and its files.
  --json      print JSON (the shape of GET /api/v1/experiment)
  --root DIR  the directory (default ML_DASH_ROOT, else .dash)`,
    run: runShow,
  },
  export: {
    usage: "ml-dash export <prefix> [--format csv|jsonl] [--out FILE] [--root .dash]",
    summary: "write an experiment's metrics as CSV or JSONL",
    flags: { format: "string", out: "string", root: "string" },
    help: `Writes the metrics of an experiment as one row per step and one column per key
("train/loss", or the bare field of the default metric).
  --format F  csv (default) or jsonl (one object per step)
  --out FILE  write to FILE instead of standard output
  --root DIR  the directory (default ML_DASH_ROOT, else .dash)`,
    run: runExport,
  },
};

function mainHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return [
    "ml-dash: experiment tracking for Deno, Bun and Node",
    "",
    "Usage: ml-dash <command> [options]   (ml-dash <command> --help for details)",
    "",
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
  ].join("\n");
}

/**
 * Runs the command line and returns the exit code (0 done, 1 failed, 2 usage error).
 *
 * @param argv The arguments after the program name.
 * @returns The exit code.
 *
 * @example
 * ```ts ignore
 * import { main } from "./cli.ts";
 * process.exitCode = await main(["ls", "--json"]);
 * ```
 */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    const topic = name === "help" ? COMMANDS[rest[0]] : undefined;
    console.log(topic ? commandHelp(topic) : mainHelp());
    return 0;
  }
  if (name === "--version") {
    console.log("ml-dash 0.1.0");
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`ml-dash: unknown command "${name}": expected one of ${Object.keys(COMMANDS).join(", ")}\n\n${mainHelp()}`);
    return 2;
  }
  let args: ParsedArgs;
  try {
    args = parseCommandArgs(rest, command.flags);
  } catch (error) {
    console.error(`ml-dash ${name}: ${(error as Error).message}\nUsage: ${command.usage}`);
    return 2;
  }
  if (args.help) {
    console.log(commandHelp(command));
    return 0;
  }
  try {
    return await command.run(args);
  } catch (error) {
    if (error instanceof UsageProblem) {
      console.error(`ml-dash ${name}: ${error.message}\nUsage: ${command.usage}`);
      return 2;
    }
    console.error(`ml-dash ${name}: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  }
}

function commandHelp(command: Command): string {
  return `Usage: ${command.usage}\n\n${command.help}\n  --help      show this help`;
}

// ─── Arguments ──────────────────────────────────────────────────────────────

/** A flag takes a value (`string`), none (`boolean`), or a value each time it is repeated (`list`). */
type FlagSpec = Record<string, "string" | "boolean" | "list">;

interface ParsedArgs {
  positionals: string[];
  flags: Record<string, string | boolean | string[]>;
  help: boolean;
}

class UsageProblem extends Error {}

/** What node:util's parseArgs returns for one option when asked for tokens. */
interface OptionToken {
  name: string;
  rawName: string;
  value?: string;
}

/**
 * Splits a command's arguments into positionals and the flags of `spec` (plus `--help`/`-h`).
 * Strict mode is off and the options are checked here instead: strict mode refuses a value
 * that starts with a dash (so `--cache-mb -1` would not reach the message that names what
 * --cache-mb expects), and its messages differ between the runtimes.
 */
function parseCommandArgs(argv: string[], spec: FlagSpec): ParsedArgs {
  const { values, positionals, tokens } = parseArgs({
    args: argv,
    options: parserOptions(spec),
    allowPositionals: true,
    strict: false,
    tokens: true,
  });
  for (const token of tokens) if (token.kind === "option") checkOption(token, spec);
  const flags: ParsedArgs["flags"] = {};
  for (const name of Object.keys(spec)) {
    const value = values[name];
    if (value !== undefined) flags[name] = value as string | boolean | string[];
  }
  return { positionals, flags, help: values.help === true };
}

function parserOptions(spec: FlagSpec): ParseArgsOptionsConfig {
  const options: ParseArgsOptionsConfig = { help: { type: "boolean", short: "h" } };
  for (const [name, kind] of Object.entries(spec)) {
    options[name] = kind === "list" ? { type: "string", multiple: true } : { type: kind };
  }
  return options;
}

function checkOption(token: OptionToken, spec: FlagSpec): void {
  const kind = token.name === "help" ? "boolean" : Object.hasOwn(spec, token.name) ? spec[token.name] : undefined;
  if (kind === undefined) throw new Error(`unknown option ${token.rawName}`);
  if (kind === "boolean" && token.value !== undefined) throw new Error(`option ${token.rawName} takes no value`);
  if (kind !== "boolean" && token.value === undefined) throw new Error(`option ${token.rawName} needs a value`);
}

function flag(args: ParsedArgs, name: string): string | undefined {
  const value = args.flags[name];
  return typeof value === "string" ? value : undefined;
}

function listFlag(args: ParsedArgs, name: string): string[] {
  const value = args.flags[name];
  return Array.isArray(value) ? value : [];
}

function rootOf(args: ParsedArgs): string {
  return flag(args, "root") ?? env("ML_DASH_ROOT") ?? ".dash";
}

function env(name: string): string | undefined {
  return readEnv(name) || undefined;
}

function onePrefix(args: ParsedArgs): string {
  if (args.positionals.length !== 1) throw new UsageProblem(`expected one prefix, received ${args.positionals.length}`);
  return args.positionals[0];
}

function urlFlag(url: string | undefined): string {
  if (!url) throw new UsageProblem("missing --url");
  try {
    checkUrl(url);
  } catch {
    throw new UsageProblem(`invalid --url ${JSON.stringify(url)}: expected an http:// or https:// URL`);
  }
  return url;
}

// ─── serve ──────────────────────────────────────────────────────────────────

/** What the CLI passes to `serve()`: the options server.ts may not declare yet are typed here too. */
type CliServeOptions = ServeOptions & { root: string };

async function runServe(args: ParsedArgs): Promise<number> {
  const options = serveOptions(args);
  if (!(options.clickhouse ?? env("ML_DASH_CLICKHOUSE_URL"))) fs.mkdirSync(options.root, { recursive: true });
  const server: DashServer = await serve(options);
  await untilStopped(server);
  return 0;
}

function serveOptions(args: ParsedArgs): CliServeOptions {
  const portText = flag(args, "port") ?? "8787";
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageProblem(`invalid --port ${JSON.stringify(portText)}: expected 0 to 65535`);
  const options: CliServeOptions = {
    root: rootOf(args),
    port,
    hostname: flag(args, "host") ?? "127.0.0.1",
    token: tokenOption(args, "token") ?? env("ML_DASH_SERVER_TOKEN"),
    readToken: tokenOption(args, "read-token"),
    insecure: args.flags.insecure === true,
    maxBodyBytes: positiveIntegerFlag(args, "max-body", "a positive number of bytes"),
  };
  const allowedHosts = listFlag(args, "allowed-host").map(checkedHostName);
  if (allowedHosts.length > 0) options.allowedHosts = allowedHosts;
  const corsOrigins = listFlag(args, "cors-origin").map(checkedOrigin);
  if (corsOrigins.length > 0) options.corsOrigins = corsOrigins;
  const cacheMb = positiveIntegerFlag(args, "cache-mb", "a positive whole number of megabytes");
  if (cacheMb !== undefined) options.cacheMb = cacheMb;
  const clickhouse = flag(args, "clickhouse");
  if (clickhouse !== undefined) options.clickhouse = clickhouse;
  return options;
}

function positiveIntegerFlag(args: ParsedArgs, name: string, expected: string): number | undefined {
  const text = flag(args, name);
  if (text === undefined) return undefined;
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(Number.isSafeInteger(value) && value > 0)) throw new UsageProblem(`invalid --${name} ${JSON.stringify(text)}: expected ${expected}`);
  return value;
}

function checkedHostName(name: string): string {
  if (!/^[A-Za-z0-9.\-_]+$|^\[[0-9A-Fa-f:.]+\]$/.test(name)) {
    throw new UsageProblem(`invalid --allowed-host ${JSON.stringify(name)}: expected a host name without port, such as dash.example.com`);
  }
  return name;
}

function checkedOrigin(origin: string): string {
  const bare = origin.replace(/\/$/, "");
  if (!isOrigin(bare)) {
    throw new UsageProblem(`invalid --cors-origin ${JSON.stringify(origin)}: expected an origin such as https://app.example (scheme, host and port only)`);
  }
  return bare;
}

/** `--token T` or `--token-file F` (likewise `--read-token`): a file keeps the token out of `ps`. */
function tokenOption(args: ParsedArgs, name: "token" | "read-token"): string | undefined {
  const value = flag(args, name);
  const file = flag(args, `${name}-file`);
  if (value !== undefined && file !== undefined) throw new UsageProblem(`expected --${name} or --${name}-file, received both`);
  return file === undefined ? value : readTokenFile(file, `--${name}-file`);
}

function readTokenFile(file: string, option: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (error) {
    throw new Error(`Cannot read ${option} ${JSON.stringify(file)}: ${(error as Error).message}`);
  }
  // Editors and `echo` end the file with a newline; it is not part of the token.
  const token = text.replace(/\r?\n$/, "");
  if (token === "") throw new Error(`Empty ${option} ${JSON.stringify(file)}: expected the token on one line`);
  if (/[\r\n]/.test(token)) throw new Error(`Invalid ${option} ${JSON.stringify(file)}: expected the token on one line, received ${token.split(/\r?\n/).length} lines`);
  return token;
}

function untilStopped(server: DashServer): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      console.log("ml-dash: stopping");
      server.close().finally(resolve);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}

// ─── sync ───────────────────────────────────────────────────────────────────

/** Lines per request when sync sends an experiment's JSONL files; chunk ends fall on multiples of it. */
const SYNC_CHUNK_LINES = 5000;
const SYNC_CHUNK_FILE_BYTES = 8 * 1024 * 1024;

async function runSync(args: ParsedArgs): Promise<number> {
  const url = urlFlag(flag(args, "url")).replace(/\/+$/, "");
  const root = rootOf(args);
  if (!fs.existsSync(root)) throw new Error(`Nothing to sync: ${JSON.stringify(root)} does not exist`);
  const token = await resolveToken(url, flag(args, "token"));
  const client = new HttpBackend({ url, token, outbox: false });
  const outbox = await syncOutbox(url, root, token);
  if (outbox.files > 0) console.log(`outbox: ${outbox.files} batch(es) sent, ${outbox.duplicates} of them already on the server`);
  if (outbox.refused > 0) console.error(`outbox: ${outbox.refused} batch(es) refused by the server, left in ${JSON.stringify(outboxPath(root))}`);
  if (args.flags["outbox-only"] === true) return outbox.refused > 0 ? 1 : 0;
  const reader = new DashReader(root);
  const experiments = await reader.listExperiments();
  const skipped: string[] = [];
  for (const e of experiments) {
    try {
      const sent = await syncExperiment(client, reader, e.prefix, skipped);
      console.log(`${e.prefix}: ${sent.lines} new line(s), ${sent.files} file(s) sent; ${e.status}`);
    } catch (error) {
      skipRefused(skipped, `${e.prefix}: the whole experiment`, error);
    }
  }
  console.log(`synced ${experiments.length} experiment(s) from ${JSON.stringify(root)} to ${url}`);
  if (skipped.length > 0) {
    console.error(`ml-dash sync: the server refused ${skipped.length} part(s), skipped:\n${skipped.map((s) => `  ${s}`).join("\n")}`);
  }
  return outbox.refused > 0 || skipped.length > 0 ? 1 : 0;
}

/**
 * The status of an answer that says "never" for this request: a 4xx other than 408 and 429
 * (which mean "later", and the client retries them).
 */
function refusalStatus(error: unknown): number | undefined {
  const status = answeredStatus(error);
  return status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429 ? status : undefined;
}

/** The HTTP status of the server's answer that an error reports, if it reports one. */
function answeredStatus(error: unknown): number | undefined {
  if (!(error instanceof Error)) return undefined;
  const field = (error as { status?: number }).status;
  if (typeof field === "number") return field;
  // Errors made without a `status` field still say it in their message: "the server answered 413: ...".
  const match = /answered (\d{3})\b/.exec(error.message);
  return match ? Number(match[1]) : undefined;
}

/** Whether sync passes over the part that met this error: a refusal, but not of the token (401), which every other part would meet too. */
function isSkippable(error: unknown): boolean {
  const status = refusalStatus(error);
  return status !== undefined && status !== 401;
}

/** Reports a refused part and notes it in `skipped`; rethrows any other error. */
function skipRefused(skipped: string[], what: string, error: unknown): void {
  if (!isSkippable(error)) throw error;
  const line = `${what}: ${(error as Error).message}`;
  console.error(`skipped ${line}`);
  skipped.push(line);
}

/** Sends `<root>/.outbox/<prefix>/<session>-<seq>.json` in session and seq order, deleting each once acknowledged. */
async function syncOutbox(url: string, root: string, token: string | undefined): Promise<{ files: number; duplicates: number; refused: number }> {
  const outbox = outboxPath(root);
  let files = 0;
  let duplicates = 0;
  let refused = 0;
  let dirs: string[] = [];
  try {
    dirs = fs.readdirSync(outbox).sort();
  } catch {
    return { files, duplicates, refused };
  }
  for (const dir of dirs) {
    const full = path.join(outbox, dir);
    if (!fs.statSync(full).isDirectory()) continue;
    const names = fs.readdirSync(full).filter(isOutboxFile);
    const order = (n: string): [string, number] => {
      const parsed = parseOutboxFileName(n);
      return parsed ? [parsed.session, parsed.seq] : [n, 0];
    };
    // Sessions in the order they began (their oldest file), requests of one session by seq:
    // a resumed run's sessions replay oldest first, so the newest status is the last one stored.
    const began = new Map<string, number>();
    for (const name of names) {
      const session = order(name)[0];
      const time = fs.statSync(path.join(full, name)).mtimeMs;
      began.set(session, Math.min(time, began.get(session) ?? time));
    }
    names.sort((a, b) => {
      const [sa, qa] = order(a);
      const [sb, qb] = order(b);
      return sa === sb ? qa - qb : began.get(sa)! - began.get(sb)! || (sa < sb ? -1 : 1);
    });
    for (const name of names) {
      const file = path.join(full, name);
      const body = fs.readFileSync(file, "utf8");
      let duplicate: boolean;
      try {
        ({ duplicate } = await postEnvelope(url, body, { token }));
      } catch (error) {
        // A refused batch stays for a person to look at; an unreachable server stops the sync.
        // 408 and 429 are retried by the client and mean "later", not "never".
        if (refusalStatus(error) === undefined) throw error;
        console.error(`${file}: ${(error as Error).message}`);
        refused++;
        continue;
      }
      fs.rmSync(file, { force: true });
      files++;
      if (duplicate) duplicates++;
    }
    try {
      fs.rmdirSync(full);
    } catch {
      // Something new arrived meanwhile: left for the next sync.
    }
  }
  return { files, duplicates, refused };
}

interface Stream {
  session: string;
  file: string;
  kind: "metric" | "logs" | "files";
  name?: string;
}

type Send = (session: string, seq: number, batch: Record<string, unknown>) => Promise<void>;

/** One experiment's sync: where its files are, how to send, and what the server refused. */
interface ExperimentSync {
  prefix: string;
  reader: DashReader;
  dir: string;
  send: Send;
  skipped: string[];
}

/**
 * Sends one local experiment: state, then every JSONL file from where the server's copy ends,
 * then the status. A part the server refuses is reported, noted in `skipped`, and the rest goes on.
 */
async function syncExperiment(client: HttpBackend, reader: DashReader, prefix: string, skipped: string[]): Promise<{ lines: number; files: number }> {
  const dir = folderOf(reader.root, prefix);
  const experiment = await experimentRecord(reader, prefix);
  // The session ids derive from the experiment, so a rerun finds what the last run sent.
  const base = `sync-${fnv1a(`${prefix}|${experiment.createdAt ?? ""}`)}`;
  const streams = dir === undefined ? [] : streamsOf(dir, base);
  const stateSession = `${base}-state`;
  const statusSession = `${base}-status`;
  const sessions = [...streams.map((s) => s.session), stateSession, statusSession];
  const opened = await client.post("/api/v1/open", JSON.stringify({ prefix, sessions })) as {
    sessions?: Record<string, number | null>;
  };
  const stored = opened.sessions ?? {};
  const sync: ExperimentSync = {
    prefix,
    reader,
    dir: dir ?? reader.root,
    skipped,
    send: async (session, seq, batch) => {
      await client.post("/api/v1/batch", JSON.stringify({ prefix, session, seq, batch }));
    },
  };

  const state = stateOf(prefix, experiment, await reader.params(prefix));
  await attempt(sync, "metadata and parameters", () => sendVersioned(sync, stateSession, stored[stateSession], state));
  let lines = 0;
  let files = 0;
  for (const stream of streams) {
    const from = stored[stream.session] ?? 0;
    if (stream.kind === "files") files += await syncFiles(sync, stream, from);
    else lines += await syncLines(sync, stream, from);
  }
  const status = storedStatus(await reader.status(prefix));
  if (status) await attempt(sync, "status", () => sendVersioned(sync, statusSession, stored[statusSession], { status }));
  return { lines, files };
}

/**
 * experiment.json, or {} for a prefix the reader refuses (one segment, a backslash): the
 * server refuses it too, and sync reports that refusal when it opens the experiment.
 */
async function experimentRecord(reader: DashReader, prefix: string): Promise<ExperimentRecord & { createdAt?: number }> {
  try {
    return (await reader.experiment(prefix)) ?? {};
  } catch {
    return {};
  }
}

/**
 * The folder of an experiment, or undefined for a prefix the layout refuses (one segment, a
 * backslash): it has no files to send, and the server refuses it when it is opened.
 */
function folderOf(root: string, prefix: string): string | undefined {
  try {
    return experimentDir(root, prefix);
  } catch (error) {
    if (error instanceof ConfigError) return undefined;
    throw error;
  }
}

function streamsOf(dir: string, base: string): Stream[] {
  const streams: Stream[] = metricFiles(dir).map(([name, file]) => ({ session: `${base}-m${fnv1a(name)}`, file, kind: "metric", name }));
  streams.push({ session: `${base}-logs`, file: entryPath(dir, LOGS_FILE), kind: "logs" });
  streams.push({ session: `${base}-files`, file: entryPath(dir, FILES_INDEX), kind: "files" });
  return streams;
}

/**
 * The metric files of an experiment folder with their metric names, sorted by name, for the
 * reads the reader has no method for (sync sends raw lines from a line number on, export takes
 * whole records): every file is taken, also one whose records the reader would not count.
 */
function metricFiles(dir: string): [string, string][] {
  const metrics = entryPath(dir, METRICS_DIR);
  let names: string[];
  try {
    names = fs.readdirSync(metrics);
  } catch {
    return [];
  }
  const files: [string, string][] = [];
  for (const name of names) {
    const metric = metricOfFile(name);
    if (metric !== undefined) files.push([metric, path.join(metrics, name)]);
  }
  return files.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The status as status.json holds it: the server works out `stale` for itself, and the patch's hash must not change with it. */
function storedStatus(status: (StatusRecord & { stale: boolean }) | undefined): StatusRecord | undefined {
  if (!status) return undefined;
  const { stale: _stale, ...stored } = status;
  return stored;
}

function stateOf(prefix: string, experiment: ExperimentRecord, params: Record<string, ParamValue>): Record<string, unknown> {
  const state: Record<string, unknown> = {};
  const { readme, tags, metadata } = experiment;
  state.metadata = dropUndefined({ prefix, readme, tags, metadata });
  // The reader folds parameters.jsonl, which holds every patch (parameters.json is a snapshot that concurrent writers may leave short).
  if (Object.keys(params).length > 0) state.params = params;
  return state;
}

/** Runs one part of an experiment's sync; false when the server refused it (then it is reported and noted). */
async function attempt(sync: ExperimentSync, what: string, part: () => Promise<void>): Promise<boolean> {
  try {
    await part();
    return true;
  } catch (error) {
    skipRefused(sync.skipped, `${sync.prefix}: ${what}`, error);
    return false;
  }
}

const HASH_RANGE = 2 ** 32;

/**
 * Sends a state patch (metadata and params, or the status) under seq = version * 2^32 + a
 * 32-bit hash of its content. The server's ledger knows the largest seq it stored for the
 * session (from /open): when its hash part is this content's, the server has it and nothing
 * is sent; otherwise it goes as the next version. So a seq only grows and a value that
 * changes back (A, B, A) is sent again, where a bare content hash would be taken for a
 * duplicate. The count lives on the server, so it holds across runs of sync, across machines
 * and when the local folder is copied; the bare hash that earlier syncs sent reads as version 0.
 * 2^21 versions fit below 2^53.
 */
async function sendVersioned(sync: ExperimentSync, session: string, storedMax: number | null | undefined, patch: Record<string, unknown>): Promise<void> {
  const hash = fnv1aNumber(JSON.stringify(patch));
  if (typeof storedMax === "number" && storedMax % HASH_RANGE === hash) return;
  const version = typeof storedMax === "number" ? Math.floor(storedMax / HASH_RANGE) + 1 : 0;
  await sync.send(session, version * HASH_RANGE + hash, patch);
}

function chunkEnd(start: number, length: number): number {
  return Math.min(length, (Math.floor(start / SYNC_CHUNK_LINES) + 1) * SYNC_CHUNK_LINES);
}

/**
 * Sends a metrics or logs file from line `from` on; each chunk's seq is the line where it
 * ends. A refused chunk ends this file's sync (a series must not have a gap): the next sync
 * starts there again.
 */
async function syncLines(sync: ExperimentSync, stream: Stream, from: number): Promise<number> {
  const all = completeLines(stream.file);
  let sent = 0;
  for (let start = Math.min(from, all.length); start < all.length;) {
    const end = chunkEnd(start, all.length);
    // Unreadable lines (a crash mid-write) are skipped, as the reader skips them.
    const chunk = all.slice(start, end).filter(isJsonObject);
    let batch: Record<string, unknown> = {};
    if (chunk.length > 0) batch = stream.kind === "metric" ? { metrics: { [stream.name!]: [chunk.join("\n")] } } : { logs: [chunk.join("\n")] };
    const what = `${path.relative(sync.dir, stream.file)} lines ${start + 1} to ${end} (and the rest of that file)`;
    if (!(await attempt(sync, what, () => sync.send(stream.session, end, batch)))) break;
    sent += chunk.length;
    start = end;
  }
  return sent;
}

interface Upload {
  path: string;
  size: number;
  mime: string;
  _ts: number;
  data: string;
}

/** A line of files.jsonl: its seq (the line number where it ends) and the upload, unless the line or the file is unreadable. */
interface FileLine {
  seq: number;
  upload?: Upload;
}

function fileLine(sync: ExperimentSync, line: string, seq: number): FileLine {
  if (!isJsonObject(line)) return { seq };
  const info = JSON.parse(line) as { path: string; mime: string; _ts: number };
  let data: Uint8Array;
  try {
    data = fs.readFileSync(sync.reader.filePath(sync.prefix, info.path));
  } catch {
    return { seq };
  }
  return { seq, upload: { path: info.path, size: data.byteLength, mime: info.mime, _ts: info._ts, data: Buffer.from(data).toString("base64") } };
}

/** Sends files.jsonl from line `from` on, with the files' contents, in requests of up to SYNC_CHUNK_FILE_BYTES. */
async function syncFiles(sync: ExperimentSync, stream: Stream, from: number): Promise<number> {
  const all = completeLines(stream.file);
  let sent = 0;
  let group: FileLine[] = [];
  let bytes = 0;
  for (let i = Math.min(from, all.length); i < all.length; i++) {
    const line = fileLine(sync, all[i], i + 1);
    const size = line.upload?.size ?? 0;
    if (group.length > 0 && (bytes + size > SYNC_CHUNK_FILE_BYTES || i % SYNC_CHUNK_LINES === 0)) {
      sent += await sendFiles(sync, stream, group);
      group = [];
      bytes = 0;
    }
    group.push(line);
    bytes += size;
  }
  if (group.length > 0) sent += await sendFiles(sync, stream, group);
  return sent;
}

/**
 * Sends the lines of files.jsonl in one request. If the server refuses it, each file goes
 * alone to find the one it refuses (too large, a name it does not take); that one is
 * reported and passed over (sent as an empty batch under its seq): the server would refuse
 * it again, and the files after it go on.
 */
async function sendFiles(sync: ExperimentSync, stream: Stream, group: FileLine[]): Promise<number> {
  const uploads = group.flatMap((line) => (line.upload ? [line.upload] : []));
  const seq = group[group.length - 1].seq;
  const batch = uploads.length > 0 ? { files: uploads } : {};
  if (uploads.length > 1) {
    try {
      await sync.send(stream.session, seq, batch);
      return uploads.length;
    } catch (error) {
      if (!isSkippable(error)) throw error;
    }
    let sent = 0;
    for (const line of group) sent += await sendFiles(sync, stream, [line]);
    return sent;
  }
  const what = uploads.length === 1 ? `file ${JSON.stringify(uploads[0].path)}` : `files.jsonl line ${seq}`;
  if (await attempt(sync, what, () => sync.send(stream.session, seq, batch))) return uploads.length;
  if (uploads.length === 1) await sync.send(stream.session, seq, {});
  return 0;
}

/** The complete lines of a JSONL file (a torn last line is left out). */
function completeLines(file: string): string[] {
  return wholeLines(file).lines;
}

function isJsonObject(line: string): boolean {
  return jsonObject(line) !== undefined;
}

/** The JSON object a line holds; undefined if it is not JSON or not an object. */
function jsonObject(line: string): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(line);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function fnv1aNumber(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

function fnv1a(text: string): string {
  return fnv1aNumber(text).toString(16).padStart(8, "0");
}

function dropUndefined(value: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined));
}

// ─── login / logout ─────────────────────────────────────────────────────────

/** A JSON file's content; undefined if it is missing or not JSON. */
function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as T;
  } catch {
    return undefined;
  }
}

function credentialsFile(): string {
  const file = credentialsPath();
  if (!file) throw new Error("Cannot find the home directory: set HOME");
  return file;
}

async function runLogin(args: ParsedArgs): Promise<number> {
  const url = urlFlag(flag(args, "url"));
  const token = flag(args, "token");
  if (!token) throw new UsageProblem("missing --token");
  const file = credentialsFile();
  const all = readJson<Record<string, unknown>>(file) ?? {};
  all[credentialsKey(url)] = { token };
  writePrivateFile(file, JSON.stringify(all, null, 2) + "\n");
  console.log(`Saved the token for ${credentialsKey(url)} in ${file}`);
  return await Promise.resolve(0);
}

async function runLogout(args: ParsedArgs): Promise<number> {
  const file = credentialsFile();
  const url = flag(args, "url");
  if (url === undefined) {
    fs.rmSync(file, { force: true });
    console.log(`Removed ${file}`);
    return 0;
  }
  const key = credentialsKey(urlFlag(url));
  const all = readJson<Record<string, unknown>>(file) ?? {};
  if (!(key in all)) {
    console.log(`No token stored for ${key}`);
    return 0;
  }
  delete all[key];
  writePrivateFile(file, JSON.stringify(all, null, 2) + "\n");
  console.log(`Removed the token for ${key} from ${file}`);
  return await Promise.resolve(0);
}

/**
 * Replaces `file` with `text`, readable by its owner only, in a folder only the owner can
 * enter. The temporary file has a random name and is created exclusively ("wx"): another
 * user who can guess it cannot plant a file or a symlink there to receive the token.
 */
function writePrivateFile(file: string, text: string): void {
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  // mkdir leaves the mode of a folder that existed already (often 0755).
  fs.chmodSync(dir, 0o700);
  let created = false;
  replaceFileSync({
    secureName: true,
    writeFile: (tmp, data) => {
      const fd = fs.openSync(tmp, "wx", 0o600);
      created = true;
      try {
        fs.writeFileSync(fd, data);
      } finally {
        fs.closeSync(fd);
      }
    },
    rename: (from, to) => fs.renameSync(from, to),
    // Only a temp file this call made: one found at its name is not this call's to remove.
    remove: (tmp) => {
      if (created) fs.rmSync(tmp, { force: true });
    },
  }, file, text);
}

// ─── ls, show, export ───────────────────────────────────────────────────────

/** `*` within a segment, `**` across segments; matches a whole prefix or its leading segments. */
function globMatcher(glob: string): (prefix: string) => boolean {
  if (!/[*?]/.test(glob)) {
    const base = glob.replace(/\/+$/, "");
    return (p) => p === base || p.startsWith(`${base}/`);
  }
  let source = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === "*" && glob[i + 1] === "*") {
      source += ".*";
      i++;
    } else if (c === "*") source += "[^/]*";
    else if (c === "?") source += "[^/]";
    else source += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  const re = new RegExp(`^${source}(/.*)?$`);
  return (p) => re.test(p);
}

async function runLs(args: ParsedArgs): Promise<number> {
  if (args.positionals.length > 1) throw new UsageProblem(`expected at most one prefix glob, received ${args.positionals.length}`);
  const status = flag(args, "status");
  const statuses = ["running", "completed", "failed", "cancelled", "stale"];
  if (status !== undefined && !statuses.includes(status.toLowerCase())) {
    throw new UsageProblem(`invalid --status ${JSON.stringify(status)}: expected ${statuses.join(", ")}`);
  }
  const root = rootOf(args);
  const glob = args.positionals[0];
  const match = glob === undefined ? () => true : globMatcher(glob);
  const found = (await new DashReader(root).listExperiments({ status })).filter((e) => match(e.prefix));
  if (args.flags.json === true) {
    console.log(JSON.stringify(found, null, 2));
    return 0;
  }
  if (found.length === 0) {
    console.log(glob === undefined ? `No experiments under ${JSON.stringify(root)}` : `No experiments match ${JSON.stringify(glob)} under ${JSON.stringify(root)}`);
    return 0;
  }
  const rows = found.map((e: ExperimentSummary) => [
    e.stale ? `${e.status} (stale)` : e.status,
    time(e.startedAt),
    e.prefix,
  ]);
  console.log(table([["STATUS", "STARTED", "PREFIX"], ...rows]));
  return 0;
}

async function existing(reader: DashReader, prefix: string, root: string): Promise<void> {
  let known = false;
  try {
    known = await reader.exists(prefix);
  } catch {
    known = false;
  }
  if (!known) throw new Error(`Unknown experiment "${prefix}" under ${JSON.stringify(root)}`);
}

async function runShow(args: ParsedArgs): Promise<number> {
  const prefix = onePrefix(args);
  const root = rootOf(args);
  const reader = new DashReader(root);
  await existing(reader, prefix, root);
  const overview = await reader.overview(prefix);
  const { metadata, status, params, summary, files } = overview;
  if (args.flags.json === true) {
    console.log(JSON.stringify(overview, null, 2));
    return 0;
  }
  const out: string[] = [];
  out.push(`prefix   ${prefix}`);
  const state = status ? `${status.status}${status.stale ? " (stale: no heartbeat)" : ""}` : "UNKNOWN";
  out.push(`status   ${state}`);
  if (status?.startedAt) out.push(`started  ${time(status.startedAt)}`);
  if (status?.endedAt) out.push(`ended    ${time(status.endedAt)}`);
  if (status?.error) out.push(`error    ${status.error}`);
  if (metadata?.readme) out.push(`readme   ${metadata.readme}`);
  if (metadata?.tags?.length) out.push(`tags     ${metadata.tags.join(", ")}`);
  if (metadata?.metadata && Object.keys(metadata.metadata).length > 0) out.push(`metadata ${JSON.stringify(metadata.metadata)}`);
  out.push("", "params");
  const keys = Object.keys(params).sort();
  if (keys.length === 0) out.push("  (none)");
  for (const key of keys) out.push(`  ${key} = ${JSON.stringify(params[key])}`);
  out.push("", "metrics");
  const metricKeys = Object.keys(summary);
  if (metricKeys.length === 0) out.push("  (none)");
  else {
    const rows = metricKeys.map((k) => {
      const s: KeySummary = summary[k];
      return [k, String(s.count), num(s.min), num(s.max), num(s.last), s.lastStep === null ? "" : String(s.lastStep)];
    });
    out.push(indent(table([["KEY", "COUNT", "MIN", "MAX", "LAST", "LAST STEP"], ...rows])));
  }
  if (files.length > 0) {
    out.push("", "files");
    out.push(indent(table(files.map((f) => [f.path, `${f.size} B`, f.mime]))));
  }
  console.log(out.join("\n"));
  return 0;
}

async function runExport(args: ParsedArgs): Promise<number> {
  const prefix = onePrefix(args);
  const format = flag(args, "format") ?? "csv";
  if (format !== "csv" && format !== "jsonl") throw new UsageProblem(`invalid --format ${JSON.stringify(format)}: expected csv or jsonl`);
  const root = rootOf(args);
  const reader = new DashReader(root);
  await existing(reader, prefix, root);
  const { rows, keys } = rowsByStep(experimentDir(root, prefix));
  const columns = [...keys].sort();
  const steps = [...rows.keys()].sort((a, b) => a - b);
  let text: string;
  if (format === "csv") {
    const lines = [["step", ...columns].map(csvField).join(",")];
    for (const step of steps) {
      const row = rows.get(step)!;
      lines.push([String(step), ...columns.map((c) => (row[c] === undefined ? "" : csvField(String(row[c]))))].join(","));
    }
    text = lines.join("\n") + "\n";
  } else {
    text = steps.map((step) => JSON.stringify({ step, ...rows.get(step) })).join("\n") + (steps.length > 0 ? "\n" : "");
  }
  const out = flag(args, "out");
  if (out === undefined) process.stdout.write(text);
  else {
    fs.writeFileSync(out, text);
    console.error(`Wrote ${steps.length} row(s) and ${columns.length} key(s) of "${prefix}" to ${out}`);
  }
  return 0;
}

/**
 * Every metric key's values by step (a step's last value per key, fields in the order written),
 * and the keys that have any. Read from the metric files' whole JSON records, not through the
 * reader's series(): that also takes numbers out of a torn line a resumed run closed, which
 * the reader's summary (and so `show`) leaves out.
 */
function rowsByStep(dir: string): { rows: Map<number, Record<string, unknown>>; keys: Set<string> } {
  const rows = new Map<number, Record<string, unknown>>();
  const keys = new Set<string>();
  for (const [name, file] of metricFiles(dir)) {
    for (const line of completeLines(file)) {
      const record = jsonObject(line);
      const step = typeof record?.step === "number" ? record.step : NaN;
      if (!record || Number.isNaN(step)) continue;
      let row = rows.get(step);
      if (!row) rows.set(step, row = {});
      for (const field in record) {
        if (field === "_ts" || field === "step") continue;
        const key = name === "default" ? field : `${name}/${field}`;
        keys.add(key);
        row[key] = record[field];
      }
    }
  }
  return { rows, keys };
}

function csvField(text: string): string {
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function num(value: number | null): string {
  if (value === null) return "";
  return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(6)));
}

function time(epochSeconds: number | undefined | null): string {
  if (!epochSeconds) return "";
  return new Date(epochSeconds * 1000).toISOString().replace("T", " ").slice(0, 19);
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join("  ")).join("\n");
}

function indent(text: string): string {
  return text.split("\n").map((l) => `  ${l}`).join("\n");
}

// ─── Entry point ────────────────────────────────────────────────────────────

/**
 * Whether this module is the program being run rather than imported. Deno and Bun say so in
 * `import.meta.main`; Node 20 lacks it, so the script's path is compared, as a real path
 * because npm's bin is a symlink to dist/cli.js.
 */
function isEntryPoint(): boolean {
  const flag = (import.meta as { main?: unknown }).main;
  if (typeof flag === "boolean") return flag;
  const script = process.argv[1];
  if (!script) return false;
  try {
    return import.meta.url === pathToFileURL(fs.realpathSync(script)).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) process.exitCode = await main(process.argv.slice(2));
