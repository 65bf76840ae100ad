/// <reference lib="dom" />
// The runs table in a real headless Chromium over the real server: a row per
// run with status, name, start, duration, tags, the params that differ and
// each metric's last; sorting, chosen columns remembered, rows selected for
// the charts, a folder's table, and the CSV export.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import type { Page } from "playwright-core";
import { chart, dashboardOverFixture, WAIT } from "../testing/dashboard_browser.ts";
import { missingChromium } from "../testing/chromium.ts";
import { longerTimeoutsOnBun } from "../testing/run_script.ts";

await longerTimeoutsOnBun();

const TABLE = '[data-testid="runs-table"]';
const ROWS = `${TABLE} tbody tr[data-testid="run-row"]`;

/** The prefixes of the table's rows, top to bottom. */
const rowPrefixes = (page: Page): Promise<string[]> =>
  page.$$eval(ROWS, (rows) => rows.map((r) => (r as HTMLElement).dataset.prefix ?? ""));
/** The ids of the table's columns, left to right (the select box aside). */
const columnIds = (page: Page): Promise<string[]> =>
  page.$$eval(`${TABLE} thead th[data-column]`, (cells) => cells.map((c) => (c as HTMLElement).dataset.column ?? ""));

describe("dashboard runs table", { skip: missingChromium }, () => {
  const dash = dashboardOverFixture();

  /** The table of a folder, opened from its row in the tree. */
  async function folderTable(folder: string): Promise<Page> {
    const page = await dash.open();
    await page.click(`[data-testid="folder-row"][data-path="${folder}"] [data-testid="folder-table"]`);
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid="runs-table"] tbody tr[data-testid="run-row"]').length === n, 4, WAIT);
    return page;
  }

  it("shows a folder's runs as a table with headers, the params that differ and each metric's last value", async () => {
    const page = await folderTable("alice/mnist");
    assert.match(await page.evaluate(() => location.hash), /folder=alice%2Fmnist|folder=alice\/mnist/);
    assert.equal(await page.$$eval(`${TABLE} thead th`, (cells) => cells.every((c) => c.tagName === "TH")), true);
    const columns = await columnIds(page);
    assert.deepEqual(columns.slice(0, 5), ["status", "name", "start", "duration", "tags"]);
    // lr and model.width differ between the four runs; the rest is the same everywhere.
    assert.deepEqual(columns.filter((c) => c.startsWith("params.")), ["params.lr", "params.model.width"]);
    assert.ok(columns.includes("metrics.train/loss.last"));
    assert.ok(!columns.includes("metrics.train/loss.min"), "min and max are there to choose, not shown by default");
    const baseline = `${TABLE} tr[data-prefix="alice/mnist/baseline"]`;
    assert.equal(await page.textContent(`${baseline} [data-column="status"]`), "COMPLETED");
    assert.equal(await page.textContent(`${baseline} [data-column="params.model.width"]`), "128");
    assert.match(await page.textContent(`${baseline} [data-column="tags"]`) ?? "", /mnist.*baseline/);
    const loss = 2.3 * Math.exp(-59 / 16) + 0.05;
    // Five significant digits, as on the charts' axes; the exact value as the cell's title, and in the CSV.
    assert.equal(await page.textContent(`${baseline} [data-column="metrics.train/loss.last"]`), String(Number(loss.toPrecision(5))));
    assert.equal(await page.getAttribute(`${baseline} [data-column="metrics.train/loss.last"] span`, "title"), String(Number(loss.toPrecision(12))));
  });

  it("sorts by any column, both ways", async () => {
    const page = await folderTable("alice/mnist");
    await page.click(`${TABLE} th[data-column="metrics.train/loss.last"] button`);
    // Last train/loss: baseline 0.108, wide 0.414, lr-0.01 0.417, lr-0.1 13.9.
    const ascending = ["alice/mnist/baseline", "alice/mnist/wide", "alice/mnist/sweep/lr-0.01", "alice/mnist/sweep/lr-0.1"];
    assert.deepEqual(await rowPrefixes(page), ascending);
    assert.equal(await page.getAttribute(`${TABLE} th[data-column="metrics.train/loss.last"]`, "aria-sort"), "ascending");
    await page.click(`${TABLE} th[data-column="metrics.train/loss.last"] button`);
    assert.deepEqual(await rowPrefixes(page), [...ascending].reverse());
    await page.click(`${TABLE} th[data-column="name"] button`);
    assert.deepEqual(await rowPrefixes(page), ["alice/mnist/baseline", "alice/mnist/sweep/lr-0.01", "alice/mnist/sweep/lr-0.1", "alice/mnist/wide"]);
  });

  it("remembers the columns chosen", async () => {
    const page = await folderTable("alice/mnist");
    await page.click('[data-testid="column-chooser"] summary');
    await page.uncheck('[data-testid="column-chooser"] input[data-column="params.lr"]');
    await page.check('[data-testid="column-chooser"] input[data-column="metrics.train/loss.min"]');
    await page.reload();
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="run-row"]').length === 4, null, WAIT);
    const columns = await columnIds(page);
    assert.ok(!columns.includes("params.lr"));
    assert.ok(columns.includes("metrics.train/loss.min"));
  });

  it("selects rows for the charts", async () => {
    const page = await folderTable("alice/mnist");
    await page.check(`${TABLE} tr[data-prefix="alice/mnist/baseline"] .select-box`);
    await page.check(`${TABLE} tr[data-prefix="alice/mnist/wide"] .select-box`);
    await page.waitForFunction(() => document.querySelectorAll('#selection-bar .run-chip').length === 2, null, WAIT);
    await page.click('[data-testid="compare-selected"]');
    await page.waitForSelector(`${chart("train/loss")}[data-series-count="2"]`, WAIT);
    const hash = new URLSearchParams((await page.evaluate(() => location.hash)).slice(1));
    assert.deepEqual(hash.getAll("run"), ["alice/mnist/baseline", "alice/mnist/wide"]);
  });

  it("shows every run from the sidebar's Table button and exports the table as CSV", async () => {
    const page = await dash.open();
    await page.click('[data-testid="open-runs-table"]');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="run-row"]').length === 6, null, WAIT);
    await page.click(`${TABLE} th[data-column="name"] button`);
    const [download] = await Promise.all([page.waitForEvent("download"), page.click('[data-testid="export-csv"]')]);
    const csv = readFileSync((await download.path())!, "utf8").trimEnd().split("\r\n");
    const header = csv[0].split(",");
    assert.deepEqual(header.slice(0, 6), ["prefix", "Status", "Name", "Start", "Duration", "Tags"]);
    assert.equal(csv.length, 7, "a header and a line per run");
    const baseline = csv.find((l) => l.startsWith("alice/mnist/baseline,"))!.split(",");
    assert.equal(baseline[header.indexOf("Status")], "COMPLETED");
    assert.equal(baseline[header.indexOf("train/loss")], String(2.3 * Math.exp(-59 / 16) + 0.05));
    assert.match(baseline[header.indexOf("Start")], /^\d{4}-\d\d-\d\dT/);
  });
});
