/// <reference lib="dom" />
/**
 * The dashboard tests' shared harness: the real server over a temp `.dash`
 * root (the dashboard fixture, or whatever a test writes), a real headless
 * Chromium, and pages opened on the dashboard in a fresh context each.
 *
 * @module
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { type DashServer, serve, type ServeOptions } from "../server.ts";
import { CHROMIUM, CHROMIUM_ARGS } from "./chromium.ts";
import { after, before } from "node:test";
import { type DashboardFixture, writeDashboardFixture } from "./fixtures/dashboard_fixture.ts";

/** How long a wait may last before the test fails (never a speed requirement). */
export const WAIT = { timeout: 30_000 };

/** The row of a run in the sidebar tree. */
export const row = (prefix: string): string => `[data-testid="experiment-row"][data-prefix="${prefix}"]`;
/** The chart card of a metric key. */
export const chart = (key: string): string => `[data-testid="chart"][data-key="${key}"]`;

/** A viewport: a desktop by default. */
export interface Viewport {
  /** CSS pixels. */
  width: number;
  /** CSS pixels. */
  height: number;
}

/** What {@linkcode DashboardBrowser.open} waits for and how the page is laid out. */
export interface OpenOptions {
  /** The page's viewport (default 1400×900). */
  viewport?: Viewport;
  /** A selector to wait for before the page counts as open (default: any tree row or the list's empty note). */
  ready?: string;
  /** A query string for the page's URL, e.g. `?access_token=T`. */
  search?: string;
}

/** A server over a temp root and a browser, with pages opened on the dashboard. */
export class DashboardBrowser {
  /** The `.dash` root the server serves. */
  readonly root: string;
  #server: DashServer | undefined;
  #browser: Browser | undefined;
  #context: BrowserContext | undefined;
  #options: Omit<ServeOptions, "root">;
  /** Errors the open page raised. */
  readonly errors: string[] = [];

  /**
   * A harness over a new temp root; call {@linkcode start} after writing experiments into it.
   *
   * @param options Server options besides the root (e.g. a token).
   */
  constructor(options: Omit<ServeOptions, "root"> = {}) {
    this.root = mkdtempSync(join(tmpdir(), "ml-dash-dashboard-"));
    this.#options = options;
  }

  /** The running server. */
  get server(): DashServer {
    if (!this.#server) throw new Error("The server is stopped: expected start() first");
    return this.#server;
  }

  /** Starts the server (on its former port, after {@linkcode stopServer}) and the browser. */
  async start(): Promise<void> {
    const port = this.#server?.port ?? 0;
    this.#server = await serve({ port, hostname: "127.0.0.1", quiet: true, ...this.#options, root: this.root });
    this.#browser ??= await chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS] });
  }

  /** Stops the server and keeps its port for {@linkcode startServer}. */
  async stopServer(): Promise<void> {
    await this.#server?.close();
  }

  /** Starts the server again on the port it had. */
  async startServer(): Promise<void> {
    const port = this.server.port;
    this.#server = await serve({ port, hostname: "127.0.0.1", quiet: true, ...this.#options, root: this.root });
  }

  /**
   * A fresh page on the dashboard (a new context: no stored settings), once its list has loaded.
   *
   * @param hash The URL's hash, e.g. `#run=alice/x`.
   * @param options Viewport, what to wait for, query string.
   * @returns The page.
   */
  async open(hash = "", options: OpenOptions = {}): Promise<Page> {
    await this.#context?.close();
    this.errors.length = 0;
    this.#context = await this.#browser!.newContext({ viewport: options.viewport ?? { width: 1400, height: 900 } });
    const page = await this.#context.newPage();
    page.on("pageerror", (error) => this.errors.push(error.message));
    await page.goto(`${this.server.url}/${options.search ?? ""}${hash}`);
    await page.waitForSelector(options.ready ?? '[data-testid="experiment-row"], [data-testid="experiment-list"] .empty', { state: "attached", ...WAIT });
    assert.deepEqual(this.errors, [], "the page raised no error while loading");
    return page;
  }

  /** Closes the page, the browser and the server, and removes the root. */
  async close(): Promise<void> {
    await this.#context?.close();
    await this.#browser?.close();
    await this.#server?.close();
    rmSync(this.root, { recursive: true, force: true });
  }
}

/**
 * Opens one run, then adds the others to the comparison with their checkboxes.
 *
 * @param page The dashboard.
 * @param prefixes The runs, the first opened alone.
 */
export async function selectRuns(page: Page, ...prefixes: string[]): Promise<void> {
  await page.click(`${row(prefixes[0])} .tree-name`);
  for (const prefix of prefixes.slice(1)) await page.click(`${row(prefix)} .select-box`);
  for (const prefix of prefixes) await page.waitForSelector(`${row(prefix)}[data-selected="true"]`, WAIT);
}

/**
 * A browser and a server over the dashboard fixture, for the suite it is called in: the
 * fixture (and what `more` writes) is made before the suite's tests, the server started,
 * and all of it closed after them.
 *
 * @param options The server's options.
 * @param more Writes more runs into the root before the server starts.
 * @returns The browser, whose server is up once the tests run.
 */
export function dashboardOverFixture(options: Omit<ServeOptions, "root"> = {}, more?: (root: string) => Promise<void>): DashboardBrowser {
  const dash = new DashboardBrowser(options);
  let fixture: DashboardFixture | undefined;
  before(async () => {
    fixture = await writeDashboardFixture(dash.root);
    await more?.(dash.root);
    await dash.start();
  });
  after(async () => {
    await fixture?.close().catch(() => {});
    await dash.close();
  });
  return dash;
}
