/**
 * Reading what a test wrote, and capturing warnings.
 *
 * @module
 */
import * as fs from "node:fs";

/**
 * A JSON file's content.
 *
 * @param file The file.
 * @returns The parsed object.
 */
export function readJson(file: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(file, "utf8"));
}

/**
 * The records of a JSONL file; none if it is missing.
 *
 * @param file The file.
 * @returns One object a line.
 */
export function readLines(file: string): Record<string, unknown>[] {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

/**
 * Runs `fn` with console.warn captured.
 *
 * @param fn The work.
 * @returns The warnings it printed.
 */
export async function captureWarnings(fn: () => unknown): Promise<string[]> {
  const warnings: string[] = [];
  const original = console.warn;
  console.warn = (...args: unknown[]) => warnings.push(args.join(" "));
  try {
    await fn();
  } finally {
    console.warn = original;
  }
  return warnings;
}
