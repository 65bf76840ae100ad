// The server's ledger of stored batches on a real disk that fills up (a tmpfs):
// the note that a batch was stored fails after its records landed, and nothing
// of the batch is left; and a log cut short by a crash is read up to its last
// whole line.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { SessionLedger } from "./ledger.ts";
import { canMount, fillDisk, smallDisk } from "../testing/small_disk.ts";
import { tempDir } from "../testing/temp.ts";

const PREFIX = "alice/proj/full";
const METRIC = "metrics/train.jsonl";

test("the disk fills up between a batch's records and the ledger's note: add() throws, the records are cut back, and no ledger (nor a restarted one) calls the batch stored", { skip: canMount }, () => {
  const disk = smallDisk("1m");
  assert.ok(disk, "a tmpfs can be mounted");
  try {
    const root = path.join(disk.dir, "root");
    const dir = path.join(root, ...PREFIX.split("/"));
    const log = path.join(dir, ".sessions.jsonl");
    const metric = path.join(dir, METRIC);
    let ledger = new SessionLedger(root, () => {});
    fs.mkdirSync(path.dirname(metric), { recursive: true });
    fs.writeFileSync(metric, "");
    // Batches of one record until the log's last page has room for a begin but not for the note after it.
    let seq = 0;
    let begin = 0;
    let stored = 0;
    for (;; seq++) {
      const before = fs.existsSync(log) ? fs.statSync(log).size : 0;
      const room = 4096 - (before % 4096);
      if (begin > 0 && room >= begin && room < begin + stored) break;
      ledger.begin(PREFIX, [METRIC]);
      const afterBegin = fs.statSync(log).size;
      fs.appendFileSync(metric, `{"_ts":1,"step":${seq}}\n`);
      ledger.add(PREFIX, "s", seq);
      [begin, stored] = [afterBegin - before, fs.statSync(log).size - afterBegin];
      assert.ok(seq < 10_000, "the log reaches such a page end");
    }
    // The metric file's page keeps room for the batch's record; everything else is full.
    const filler = fillDisk(disk.dir, 0);
    const sizeBefore = fs.statSync(metric).size;
    ledger.begin(PREFIX, [METRIC]);
    fs.appendFileSync(metric, `{"_ts":1,"step":${seq}}\n`);
    assert.ok(fs.statSync(metric).size > sizeBefore, "the batch's record landed");
    assert.throws(() => ledger.add(PREFIX, "s", seq), /ENOSPC|no space/i);
    assert.equal(fs.statSync(metric).size, sizeBefore, "the record was cut back");
    assert.equal(ledger.has(PREFIX, "s", seq), false, "the batch is not called stored");
    fs.rmSync(filler);
    ledger = new SessionLedger(root, () => {});
    assert.equal(ledger.has(PREFIX, "s", seq), false, "nor after a restart");
    assert.equal(ledger.has(PREFIX, "s", seq - 1), true, "the batches before it still are");
    assert.equal(fs.statSync(metric).size, sizeBefore);
  } finally {
    disk.unmount();
  }
});

test("a log whose last line was cut short (a crash mid-append) is read up to its last whole line, and the cut line is removed", () => {
  const root = tempDir("ledger");
  let ledger = new SessionLedger(root, () => {});
  ledger.begin(PREFIX, [METRIC]);
  ledger.add(PREFIX, "s", 0);
  const log = path.join(root, ...PREFIX.split("/"), ".sessions.jsonl");
  fs.appendFileSync(log, '{"stored":["s",');
  ledger = new SessionLedger(root, () => {});
  assert.equal(ledger.has(PREFIX, "s", 0), true);
  assert.equal(ledger.has(PREFIX, "s", 1), false);
  assert.ok(fs.readFileSync(log, "utf8").endsWith("\n"), "no torn line is left for the next append to glue onto");
  ledger.begin(PREFIX, [METRIC]);
  ledger.add(PREFIX, "s", 1);
  assert.equal(new SessionLedger(root, () => {}).has(PREFIX, "s", 1), true);
});

test("close() folds the log into the snapshot: a restart reads one file and knows every batch", () => {
  const root = tempDir("ledger");
  const ledger = new SessionLedger(root, () => {});
  for (let seq = 0; seq < 5; seq++) {
    ledger.begin(PREFIX, [METRIC]);
    ledger.add(PREFIX, "s", seq);
  }
  ledger.close();
  const dir = path.join(root, ...PREFIX.split("/"));
  assert.equal(fs.existsSync(path.join(dir, ".sessions.jsonl")), false);
  assert.equal(JSON.parse(fs.readFileSync(path.join(dir, ".sessions.json"), "utf8")).sessions.s.upTo, 4);
  assert.equal(new SessionLedger(root, () => {}).has(PREFIX, "s", 4), true);
});

test("sizes read from a planted ledger cut no file outside the experiment's appended files", () => {
  const root = tempDir("ledger");
  const outside = path.join(tempDir("ledger-outside"), "precious.txt");
  fs.writeFileSync(outside, "keep me");
  const dir = path.join(root, ...PREFIX.split("/"));
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "notes.txt"), "mine");
  const escape = path.relative(dir, outside);
  fs.writeFileSync(path.join(dir, ".sessions.jsonl"), JSON.stringify({ begin: { [escape]: 0, "notes.txt": 0 } }) + "\n");
  new SessionLedger(root, () => {}).has(PREFIX, "s", 0);
  assert.equal(fs.readFileSync(outside, "utf8"), "keep me");
  assert.equal(fs.readFileSync(path.join(dir, "notes.txt"), "utf8"), "mine");
});
