/**
 * Start a TypeScript script as a child process on the runtime the tests run on:
 * Deno and Bun run the `.ts` file itself, Node (which runs the tsc-compiled
 * `.build/` tree) runs the compiled `.js` sibling.
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The runtimes the test suite runs on. */
export type RuntimeName = "deno" | "bun" | "node";

/** A program and its arguments, ready for `spawn(cmd, args)`. */
export interface ScriptCommand {
  /** Path of the runtime executable. */
  cmd: string;
  /** Arguments: the runtime's own, the script path, then the script's. */
  args: string[];
}

/** Options of {@linkcode spawnScript}. */
export interface SpawnScriptOptions {
  /** Arguments passed to the script. */
  args?: string[];
  /** Variables merged over `process.env`; `undefined` removes a variable. */
  env?: Record<string, string | undefined>;
  /** Working directory of the child (default: the current one). */
  cwd?: string;
}

/** Options of {@linkcode runScript}. */
export interface RunScriptOptions extends SpawnScriptOptions {
  /** Kill the child and reject after this many milliseconds (default 30000). */
  timeoutMs?: number;
}

/** What a finished script left behind. */
export interface RunScriptResult {
  /** Exit code, or `null` when a signal ended the child. */
  code: number | null;
  /** Signal that ended the child, or `null` when it exited. */
  signal: string | null;
  /** Everything the child wrote to stdout. */
  stdout: string;
  /** Everything the child wrote to stderr. */
  stderr: string;
}

/**
 * Tell which runtime runs this code, from `navigator.userAgent` (Node 20 has no
 * `navigator`; Deno and Bun both pretend to be Node in `process.release`).
 *
 * @returns `"deno"`, `"bun"` or `"node"`
 *
 * @example Skip a check on one runtime
 * ```ts
 * import { runtimeName } from "./run_script.ts";
 *
 * if (runtimeName() !== "node") console.log("running the .ts source directly");
 * ```
 */
export function runtimeName(): RuntimeName {
  const navigator = (globalThis as { navigator?: { userAgent?: string } })
    .navigator;
  const userAgent = navigator?.userAgent ?? "";
  if (userAgent.startsWith("Deno/")) return "deno";
  if (userAgent.startsWith("Bun/")) return "bun";
  return "node";
}

/**
 * Build the command that runs a TypeScript script on the current runtime.
 *
 * @param scriptUrl URL of the `.ts` file, usually relative to `import.meta.url`
 * @param args arguments passed to the script
 * @returns the executable and its arguments
 *
 * @example Run a fixture next to the test
 * ```ts
 * import { scriptCommand } from "./run_script.ts";
 *
 * const { cmd, args } = scriptCommand(
 *   new URL("./fixtures/hello.ts", import.meta.url),
 *   ["--name", "x"],
 * );
 * console.log(cmd, args.join(" "));
 * ```
 */
export function scriptCommand(
  scriptUrl: URL,
  args: string[] = [],
): ScriptCommand {
  const file = fileURLToPath(scriptUrl);
  switch (runtimeName()) {
    case "deno": {
      const deno = (globalThis as { Deno?: { execPath(): string } }).Deno;
      return { cmd: deno!.execPath(), args: ["run", "-A", file, ...args] };
    }
    case "bun":
      return { cmd: process.execPath, args: [file, ...args] };
    case "node":
      // Node runs the compiled tree, where tsc put `x.js` next to where `x.ts` was.
      return {
        cmd: process.execPath,
        args: [file.replace(/\.ts$/, ".js"), ...args],
      };
  }
}

/**
 * Start a TypeScript script on the current runtime and return the child, for
 * tests that signal or kill it. stdin, stdout and stderr are pipes.
 *
 * @param scriptUrl URL of the `.ts` file
 * @param options arguments, environment and working directory
 * @returns the running child process
 *
 * @example Stop a long-running child
 * ```ts
 * import { once } from "node:events";
 * import { spawnScript } from "./run_script.ts";
 *
 * const child = spawnScript(new URL("./fixtures/hello.ts", import.meta.url));
 * child.kill("SIGTERM");
 * await once(child, "close");
 * ```
 */
export function spawnScript(
  scriptUrl: URL,
  options: SpawnScriptOptions = {},
): ChildProcess {
  const { cmd, args } = scriptCommand(scriptUrl, options.args);
  return spawn(cmd, args, {
    cwd: options.cwd,
    env: mergeEnv(options.env),
    stdio: ["pipe", "pipe", "pipe"],
  });
}

/**
 * Run a TypeScript script on the current runtime to its end and collect its
 * output. Rejects if it runs longer than `timeoutMs` (the child is killed).
 *
 * @param scriptUrl URL of the `.ts` file
 * @param options arguments, environment, working directory and time limit
 * @returns exit code, signal, stdout and stderr
 *
 * @example Check what a fixture prints
 * ```ts
 * import { runScript } from "./run_script.ts";
 *
 * const result = await runScript(
 *   new URL("./fixtures/hello.ts", import.meta.url),
 *   { args: ["x"], timeoutMs: 10_000 },
 * );
 * if (result.code !== 0) throw new Error(result.stderr);
 * ```
 */
export function runScript(
  scriptUrl: URL,
  options: RunScriptOptions = {},
): Promise<RunScriptResult> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const child = spawnScript(scriptUrl, options);
  child.stdin?.end();
  let stdout = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (s: string) => (stdout += s));
  child.stderr?.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(
          `Script timed out after ${timeoutMs} ms: ${scriptUrl.pathname}\n` +
            `stdout: ${stdout}\nstderr: ${stderr}`,
        ),
      );
    }, timeoutMs);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/**
 * Path of the Deno binary installed by npm in this repository, found by walking
 * up from this file (works from the source tree and from `.build/testing/`).
 * For tests that must run something under Deno (say, with restricted
 * permissions) whatever runtime runs the tests.
 *
 * @returns absolute path of `node_modules/.bin/deno`
 *
 * @example Run a script under Deno without file access
 * ```ts
 * import { spawnSync } from "node:child_process";
 * import { fileURLToPath } from "node:url";
 * import { denoPath } from "./run_script.ts";
 *
 * const script = fileURLToPath(new URL("./fixtures/hello.ts", import.meta.url));
 * spawnSync(denoPath(), ["run", "--deny-read", "--deny-write", script]);
 * ```
 */
export function denoPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, "node_modules", ".bin", "deno");
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) {
      throw new Error(
        "Cannot find node_modules/.bin/deno: run `npm ci` in the repository",
      );
    }
    dir = parent;
  }
}

function mergeEnv(
  extra: Record<string, string | undefined> = {},
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries({ ...process.env, ...extra })) {
    if (value !== undefined) env[key] = value;
  }
  return env;
}

/**
 * Bun applies its 5 s default timeout to hooks and ignores node:test's timeout
 * options: tests that start browsers or servers raise it to 120 s there.
 *
 * @returns Once the timeout is set (at once elsewhere).
 */
export async function longerTimeoutsOnBun(): Promise<void> {
  if (runtimeName() !== "bun") return;
  const bunTest = "bun:test";
  const { setDefaultTimeout } = await import(bunTest);
  setDefaultTimeout(120_000);
}
