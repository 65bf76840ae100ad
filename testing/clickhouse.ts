/**
 * Real ClickHouse servers for the tests: each one a `clickhouse-server` child
 * process with a generated configuration in a temp directory, on free
 * loopback ports (HTTP, native TCP, interserver), waited for with `SELECT 1`
 * and stopped by its pid. Servers started together may form a cluster (one
 * shard each) for `Distributed` tables.
 *
 * Locally a test file skips when the binary is missing (with a message); under
 * `CI=true` it never skips: the missing binary is a failure.
 *
 * @example
 * ```ts ignore
 * import { startClickHouse } from "./clickhouse.ts";
 *
 * const [server] = await startClickHouse({ count: 1 });
 * console.log(await (await fetch(`${server.url}/?query=SELECT%201`)).text()); // 1
 * await server.stop();
 * ```
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import { freePort } from "./net.ts";
import * as os from "node:os";
import * as path from "node:path";

/** Where Debian puts the server, then the names it may have on the PATH. */
const CANDIDATES = ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server", "/usr/bin/clickhouse"];

/** The user with a password that every test server has (besides `default` without one). */
export const TEST_USER = { name: "dash", password: "dash-secret" };

/** The cluster name the servers started together form. */
export const TEST_CLUSTER = "dash_test";

/** A running test server. */
export interface ClickHouseServer {
  /** The HTTP interface, e.g. `http://127.0.0.1:41234`. */
  readonly url: string;
  /** The HTTP port. */
  readonly httpPort: number;
  /** The native TCP port (what a `Distributed` table connects to). */
  readonly tcpPort: number;
  /** The child's pid. */
  readonly pid: number;
  /** The temp directory of its config and data. */
  readonly dir: string;
  /** Stops it (SIGTERM, then SIGKILL) and removes its directory. */
  stop(): Promise<void>;
}

/** Options of {@linkcode startClickHouse}. */
export interface StartClickHouseOptions {
  /** How many servers (default 1); together they form the cluster {@linkcode TEST_CLUSTER}, one shard each. */
  count?: number;
  /** Milliseconds to wait for `SELECT 1` (default 60000). */
  timeoutMs?: number;
  /** Keep every query in `system.query_log` (for profiles; default off). */
  queryLog?: boolean;
}

/**
 * The `clickhouse-server` binary, or undefined when it is not installed.
 *
 * @returns Its command and the arguments before the config's.
 */
export function findClickHouse(): { cmd: string; args: string[] } | undefined {
  for (const candidate of CANDIDATES) {
    if (!fs.existsSync(candidate)) continue;
    return candidate.endsWith("/clickhouse") ? { cmd: candidate, args: ["server"] } : { cmd: candidate, args: [] };
  }
  return undefined;
}

/**
 * Why the ClickHouse tests of this file cannot run here, or undefined when they can.
 * Under `CI=true` a missing binary throws instead: there the tests never skip.
 *
 * @returns The skip message, or undefined.
 * @throws {Error} Under CI, when the binary is missing.
 */
export function clickHouseSkipReason(): string | undefined {
  if (findClickHouse()) return undefined;
  const message = `clickhouse-server is not installed (looked at ${CANDIDATES.join(", ")}); install it with apt-get install -y clickhouse-server`;
  if (process.env.CI === "true") throw new Error(`${message}: under CI=true the ClickHouse tests never skip`);
  return message;
}

/**
 * Starts `count` servers on free loopback ports and waits until each answers.
 *
 * @param options How many and how long to wait.
 * @returns The running servers.
 */
export async function startClickHouse(options: StartClickHouseOptions = {}): Promise<ClickHouseServer[]> {
  const binary = findClickHouse();
  if (!binary) throw new Error(clickHouseSkipReason() ?? "clickhouse-server is not installed");
  const count = options.count ?? 1;
  const ports: { http: number; tcp: number; interserver: number }[] = [];
  for (let i = 0; i < count; i++) ports.push({ http: await freePort(), tcp: await freePort(), interserver: await freePort() });
  const servers: ClickHouseServer[] = [];
  try {
    for (const port of ports) servers.push(await startOne(binary, port, ports, options.timeoutMs ?? 60_000, options.queryLog ?? false));
  } catch (error) {
    for (const server of servers) await server.stop();
    throw error;
  }
  return servers;
}

async function startOne(
  binary: { cmd: string; args: string[] },
  port: { http: number; tcp: number; interserver: number },
  all: { tcp: number }[],
  timeoutMs: number,
  queryLog: boolean,
): Promise<ClickHouseServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ml-dash-clickhouse-"));
  for (const sub of ["data", "tmp", "user_files", "format_schemas", "log"]) fs.mkdirSync(path.join(dir, sub));
  fs.writeFileSync(path.join(dir, "config.xml"), configXml(dir, port, all));
  fs.writeFileSync(path.join(dir, "users.xml"), usersXml(queryLog));
  const child: ChildProcess = spawn(binary.cmd, [...binary.args, `--config-file=${path.join(dir, "config.xml")}`], {
    cwd: dir,
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (chunk) => {
    if (stderr.length < 20_000) stderr += chunk;
  });
  let exited: string | undefined;
  child.on("exit", (code, signal) => {
    exited = `exited with ${signal ?? code}`;
  });
  const url = `http://127.0.0.1:${port.http}`;
  const stop = async (): Promise<void> => {
    if (exited === undefined && child.pid !== undefined) {
      const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      // Unreferenced while it runs; waited for now (without this, an event loop with nothing else to do ends first).
      child.ref();
      process.kill(child.pid, "SIGTERM");
      const killer = setTimeout(() => {
        if (exited === undefined) process.kill(child.pid!, "SIGKILL");
      }, 10_000);
      await gone;
      clearTimeout(killer);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exited !== undefined) {
      const log = readIfExists(path.join(dir, "log", "err.log"));
      fs.rmSync(dir, { recursive: true, force: true });
      throw new Error(`clickhouse-server ${exited} before it answered: ${(stderr + log).slice(-2000)}`);
    }
    try {
      const res = await fetch(`${url}/?query=SELECT%201`, { signal: AbortSignal.timeout(2000) });
      if (res.ok && (await res.text()).trim() === "1") break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`clickhouse-server did not answer SELECT 1 at ${url} within ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.unref();
  (child.stderr as unknown as { unref?: () => void }).unref?.();
  return { url, httpPort: port.http, tcpPort: port.tcp, pid: child.pid!, dir, stop };
}

function readIfExists(file: string): string {
  try {
    return fs.readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

function configXml(dir: string, port: { http: number; tcp: number; interserver: number }, all: { tcp: number }[]): string {
  const shards = all.map((p) => `<shard><replica><host>127.0.0.1</host><port>${p.tcp}</port></replica></shard>`).join("");
  return `<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>${dir}/log/server.log</log><errorlog>${dir}/log/err.log</errorlog><size>10M</size><count>1</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>${port.http}</http_port>
  <tcp_port>${port.tcp}</tcp_port>
  <interserver_http_port>${port.interserver}</interserver_http_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <max_connections>256</max_connections>
  <keep_alive_timeout>3</keep_alive_timeout>
  <max_concurrent_queries>100</max_concurrent_queries>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <mark_cache_size>268435456</mark_cache_size>
  <path>${dir}/data/</path>
  <tmp_path>${dir}/tmp/</tmp_path>
  <user_files_path>${dir}/user_files/</user_files_path>
  <format_schema_path>${dir}/format_schemas/</format_schema_path>
  <users_config>${dir}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
  <query_log><database>system</database><table>query_log</table><flush_interval_milliseconds>1000</flush_interval_milliseconds></query_log>
  <remote_servers><${TEST_CLUSTER}>${shards}</${TEST_CLUSTER}></remote_servers>
  <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
  <max_session_timeout>3600</max_session_timeout>
  <default_session_timeout>60</default_session_timeout>
</yandex>
`;
}

function usersXml(queryLog: boolean): string {
  return `<?xml version="1.0"?>
<yandex>
  <profiles>
    <default><max_memory_usage>2000000000</max_memory_usage><load_balancing>random</load_balancing><log_queries>${queryLog ? 1 : 0}</log_queries></default>
  </profiles>
  <users>
    <default><password></password><networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></default>
    <${TEST_USER.name}><password>${TEST_USER.password}</password><networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></${TEST_USER.name}>
  </users>
  <quotas>
    <default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default>
  </quotas>
</yandex>
`;
}
