/// <reference lib="dom" />
// Previews of saved files in a real headless Chromium over the real server:
// PNG and SVG as images (an SVG's script never runs), text and JSON inline as
// text (markup in them stays text), a text file too large to read in the page
// not fetched for a preview, and the download links kept.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Experiment } from "../mod.ts";
import { DashboardBrowser, WAIT } from "../testing/dashboard_browser.ts";
import { missingChromium } from "../testing/chromium.ts";
import { longerTimeoutsOnBun } from "../testing/run_script.ts";

await longerTimeoutsOnBun();

const PREFIX = "carol/files/run";
// A 1×1 PNG.
const PNG = Uint8Array.from(atob("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="), (c) => c.charCodeAt(0));
// An SVG that would retitle the page, were its script or handler run.
const SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20" onload="top.document.title='svg ran'">` +
  `<script>top.document.title = "svg ran";</script><rect width="40" height="20" fill="#2563eb"/></svg>`;

describe("dashboard file previews", { skip: missingChromium }, () => {
  const dash = new DashboardBrowser();

  before(async () => {
    await new Experiment({ prefix: PREFIX, dashRoot: dash.root }).run(async (exp) => {
      exp.metrics("train").log({ step: 0, loss: 1 });
      await exp.files.saveBytes("plots/loss.png", PNG, "image/png");
      await exp.files.saveBytes("plots/diagram.svg", new TextEncoder().encode(SVG), "image/svg+xml");
      await exp.files.saveText("notes.txt", "line one\n<b>not bold</b><img src=x onerror=\"document.title='ran'\">\n");
      await exp.files.saveJson("config.json", { lr: 0.1, model: { depth: 4 } });
      await exp.files.saveBytes("weights.bin", new Uint8Array([1, 2, 3]));
      await exp.files.saveBytes("big.log", new TextEncoder().encode("a log line\n".repeat(600_000)), "text/plain");
    });
    await dash.start();
  });

  after(() => dash.close());

  const open = async () => {
    const page = await dash.open(`#run=${PREFIX}&tab=files`);
    await page.waitForSelector('[data-testid="file-row"][data-path="notes.txt"]', WAIT);
    return page;
  };
  const previewOf = (path: string): string => `[data-testid="file-row"][data-path="${path}"] [data-testid="preview"]`;

  it("shows PNG and SVG files as images, without running the SVG's script", async () => {
    const page = await open();
    for (const path of ["plots/loss.png", "plots/diagram.svg"]) {
      await page.click(previewOf(path));
      const image = `[data-testid="file-preview"][data-path="${path}"] [data-testid="preview-image"]`;
      await page.waitForFunction((s) => (document.querySelector(s) as HTMLImageElement | null)?.naturalWidth, image, WAIT);
      assert.equal(await page.getAttribute(image, "alt"), `${path} of ${PREFIX}`);
    }
    assert.equal(await page.title(), "ml-dash", "the SVG's script and handler did not run");
    assert.deepEqual(dash.errors, []);
  });

  it("shows text and JSON inline as text, and keeps the download links", async () => {
    const page = await open();
    await page.click(previewOf("notes.txt"));
    const text = '[data-testid="file-preview"][data-path="notes.txt"] [data-testid="preview-text"]';
    await page.waitForFunction((s) => document.querySelector(s)?.textContent?.startsWith("line one"), text, WAIT);
    assert.match(await page.textContent(text) ?? "", /<b>not bold<\/b>/);
    assert.equal(await page.$(`${text} b, ${text} img`), null, "markup in a text file stays text");
    assert.equal(await page.title(), "ml-dash");

    await page.click(previewOf("config.json"));
    const json = '[data-testid="file-preview"][data-path="config.json"] [data-testid="preview-text"]';
    await page.waitForFunction((s) => document.querySelector(s)?.textContent?.includes("depth"), json, WAIT);
    assert.deepEqual(JSON.parse(await page.textContent(json) ?? ""), { lr: 0.1, model: { depth: 4 } });

    // A file with no preview keeps its link; every row keeps its download.
    assert.equal(await page.$(previewOf("weights.bin")), null);
    const rows = await page.$$eval('[data-testid="file-row"]', (r) => r.length);
    assert.equal(await page.$$eval('[data-testid="file-row"] [data-testid="download"]', (d) => d.length), rows);
    const href = await page.getAttribute('[data-testid="file-row"][data-path="plots/loss.png"] [data-testid="download"]', "href");
    assert.deepEqual(new Uint8Array(await (await page.request.get(href!)).body()), PNG);
  });

  it("does not fetch a text file over the preview limit: a note says so and the download link stays", async () => {
    const page = await open();
    const fetched: string[] = [];
    page.on("request", (req) => {
      if (decodeURIComponent(req.url()).includes("big.log")) fetched.push(req.url());
    });
    await page.click(previewOf("big.log"));
    const shown = '[data-testid="file-preview"][data-path="big.log"]';
    await page.waitForSelector(`${shown} [data-testid="preview-too-large"], ${shown} [data-testid="preview-text"]`, WAIT);
    assert.match(await page.$eval(shown, (e) => e.textContent ?? ""), /big\.log is 6(\.\d)? MB, too large to preview/);
    assert.deepEqual(fetched, [], "the file is not read for the preview");
    const href = await page.getAttribute(`${shown} a[download]`, "href");
    assert.equal((await page.request.get(href!)).status(), 200);
  });
});
