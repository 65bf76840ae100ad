// The module in a web page, in real headless Chromium: the page loads mod.js
// from the dist/ that `npm run build` makes (tsc -p tsconfig.json, here into a
// temp folder), logs to a server of another origin that allows it
// (corsOrigins and a token), with no console error; and when the page is left
// (pagehide) what it buffered reaches the server through keepalive requests.
import { after, before, test } from "node:test";
import { deepEqual, equal } from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { join, normalize } from "node:path";
import { type Browser, chromium } from "playwright-core";
import { serve } from "../server.ts";
import type { DashServer } from "../server.ts";
import { CHROMIUM, CHROMIUM_ARGS, missingChromium } from "../testing/chromium.ts";
import { waitForExperiment } from "../testing/edge_server.ts";
import { CHECKOUT } from "../testing/source.ts";
import { longerTimeoutsOnBun } from "../testing/run_script.ts";
import { sleep, tempDir } from "../testing/temp.ts";

await longerTimeoutsOnBun();

const TOKEN = "page-token";
const skip = missingChromium;

/** Builds dist/ as `npm run build` does, into a temp folder (the checkout's dist/ is left alone). */
function buildDist(): string {
  const out = tempDir("browser-dist");
  const tsc = join(CHECKOUT, "node_modules", ".bin", "tsc");
  const result = spawnSync(tsc, ["-p", join(CHECKOUT, "tsconfig.json"), "--outDir", out], { encoding: "utf8" });
  if (result.status !== 0) throw new Error(`tsc failed: ${result.stdout}${result.stderr}`);
  return out;
}

/** Serves `dist` under /dist/ and `pages` at their names, on a port of its own (another origin than the server's). */
async function pageServer(dist: string, pages: Record<string, string>): Promise<{ origin: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (Object.hasOwn(pages, path)) {
      res.writeHead(200, { "content-type": "text/html" }).end(pages[path]);
      return;
    }
    const file = normalize(join(dist, path.replace(/^\/dist\//, "")));
    if (!path.startsWith("/dist/") || !file.startsWith(dist)) return void res.writeHead(404).end();
    try {
      res.writeHead(200, { "content-type": "text/javascript" }).end(readFileSync(file));
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const origin = `http://localhost:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    close: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}

/** A page that logs `steps` metrics to `prefix`, and completes the run only if told to. */
function page(dashUrl: string, prefix: string, steps: number, complete: boolean): string {
  return `<!doctype html><title>ml-dash</title><link rel="icon" href="data:,"><script type="module">
    import { Experiment } from "/dist/mod.js";
    const exp = new Experiment({ prefix: ${JSON.stringify(prefix)}, dashUrl: ${JSON.stringify(dashUrl)}, token: ${JSON.stringify(TOKEN)}, flushInterval: 3600 });
    await exp.run.start();
    for (let step = 0; step < ${steps}; step++) exp.metrics("train").log({ loss: 1 / (step + 1), step });
    ${complete ? "await exp.run.complete();" : ""}
    window.logged = true;
  </script>`;
}

let dist: string;
let root: string;
let server: DashServer;
let pages: Awaited<ReturnType<typeof pageServer>>;
let browser: Browser;

before(async () => {
  if (skip) return;
  dist = buildDist();
  // The pages' origin is only known once their server listens; the dash server is told it next.
  const html: Record<string, string> = {};
  pages = await pageServer(dist, html);
  root = tempDir("browser");
  server = await serve({ root, port: 0, quiet: true, token: TOKEN, corsOrigins: [pages.origin] });
  html["/complete.html"] = page(server.url, "alice/browser/complete", 5, true);
  html["/left.html"] = page(server.url, "alice/browser/left", 7, false);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS] });
});

after(async () => {
  await browser?.close();
  await server?.close();
  await pages?.close();
  for (const dir of [dist, root]) if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Opens `path` and collects what the console and the page report as errors, and failed requests. */
async function openPage(path: string) {
  const tab = await browser.newPage();
  const errors: string[] = [];
  tab.on("console", (message) => void (message.type() === "error" && errors.push(message.text())));
  tab.on("pageerror", (error) => void errors.push(String(error)));
  tab.on("requestfailed", (request) => void errors.push(`${request.url()}: ${request.failure()?.errorText}`));
  await tab.goto(pages.origin + path);
  await tab.waitForFunction(() => (window as unknown as { logged?: boolean }).logged === true);
  return { tab, errors };
}

test("a page loads mod.js from dist/ and logs a run to a server of another origin that allows it, with no console error", { skip, timeout: 120_000 }, async () => {
  const { tab, errors } = await openPage("/complete.html");
  await tab.close();
  deepEqual(errors, []);
  const experiment = await waitForExperiment(server.url, "alice/browser/complete", TOKEN);
  equal(experiment.status.status, "COMPLETED");
  equal(experiment.summary["train/loss"].count, 5);
});

test("a page left with records still buffered (pagehide) sends them with keepalive requests", { skip, timeout: 120_000 }, async () => {
  const { tab, errors } = await openPage("/left.html");
  await tab.goto("about:blank");
  await tab.close();
  deepEqual(errors, []);
  equal(await metricCount("alice/browser/left", "train/loss"), 7);
});

/** How many values of `key` the server holds, once it holds any (keepalive requests land after the page is gone). */
async function metricCount(prefix: string, key: string): Promise<number | undefined> {
  for (let i = 0; i < 300; i++) {
    const response = await fetch(`${server.url}/api/v1/experiment?prefix=${encodeURIComponent(prefix)}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    if (response.ok) {
      const count = ((await response.json()) as { summary?: Record<string, { count: number }> }).summary?.[key]?.count;
      if (count !== undefined) return count;
    } else {
      await response.body?.cancel();
    }
    await sleep(100);
  }
  return undefined;
}
