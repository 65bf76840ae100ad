// @ts-check
// Formatting of numbers, times and durations, and "nice" axis ticks. Touches
// no DOM, so it also runs (and is unit-tested) outside a browser.

/**
 * Tick positions and the spacing between them.
 * @typedef {{ step: number, ticks: number[] }} Ticks
 */

/** @type {[number, string][]} */
const SI = [
  [1e12, "T"],
  [1e9, "G"],
  [1e6, "M"],
  [1e3, "k"],
];

/**
 * A number as stored, without float noise: 0.30000000000000004 → "0.3".
 * @param {unknown} value
 * @returns {string}
 */
export function exact(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value !== "number") return String(value);
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value)) return String(value);
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-4 || abs >= 1e15)) return value.toExponential(6).replace(/\.?0+e/, "e");
  return String(Number(value.toPrecision(12)));
}

/**
 * A value as a reader compares values, with the axis' precision: about five
 * significant digits, no float noise ("0.10758", "13.9", "1.2346e-5").
 * @param {unknown} value
 * @returns {string}
 */
export function readable(value) {
  if (typeof value !== "number" || !Number.isFinite(value) || Number.isInteger(value)) return exact(value);
  const abs = Math.abs(value);
  if (abs < 1e-4 || abs >= 1e15) return value.toExponential(4).replace(/\.?0+e/, "e");
  return String(Number(value.toPrecision(5)));
}

/**
 * A short label for an axis tick, given the spacing of the ticks.
 * @param {number} value
 * @param {number} step
 * @returns {string}
 */
export function tickLabel(value, step) {
  if (value === 0) return "0";
  const abs = Math.abs(value);
  if (abs >= 1e4 && Number.isInteger(value)) {
    for (const [size, suffix] of SI) {
      if (abs >= size) {
        const digits = Math.max(0, Math.ceil(-Math.log10(step / size) - 1e-9));
        return trimZeros((value / size).toFixed(Math.min(digits, 3))) + suffix;
      }
    }
  }
  if (abs < 1e-3 || abs >= 1e15) return value.toExponential(1).replace(".0e", "e");
  const digits = Math.max(0, Math.ceil(-Math.log10(step) - 1e-9));
  return trimZeros(value.toFixed(Math.min(digits, 10)));
}

/**
 * "1.50" → "1.5", "2.0" → "2".
 * @param {string} text
 * @returns {string}
 */
function trimZeros(text) {
  return text.includes(".") ? text.replace(/\.?0+$/, "") : text;
}

/**
 * Evenly spaced round values covering [min, max], about `count` of them.
 * @param {number} min
 * @param {number} max
 * @param {number} count
 * @returns {Ticks}
 */
export function niceTicks(min, max, count) {
  if (!(max > min)) return { step: 1, ticks: [min] };
  const raw = (max - min) / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const residual = raw / magnitude;
  const step = magnitude * (residual > 5 ? 10 : residual > 2 ? 5 : residual > 1 ? 2 : 1);
  const ticks = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) {
    ticks.push(Math.abs(v) < step * 1e-9 ? 0 : Number(v.toPrecision(12)));
  }
  return { step, ticks };
}

/**
 * Integer ticks for steps and counts (never 0.5 of a step).
 * @param {number} min
 * @param {number} max
 * @param {number} count
 * @returns {Ticks}
 */
export function integerTicks(min, max, count) {
  const result = niceTicks(min, max, count);
  if (result.step >= 1) return result;
  const ticks = [];
  for (let v = Math.ceil(min); v <= max; v++) ticks.push(v);
  return { step: 1, ticks };
}

/**
 * Powers of ten for a log axis (with 2 and 5 in between when there are few decades).
 * @param {number} min > 0
 * @param {number} max
 * @returns {number[]}
 */
export function logTicks(min, max) {
  const lo = Math.floor(Math.log10(min));
  const hi = Math.ceil(Math.log10(max));
  const ticks = [];
  const mantissas = hi - lo <= 2 ? [1, 2, 5] : [1];
  for (let e = lo; e <= hi; e++) {
    for (const m of mantissas) {
      const v = m * 10 ** e;
      if (v >= min && v <= max) ticks.push(Number(v.toPrecision(6)));
    }
  }
  return ticks;
}

const TIME_STEPS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];

/**
 * Ticks for seconds (wall clock when `offset` is the local UTC offset, durations when 0).
 * @param {number} min
 * @param {number} max
 * @param {number} count
 * @param {number} [offset]
 * @returns {Ticks}
 */
export function timeTicks(min, max, count, offset = 0) {
  const raw = (max - min) / Math.max(1, count);
  const step = TIME_STEPS.find((s) => s >= raw) ?? niceTicks(min, max, count).step;
  const ticks = [];
  // Counted from the first tick, so that sub-second steps do not pile up rounding errors.
  const first = Math.ceil((min + offset) / step) * step - offset;
  for (let i = 0; first + i * step <= max; i++) ticks.push(first + i * step);
  return { step, ticks };
}

/**
 * A wall-clock tick label: time of day, or the date when the ticks are days apart.
 * @param {number} seconds epoch seconds
 * @param {number} step
 * @returns {string}
 */
export function clockLabel(seconds, step) {
  if (step < 1) {
    const ms = Math.round(seconds * 1000);
    const t = new Date(ms);
    const digits = step < 0.01 ? 3 : step < 0.1 ? 2 : 1;
    const fraction = String(((ms % 1000) + 1000) % 1000).padStart(3, "0").slice(0, digits);
    return `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}.${fraction}`;
  }
  const d = new Date(seconds * 1000);
  if (step >= 86400) return d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return step < 60 ? `${hm}:${pad(d.getSeconds())}` : hm;
}

/**
 * A duration as "1h 02m", "3m 05s", "12.5s".
 * @param {number | null | undefined} seconds
 * @returns {string}
 */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const negative = seconds < 0;
  let s = Math.abs(seconds);
  let text;
  if (s < 10) text = `${trimZeros(s.toFixed(1))}s`;
  else if (s < 60) text = `${Math.floor(s)}s`;
  else if (s < 3600) text = `${Math.floor(s / 60)}m ${pad(Math.floor(s % 60))}s`;
  else if (s < 86400) text = `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
  else {
    s = Math.floor(s / 3600);
    text = `${Math.floor(s / 24)}d ${s % 24}h`;
  }
  return negative ? `-${text}` : text;
}

/**
 * A duration tick label (relative time axis).
 * @param {number} seconds
 * @param {number} step
 * @returns {string}
 */
export function durationLabel(seconds, step) {
  if (seconds === 0) return "0";
  if (step < 60) return `${trimZeros(seconds.toFixed(step < 0.01 ? 3 : step < 0.1 ? 2 : step < 1 ? 1 : 0))}s`;
  if (step < 3600) return `${trimZeros((seconds / 60).toFixed(step % 60 ? 1 : 0))}m`;
  if (step < 86400) return `${trimZeros((seconds / 3600).toFixed(step % 3600 ? 1 : 0))}h`;
  return `${trimZeros((seconds / 86400).toFixed(step % 86400 ? 1 : 0))}d`;
}

/**
 * An epoch-seconds time as "2024-05-01 14:03:12".
 * @param {number | null | undefined} seconds
 * @returns {string}
 */
export function dateTime(seconds) {
  if (!seconds) return "—";
  const d = new Date(seconds * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/**
 * "14:03:12" today, "May 1 14:03" on another day.
 * @param {number | null | undefined} seconds epoch seconds
 * @returns {string}
 */
export function shortTime(seconds) {
  if (!seconds) return "—";
  const d = new Date(seconds * 1000);
  const now = new Date();
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (d.toDateString() === now.toDateString()) return `${hm}:${pad(d.getSeconds())}`;
  const day = d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
  return d.getFullYear() === now.getFullYear() ? `${day} ${hm}` : `${d.getFullYear()} ${day}`;
}

/**
 * "just now", "5m ago", "3h ago", "2d ago".
 * @param {number | null | undefined} seconds epoch seconds
 * @returns {string}
 */
export function ago(seconds) {
  if (!seconds) return "";
  const s = Date.now() / 1000 - seconds;
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

/**
 * A byte count as "1.2 MB".
 * @param {number} n
 * @returns {string}
 */
export function bytes(n) {
  if (!Number.isFinite(n)) return "—";
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let v = n;
  let i = -1;
  do {
    v /= 1024;
    i++;
  } while (v >= 1024 && i < units.length - 1);
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

/**
 * @param {number} n
 * @returns {string}
 */
function pad(n) {
  return String(n).padStart(2, "0");
}
