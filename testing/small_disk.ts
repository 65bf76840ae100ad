/**
 * A real disk that fills up, for tests: a small tmpfs mounted at a temp dir
 * (root only), and a file that fills it.
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { tempDir } from "./temp.ts";

/** Why the tests that mount a tmpfs are skipped here, or false where they run (as root, and always under CI). */
export const canMount: string | false = process.getuid?.() === 0 || process.env.CI ? false : "mounting a tmpfs needs root (CI runs as root)";

/**
 * Mounts a tmpfs of `size` at a new temp dir.
 *
 * @param size A tmpfs size, e.g. `1m`.
 * @returns The dir and how to unmount it; undefined where mounting is not allowed.
 */
export function smallDisk(size: string): { dir: string; unmount(): void } | undefined {
  const dir = tempDir("disk");
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "ignore" });
  } catch {
    return undefined;
  }
  return { dir, unmount: () => execFileSync("umount", ["-l", dir], { stdio: "ignore" }) };
}

/**
 * Fills the disk of `dir` with one file, then frees `pages` pages of 4 KiB of it.
 *
 * @param dir A folder on the disk.
 * @param pages Pages to leave free.
 * @returns The filler file.
 */
export function fillDisk(dir: string, pages: number): string {
  const filler = path.join(dir, "filler");
  const fd = fs.openSync(filler, "w");
  const block = new Uint8Array(4096);
  let size = 0;
  try {
    for (;;) size += fs.writeSync(fd, block);
  } catch {
    // ENOSPC: the disk is full.
  }
  fs.ftruncateSync(fd, Math.max(0, size - pages * 4096));
  fs.closeSync(fd);
  return filler;
}
