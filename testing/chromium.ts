/**
 * Debian's Chromium for the browser tests, started headless with the flags
 * this machine's closed network needs, and the reason to skip where it is
 * missing (never under CI, which installs it).
 *
 * @module
 */
import { existsSync } from "node:fs";

/** Where Debian's chromium package puts the browser. */
export const CHROMIUM = "/usr/bin/chromium";

/** Headless, no sandbox (tests run as root), and no background connections to the outside. */
export const CHROMIUM_ARGS: readonly string[] = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Why the browser tests are skipped here, or false where they run. */
export const missingChromium: string | false = !existsSync(CHROMIUM) && !process.env.CI
  ? `${CHROMIUM} is missing (install Debian's chromium package to run the browser tests; CI always runs them)`
  : false;
