/// <reference lib="dom" />
// No dead ends: a request that failed while the server was down is read again
// (on the next selection, when the event stream comes back, or from the Retry
// button), a link to an unknown run shows the server's 404, and an unknown tab
// in the URL opens Charts. Real server, stopped and started again on its port;
// real headless Chromium.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { chart, dashboardOverFixture, row, WAIT } from "../testing/dashboard_browser.ts";
import { missingChromium } from "../testing/chromium.ts";
import { TRAIN_STEPS } from "../testing/fixtures/dashboard_fixture.ts";
import { longerTimeoutsOnBun } from "../testing/run_script.ts";

await longerTimeoutsOnBun();

describe("dashboard recovery", { skip: missingChromium }, () => {
  const dash = dashboardOverFixture();

  it("reads a run again once the server is back, after showing the failure with a retry button", async () => {
    const page = await dash.open();
    await page.waitForSelector('[data-testid="live"][data-state="live"]', WAIT);
    await dash.stopServer();
    try {
      await page.waitForSelector('[data-testid="live"][data-state="offline"]', WAIT);
      await page.click(`${row("alice/mnist/baseline")} .tree-name`);
      const error = '[data-testid="load-error"][data-prefix="alice/mnist/baseline"]';
      await page.waitForSelector(error, WAIT);
      assert.match(await page.textContent(error) ?? "", /Could not reach the server/);
      assert.ok(await page.$(`${error} [data-testid="retry"]`), "a retry button beside the error");
      assert.doesNotMatch(await page.textContent('[data-testid="charts"]') ?? "", /no metrics yet/);
    } finally {
      await dash.startServer();
    }
    // The event stream reconnects by itself, and what failed is read again.
    await page.waitForSelector(`${chart("train/loss")}[data-point-count="${TRAIN_STEPS}"]`, WAIT);
    await page.waitForSelector('[data-testid="load-error"]', { state: "detached", ...WAIT });
  });

  it("retries failed logs from the retry button and on the next selection", async () => {
    const page = await dash.open();
    await dash.stopServer();
    try {
      await page.click(`${row("alice/mnist/wide")} .tree-name`);
      await page.click('[data-testid="tab-logs"]');
      await page.waitForSelector('[data-testid="log-error"]', WAIT);
      assert.doesNotMatch(await page.textContent('[data-testid="log-view"]') ?? "", /No log lines/);
    } finally {
      await dash.startServer();
    }
    await page.click('[data-testid="retry-logs"]');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="log-line"]').length === 4, null, WAIT);
    assert.equal(await page.$('[data-testid="log-error"]'), null);
  });

  it("shows the server's 404 for a link to an unknown run", async () => {
    const page = await dash.open("#run=alice/nlp/x");
    const error = '[data-testid="load-error"][data-prefix="alice/nlp/x"]';
    await page.waitForSelector(error, WAIT);
    assert.match(await page.textContent(error) ?? "", /Unknown experiment "alice\/nlp\/x"/);
    assert.doesNotMatch(await page.textContent('[data-testid="charts"]') ?? "", /no metrics yet/);
  });

  it("opens Charts for an unknown tab in the URL", async () => {
    const page = await dash.open("#run=alice/mnist/baseline&tab=nonsense");
    await page.waitForSelector(`${chart("train/loss")}[data-series-count="1"]`, WAIT);
    assert.equal(await page.getAttribute('[data-testid="tab-charts"]', "aria-selected"), "true");
    assert.equal(await page.isVisible('[data-testid="charts"]'), true);
  });
});
