// @ts-check
// Runs grouped by a param's value (all seeds of a config): per group, the mean
// of its runs at each x with the min–max band around it. Touches no DOM.

/**
 * A run's points.
 * @typedef {{ x: Float64Array, y: Float64Array }} Points
 */

/**
 * A group's line: the mean, and the smallest and largest value of its runs, at each x any of them has.
 * @typedef {{ x: Float64Array, y: Float64Array, lo: Float64Array, hi: Float64Array }} GroupLine
 */

/**
 * The mean, min and max at each x of the runs of a group (a run without a
 * finite value at an x does not count there).
 * @param {Points[]} members
 * @returns {GroupLine}
 */
export function groupLine(members) {
  /** @type {Map<number, { sum: number, n: number, lo: number, hi: number }>} */
  const at = new Map();
  for (const m of members) {
    for (let i = 0; i < m.x.length; i++) {
      const v = m.y[i];
      if (!Number.isFinite(v)) continue;
      const cell = at.get(m.x[i]);
      if (cell) {
        cell.sum += v;
        cell.n++;
        if (v < cell.lo) cell.lo = v;
        if (v > cell.hi) cell.hi = v;
      } else {
        at.set(m.x[i], { sum: v, n: 1, lo: v, hi: v });
      }
    }
  }
  const xs = [...at.keys()].sort((a, b) => a - b);
  const line = { x: new Float64Array(xs), y: new Float64Array(xs.length), lo: new Float64Array(xs.length), hi: new Float64Array(xs.length) };
  xs.forEach((x, i) => {
    const cell = /** @type {{ sum: number, n: number, lo: number, hi: number }} */ (at.get(x));
    line.y[i] = cell.sum / cell.n;
    line.lo[i] = cell.lo;
    line.hi[i] = cell.hi;
  });
  return line;
}

/**
 * A param's value as a group's name: strings as they are, the rest as JSON, "—" when missing.
 * @param {unknown} value
 * @returns {string}
 */
export function groupName(value) {
  if (value === undefined) return "—";
  return typeof value === "string" ? value : JSON.stringify(value);
}
