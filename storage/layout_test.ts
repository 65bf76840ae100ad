// Tests of the .dash layout: the paths of an experiment's files for ordinary and odd names,
// the refusal of names that would leave their folder, the outbox's names, and the atomic
// replace (no temp file left, a reader never sees half a file).
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { ConfigError } from "./errors.ts";
import { fileSystem } from "./file_system.ts";
import {
  entryPath,
  EXPERIMENT_ENTRIES,
  EXPERIMENT_FILE,
  experimentDir,
  experimentPath,
  FILES_INDEX,
  isOutboxFile,
  isTempPath,
  LOGS_FILE,
  metricEntry,
  metricOfFile,
  metricPath,
  METRICS_DIR,
  outboxDir,
  outboxFile,
  outboxPath,
  PARAMETERS_FILE,
  PARAMETERS_LOG,
  parseOutboxFileName,
  replaceFileSync,
  savedFilePath,
  SESSIONS_FILE,
  STATUS_FILE,
  tempPath,
} from "./layout.ts";
import type { ExperimentEntry, ReplaceOperations } from "./layout.ts";
import { tempDir } from "../testing/temp.ts";

/** The replace operations of node:fs. */
const nodeOperations: ReplaceOperations = {
  writeFile: (file, data) => fs.writeFileSync(file, data),
  rename: (from, to) => fs.renameSync(from, to),
  remove: (file) => fs.rmSync(file, { force: true }),
};

describe("paths of an experiment folder", () => {
  it("every file of the layout has the name the design fixes, under root/prefix", () => {
    const root = ".dash";
    const prefix = "alice/mnist/baseline";
    assert.equal(experimentDir(root, prefix), ".dash/alice/mnist/baseline");
    const names: ExperimentEntry[] = [EXPERIMENT_FILE, STATUS_FILE, PARAMETERS_FILE, PARAMETERS_LOG, LOGS_FILE, METRICS_DIR, FILES_INDEX, SESSIONS_FILE];
    assert.deepEqual(names.map((name) => experimentPath(root, prefix, name)), [
      ".dash/alice/mnist/baseline/experiment.json",
      ".dash/alice/mnist/baseline/status.json",
      ".dash/alice/mnist/baseline/parameters.json",
      ".dash/alice/mnist/baseline/parameters.jsonl",
      ".dash/alice/mnist/baseline/logs.jsonl",
      ".dash/alice/mnist/baseline/metrics",
      ".dash/alice/mnist/baseline/files.jsonl",
      ".dash/alice/mnist/baseline/.sessions.json",
    ]);
    assert.equal(entryPath(experimentDir(root, prefix), LOGS_FILE), experimentPath(root, prefix, LOGS_FILE));
    assert.equal(metricPath(root, prefix, "train"), ".dash/alice/mnist/baseline/metrics/train.jsonl");
    assert.equal(metricEntry("train"), "metrics/train.jsonl");
    assert.equal(savedFilePath(root, prefix, "plots/epoch-1/loss.png"), ".dash/alice/mnist/baseline/files/plots/epoch-1/loss.png");
  });

  it("names such as __proto__ and constructor, and non-ASCII names, are paths like any other", () => {
    assert.equal(experimentDir("r", "__proto__/constructor/toString"), "r/__proto__/constructor/toString");
    assert.equal(metricPath("r", "a/__proto__", "__proto__"), "r/a/__proto__/metrics/__proto__.jsonl");
    assert.equal(savedFilePath("r", "a/b", "__proto__/constructor"), "r/a/b/files/__proto__/constructor");
    assert.equal(metricPath("/tmp/ルート", "équipe/проект/実験", "損失 λ"), "/tmp/ルート/équipe/проект/実験/metrics/損失 λ.jsonl");
    assert.equal(savedFilePath("r", "équipe/проект", "графики/😀.png"), "r/équipe/проект/files/графики/😀.png");
    assert.equal(metricOfFile("__proto__.jsonl"), "__proto__");
    assert.equal(metricOfFile("損失.jsonl"), "損失");
    assert.equal(metricOfFile("train.json"), undefined);
  });

  it("a prefix, metric name or file path that could leave its folder is refused with a ConfigError", () => {
    for (const prefix of ["../x/y", "a/../../b", "/abs/x", "a//b", "a/./b", "a\\b/c", "solo", "", "a/b\0c", "a/.hidden"]) {
      assert.throws(() => experimentDir("r", prefix), ConfigError, JSON.stringify(prefix));
      assert.throws(() => experimentPath("r", prefix, STATUS_FILE), ConfigError, JSON.stringify(prefix));
      assert.throws(() => metricPath("r", prefix, "train"), ConfigError, JSON.stringify(prefix));
      assert.throws(() => savedFilePath("r", prefix, "a.txt"), ConfigError, JSON.stringify(prefix));
    }
    for (const metric of ["", "a/b", "..", ".hidden", "a\\b", "a\0b", "x".repeat(250)]) {
      assert.throws(() => metricPath("r", "a/b", metric), ConfigError, JSON.stringify(metric));
      assert.throws(() => metricEntry(metric), ConfigError, JSON.stringify(metric));
    }
    for (const file of ["", "../x", "a/../../x", "/etc/passwd", "a//b", ".hidden", "a/.git/config", "a\\b", "x".repeat(224)]) {
      assert.throws(() => savedFilePath("r", "a/b", file), ConfigError, JSON.stringify(file));
    }
    assert.throws(() => experimentDir("r", "../x/y"), { message: 'Invalid prefix "../x/y": a segment cannot be ".."' });
  });

  it("the entries of an experiment folder are the library's files, not the server's ledger", () => {
    assert.deepEqual([...EXPERIMENT_ENTRIES].sort(), [
      "experiment.json",
      "files",
      "files.jsonl",
      "logs.jsonl",
      "metrics",
      "parameters.json",
      "parameters.jsonl",
      "status.json",
    ]);
    assert.equal(EXPERIMENT_ENTRIES.has(SESSIONS_FILE), false);
  });
});

describe("the outbox", () => {
  it("a prefix becomes one URL-encoded folder, and a request one <session>-<seq>.json file", () => {
    assert.equal(outboxPath(".dash"), ".dash/.outbox");
    assert.equal(outboxDir(".dash", "alice/down/run"), ".dash/.outbox/alice%2Fdown%2Frun");
    assert.equal(outboxDir("r", "équipe/__proto__/x"), `r/.outbox/${encodeURIComponent("équipe/__proto__/x")}`);
    assert.equal(outboxFile("r", "alice/down/run", "6f1c-ab", 12), "r/.outbox/alice%2Fdown%2Frun/6f1c-ab-12.json");
  });

  it("an outbox file's name gives back its session and seq; a temp file is no outbox file", () => {
    const file = path.basename(outboxFile("r", "a/b", "sync-1f-m2a", 40));
    assert.deepEqual(parseOutboxFileName(file), { session: "sync-1f-m2a", seq: 40 });
    assert.equal(parseOutboxFileName("readme.txt"), undefined);
    assert.equal(isOutboxFile(file), true);
    assert.equal(isOutboxFile(path.basename(tempPath(file))), false);
  });
});

describe("temp files and the atomic replace", () => {
  it("a temp file's name is beside its target, unpredictable, and at most 32 bytes longer", () => {
    const names = new Set(Array.from({ length: 100 }, () => tempPath("dir/status.json")));
    assert.equal(names.size, 100);
    for (const name of names) {
      assert.match(name, /^dir\/status\.json\.\d+\.[0-9a-f]{16}\.tmp$/);
      assert.ok(name.length - "dir/status.json".length <= 32, name);
      assert.equal(isTempPath(name), true);
    }
    assert.equal(isTempPath("dir/status.json"), false);
  });

  it("replacing a file leaves the new content and no temp file, through node:fs and through the file-system adapter", () => {
    for (const operations of [nodeOperations, fileSystem]) {
      const dir = tempDir("layout");
      const file = path.join(dir, "__proto__.json");
      replaceFileSync(operations, file, '{"v":1}\n');
      replaceFileSync(operations, file, new TextEncoder().encode('{"v":"é"}\n'));
      assert.equal(fs.readFileSync(file, "utf8"), '{"v":"é"}\n');
      assert.deepEqual(fs.readdirSync(dir), ["__proto__.json"]);
    }
  });

  it("a replace that fails removes its temp file, throws, and leaves the target as it was", () => {
    const dir = tempDir("layout");
    // A non-empty folder where the file should be: the rename over it fails.
    const target = path.join(dir, "status.json");
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(target, "keep"), "x");
    assert.throws(() => replaceFileSync(nodeOperations, target, "{}"));
    assert.deepEqual(fs.readdirSync(dir), ["status.json"]);
    assert.deepEqual(fs.readdirSync(target), ["keep"]);
    // A folder that does not exist: the temp file cannot even be made.
    assert.throws(() => replaceFileSync(fileSystem, path.join(dir, "missing", "status.json"), "{}"), (e) => fileSystem.isMissing(e));
  });

  it("a reader that reads while the file is replaced again and again sees one whole version each time, never half", async () => {
    const dir = tempDir("layout");
    const file = path.join(dir, "status.json");
    // Large enough that one read takes several chunks, and each version distinct throughout.
    const version = (v: number): string => JSON.stringify({ v, pad: String(v % 10).repeat(1 << 20) }) + "\n";
    replaceFileSync(nodeOperations, file, version(0));
    let writing = true;
    const reads: number[] = [];
    const reader = (async () => {
      while (writing) {
        const text = await fs.promises.readFile(file, "utf8");
        const parsed = JSON.parse(text) as { v: number; pad: string };
        assert.equal(text, version(parsed.v));
        reads.push(parsed.v);
      }
    })();
    for (let v = 1; v <= 20; v++) {
      replaceFileSync(nodeOperations, file, version(v));
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    writing = false;
    await reader;
    assert.ok(reads.length > 0);
    assert.deepEqual(fs.readdirSync(dir), ["status.json"]);
  });
});
