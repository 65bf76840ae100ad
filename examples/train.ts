/**
 * The main example: trains a small neural network (one hidden layer, plain
 * TypeScript) to separate two interleaved half-moons, logs everything to `.dash/`
 * and prints a summary read back through the reader.
 *
 * Run: `npm run demo` (or `deno run -A examples/train.ts`, `bun examples/train.ts`).
 *
 * @module
 */
import { Experiment } from "../mod.ts";
import { DashReader } from "../storage/jsonl.ts";

const config = { seed: 7, hidden: 16, lr: 0.5, epochs: 60, batchSize: 32, samples: 400 };

/** A small deterministic random generator (mulberry32), so every run trains the same. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Sample = { x: [number, number]; y: 0 | 1 };

/** Two interleaved half-moons with a little noise. */
function moons(n: number, random: () => number): Sample[] {
  return Array.from({ length: n }, (_, i) => {
    const y = (i % 2) as 0 | 1;
    const angle = random() * Math.PI;
    const noise = () => (random() - 0.5) * 0.3;
    const x: [number, number] = y === 0
      ? [Math.cos(angle) + noise(), Math.sin(angle) + noise()]
      : [1 - Math.cos(angle) + noise(), 0.5 - Math.sin(angle) + noise()];
    return { x, y };
  });
}

/** A 2 → hidden → 1 network with tanh and a sigmoid output, trained by plain SGD. */
class TinyNet {
  w1: number[][];
  b1: number[];
  w2: number[];
  b2 = 0;

  constructor(hidden: number, random: () => number) {
    const init = () => (random() - 0.5) * 2;
    this.w1 = Array.from({ length: hidden }, () => [init(), init()]);
    this.b1 = Array.from({ length: hidden }, () => 0);
    this.w2 = Array.from({ length: hidden }, init);
  }

  forward(x: [number, number]): { h: number[]; p: number } {
    const h = this.w1.map((w, j) => Math.tanh(w[0] * x[0] + w[1] * x[1] + this.b1[j]));
    const z = h.reduce((sum, hj, j) => sum + hj * this.w2[j], this.b2);
    return { h, p: 1 / (1 + Math.exp(-z)) };
  }

  /** One SGD step on a batch; returns the batch's mean cross-entropy. */
  step(batch: Sample[], lr: number): number {
    let loss = 0;
    const gw1 = this.w1.map(() => [0, 0]);
    const gb1 = this.b1.map(() => 0);
    const gw2 = this.w2.map(() => 0);
    let gb2 = 0;
    for (const { x, y } of batch) {
      const { h, p } = this.forward(x);
      loss += -(y * Math.log(p + 1e-12) + (1 - y) * Math.log(1 - p + 1e-12));
      const dz = p - y;
      gb2 += dz;
      h.forEach((hj, j) => {
        gw2[j] += dz * hj;
        const dh = dz * this.w2[j] * (1 - hj * hj);
        gw1[j][0] += dh * x[0];
        gw1[j][1] += dh * x[1];
        gb1[j] += dh;
      });
    }
    const scale = lr / batch.length;
    this.w1.forEach((w, j) => {
      w[0] -= scale * gw1[j][0];
      w[1] -= scale * gw1[j][1];
      this.b1[j] -= scale * gb1[j];
      this.w2[j] -= scale * gw2[j];
    });
    this.b2 -= scale * gb2;
    return loss / batch.length;
  }

  evaluate(data: Sample[]): { loss: number; acc: number } {
    let loss = 0;
    let correct = 0;
    for (const { x, y } of data) {
      const { p } = this.forward(x);
      loss += -(y * Math.log(p + 1e-12) + (1 - y) * Math.log(1 - p + 1e-12));
      if ((p > 0.5 ? 1 : 0) === y) correct++;
    }
    return { loss: loss / data.length, acc: correct / data.length };
  }
}

const prefix = "demo/moons/tiny-mlp";
const exp = new Experiment({
  prefix,
  readme: "A 2-16-1 tanh network learning two half-moons with plain SGD",
  tags: ["example", "mlp"],
});

await exp.run(async (exp) => {
  const random = rng(config.seed);
  const data = moons(config.samples, random);
  const [train, val] = [data.filter((_, i) => i % 5 !== 0), data.filter((_, i) => i % 5 === 0)];
  const net = new TinyNet(config.hidden, random);
  exp.params.set({ ...config, model: { layers: [2, config.hidden, 1], activation: "tanh" } });
  exp.log("Training started", { trainSize: train.length, valSize: val.length });

  let step = 0;
  for (let epoch = 0; epoch < config.epochs; epoch++) {
    const lr = config.lr * (epoch < config.epochs / 2 ? 1 : 0.3);
    const order = train.map((s) => [random(), s] as const).sort((a, b) => a[0] - b[0]).map(([, s]) => s);
    for (let i = 0; i < order.length; i += config.batchSize) {
      const loss = net.step(order.slice(i, i + config.batchSize), lr);
      exp.metrics("train").log({ loss, lr, epoch, step: step++ });
    }
    const v = net.evaluate(val);
    exp.metrics.log({ epoch, step, val: { loss: v.loss, acc: v.acc } });
    if (epoch % 10 === 0) exp.log(`epoch ${epoch}: val acc ${v.acc.toFixed(3)}`);
    await Promise.resolve(); // a real loop awaits data; this lets the buffer write
  }
  const final = net.evaluate(val);
  if (final.acc < 0.9) exp.log("Validation accuracy is low", { level: "warn", acc: final.acc });
  await exp.files.saveJson("model.json", { w1: net.w1, b1: net.b1, w2: net.w2, b2: net.b2 });
  exp.log("Training finished", { valAcc: final.acc });
});

const reader = new DashReader(".dash");
const summary = await reader.summary(prefix);
const status = await reader.status(prefix);
console.log(`Experiment ${prefix}: ${status?.status}`);
console.log("key".padEnd(20) + "count".padStart(7) + "min".padStart(10) + "max".padStart(10) + "last".padStart(10));
for (const [key, s] of Object.entries(summary)) {
  const f = (v: number | null) => (v === null ? "-" : Number.isInteger(v) ? String(v) : v.toFixed(4)).padStart(10);
  console.log(key.padEnd(20) + String(s.count).padStart(7) + f(s.min) + f(s.max) + f(s.last));
}
console.log(`\nLogged to .dash/${prefix}/ (metrics/*.jsonl, logs.jsonl, parameters.json, files/model.json)`);
console.log(`Look at it:  npm run ml-dash -- show ${prefix}`);
console.log(`Dashboard:   npm run serve   then open http://127.0.0.1:8787`);
