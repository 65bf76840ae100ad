/// <reference lib="dom" />
// Accessibility in a real headless Chromium over the real server: the tree is
// a tree (roles, levels, arrow keys, Enter opens a run), every checkbox and
// toggle names its run or folder, text has a contrast of at least 4.5:1 in
// both themes, and each chart has a text alternative with its keys and last
// values.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Page } from "playwright-core";
import { chart, dashboardOverFixture, row, WAIT } from "../testing/dashboard_browser.ts";
import { missingChromium } from "../testing/chromium.ts";
import { TRAIN_STEPS } from "../testing/fixtures/dashboard_fixture.ts";
import { longerTimeoutsOnBun } from "../testing/run_script.ts";

await longerTimeoutsOnBun();

/** Text on the page whose contrast with what is behind it is under 4.5:1 (WCAG AA), disabled controls aside. */
function lowContrast(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const rgba = (css: string): number[] => (css.match(/[\d.]+/g) ?? ["0", "0", "0", "0"]).map(Number).concat(1).slice(0, 4);
    const luminance = ([r, g, b]: number[]): number => {
      const f = (c: number): number => (c /= 255) <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const over = (top: number[], bottom: number[]): number[] => top.slice(0, 3).map((c, i) => c * top[3] + bottom[i] * (1 - top[3])).concat(1);
    const background = (el: Element | null): number[] => {
      const layers: number[][] = [];
      for (let n = el; n; n = n.parentElement) {
        const c = rgba(getComputedStyle(n).backgroundColor);
        if (c[3] > 0) layers.push(c);
        if (c[3] >= 1) break;
      }
      return layers.reverse().reduce((below, layer) => over(layer, below), [255, 255, 255, 1]);
    };
    const failures: string[] = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const el = node.parentElement;
      if (!el || !node.textContent?.trim() || el.closest("[disabled], [hidden], option, .chart-tooltip, .swatch")) continue;
      const box = el.getBoundingClientRect();
      const style = getComputedStyle(el);
      if (!box.width || !box.height || style.visibility === "hidden" || Number(style.opacity) === 0) continue;
      const bg = background(el);
      const fg = over(rgba(style.color), bg);
      const [a, b] = [luminance(fg), luminance(bg)].sort((x, y) => y - x);
      const ratio = (a + 0.05) / (b + 0.05);
      if (ratio < 4.5) failures.push(`${ratio.toFixed(2)} "${node.textContent.trim().slice(0, 30)}" (${el.className || el.tagName})`);
    }
    return [...new Set(failures)];
  });
}

describe("dashboard accessibility", { skip: missingChromium }, () => {
  const dash = dashboardOverFixture();

  it("makes the tree a tree: roles and levels, arrow keys, Enter opens a run", async () => {
    const page = await dash.open();
    assert.equal(await page.getAttribute('[data-testid="experiment-list"]', "role"), "tree");
    const items = await page.$$eval('[data-testid="experiment-list"] > *', (nodes) => nodes.map((n) => [n.getAttribute("role"), n.getAttribute("aria-level")]));
    assert.ok(items.every(([role, level]) => role === "treeitem" && Number(level) >= 1), JSON.stringify(items));
    assert.equal(await page.getAttribute('[data-testid="folder-row"][data-path="alice/mnist"]', "aria-expanded"), "true");

    // Tab reaches the tree once; arrows move; Left folds a folder, Right unfolds it.
    await page.focus('[data-testid="folder-row"][data-path="alice/mnist"]');
    await page.keyboard.press("ArrowDown");
    assert.equal(await page.evaluate(() => (document.activeElement as HTMLElement).dataset.path), "alice/mnist/sweep");
    await page.keyboard.press("ArrowLeft");
    await page.waitForSelector('[data-testid="folder-row"][data-path="alice/mnist/sweep"][aria-expanded="false"]', WAIT);
    assert.equal(await page.$(row("alice/mnist/sweep/lr-0.1")), null);
    await page.keyboard.press("ArrowRight");
    await page.waitForSelector(row("alice/mnist/sweep/lr-0.1"), WAIT);
    await page.keyboard.press("ArrowDown");
    await page.keyboard.press("ArrowDown");
    assert.equal(await page.evaluate(() => (document.activeElement as HTMLElement).dataset.prefix), "alice/mnist/sweep/lr-0.1");
    await page.keyboard.press("Enter");
    await page.waitForSelector(`${row("alice/mnist/sweep/lr-0.1")}[aria-selected="true"]`, WAIT);
    await page.waitForSelector(`${chart("train/loss")}[data-series-count="1"]`, WAIT);
    assert.equal(await page.evaluate(() => (document.activeElement as HTMLElement).dataset.prefix), "alice/mnist/sweep/lr-0.1", "focus stays on the run");
    assert.equal(await page.$$eval('[data-testid="experiment-list"] [tabindex="0"]', (n) => n.length), 1, "one stop for Tab");
  });

  it("names the run or folder of every checkbox and toggle", async () => {
    const page = await dash.open("#run=alice/mnist/baseline&tab=runs");
    await page.waitForSelector('[data-testid="run-row"]', WAIT);
    const unnamed = await page.$$eval('input[type="checkbox"], button', (nodes) =>
      nodes.filter((n) => {
        const el = n as HTMLElement;
        if (!el.getClientRects().length) return false;
        const name = el.getAttribute("aria-label") ?? (el.closest("label")?.textContent || el.textContent || "").trim();
        return !name;
      }).map((n) => n.outerHTML.slice(0, 120)));
    assert.deepEqual(unnamed, []);
    assert.equal(await page.getAttribute(`${row("alice/mnist/wide")} .select-box`, "aria-label"), "Add alice/mnist/wide to the comparison");
    assert.equal(await page.getAttribute('[data-testid="folder-row"][data-path="alice/mnist"] .select-box', "aria-label"), "Select every run in alice/mnist");
    assert.equal(await page.getAttribute('[data-testid="run-row"][data-prefix="alice/mnist/wide"] .select-box', "aria-label"), "Select alice/mnist/wide for the charts");
    await page.click('[data-testid="tab-charts"]');
    await page.waitForSelector(`${chart("train/loss")}[data-series-count="1"]`, WAIT);
    assert.equal(await page.getAttribute(`${chart("train/loss")} [data-testid="pin"]`, "aria-label"), "Pin train/loss to the top");
    assert.equal(await page.getAttribute(`${chart("train/loss")} .legend-item`, "aria-pressed"), "true");
  });

  it("keeps text at a contrast of 4.5:1 or more in the light and the dark theme", async () => {
    for (const theme of ["light", "dark"]) {
      for (const hash of ["#run=alice/mnist/baseline&run=alice/mnist/sweep/lr-0.1", "#tab=runs", "#run=alice/mnist/baseline&tab=overview", "#run=alice/mnist/baseline&tab=logs"]) {
        const page = await dash.open(hash);
        await page.evaluate((t) => (document.documentElement.dataset.theme = t), theme);
        await page.waitForSelector('[data-testid="live"][data-state="live"]', WAIT);
        await page.waitForFunction(() => !document.querySelector("[data-loading]") && !document.body.textContent?.includes("Loading…"), null, WAIT);
        assert.deepEqual(await lowContrast(page), [], `${theme} theme, ${hash}`);
      }
    }
  });

  it("gives each chart a text alternative with its keys and last values", async () => {
    const page = await dash.open("#run=alice/mnist/baseline");
    await page.waitForSelector(`${chart("train/loss")}[data-point-count="${TRAIN_STEPS}"]`, WAIT);
    const canvas = `${chart("train/loss")} canvas`;
    assert.equal(await page.getAttribute(canvas, "role"), "img");
    const loss = Number((2.3 * Math.exp(-(TRAIN_STEPS - 1) / 16) + 0.05).toPrecision(5));
    assert.equal(await page.getAttribute(canvas, "aria-label"), `Chart of train/loss. baseline: last ${loss} at step ${TRAIN_STEPS - 1}.`);
  });
});
