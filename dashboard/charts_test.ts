/// <reference lib="dom" />
// The charts of several runs in a real headless Chromium over the real server:
// runs grouped by a param (one line per group, its mean with a min–max band,
// the group's size in the legend).

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Page } from "playwright-core";
import { chart, DashboardBrowser, selectRuns, WAIT } from "../testing/dashboard_browser.ts";
import { missingChromium } from "../testing/chromium.ts";
import { type DashboardFixture, writeDashboardFixture } from "../testing/fixtures/dashboard_fixture.ts";
import { longerTimeoutsOnBun } from "../testing/run_script.ts";

await longerTimeoutsOnBun();

/** train/loss of a finished mnist run of the fixture at a step. */
const mnistLoss = (width: number, step: number): number => 2.3 * Math.exp(-step / (width / 8)) + 0.05;

/** Hovers a chart's plot at a fraction of its width and answers the tooltip's step. */
async function hover(page: Page, key: string, fraction: number): Promise<number> {
  const box = (await (await page.$(`${chart(key)} canvas`))!.boundingBox())!;
  await page.mouse.move(box.x + box.width * fraction, box.y + box.height / 2);
  const tooltip = `${chart(key)} .chart-tooltip`;
  await page.waitForSelector(`${tooltip}:not([hidden])`, WAIT);
  const head = await page.textContent(`${tooltip} .tip-head`);
  return Number(/step (\d+)/.exec(head ?? "")?.[1]);
}

describe("dashboard charts", { skip: missingChromium }, () => {
  const dash = new DashboardBrowser();
  let fixture: DashboardFixture;

  before(async () => {
    fixture = await writeDashboardFixture(dash.root);
    await dash.start();
  });

  after(async () => {
    await fixture?.close().catch(() => {});
    await dash.close();
  });

  it("groups runs by a param: one line per group, its mean with a min-max band, its size in the legend", async () => {
    const page = await dash.open();
    await selectRuns(page, "alice/mnist/baseline", "alice/mnist/wide", "alice/mnist/sweep/lr-0.1", "alice/mnist/sweep/lr-0.01");
    await page.waitForSelector(`${chart("train/loss")}[data-series-count="4"]`, WAIT);
    await page.selectOption('[data-testid="group-by"]', "lr");
    await page.waitForSelector(`${chart("train/loss")}[data-series-count="3"]`, WAIT);
    const legend = await page.$$eval(`${chart("train/loss")} .legend-item`, (nodes) => nodes.map((n) => n.textContent));
    assert.deepEqual(legend, ["lr=0.001 (2)", "lr=0.1 (1)", "lr=0.01 (1)"]);
    assert.match(await page.evaluate(() => location.hash), /group=lr/);

    // The lr=0.001 group is baseline (width 128) and wide (width 256): their mean, min and max.
    const step = await hover(page, "train/loss", 0.8);
    const row = `${chart("train/loss")} .tip-row[data-series="group:0.001"]`;
    const a = mnistLoss(128, step);
    const b = mnistLoss(256, step);
    const shown = Number(await page.textContent(`${row} .tip-value`));
    assert.ok(Math.abs(shown - (a + b) / 2) < 1e-3 * Math.abs(shown), `the mean at step ${step}: ${shown}, expected ${(a + b) / 2}`);
    const [lo, hi] = (await page.textContent(`${row} .tip-range`))!.split(" … ").map(Number);
    assert.ok(Math.abs(lo - Math.min(a, b)) < 1e-3 * lo && Math.abs(hi - Math.max(a, b)) < 1e-3 * hi, `the band: ${lo} … ${hi}`);

    // No grouping again: a line per run.
    await page.selectOption('[data-testid="group-by"]', "");
    await page.waitForSelector(`${chart("train/loss")}[data-series-count="4"]`, WAIT);
  });
});
