/**
 * What the read index needs of a chunk of metric records, kept by the buffer
 * as it serializes them: the writer's index takes these figures instead of
 * scanning the chunk's text again, where the chunk lands whole in one block.
 * The figures follow the rules of the index's blocks: min and max over finite
 * values, `lo`/`hi` the first lowest/highest value that is not NaN (the first
 * value where all are NaN), places counted from the chunk's first record.
 *
 * @example Keep the figures of two records
 * ```ts
 * import { keyFigures, newChunkFigures, noteRecord, noteValue } from "./chunk_figures.ts";
 *
 * const figures = newChunkFigures();
 * noteRecord(figures, 0, 10);
 * noteValue(keyFigures(figures, 0, "loss"), 2, 0, 10, 0);
 * noteRecord(figures, 1, 11);
 * noteValue(keyFigures(figures, 0, "loss"), 1, 1, 11, 1);
 * console.log(figures.records, figures.keys[0].min, figures.keys[0].loAt); // 2 1 1
 * ```
 *
 * @module
 */

/** One key's figures in a chunk. */
export interface KeyFigures {
  /** The key. */
  readonly name: string;
  /** How many records of the chunk have it. */
  count: number;
  /** The smallest finite value (Infinity if none). */
  min: number;
  /** The largest finite value (-Infinity if none). */
  max: number;
  /** The last value. */
  last: number;
  /** The last value's step. */
  lastStep: number;
  /** The lowest value that is not NaN (the first of equals), or the first value where all are NaN. */
  lo: number;
  /** Its step. */
  loStep: number;
  /** Its time. */
  loTs: number;
  /** Its record's place in the chunk (-1 before the first value). */
  loAt: number;
  /** The highest value, as `lo`. */
  hi: number;
  /** Its step. */
  hiStep: number;
  /** Its time. */
  hiTs: number;
  /** Its record's place in the chunk. */
  hiAt: number;
}

/** The figures of a chunk of records, each of which has a numeric `_ts` and `step`. */
export interface ChunkFigures {
  /** How many records; -1 once a record the figures cannot describe was added (then the chunk is scanned). */
  records: number;
  /** The smallest step. */
  stepMin: number;
  /** The largest step. */
  stepMax: number;
  /** The earliest time. */
  tsMin: number;
  /** The latest time. */
  tsMax: number;
  /** The keys (no `_ts`, no `step`), in the order they first appear. */
  keys: KeyFigures[];
  /** The key seen at each field place of the record before: a record like it costs no search. */
  places: KeyFigures[];
}

/**
 * Figures of an empty chunk.
 *
 * @returns The figures.
 *
 * @example
 * ```ts
 * import { newChunkFigures } from "./chunk_figures.ts";
 *
 * console.log(newChunkFigures().records); // 0
 * ```
 */
export function newChunkFigures(): ChunkFigures {
  return { records: 0, stepMin: Infinity, stepMax: -Infinity, tsMin: Infinity, tsMax: -Infinity, keys: [], places: [] };
}

/**
 * Counts a record with its step and time (values as stored: `-0` is written `0`); its values follow with {@linkcode noteValue}.
 *
 * @param figures The chunk's figures.
 * @param step The record's step.
 * @param ts Its time.
 *
 * @example
 * ```ts
 * import { newChunkFigures, noteRecord } from "./chunk_figures.ts";
 *
 * const figures = newChunkFigures();
 * noteRecord(figures, 5, 1.5);
 * console.log(figures.records, figures.stepMax); // 1 5
 * ```
 */
export function noteRecord(figures: ChunkFigures, step: number, ts: number): void {
  if (figures.records < 0) return;
  figures.records++;
  if (step < figures.stepMin) figures.stepMin = step;
  if (step > figures.stepMax) figures.stepMax = step;
  if (ts < figures.tsMin) figures.tsMin = ts;
  if (ts > figures.tsMax) figures.tsMax = ts;
}

/**
 * The figures of key `name`, the field at `place` of the record being noted.
 *
 * @param figures The chunk's figures.
 * @param place The field's place in its record.
 * @param name The key.
 * @returns Its figures (new ones where the chunk has not had the key).
 *
 * @example
 * ```ts
 * import { keyFigures, newChunkFigures } from "./chunk_figures.ts";
 *
 * const figures = newChunkFigures();
 * console.log(keyFigures(figures, 0, "a") === keyFigures(figures, 1, "a")); // true
 * ```
 */
export function keyFigures(figures: ChunkFigures, place: number, name: string): KeyFigures {
  const known = figures.places[place];
  if (known !== undefined && known.name === name) return known;
  let key = figures.keys.find((k) => k.name === name);
  if (key === undefined) {
    key = { name, count: 0, min: Infinity, max: -Infinity, last: NaN, lastStep: NaN, lo: NaN, loStep: NaN, loTs: NaN, loAt: -1, hi: NaN, hiStep: NaN, hiTs: NaN, hiAt: -1 };
    figures.keys.push(key);
  }
  figures.places[place] = key;
  return key;
}

/**
 * Adds a value (as stored) of the record just noted to its key's figures.
 *
 * @param key The key's figures.
 * @param value The value.
 * @param step The record's step.
 * @param ts Its time.
 * @param at Its place in the chunk.
 *
 * @example
 * ```ts
 * import { keyFigures, newChunkFigures, noteValue } from "./chunk_figures.ts";
 *
 * const key = keyFigures(newChunkFigures(), 0, "loss");
 * noteValue(key, NaN, 0, 1, 0);
 * noteValue(key, 3, 1, 2, 1);
 * console.log(key.count, key.min, key.lo, key.loAt); // 2 3 3 1
 * ```
 */
export function noteValue(key: KeyFigures, value: number, step: number, ts: number, at: number): void {
  key.count++;
  key.last = value;
  key.lastStep = step;
  if (value - value === 0) {
    if (value < key.min) key.min = value;
    if (value > key.max) key.max = value;
  }
  if (key.loAt < 0 || (value === value && (key.lo !== key.lo || value < key.lo))) {
    key.lo = value;
    key.loStep = step;
    key.loTs = ts;
    key.loAt = at;
  }
  if (key.hiAt < 0 || (value === value && (key.hi !== key.hi || value > key.hi))) {
    key.hi = value;
    key.hiStep = step;
    key.hiTs = ts;
    key.hiAt = at;
  }
}

/**
 * {@linkcode noteValue} for a finite value, in fewer tests: the log() path, where every value is checked finite.
 *
 * @param key The key's figures.
 * @param value The value, finite.
 * @param step The record's step.
 * @param ts Its time.
 * @param at Its place in the chunk.
 *
 * @example
 * ```ts
 * import { keyFigures, newChunkFigures, noteFinite } from "./chunk_figures.ts";
 *
 * const key = keyFigures(newChunkFigures(), 0, "loss");
 * noteFinite(key, 2, 0, 1, 0);
 * noteFinite(key, 2, 1, 2, 1);
 * console.log(key.count, key.hi, key.hiAt); // 2 2 0
 * ```
 */
export function noteFinite(key: KeyFigures, value: number, step: number, ts: number, at: number): void {
  key.count++;
  key.last = value;
  key.lastStep = step;
  if (value < key.min) key.min = value;
  if (value > key.max) key.max = value;
  // Also true before the first value and where all before were NaN (lo, hi NaN): then it is the first not NaN.
  if (!(value >= key.lo)) {
    key.lo = value;
    key.loStep = step;
    key.loTs = ts;
    key.loAt = at;
  }
  if (!(value <= key.hi)) {
    key.hi = value;
    key.hiStep = step;
    key.hiTs = ts;
    key.hiAt = at;
  }
}
