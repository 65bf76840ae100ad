/**
 * Which batches each experiment of a JSONL root has stored, so that a retried
 * batch is stored once, also across restarts and crashes.
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Batch } from "../storage/backend.ts";
import { fileSystem } from "../storage/file_system.ts";
import { experimentDir, experimentPath, FILES_INDEX, LOGS_FILE, metricEntry, PARAMETERS_LOG, replaceFileSync, SESSIONS_FILE } from "../storage/layout.ts";

/**
 * Which (session, seq) pairs each experiment has stored, kept in
 * `<experiment>/.sessions.json` so that retries stay idempotent across restarts:
 * per session, `upTo` (every seq from 0 to it was stored), the stored seqs above
 * it, and the largest seq stored.
 */
export class SessionLedger {
  #root: string;
  #checkInside: (dir: string) => void;
  #cache = new Map<string, LedgerFile>();

  /** `checkInside` throws for a folder that a link would lead outside the root. */
  constructor(root: string, checkInside: (dir: string) => void) {
    this.#root = root;
    this.#checkInside = checkInside;
  }

  has(prefix: string, session: string, seq: number): boolean {
    const s = this.#load(prefix).sessions[session];
    return s !== undefined && (seq <= s.upTo || s.above.includes(seq));
  }

  maxSeq(prefix: string, session: string): number | undefined {
    return this.#load(prefix).sessions[session]?.max;
  }

  /**
   * Notes the sizes of the files a batch appends to before it is applied. If the
   * server dies before `add()` records the batch, the next load cuts those files
   * back to these sizes, so that the client's retry is stored once, not twice.
   * (JSON state files are merged, so applying them again changes nothing.)
   */
  begin(prefix: string, files: string[]): void {
    const ledger = this.#load(prefix);
    const dir = this.#dir(prefix);
    this.#checkInside(dir);
    fs.mkdirSync(dir, { recursive: true });
    ledger.applying = Object.fromEntries(files.map((f) => [f, fileSize(path.join(dir, f))]));
    this.#save(prefix, ledger);
  }

  /** Undoes a batch that a crash cut short, before anything reads the experiment (see `begin`). */
  recover(prefix: string): void {
    if (!this.#cache.has(prefix) && fs.existsSync(this.#file(prefix))) this.#load(prefix);
  }

  /** Cuts the files of a batch that was not recorded back to their sizes before it. */
  rollBack(prefix: string): void {
    const ledger = this.#load(prefix);
    this.#undoApplying(prefix, ledger);
    this.#save(prefix, ledger);
  }

  /**
   * Records a stored batch. If the ledger cannot be saved, the batch is rolled
   * back and the error rethrown: only a ledger that is on disk may later answer
   * "duplicate", since the next start undoes a batch the saved ledger does not hold.
   */
  add(prefix: string, session: string, seq: number): void {
    const ledger = this.#load(prefix);
    const applying = ledger.applying;
    delete ledger.applying;
    const s = ledger.sessions[session] ??= { upTo: -1, above: [], max: -1, at: 0 };
    s.at = Date.now() / 1000;
    s.max = Math.max(s.max, seq);
    if (seq === s.upTo + 1) {
      s.upTo = seq;
      s.above.sort((a, b) => a - b);
      while (s.above.length > 0 && s.above[0] <= s.upTo + 1) {
        s.upTo = Math.max(s.upTo, s.above.shift()!);
      }
    } else if (seq > s.upTo) {
      s.above.push(seq);
      if (s.above.length > MAX_SEQS_ABOVE) s.above.splice(0, s.above.length - MAX_SEQS_ABOVE);
    }
    const ids = Object.keys(ledger.sessions);
    if (ids.length > MAX_SESSIONS) {
      ids.sort((a, b) => ledger.sessions[a].at - ledger.sessions[b].at);
      for (const id of ids.slice(0, ids.length - MAX_SESSIONS)) delete ledger.sessions[id];
    }
    try {
      this.#save(prefix, ledger);
    } catch (error) {
      // The ledger on disk still notes the batch as being applied: make the files match it.
      this.#cutBack(prefix, applying ?? {});
      throw error;
    }
  }

  #save(prefix: string, ledger: LedgerFile): void {
    try {
      replaceFileSync(fileSystem, this.#file(prefix), JSON.stringify(ledger));
    } catch (error) {
      // What is in memory is not on disk: forget it, the next load reads the disk's.
      this.#cache.delete(prefix);
      throw error;
    }
  }

  #undoApplying(prefix: string, ledger: LedgerFile): void {
    if (!ledger.applying) return;
    this.#cutBack(prefix, ledger.applying);
    delete ledger.applying;
  }

  #cutBack(prefix: string, sizes: Record<string, number>): void {
    const dir = this.#dir(prefix);
    for (const [file, size] of Object.entries(sizes)) {
      const full = path.join(dir, file);
      if (fileSize(full) > size) fs.truncateSync(full, size);
    }
  }

  #dir(prefix: string): string {
    return experimentDir(this.#root, prefix);
  }

  #file(prefix: string): string {
    return experimentPath(this.#root, prefix, SESSIONS_FILE);
  }

  #load(prefix: string): LedgerFile {
    let ledger = this.#cache.get(prefix);
    if (ledger) return ledger;
    try {
      ledger = JSON.parse(fs.readFileSync(this.#file(prefix), "utf8")) as LedgerFile;
      if (typeof ledger?.sessions !== "object" || ledger.sessions === null) ledger = undefined;
    } catch {
      ledger = undefined;
    }
    // Session ids are names from clients: a null prototype keeps "__proto__" an ordinary key.
    ledger = { version: 1, sessions: Object.assign(Object.create(null), ledger?.sessions), applying: ledger?.applying };
    if (ledger.applying) {
      // The last batch was cut short by a crash: undo what it appended.
      this.#undoApplying(prefix, ledger);
      this.#save(prefix, ledger);
    } else {
      delete ledger.applying;
    }
    this.#cache.set(prefix, ledger);
    if (this.#cache.size > MAX_CACHED_LEDGERS) this.#cache.delete(this.#cache.keys().next().value!);
    return ledger;
  }
}

const MAX_SESSIONS = 10_000;
/** Ledgers kept in memory; the oldest loaded is dropped first (it is on disk). */
const MAX_CACHED_LEDGERS = 1_000;
const MAX_SEQS_ABOVE = 10_000;

interface LedgerFile {
  version: 1;
  sessions: Record<string, { upTo: number; above: number[]; max: number; at: number }>;
  /** While a batch is being applied: the sizes its append-only files had before. */
  applying?: Record<string, number>;
}

/** The append-only files a batch adds lines to, relative to its experiment's folder. */
export function appendedFiles(batch: Batch): string[] {
  const files = Object.keys(batch.metrics ?? {}).map(metricEntry);
  if (batch.logs) files.push(LOGS_FILE);
  if (batch.params) files.push(PARAMETERS_LOG);
  if (batch.files) files.push(FILES_INDEX);
  return files;
}


function fileSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}
