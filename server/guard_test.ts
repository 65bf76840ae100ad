/// <reference lib="dom" />
// What a hostile web page can do to a server on 127.0.0.1: cross-site writes,
// DNS rebinding, and CORS for the origins allowed on purpose. Over real HTTP on
// loopback, and in real headless Chromium (Debian's /usr/bin/chromium): a page
// of another origin, and a name that resolves to 127.0.0.1.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { chromium } from "playwright-core";
import { type DashServer, serve } from "../server.ts";
import { RequestGuard } from "./guard.ts";
import { longerTimeoutsOnBun } from "../testing/run_script.ts";
import { CHROMIUM, CHROMIUM_ARGS, missingChromium } from "../testing/chromium.ts";

const LAUNCH_ARGS = [
  ...CHROMIUM_ARGS,
  // A name of the attacker's that resolves to loopback, as DNS rebinding makes it do.
  "--host-resolver-rules=MAP rebind.attacker.example 127.0.0.1",
];
const noChromium = missingChromium;

await longerTimeoutsOnBun();

const BATCH = JSON.stringify({ prefix: "alice/csrf/run", session: "s1", seq: 0, batch: { params: { lr: 1 } } });

function tempRoot(): string {
  return mkdtempSync(join(tmpdir(), "ml-dash-guard-"));
}

/** Sends raw HTTP/1.1 (any Host header) and returns the status code. */
function rawStatus(port: number, request: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write(request));
    let answer = "";
    socket.on("data", (chunk) => {
      answer += chunk;
      const match = /^HTTP\/1\.[01] (\d{3})/.exec(answer);
      if (match) {
        socket.destroy();
        resolve(Number(match[1]));
      }
    });
    socket.on("error", reject);
    socket.on("close", () => reject(new Error(`no status line in ${JSON.stringify(answer.slice(0, 100))}`)));
  });
}

function getWithHost(port: number, host: string, pathname = "/api/v1/experiments"): Promise<number> {
  return rawStatus(port, `GET ${pathname} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
}

async function post(server: DashServer, pathname: string, headers: Record<string, string>, body = BATCH): Promise<number> {
  const res = await fetch(server.url + pathname, { method: "POST", headers, body });
  await res.body?.cancel();
  return res.status;
}

async function total(server: DashServer): Promise<number> {
  const res = await fetch(`${server.url}/api/v1/experiments`);
  return ((await res.json()) as { total: number }).total;
}

/** A page of another origin: serves `html` at / on a port of its own. */
async function pageServer(html: string): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(html);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as net.AddressInfo;
  return {
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe("cross-site writes", () => {
  let root: string;
  let server: DashServer;
  before(async () => {
    root = tempRoot();
    server = await serve({ root, port: 0, quiet: true });
  });
  after(async () => {
    await server.close();
    rmSync(root, { recursive: true, force: true });
  });

  it("a write body that is not JSON or NDJSON gets 415 and stores nothing, on batch and open", async () => {
    for (const type of ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]) {
      assert.equal(await post(server, "/api/v1/batch", { "content-type": type }), 415, type);
      assert.equal(await post(server, "/api/v1/open", { "content-type": type }, '{"prefix":"alice/csrf/run"}'), 415, type);
    }
    assert.equal(await total(server), 0);
    assert.equal(await post(server, "/api/v1/batch", { "content-type": "application/json; charset=utf-8" }), 200);
    assert.equal(await total(server), 1);
  });

  it("a write from another origin, or marked cross-site, gets 403; the server's own origin and clients without an Origin may write", async () => {
    const json = { "content-type": "application/json" };
    const other = JSON.stringify({ prefix: "alice/csrf/other", session: "s1", seq: 0, batch: {} });
    assert.equal(await post(server, "/api/v1/batch", { ...json, origin: "https://evil.example" }, other), 403);
    assert.equal(await post(server, "/api/v1/batch", { ...json, origin: "null" }, other), 403);
    assert.equal(await post(server, "/api/v1/batch", { ...json, "sec-fetch-site": "cross-site" }, other), 403);
    assert.equal(await post(server, "/api/v1/open", { ...json, origin: "https://evil.example" }, '{"prefix":"alice/csrf/run"}'), 403);
    const before = await total(server);
    assert.equal(await post(server, "/api/v1/batch", { ...json, origin: server.url }, other), 200);
    assert.equal(await total(server), before + 1);
  });

  it("in Chromium, a page of another site cannot write with a no-cors text/plain POST", { skip: noChromium }, async () => {
    const target = JSON.stringify(`${server.url}/api/v1/batch`);
    const body = JSON.stringify(JSON.stringify({ prefix: "mallory/csrf/planted", session: "s1", seq: 0, batch: {} }));
    const attacker = await pageServer(`<script>
      window.sent = fetch(${target}, { method: "POST", mode: "no-cors", headers: { "content-type": "text/plain" }, body: ${body} })
        .then(() => "sent", (e) => String(e));
    </script>`);
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: LAUNCH_ARGS });
    try {
      const page = await browser.newPage();
      // localhost and 127.0.0.1 are different sites to the browser.
      await page.goto(`http://localhost:${attacker.port}/`);
      assert.equal(await page.evaluate(() => (window as unknown as { sent: Promise<string> }).sent), "sent");
      const res = await fetch(`${server.url}/api/v1/experiments?prefix=mallory`);
      assert.equal(((await res.json()) as { total: number }).total, 0, "nothing was planted");
    } finally {
      await browser.close();
      await attacker.close();
    }
  });
});

describe("DNS rebinding", () => {
  let root: string;
  let server: DashServer;
  before(async () => {
    root = tempRoot();
    server = await serve({ root, port: 0, quiet: true, allowedHosts: ["dash.team.example"] });
  });
  after(async () => {
    await server.close();
    rmSync(root, { recursive: true, force: true });
  });

  it("a server bound to loopback answers 421 to a Host that does not name loopback or an allowed host", async () => {
    const port = server.port;
    assert.equal(await getWithHost(port, `rebind.attacker.example:${port}`), 421);
    assert.equal(await getWithHost(port, `rebind.attacker.example:${port}`, "/"), 421);
    assert.equal(await getWithHost(port, "127.0.0.2.attacker.example"), 421);
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `app.localhost:${port}`, `DASH.team.example:${port}`]) {
      assert.equal(await getWithHost(port, host), 200, host);
    }
  });

  it("in Chromium, a page on a name that resolves to 127.0.0.1 gets 421, for the API and the dashboard", { skip: noChromium }, async () => {
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: LAUNCH_ARGS });
    try {
      const page = await browser.newPage();
      for (const pathname of ["/api/v1/experiments", "/"]) {
        const res = await page.goto(`http://rebind.attacker.example:${server.port}${pathname}`);
        assert.equal(res?.status(), 421, pathname);
      }
    } finally {
      await browser.close();
    }
  });

  it("a server bound elsewhere answers any Host unless names are given", () => {
    const open = new RequestGuard();
    assert.equal(open.check(new Request("http://x/", { headers: { host: "anything.example" } }), false), undefined);
    const named = new RequestGuard({ allowedHosts: ["dash.team.example"] });
    assert.equal(named.check(new Request("http://x/", { headers: { host: "anything.example" } }), false)?.status, 421);
  });
});

describe("browsers as clients (CORS)", () => {
  it("allowing an origin needs a token, and an origin must be scheme://host[:port]", async () => {
    await assert.rejects(serve({ root: tempRoot(), port: 0, quiet: true, corsOrigins: ["https://app.example"] }), /without a token/);
    await assert.rejects(serve({ root: tempRoot(), port: 0, quiet: true, token: "t", corsOrigins: ["https://app.example/"] }), /Invalid CORS origin/);
    await assert.rejects(serve({ root: tempRoot(), port: 0, quiet: true, token: "t", corsOrigins: ["*"] }), /Invalid CORS origin/);
  });

  it("answers preflights and sends Access-Control-Allow-Origin for the allowed origins only", async () => {
    const root = tempRoot();
    const server = await serve({ root, port: 0, quiet: true, token: "tok", corsOrigins: ["https://app.example"] });
    try {
      const preflight = (origin: string): Promise<Response> =>
        fetch(`${server.url}/api/v1/batch`, {
          method: "OPTIONS",
          headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type" },
        });
      const allowed = await preflight("https://app.example");
      assert.equal(allowed.status, 204);
      assert.equal(allowed.headers.get("access-control-allow-origin"), "https://app.example");
      assert.match(allowed.headers.get("access-control-allow-headers") ?? "", /authorization/);
      const refused = await preflight("https://other.example");
      assert.equal(refused.status, 403);
      assert.equal(refused.headers.get("access-control-allow-origin"), null);
      await refused.body?.cancel();

      const headers = { "content-type": "application/json", authorization: "Bearer tok" };
      const write = await fetch(`${server.url}/api/v1/batch`, { method: "POST", headers: { ...headers, origin: "https://app.example" }, body: BATCH });
      assert.equal(write.status, 200);
      assert.equal(write.headers.get("access-control-allow-origin"), "https://app.example");
      await write.body?.cancel();
      assert.equal(await post(server, "/api/v1/batch", { ...headers, origin: "https://other.example" }), 403);
    } finally {
      await server.close();
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("in Chromium, a page of an allowed origin logs with its token; a page of another origin cannot", { skip: noChromium }, async () => {
    const root = tempRoot();
    const page = await pageServer(`<script>
      window.write = (url, prefix) => fetch(url + "/api/v1/batch", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: "Bearer tok" },
        body: JSON.stringify({ prefix, session: "s1", seq: 0, batch: { params: { lr: 0.1 } } }),
      }).then((r) => r.status, (e) => "failed: " + e);
    </script>`);
    const server = await serve({ root, port: 0, quiet: true, token: "tok", corsOrigins: [`http://localhost:${page.port}`] });
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: LAUNCH_ARGS });
    try {
      const tab = await browser.newPage();
      const write = (prefix: string): Promise<unknown> =>
        tab.evaluate(([url, p]) => (window as unknown as { write(u: string, p: string): Promise<unknown> }).write(url, p), [server.url, prefix]);
      await tab.goto(`http://localhost:${page.port}/`);
      assert.equal(await write("alice/browser/allowed"), 200);
      await tab.goto(`http://127.0.0.1:${page.port}/`);
      assert.match(String(await write("alice/browser/refused")), /failed/);
      const res = await fetch(`${server.url}/api/v1/experiments`, { headers: { authorization: "Bearer tok" } });
      const list = (await res.json()) as { experiments: { prefix: string }[] };
      assert.deepEqual(list.experiments.map((e) => e.prefix), ["alice/browser/allowed"]);
    } finally {
      await browser.close();
      await server.close();
      await page.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
});
