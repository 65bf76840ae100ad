/// <reference lib="dom" />
// Editing a run's description and tags from the page, in a real headless
// Chromium over the real server with a write token and a read token: the page
// reads with the read token, asks for the write token on the server's 401,
// and the edit lands in the store through its ingest; a save sends only the
// fields edited.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { dashboardOverFixture, row, WAIT } from "../testing/dashboard_browser.ts";
import { missingChromium } from "../testing/chromium.ts";
import { longerTimeoutsOnBun } from "../testing/run_script.ts";

await longerTimeoutsOnBun();

const WRITE = "write-s3cret";
const READ = "read-t0ken";

describe("dashboard edits", { skip: missingChromium }, () => {
  const dash = dashboardOverFixture({ token: WRITE, readToken: READ });

  it("edits a run's description and tags with the write token, asked for on the server's 401", async () => {
    const page = await dash.open("#run=alice/mnist/wide&tab=overview", { search: `?access_token=${READ}` });
    await page.click('[data-testid="edit-run"]');
    await page.fill('[data-testid="edit-readme"]', "Wider is better: keep it.");
    await page.fill('[data-testid="edit-tags"]', "mnist, keep, best");
    await page.click('[data-testid="edit-save"]');
    // The read token does not write: the server's 401 is shown and the write token asked for.
    await page.waitForSelector('[data-testid="edit-token"]', WAIT);
    assert.match(await page.textContent('[data-testid="edit-error"]') ?? "", /token/i);
    await page.fill('[data-testid="edit-token"]', "wrong");
    await page.click('[data-testid="edit-save"]');
    await page.waitForFunction(() => /Invalid token/.test(document.querySelector('[data-testid="edit-error"]')?.textContent ?? ""), null, WAIT);
    await page.fill('[data-testid="edit-token"]', WRITE);
    await page.click('[data-testid="edit-save"]');
    await page.waitForSelector('[data-testid="edit-form"]', { state: "detached", ...WAIT });
    assert.equal(await page.textContent('[data-testid="readme"]'), "Wider is better: keep it.");
    assert.match(await page.textContent(`${row("alice/mnist/wide")}`) ?? "", /keep.*best/);

    // Stored: the read API (with the read token) answers the new record, the rest of it kept.
    const res = await page.request.get(`${dash.server.url}/api/v1/experiment?prefix=alice/mnist/wide&access_token=${READ}`);
    const view = await res.json();
    assert.equal(view.metadata.readme, "Wider is better: keep it.");
    assert.deepEqual(view.metadata.tags, ["mnist", "keep", "best"]);
    assert.equal(view.metadata.prefix, "alice/mnist/wide");

    // The token is kept for the session: the next edit needs no asking.
    await page.click('[data-testid="edit-run"]');
    await page.fill('[data-testid="edit-readme"]', "Edited twice.");
    await page.click('[data-testid="edit-save"]');
    await page.waitForSelector('[data-testid="edit-form"]', { state: "detached", ...WAIT });
    assert.equal(await page.textContent('[data-testid="readme"]'), "Edited twice.");
  });

  it("sends only the fields edited: a description saved alone keeps tags with a comma, tags saved alone send no description", async () => {
    const prefix = "alice/mnist/baseline";
    const set = await fetch(`${dash.server.url}/api/v1/meta`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${WRITE}` },
      body: JSON.stringify({ prefix, tags: ["a,b", "x"] }),
    });
    assert.equal(set.status, 200);
    const page = await dash.open(`#run=${prefix}&tab=overview`, { search: `?access_token=${READ}` });
    const sent: Record<string, unknown>[] = [];
    page.on("request", (req) => {
      if (req.method() === "POST" && new URL(req.url()).pathname === "/api/v1/meta") sent.push(JSON.parse(req.postData() ?? "null"));
    });
    const stored = async (): Promise<{ readme: string; tags: string[] }> => {
      const res = await fetch(`${dash.server.url}/api/v1/experiment?prefix=${prefix}&access_token=${READ}`);
      return (await res.json()).metadata;
    };

    await page.click('[data-testid="edit-run"]');
    await page.fill('[data-testid="edit-readme"]', "Only the description.");
    await page.click('[data-testid="edit-save"]');
    await page.waitForSelector('[data-testid="edit-token"]', WAIT);
    await page.fill('[data-testid="edit-token"]', WRITE);
    await page.click('[data-testid="edit-save"]');
    await page.waitForSelector('[data-testid="edit-form"]', { state: "detached", ...WAIT });
    assert.deepEqual(sent.at(-1), { prefix, readme: "Only the description." });
    assert.deepEqual(await stored().then((m) => [m.readme, m.tags]), ["Only the description.", ["a,b", "x"]]);

    await page.click('[data-testid="edit-run"]');
    await page.fill('[data-testid="edit-tags"]', "x, y");
    await page.click('[data-testid="edit-save"]');
    await page.waitForSelector('[data-testid="edit-form"]', { state: "detached", ...WAIT });
    assert.deepEqual(sent.at(-1), { prefix, tags: ["x", "y"] });
    assert.deepEqual(await stored().then((m) => [m.readme, m.tags]), ["Only the description.", ["x", "y"]]);
  });
});
