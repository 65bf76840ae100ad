/// <reference lib="dom" />
// A folder of more runs than one answer of GET /api/v1/runs holds (a server
// whose page is 40 runs, as one of 10,000 by default), in the runs table (real
// server, real headless Chromium): the page reads them page after page and
// shows every one.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DashboardBrowser, WAIT } from "../testing/dashboard_browser.ts";
import { missingChromium } from "../testing/chromium.ts";
import { writeSweep } from "../testing/fixtures/sweep_fixture.ts";
import { longerTimeoutsOnBun } from "../testing/run_script.ts";

await longerTimeoutsOnBun();

const PAGE = 40;
const COUNT = 2 * PAGE + 5;
const TABLE = '[data-testid="runs-table"]';

describe("dashboard runs table of more runs than one answer holds", { skip: missingChromium }, () => {
  const dash = new DashboardBrowser({ maxRunsPage: PAGE });

  before(async () => {
    await writeSweep(dash.root, COUNT);
    await dash.start();
  });

  after(() => dash.close());

  it("reads the runs page after page and shows all of them", async () => {
    const pages: string[] = [];
    const page = await dash.open("#");
    page.on("request", (req) => {
      if (new URL(req.url()).pathname === "/api/v1/runs") pages.push(new URL(req.url()).searchParams.get("offset") ?? "0");
    });
    await page.evaluate(() => location.hash = "#tab=runs");
    await page.waitForSelector(`${TABLE}[data-total="${COUNT}"]`, WAIT);
    assert.deepEqual(pages, ["0", String(PAGE), String(2 * PAGE)]);
    assert.match(await page.textContent('[data-testid="runs-count"]') ?? "", /85 of 85 runs/);
  });
});
