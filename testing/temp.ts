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
import process from "node:process";

/**
 * A new empty directory under the system's temp folder, removed when the process exits.
 *
 * @param label A word that names the test file in the directory's name.
 * @returns Its path.
 */
export function tempDir(label: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `ml-dash-${label}-`));
  removeAtExit(dir);
  return dir;
}

const made = new Set<string>();

// A suite run makes thousands of these (some of hundreds of MB): left behind, they fill the disk.
function removeAtExit(dir: string): void {
  if (made.size === 0) {
    // `deno test` never emits node:process's "exit"; it dispatches "unload".
    if ("Deno" in globalThis) globalThis.addEventListener("unload", removeMade);
    else process.on("exit", removeMade);
  }
  made.add(dir);
}

function removeMade(): void {
  for (const dir of made) {
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      // A folder a test made unreadable, or a mount still in use: the system's temp cleaning takes it.
    }
  }
  made.clear();
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
