#!/usr/bin/env node
/**
 * The `ml-dash` command: `serve`, `sync`, `login`, `logout`, `ls`, `show` and
 * `export`. Runs on Deno (`deno run -A cli.ts`), Bun (`bun cli.ts`) and Node
 * (`node dist/cli.js`, the package's bin).
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
import { checkUrl, readEnv } from "./mod.ts";
import { serve } from "./server.ts";
import type { DashServer } from "./server.ts";
import { DashReader } from "./storage/jsonl.ts";
import type { ExperimentSummary, KeySummary } from "./storage/jsonl.ts";
import { credentialsKey, credentialsPath, HttpBackend, postEnvelope, resolveToken } from "./storage/http.ts";

// ─── Commands and their help ────────────────────────────────────────────────

interface Command {
  usage: string;
  summary: string;
  flags: Record<string, "string" | "boolean">;
  help: string;
  run(args: ParsedArgs): Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  serve: {
    usage: "ml-dash serve [--root .dash] [--port 8787] [--host 127.0.0.1] [--token T] [--read-token T] [--insecure] [--max-body BYTES]",
    summary: "run the server: ingest, read API, live events and the dashboard",
    flags: { root: "string", port: "string", host: "string", token: "string", "read-token": "string", insecure: "boolean", "max-body": "string" },
    help: `Serves the experiments under --root over HTTP until interrupted.
  --root DIR        the directory of experiments (default ML_DASH_ROOT, else .dash)
  --port N          the port (default 8787; 0 picks a free one)
  --host NAME       the interface (default 127.0.0.1)
  --token T         writes need "Authorization: Bearer T" (default ML_DASH_SERVER_TOKEN)
  --read-token T    reads need this token (or the write token)
  --insecure        allow a non-loopback --host without a token
  --max-body BYTES  largest request body (default 67108864)`,
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
    args = parseArgs(rest, command.flags);
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

interface ParsedArgs {
  positionals: string[];
  flags: Record<string, string | boolean>;
  help: boolean;
}

class UsageProblem extends Error {}

function parseArgs(argv: string[], spec: Record<string, "string" | "boolean">): ParsedArgs {
  const out: ParsedArgs = { positionals: [], flags: {}, help: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--help" || arg === "-h") {
      out.help = true;
      continue;
    }
    if (!arg.startsWith("--") || arg === "--") {
      out.positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const kind = spec[name];
    if (!kind) throw new Error(`unknown option --${name}`);
    if (kind === "boolean") {
      if (eq >= 0) throw new Error(`option --${name} takes no value`);
      out.flags[name] = true;
    } else if (eq >= 0) {
      out.flags[name] = arg.slice(eq + 1);
    } else {
      const value = argv[++i];
      if (value === undefined) throw new Error(`option --${name} needs a value`);
      out.flags[name] = value;
    }
  }
  return out;
}

function flag(args: ParsedArgs, name: string): string | undefined {
  const value = args.flags[name];
  return typeof value === "string" ? value : undefined;
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

async function runServe(args: ParsedArgs): Promise<number> {
  const portText = flag(args, "port") ?? "8787";
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageProblem(`invalid --port ${JSON.stringify(portText)}: expected 0 to 65535`);
  const maxText = flag(args, "max-body");
  const maxBodyBytes = maxText === undefined ? undefined : Number(maxText);
  if (maxBodyBytes !== undefined && !(Number.isInteger(maxBodyBytes) && maxBodyBytes > 0)) {
    throw new UsageProblem(`invalid --max-body ${JSON.stringify(maxText)}: expected a positive number of bytes`);
  }
  const root = rootOf(args);
  fs.mkdirSync(root, { recursive: true });
  const server: DashServer = await serve({
    root,
    port,
    hostname: flag(args, "host") ?? "127.0.0.1",
    token: flag(args, "token") ?? env("ML_DASH_SERVER_TOKEN"),
    readToken: flag(args, "read-token"),
    insecure: args.flags.insecure === true,
    maxBodyBytes,
  });
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      console.log("ml-dash: stopping");
      server.close().finally(resolve);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
  return 0;
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
  if (outbox.refused > 0) console.error(`outbox: ${outbox.refused} batch(es) refused by the server, left in ${JSON.stringify(path.join(root, ".outbox"))}`);
  if (args.flags["outbox-only"] === true) return outbox.refused > 0 ? 1 : 0;
  const experiments = await new DashReader(root).listExperiments();
  for (const e of experiments) {
    const sent = await syncExperiment(client, root, e.prefix);
    console.log(`${e.prefix}: ${sent.lines} new line(s), ${sent.files} file(s) sent; ${e.status}`);
  }
  console.log(`synced ${experiments.length} experiment(s) from ${JSON.stringify(root)} to ${url}`);
  return outbox.refused > 0 ? 1 : 0;
}

/** Sends `<root>/.outbox/<prefix>/<session>-<seq>.json` in session and seq order, deleting each once acknowledged. */
async function syncOutbox(url: string, root: string, token: string | undefined): Promise<{ files: number; duplicates: number; refused: number }> {
  const outbox = path.join(root, ".outbox");
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
    const names = fs.readdirSync(full).filter((n) => n.endsWith(".json"));
    const order = (n: string): [string, number] => {
      const m = /^(.*)-(\d+)\.json$/.exec(n);
      return m ? [m[1], Number(m[2])] : [n, 0];
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
        if (!(error instanceof Error && /answered 4(?!08|29)\d\d/.test(error.message))) throw error;
        console.error(`${file}: ${error.message}`);
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

/** Sends one local experiment: state, then every JSONL file from where the server's copy ends, then the status. */
async function syncExperiment(client: HttpBackend, root: string, prefix: string): Promise<{ lines: number; files: number }> {
  const dir = path.join(root, ...prefix.split("/"));
  const experiment = readJson<Record<string, unknown>>(path.join(dir, "experiment.json")) ?? {};
  // The session ids derive from the experiment, so a rerun finds what the last run sent.
  const base = `sync-${fnv1a(`${prefix}|${experiment.createdAt ?? ""}`)}`;
  const streams: Stream[] = [];
  let metricNames: string[] = [];
  try {
    metricNames = fs.readdirSync(path.join(dir, "metrics")).filter((n) => n.endsWith(".jsonl")).map((n) => n.slice(0, -6)).sort();
  } catch {
    // No metrics.
  }
  for (const name of metricNames) {
    streams.push({ session: `${base}-m${fnv1a(name)}`, file: path.join(dir, "metrics", `${name}.jsonl`), kind: "metric", name });
  }
  streams.push({ session: `${base}-logs`, file: path.join(dir, "logs.jsonl"), kind: "logs" });
  streams.push({ session: `${base}-files`, file: path.join(dir, "files.jsonl"), kind: "files" });
  const opened = await client.post("/api/v1/open", JSON.stringify({ prefix, sessions: streams.map((s) => s.session) })) as {
    sessions?: Record<string, number | null>;
  };
  const send = async (session: string, seq: number, batch: Record<string, unknown>): Promise<void> => {
    await client.post("/api/v1/batch", JSON.stringify({ prefix, session, seq, batch }));
  };

  const state: Record<string, unknown> = {};
  const { readme, tags, metadata } = experiment as { readme?: string; tags?: string[]; metadata?: Record<string, unknown> };
  state.metadata = dropUndefined({ prefix, readme, tags, metadata });
  const params = readJson<{ data?: Record<string, unknown> }>(path.join(dir, "parameters.json"))?.data;
  if (params && Object.keys(params).length > 0) state.params = params;
  await send(`${base}-state`, fnv1aNumber(JSON.stringify(state)), state);

  let lines = 0;
  let files = 0;
  for (const stream of streams) {
    const all = completeLines(stream.file);
    let start = Math.min(opened.sessions?.[stream.session] ?? 0, all.length);
    while (start < all.length) {
      let end = Math.min(all.length, (Math.floor(start / SYNC_CHUNK_LINES) + 1) * SYNC_CHUNK_LINES);
      // Unreadable lines (a crash mid-write) are skipped, as the reader skips them.
      let chunk = all.slice(start, end).filter(isJsonObject);
      let batch: Record<string, unknown>;
      if (stream.kind === "metric") {
        batch = chunk.length > 0 ? { metrics: { [stream.name!]: [chunk.join("\n")] } } : {};
      } else if (stream.kind === "logs") {
        batch = chunk.length > 0 ? { logs: [chunk.join("\n")] } : {};
      } else {
        // Files go in smaller requests: their contents travel as base64.
        const uploads = [];
        let bytes = 0;
        let taken = 0;
        for (const line of chunk) {
          const info = JSON.parse(line) as { path: string; mime: string; _ts: number };
          let data: Uint8Array;
          try {
            data = fs.readFileSync(path.join(dir, "files", ...info.path.split("/")));
          } catch {
            taken++;
            continue;
          }
          if (uploads.length > 0 && bytes + data.byteLength > SYNC_CHUNK_FILE_BYTES) break;
          uploads.push({ path: info.path, size: data.byteLength, mime: info.mime, _ts: info._ts, data: Buffer.from(data).toString("base64") });
          bytes += data.byteLength;
          taken++;
        }
        if (taken < chunk.length) {
          end = start + taken;
          chunk = chunk.slice(0, taken);
        }
        files += uploads.length;
        batch = uploads.length > 0 ? { files: uploads } : {};
      }
      await send(stream.session, end, batch);
      if (stream.kind !== "files") lines += chunk.length;
      start = end;
    }
  }

  const status = readJson<Record<string, unknown>>(path.join(dir, "status.json"));
  if (status) await send(`${base}-status`, fnv1aNumber(JSON.stringify(status)), { status });
  return { lines, files };
}

/** The complete lines of a JSONL file (a torn last line is left out). */
function completeLines(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    return [];
  }
  const end = text.lastIndexOf("\n");
  if (end < 0) return [];
  return text.slice(0, end).split("\n");
}

function isJsonObject(line: string): boolean {
  try {
    const value = JSON.parse(line);
    return typeof value === "object" && value !== null && !Array.isArray(value);
  } catch {
    return false;
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

function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as T;
  } catch {
    return undefined;
  }
}

// ─── login / logout ─────────────────────────────────────────────────────────

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
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(all, null, 2) + "\n", { mode: 0o600 });
  fs.chmodSync(tmp, 0o600);
  fs.renameSync(tmp, file);
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
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(all, null, 2) + "\n", { mode: 0o600 });
  fs.chmodSync(tmp, 0o600);
  fs.renameSync(tmp, file);
  console.log(`Removed the token for ${key} from ${file}`);
  return await Promise.resolve(0);
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
  const dir = path.join(root, ...prefix.split("/"), "metrics");
  const rows = new Map<number, Record<string, unknown>>();
  const keys = new Set<string>();
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir).filter((n) => n.endsWith(".jsonl")).map((n) => n.slice(0, -6)).sort();
  } catch {
    // No metrics: an empty export.
  }
  for (const name of names) {
    for (const line of completeLines(path.join(dir, `${name}.jsonl`))) {
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(line);
      } catch {
        continue;
      }
      const step = typeof record.step === "number" ? record.step : NaN;
      if (Number.isNaN(step)) continue;
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

process.exitCode = await main(process.argv.slice(2));
