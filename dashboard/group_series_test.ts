// Unit tests of the grouping of runs (group_series.js), outside a browser.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
// The Node build (tsconfig.test.json, no allowJs) has no types for a .js module.
// @ts-ignore TS7016
import { groupLine, groupName } from "./group_series.js";

const points = (x: number[], y: number[]) => ({ x: new Float64Array(x), y: new Float64Array(y) });

describe("groupLine", () => {
  it("answers the mean, min and max of the runs at each x any of them has", () => {
    const line = groupLine([points([0, 1, 2], [1, 2, 3]), points([0, 1, 3], [3, 4, 5])]);
    assert.deepEqual([...line.x], [0, 1, 2, 3]);
    assert.deepEqual([...line.y], [2, 3, 3, 5]);
    assert.deepEqual([...line.lo], [1, 2, 3, 5]);
    assert.deepEqual([...line.hi], [3, 4, 3, 5]);
  });

  it("leaves out a value that is not finite", () => {
    const line = groupLine([points([0], [NaN]), points([0], [4])]);
    assert.deepEqual([...line.y], [4]);
  });
});

describe("groupName", () => {
  it("names a group by its value as text, and a missing value with a dash", () => {
    assert.equal(groupName(0.001), "0.001");
    assert.equal(groupName("adam"), "adam");
    assert.equal(groupName(undefined), "—");
    assert.equal(groupName({ a: 1 }), '{"a":1}');
  });
});
