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
  const buckets = Math.floor(target / 2);
  const outX: number[] = [];
  const outV: number[] = [];
  for (let b = 0; b < buckets; b++) {
    const start = Math.floor((b * n) / buckets);
    const end = Math.floor(((b + 1) * n) / buckets);
    let lo = -1;
    let hi = -1;
    for (let i = start; i < end; i++) {
      const v = value[i];
      if (Number.isNaN(v)) continue;
      if (lo < 0 || v < value[lo]) lo = i;
      if (hi < 0 || v > value[hi]) hi = i;
    }
    if (lo < 0) {
      outX.push(x[start]);
      outV.push(value[start]);
    } else if (lo === hi) {
      outX.push(x[lo]);
      outV.push(value[lo]);
    } else {
      const [first, second] = lo < hi ? [lo, hi] : [hi, lo];
      outX.push(x[first], x[second]);
      outV.push(value[first], value[second]);
    }
  }
  return { x: outX, value: outV, downsampled: true };
}
