/**
 * Helpers the tests share: a fresh temporary directory and a pause.
 *
 * @example
 * ```ts
 * import { sleep, tempDir } from "./temp.ts";
 *
 * const dir = tempDir("example");
 * await sleep(1);
 * console.log(dir.includes("ml-dash-example-")); // true
 * ```
 *
 * @module
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/**
 * A new empty directory under the system's temp folder.
 *
 * @param label A word that names the test file in the directory's name.
 * @returns Its path.
 */
export function tempDir(label: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `ml-dash-${label}-`));
}

/**
 * Resolves after `ms` milliseconds.
 *
 * @param ms How long to wait.
 * @returns A promise that resolves then.
 */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
