/// <reference lib="dom" />
// The sidebar's search in a real headless Chromium over the real server:
// plain words and expressions in the MLflow filter language (evaluated by the
// server's parser), the parser's message under the box, the query in the URL,
// and the runs table narrowed by the same search.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Page } from "playwright-core";
import { dashboardOverFixture, WAIT } from "../testing/dashboard_browser.ts";
import { missingChromium } from "../testing/chromium.ts";
import { longerTimeoutsOnBun } from "../testing/run_script.ts";

await longerTimeoutsOnBun();

/** Waits until the tree lists exactly these runs. */
async function treeShows(page: Page, prefixes: string[]): Promise<void> {
  const expected = [...prefixes].sort();
  await page.waitForFunction((want) => {
    const shown = [...document.querySelectorAll('[data-testid="experiment-row"]')].map((n) => (n as HTMLElement).dataset.prefix).sort();
    return JSON.stringify(shown) === JSON.stringify(want);
  }, expected, WAIT);
}

describe("dashboard search", { skip: missingChromium }, () => {
  const dash = dashboardOverFixture();

  it("filters the tree by an expression on metrics, params, tags and attributes, with or without words", async () => {
    const page = await dash.open();
    const search = '[data-testid="search"]';
    await page.fill(search, "metrics.train/loss < 0.2");
    await treeShows(page, ["alice/mnist/baseline"]);
    await page.fill(search, "params.lr = '0.001'");
    await treeShows(page, ["alice/mnist/baseline", "alice/mnist/wide"]);
    await page.fill(search, "attributes.status = 'FAILED'");
    await treeShows(page, ["alice/mnist/sweep/lr-0.1"]);
    await page.fill(search, "tags.baseline = 'true'");
    await treeShows(page, ["alice/mnist/baseline"]);
    // Words first, then the expression: both must hold.
    await page.fill(search, "sweep metrics.train/loss > 0.1");
    await treeShows(page, ["alice/mnist/sweep/lr-0.1", "alice/mnist/sweep/lr-0.01"]);
    await page.fill(search, "mnist");
    await treeShows(page, ["alice/mnist/baseline", "alice/mnist/wide", "alice/mnist/sweep/lr-0.1", "alice/mnist/sweep/lr-0.01"]);
    assert.equal(await page.isVisible('[data-testid="search-error"]'), false);
  });

  it("shows the parser's message under the box for a bad expression", async () => {
    const page = await dash.open();
    await page.fill('[data-testid="search"]', "metrics.train/loss <");
    await page.waitForSelector('[data-testid="search-error"]:not([hidden])', WAIT);
    assert.match(await page.textContent('[data-testid="search-error"]') ?? "", /^Invalid filter "metrics\.train\/loss <": expected a number/);
    assert.equal(await page.getAttribute('[data-testid="search"]', "aria-invalid"), "true");
    await page.fill('[data-testid="search"]', "metrics.train/loss < 1");
    await page.waitForSelector('[data-testid="search-error"]', { state: "hidden", ...WAIT });
  });

  it("keeps the query in the URL, and narrows the runs table by it", async () => {
    const page = await dash.open();
    await page.fill('[data-testid="search"]', "params.lr = '0.001'");
    await treeShows(page, ["alice/mnist/baseline", "alice/mnist/wide"]);
    const hash = new URLSearchParams((await page.evaluate(() => location.hash)).slice(1));
    assert.equal(hash.get("q"), "params.lr = '0.001'");

    const again = await dash.open(`#tab=runs&q=${encodeURIComponent("params.lr = '0.001'")}`);
    assert.equal(await again.inputValue('[data-testid="search"]'), "params.lr = '0.001'");
    await treeShows(again, ["alice/mnist/baseline", "alice/mnist/wide"]);
    await again.waitForFunction(() => {
      const rows = [...document.querySelectorAll('[data-testid="run-row"]')].map((n) => (n as HTMLElement).dataset.prefix).sort();
      return JSON.stringify(rows) === JSON.stringify(["alice/mnist/baseline", "alice/mnist/wide"]);
    }, null, WAIT);
  });
});
