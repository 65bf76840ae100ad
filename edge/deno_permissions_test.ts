// Deno's permissions, as a new user meets them: in a terminal (a real pty from
// `script`), loading mod.ts and reading every optional setting prompts for
// nothing; a worker without net permission fails at once, saying what to grant.
import { test } from "node:test";
import { doesNotMatch, match } from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { denoPath, runtimeName } from "../testing/run_script.ts";
import { freePort } from "../testing/net.ts";

const onDeno = runtimeName() === "deno";
const script = "/usr/bin/script";
const skipPty = !onDeno ? "Deno's permissions exist only on Deno" : !existsSync(script) && !process.env.CI ? `${script} is missing (util-linux), so no pty` : false;

test("in a terminal, mod.ts and every optional env setting read without --allow-env prompt for nothing (the defaults apply)", { skip: skipPty }, () => {
  const deno = denoPath();
  const fixture = fileURLToPath(new URL("../testing/fixtures/env_quiet.ts", import.meta.url));
  // A prompt waits for an answer on the pty; none comes (stdin is empty), and the timeout ends it.
  const result = spawnSync(script, ["-qec", `'${deno}' run --no-config '${fixture}'`, "/dev/null"], { encoding: "utf8", timeout: 20_000, stdio: ["pipe", "pipe", "pipe"], input: "" });
  doesNotMatch(result.stdout, /Deno requests/);
  match(result.stdout, /settings read: 6/);
});

test("a Deno worker without net permission fails its start at once, naming the permission, instead of retrying for the whole httpTimeout", { skip: onDeno ? false : "Deno's workers and permissions exist only on Deno", timeout: 60_000 }, async () => {
  const port = await freePort(); // not 9 and the like: fetch blocks those ports before any permission check
  const main = fileURLToPath(new URL("../testing/fixtures/worker_no_net_main.ts", import.meta.url));
  const result = spawnSync(denoPath(), ["run", "-A", "--unstable-worker-options", "--no-config", main, `http://127.0.0.1:${port}/`], { encoding: "utf8", timeout: 50_000 });
  match(result.stdout, new RegExp(`network access to 127\\.0\\.0\\.1:${port} is not granted`), result.stderr);
  match(result.stdout, /--allow-net/);
});
