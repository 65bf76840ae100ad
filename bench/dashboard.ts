/**
 * The dashboard in a real headless Chromium (playwright-core, as the tests
 * drive it) over the real server, timed from the page's side:
 * - the first chart of a run of N points (1,000,000) on a server started cold,
 *   and the bytes of the series answer; a run of 1,000 points as the baseline;
 * - switching the charts from one run to five (a switch to another single run as the baseline);
 * - the runs table of R runs (10,000) from opening the tab to its rows, and
 *   the server's GET runs alone; the table of R/10 runs as the baseline;
 * - the page's JavaScript heap (Chromium's Performance.getMetrics) after each.
 * Figures are wall-clock times of one machine, shared and busy: compare the
 * ratios within a run.
 *
 * Run: `deno run -A bench/dashboard.ts --points=1000000 --runs=10000` (or bun).
 *
 * @module
 */
import { type Browser, chromium, type Page } from "playwright-core";
import { Experiment } from "../mod.ts";
import { type DashServer, serve } from "../server.ts";
import { CHROMIUM, CHROMIUM_ARGS } from "../testing/chromium.ts";
import { sweepRunName, writeSweep } from "../testing/fixtures/sweep_fixture.ts";
import { argInt, emit, fmt, runtimeName, tempDir } from "./_common.ts";

const POINTS = argInt("points", 1_000_000);
const RUNS = argInt("runs", 10_000);
const WAIT = { timeout: 600_000 };
const runtime = runtimeName();
const results: Record<string, unknown>[] = [];

/** Writes one run of `points` train/loss points with the library. */
async function writeLongRun(root: string, prefix: string, points: number): Promise<void> {
  const exp = new Experiment({ prefix, dashRoot: root });
  await exp.run.start();
  const train = exp.metrics("train");
  for (let step = 0; step < points; step++) {
    train.log({ step, loss: 1 / (1 + step / 1000) + (step % 97) / 1e4 });
    if (step % 100_000 === 99_999) await exp.flush();
  }
  await exp.run.complete();
}

/** The JS heap the page uses, in MB. */
async function heapMb(page: Page): Promise<number> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Performance.enable");
  const { metrics } = await cdp.send("Performance.getMetrics");
  await cdp.detach();
  return (metrics.find((m: { name: string }) => m.name === "JSHeapUsedSize")?.value ?? 0) / 1e6;
}

/** A page on the server, its series answers' bytes counted. */
async function openPage(browser: Browser, server: DashServer, hash: string): Promise<{ page: Page; seriesBytes: number[]; ms: number; close: () => Promise<void> }> {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  const seriesBytes: number[] = [];
  page.on("response", async (res) => {
    if (new URL(res.url()).pathname === "/api/v1/series") seriesBytes.push((await res.body()).byteLength);
  });
  const t0 = performance.now();
  await page.goto(`${server.url}/${hash}`);
  return { page, seriesBytes, ms: t0, close: () => context.close() };
}

/** Milliseconds from `start` until `selector` is in the page. */
async function until(page: Page, start: number, selector: string): Promise<number> {
  await page.waitForSelector(selector, { state: "attached", ...WAIT });
  return performance.now() - start;
}

const browser = await chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS] });
try {
  // ── First chart of a long run, cold server ──
  const root = tempDir("dashboard");
  console.log(`Writing a run of ${fmt(POINTS)} points and one of 1,000 ...`);
  await writeLongRun(root, "bench/long/run", POINTS);
  await writeLongRun(root, "bench/short/run", 1_000);
  for (const [name, prefix, points] of [["short", "bench/short/run", 1_000], ["long", "bench/long/run", POINTS]] as const) {
    const server = await serve({ root, port: 0, hostname: "127.0.0.1", quiet: true });
    const { page, seriesBytes, ms, close } = await openPage(browser, server, `#run=${prefix}`);
    const first = await until(page, ms, `[data-testid="chart"][data-key="train/loss"][data-point-count="${points}"]:not([data-loading])`);
    const heap = await heapMb(page);
    const bytes = Math.max(...seriesBytes);
    console.log(`  first chart of ${fmt(points)} points, cold server: ${fmt(first)} ms, series answer ${fmt(bytes / 1024, 1)} KB, page heap ${fmt(heap, 1)} MB`);
    results.push({ runtime, figure: `dashboard first chart, ${name} run (${fmt(points)} points), cold server`, value: first / 1000, unit: "s", note: `series answer ${fmt(bytes / 1024, 1)} KB` });
    results.push({ runtime, figure: `dashboard page heap, ${name} run`, value: heap, unit: "MB" });
    // Zoom: drag across the middle; the chart refetches the visible range.
    const box = (await (await page.$('[data-testid="chart"][data-key="train/loss"] canvas'))!.boundingBox())!;
    await page.mouse.move(box.x + box.width * 0.4, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.45, box.y + box.height / 2, { steps: 3 });
    const zoomStart = performance.now();
    await page.mouse.up();
    await page.waitForFunction((total) => {
      const card = document.querySelector('[data-testid="chart"][data-key="train/loss"]') as HTMLElement;
      return !card.dataset.loading && Number(card.dataset.pointCount) < total;
    }, points, WAIT);
    const zoom = performance.now() - zoomStart;
    console.log(`  zoom into ${fmt(points)} points: ${fmt(zoom)} ms`);
    results.push({ runtime, figure: `dashboard zoom, ${name} run`, value: zoom / 1000, unit: "s" });
    await close();
    await server.close();
  }

  // ── One run to five, and the runs table ──
  const sweepRoot = tempDir("dashboard-sweep");
  console.log(`Writing a sweep of ${fmt(RUNS)} runs ...`);
  const t0 = performance.now();
  await writeSweep(sweepRoot, RUNS);
  const small = Math.max(10, Math.round(RUNS / 10));
  await writeSweep(sweepRoot, small, "alice/small");
  console.log(`  written in ${fmt((performance.now() - t0) / 1000, 1)} s`);
  const server = await serve({ root: sweepRoot, port: 0, hostname: "127.0.0.1", quiet: true });
  const run = (i: number): string => `alice/small/sweep/${sweepRunName(i, small)}`;
  {
    const { page, ms, close } = await openPage(browser, server, `#run=${run(0)}`);
    await until(page, ms, '[data-testid="chart"][data-key="val/acc"][data-series-count="1"]');
    const switchTo = async (prefixes: string[]): Promise<number> => {
      const start = performance.now();
      await page.evaluate((hash) => (location.hash = hash), prefixes.map((p) => `run=${p}`).join("&"));
      return await until(page, start, `[data-testid="chart"][data-key="val/acc"][data-series-count="${prefixes.length}"]:not([data-loading])`);
    };
    await switchTo([run(6)]); // warms the page and the server before the timed switches
    const one = await switchTo([run(1)]);
    const five = await switchTo([1, 2, 3, 4, 5].map(run));
    const heap = await heapMb(page);
    console.log(`  switch to another run: ${fmt(one)} ms; from one run to five: ${fmt(five)} ms (${fmt(five / one, 2)}×); page heap ${fmt(heap, 1)} MB`);
    results.push({ runtime, figure: "dashboard switch from one run to five", value: five / 1000, baseline: one / 1000, unit: "s", note: "baseline: a switch to another single run" });
    await close();
  }
  for (const [folder, count] of [[`alice/small`, small], [`alice/big`, RUNS]] as const) {
    const apiStart = performance.now();
    const res = await fetch(`${server.url}/api/v1/runs?prefix=${folder}`);
    const bytes = (await res.arrayBuffer()).byteLength;
    const api = performance.now() - apiStart;
    const { page, ms, close } = await openPage(browser, server, `#tab=runs&folder=${encodeURIComponent(folder)}`);
    const table = await until(page, ms, `[data-testid="runs-table"][data-total="${count}"] [data-testid="run-row"]`);
    const rows = await page.$$eval('[data-testid="run-row"]', (r) => r.length);
    const sortStart = performance.now();
    await page.click('[data-testid="runs-table"] th[data-column="metrics.val/acc.last"] button');
    await page.waitForSelector('[data-testid="runs-table"] th[data-column="metrics.val/acc.last"][aria-sort="ascending"]', WAIT);
    const sort = performance.now() - sortStart;
    const heap = await heapMb(page);
    console.log(`  runs table of ${fmt(count)} runs: ${fmt(table)} ms to its rows (GET runs alone ${fmt(api)} ms, ${fmt(bytes / 1e6, 1)} MB), ${rows} rows in the page, sorted in ${fmt(sort)} ms, page heap ${fmt(heap, 1)} MB`);
    results.push({ runtime, figure: `dashboard runs table of ${fmt(count)} runs`, value: table / 1000, unit: "s", note: `GET runs ${fmt(api)} ms, ${fmt(bytes / 1e6, 1)} MB; ${rows} rows in the page; sort ${fmt(sort)} ms` });
    results.push({ runtime, figure: `dashboard page heap, runs table of ${fmt(count)} runs`, value: heap, unit: "MB" });
    await close();
  }
  await server.close();
} finally {
  await browser.close();
}
emit(results);
