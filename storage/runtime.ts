/**
 * The one place that asks which runtime the code runs on and reaches for its
 * globals (`Deno`, `Bun`, `process`, `navigator`). Everything else imports
 * these probes instead of casting `globalThis` itself, so that the code runs
 * where a global is missing (a Worker, an edge runtime, a browser) and type
 * checks without any runtime's type declarations.
 *
 * On Deno, `process` is built on first use, which costs tens of milliseconds
 * at start-up: the probes here ask `Deno` first and touch `process` only when
 * called, never when this module loads.
 *
 * @example Pick what differs per runtime in one place
 * ```ts
 * import { readEnv, runtimeKey } from "./runtime.ts";
 *
 * const where = runtimeKey(); // "deno", "bun", "node", ...
 * console.log(where, readEnv("ML_DASH_ROOT") ?? ".dash");
 * ```
 *
 * @module
 */

/** The runtimes told apart by {@linkcode runtimeKey}. */
export type RuntimeKey = "deno" | "bun" | "node" | "workerd" | "edge-light" | "other";

/**
 * The runtime this code runs on: from `navigator.userAgent` first (Deno and
 * Bun both claim to be Node in `process.release`), then from the globals an
 * edge runtime or Node 20 (which has no `navigator`) defines.
 *
 * @returns `"deno"`, `"bun"`, `"node"`, `"workerd"` (Cloudflare Workers),
 * `"edge-light"` (Vercel Edge) or `"other"` (a browser, say).
 *
 * @example
 * ```ts
 * import { runtimeKey } from "./runtime.ts";
 * import { ok } from "node:assert/strict";
 *
 * ok(["deno", "bun", "node", "workerd", "edge-light", "other"].includes(runtimeKey()));
 * ```
 */
export function runtimeKey(): RuntimeKey {
  const agent = (globalThis as { navigator?: { userAgent?: string } }).navigator?.userAgent ?? "";
  if (agent.startsWith("Deno/")) return "deno";
  if (agent.startsWith("Bun/")) return "bun";
  if (agent.startsWith("Node.js/")) return "node";
  if (agent === "Cloudflare-Workers") return "workerd";
  const globals = globalThis as { EdgeRuntime?: unknown; Deno?: unknown; Bun?: unknown };
  if (typeof globals.EdgeRuntime === "string") return "edge-light";
  if (globals.Deno !== undefined) return "deno";
  if (globals.Bun !== undefined) return "bun";
  if (nodeProcess()?.release?.name === "node") return "node";
  return "other";
}

/**
 * The `Deno` namespace on Deno, typed as the part of it the caller uses;
 * undefined on every other runtime.
 *
 * @typeParam T The members of `Deno` the caller uses.
 * @returns The namespace, or undefined.
 *
 * @example
 * ```ts
 * import { denoNamespace } from "./runtime.ts";
 *
 * const deno = denoNamespace<{ pid: number }>();
 * console.log(deno ? `Deno, pid ${deno.pid}` : "not Deno");
 * ```
 */
export function denoNamespace<T extends object>(): T | undefined {
  return (globalThis as unknown as { Deno?: T }).Deno;
}

/**
 * The `Bun` namespace on Bun, typed as the part of it the caller uses;
 * undefined on every other runtime.
 *
 * @typeParam T The members of `Bun` the caller uses.
 * @returns The namespace, or undefined.
 *
 * @example
 * ```ts
 * import { bunNamespace } from "./runtime.ts";
 *
 * const bun = bunNamespace<{ version: string }>();
 * console.log(bun ? `Bun ${bun.version}` : "not Bun");
 * ```
 */
export function bunNamespace<T extends object>(): T | undefined {
  return (globalThis as unknown as { Bun?: T }).Bun;
}

/**
 * The global `process` where there is one (Node, Bun, Deno), else undefined
 * (a Worker, an edge runtime, a browser). Read at each call: on Deno the
 * first read builds it, which costs tens of milliseconds.
 *
 * @returns The process object, or undefined.
 *
 * @example
 * ```ts
 * import { nodeProcess } from "./runtime.ts";
 *
 * console.log(nodeProcess()?.platform ?? "no process");
 * ```
 */
export function nodeProcess(): NodeProcess | undefined {
  return (globalThis as unknown as { process?: NodeProcess }).process;
}

/**
 * The part of Node's `process` this code uses, declared here so that the
 * published types compile without `@types/node` (a Worker's or a page's project).
 */
export interface NodeProcess {
  /** `release.name` is `"node"` on Node (and on Deno and Bun, which claim it). */
  release?: { name?: string };
  /** The environment. */
  env?: Record<string, string | undefined>;
  /** The process id. */
  pid?: number;
  /** The operating system. */
  platform?: string;
  /** Loads a built-in module synchronously (Node ≥ 20.16, Bun). */
  getBuiltinModule?(id: string): unknown;
  /** Ends the process. */
  exit(code?: number): never;
  /** Adds a listener to a process event. */
  on(event: string, listener: (...args: never[]) => void): unknown;
  /** Removes a listener. */
  off(event: string, listener: (...args: never[]) => void): unknown;
  /** How many listeners an event has. */
  listenerCount(event: string): number;
}

/**
 * Whether this code runs in a web page (a `document` with a visibility state),
 * where the end of a run is the page being hidden or left, not a process exit.
 *
 * @returns True in a page; false in Deno, Bun, Node, Workers and edge runtimes.
 *
 * @example
 * ```ts
 * import { isPage } from "./runtime.ts";
 *
 * console.log(isPage() ? "flush on pagehide" : "flush at process exit");
 * ```
 */
export function isPage(): boolean {
  return typeof (globalThis as { document?: { visibilityState?: unknown } }).document?.visibilityState === "string";
}

/**
 * A module built into Node and Bun (`node:fs`, `node:os`, ...), loaded
 * synchronously with `process.getBuiltinModule` (Node ≥ 20.16, Bun); undefined
 * where there is none (a Worker, an edge runtime, a browser). No `node:`
 * specifier appears in the module graph, so bundlers for the browser and the
 * edge have nothing to resolve, a page attempts no blocked import, and no
 * module needs a top-level `await` (which IIFE and CommonJS bundles and
 * Node's `require` of ES modules refuse).
 *
 * @typeParam T The module's type, such as `typeof import("node:fs")`.
 * @param name The module's name, with the `node:` prefix.
 * @returns The module, or undefined.
 *
 * @example
 * ```ts
 * import { nodeBuiltin } from "./runtime.ts";
 *
 * const os = nodeBuiltin<typeof import("node:os")>("node:os");
 * console.log(os ? os.platform() : "no node:os here");
 * ```
 */
export function nodeBuiltin<T>(name: `node:${string}`): T | undefined {
  try {
    const proc = nodeProcess();
    return typeof proc?.getBuiltinModule === "function" ? proc.getBuiltinModule(name) as T | undefined : undefined;
  } catch {
    return undefined;
  }
}

/** The part of `Deno` that reads the environment, after asking whether it may (where it can ask). */
interface DenoEnvApi {
  env: { get(name: string): string | undefined };
  permissions?: { querySync?(p: { name: "env"; variable: string }): { state: string } };
}

/**
 * Reads an environment variable on any runtime; `undefined` where it is unset,
 * where there is no environment (a Worker), or where access is not granted
 * (Deno without `--allow-env`: the permission is queried first, and "prompt"
 * counts as denied, so a terminal never prompts for an optional setting; where
 * Deno has no `Deno.permissions.querySync`, as on Deno Deploy, the variable is
 * read directly, and a refused read is undefined). It never throws.
 *
 * @param name The variable's name.
 * @returns Its value, or undefined.
 *
 * @example
 * ```ts
 * import { readEnv } from "./runtime.ts";
 *
 * const interval = Number(readEnv("ML_DASH_FLUSH_INTERVAL") ?? 5);
 * console.log(interval);
 * ```
 */
export function readEnv(name: string): string | undefined {
  try {
    const deno = denoNamespace<DenoEnvApi>();
    if (!deno) return nodeProcess()?.env?.[name];
    // Asked first: in a terminal, reading an env var without --allow-env would prompt, once per name.
    // Where it cannot be asked (Deno Deploy), there is no terminal to prompt: a denied read throws, caught below.
    if (!grantedWithoutPrompt(deno.permissions, { name: "env", variable: name })) return undefined;
    return deno.env.get(name);
  } catch {
    return undefined;
  }
}

/** Whether Deno grants a permission, asked with `querySync` where there is one; where there is none, true (the call itself is refused if it is not granted). */
function grantedWithoutPrompt<D>(permissions: { querySync?(descriptor: D): { state: string } } | undefined, descriptor: D): boolean {
  if (typeof permissions?.querySync !== "function") return true;
  return permissions.querySync(descriptor).state === "granted";
}

/**
 * The id of this process, where the runtime has one (not in a browser).
 * On Deno it is read from `Deno.pid`, without building `process`.
 *
 * @returns The pid, or undefined.
 *
 * @example
 * ```ts
 * import { processId } from "./runtime.ts";
 *
 * const tmp = `data.json.${processId() ?? 0}.tmp`;
 * console.log(tmp);
 * ```
 */
export function processId(): number | undefined {
  return denoNamespace<{ pid?: number }>()?.pid ?? nodeProcess()?.pid;
}

/** The part of `Deno` that tells the host name, if the permission is granted. */
interface DenoHostApi {
  hostname(): string;
  permissions?: { querySync?(p: { name: "sys"; kind: "hostname" }): { state: string } };
}

/**
 * The machine's name where the runtime may tell it without asking (on Deno:
 * where `--allow-sys=hostname` is granted, never a prompt, or asked directly
 * where `Deno.permissions.querySync` is missing), else undefined
 * (a Worker, a browser).
 *
 * @returns The host name, or undefined.
 *
 * @example
 * ```ts
 * import { hostName } from "./runtime.ts";
 *
 * console.log((await hostName()) ?? "unknown host");
 * ```
 */
export async function hostName(): Promise<string | undefined> {
  try {
    const deno = denoNamespace<Partial<DenoHostApi>>();
    if (typeof deno?.hostname === "function") {
      return grantedWithoutPrompt(deno.permissions, { name: "sys", kind: "hostname" }) ? deno.hostname() : undefined;
    }
    return nodeBuiltin<{ hostname(): string }>("node:os")?.hostname();
  } catch {
    return undefined;
  }
}

/**
 * Whether the runtime grants access to `path` without prompting: Deno's
 * permission state is asked (a denied or unknown permission is false); other
 * runtimes have no permissions, so it is true there.
 *
 * @param name The kind of access.
 * @param path The file or directory.
 * @returns Whether the access is granted.
 *
 * @example
 * ```ts
 * import { permissionGranted } from "./runtime.ts";
 *
 * if (permissionGranted("write", ".dash")) console.log("the outbox can be written");
 * ```
 */
export function permissionGranted(name: "read" | "write", path: string): boolean {
  const deno = denoNamespace<{ permissions?: { querySync?(d: { name: string; path: string }): { state: string } } }>();
  const query = deno?.permissions?.querySync;
  if (!query) return true;
  try {
    return query.call(deno!.permissions, { name, path }).state === "granted";
  } catch {
    return false;
  }
}

/**
 * Lets the process end while `timer` is still scheduled: `.unref()` where the
 * timer has it (Node, Bun, Deno ≥ 2.8), `Deno.unrefTimer` for a numeric id.
 *
 * @param timer What `setInterval` or `setTimeout` returned.
 *
 * @example
 * ```ts
 * import { unrefTimer } from "./runtime.ts";
 *
 * const timer = setInterval(() => console.log("tick"), 60_000);
 * unrefTimer(timer);
 * clearInterval(timer);
 * ```
 */
export function unrefTimer(timer: unknown): void {
  if (typeof timer === "object" && timer !== null && "unref" in timer && typeof timer.unref === "function") {
    timer.unref();
    return;
  }
  if (typeof timer === "number") denoNamespace<{ unrefTimer?(id: number): void }>()?.unrefTimer?.(timer);
}

/**
 * Calls `tick` every `ms` milliseconds without keeping the process alive, and
 * returns the function that stops it. On Deno, where the first timer of a
 * process loads the Node-style timers (about 5 ms), it waits with
 * `Atomics.waitAsync`, whose time-outs keep no process alive; elsewhere it is
 * an unref'd `setInterval`.
 *
 * @param tick Called at every interval.
 * @param ms The interval in milliseconds.
 * @returns Stops the ticks; no tick comes after it.
 *
 * @example
 * ```ts
 * import { unrefInterval } from "./runtime.ts";
 *
 * const stop = unrefInterval(() => console.log("tick"), 60_000);
 * stop();
 * ```
 */
export function unrefInterval(tick: () => void, ms: number): () => void {
  if (!denoNamespace() || typeof Atomics.waitAsync !== "function") {
    const timer = setInterval(tick, ms);
    unrefTimer(timer);
    return () => clearInterval(timer);
  }
  const cell = new Int32Array(new SharedArrayBuffer(4));
  const timeout = Math.max(1, ms);
  let stopped = false;
  const wait = (): void => {
    const result = Atomics.waitAsync(cell, 0, 0, timeout);
    if (!result.async) return void queueMicrotask(ticked);
    result.value.then(ticked);
  };
  const ticked = (): void => {
    if (stopped) return;
    wait();
    tick();
  };
  wait();
  return () => {
    stopped = true;
    Atomics.notify(cell, 0);
  };
}
