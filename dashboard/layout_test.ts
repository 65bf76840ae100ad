/// <reference lib="dom" />
// The dashboard's layout in a real headless Chromium at a phone's size
// (390×844) and a desktop's: the tree as a drawer and charts at full width on
// the phone, tabs that are all reachable and not covered.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Page } from "playwright-core";
import { chart, DashboardBrowser, row, WAIT } from "../testing/dashboard_browser.ts";
import { missingChromium } from "../testing/chromium.ts";
import { type DashboardFixture, writeDashboardFixture } from "../testing/fixtures/dashboard_fixture.ts";
import { longerTimeoutsOnBun } from "../testing/run_script.ts";

await longerTimeoutsOnBun();

const PHONE = { width: 390, height: 844 };

/** The sidebar's box on the page. */
const sidebarBox = (page: Page): Promise<{ left: number; right: number; visible: boolean }> =>
  page.$eval('[data-testid="sidebar"]', (el) => {
    const r = el.getBoundingClientRect();
    return { left: r.left, right: r.right, visible: getComputedStyle(el).visibility !== "hidden" };
  });

/** Whether the element is the topmost thing at its own centre, once scrolled into view. */
const uncovered = (page: Page, selector: string): Promise<boolean> =>
  page.$eval(selector, (el) => {
    el.scrollIntoView({ block: "nearest", inline: "nearest" });
    const r = el.getBoundingClientRect();
    const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    return r.right <= innerWidth + 0.5 && r.left >= -0.5 && (top === el || el.contains(top));
  });

describe("dashboard layout", { skip: missingChromium }, () => {
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

  it("on a phone, makes the tree a drawer and gives the charts the full width", async () => {
    const page = await dash.open("#run=alice/mnist/baseline", { viewport: PHONE });
    await page.waitForSelector(`${chart("train/loss")}[data-series-count="1"]`, WAIT);
    const closed = await sidebarBox(page);
    assert.ok(closed.right <= 0 || !closed.visible, `the drawer is closed: ${JSON.stringify(closed)}`);
    const width = await page.$eval(chart("train/loss"), (el) => el.getBoundingClientRect().width);
    assert.ok(width >= PHONE.width - 40, `the chart takes the width: ${width}px of ${PHONE.width}`);
    const canvas = await page.$eval(`${chart("train/loss")} canvas`, (el) => el.getBoundingClientRect().width);
    assert.ok(canvas >= PHONE.width - 60, `the plot too: ${canvas}px`);

    // The menu button opens the drawer; choosing a run closes it.
    await page.click('[data-testid="sidebar-toggle"]');
    await page.waitForFunction(() => document.querySelector('[data-testid="sidebar"]')!.getBoundingClientRect().left >= 0, null, WAIT);
    assert.equal(await page.getAttribute('[data-testid="sidebar-toggle"]', "aria-expanded"), "true");
    assert.ok(await uncovered(page, `${row("alice/mnist/wide")} .tree-name`), "the drawer is on top of the page");
    await page.click(`${row("alice/mnist/wide")} .tree-name`);
    await page.waitForFunction(() => document.querySelector('[data-testid="sidebar"]')!.getBoundingClientRect().right <= 0, null, WAIT);
    await page.waitForSelector(`${row("alice/mnist/wide")}[data-selected="true"]`, { state: "attached", ...WAIT });
  });

  it("on a phone, keeps every tab reachable and uncovered", async () => {
    const page = await dash.open("#run=alice/mnist/baseline", { viewport: PHONE });
    await page.waitForSelector('[data-testid="tab-files"]', WAIT);
    for (const tab of ["runs", "charts", "overview", "params", "logs", "files"]) {
      assert.ok(await uncovered(page, `[data-testid="tab-${tab}"]`), `the ${tab} tab can be seen and clicked`);
    }
    await page.click('[data-testid="tab-files"]');
    await page.waitForSelector('[data-testid="file-row"][data-path="notes.txt"]', WAIT);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
    assert.ok(overflow <= 0, `the page itself does not scroll sideways: ${overflow}px`);
  });

  it("on a desktop, keeps the tree beside the charts without a menu button", async () => {
    const page = await dash.open("#run=alice/mnist/baseline");
    const box = await sidebarBox(page);
    assert.equal(box.left, 0);
    assert.ok(box.visible && box.right > 200);
    assert.equal(await page.isVisible('[data-testid="sidebar-toggle"]'), false);
  });
});
