/// <reference lib="dom" />
// The charts of several runs in a real headless Chromium over the real server:
// runs grouped by a param (one line per group, its mean with a min–max band,
// the group's size in the legend); a legend click hiding a run on every chart;
// the tooltip's numbers and runs that ended before the hovered step; the wall
// time axis over less than a second; chart panels (another key on a chart, a
// y range, clipped outliers, pinned charts) remembered for the folder.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Page } from "playwright-core";
import { chart, dashboardOverFixture, selectRuns, WAIT } from "../testing/dashboard_browser.ts";
import { missingChromium } from "../testing/chromium.ts";
import { Experiment } from "../mod.ts";
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
  const dash = dashboardOverFixture({}, async (root) => {
    // A gradient norm near 1 with one spike of 1000 at step 25.
    await new Experiment({ prefix: "carol/grad/spiky", dashRoot: root }).run((exp) => {
      for (let step = 0; step < 50; step++) exp.metrics("train").log({ step, grad_norm: step === 25 ? 1000 : 1 + (step % 5) / 10 });
    });
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

  it("hides a run on every chart from a click on its legend entry", async () => {
    const page = await dash.open();
    await selectRuns(page, "alice/mnist/baseline", "alice/mnist/wide");
    await page.waitForSelector(`${chart("val/loss")}[data-series-count="2"]`, WAIT);
    const entry = (key: string): string => `${chart(key)} .legend-item[data-series="alice/mnist/wide"]`;
    await page.click(entry("train/loss"));
    for (const key of ["train/loss", "train/acc", "val/loss", "val/acc"]) {
      await page.waitForSelector(`${entry(key)}.off[aria-pressed="false"]`, WAIT);
    }
    await page.click(entry("val/acc"));
    for (const key of ["train/loss", "val/loss"]) await page.waitForSelector(`${entry(key)}:not(.off)`, WAIT);
  });

  it("shows tooltip values with the axis' precision, and a run that ended before the hovered step as ended", async () => {
    const page = await dash.open();
    await selectRuns(page, "alice/mnist/baseline", "alice/mnist/sweep/lr-0.1");
    await page.waitForSelector(`${chart("train/loss")}[data-series-count="2"]`, WAIT);
    const step = await hover(page, "train/loss", 0.85);
    assert.ok(step > 30, `a step after lr-0.1 ended: ${step}`);
    const tip = `${chart("train/loss")} .chart-tooltip`;
    const ended = `${tip} .tip-row[data-series="alice/mnist/sweep/lr-0.1"]`;
    assert.equal(await page.getAttribute(ended, "class"), "tip-row outside");
    assert.equal(await page.textContent(`${ended} .tip-outside`), "last at step 29");
    const baseline = await page.textContent(`${tip} .tip-row[data-series="alice/mnist/baseline"] .tip-value`);
    assert.equal(baseline, String(Number(mnistLoss(128, step).toPrecision(5))));
    assert.ok(baseline!.replace(/^0\.0*|\./g, "").length <= 5, `at most five significant digits: ${baseline}`);
  });

  it("labels the wall time axis of a run that logged within a second", async () => {
    const page = await dash.open("#run=alice/mnist/baseline&x=_ts");
    await page.waitForSelector(`${chart("train/loss")}[data-series-count="1"]`, WAIT);
    await page.waitForFunction((selector) => (document.querySelector(selector) as HTMLElement | null)?.dataset.xTicks, `${chart("train/loss")} canvas`, WAIT);
    const span = await page.$eval(`${chart("train/loss")} canvas`, (c) => (c as HTMLElement).dataset.xTicks!);
    const labels = span.split(" | ");
    assert.ok(labels.length >= 2 && new Set(labels).size === labels.length, `distinct tick labels: ${span}`);
  });

  /** The y tick labels drawn on a chart, as numbers. */
  const yTicks = async (page: Page, key: string): Promise<number[]> => {
    const text = await page.$eval(`${chart(key)} canvas`, (c) => (c as HTMLElement).dataset.yTicks ?? "");
    return text.split(" | ").filter(Boolean).map(Number);
  };

  it("draws another key on a chart, remembered for the folder", async () => {
    const page = await dash.open("#run=alice/mnist/baseline");
    await page.waitForSelector(`${chart("train/loss")}[data-series-count="1"]`, WAIT);
    await page.selectOption(`${chart("train/loss")} [data-testid="add-key"]`, "val/loss");
    await page.waitForSelector(`${chart("train/loss")}[data-series-count="2"]`, WAIT);
    const legend = await page.$$eval(`${chart("train/loss")} .legend-item`, (nodes) => nodes.map((n) => n.textContent));
    assert.deepEqual(legend, ["baseline · train/loss", "baseline · val/loss"]);
    assert.ok(await page.$(chart("val/loss")), "val/loss keeps its own chart");
    await page.reload();
    await page.waitForSelector(`${chart("train/loss")}[data-series-count="2"]`, WAIT);
  });

  it("sets a chart's y range, and clips a spike that flattens the rest", async () => {
    const page = await dash.open("#run=carol/grad/spiky");
    await page.waitForSelector(`${chart("train/grad_norm")}[data-series-count="1"]`, WAIT);
    await page.waitForFunction((s) => (document.querySelector(s) as HTMLElement | null)?.dataset.yTicks, `${chart("train/grad_norm")} canvas`, WAIT);
    assert.ok(Math.max(...await yTicks(page, "train/grad_norm")) >= 500, "the spike sets the scale");
    await page.click(`${chart("train/grad_norm")} [data-testid="y-range"] summary`);
    await page.check(`${chart("train/grad_norm")} [data-testid="y-range"] input[name="clip"]`);
    await page.waitForFunction(async (s) => {
      const ticks = ((document.querySelector(s) as HTMLElement).dataset.yTicks ?? "").split(" | ").map(Number);
      return Math.max(...ticks) < 5;
    }, `${chart("train/grad_norm")} canvas`, WAIT);
    await page.uncheck(`${chart("train/grad_norm")} [data-testid="y-range"] input[name="clip"]`);
    await page.fill(`${chart("train/grad_norm")} [data-testid="y-range"] input[name="max"]`, "2");
    await page.press(`${chart("train/grad_norm")} [data-testid="y-range"] input[name="max"]`, "Enter");
    await page.waitForFunction((s) => {
      const ticks = ((document.querySelector(s) as HTMLElement).dataset.yTicks ?? "").split(" | ").map(Number);
      return Math.max(...ticks) <= 2;
    }, `${chart("train/grad_norm")} canvas`, WAIT);
    await page.reload();
    await page.waitForSelector(`${chart("train/grad_norm")}[data-series-count="1"]`, WAIT);
    await page.waitForFunction((s) => {
      const ticks = ((document.querySelector(s) as HTMLElement).dataset.yTicks ?? "").split(" | ").filter(Boolean).map(Number);
      return ticks.length > 0 && Math.max(...ticks) <= 2;
    }, `${chart("train/grad_norm")} canvas`, WAIT);
  });

  it("pins a chart to the top, remembered for the folder", async () => {
    const page = await dash.open("#run=alice/mnist/baseline");
    await page.waitForSelector(`${chart("val/acc")}[data-series-count="1"]`, WAIT);
    await page.click(`${chart("val/acc")} [data-testid="pin"]`);
    await page.waitForSelector(`[data-testid="pinned-group"] ${chart("val/acc")}`, WAIT);
    const first = await page.$eval('[data-testid="charts"] [data-testid="chart"]', (c) => (c as HTMLElement).dataset.key);
    assert.equal(first, "val/acc");
    await page.reload();
    await page.waitForSelector(`[data-testid="pinned-group"] ${chart("val/acc")} [data-testid="pin"][aria-pressed="true"]`, WAIT);
    // Another folder's charts are arranged on their own.
    await page.evaluate(() => (location.hash = "#run=bob/cifar/resnet/live"));
    await page.waitForSelector(`${chart("train/loss")}[data-series-count="1"]`, WAIT);
    assert.equal(await page.$('[data-testid="pinned-group"]'), null);
  });
});
