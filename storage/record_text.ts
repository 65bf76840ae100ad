/**
 * Reading numbers out of the text of flat JSON records without building
 * objects: the metric reader, the summary and the read index share it.
 * Non-finite values are stored as the strings "NaN", "Infinity" and
 * "-Infinity", and read back as numbers.
 *
 * @example Scan a record's fields
 * ```ts
 * import { fieldNames, fieldValues, scanFlatRecord } from "./record_text.ts";
 *
 * const text = '{"_ts":1,"step":3,"loss":"NaN"}';
 * const count = scanFlatRecord(text, 0, text.length);
 * console.log(fieldNames.slice(0, count), fieldValues.slice(0, count)); // [ "_ts", "step", "loss" ] [ 1, 3, NaN ]
 * ```
 *
 * @module
 */

/**
 * A stored JSON value as a number: numbers as they are, the strings "NaN" and
 * "±Infinity" as those values, anything else through `Number()`.
 *
 * @param value A value of a parsed record.
 * @returns The number.
 *
 * @example
 * ```ts
 * import { toNumber } from "./record_text.ts";
 *
 * console.log(toNumber(0.5), toNumber("-Infinity")); // 0.5 -Infinity
 * ```
 */
export function toNumber(value: unknown): number {
  if (typeof value === "number") return value;
  if (value === "NaN") return NaN;
  if (value === "Infinity") return Infinity;
  if (value === "-Infinity") return -Infinity;
  return Number(value);
}

/**
 * Finds a key in the lines of one text, asked in order: it keeps the key's next
 * occurrence, so that a line without the key costs no search through the rest of the text.
 *
 * @example Read the step of each line
 * ```ts
 * import { KeyScanner } from "./record_text.ts";
 *
 * const text = '{"step":1,"a":2}\n{"a":3}\n';
 * const steps = new KeyScanner('"step":', text);
 * console.log(steps.numberIn(0, 16), steps.numberIn(17, 24)); // 1 undefined
 * ```
 */
export class KeyScanner {
  readonly #key: string;
  readonly #text: string;
  #next: number;

  /**
   * Makes a scanner of `key` (its JSON text with the colon, e.g. `"step":`) in `text`.
   *
   * @param key The key's text.
   * @param text Whole lines of flat records.
   */
  constructor(key: string, text: string) {
    this.#key = key;
    this.#text = text;
    this.#next = text.indexOf(key);
  }

  /**
   * The number after the key in `text.slice(start, end)`, if the key is there; `start` never decreases.
   *
   * @param start The line's start.
   * @param end The line's end.
   * @returns The number, or undefined where the line lacks the key.
   */
  numberIn(start: number, end: number): number | undefined {
    if (this.#next !== -1 && this.#next < start) this.#next = this.#text.indexOf(this.#key, start);
    if (this.#next === -1 || this.#next >= end) return undefined;
    return numberAt(this.#text, this.#next + this.#key.length, end);
  }
}

/**
 * The JSON value at `start` (before `end`) as a number: a number, or a string such as "NaN"; undefined if there is none.
 *
 * @param text The text.
 * @param start Where the value starts.
 * @param end The end of its line.
 * @returns The number, or undefined.
 *
 * @example
 * ```ts
 * import { numberAt } from "./record_text.ts";
 *
 * console.log(numberAt('{"a":2.5}', 5, 9)); // 2.5
 * ```
 */
export function numberAt(text: string, start: number, end: number): number | undefined {
  if (text.charCodeAt(start) === 34) return toNumber(text.slice(start + 1, text.indexOf('"', start + 1)));
  let stop = start;
  for (let c = text.charCodeAt(stop); c !== 44 && c !== 125 && stop < end; c = text.charCodeAt(++stop));
  return stop > start ? parseNumber(text, start, stop) : undefined;
}

/**
 * The JSON number at `start` (before `end`) within 1e-15 of its value
 * (relative), without building a string: decimals of any length are summed
 * digit by digit, where {@linkcode numberAt} hands those of more than 15
 * digits to `Number()`. Exact for at most 15 digits; strings ("NaN"),
 * exponents and anything else are read by numberAt, exactly.
 *
 * @param text The text.
 * @param start Where the value starts.
 * @param end The end of its line.
 * @returns The number, or undefined if there is none.
 *
 * @example
 * ```ts
 * import { approximateNumberAt } from "./record_text.ts";
 *
 * const text = '{"a":0.30000000000000004}';
 * console.log(Math.abs(approximateNumberAt(text, 5, 25)! - 0.30000000000000004) < 1e-15); // true
 * ```
 */
export function approximateNumberAt(text: string, start: number, end: number): number | undefined {
  let i = start;
  let c = text.charCodeAt(i);
  const negative = c === 45;
  if (negative) c = text.charCodeAt(++i);
  let mantissa = 0;
  let scale = 0;
  const first = i;
  for (; c >= 48 && c <= 57; c = text.charCodeAt(++i)) mantissa = mantissa * 10 + (c - 48);
  if (c === 46) for (c = text.charCodeAt(++i); c >= 48 && c <= 57; c = text.charCodeAt(++i)) (mantissa = mantissa * 10 + (c - 48)), scale--;
  if (i === first || scale < -22 || mantissa > 1e300 || (i < end && c !== 44 && c !== 125)) return numberAt(text, start, end);
  const value = scale < 0 ? mantissa / POWERS_OF_TEN[-scale] : mantissa;
  return negative ? -value : value;
}

/** 10^0 … 10^22: every one is exact as a double. */
const POWERS_OF_TEN = Array.from({ length: 23 }, (_, i) => 10 ** i);

/**
 * The number written in `text.slice(start, end)`, as `Number()` reads it. A
 * decimal of at most 15 digits and a small exponent is computed directly
 * (its digits and the power of ten are exact doubles, so one multiplication
 * or division rounds correctly); steps, times and most metrics are such
 * numbers, and reading them costs no string. Anything else goes to `Number()`.
 *
 * @param text The text.
 * @param start The number's first character.
 * @param end After its last.
 * @returns The number.
 *
 * @example
 * ```ts
 * import { parseNumber } from "./record_text.ts";
 *
 * console.log(parseNumber("x=1.25e2", 2, 8)); // 125
 * ```
 */
export function parseNumber(text: string, start: number, end: number): number {
  let i = start;
  const negative = text.charCodeAt(i) === 45;
  if (negative) i++;
  let mantissa = 0;
  let digits = 0;
  let scale = 0;
  let c = text.charCodeAt(i);
  const integerStart = i;
  for (; c >= 48 && c <= 57; c = text.charCodeAt(++i)) {
    mantissa = mantissa * 10 + (c - 48);
    if (mantissa !== 0 && ++digits > 15) return Number(text.slice(start, end));
  }
  let anyDigit = i > integerStart;
  if (c === 46 && i < end) {
    for (c = text.charCodeAt(++i); c >= 48 && c <= 57; c = text.charCodeAt(++i)) {
      mantissa = mantissa * 10 + (c - 48);
      if (mantissa !== 0 && ++digits > 15) return Number(text.slice(start, end));
      scale--;
      anyDigit = true;
    }
  }
  if ((c === 101 || c === 69) && i < end) {
    let j = i + 1;
    const sign = text.charCodeAt(j) === 45 ? -1 : 1;
    if (text.charCodeAt(j) === 45 || text.charCodeAt(j) === 43) j++;
    let exponent = 0;
    const first = j;
    for (c = text.charCodeAt(j); c >= 48 && c <= 57 && j - first < 4; c = text.charCodeAt(++j)) exponent = exponent * 10 + (c - 48);
    if (j === first) return Number(text.slice(start, end));
    scale += sign * exponent;
    i = j;
  }
  if (i !== end || !anyDigit || scale < -22 || scale > 22) return Number(text.slice(start, end));
  const value = scale < 0 ? mantissa / POWERS_OF_TEN[-scale] : mantissa * POWERS_OF_TEN[scale];
  return negative ? -value : value;
}

/** The field names of the record {@linkcode scanFlatRecord} read last (the first `count` entries). */
export const fieldNames: string[] = [];
/** The field values of the record {@linkcode scanFlatRecord} read last, parallel to {@linkcode fieldNames}. */
export const fieldValues: number[] = [];

/**
 * Reads the record `{"k":1.5,"s":"NaN",...}` at `text.slice(start, end)` into
 * fieldNames / fieldValues and returns the field count, or -1 if it is
 * anything else (escaped keys, nesting, ...). A key that is the same as the
 * previous record's at its place is not copied again.
 *
 * @param text The text.
 * @param start The record's first character.
 * @param end After its last.
 * @returns How many fields it has, or -1.
 *
 * @example
 * ```ts
 * import { scanFlatRecord } from "./record_text.ts";
 *
 * console.log(scanFlatRecord('{"a":1,"b":"Infinity"}', 0, 22), scanFlatRecord('{"a":{"b":1}}', 0, 13)); // 2 -1
 * ```
 */
export function scanFlatRecord(text: string, start: number, end: number): number {
  if (end - start < 2 || text.charCodeAt(start) !== 123 || text.charCodeAt(end - 1) !== 125) return -1;
  if (end - start === 2) return 0;
  let count = 0;
  let i = start + 1;
  for (;;) {
    if (text.charCodeAt(i) !== 34) return -1;
    const keyEnd = text.indexOf('"', i + 1);
    if (keyEnd < 0 || keyEnd >= end || text.charCodeAt(keyEnd - 1) === 92 || text.charCodeAt(keyEnd + 1) !== 58) return -1;
    const previous = fieldNames[count];
    if (previous === undefined || previous.length !== keyEnd - i - 1 || !text.startsWith(previous, i + 1)) {
      const name = text.slice(i + 1, keyEnd);
      if (name.includes("\\")) return -1; // An escaped key: JSON.parse reads its name.
      fieldNames[count] = name;
    }
    let j = keyEnd + 2;
    let value: number;
    const first = text.charCodeAt(j);
    if (first === 34) {
      const close = text.indexOf('"', j + 1);
      if (close < 0 || close >= end) return -1;
      value = toNumber(text.slice(j + 1, close));
      j = close + 1;
    } else {
      if (first === 123 || first === 91) return -1;
      let k = j;
      while (k < end) {
        const c = text.charCodeAt(k);
        if (c === 44 || c === 125) break;
        k++;
      }
      if (k === j) return -1;
      value = parseNumber(text, j, k);
      j = k;
    }
    fieldValues[count++] = value;
    const c = text.charCodeAt(j);
    if (c === 125) return j === end - 1 ? count : -1;
    if (c !== 44) return -1;
    i = j + 1;
  }
}
