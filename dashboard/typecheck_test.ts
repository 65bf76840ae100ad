// Type-checks the dashboard's plain-JS modules against their JSDoc, with the DOM
// and without Node's types (dashboard/jsconfig.json), as tsc --checkJs does in
// an editor. Runs the repo's tsc with node from any runtime.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

/** The folder with node_modules/typescript: the repo, also when this runs from .build/. */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "node_modules", "typescript", "bin", "tsc"))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error("node_modules/typescript not found above this test");
    dir = parent;
  }
  return dir;
}

const root = repoRoot();
const dashboard = join(root, "dashboard");

test("every dashboard module asks editors to type-check it (// @ts-check)", () => {
  const modules = readdirSync(dashboard).filter((f) => f.endsWith(".js"));
  assert.ok(modules.length > 1, `no .js files in ${dashboard}`);
  const unchecked = modules.filter((f) => !readFileSync(join(dashboard, f), "utf8").startsWith("// @ts-check\n"));
  assert.deepEqual(unchecked, []);
});

test("tsc --checkJs finds no type errors in the dashboard", () => {
  const result = spawnSync("node", [join("node_modules", "typescript", "bin", "tsc"), "-p", join("dashboard", "jsconfig.json")], {
    cwd: root,
    encoding: "utf8",
    timeout: 120_000,
  });
  assert.equal(result.error, undefined);
  assert.equal(result.stdout + result.stderr, "");
  assert.equal(result.status, 0);
});
