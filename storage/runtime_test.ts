import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { unrefInterval } from "./runtime.ts";

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs `fn` while a referenced timer keeps the event loop alive (the interval under test does not). */
async function keptAlive<T>(fn: () => Promise<T>): Promise<T> {
  const alive = setInterval(() => {}, 1_000);
  try {
    return await fn();
  } finally {
    clearInterval(alive);
  }
}

describe("unrefInterval", () => {
  it("calls its function at every interval until stopped, and never after", async () => {
    let ticks = 0;
    await keptAlive(async () => {
      let stop: () => void = () => {};
      await new Promise<void>((resolve) => {
        stop = unrefInterval(() => {
          if (++ticks === 3) resolve();
        }, 10);
      });
      stop();
      await sleep(60);
    });
    assert.equal(ticks, 3);
  });

  it("never calls its function when stopped before the first interval", async () => {
    let ticks = 0;
    await keptAlive(async () => {
      const stop = unrefInterval(() => ticks++, 10);
      stop();
      await sleep(60);
    });
    assert.equal(ticks, 0);
  });
});
