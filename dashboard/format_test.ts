// Unit tests of the dashboard's formatters (format.js), outside a browser.
// Times are built from local dates, so the expected text holds in any time zone;
// month names come from the runtime's locale, as they do in the browser.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
// Deno and Bun type it from its JSDoc; the Node build (tsconfig.test.json, no
// allowJs) has no types for a .js module and would refuse the import.
// @ts-ignore TS7016
import * as fmt from "./format.js";

const HOUR = 3600;
const DAY = 86400;

/** Epoch seconds of a local date and time. */
function local(year: number, month: number, day: number, hours = 0, minutes = 0, seconds = 0): number {
  return new Date(year, month - 1, day, hours, minutes, seconds).getTime() / 1000;
}

/** "May 1" in the runtime's locale: how format.js names a day. */
function dayName(seconds: number): string {
  return new Date(seconds * 1000).toLocaleDateString(undefined, { month: "short", day: "numeric" });
}

describe("exact", () => {
  it("shows integers and short decimals as they are, without float noise", () => {
    assert.equal(fmt.exact(42), "42");
    assert.equal(fmt.exact(-3), "-3");
    assert.equal(fmt.exact(0), "0");
    assert.equal(fmt.exact(-2.5), "-2.5");
    assert.equal(fmt.exact(0.1 + 0.2), "0.3");
    assert.equal(fmt.exact(1 / 3), "0.333333333333");
  });

  it("writes tiny values in exponent form with at most 7 significant digits", () => {
    assert.equal(fmt.exact(1.5e-5), "1.5e-5");
    assert.equal(fmt.exact(-0.000012), "-1.2e-5");
    assert.equal(fmt.exact(1.23456789e-7), "1.234568e-7");
  });

  it("shows a dash for a missing value and non-finite numbers by name", () => {
    assert.equal(fmt.exact(null), "—");
    assert.equal(fmt.exact(undefined), "—");
    assert.equal(fmt.exact(NaN), "NaN");
    assert.equal(fmt.exact(Infinity), "Infinity");
    assert.equal(fmt.exact(-Infinity), "-Infinity");
    assert.equal(fmt.exact("abc"), "abc");
  });
});

describe("tickLabel", () => {
  it("uses k, M, G and T for large integers, with the decimals the step needs", () => {
    assert.equal(fmt.tickLabel(25000, 5000), "25k");
    assert.equal(fmt.tickLabel(-40000, 10000), "-40k");
    assert.equal(fmt.tickLabel(1500000, 500000), "1.5M");
    assert.equal(fmt.tickLabel(2e9, 1e9), "2G");
    assert.equal(fmt.tickLabel(3e12, 1e12), "3T");
  });

  it("shows small values with the decimals of the step, trailing zeros trimmed", () => {
    assert.equal(fmt.tickLabel(0, 1), "0");
    assert.equal(fmt.tickLabel(3, 1), "3");
    assert.equal(fmt.tickLabel(1500, 500), "1500");
    assert.equal(fmt.tickLabel(0.5, 0.1), "0.5");
    assert.equal(fmt.tickLabel(0.25, 0.05), "0.25");
    assert.equal(fmt.tickLabel(-2.5, 0.5), "-2.5");
  });

  it("writes values under 0.001 in exponent form", () => {
    assert.equal(fmt.tickLabel(0.0005, 0.0001), "5e-4");
  });
});

describe("niceTicks", () => {
  it("steps by 1, 2 or 5 times a power of ten", () => {
    assert.deepEqual(fmt.niceTicks(0, 10, 5), { step: 2, ticks: [0, 2, 4, 6, 8, 10] });
    assert.deepEqual(fmt.niceTicks(0, 1, 4), { step: 0.5, ticks: [0, 0.5, 1] });
    assert.deepEqual(fmt.niceTicks(0, 1000, 4), { step: 500, ticks: [0, 500, 1000] });
  });

  it("crosses zero exactly and keeps ticks free of float noise", () => {
    assert.deepEqual(fmt.niceTicks(-1, 1, 4), { step: 0.5, ticks: [-1, -0.5, 0, 0.5, 1] });
    assert.deepEqual(fmt.niceTicks(0, 0.3, 3), { step: 0.1, ticks: [0, 0.1, 0.2, 0.3] });
  });

  it("gives the one value of an empty range", () => {
    assert.deepEqual(fmt.niceTicks(5, 5, 4), { step: 1, ticks: [5] });
  });
});

describe("integerTicks", () => {
  it("never steps by less than 1", () => {
    assert.deepEqual(fmt.integerTicks(0, 3, 10), { step: 1, ticks: [0, 1, 2, 3] });
    assert.deepEqual(fmt.integerTicks(0, 100, 5), { step: 20, ticks: [0, 20, 40, 60, 80, 100] });
  });
});

describe("logTicks", () => {
  it("adds 2 and 5 between powers of ten when the range spans few decades", () => {
    assert.deepEqual(fmt.logTicks(1, 100), [1, 2, 5, 10, 20, 50, 100]);
    assert.deepEqual(fmt.logTicks(3, 30), [5, 10, 20]);
  });

  it("gives only powers of ten over many decades", () => {
    assert.deepEqual(fmt.logTicks(0.001, 1000), [0.001, 0.01, 0.1, 1, 10, 100, 1000]);
  });
});

describe("timeTicks", () => {
  it("steps by round durations: seconds, minutes, hours", () => {
    assert.deepEqual(fmt.timeTicks(0, 100, 5), { step: 30, ticks: [0, 30, 60, 90] });
    assert.deepEqual(fmt.timeTicks(0, 7200, 4), { step: 1800, ticks: [0, 1800, 3600, 5400, 7200] });
  });

  it("puts ticks on round local times when given the UTC offset", () => {
    assert.deepEqual(fmt.timeTicks(10, 130, 2, 5), { step: 60, ticks: [55, 115] });
  });

  it("falls back to nice numbers beyond a week per tick", () => {
    assert.deepEqual(fmt.timeTicks(0, 1e7, 2), { step: 5e6, ticks: [0, 5e6, 1e7] });
  });
});

describe("clockLabel", () => {
  const t = local(2024, 5, 1, 14, 3, 12);

  it("shows seconds for ticks under a minute apart, else hours and minutes", () => {
    assert.equal(fmt.clockLabel(t, 30), "14:03:12");
    assert.equal(fmt.clockLabel(t, 300), "14:03");
  });

  it("shows the day for ticks a day or more apart", () => {
    assert.equal(fmt.clockLabel(t, DAY), dayName(t));
  });
});

describe("duration", () => {
  it("shows tenths under 10 s, whole seconds under a minute", () => {
    assert.equal(fmt.duration(0), "0s");
    assert.equal(fmt.duration(2), "2s");
    assert.equal(fmt.duration(5.24), "5.2s");
    assert.equal(fmt.duration(12.7), "12s");
    assert.equal(fmt.duration(59.9), "59s");
  });

  it("shows two units beyond a minute, the second one padded", () => {
    assert.equal(fmt.duration(185), "3m 05s");
    assert.equal(fmt.duration(HOUR + 2 * 60 + 5), "1h 02m");
    assert.equal(fmt.duration(DAY + HOUR), "1d 1h");
  });

  it("signs negative durations and shows a dash for a missing one", () => {
    assert.equal(fmt.duration(-185), "-3m 05s");
    assert.equal(fmt.duration(null), "—");
    assert.equal(fmt.duration(undefined), "—");
    assert.equal(fmt.duration(NaN), "—");
    assert.equal(fmt.duration(Infinity), "—");
  });
});

describe("durationLabel", () => {
  it("uses the unit of the step: s, m, h or d", () => {
    assert.equal(fmt.durationLabel(0, 10), "0");
    assert.equal(fmt.durationLabel(30, 10), "30s");
    assert.equal(fmt.durationLabel(0.5, 0.5), "0.5s");
    assert.equal(fmt.durationLabel(120, 60), "2m");
    assert.equal(fmt.durationLabel(-60, 60), "-1m");
    assert.equal(fmt.durationLabel(2 * HOUR, HOUR), "2h");
    assert.equal(fmt.durationLabel(2 * DAY, DAY), "2d");
  });

  it("shows a decimal only when the step is not a whole unit", () => {
    assert.equal(fmt.durationLabel(90, 90), "1.5m");
    assert.equal(fmt.durationLabel(5400, 1800), "90m");
    assert.equal(fmt.durationLabel(1.5 * DAY, DAY / 2), "36h");
    assert.equal(fmt.durationLabel(1.5 * DAY, 1.5 * DAY), "1.5d");
  });
});

describe("dateTime", () => {
  it("writes local date and time with padded fields", () => {
    assert.equal(fmt.dateTime(local(2024, 5, 1, 14, 3, 12)), "2024-05-01 14:03:12");
    assert.equal(fmt.dateTime(local(2023, 12, 31, 9, 0, 7)), "2023-12-31 09:00:07");
  });

  it("shows a dash for no time", () => {
    assert.equal(fmt.dateTime(0), "—");
    assert.equal(fmt.dateTime(null), "—");
    assert.equal(fmt.dateTime(undefined), "—");
  });
});

describe("shortTime", () => {
  it("shows only the time, with seconds, for today", () => {
    const now = new Date();
    const today = local(now.getFullYear(), now.getMonth() + 1, now.getDate(), 0, 0, 5);
    assert.equal(fmt.shortTime(today), "00:00:05");
  });

  it("adds the day for another day of this year, and the year for another year", () => {
    const now = new Date();
    const otherDay = now.getMonth() === 0 && now.getDate() === 1 ? 2 : 1;
    const thisYear = local(now.getFullYear(), 1, otherDay, 12, 30);
    assert.equal(fmt.shortTime(thisYear), `${dayName(thisYear)} 12:30`);
    const lastYear = local(2019, 3, 4, 8, 15);
    assert.equal(fmt.shortTime(lastYear), `2019 ${dayName(lastYear)}`);
  });

  it("shows a dash for no time", () => {
    assert.equal(fmt.shortTime(0), "—");
    assert.equal(fmt.shortTime(undefined), "—");
  });
});

describe("ago", () => {
  const now = () => Date.now() / 1000;

  it("rounds to minutes, hours or days", () => {
    assert.equal(fmt.ago(now() - 30), "just now");
    assert.equal(fmt.ago(now() - 5 * 60), "5m ago");
    assert.equal(fmt.ago(now() - 3 * HOUR), "3h ago");
    assert.equal(fmt.ago(now() - 2 * DAY), "2d ago");
  });

  it("is empty for no time", () => {
    assert.equal(fmt.ago(0), "");
    assert.equal(fmt.ago(undefined), "");
  });
});

describe("bytes", () => {
  it("shows bytes below 1 KiB, then one decimal below 10 units", () => {
    assert.equal(fmt.bytes(0), "0 B");
    assert.equal(fmt.bytes(1023), "1023 B");
    assert.equal(fmt.bytes(1024), "1.0 KB");
    assert.equal(fmt.bytes(1536), "1.5 KB");
    assert.equal(fmt.bytes(10 * 1024), "10 KB");
    assert.equal(fmt.bytes(5 * 1024 ** 2), "5.0 MB");
    assert.equal(fmt.bytes(1.5 * 1024 ** 3), "1.5 GB");
  });

  it("stops at TB, and shows a dash for a non-number", () => {
    assert.equal(fmt.bytes(1024 ** 5), "1024 TB");
    assert.equal(fmt.bytes(NaN), "—");
  });
});

describe("readable", () => {
  it("keeps about five significant digits, without float noise", () => {
    assert.equal(fmt.readable(0.1075793733452), "0.10758");
    assert.equal(fmt.readable(13.9), "13.9");
    assert.equal(fmt.readable(0.30000000000000004), "0.3");
    assert.equal(fmt.readable(1234.56789), "1234.6");
    assert.equal(fmt.readable(0.0000123456), "1.2346e-5");
    assert.equal(fmt.readable(60000), "60000");
    assert.equal(fmt.readable(null), "—");
  });
});

describe("sub-second time axes", () => {
  it("ticks a span under a second in fractions of a second", () => {
    const { step, ticks } = fmt.timeTicks(100, 100.5, 5);
    assert.equal(step, 0.1);
    assert.deepEqual(ticks.map((t: number) => Number(t.toFixed(3))), [100, 100.1, 100.2, 100.3, 100.4, 100.5]);
  });

  it("labels wall-clock ticks with their fraction of a second", () => {
    const t = new Date(2024, 4, 1, 14, 3, 12).getTime() / 1000;
    assert.equal(fmt.clockLabel(t + 0.25, 0.05), "14:03:12.25");
    assert.equal(fmt.clockLabel(t + 0.5, 0.1), "14:03:12.5");
    assert.equal(fmt.clockLabel(t + 0.999999, 0.1), "14:03:13.0");
  });

  it("labels elapsed ticks with their fraction of a second", () => {
    assert.equal(fmt.durationLabel(0.25, 0.05), "0.25s");
  });
});
