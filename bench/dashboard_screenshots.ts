/**
 * Makes the README's pictures of the dashboard in a real headless Chromium
 * over the real server: a 12-run sweep (three learning rates, four seeds
 * each) as a runs table sorted by accuracy above its charts grouped by
 * learning rate (docs/dashboard.png), and the charts on a phone
 * (docs/phone.png).
 *
 * Run: `deno run -A bench/dashboard_screenshots.ts` (writes into docs/).
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { chromium, type Page } from "playwright-core";
import { Experiment } from "../mod.ts";
import { serve } from "../server.ts";
import { CHROMIUM, CHROMIUM_ARGS } from "../testing/chromium.ts";
import { tempDir } from "./_common.ts";

const docs = fileURLToPath(new URL("../docs/", import.meta.url));
const WAIT = { timeout: 60_000 };
const root = tempDir("screenshots");

// A seeded pseudo-random generator, so that the pictures are the same each time.
let seed = 7;
const random = (): number => ((seed = (seed * 16807) % 2147483647) / 2147483647);

const LRS = [0.1, 0.01, 0.001];
for (const lr of LRS) {
  for (let s = 0; s < 4; s++) {
    const prefix = `alice/cifar10/sweep/lr${lr}-seed${s}`;
    await new Experiment({ prefix, dashRoot: root, tags: ["sweep", `lr=${lr}`], readme: `ResNet-18, lr ${lr}, seed ${s}` }).run((exp) => {
      exp.params.set({ lr, seed: s, model: "resnet18", batch_size: 128 });
      const speed = lr === 0.1 ? 18 : lr === 0.01 ? 40 : 110;
      const floor = lr === 0.1 ? 0.55 : lr === 0.01 ? 0.22 : 0.35;
      for (let step = 0; step < 200; step++) {
        const loss = floor + 2 * Math.exp(-step / speed) + (random() - 0.5) * 0.08 * (lr === 0.1 ? 2 : 1);
        exp.metrics("train").log({ step, loss, lr: lr * 0.5 * (1 + Math.cos((Math.PI * step) / 200)) });
        if (step % 20 === 19) exp.metrics("val").log({ step, acc: 0.95 - floor / 2 - 0.5 * Math.exp(-step / speed) + (random() - 0.5) * 0.02, loss: loss + 0.05 });
      }
    });
  }
}
for (const prefix of ["alice/mnist/baseline", "bob/nlp/gpt-small"]) {
  await new Experiment({ prefix, dashRoot: root }).run((exp) => {
    for (let step = 0; step < 50; step++) exp.metrics("train").log({ step, loss: 1 / (1 + step / 10) });
  });
}

const server = await serve({ root, port: 0, hostname: "127.0.0.1", quiet: true });
const browser = await chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS] });

async function page(width: number, height: number, hash: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width, height }, deviceScaleFactor: 1, colorScheme: "light" });
  const p = await context.newPage();
  await p.goto(`${server.url}/${hash}`);
  return p;
}

try {
  const runs = LRS.flatMap((lr) => [0, 1, 2, 3].map((s) => `run=alice/cifar10/sweep/lr${lr}-seed${s}`)).join("&");
  // The runs table, sorted by the last val/acc, highest first.
  const table = await page(1440, 430, `#tab=runs&folder=alice/cifar10/sweep&${runs}`);
  await table.waitForSelector('[data-testid="runs-table"][data-total="12"] [data-testid="run-row"]', WAIT);
  await table.click('[data-testid="runs-table"] th[data-column="metrics.val/acc.last"] button');
  await table.click('[data-testid="runs-table"] th[data-column="metrics.val/acc.last"] button');
  const top = await table.screenshot();
  // The charts grouped by lr: a mean line and a min-max band per learning rate.
  const charts = await page(1440, 560, `#${runs}&group=lr`);
  await charts.waitForSelector('[data-testid="chart"][data-key="val/acc"][data-series-count="3"]:not([data-loading])', WAIT);
  await charts.waitForTimeout(500);
  const bottom = await charts.screenshot();
  // Both in one picture: an HTML page of the two shots, itself shot.
  const both = await page(1440, 990, "");
  await both.setContent(`<body style="margin:0;background:#cfd4dc"><img style="display:block" src="data:image/png;base64,${top.toString("base64")}"><img style="display:block" src="data:image/png;base64,${bottom.toString("base64")}"></body>`);
  await both.screenshot({ path: `${docs}dashboard.png` });

  const phone = await page(390, 844, `#run=alice/cifar10/sweep/lr0.01-seed0&run=alice/cifar10/sweep/lr0.001-seed0`);
  await phone.waitForSelector('[data-testid="chart"][data-key="train/loss"][data-series-count="2"]:not([data-loading])', WAIT);
  await phone.waitForTimeout(500);
  await phone.screenshot({ path: `${docs}phone.png` });
  console.log(`Wrote ${docs}dashboard.png and ${docs}phone.png`);
} finally {
  await browser.close();
  await server.close();
}
