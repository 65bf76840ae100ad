// The packed npm tarball, installed in a fresh folder as a new user installs
// it: its metadata, Node ESM, require() (which works where the runtime can
// require an ES module and otherwise says "ESM only"), the types under
// moduleResolution node16 and bundler with lib ES2022 and skipLibCheck false,
// `npx ml-dash --help` and `bunx ml-dash ls`.
import { after, before, test } from "node:test";
import { deepEqual, equal, match, ok } from "node:assert/strict";
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { copyFileSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { longerTimeoutsOnBun } from "../testing/run_script.ts";
import { CHECKOUT } from "../testing/source.ts";
import { tempDir } from "../testing/temp.ts";

await longerTimeoutsOnBun();

let packed: string;
let consumer: string;

/** A consumer's TypeScript, compiled with lib ES2022 and skipLibCheck false: every export's types must resolve. */
const CONSUMER_TYPES = `
import { Experiment, startRun } from "ml-dash";
import type { ExperimentOptions, Run } from "ml-dash";
import { DashReader, JsonlBackend } from "ml-dash/storage/jsonl";
import { HttpBackend } from "ml-dash/storage/http";
import { serve } from "ml-dash/server";
import type { DashServer } from "ml-dash/server";

const options: ExperimentOptions = { prefix: "alice/types/x", httpTimeout: 5 };
export const used: unknown[] = [new Experiment(options), startRun, DashReader, JsonlBackend, HttpBackend, serve];
export async function later(run: Run, server: DashServer): Promise<void> {
  await using _ = run;
  await server.close();
}
`;

/** Runs a command to its end; its output, or an error with all of it where it failed and `mayFail` is not set. */
function run(cmd: string, args: string[], cwd: string, mayFail = false): SpawnSyncReturns<string> {
  const result = spawnSync(cmd, args, { cwd, encoding: "utf8", timeout: 120_000, env: { ...process.env, npm_config_yes: "true", npm_config_offline: "true" } });
  if (!mayFail && result.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${result.status}: ${result.stdout}${result.stderr}${result.error ?? ""}`);
  return result;
}

function fixture(name: string): string {
  return fileURLToPath(new URL(`../testing/fixtures/${name}`, import.meta.url));
}

before(() => {
  packed = tempDir("package");
  run("npm", ["pack", "--silent", "--pack-destination", packed], CHECKOUT);
  const tarball = join(packed, readdirSync(packed).find((name) => name.endsWith(".tgz"))!);
  consumer = tempDir("consumer");
  writeFileSync(join(consumer, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
  run("npm", ["install", "--no-audit", "--no-fund", tarball], consumer);
  copyFileSync(fixture("package_consumer.mjs"), join(consumer, "consumer.mjs"));
  writeFileSync(join(consumer, "check.ts"), CONSUMER_TYPES);
});

after(() => {
  for (const dir of [packed, consumer]) if (dir) rmSync(dir, { recursive: true, force: true });
});

test("the tarball holds LICENSE, the README and dist/, and names its repository, homepage and keywords", () => {
  const installed = join(consumer, "node_modules", "ml-dash");
  for (const file of ["LICENSE", "README.md", "dist/mod.js", "dist/mod.d.ts", "dist/cli.js", "esm_only.cjs"]) ok(existsSync(join(installed, file)), file);
  const meta = JSON.parse(readFileSync(join(installed, "package.json"), "utf8")) as Record<string, unknown>;
  match(String((meta.repository as { url?: string })?.url), /^git\+https:\/\//);
  equal(typeof meta.homepage, "string");
  ok(Array.isArray(meta.keywords) && meta.keywords.length > 0);
  equal(meta.license, "MIT");
});

test("Node imports every export of the installed package and logs a run to .dash/", () => {
  match(run("node", ["consumer.mjs"], consumer).stdout, /train\/loss: 1/);
});

test("require() of every export works on Node with require(esm), and says \"ESM only\" where require(esm) is off", () => {
  const entries = ["ml-dash", "ml-dash/storage/jsonl", "ml-dash/storage/http", "ml-dash/server"];
  for (const entry of entries) {
    const loaded = run("node", ["-e", `const m = require(${JSON.stringify(entry)}); console.log(Object.keys(m).length > 0)`], consumer);
    equal(loaded.stdout.trim(), "true", entry);
    const refused = run("node", ["--no-experimental-require-module", "-e", `require(${JSON.stringify(entry)})`], consumer, true);
    ok(refused.status !== 0, entry);
    match(refused.stderr, /ml-dash is ESM only/, entry);
  }
});

for (const [resolution, module] of [["node16", "node16"], ["bundler", "esnext"]] as const) {
  test(`the types compile in a consumer with moduleResolution ${resolution}, lib ES2022 and skipLibCheck false (no DOM lib and no @types/node in the consumer)`, () => {
    const tsconfig = { compilerOptions: { target: "ES2022", lib: ["ES2022"], module, moduleResolution: resolution, strict: true, skipLibCheck: false, noEmit: true, types: [] }, files: ["check.ts"] };
    writeFileSync(join(consumer, `tsconfig.${resolution}.json`), JSON.stringify(tsconfig));
    const result = run(join(CHECKOUT, "node_modules", ".bin", "tsc"), ["-p", `tsconfig.${resolution}.json`], consumer, true);
    deepEqual([result.status, result.stdout.trim()], [0, ""]);
  });
}

test("npx ml-dash --help prints the usage, and bunx ml-dash ls lists the consumer's .dash/", () => {
  match(run("npx", ["ml-dash", "--help"], consumer).stdout, /Usage: ml-dash <command>/);
  match(run(join(CHECKOUT, "node_modules", ".bin", "bunx"), ["ml-dash", "ls"], consumer).stdout, /alice\/package\/first|No experiments/);
});
