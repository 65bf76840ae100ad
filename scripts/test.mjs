// Runs every *_test.ts on Deno, Bun and Node, one runtime after the other (tests
// spawn processes and write temp dirs; the machine has 2 cores), with the runtimes
// from node_modules/.bin. Prints each runtime's result and a closing summary line;
// exits non-zero if any runtime fails.
//
// Node 20 cannot run .ts: tsc compiles the repo to .build/ (tsconfig.test.json) and
// `node --test` runs the compiled *_test.js there. Every file that is not .ts
// (dashboard/, fixtures, ...) is copied to the same place under .build/, so code that
// finds files with `new URL("./x", import.meta.url)` works from source and from .build/.
//
// Usage: node scripts/test.mjs [deno|bun|node ...] [file_test.ts ...]
//   (default: all three runtimes, every test file; naming files runs only those).
// The full Deno run also runs the JSDoc examples of the modules (deno test --doc).

import { spawn } from "node:child_process";
import { copyFile, mkdir, readdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const bin = (name) => join(root, "node_modules", ".bin", name);
// Never searched for tests nor copied into .build/ (nor is any dot-folder).
// bench/ is never part of the test command.
const skipDirs = new Set(["node_modules", "dist", "bench"]);
const build = join(root, ".build");

async function listFiles(dir = root, prefix = "") {
  const files = [];
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => a.name.localeCompare(b.name));
  for (const entry of entries) {
    if (entry.name.startsWith(".") || skipDirs.has(entry.name)) continue;
    const rel = prefix + entry.name;
    if (entry.isDirectory()) {
      files.push(...(await listFiles(join(dir, entry.name), rel + "/")));
    } else if (entry.isFile()) {
      files.push(rel);
    }
  }
  return files;
}

// Runs a command with the repo as cwd, echoing its output, and returns its exit
// code and output (ANSI colours removed, for counting).
function run(cmd, args) {
  console.log(`$ ${[cmd.replace(root, ""), ...args].join(" ")}`);
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk) => {
      process.stdout.write(chunk);
      output += chunk;
    });
    // Both streams go to stdout, so the log keeps the order things happened in.
    child.stderr.on("data", (chunk) => {
      process.stdout.write(chunk);
      output += chunk;
    });
    child.on("error", (error) => {
      output += String(error);
      resolve({ code: 1, output });
    });
    child.on("close", (code, signal) => {
      // deno-lint-ignore no-control-regex -- ANSI colour codes start with ESC
      const plain = output.replace(/\x1b\[[0-9;]*m/g, "");
      resolve({ code: code ?? (signal ? 1 : 0), output: plain });
    });
  });
}

// Each runner prints its own totals; read them back.
function count(output, passed, failed) {
  const p = output.match(passed);
  const f = output.match(failed);
  return { passed: p ? Number(p[1]) : 0, failed: f ? Number(f[1]) : 0 };
}

// The modules whose JSDoc examples `deno test --doc` runs with the full suite (importing them runs nothing).
function docModules(files) {
  return files.filter((f) =>
    f.endsWith(".ts") && !f.endsWith("_test.ts") && !/^(testing\/fixtures|bench|examples)\//.test(f)
  );
}

const runtimes = {
  async deno(tests, files) {
    const doc = only.length === 0 ? ["--doc", ...docModules(files)] : [];
    const { code, output } = await run(bin("deno"), [
      "test",
      "-A",
      ...doc,
      ...tests,
    ]);
    return { code, ...count(output, /\| (\d+) passed/, /\| (\d+) failed/) };
  },

  async bun(tests) {
    // bun's default per-test timeout (5 s) is short for tests that spawn processes.
    const { code, output } = await run(bin("bun"), [
      "test",
      "--timeout",
      "60000",
      ...tests.map((t) => `./${t}`),
    ]);
    return { code, ...count(output, /^\s*(\d+) pass$/m, /^\s*(\d+) fail$/m) };
  },

  async node(tests, files) {
    await rm(build, { recursive: true, force: true });
    const tsc = await run(bin("tsc"), ["-p", "tsconfig.test.json"]);
    if (tsc.code !== 0) return { code: tsc.code, passed: 0, failed: 0 };
    for (const file of files.filter((f) => !f.endsWith(".ts"))) {
      await mkdir(dirname(join(build, file)), { recursive: true });
      await copyFile(join(root, file), join(build, file));
    }
    const { code, output } = await run(process.execPath, [
      "--test",
      "--test-reporter=spec",
      ...tests.map((t) => join(".build", t.replace(/\.ts$/, ".js"))),
    ]);
    return { code, ...count(output, /^ℹ pass (\d+)/m, /^ℹ fail (\d+)/m) };
  },
};

const args = process.argv.slice(2);
const only = args.filter((a) => a.endsWith(".ts"));
const named = args.filter((a) => !a.endsWith(".ts"));
const chosen = named.length > 0 ? named : Object.keys(runtimes);
for (const name of chosen) {
  if (!(name in runtimes)) {
    console.error(`Unknown runtime "${name}": expected deno, bun or node`);
    process.exit(2);
  }
}

const files = await listFiles();
const tests = files.filter((f) => f.endsWith("_test.ts") && (only.length === 0 || only.includes(f)));
if (tests.length === 0) {
  console.error("No *_test.ts files found");
  process.exit(1);
}

const results = [];
for (const name of chosen) {
  console.log(`\n=== ${name}: ${tests.length} test file(s) ===`);
  const start = performance.now();
  const result = await runtimes[name](tests, files);
  const seconds = ((performance.now() - start) / 1000).toFixed(1);
  // A runtime that failed before counting (crash, type error) still counts as a failure.
  if (result.code !== 0 && result.failed === 0) result.failed = 1;
  const status = result.code === 0 ? "PASS" : "FAIL";
  results.push({ name, seconds, status, ...result });
  console.log(`=== ${name}: ${status} (${seconds}s) ===`);
}

console.log("\nSummary, test runs per runtime:");
for (const { name, status, passed, failed, seconds } of results) {
  const counts = `passed ${passed}, failed ${failed}`;
  console.log(`  ${name.padEnd(5)} ${status}  ${counts}  (${seconds}s)`);
}
const passed = results.reduce((n, r) => n + r.passed, 0);
const failed = results.reduce((n, r) => n + r.failed, 0);
console.log(`total: ${passed} passed, ${failed} failed`);
process.exit(results.every((r) => r.code === 0) ? 0 : 1);
