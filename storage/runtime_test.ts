import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { hostName, readEnv, unrefInterval } from "./runtime.ts";

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

/** Runs `fn` synchronously with `standIn` as the global `Deno`, then puts back what was there (the real namespace on Deno, none elsewhere). */
function withDenoNamespace<T>(standIn: object, fn: () => T): T {
  const saved = Object.getOwnPropertyDescriptor(globalThis, "Deno");
  Object.defineProperty(globalThis, "Deno", { value: standIn, configurable: true, writable: true });
  try {
    return fn();
  } finally {
    if (saved) Object.defineProperty(globalThis, "Deno", saved);
    else delete (globalThis as { Deno?: unknown }).Deno;
  }
}

/** Thrown by the stand-in namespaces as Deno throws for a refused permission. */
function notCapable(): never {
  throw Object.assign(new Error("Requires env access"), { name: "NotCapable" });
}

describe("readEnv and hostName where Deno has no permissions.querySync (a stand-in Deno namespace, as on Deno Deploy)", () => {
  it("readEnv reads the variable directly", () => {
    const env = { get: (name: string) => (name === "ML_DASH_URL" ? "http://127.0.0.1:8787" : undefined) };
    assert.equal(withDenoNamespace({ env, permissions: {} }, () => readEnv("ML_DASH_URL")), "http://127.0.0.1:8787");
    assert.equal(withDenoNamespace({ env }, () => readEnv("ML_DASH_URL")), "http://127.0.0.1:8787");
    assert.equal(withDenoNamespace({ env, permissions: {} }, () => readEnv("ML_DASH_TOKEN")), undefined);
  });

  it("readEnv is undefined where the direct read is refused (NotCapable)", () => {
    assert.equal(withDenoNamespace({ env: { get: notCapable }, permissions: {} }, () => readEnv("ML_DASH_URL")), undefined);
  });

  it("readEnv still asks querySync where there is one, and reads nothing that is not granted", () => {
    const env = { get: () => "secret" };
    const denied = { querySync: () => ({ state: "prompt" }) };
    assert.equal(withDenoNamespace({ env, permissions: denied }, () => readEnv("ML_DASH_TOKEN")), undefined);
  });

  it("hostName asks the namespace directly, and is undefined where that is refused", async () => {
    const named = withDenoNamespace({ hostname: () => "deploy-host", permissions: {} }, () => hostName());
    const refused = withDenoNamespace({ hostname: notCapable, permissions: {} }, () => hostName());
    assert.equal(await named, "deploy-host");
    assert.equal(await refused, undefined);
  });
});
