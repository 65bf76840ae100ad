/**
 * Min-max downsampling of a series for charts: the points are cut into
 * buckets of equal count, and each bucket keeps its smallest and largest value
 * (in x order), so spikes survive however far the series is reduced.
 *
 * @module
 */

/** A downsampled series: parallel arrays. */
export interface DownsampledSeries {
  /** The x values kept. */
  x: number[];
  /** The values kept. */
  value: number[];
  /** Whether points were dropped. */
  downsampled: boolean;
}

/**
 * Reduces a series to about `points` points (at most `points`), keeping each
 * bucket's minimum and maximum in their original order. Non-finite values never
 * win a bucket unless the bucket has nothing else (then its first point is kept).
 *
 * @param x The x values (steps, times, ...), parallel to `value`.
 * @param value The values.
 * @param points How many points to return at most (at least 2).
 * @returns The kept points, and whether any were dropped.
 *
 * @example Keep the spike of a long flat series
 * ```ts
 * import { minMaxDownsample } from "./downsample.ts";
 *
 * const x = Array.from({ length: 1000 }, (_, i) => i);
 * const value = x.map((i) => (i === 500 ? 99 : 1));
 * const out = minMaxDownsample(x, value, 10);
 * console.log(out.x.length <= 10, out.value.includes(99)); // true true
 * ```
 */
export function minMaxDownsample(
  x: readonly number[],
  value: readonly number[],
  points: number,
): DownsampledSeries {
  const n = Math.min(x.length, value.length);
  const target = Math.max(2, Math.floor(points));
  if (n <= target) {
    return { x: x.slice(0, n), value: value.slice(0, n), downsampled: false };
  }
  const kept = minMaxPlaces(n, target, (i) => value[i], (j, k) => value[j] < value[k]);
  return { x: kept.map((i) => x[i]), value: kept.map((i) => value[i]), downsampled: true };
}

/**
 * The places a min-max downsampling of `n` values to at most `target` keeps: equal-count
 * buckets, each keeping its lowest and highest place in order; NaN never wins a bucket
 * (one of NaN only keeps its first place); of equals, the first wins.
 *
 * @param n How many values.
 * @param target How many places to keep at most (at least 2).
 * @param value The value at a place.
 * @param below Whether the value at place `j` is below the one at place `k`.
 * @returns The kept places, ascending.
 *
 * @example The spike's place survives
 * ```ts
 * import { minMaxPlaces } from "./downsample.ts";
 *
 * const value = Array.from({ length: 100 }, (_, i) => (i === 42 ? 9 : 1));
 * console.log(minMaxPlaces(100, 4, (i) => value[i], (j, k) => value[j] < value[k]).includes(42)); // true
 * ```
 */
export function minMaxPlaces(n: number, target: number, value: (place: number) => number, below: (j: number, k: number) => boolean): number[] {
  const buckets = Math.floor(target / 2);
  const kept: number[] = [];
  for (let b = 0; b < buckets; b++) {
    const start = Math.floor((b * n) / buckets);
    const end = Math.floor(((b + 1) * n) / buckets);
    let lo = -1;
    let hi = -1;
    for (let i = start; i < end; i++) {
      if (Number.isNaN(value(i))) continue;
      if (lo < 0 || below(i, lo)) lo = i;
      if (hi < 0 || below(hi, i)) hi = i;
    }
    if (lo < 0) kept.push(start);
    else if (lo === hi) kept.push(lo);
    else kept.push(Math.min(lo, hi), Math.max(lo, hi));
  }
  return kept;
}
