/**
 * The read index of a metric file: what a summary, a chart and a zoom need,
 * kept beside the JSONL (which stays the truth) so that they read a few
 * kilobytes instead of decoding every record.
 *
 * The records of a metric file are cut into blocks of {@linkcode BLOCK_RECORDS}
 * records counted from the file's start. A block holds its byte range, the
 * range of its steps and times and, per key, the count, the finite min and max,
 * the last value and step, and the points a min-max chart keeps (the lowest and
 * highest value with their step, time and place). The index file has one JSON
 * array a line per block; a line for a block's first records is replaced by a
 * later line for the same block with more of them.
 *
 * An index is only trusted where it checks out: lines must follow each other
 * (a block starts where the one before ended, with the next record number),
 * none may reach past the end of the JSONL, and the last indexed line of the
 * JSONL must be where the index says, with the same hash. Whatever the index
 * lacks (a crash lost the last block, another process or a script appended
 * lines) is read from the JSONL; an index that does not check out (a file
 * edited by hand, truncated, replaced) is rebuilt from it.
 *
 * @example Index a metric file and summarise it
 * ```ts
 * import { mkdtempSync, writeFileSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { loadIndex, summarize } from "./read_index.ts";
 *
 * const file = join(mkdtempSync(join(tmpdir(), "index-")), "train.jsonl");
 * writeFileSync(file, '{"_ts":1,"step":0,"loss":1}\n{"_ts":2,"step":1,"loss":0.5}\n');
 * const { index } = loadIndex(file);
 * console.log(summarize(index.blocks()).get("loss")); // { count: 2, min: 0.5, max: 1, last: 0.5, lastStep: 1 }
 * ```
 *
 * @module
 */
import { fileSystem } from "./file_system.ts";
import { metricIndexPath, replaceFileSync } from "./layout.ts";
import type { ChunkFigures, KeyFigures } from "./chunk_figures.ts";
import { fieldNames, fieldValues, parseNumber, scanFlatRecord, toNumber } from "./record_text.ts";
import { minMaxPlaces } from "./downsample.ts";

/** Records a block holds (the last block of a file may hold fewer). */
export const BLOCK_RECORDS = 1024;

/** The first element of every index line: a line of another format is not read. */
const FORMAT = 1;

/** Count, min, max and last value of a key (min and max ignore non-finite values). */
export interface KeySummary {
  /** How many values. */
  count: number;
  /** Smallest finite value. */
  min: number | null;
  /** Largest finite value. */
  max: number | null;
  /** The last value. */
  last: number | null;
  /** The last step. */
  lastStep: number | null;
}

/** One key in one block. */
export interface KeyBlock {
  /** How many records of the block have the key. */
  count: number;
  /** The smallest finite value, or null. */
  min: number | null;
  /** The largest finite value, or null. */
  max: number | null;
  /** The last value. */
  last: number;
  /** The last value's step (null where its record had none). */
  lastStep: number | null;
  /** The lowest value a chart keeps: the smallest that is not NaN (the first of equals), or the first value where all are NaN. */
  lo: number;
  /** Its step (NaN if none). */
  loStep: number;
  /** Its time. */
  loTs: number;
  /** Its record's place in the block. */
  loAt: number;
  /** The highest value a chart keeps, as `lo`. */
  hi: number;
  /** Its step. */
  hiStep: number;
  /** Its time. */
  hiTs: number;
  /** Its record's place in the block. */
  hiAt: number;
}

/** A block of records of a metric file. */
export interface IndexBlock {
  /** The number of its first record in the file (0, BLOCK_RECORDS, ...). */
  first: number;
  /** Its first byte. */
  start: number;
  /** The byte after its last record's newline. */
  end: number;
  /** How many records it holds. */
  records: number;
  /** The bytes of its last record's line, with the newline. */
  lastLength: number;
  /** The hash of its last record's line ({@linkcode lineHash}). */
  lastHash: number;
  /** The smallest step of its records, NaN where a record has none. */
  stepMin: number;
  /** The largest step, NaN where a record has none. */
  stepMax: number;
  /** The earliest `_ts`, NaN where a record has none. */
  tsMin: number;
  /** The latest `_ts`, NaN where a record has none. */
  tsMax: number;
  /** Its keys (no `_ts`, no `step`). */
  keys: Map<string, KeyBlock>;
}

/**
 * FNV-1a over the UTF-16 units of a line (without its newline): what the
 * index keeps of a block's last line, to see that the JSONL still has it there.
 *
 * @param text The text.
 * @param start The line's start.
 * @param end The line's end.
 * @returns A 32-bit hash.
 *
 * @example
 * ```ts
 * import { lineHash } from "./read_index.ts";
 *
 * console.log(lineHash('{"a":1}', 0, 7) === lineHash('x{"a":1}', 1, 8)); // true
 * ```
 */
export function lineHash(text: string, start: number, end: number): number {
  let hash = 0x811c9dc5;
  for (let i = start; i < end; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return hash >>> 0;
}

/** UTF-8 bytes of `text.slice(start, end)`. */
function utf8Length(text: string, start: number, end: number): number {
  let bytes = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes++;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < end) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

function newBlock(first: number, start: number): IndexBlock {
  return {
    first,
    start,
    end: start,
    records: 0,
    lastLength: 0,
    lastHash: 0,
    stepMin: Infinity,
    stepMax: -Infinity,
    tsMin: Infinity,
    tsMax: -Infinity,
    keys: new Map(),
  };
}

/**
 * The index of one metric file as far as it is read: complete blocks and the
 * block being filled. Fed whole lines of the JSONL with their byte offset, by
 * the writer (the lines it appends) and by the reader (lines the index lacks).
 *
 * @example Feed lines and read the blocks
 * ```ts
 * import { MetricIndex } from "./read_index.ts";
 *
 * const index = new MetricIndex();
 * const text = '{"step":0,"loss":2}\n{"step":1,"loss":1}\n';
 * index.feed(text, 0, text.length, true);
 * console.log(index.bytes, index.records, index.blocks()[0].keys.get("loss")?.min); // 40 2 1
 * ```
 */
export class MetricIndex {
  readonly #complete: IndexBlock[] = [];
  #open: IndexBlock;
  /** Complete blocks not yet handed out by {@linkcode takeCompleted}. */
  #completedSince = 0;
  /** The open block's last line, hashed when the block is closed or written. */
  #lastText = "";
  #lastStart = 0;
  #lastEnd = 0;
  #lastPending = false;
  /** Key stats of the open block by field place in the last record: a record like the one before costs no Map lookup. */
  #slotNames: (string | undefined)[] = [];
  #slotKeys: KeyBlock[] = [];

  /**
   * Starts an index at `blocks` (read from an index file and checked), the last one to be filled further if not full.
   *
   * @param blocks Blocks that follow each other, from the file's start (or from a block a writer resumes at).
   */
  constructor(blocks: readonly IndexBlock[] = []) {
    const last = blocks.at(-1);
    const full = last === undefined || last.records >= BLOCK_RECORDS;
    this.#complete.push(...(full ? blocks : blocks.slice(0, -1)));
    this.#completedSince = this.#complete.length;
    this.#open = full ? newBlock(last ? last.first + last.records : 0, last?.end ?? 0) : reopened(last);
  }

  /** The bytes of the JSONL indexed. */
  get bytes(): number {
    return this.#open.end;
  }

  /** The records indexed. */
  get records(): number {
    return this.#open.first + this.#open.records;
  }

  /**
   * The blocks, the one being filled last (if it holds a record).
   *
   * @returns The blocks in file order.
   */
  blocks(): IndexBlock[] {
    this.#settleLast();
    return this.#open.records > 0 ? [...this.#complete, this.#open] : [...this.#complete];
  }

  /**
   * The blocks completed since the last call (for the writer to append to the index file).
   *
   * @returns Complete blocks, in file order.
   */
  takeCompleted(): IndexBlock[] {
    const taken = this.#complete.slice(this.#completedSince);
    this.#completedSince = this.#complete.length;
    return taken;
  }

  /**
   * The block being filled, if it holds a record (written at close, to be replaced once it is full).
   *
   * @returns The block, or undefined.
   */
  openBlock(): IndexBlock | undefined {
    this.#settleLast();
    return this.#open.records > 0 ? this.#open : undefined;
  }

  /**
   * Indexes `text`, the lines at byte `offset` of the JSONL. The lines are
   * separated by newlines; with `ended`, `text` ends with one, else one
   * follows it in the file (the writer's chunks).
   *
   * @param text Lines of the JSONL.
   * @param offset The byte of the file where `text` starts; must be {@linkcode bytes}.
   * @param byteLength The UTF-8 bytes of `text` (without the newline that follows it when not `ended`).
   * @param ended Whether `text` ends with its newline.
   */
  feed(text: string, offset: number, byteLength: number, ended: boolean): void {
    const ascii = byteLength === text.length;
    const length = text.length;
    for (let start = 0; start < length || (!ended && start === length && length > 0);) {
      let nl = text.indexOf("\n", start);
      if (nl === -1) {
        if (ended) break;
        nl = length;
      }
      if (nl > start) this.#record(text, start, nl);
      if (this.#open.records === BLOCK_RECORDS) {
        const end = offset + (ascii ? nl : utf8Length(text, 0, nl)) + 1;
        this.#close(end);
      }
      start = nl + 1;
    }
    this.#open.end = offset + byteLength + (ended ? 0 : 1);
  }

  /**
   * Whether a chunk of `records` records at the end of the index stays in the block being filled.
   *
   * @param records The chunk's records.
   * @returns Whether {@linkcode take} can index it.
   */
  fits(records: number): boolean {
    return records > 0 && this.#open.records + records <= BLOCK_RECORDS;
  }

  /**
   * Indexes a chunk of lines at byte `offset` (followed by a newline in the
   * file) from the figures its writer kept, instead of its text: what
   * {@linkcode feed} would find in it. The chunk must {@linkcode fits}.
   *
   * @param figures The chunk's figures.
   * @param lastLine The chunk's last line.
   * @param offset The byte of the file where the chunk starts; must be {@linkcode bytes}.
   * @param byteLength The chunk's UTF-8 bytes, without the newline after it.
   */
  take(figures: ChunkFigures, lastLine: string, offset: number, byteLength: number): void {
    this.#settleLast();
    const block = this.#open;
    const base = block.records;
    block.records += figures.records;
    block.stepMin = Math.min(block.stepMin, figures.stepMin);
    block.stepMax = block.stepMin !== block.stepMin ? NaN : Math.max(block.stepMax, figures.stepMax);
    block.tsMin = Math.min(block.tsMin, figures.tsMin);
    block.tsMax = block.tsMin !== block.tsMin ? NaN : Math.max(block.tsMax, figures.tsMax);
    for (const f of figures.keys) {
      let key = block.keys.get(f.name);
      if (key === undefined) block.keys.set(f.name, key = newKey());
      mergeFigures(key, f, base);
    }
    this.#slotNames = [];
    this.#slotKeys = [];
    this.#lastText = lastLine;
    this.#lastStart = 0;
    this.#lastEnd = lastLine.length;
    this.#lastPending = true;
    const end = offset + byteLength + 1;
    if (block.records === BLOCK_RECORDS) this.#close(end);
    else block.end = end;
  }

  /**
   * Indexes the whole lines of `file` from {@linkcode bytes} to byte `to`
   * (a torn last line is left for later).
   *
   * @param file The JSONL file.
   * @param to Where to stop.
   * @returns How many records were read.
   */
  scanFile(file: string, to: number): number {
    const before = this.records;
    forEachWholeText(file, this.bytes, to, (text, offset, byteLength) => this.feed(text, offset, byteLength, true));
    return this.records - before;
  }

  #record(text: string, start: number, end: number): void {
    let count = scanRecord(text, start, end);
    if (count < 0) {
      count = scanFlatRecord(text, start, end);
      if (count < 0) count = parseRecord(text.slice(start, end));
      fieldApproximate.fill(false);
    }
    const block = this.#open;
    const at = block.records++;
    this.#lastText = text;
    this.#lastStart = start;
    this.#lastEnd = end;
    this.#lastPending = true;
    let step = NaN;
    let ts = NaN;
    let hasStep = false;
    for (let i = 0; i < count; i++) {
      const name = fieldNames[i];
      if (name === "step") {
        step = fieldValues[i];
        hasStep = true;
      } else if (name === "_ts") ts = fieldValues[i];
    }
    // NaN spreads: a block with a record without a step has no step range a zoom can trust.
    block.stepMin = step < block.stepMin || step !== step ? step : block.stepMin;
    block.stepMax = step > block.stepMax || step !== step ? step : block.stepMax;
    block.tsMin = ts < block.tsMin || ts !== ts ? ts : block.tsMin;
    block.tsMax = ts > block.tsMax || ts !== ts ? ts : block.tsMax;
    if (block.stepMin !== block.stepMin) block.stepMax = NaN;
    if (block.tsMin !== block.tsMin) block.tsMax = NaN;
    for (let i = 0; i < count; i++) {
      const name = fieldNames[i];
      if (name === "step" || name === "_ts") continue;
      let key: KeyBlock | undefined;
      if (this.#slotNames[i] === name) key = this.#slotKeys[i];
      else {
        key = block.keys.get(name);
        if (key === undefined) block.keys.set(name, key = newKey());
        this.#slotNames[i] = name;
        this.#slotKeys[i] = key;
      }
      addValue(key as LazyKey, fieldValues[i], fieldApproximate[i] ? text : undefined, fieldStarts[i], fieldEnds[i], hasStep ? step : null, ts, at);
    }
  }

  #close(end: number): void {
    const block = this.#open;
    block.end = end;
    this.#settleLast();
    this.#complete.push(block);
    this.#open = newBlock(block.first + block.records, end);
    this.#slotNames = [];
    this.#slotKeys = [];
  }

  /** Reads exactly the approximated figures of the open block's keys, and hashes its last line, once. */
  #settleLast(): void {
    for (const key of this.#open.keys.values()) if ((key as LazyKey).lazy !== 0) settleKey(key as LazyKey);
    if (!this.#lastPending) return;
    this.#lastPending = false;
    const block = this.#open;
    block.lastHash = lineHash(this.#lastText, this.#lastStart, this.#lastEnd);
    block.lastLength = utf8Length(this.#lastText, this.#lastStart, this.#lastEnd) + 1;
    this.#lastText = "";
  }
}

/**
 * A key of the block being filled: a figure taken from an approximated value
 * keeps where its text is, and is read exactly when the block is settled.
 */
interface LazyKey extends KeyBlock {
  /** Which figures are approximations: bits MIN, MAX, LO, HI, LAST. */
  lazy: number;
  texts: string[];
  starts: number[];
  ends: number[];
}

const MIN = 0;
const MAX = 1;
const LO = 2;
const HI = 3;
const LAST = 4;

/** Values this close (relative) may compare either way as approximations: their text decides. */
const APPROXIMATE = 1e-14;

/** A block read from an index file, to be filled further: its keys become ones that can take approximated values. */
function reopened(block: IndexBlock): IndexBlock {
  const keys = new Map<string, KeyBlock>();
  for (const [name, key] of block.keys) keys.set(name, { ...newKey(), ...key, lazy: 0 } as LazyKey);
  return { ...block, keys };
}

function newKey(): LazyKey {
  return {
    count: 0, min: null, max: null, last: NaN, lastStep: null, lo: NaN, loStep: NaN, loTs: NaN, loAt: -1, hi: NaN, hiStep: NaN, hiTs: NaN, hiAt: -1,
    lazy: 0, texts: ["", "", "", "", ""], starts: [0, 0, 0, 0, 0], ends: [0, 0, 0, 0, 0],
  };
}

function figure(key: KeyBlock, which: number): number | null {
  return which === MIN ? key.min : which === MAX ? key.max : which === LO ? (key.loAt < 0 ? null : key.lo) : which === HI ? (key.hiAt < 0 ? null : key.hi) : key.last;
}

function setFigure(key: KeyBlock, which: number, value: number): void {
  if (which === MIN) key.min = value;
  else if (which === MAX) key.max = value;
  else if (which === LO) key.lo = value;
  else if (which === HI) key.hi = value;
  else key.last = value;
}

/** Reads figure `which` of `key` exactly from its text. */
function exactFigure(key: LazyKey, which: number): void {
  const bit = 1 << which;
  if ((key.lazy & bit) === 0) return;
  key.lazy &= ~bit;
  setFigure(key, which, Number(key.texts[which].slice(key.starts[which], key.ends[which])));
  key.texts[which] = "";
}

function settleKey(key: LazyKey): void {
  for (let which = MIN; which <= LAST; which++) exactFigure(key, which);
}

/** Notes that figure `which` now comes from `text` (an approximation), or from an exact value. */
function markFigure(key: LazyKey, which: number, text: string | undefined, start: number, end: number): void {
  if (text === undefined) {
    if ((key.lazy & (1 << which)) !== 0) {
      key.lazy &= ~(1 << which);
      key.texts[which] = "";
    }
    return;
  }
  key.lazy |= 1 << which;
  key.texts[which] = text;
  key.starts[which] = start;
  key.ends[which] = end;
}

/**
 * Reads exactly the figures within APPROXIMATE of `value` that are
 * approximations, and `value` itself if it is one and comes that close to a
 * figure; returns `value` as it is to be compared, or NaN where it stays an
 * approximation (then the caller keeps it as it was).
 */
function settleTies(key: LazyKey, value: number, text: string | undefined, start: number, end: number): number {
  let exact = text === undefined;
  for (let which = MIN; which <= HI; which++) {
    const current = figure(key, which);
    if (current === null || current !== current || (exact && text === undefined && (key.lazy & (1 << which)) === 0)) continue;
    if (Math.abs(value - current) > APPROXIMATE * Math.max(Math.abs(value), Math.abs(current))) continue;
    if (!exact) {
      value = Number(text!.slice(start, end));
      exact = true;
    }
    exactFigure(key, which);
  }
  return exact ? value : NaN;
}

/**
 * Adds a value to a key of the open block. `text` is given where `value` is
 * an approximation (its exact text is `text.slice(start, end)`): it compares
 * as it is unless it comes within APPROXIMATE of a figure it may replace, when
 * both are read exactly first.
 */
function addValue(key: LazyKey, value: number, text: string | undefined, start: number, end: number, step: number | null, ts: number, at: number): void {
  if (text !== undefined || key.lazy !== 0) {
    // Most values are far from every figure: one test for all four before looking closer.
    const near = APPROXIMATE * 2 * Math.abs(value);
    if (Math.abs(value - (key.min ?? Infinity)) <= near || Math.abs(value - (key.max ?? Infinity)) <= near || Math.abs(value - key.lo) <= near || Math.abs(value - key.hi) <= near) {
      const settled = settleTies(key, value, text, start, end);
      if (settled === settled) {
        value = settled;
        text = undefined;
      }
    }
  }
  key.count++;
  key.last = value;
  key.lastStep = step;
  markFigure(key, LAST, text, start, end);
  if (value - value === 0) {
    if (key.min === null || value < key.min) {
      key.min = value;
      markFigure(key, MIN, text, start, end);
    }
    if (key.max === null || value > key.max) {
      key.max = value;
      markFigure(key, MAX, text, start, end);
    }
  }
  const x = step ?? NaN;
  if (key.loAt < 0 || (value === value && (key.lo !== key.lo || value < key.lo))) {
    key.lo = value;
    key.loStep = x;
    key.loTs = ts;
    key.loAt = at;
    markFigure(key, LO, text, start, end);
  }
  if (key.hiAt < 0 || (value === value && (key.hi !== key.hi || value > key.hi))) {
    key.hi = value;
    key.hiStep = x;
    key.hiTs = ts;
    key.hiAt = at;
    markFigure(key, HI, text, start, end);
  }
}

/** Adds a chunk's figures of a key (exact values, places from `base`) to the key in the open block, whose figures are exact (settled). */
function mergeFigures(key: KeyBlock, f: KeyFigures, base: number): void {
  if (f.count === 0) return;
  key.count += f.count;
  key.last = f.last;
  key.lastStep = f.lastStep;
  if (f.min !== Infinity && (key.min === null || f.min < key.min)) key.min = f.min;
  if (f.max !== -Infinity && (key.max === null || f.max > key.max)) key.max = f.max;
  if (key.loAt < 0 || (f.lo === f.lo && (key.lo !== key.lo || f.lo < key.lo))) {
    key.lo = f.lo;
    key.loStep = f.loStep;
    key.loTs = f.loTs;
    key.loAt = base + f.loAt;
  }
  if (key.hiAt < 0 || (f.hi === f.hi && (key.hi !== key.hi || f.hi > key.hi))) {
    key.hi = f.hi;
    key.hiStep = f.hiStep;
    key.hiTs = f.hiTs;
    key.hiAt = base + f.hiAt;
  }
}

/** 10^0 … 10^22: every one is exact as a double. */
const POWERS_OF_TEN = Array.from({ length: 23 }, (_, i) => 10 ** i);

/** Per field of the record scanRecord read last: whether its value is an approximation, and where its text is. */
const fieldApproximate: boolean[] = [];
const fieldStarts: number[] = [];
const fieldEnds: number[] = [];

/**
 * scanFlatRecord for the records the library writes, in one pass: a key is
 * compared with the one at its place in the record before, and a number of at
 * most 15 digits without an exponent is read as it is scanned (exactly, as
 * parseNumber reads it); any other number goes to parseNumber. Returns the
 * field count, or -1 where scanFlatRecord (then JSON.parse) must decide.
 * The writer indexes every record it appends with it, so it is worth its length.
 */
function scanRecord(text: string, start: number, end: number): number {
  if (text.charCodeAt(start) !== 123 || text.charCodeAt(end - 1) !== 125 || end - start < 3) return -1;
  let i = start + 1;
  let count = 0;
  for (;;) {
    if (text.charCodeAt(i) !== 34) return -1;
    let approximate = false;
    const keyStart = i + 1;
    const previous = fieldNames[count];
    let k = keyStart;
    if (previous !== undefined) {
      const n = previous.length;
      let p = 0;
      while (p < n && text.charCodeAt(k) === previous.charCodeAt(p)) {
        k++;
        p++;
      }
      if (p !== n || text.charCodeAt(k) !== 34) k = -1;
    } else k = -1;
    if (k < 0) {
      k = text.indexOf('"', keyStart);
      if (k < 0 || k >= end) return -1;
      const name = text.slice(keyStart, k);
      if (name.includes("\\")) return -1; // An escaped key: JSON.parse reads its name.
      fieldNames[count] = name;
    }
    if (text.charCodeAt(k + 1) !== 58) return -1;
    let j = k + 2;
    let c = text.charCodeAt(j);
    let value: number;
    if (c === 34) {
      const close = text.indexOf('"', j + 1);
      if (close < 0 || close >= end) return -1;
      value = toNumber(text.slice(j + 1, close));
      j = close + 1;
      c = text.charCodeAt(j);
    } else {
      if (c === 123 || c === 91) return -1;
      const numberStart = j;
      const negative = c === 45;
      if (negative) c = text.charCodeAt(++j);
      let mantissa = 0;
      let digits = 0;
      let scale = 0;
      let any = false;
      for (; c >= 48 && c <= 57; c = text.charCodeAt(++j)) {
        mantissa = mantissa * 10 + (c - 48);
        if (mantissa !== 0) digits++;
        any = true;
      }
      if (c === 46) {
        for (c = text.charCodeAt(++j); c >= 48 && c <= 57; c = text.charCodeAt(++j)) {
          mantissa = mantissa * 10 + (c - 48);
          if (mantissa !== 0) digits++;
          scale--;
          any = true;
        }
      }
      approximate = false;
      if (!any || scale < -22 || (c !== 44 && c !== 125) || !(mantissa < 1e300)) {
        while (j < end && c !== 44 && c !== 125) c = text.charCodeAt(++j);
        if (j === numberStart) return -1;
        value = parseNumber(text, numberStart, j);
      } else {
        value = scale < 0 ? mantissa / POWERS_OF_TEN[-scale] : mantissa;
        if (negative) value = -value;
        if (digits > 15) {
          // Summed digit by digit past 2^53: within 1e-15 of the value; read exactly only if it is kept (see addValue).
          approximate = true;
          fieldStarts[count] = numberStart;
          fieldEnds[count] = j;
        }
      }
    }
    fieldApproximate[count] = approximate;
    fieldValues[count++] = value;
    if (c === 125) return j === end - 1 ? count : -1;
    if (c !== 44) return -1;
    i = j + 1;
  }
}

/** A line the scanner does not take (nesting, escapes): its top-level fields through JSON.parse; 0 fields if it is no object. */
function parseRecord(line: string): number {
  let record: unknown;
  try {
    record = JSON.parse(line);
  } catch {
    return 0;
  }
  if (record === null || typeof record !== "object" || Array.isArray(record)) return 0;
  let count = 0;
  for (const [key, value] of Object.entries(record)) {
    fieldNames[count] = key;
    fieldValues[count++] = toNumber(value);
  }
  return count;
}

/** Bytes read at a time. */
const READ_BYTES = 4 << 20;

/**
 * Calls `onText(text, offset, byteLength)` for the whole lines of `file` in
 * bytes `[from, to)`, a few megabytes at a time; a torn last line is left out.
 */
function forEachWholeText(file: string, from: number, to: number, onText: (text: string, offset: number, byteLength: number) => void): void {
  if (to <= from) return;
  const reading = fileSystem.openRead(file);
  if (!reading) return;
  const decoder = new TextDecoder();
  let block = new Uint8Array(Math.min(READ_BYTES, to - from));
  let kept = 0;
  let position = from;
  try {
    while (position < to) {
      if (kept === block.length) {
        const larger = new Uint8Array(block.length * 2);
        larger.set(block);
        block = larger;
      }
      const n = reading.read(block.subarray(kept, Math.min(block.length, kept + to - position)), position);
      if (n === 0) break;
      position += n;
      const filled = kept + n;
      const whole = block.lastIndexOf(10, filled - 1) + 1;
      if (whole > 0) onText(decoder.decode(block.subarray(0, whole)), position - filled, whole);
      block.copyWithin(0, whole, filled);
      kept = filled - whole;
    }
  } finally {
    reading.close();
  }
}

/**
 * The text of bytes `[start, end)` of a file (as many as it has).
 *
 * @param file The file.
 * @param start The first byte.
 * @param end After the last.
 * @returns The decoded text.
 *
 * @example
 * ```ts
 * import { mkdtempSync, writeFileSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { readRange } from "./read_index.ts";
 *
 * const file = join(mkdtempSync(join(tmpdir(), "range-")), "x.jsonl");
 * writeFileSync(file, '{"a":1}\n{"a":2}\n');
 * console.log(readRange(file, 8, 16)); // {"a":2}
 * ```
 */
export function readRange(file: string, start: number, end: number): string {
  const reading = fileSystem.openRead(file);
  if (!reading || end <= start) {
    reading?.close();
    return "";
  }
  const bytes = new Uint8Array(end - start);
  let got = 0;
  try {
    for (let n = -1; got < bytes.length && n !== 0; got += n) n = reading.read(bytes.subarray(got), start + got);
  } finally {
    reading.close();
  }
  return new TextDecoder().decode(bytes.subarray(0, got));
}

// ─── The index file ─────────────────────────────────────────────────────────

/** A number as JSON: NaN and ±Infinity as strings, as the JSONL has them. */
function encodeNumber(value: number | null): number | string | null {
  return value === null || Number.isFinite(value) ? value : String(value);
}

/**
 * One line of the index file for a block.
 *
 * @param block The block.
 * @returns Its JSON array, without a newline.
 *
 * @example
 * ```ts
 * import { decodeBlock, encodeBlock, MetricIndex } from "./read_index.ts";
 *
 * const index = new MetricIndex();
 * index.feed('{"step":0,"loss":"NaN"}', 0, 23, false);
 * const line = encodeBlock(index.blocks()[0]);
 * console.log(decodeBlock(line)?.keys.get("loss")?.count); // 1
 * ```
 */
export function encodeBlock(block: IndexBlock): string {
  const n = encodeNumber;
  const keys = [...block.keys].map(([name, k]) => [
    name, k.count, n(k.min), n(k.max), n(k.last), n(k.lastStep),
    n(k.lo), n(k.loStep), n(k.loTs), k.loAt, n(k.hi), n(k.hiStep), n(k.hiTs), k.hiAt,
  ]);
  return JSON.stringify([
    FORMAT, block.first, block.start, block.end, block.records, block.lastLength, block.lastHash,
    n(block.stepMin), n(block.stepMax), n(block.tsMin), n(block.tsMax), keys,
  ]);
}

/** A decoded number: a number, or one of the strings encodeNumber writes. */
function decodeNumber(value: unknown): number {
  if (typeof value === "number") return value;
  if (value === "NaN" || value === "Infinity" || value === "-Infinity") return Number(value);
  throw new TypeError("not a number");
}

function decodeCount(value: unknown): number {
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) return value;
  throw new TypeError("not a count");
}

/**
 * A block from a line of the index file; undefined for anything else (a torn line, another format).
 *
 * @param line A line of the index file.
 * @returns The block, or undefined.
 *
 * @example
 * ```ts
 * import { decodeBlock } from "./read_index.ts";
 *
 * console.log(decodeBlock('[1,0,0,5'), decodeBlock("[2]")); // undefined undefined
 * ```
 */
export function decodeBlock(line: string): IndexBlock | undefined {
  try {
    const a: unknown = JSON.parse(line);
    if (!Array.isArray(a) || a.length !== 12 || a[0] !== FORMAT || !Array.isArray(a[11])) return undefined;
    const keys = new Map<string, KeyBlock>();
    const orNull = (v: unknown): number | null => (v === null ? null : decodeNumber(v));
    for (const k of a[11]) {
      if (!Array.isArray(k) || k.length !== 14 || typeof k[0] !== "string") return undefined;
      keys.set(k[0], {
        count: decodeCount(k[1]),
        min: orNull(k[2]),
        max: orNull(k[3]),
        last: decodeNumber(k[4]),
        lastStep: orNull(k[5]),
        lo: decodeNumber(k[6]),
        loStep: decodeNumber(k[7]),
        loTs: decodeNumber(k[8]),
        loAt: decodeCount(k[9]),
        hi: decodeNumber(k[10]),
        hiStep: decodeNumber(k[11]),
        hiTs: decodeNumber(k[12]),
        hiAt: decodeCount(k[13]),
      });
    }
    const block: IndexBlock = {
      first: decodeCount(a[1]),
      start: decodeCount(a[2]),
      end: decodeCount(a[3]),
      records: decodeCount(a[4]),
      lastLength: decodeCount(a[5]),
      lastHash: decodeCount(a[6]),
      stepMin: decodeNumber(a[7]),
      stepMax: decodeNumber(a[8]),
      tsMin: decodeNumber(a[9]),
      tsMax: decodeNumber(a[10]),
      keys,
    };
    const fits = block.records >= 1 && block.records <= BLOCK_RECORDS && block.end - block.start >= block.lastLength &&
      block.lastLength > 0 && block.first % BLOCK_RECORDS === 0;
    return fits ? block : undefined;
  } catch {
    return undefined;
  }
}

/** What {@linkcode loadIndex} found. */
export interface LoadedIndex {
  /** The index, up to the last whole line of the JSONL. */
  index: MetricIndex;
  /** Whether the index file should be written again: it was missing, damaged or lacked a block or more. */
  stale: boolean;
  /** Whether it holds lines that are no block or do not match the JSONL: it must be replaced, not appended to. */
  damaged?: boolean;
  /** How many of the blocks came from the index file (the first ones). */
  fromFile?: number;
}

/**
 * The blocks of an index file that follow each other from the file's start:
 * a line that starts the next block is taken, a line for the last block with
 * more records replaces it, any other line (from another writer, or
 * superseded) is passed over. Counts the lines that are no block.
 */
function assemble(text: string): { blocks: IndexBlock[]; broken: number } {
  const blocks: IndexBlock[] = [];
  let broken = 0;
  let covered = 0;
  let records = 0;
  for (let start = 0, nl = text.indexOf("\n"); nl !== -1; start = nl + 1, nl = text.indexOf("\n", start)) {
    const block = decodeBlock(text.slice(start, nl));
    if (block === undefined) {
      broken++;
      continue;
    }
    const last = blocks.at(-1);
    if (last !== undefined && block.first === last.first && block.start === last.start && block.records > last.records) {
      blocks[blocks.length - 1] = block;
    } else if (block.start === covered && block.first === records && (last === undefined || last.records === BLOCK_RECORDS)) {
      blocks.push(block);
    } else continue;
    covered = block.end;
    records = block.first + block.records;
  }
  if (!text.endsWith("\n") && text.length > 0) broken++;
  return { blocks, broken };
}

/** Whether the JSONL still has the block's last line where the block ends. */
function lastLineMatches(file: string, block: IndexBlock): boolean {
  const lineStart = block.end - block.lastLength;
  const from = Math.max(0, lineStart - 1);
  const text = readRange(file, from, block.end);
  if (!text.endsWith("\n")) return false;
  if (lineStart > 0 && !text.startsWith("\n")) return false;
  const line = text.slice(lineStart > 0 ? 1 : 0, -1);
  return lineHash(line, 0, line.length) === block.lastHash && new TextEncoder().encode(line).length + 1 === block.lastLength;
}

/**
 * The index of a metric file: its index file where that checks out, the rest
 * read from the JSONL. Nothing is written (see {@linkcode saveIndex}).
 *
 * @param file The metric file.
 * @returns The index, and whether its file should be written again.
 *
 * @example An index file damaged by hand is rebuilt from the JSONL
 * ```ts
 * import { mkdtempSync, writeFileSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { loadIndex } from "./read_index.ts";
 * import { metricIndexPath } from "./layout.ts";
 *
 * const file = join(mkdtempSync(join(tmpdir(), "index-")), "train.jsonl");
 * writeFileSync(file, '{"step":0,"loss":1}\n');
 * writeFileSync(metricIndexPath(file), "not an index\n");
 * const { index, stale } = loadIndex(file);
 * console.log(index.records, stale); // 1 true
 * ```
 */
export function loadIndex(file: string): LoadedIndex {
  const size = fileSystem.size(file);
  let text = "";
  try {
    text = fileSystem.readText(metricIndexPath(file)) ?? "";
  } catch {
    // Unreadable (a folder, a name too long for the file system): read as missing.
  }
  let { blocks, broken } = assemble(text);
  let damaged = broken > 0;
  const inside = blocks.findIndex((b) => b.end > size);
  if (inside >= 0) {
    blocks = blocks.slice(0, inside);
    damaged = true;
  }
  const last = blocks.at(-1);
  if (last !== undefined && !lastLineMatches(file, last)) {
    blocks = [];
    damaged = true;
  }
  const index = new MetricIndex(blocks);
  const scanned = index.scanFile(file, size);
  const stale = (damaged || scanned >= BLOCK_RECORDS || (text.length === 0 && scanned > 0)) && index.records > 0;
  return { index, stale, damaged, fromFile: blocks.length };
}

/**
 * Brings the index file of a metric file up to a loaded index that was
 * stale: a damaged one is replaced (temp file and rename); one that only lacked
 * blocks gets them appended, which never takes a line from another writer
 * appending at the same time.
 *
 * @param file The metric file.
 * @param loaded What {@linkcode loadIndex} found.
 *
 * @example
 * ```ts
 * import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { loadIndex, persistIndex } from "./read_index.ts";
 * import { metricIndexPath } from "./layout.ts";
 *
 * const file = join(mkdtempSync(join(tmpdir(), "index-")), "train.jsonl");
 * writeFileSync(file, '{"step":0,"loss":1}\n');
 * persistIndex(file, loadIndex(file));
 * console.log(readFileSync(metricIndexPath(file), "utf8").split("\n").length); // 2
 * ```
 */
export function persistIndex(file: string, loaded: LoadedIndex): void {
  if (!loaded.stale) return;
  if (loaded.damaged) return saveIndex(file, loaded.index);
  // The last block from the file may have grown since: its line is written again, and supersedes.
  const missing = loaded.index.blocks().slice(Math.max(0, (loaded.fromFile ?? 0) - 1));
  const bytes = encoder.encode(missing.map((block) => encodeBlock(block) + "\n").join(""));
  const output = fileSystem.openAppend(metricIndexPath(file));
  try {
    output.write(bytes, bytes.length);
  } finally {
    output.close();
  }
}

/** Bytes read from the end of an index file to find the block a writer goes on from. */
const RESUME_TAIL_BYTES = 64 << 10;

/**
 * The index of a metric file as far as a writer about to append needs it:
 * the block to go on filling. Taken from the last line of the index file that
 * is a block whose last line the JSONL still has where it says (every such
 * line is a true state of its block, whichever writer wrote it), then brought
 * up to the file's end; only where there is none, the whole index is loaded
 * ({@linkcode loadIndex}). A writer that opens a large metric file again
 * (after the server closed it, idle) reads kilobytes, not the whole index.
 *
 * @param file The metric file.
 * @returns The index from that block on (its earlier blocks are not in it), and whether the index file should be written again.
 *
 * @example
 * ```ts
 * import { mkdtempSync, writeFileSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { loadIndex, resumeIndex, saveIndex } from "./read_index.ts";
 *
 * const file = join(mkdtempSync(join(tmpdir(), "index-")), "train.jsonl");
 * writeFileSync(file, Array.from({ length: 3000 }, (_, i) => `{"step":${i},"loss":1}\n`).join(""));
 * saveIndex(file, loadIndex(file).index);
 * console.log(resumeIndex(file).index.records); // 3000
 * ```
 */
export function resumeIndex(file: string): LoadedIndex {
  const indexFile = metricIndexPath(file);
  let indexSize = 0;
  try {
    indexSize = fileSystem.size(indexFile);
  } catch {
    // Read as missing below.
  }
  if (indexSize === 0) return loadIndex(file);
  const size = fileSystem.size(file);
  const from = Math.max(0, indexSize - RESUME_TAIL_BYTES);
  const lines = readRange(indexFile, from, indexSize).split("\n");
  // The last piece is torn or empty; the first may be cut by the tail's start.
  for (let i = lines.length - 2; i >= (from > 0 ? 1 : 0); i--) {
    const block = decodeBlock(lines[i]);
    if (block === undefined) continue;
    if (block.end > size || !lastLineMatches(file, block)) break;
    const index = new MetricIndex([block]);
    index.scanFile(file, size);
    return { index, stale: false };
  }
  return loadIndex(file);
}

/**
 * Writes the index file of a metric file anew, by temp file and rename (a
 * writer opens the index file for each append, so it appends to the new one).
 *
 * @param file The metric file.
 * @param index Its index.
 *
 * @example
 * ```ts
 * import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { loadIndex, saveIndex } from "./read_index.ts";
 * import { metricIndexPath } from "./layout.ts";
 *
 * const file = join(mkdtempSync(join(tmpdir(), "index-")), "train.jsonl");
 * writeFileSync(file, '{"step":0,"loss":1}\n');
 * saveIndex(file, loadIndex(file).index);
 * console.log(readFileSync(metricIndexPath(file), "utf8").split("\n").length); // 2
 * ```
 */
export function saveIndex(file: string, index: MetricIndex): void {
  const lines = index.blocks().map((block) => encodeBlock(block) + "\n").join("");
  replaceFileSync(fileSystem, metricIndexPath(file), lines);
}

/**
 * The writer's side of an index: what it appends to a metric file is indexed
 * as it goes, and each block is appended to the index file once it is full
 * (the block being filled at {@linkcode close}). After each append the
 * metric file's size says whether the lines landed where this writer thinks:
 * if another process appended meanwhile, the lines since are read from the
 * file instead, so that blocks stay in the file's order.
 *
 * @example
 * ```ts
 * import { mkdtempSync, appendFileSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { IndexAppender, loadIndex } from "./read_index.ts";
 *
 * const file = join(mkdtempSync(join(tmpdir(), "index-")), "train.jsonl");
 * const appender = IndexAppender.open(file);
 * const line = '{"step":0,"loss":1}';
 * appendFileSync(file, line + "\n");
 * appender.appended([line], [line.length], 0, 1, line.length + 1);
 * appender.close();
 * console.log(loadIndex(file).index.records); // 1
 * ```
 */
export class IndexAppender {
  readonly #file: string;
  #index: MetricIndex;
  /** The metric file is not as this writer knows it (it shrank, or a write failed): the index is loaded again at the next append. */
  #lost = false;

  private constructor(file: string, index: MetricIndex) {
    this.#file = file;
    this.#index = index;
  }

  /**
   * Loads the index of a metric file about to be appended to (rewriting the index file if it was stale).
   *
   * @param file The metric file.
   * @returns The appender.
   */
  static open(file: string): IndexAppender {
    const loaded = resumeIndex(file);
    if (loaded.stale) {
      persistIndex(file, loaded);
      loaded.index.takeCompleted();
    }
    return new IndexAppender(file, loaded.index);
  }

  /**
   * Indexes chunks just appended: `chunks[from, to)`, each followed by a newline, `bytes` in all.
   *
   * @param chunks The chunks of lines (strings, or their UTF-8 bytes).
   * @param chunkBytes The UTF-8 bytes of each chunk, without its newline.
   * @param from The first chunk appended.
   * @param to After the last.
   * @param bytes The bytes appended.
   * @param figures The figures the buffer kept of each chunk (parallel to `chunks`), where known: a chunk that stays in one block is indexed from them.
   */
  appended(chunks: readonly (string | Uint8Array)[], chunkBytes: readonly number[], from: number, to: number, bytes: number, figures?: readonly (ChunkFigures | undefined)[]): void {
    if (this.#lost) {
      // Loading reads the file as it is now, these lines included.
      this.#reload();
      return;
    }
    const index = this.#index;
    const before = index.bytes;
    const size = fileSystem.size(this.#file);
    if (size === before + bytes) {
      let offset = before;
      for (let i = from; i < to; i++) {
        const chunk = chunks[i];
        const known = figures?.[i];
        if (known !== undefined && index.fits(known.records)) index.take(known, lastLine(chunk), offset, chunkBytes[i]);
        else index.feed(typeof chunk === "string" ? chunk : decoder.decode(chunk), offset, chunkBytes[i], false);
        offset += chunkBytes[i] + 1;
      }
    } else if (size > before + bytes) {
      // Another process appended too: where our lines landed is in the file.
      index.scanFile(this.#file, size);
    } else {
      this.#lost = true;
      return;
    }
    this.#write(index.takeCompleted());
  }

  /** The last append failed part-way, or the file was changed under the writer: load the index again before the next. */
  lose(): void {
    this.#lost = true;
  }

  /** Writes the block being filled. */
  close(): void {
    if (this.#lost) return;
    const open = this.#index.openBlock();
    this.#write(open ? [...this.#index.takeCompleted(), open] : this.#index.takeCompleted());
  }

  #reload(): void {
    this.#index = IndexAppender.open(this.#file).#index;
    this.#lost = false;
  }

  /** Appends block lines to the index file, opened for each append: a block comes every 1,024 records, and a writer with many metric files open should not hold twice the descriptors. */
  #write(blocks: readonly IndexBlock[]): void {
    if (blocks.length === 0) return;
    const bytes = encoder.encode(blocks.map((b) => encodeBlock(b) + "\n").join(""));
    const output = fileSystem.openAppend(metricIndexPath(this.#file));
    try {
      output.write(bytes, bytes.length);
    } finally {
      output.close();
    }
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The last line of a chunk of lines (which has no newline at its end). */
function lastLine(chunk: string | Uint8Array): string {
  if (typeof chunk === "string") return chunk.slice(chunk.lastIndexOf("\n") + 1);
  return decoder.decode(chunk.subarray(chunk.lastIndexOf(10) + 1));
}

// ─── Answers from the index ─────────────────────────────────────────────────

/**
 * Each key's count, min, max and last value from the blocks.
 *
 * @param blocks The blocks of a metric file, in file order.
 * @returns Summaries by key, in the order keys first appear.
 *
 * @example
 * ```ts
 * import { MetricIndex, summarize } from "./read_index.ts";
 *
 * const index = new MetricIndex();
 * const text = '{"step":0,"loss":"Infinity"}\n{"step":1,"loss":3}\n';
 * index.feed(text, 0, text.length, true);
 * console.log(summarize(index.blocks()).get("loss")); // { count: 2, min: 3, max: 3, last: 3, lastStep: 1 }
 * ```
 */
export function summarize(blocks: readonly IndexBlock[]): Map<string, KeySummary> {
  const result = new Map<string, KeySummary>();
  for (const block of blocks) {
    for (const [name, k] of block.keys) {
      let s = result.get(name);
      if (!s) result.set(name, s = { count: 0, min: null, max: null, last: null, lastStep: null });
      s.count += k.count;
      s.last = k.last;
      s.lastStep = k.lastStep;
      if (k.min !== null && (s.min === null || k.min < s.min)) s.min = k.min;
      if (k.max !== null && (s.max === null || k.max > s.max)) s.max = k.max;
    }
  }
  return result;
}

/** Which points of a key a chart asks for. */
export interface RangeQuery {
  /** The x axis: the step or the time. */
  x: "step" | "_ts";
  /** Only points with x at least this. */
  from?: number;
  /** Only points with x at most this. */
  to?: number;
  /** Points to answer at most (at least 2). */
  points: number;
}

/** Points of a key, parallel arrays. */
export interface RangePoints {
  /** Steps (NaN where a record has none). */
  step: number[];
  /** Times. */
  ts: number[];
  /** Values, or where `exact` is given values within 1e-14 of each (relative): what comparing needs. */
  value: number[];
  /** The value of point `i` as stored, where `value` holds approximations. */
  exact?: (i: number) => number;
}

/** Values this close (relative) may compare either way as approximations: the stored values decide. */
const APPROXIMATION = 1e-14;

/** Whether point `i` of `points` is below point `j`. */
function below(points: RangePoints, i: number, j: number): boolean {
  const a = points.value[i];
  const b = points.value[j];
  if (points.exact === undefined || Math.abs(a - b) > APPROXIMATION * Math.max(Math.abs(a), Math.abs(b))) return a < b;
  return points.exact(i) < points.exact(j);
}

function exactValue(points: RangePoints, i: number): number {
  return points.exact === undefined ? points.value[i] : points.exact(i);
}

/** A key's points in a range, min-max downsampled. */
export interface DownsampledRange {
  /** x of each point kept, in file order. */
  x: number[];
  /** Their values. */
  value: number[];
  /** Their times. */
  ts: number[];
  /** How many points the range holds. */
  total: number;
  /** Whether points were left out. */
  downsampled: boolean;
}

/** A block: its stats where every point of it is in range, else its points in range (places in `source`, in file order). */
interface Candidate {
  key: KeyBlock;
  block: IndexBlock;
  source?: RangePoints;
  picked?: number[];
}

/**
 * A key's points with x in a range, reduced to at most `query.points` by
 * min-max buckets. Blocks wholly in range answer from their stats; only
 * blocks the range cuts are read, or every block in range when it holds so
 * few points that they are answered as they are, or so few blocks (fewer
 * than a quarter of `query.points`) that buckets need points from inside a
 * block. Otherwise buckets are runs of whole blocks, or single blocks where
 * there are fewer blocks than buckets (then fewer points are answered).
 *
 * @param blocks The blocks of the key's metric file.
 * @param field The key's field.
 * @param query The axis, the range and the number of points.
 * @param readPoints Reads the field's points in bytes `[start, end)` of the metric file.
 * @returns The points kept and the number in range.
 *
 * @example
 * ```ts
 * import { downsampleRange, MetricIndex } from "./read_index.ts";
 *
 * const index = new MetricIndex();
 * const text = Array.from({ length: 5000 }, (_, i) => JSON.stringify({ step: i, loss: i === 2500 ? 99 : 1 })).join("\n") + "\n";
 * index.feed(text, 0, text.length, true);
 * const out = downsampleRange(index.blocks(), "loss", { x: "step", points: 10 }, () => ({ step: [], ts: [], value: [] }));
 * console.log(out.total, out.value.includes(99), out.x.length <= 10); // 5000 true true
 * ```
 */
export function downsampleRange(
  blocks: readonly IndexBlock[],
  field: string,
  query: RangeQuery,
  readPoints: (start: number, end: number) => RangePoints,
): DownsampledRange {
  const target = Math.max(2, Math.floor(query.points));
  const { from, to } = query;
  const ranged = from !== undefined || to !== undefined;
  const inRange = (v: number): boolean => (from === undefined || v >= from) && (to === undefined || v <= to);
  const candidates: Candidate[] = [];
  const cut: Candidate[] = [];
  let total = 0;
  for (const block of blocks) {
    const key = block.keys.get(field);
    if (key === undefined) continue;
    const candidate: Candidate = { key, block };
    let whole = true;
    if (ranged) {
      const lo = query.x === "step" ? block.stepMin : block.tsMin;
      const hi = query.x === "step" ? block.stepMax : block.tsMax;
      if (lo === lo && ((from !== undefined && hi < from) || (to !== undefined && lo > to))) continue;
      whole = lo === lo && inRange(lo) && inRange(hi);
      if (!whole) cut.push(candidate);
    }
    candidates.push(candidate);
    if (whole) total += key.count;
  }
  const readAll = (which: Candidate[]): void => {
    for (const [start, end, members] of runsOf(which)) splitByBlock(readPoints(start, end), members, query.x, ranged ? inRange : undefined);
  };
  readAll(cut);
  for (const c of cut) total += c.picked!.length;
  const kept = candidates.filter((c) => c.picked === undefined || c.picked.length > 0);
  const buckets = Math.floor(target / 2);
  // Down to half the buckets asked for, whole blocks make the buckets: reading that many blocks would cost more than a chart is worth.
  if (total > target && kept.length >= buckets / 2) return { ...bucketsOfBlocks(kept, Math.min(buckets, kept.length), query.x), total, downsampled: true };
  readAll(kept.filter((c) => c.picked === undefined));
  // Every point in range, as the places of the points read.
  const sources: RangePoints[] = [];
  const places: number[] = [];
  for (const c of kept) for (const i of c.picked!) sources.push(c.source!), places.push(i);
  const answer = (kept: readonly number[]): Omit<DownsampledRange, "total" | "downsampled"> => {
    const out: Omit<DownsampledRange, "total" | "downsampled"> = { x: [], value: [], ts: [] };
    for (const k of kept) {
      const source = sources[k];
      const i = places[k];
      out.x.push(query.x === "step" ? source.step[i] : source.ts[i]);
      out.value.push(exactValue(source, i));
      out.ts.push(source.ts[i]);
    }
    return out;
  };
  if (total <= target) return { ...answer(places.map((_, k) => k)), total, downsampled: false };
  const reduced = minMaxPlaces(places.length, target, (k) => sources[k].value[places[k]], (j, k) => {
    if (sources[j] === sources[k]) return below(sources[j], places[j], places[k]);
    return exactValue(sources[j], places[j]) < exactValue(sources[k], places[k]);
  });
  return { ...answer(reduced), total, downsampled: true };
}

/** Runs of candidates whose blocks follow each other in the file: one read each. */
function runsOf(which: readonly Candidate[]): [number, number, Candidate[]][] {
  const runs: [number, number, Candidate[]][] = [];
  for (const c of which) {
    const run = runs.at(-1);
    if (run !== undefined && run[1] === c.block.start) {
      run[1] = c.block.end;
      run[2].push(c);
    } else runs.push([c.block.start, c.block.end, [c]]);
  }
  return runs;
}

/** Deals points read from consecutive blocks out to their blocks (by count), keeping those in range. */
function splitByBlock(points: RangePoints, members: Candidate[], x: "step" | "_ts", inRange?: (v: number) => boolean): void {
  const axis = x === "step" ? points.step : points.ts;
  let at = 0;
  for (const c of members) {
    const picked: number[] = [];
    for (const end = Math.min(points.value.length, at + c.key.count); at < end; at++) if (!inRange || inRange(axis[at])) picked.push(at);
    c.source = points;
    c.picked = picked;
  }
}

/** A kept point: its value, x, time and place (candidate, then place in it). */
interface Extreme {
  value: number;
  step: number;
  ts: number;
  member: number;
  at: number;
}

/** The low and high points of a candidate: its stats, or computed from its points read. */
function extremesOf(c: Candidate, member: number): [Extreme, Extreme] {
  if (c.picked === undefined) {
    const k = c.key;
    return [
      { value: k.lo, step: k.loStep, ts: k.loTs, member, at: k.loAt },
      { value: k.hi, step: k.hiStep, ts: k.hiTs, member, at: k.hiAt },
    ];
  }
  const p = c.source!;
  const picked = c.picked;
  let lo = -1;
  let hi = -1;
  for (const i of picked) {
    if (p.value[i] !== p.value[i]) continue;
    if (lo < 0 || below(p, i, lo)) lo = i;
    if (hi < 0 || below(p, hi, i)) hi = i;
  }
  if (lo < 0) lo = hi = picked[0];
  return [
    { value: exactValue(p, lo), step: p.step[lo], ts: p.ts[lo], member, at: lo },
    { value: exactValue(p, hi), step: p.step[hi], ts: p.ts[hi], member, at: hi },
  ];
}

/** Whether `a` should replace `b` as a bucket's low (`sign` 1) or high (-1) point: a value beats NaN, then the smaller (larger) wins, the first of equals. */
function beats(a: Extreme, b: Extreme, sign: 1 | -1): boolean {
  if (a.value !== a.value) return false;
  if (b.value !== b.value) return true;
  return sign * a.value < sign * b.value;
}

/** Buckets of whole candidates: each keeps its lowest and highest point, in file order. */
function bucketsOfBlocks(kept: readonly Candidate[], buckets: number, x: "step" | "_ts"): Omit<DownsampledRange, "total" | "downsampled"> {
  const out: Omit<DownsampledRange, "total" | "downsampled"> = { x: [], value: [], ts: [] };
  const push = (e: Extreme): void => {
    out.x.push(x === "step" ? e.step : e.ts);
    out.value.push(e.value);
    out.ts.push(e.ts);
  };
  const n = kept.length;
  for (let b = 0; b < buckets; b++) {
    const start = Math.floor((b * n) / buckets);
    const end = Math.floor(((b + 1) * n) / buckets);
    let [lo, hi] = extremesOf(kept[start], start);
    for (let m = start + 1; m < end; m++) {
      const [l, h] = extremesOf(kept[m], m);
      if (beats(l, lo, 1)) lo = l;
      if (beats(h, hi, -1)) hi = h;
    }
    if (lo.member === hi.member && lo.at === hi.at) push(lo);
    else if (lo.member < hi.member || (lo.member === hi.member && lo.at < hi.at)) {
      push(lo);
      push(hi);
    } else {
      push(hi);
      push(lo);
    }
  }
  return out;
}
