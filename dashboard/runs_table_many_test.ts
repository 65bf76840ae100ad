/// <reference lib="dom" />
// A sweep of thousands of runs in the runs table (real server, real headless
// Chromium): only the rows in view are in the page, scrolling reaches the
// last run, and sorting orders all of them. (bench/dashboard.ts times the
// table of 10,000 runs; this test holds 2,000, which the JSONL writer puts on
// disk in seconds.)

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DashboardBrowser, WAIT } from "../testing/dashboard_browser.ts";
import { missingChromium } from "../testing/chromium.ts";
import { sweepAccuracy, sweepRunName, writeSweep } from "../testing/fixtures/sweep_fixture.ts";
import { longerTimeoutsOnBun } from "../testing/run_script.ts";

await longerTimeoutsOnBun();

const COUNT = 2000;
const TABLE = '[data-testid="runs-table"]';

describe("dashboard runs table of a large sweep", { skip: missingChromium }, () => {
  const dash = new DashboardBrowser();

  before(async () => {
    await writeSweep(dash.root, COUNT);
    await dash.start();
  });

  after(() => dash.close());

  it("puts only the rows in view in the page, scrolls to the last run and sorts them all", async () => {
    const page = await dash.open("#tab=runs");
    await page.waitForSelector(`${TABLE}[data-total="${COUNT}"]`, WAIT);
    const rendered = (): Promise<number> => page.$$eval(`${TABLE} tr[data-testid="run-row"]`, (rows) => rows.length);
    assert.ok(await rendered() < 100, `a window of rows, not all ${COUNT}: ${await rendered()}`);
    await page.click(`${TABLE} th[data-column="name"] button`);
    await page.$eval('[data-testid="runs-scroll"]', (box) => box.scrollTo(0, box.scrollHeight));
    const last = `alice/big/sweep/${sweepRunName(COUNT - 1, COUNT)}`;
    await page.waitForSelector(`${TABLE} tr[data-prefix="${last}"]`, WAIT);
    assert.ok(await rendered() < 100);
    assert.ok(await page.isVisible(`${TABLE} tr[data-prefix="${last}"]`), "the last run is in view");
    // The tree, too, shows a page of the folder's runs and the rest on demand.
    const treeRows = await page.$$eval('[data-testid="experiment-row"]', (rows) => rows.length);
    assert.ok(treeRows <= 200, `a page of the folder in the tree: ${treeRows}`);
    assert.match(await page.textContent('[data-testid="tree-more"]') ?? "", /Show 1,000 more of 1,800/);
    await page.click('[data-testid="tree-more"] button');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="experiment-row"]').length === 1200, null, WAIT);

    // Sorted by val/acc, highest first: the top row is the best run of all.
    await page.$eval('[data-testid="runs-scroll"]', (box) => box.scrollTo(0, 0));
    await page.click(`${TABLE} th[data-column="metrics.val/acc.last"] button`);
    await page.click(`${TABLE} th[data-column="metrics.val/acc.last"] button`);
    let best = 0;
    for (let i = 1; i < COUNT; i++) if (sweepAccuracy(i) > sweepAccuracy(best)) best = i;
    await page.waitForFunction(
      (prefix) => (document.querySelector('[data-testid="runs-table"] tr[data-testid="run-row"]') as HTMLElement | null)?.dataset.prefix === prefix,
      `alice/big/sweep/${sweepRunName(best, COUNT)}`,
      WAIT,
    );
  });
});
