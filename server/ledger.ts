/**
 * Which batches each experiment of a JSONL root has stored, so that a retried
 * batch is stored once, also across restarts and crashes.
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { isValidMetricName } from "../storage/backend.ts";
import type { Batch } from "../storage/backend.ts";
import { fileSystem } from "../storage/file_system.ts";
import { wholeLines } from "../storage/jsonl.ts";
import { experimentDir, experimentPath, FILES_INDEX, LOGS_FILE, metricEntry, PARAMETERS_LOG, replaceFileSync, SESSIONS_FILE, SESSIONS_LOG } from "../storage/layout.ts";

/**
 * Which (session, seq) pairs each experiment has stored, so that retries stay
 * idempotent across restarts: per session, `upTo` (every seq from 0 to it was
 * stored), the stored seqs above it, and the largest seq stored.
 *
 * On disk, `<experiment>/.sessions.json` holds the ledger as of its last
 * compaction, and `.sessions.jsonl` what happened since, one event a line: a
 * batch begins (`{"begin": sizes}`), is stored (`{"stored": [session, seq]}`)
 * or is undone (`{"undone": true}`). Two appends a batch cost far less than
 * replacing a file twice; a compaction folds the log into the snapshot every
 * {@linkcode COMPACT_EVERY} events and when the server closes.
 *
 * @example Record a batch and recognise its retry
 * ```ts
 * import { mkdtempSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { SessionLedger } from "./ledger.ts";
 *
 * const ledger = new SessionLedger(mkdtempSync(join(tmpdir(), "ledger-")), () => {});
 * ledger.begin("alice/p/run", ["metrics/train.jsonl"]);
 * ledger.add("alice/p/run", "s1", 0);
 * console.log(ledger.has("alice/p/run", "s1", 0)); // true
 * ledger.close();
 * ```
 */
export class SessionLedger {
  #root: string;
  #checkInside: (dir: string) => void;
  #cache = new Map<string, Ledger>();

  /**
   * Makes a ledger over a JSONL root.
   *
   * @param root The root directory.
   * @param checkInside Throws for a folder that a link would lead outside the root.
   */
  constructor(root: string, checkInside: (dir: string) => void) {
    this.#root = root;
    this.#checkInside = checkInside;
  }

  /**
   * Whether the batch is stored.
   *
   * @param prefix The experiment.
   * @param session The sender's session.
   * @param seq The batch's seq.
   * @returns True when it was recorded as stored.
   */
  has(prefix: string, session: string, seq: number): boolean {
    const s = this.#load(prefix).sessions[session];
    return s !== undefined && (seq <= s.upTo || s.above.includes(seq));
  }

  /**
   * The largest seq stored of a session.
   *
   * @param prefix The experiment.
   * @param session The session.
   * @returns The seq, or undefined when none is stored.
   */
  maxSeq(prefix: string, session: string): number | undefined {
    return this.#load(prefix).sessions[session]?.max;
  }

  /**
   * Notes the sizes of the files a batch appends to before it is applied. If the
   * server dies before `add()` records the batch, the next load cuts those files
   * back to these sizes, so that the client's retry is stored once, not twice.
   * (JSON state files are merged, so applying them again changes nothing.)
   *
   * @param prefix The experiment.
   * @param files The files the batch appends to, relative to its folder.
   */
  begin(prefix: string, files: string[]): void {
    const ledger = this.#load(prefix);
    const dir = this.#dir(prefix);
    this.#checkInside(dir);
    // A batch before this one is still noted as being applied (its roll-back failed): undo it first.
    if (ledger.applying) this.rollBack(prefix);
    fs.mkdirSync(dir, { recursive: true });
    const sizes: Record<string, number> = Object.create(null);
    for (const f of files) sizes[f] = fileSize(path.join(dir, f));
    this.#append(prefix, ledger, { begin: sizes });
    ledger.applying = sizes;
  }

  /**
   * Undoes a batch that a crash cut short, before anything reads the experiment (see `begin`).
   *
   * @param prefix The experiment.
   */
  recover(prefix: string): void {
    if (this.#cache.has(prefix)) return;
    if (fs.existsSync(this.#file(prefix)) || fs.existsSync(this.#log(prefix))) this.#load(prefix);
  }

  /**
   * Cuts the files of a batch that was not recorded back to their sizes before it.
   *
   * @param prefix The experiment.
   */
  rollBack(prefix: string): void {
    const ledger = this.#load(prefix);
    if (!ledger.applying) return;
    try {
      this.#cutBack(prefix, ledger.applying);
    } catch (error) {
      // The log still ends with the batch begun: the next load cuts back.
      this.#cache.delete(prefix);
      throw error;
    }
    delete ledger.applying;
    this.#append(prefix, ledger, { undone: true });
  }

  /**
   * Records a stored batch. If that cannot be noted on disk, the batch is
   * rolled back and the error rethrown: only a ledger that is on disk may later
   * answer "duplicate", since the next start undoes a batch it does not hold.
   *
   * @param prefix The experiment.
   * @param session The sender's session.
   * @param seq The batch's seq.
   */
  add(prefix: string, session: string, seq: number): void {
    const ledger = this.#load(prefix);
    const applying = ledger.applying;
    try {
      this.#append(prefix, ledger, { stored: [session, seq] });
    } catch (error) {
      // On disk the batch is still being applied: make the files match.
      this.#cutBack(prefix, applying ?? {});
      throw error;
    }
    delete ledger.applying;
    record(ledger, session, seq);
    if (ledger.events >= COMPACT_EVERY) this.#compactIfYouCan(prefix, ledger);
  }

  /** Folds the log of every ledger in memory into its snapshot, so that a restart reads one file. */
  close(): void {
    for (const [prefix, ledger] of this.#cache) {
      if (ledger.events > 0 && !ledger.applying) this.#compactIfYouCan(prefix, ledger);
    }
  }

  /** Compacts; a failure only leaves the log longer (it holds every event, and the next load folds it). */
  #compactIfYouCan(prefix: string, ledger: Ledger): void {
    try {
      this.#compact(prefix, ledger);
    } catch {
      // The log stays.
    }
  }

  /** Appends one event to the log; on failure the ledger in memory is forgotten (the next load reads the disk). */
  #append(prefix: string, ledger: Ledger, event: LedgerEvent): void {
    const file = this.#log(prefix);
    try {
      appendLine(file, JSON.stringify(event));
    } catch (error) {
      this.#cache.delete(prefix);
      throw error;
    }
    ledger.events++;
  }

  /** Writes the snapshot and empties the log. */
  #compact(prefix: string, ledger: Ledger): void {
    evictOldSessions(ledger);
    const snapshot: LedgerFile = { version: 1, sessions: ledger.sessions };
    if (ledger.applying) snapshot.applying = ledger.applying;
    try {
      replaceFileSync(fileSystem, this.#file(prefix), JSON.stringify(snapshot));
      fs.rmSync(this.#log(prefix), { force: true });
    } catch (error) {
      this.#cache.delete(prefix);
      throw error;
    }
    ledger.events = 0;
  }

  #cutBack(prefix: string, sizes: Record<string, number>): void {
    const dir = this.#dir(prefix);
    for (const [file, size] of Object.entries(sizes)) {
      // Sizes come from a file of the root: only files a batch appends to may be cut.
      if (!isAppendedFile(file) || !Number.isSafeInteger(size) || size < 0) continue;
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

  #log(prefix: string): string {
    return experimentPath(this.#root, prefix, SESSIONS_LOG);
  }

  #load(prefix: string): Ledger {
    let ledger = this.#cache.get(prefix);
    if (ledger) return ledger;
    // The ledger's own files may be planted too: nothing is read, cut or written through a link out of the root.
    this.#checkInside(this.#dir(prefix));
    ledger = readSnapshot(this.#file(prefix));
    const events = readLog(this.#log(prefix));
    for (const event of events) fold(ledger, event);
    ledger.events = events.length;
    if (ledger.applying) {
      // The last batch was cut short by a crash: undo what it appended, and say so on disk.
      this.#cutBack(prefix, ledger.applying);
      delete ledger.applying;
      try {
        this.#compact(prefix, ledger);
      } catch {
        // The log still ends with the batch begun: the next load cuts back again, to the same sizes.
      }
    }
    this.#cache.set(prefix, ledger);
    if (this.#cache.size > MAX_CACHED_LEDGERS) this.#cache.delete(this.#cache.keys().next().value!);
    return ledger;
  }
}

/** Events in the log between compactions. */
export const COMPACT_EVERY = 1_000;

type Sessions = Record<string, { upTo: number; above: number[]; max: number; at: number }>;

interface LedgerFile {
  version: 1;
  sessions: Sessions;
  /** While a batch is being applied: the sizes its append-only files had before. */
  applying?: Record<string, number>;
}

/** A ledger in memory: the snapshot with the log folded in, and how long the log is. */
interface Ledger extends LedgerFile {
  events: number;
}

type LedgerEvent = { begin: Record<string, number> } | { stored: [string, number] } | { undone: true };

function readSnapshot(file: string): Ledger {
  let parsed: Partial<LedgerFile> | undefined;
  try {
    parsed = JSON.parse(fs.readFileSync(file, "utf8"));
    if (typeof parsed?.sessions !== "object" || parsed.sessions === null) parsed = undefined;
  } catch {
    parsed = undefined;
  }
  // Session ids are names from clients: a null prototype keeps "__proto__" an ordinary key.
  const ledger: Ledger = { version: 1, sessions: Object.assign(Object.create(null), parsed?.sessions), events: 0 };
  if (parsed?.applying) ledger.applying = parsed.applying;
  return ledger;
}

/** The events of a log; a torn last line (a crash or a full disk mid-append) is cut off the file. */
function readLog(file: string): LedgerEvent[] {
  const { lines, bytes, torn } = wholeLines(file);
  if (torn) fs.truncateSync(file, bytes);
  const events: LedgerEvent[] = [];
  for (const line of lines) {
    if (line === "") continue;
    try {
      events.push(JSON.parse(line));
    } catch {
      // A line that is not whole JSON (a torn write in the middle, edited by hand) tells nothing.
    }
  }
  return events;
}

function fold(ledger: Ledger, event: LedgerEvent): void {
  if ("begin" in event) ledger.applying = event.begin;
  else if ("stored" in event) {
    delete ledger.applying;
    record(ledger, event.stored[0], event.stored[1]);
  } else delete ledger.applying;
}

function record(ledger: Ledger, session: string, seq: number): void {
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
}

function evictOldSessions(ledger: Ledger): void {
  const ids = Object.keys(ledger.sessions);
  if (ids.length <= MAX_SESSIONS) return;
  ids.sort((a, b) => ledger.sessions[a].at - ledger.sessions[b].at);
  for (const id of ids.slice(0, ids.length - MAX_SESSIONS)) delete ledger.sessions[id];
}

/**
 * Appends a line in one write. A write cut short (a full disk) is taken back
 * and throws; if even that fails, the torn line is cut off at the next load.
 */
function appendLine(file: string, line: string): void {
  const bytes = Buffer.from(line + "\n");
  const fd = fs.openSync(file, "a");
  try {
    const size = fs.fstatSync(fd).size;
    const written = fs.writeSync(fd, bytes);
    if (written < bytes.length) {
      fs.ftruncateSync(fd, size);
      throw Object.assign(new Error(`ENOSPC: no space left on device, ${written} of ${bytes.length} bytes of a ledger line written`), { code: "ENOSPC" });
    }
  } finally {
    fs.closeSync(fd);
  }
}

const MAX_SESSIONS = 10_000;
/** Ledgers kept in memory; the oldest loaded is dropped first (it is on disk). */
const MAX_CACHED_LEDGERS = 1_000;
const MAX_SEQS_ABOVE = 10_000;

/** Whether a name is one {@linkcode appendedFiles} gives. */
function isAppendedFile(file: string): boolean {
  if (file === LOGS_FILE || file === PARAMETERS_LOG || file === FILES_INDEX) return true;
  const metric = /^metrics\/(.+)\.jsonl$/.exec(file)?.[1];
  return metric !== undefined && isValidMetricName(metric) && metricEntry(metric) === file;
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
