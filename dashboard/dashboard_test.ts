/// <reference lib="dom" />
// The dashboard in a real headless Chromium (Debian's /usr/bin/chromium, driven
// by playwright-core), served by the real server.ts on experiments that the
// library writes into a temp dir. Runs on Deno, Bun and Node alike.
//
// Skipped only when /usr/bin/chromium is missing and CI is not set: CI installs
// Chromium (.ci/run), so there the tests always run.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { Experiment } from "../mod.ts";
import { type DashServer, serve } from "../server.ts";
import { longerTimeoutsOnBun } from "../testing/run_script.ts";
import { CHROMIUM, CHROMIUM_ARGS, missingChromium } from "../testing/chromium.ts";
import {
  type DashboardFixture,
  FIXTURE_RUNS,
  TRAIN_STEPS,
  VAL_EPOCHS,
  writeDashboardFixture,
} from "../testing/fixtures/dashboard_fixture.ts";

// How long a wait may last before the test fails (never a speed requirement).
const WAIT = { timeout: 30_000 };

const skip = missingChromium;

await longerTimeoutsOnBun();

const row = (prefix: string): string => `[data-testid="experiment-row"][data-prefix="${prefix}"]`;
const chart = (key: string): string => `[data-testid="chart"][data-key="${key}"]`;

describe("dashboard", { skip }, () => {
  let root: string;
  let fixture: DashboardFixture;
  let server: DashServer;
  let browser: Browser;
  let context: BrowserContext;

  before(async () => {
    root = mkdtempSync(join(tmpdir(), "ml-dash-dashboard-"));
    fixture = await writeDashboardFixture(root);
    server = await serve({ root, port: 0, hostname: "127.0.0.1", quiet: true });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS] });
  });

  after(async () => {
    await context?.close();
    await browser?.close();
    await server?.close();
    await fixture?.close().catch(() => {});
    if (root) rmSync(root, { recursive: true, force: true });
  });

  /** A fresh page on the dashboard (a new context: no stored theme or hash). */
  async function open(hash = ""): Promise<Page> {
    await context?.close();
    context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(error.message));
    await page.goto(`${server.url}/${hash}`);
    await page.waitForSelector(row("alice/mnist/baseline"), WAIT);
    assert.deepEqual(errors, [], "the page raised no error while loading");
    return page;
  }

  /** Opens one run, then adds the others to the comparison with their checkboxes. */
  async function select(page: Page, ...prefixes: string[]): Promise<void> {
    await page.click(`${row(prefixes[0])} .tree-name`);
    for (const prefix of prefixes.slice(1)) await page.click(`${row(prefix)} .select-box`);
    for (const prefix of prefixes) await page.waitForSelector(`${row(prefix)}[data-selected="true"]`, WAIT);
  }

  it("lists the fixture's experiments with their statuses", async () => {
    const page = await open();
    const rows = await page.$$eval('[data-testid="experiment-row"]', (nodes) =>
      Object.fromEntries(nodes.map((n) => {
        const el = n as HTMLElement;
        return [el.dataset.prefix, { status: el.dataset.status, stale: el.dataset.stale === "true" }];
      })));
    assert.deepEqual(rows, FIXTURE_RUNS);
    // The stale run says so; the status filter narrows the list.
    assert.match(await page.textContent(row("bob/cifar/crashed")) ?? "", /stale/i);
    await page.click('[data-testid="status-filter"] [data-status="FAILED"]');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="experiment-row"]').length === 1, null, WAIT);
    assert.ok(await page.$(row("alice/mnist/sweep/lr-0.1")));
    await page.fill('[data-testid="search"]', "nothing-matches-this");
    await page.waitForSelector('[data-testid="experiment-list"] .empty', WAIT);
  });

  it("shows a chart per metric key, grouped by prefix, with a series per selected run", async () => {
    const page = await open();
    await select(page, "alice/mnist/baseline", "alice/mnist/wide", "alice/mnist/sweep/lr-0.1");
    // lr-0.1 failed before validation: val/* charts have two series, train/* three.
    const expected: Record<string, string> = {
      "train/loss": "3",
      "train/acc": "3",
      "train/epoch": "3",
      "val/loss": "2",
      "val/acc": "2",
      "val/epoch": "2",
    };
    for (const [key, count] of Object.entries(expected)) {
      await page.waitForSelector(`${chart(key)}[data-series-count="${count}"]`, WAIT);
    }
    const charts = await page.$$eval('[data-testid="chart"]', (nodes) => nodes.map((n) => (n as HTMLElement).dataset.key).sort());
    assert.deepEqual(charts, Object.keys(expected).sort());
    const groups = await page.$$eval('[data-testid="chart-group"]', (nodes) => nodes.map((n) => (n as HTMLElement).dataset.group));
    assert.deepEqual(groups, ["train", "val"]);
    assert.equal(await page.getAttribute(chart("val/loss"), "data-point-count"), String(2 * VAL_EPOCHS));
    const legend = await page.$$eval(`${chart("train/loss")} .legend-item`, (nodes) => nodes.map((n) => n.textContent));
    assert.deepEqual(legend, ["baseline", "wide", "lr-0.1"]);
    // The selection is in the URL, so the view can be shared.
    const hash = new URLSearchParams((await page.evaluate(() => location.hash)).slice(1));
    assert.deepEqual(hash.getAll("run"), ["alice/mnist/baseline", "alice/mnist/wide", "alice/mnist/sweep/lr-0.1"]);
  });

  it("shows the exact values under the cursor", async () => {
    const page = await open("#run=alice/mnist/baseline");
    await page.waitForSelector(`${chart("train/loss")}[data-series-count="1"]`, WAIT);
    const canvas = await page.$(`${chart("train/loss")} canvas`);
    const box = (await canvas!.boundingBox())!;
    await page.mouse.move(box.x + box.width * 0.6, box.y + box.height / 2);
    const tooltip = `${chart("train/loss")} .chart-tooltip`;
    await page.waitForSelector(`${tooltip}:not([hidden])`, WAIT);
    const head = await page.textContent(`${tooltip} .tip-head`);
    const step = Number(/step (\d+)/.exec(head ?? "")?.[1]);
    assert.ok(step > 0 && step < TRAIN_STEPS, `a step in the tooltip: ${head}`);
    // The fixture's formula, as the baseline run (width 128) logged it.
    const loss = 2.3 * Math.exp(-step / 16) + 0.05;
    // Shown with the axis' five significant digits; the exact value is its title.
    assert.equal(await page.textContent(`${tooltip} .tip-value`), String(Number(loss.toPrecision(5))));
    assert.equal(await page.getAttribute(`${tooltip} .tip-value`, "title"), String(Number(loss.toPrecision(12))));
  });

  it("shows a point logged while the page is open without a reload, and a new experiment", async () => {
    const prefix = "bob/cifar/resnet/live";
    const page = await open(`#run=${prefix}`);
    await page.waitForSelector(`${chart("train/loss")}[data-point-count="${fixture.liveSteps}"]`, WAIT);
    await page.evaluate(() => ((window as unknown as { marker: boolean }).marker = true));

    fixture.live.log({ "train/loss": 0.125 }, fixture.liveSteps);
    await fixture.live.flush();
    await page.waitForSelector(`${chart("train/loss")}[data-point-count="${fixture.liveSteps + 1}"]`, WAIT);

    const exp = new Experiment({ prefix: "carol/live/new-run", dashRoot: root, tags: ["new"] });
    await exp.run.start();
    exp.metrics("train").log({ loss: 1 });
    await exp.flush();
    await page.waitForSelector(`${row("carol/live/new-run")}[data-status="RUNNING"]`, WAIT);
    await exp.run.complete();
    await page.waitForSelector(`${row("carol/live/new-run")}[data-status="COMPLETED"]`, WAIT);
    assert.equal(await page.evaluate(() => (window as unknown as { marker?: boolean }).marker), true, "the page was not reloaded");
  });

  it("highlights the parameters that differ between the selected runs", async () => {
    const page = await open();
    await select(page, "alice/mnist/baseline", "alice/mnist/wide");
    await page.click('[data-testid="tab-params"]');
    await page.waitForSelector('[data-testid="params-table"]', WAIT);
    const diff = (key: string): Promise<number> =>
      page.$$eval(`[data-testid="params-table"] tr[data-param="${key}"] td.param-diff`, (n) => n.length);
    assert.equal(await diff("model.width"), 2);
    assert.equal(await diff("lr"), 0);
    assert.deepEqual(
      await page.$$eval(`tr[data-param="model.width"] td`, (n) => n.map((c) => c.textContent)),
      ["128", "256"],
    );
    await page.check('[data-testid="only-diff"]');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="params-table"] tbody tr').length === 1, null, WAIT);
  });

  it("filters logs by level and links saved files for download", async () => {
    const page = await open("#run=alice/mnist/baseline&tab=logs");
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="log-line"]').length === 4, null, WAIT);
    await page.selectOption('[data-testid="log-level"]', "warn");
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="log-line"]').length === 1, null, WAIT);
    assert.equal(await page.getAttribute('[data-testid="log-line"]', "data-level"), "warn");
    assert.match(await page.textContent('[data-testid="log-line"]') ?? "", /validation accuracy plateaued/);

    await page.click('[data-testid="tab-files"]');
    await page.waitForSelector('[data-testid="file-row"][data-path="notes.txt"]', WAIT);
    const href = await page.getAttribute('[data-testid="file-row"][data-path="notes.txt"] [data-testid="download"]', "href");
    const response = await page.request.get(href!);
    assert.equal(await response.text(), "notes of alice/mnist/baseline\n");
  });

  it("switches the x axis to a field, zooms on x, and keeps the view in the URL", async () => {
    const page = await open("#run=alice/mnist/baseline");
    await page.waitForSelector(`${chart("train/loss")}[data-point-count="${TRAIN_STEPS}"]`, WAIT);
    await page.selectOption('[data-testid="x-axis"]', "epoch");
    // The x field itself is no chart of its own when it is the x axis.
    await page.waitForSelector(chart("train/epoch"), { state: "detached", ...WAIT });
    assert.match(await page.evaluate(() => location.hash), /x=epoch/);

    // Drag across the middle of the plot: the chart refetches the visible range only.
    await page.selectOption('[data-testid="x-axis"]', "step");
    await page.waitForSelector(`${chart("train/loss")}[data-point-count="${TRAIN_STEPS}"]:not([data-loading])`, WAIT);
    const box = (await (await page.$(`${chart("train/loss")} canvas`))!.boundingBox())!;
    await page.mouse.move(box.x + box.width * 0.4, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.6, box.y + box.height / 2, { steps: 5 });
    await page.mouse.up();
    await page.waitForFunction(([selector, total]) => {
      const card = document.querySelector(selector) as HTMLElement | null;
      const n = Number(card?.dataset.pointCount);
      return !card?.dataset.loading && n > 0 && n < Number(total);
    }, [chart("train/loss"), String(TRAIN_STEPS)], WAIT);
    await page.dblclick(`${chart("train/loss")} canvas`);
    await page.waitForSelector(`${chart("train/loss")}[data-point-count="${TRAIN_STEPS}"]`, WAIT);

    // Reopening the URL restores the selection and the x axis.
    await page.selectOption('[data-testid="x-axis"]', "epoch");
    const url = page.url();
    const again = await open(new URL(url).hash);
    await again.waitForSelector(`${row("alice/mnist/baseline")}[data-selected="true"]`, WAIT);
    assert.equal(await again.inputValue('[data-testid="x-axis"]'), "epoch");
  });

  it("has a light and a dark theme", async () => {
    const page = await open();
    const background = (): Promise<string> => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    await page.evaluate(() => {
      document.documentElement.dataset.theme = "light";
    });
    const light = await background();
    await page.evaluate(() => {
      document.documentElement.dataset.theme = "dark";
    });
    const dark = await background();
    assert.notEqual(light, dark);
    // The toggle cycles auto → light → dark and remembers the choice.
    await page.click("#theme");
    assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), "light");
    await page.click("#theme");
    assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), "dark");
    await page.reload();
    assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), "dark");
  });
});
