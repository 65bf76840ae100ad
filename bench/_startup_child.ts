/**
 * One start-up sample, run by startup.ts in a fresh process. It has no static
 * import and reads no argument, so that nothing (not even `node:fs` or
 * `process`) is loaded before the clock starts: what a user's script pays is
 * what is measured. It logs to `.dash/` under its working directory and prints
 * `SAMPLE {json}`.
 *
 * @module
 */
const t0 = performance.now();
const { Experiment } = await import("../mod.ts");
const importMs = performance.now() - t0;

// With --warm, the runtime's node:fs and node:path are loaded before the clock starts, as in
// a script that already uses them: the difference is what the runtime charges for loading them.
const deno = (globalThis as { Deno?: { args: string[] } }).Deno;
if ((deno ? deno.args : process.argv).includes("--warm")) await Promise.all([import("node:fs"), import("node:path")]);
const t1 = performance.now();
const exp = new Experiment({ prefix: "bench/local/startup", dashRoot: ".dash" });
await exp.run.start();
exp.metrics("train").log({ loss: 1 });
await exp.flush();
const firstPointMs = performance.now() - t1;
await exp.run.complete();

console.log(`SAMPLE ${JSON.stringify({ importMs, firstPointMs })}`);
