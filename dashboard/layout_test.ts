/// <reference lib="dom" />
// The dashboard's layout in a real headless Chromium at a phone's size
// (390×844) and a desktop's: the tree as a drawer and charts at full width on
// the phone, tabs that are all reachable and not covered; long names that
// neither push the selection bar's last chips and Clear off the page, nor
// widen the x axis menu, nor are cut off in the filtered tree; an
// experiment's metadata in the Overview.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Page } from "playwright-core";
import { chart, dashboardOverFixture, row, WAIT } from "../testing/dashboard_browser.ts";
import { missingChromium } from "../testing/chromium.ts";
import { Experiment } from "../mod.ts";
import { longerTimeoutsOnBun } from "../testing/run_script.ts";

await longerTimeoutsOnBun();

const PHONE = { width: 390, height: 844 };
const LONG_FIELD = "gradient_norm_of_the_attention_output_projection_in_the_last_block";
/** Five runs with long names, long field names and metadata. */
const LONG_RUNS = [1, 2, 3, 4, 5].map((seed) => `alice/nlp/transformer-large-warmup-4000-cosine-seed-${seed}`);

async function writeLongRuns(root: string): Promise<void> {
  for (const [i, prefix] of LONG_RUNS.entries()) {
    await new Experiment({ prefix, dashRoot: root, metadata: { gpu: "a100", nodes: 2 } }).run((exp) => {
      for (let step = 0; step < 5; step++) exp.metrics("train").log({ step, loss: 1 / (step + 1 + i), [LONG_FIELD]: step });
    });
  }
}

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
  const dash = dashboardOverFixture({}, writeLongRuns);

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

  it("fits five long-named runs in the selection bar at 1440 px: the rest behind +N, Clear in view", async () => {
    const hash = `#${LONG_RUNS.map((p) => `run=${p}`).join("&")}`;
    const page = await dash.open(hash, { viewport: { width: 1440, height: 900 } });
    await page.waitForSelector('[data-testid="clear-selection"]', WAIT);
    const bar = await page.$eval('[data-testid="selection-bar"]', (el) => {
      const right = el.getBoundingClientRect().right;
      const chips = [...el.querySelectorAll('.chip-row [data-testid="run-chip"]')].map((c) => c.getBoundingClientRect());
      const more = el.querySelector('[data-testid="more-runs"]') as HTMLElement;
      const clear = el.querySelector('[data-testid="clear-selection"]')!.getBoundingClientRect();
      return { right, chips: chips.map((c) => c.right), more: more.hidden ? "" : more.querySelector("summary")!.textContent, clear: clear.right };
    });
    assert.ok(bar.clear <= bar.right + 0.5 && bar.clear <= 1440, `Clear is in view: ${JSON.stringify(bar)}`);
    for (const right of bar.chips) assert.ok(right <= bar.right + 0.5, `every chip shown is whole: ${JSON.stringify(bar)}`);
    const hidden = Number(/^\+(\d+)$/.exec(bar.more ?? "")?.[1] ?? 0);
    assert.equal(bar.chips.length + hidden, 5, `chips shown plus +N: ${JSON.stringify(bar)}`);
    assert.ok(hidden >= 1, "the long names do not all fit");
    // The hidden ones are one click away.
    await page.click('[data-testid="more-runs"] summary');
    assert.equal(await page.$$eval('[data-testid="more-runs"] [data-testid="run-chip"]', (c) => c.length), hidden);
  });

  it("keeps the chart toolbar on one line when a field name is long", async () => {
    const page = await dash.open(`#run=${LONG_RUNS[0]}`);
    await page.waitForSelector(`[data-testid="x-axis"] option[value="${LONG_FIELD}"]`, { state: "attached", ...WAIT });
    const boxes = await page.$$eval("#chart-controls > *", (nodes) => nodes.map((n) => n.getBoundingClientRect()).map((r) => ({ top: r.top, bottom: r.bottom })));
    const line = { top: Math.max(...boxes.map((b) => b.top)), bottom: Math.min(...boxes.map((b) => b.bottom)) };
    assert.ok(line.top < line.bottom, `the controls share one line: ${JSON.stringify(boxes)}`);
    const width = await page.$eval('[data-testid="x-axis"]', (el) => el.getBoundingClientRect().width);
    assert.ok(width < 250, `the x axis menu keeps its width: ${width}px`);
  });

  it("shows the whole name of a run in the tree while a status filter is on", async () => {
    const page = await dash.open();
    await page.click('[data-testid="status-filter"] [data-status="COMPLETED"]');
    const name = `[data-testid="experiment-row"][data-prefix="${LONG_RUNS[0]}"] .tree-name`;
    await page.waitForSelector(name, WAIT);
    const fit = await page.$eval(name, (el) => {
      const sidebar = document.querySelector('[data-testid="sidebar"]')!.getBoundingClientRect();
      return { cut: el.scrollWidth > el.clientWidth + 1, right: el.getBoundingClientRect().right, edge: sidebar.right };
    });
    assert.ok(!fit.cut && fit.right <= fit.edge, `the name is not cut: ${JSON.stringify(fit)}`);
  });

  it("shows an experiment's metadata in the Overview", async () => {
    const page = await dash.open(`#run=${LONG_RUNS[0]}&tab=overview`);
    await page.waitForSelector('[data-testid="metadata"]', WAIT);
    const text = await page.textContent('[data-testid="metadata"]');
    assert.match(text ?? "", /gpu\s*a100/);
    assert.match(text ?? "", /nodes\s*2/);
  });
});
