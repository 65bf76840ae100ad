/**
 * Rows in ClickHouse's `RowBinary` format, for inserts: numbers go as their
 * bytes, so a Float64 arrives exactly as it was logged (ClickHouse 18.16 reads
 * some decimal texts one unit in the last place off), and nothing is escaped
 * or parsed as text on either side.
 *
 * @example
 * ```ts
 * import { RowBinaryWriter } from "./row_binary.ts";
 *
 * const rows = new RowBinaryWriter();
 * rows.string("loss").float64(0.5).uint32(7);
 * console.log(rows.bytes().length); // 1 + 4 + 8 + 4
 * ```
 *
 * @module
 */

const encoder = new TextEncoder();

/**
 * Appends values in RowBinary encoding to a growing buffer.
 *
 * @example Two rows of (String, Float64)
 * ```ts
 * import assert from "node:assert/strict";
 * import { RowBinaryWriter } from "./row_binary.ts";
 *
 * const rows = new RowBinaryWriter(16);
 * for (const [name, value] of [["loss", 0.25], ["acc", 0.5]] as const) rows.repeated(name).float64(value);
 * const bytes = rows.bytes();
 * assert.equal(bytes.length, (1 + 4 + 8) + (1 + 3 + 8));
 * assert.equal(new DataView(bytes.buffer, bytes.byteOffset).getFloat64(5, true), 0.25);
 * ```
 */
export class RowBinaryWriter {
  #buffer: Uint8Array;
  #view: DataView;
  #length = 0;
  #strings = new Map<string, Uint8Array>();

  /**
   * Makes an empty writer.
   *
   * @param capacity Bytes to reserve at first.
   */
  constructor(capacity: number = 1 << 16) {
    this.#buffer = new Uint8Array(capacity);
    this.#view = new DataView(this.#buffer.buffer);
  }

  /**
   * A `String`: its UTF-8 length as a LEB128 varint, then the bytes.
   *
   * @param s The string.
   * @returns This writer.
   */
  string(s: string): this {
    const bytes = encoder.encode(s);
    this.#varint(bytes.length);
    this.#ensure(bytes.length);
    this.#buffer.set(bytes, this.#length);
    this.#length += bytes.length;
    return this;
  }

  /**
   * A `String` that recurs in many rows (a prefix, a metric's name): encoded once per writer.
   *
   * @param s The string.
   * @returns This writer.
   */
  repeated(s: string): this {
    let encoded = this.#strings.get(s);
    if (encoded === undefined) {
      const bytes = encoder.encode(s);
      const head: number[] = [];
      for (let n = bytes.length; ; n = Math.floor(n / 128)) {
        head.push(n >= 128 ? (n & 0x7f) | 0x80 : n);
        if (n < 128) break;
      }
      encoded = new Uint8Array(head.length + bytes.length);
      encoded.set(head);
      encoded.set(bytes, head.length);
      this.#strings.set(s, encoded);
    }
    this.#ensure(encoded.length);
    this.#buffer.set(encoded, this.#length);
    this.#length += encoded.length;
    return this;
  }

  /**
   * Bytes already in RowBinary (e.g. the columns that many rows share).
   *
   * @param bytes The encoded values.
   * @returns This writer.
   */
  raw(bytes: Uint8Array): this {
    this.#ensure(bytes.length);
    this.#buffer.set(bytes, this.#length);
    this.#length += bytes.length;
    return this;
  }

  /**
   * An `Int8` or `Enum8` value.
   *
   * @param n The value (-128 to 127).
   * @returns This writer.
   */
  int8(n: number): this {
    this.#ensure(1);
    this.#view.setInt8(this.#length, n);
    this.#length += 1;
    return this;
  }

  /**
   * A `UInt32`.
   *
   * @param n The value (0 to 2^32 - 1).
   * @returns This writer.
   */
  uint32(n: number): this {
    this.#ensure(4);
    this.#view.setUint32(this.#length, n, true);
    this.#length += 4;
    return this;
  }

  /**
   * A `UInt64` from a safe integer.
   *
   * @param n The value (0 to 2^53 - 1).
   * @returns This writer.
   */
  uint64(n: number): this {
    this.#ensure(8);
    this.#view.setUint32(this.#length, n % 0x1_0000_0000, true);
    this.#view.setUint32(this.#length + 4, Math.floor(n / 0x1_0000_0000), true);
    this.#length += 8;
    return this;
  }

  /**
   * A `Float64`, NaN and ±Infinity included.
   *
   * @param n The value.
   * @returns This writer.
   */
  float64(n: number): this {
    this.#ensure(8);
    this.#view.setFloat64(this.#length, n, true);
    this.#length += 8;
    return this;
  }

  /**
   * The rows written so far (a view of the buffer, not a copy).
   *
   * @returns The bytes.
   */
  bytes(): Uint8Array {
    return this.#buffer.subarray(0, this.#length);
  }

  #varint(n: number): void {
    this.#ensure(10);
    while (n >= 128) {
      this.#buffer[this.#length++] = (n & 0x7f) | 0x80;
      n = Math.floor(n / 128);
    }
    this.#buffer[this.#length++] = n;
  }

  #ensure(more: number): void {
    if (this.#length + more <= this.#buffer.length) return;
    let size = this.#buffer.length * 2;
    while (size < this.#length + more) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.#buffer.subarray(0, this.#length));
    this.#buffer = grown;
    this.#view = new DataView(grown.buffer);
  }
}
