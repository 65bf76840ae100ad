import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { checkFilePath, checkPrefix, MAX_FILE_NAME_BYTES } from "./backend.ts";
import { ConfigError, StorageError } from "./errors.ts";
import * as mod from "../mod.ts";
import { runScript } from "../testing/run_script.ts";
import { HttpBackend } from "./http.ts";
import * as http from "node:http";
import type { AddressInfo } from "node:net";

/** The repository: the nearest folder up from this test that holds mod.ts (from `.build/storage/` too). */
function repoRoot(): string {
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, "mod.ts")) && fs.existsSync(path.join(dir, "deno.json"))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`Cannot find the repository: expected mod.ts in a folder above ${import.meta.url}`);
  }
}

/** The source files of the package: what tsconfig.json compiles, tests and testing/ left out. */
function sourceFiles(root: string): string[] {
  const inFolder = (folder: string): string[] =>
    fs.readdirSync(path.join(root, folder)).filter((f) => f.endsWith(".ts") && !f.endsWith("_test.ts")).map((f) => `${folder}/${f}`);
  return ["mod.ts", "server.ts", "cli.ts", ...inFolder("storage"), ...inFolder("server")].filter((f) => fs.existsSync(path.join(root, f))).sort();
}

/**
 * The code of a module without its comments, and with its strings (except
 * the specifiers after `from` and `import`), templates and regular expressions
 * emptied, so that an `import` in a JSDoc example or a message is not taken
 * for one. Template literals keep their `${...}` code.
 */
function codeOf(source: string): string {
  let out = "";
  let i = 0;
  /** For each `${` open inside a template: the brace depth of its code. */
  const templates: number[] = [];
  let depth = 0;
  /** The last character of code that is not a space: tells a regular expression from a division. */
  let last = "";
  const readTemplate = (): void => {
    // At the character after "`" or "}" that resumes a template.
    while (i < source.length) {
      const c = source[i];
      if (c === "\\") i += 2;
      else if (c === "`") {
        i++;
        out += "``";
        last = "`";
        return;
      } else if (c === "$" && source[i + 1] === "{") {
        i += 2;
        out += "`${";
        templates.push(depth);
        depth = 0;
        last = "{";
        return;
      } else i++;
    }
  };
  while (i < source.length) {
    const c = source[i];
    const next = source[i + 1];
    if (c === "/" && next === "/") {
      while (i < source.length && source[i] !== "\n") i++;
    } else if (c === "/" && next === "*") {
      const end = source.indexOf("*/", i + 2);
      i = end < 0 ? source.length : end + 2;
      out += " ";
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < source.length && source[j] !== c && source[j] !== "\n") j += source[j] === "\\" ? 2 : 1;
      // Import specifiers are the only strings kept: they are what is looked for.
      out += /\b(?:from|import)\s*\(?\s*$/.test(out) ? source.slice(i, j + 1) : `${c}${c}`;
      i = j + 1;
      last = c;
    } else if (c === "`") {
      i++;
      readTemplate();
    } else if (c === "/" && (last === "" || "(,=:[!&|?{};+-*%<>~^".includes(last) || /\b(return|typeof|case|in|of|void|throw)$/.test(out.trimEnd()))) {
      let j = i + 1;
      let inClass = false;
      while (j < source.length && source[j] !== "\n") {
        if (source[j] === "\\") j++;
        else if (source[j] === "[") inClass = true;
        else if (source[j] === "]") inClass = false;
        else if (source[j] === "/" && !inClass) break;
        j++;
      }
      i = j + 1;
      while (/[a-z]/.test(source[i] ?? "")) i++;
      out += "/x/";
      last = "/";
    } else {
      if (c === "{") depth++;
      if (c === "}") {
        if (depth === 0 && templates.length > 0) {
          depth = templates.pop()!;
          i++;
          out += "}";
          readTemplate();
          continue;
        }
        depth--;
      }
      out += c;
      if (!/\s/.test(c)) last = c;
      i++;
    }
  }
  return out;
}

/** The relative modules `file` imports or re-exports, statically or with `import()`, types included. */
function importsOf(root: string, file: string): string[] {
  const code = codeOf(fs.readFileSync(path.join(root, file), "utf8"));
  const patterns = [
    /\b(?:import|export)\b[^;"'`]*?\bfrom\s*["']([^"']+)["']/g,
    /\bimport\s*["']([^"']+)["']/g,
    /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g,
  ];
  const found = new Set<string>();
  for (const pattern of patterns) {
    for (const match of code.matchAll(pattern)) {
      const specifier = match[1];
      if (!specifier.startsWith(".")) continue;
      found.add(path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier)));
    }
  }
  return [...found].sort();
}

/** The import graph of the package's sources: file → the source files it imports. */
function importGraph(root: string): Map<string, string[]> {
  const files = sourceFiles(root);
  const known = new Set(files);
  return new Map(files.map((file) => [file, importsOf(root, file).filter((f) => known.has(f))]));
}

/** The first cycle found, as the files along it with the first repeated at the end; undefined if none. */
function findCycle(graph: Map<string, string[]>): string[] | undefined {
  const done = new Set<string>();
  const stack: string[] = [];
  const visit = (file: string): string[] | undefined => {
    const at = stack.indexOf(file);
    if (at >= 0) return [...stack.slice(at), file];
    if (done.has(file)) return undefined;
    stack.push(file);
    for (const next of graph.get(file) ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    stack.pop();
    done.add(file);
    return undefined;
  };
  for (const file of graph.keys()) {
    const cycle = visit(file);
    if (cycle) return cycle;
  }
  return undefined;
}

/** Every file reachable from `start` in `graph`. */
function reachable(graph: Map<string, string[]>, start: string): Set<string> {
  const seen = new Set<string>();
  const walk = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const next of graph.get(file) ?? []) walk(next);
  };
  walk(start);
  return seen;
}

describe("the import graph", () => {
  const root = repoRoot();
  const graph = importGraph(root);

  it("is read from code only: dynamic imports count, imports in comments and strings do not", () => {
    assert.ok(graph.get("mod.ts")?.includes("storage/jsonl.ts"), "mod.ts imports storage/jsonl.ts with import()");
    assert.ok(graph.get("mod.ts")?.includes("storage/http.ts"), "mod.ts imports storage/http.ts with import()");
    assert.deepEqual(importsOf(root, "storage/downsample.ts"), [], "downsample.ts imports nothing (its JSDoc examples do)");
    const sample = 'import { a } from "./a.ts";\n// import { b } from "./b.ts";\n/** import { c } from "./c.ts"; */\n' +
      'const s = `import { d } from "./d.ts" ${await import("./e.ts")}`;\nconst r = /"/;\nexport { f } from "./f.ts";\nexport type { g } from "./g.ts";\n' +
      'import type {\n  H,\n} from "./h.ts";\nconst t = \'import { i } from "./i.ts"\';\n';
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ml-dash-graph-"));
    try {
      fs.writeFileSync(path.join(dir, "sample.ts"), sample);
      assert.deepEqual(importsOf(dir, "sample.ts"), ["a.ts", "e.ts", "f.ts", "g.ts", "h.ts"]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("has no cycle among mod.ts, storage/, server.ts, server/ and cli.ts", () => {
    const cycle = findCycle(graph);
    assert.equal(cycle, undefined, `Import cycle: ${cycle?.join(" → ")}`);
  });

  it("does not lead from a backend or the server to mod.ts", () => {
    for (const start of ["storage/jsonl.ts", "storage/http.ts", "storage/backend.ts", "server.ts", "server/events.ts"]) {
      if (!graph.has(start)) continue;
      assert.ok(!reachable(graph, start).has("mod.ts"), `${start} reaches mod.ts: ${[...reachable(graph, start)].join(", ")}`);
    }
  });
});

describe("the backends without mod.ts", () => {
  it("write and open where mod.ts cannot even load", async () => {
    // A copy of storage/ beside a mod.ts that throws: a backend that loads mod.ts (statically or at first use) fails.
    const here = path.dirname(fileURLToPath(import.meta.url));
    const ext = path.extname(fileURLToPath(import.meta.url));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ml-dash-no-mod-"));
    try {
      fs.mkdirSync(path.join(dir, "storage"));
      for (const file of fs.readdirSync(here)) {
        if (file.endsWith(ext) && !file.endsWith(`_test${ext}`)) fs.copyFileSync(path.join(here, file), path.join(dir, "storage", file));
      }
      fs.writeFileSync(path.join(dir, "package.json"), '{ "type": "module" }\n');
      fs.writeFileSync(path.join(dir, `mod${ext}`), 'throw new Error("mod.ts was evaluated");\n');
      const script = [
        `import { DashReader, JsonlBackend } from "./storage/jsonl${ext}";`,
        `import { HttpBackend } from "./storage/http${ext}";`,
        `const root = ${JSON.stringify(path.join(dir, ".dash"))};`,
        `const backend = new JsonlBackend(root);`,
        `await backend.open("alice/demo/x");`,
        `await backend.write("alice/demo/x", { metrics: { train: ['{"_ts":1,"step":0,"loss":0.5}'] }, status: { status: "COMPLETED" } });`,
        `await backend.close();`,
        `new HttpBackend({ url: "http://127.0.0.1:1", outbox: false });`,
        `console.log(JSON.stringify((await new DashReader(root).series("alice/demo/x", "train/loss")).value));`,
      ].join("\n");
      // runScript runs the `.js` sibling of a `.ts` path on Node: both are written.
      fs.writeFileSync(path.join(dir, "check.ts"), script);
      fs.writeFileSync(path.join(dir, "check.js"), script);
      const result = await runScript(new URL(`file://${path.join(dir, "check.ts")}`), { cwd: dir });
      assert.equal(result.code, 0, `the child failed: ${result.stderr}`);
      assert.equal(result.stdout.trim(), "[0.5]");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("StorageError", () => {
  it("is retryable without a status (a network or disk error), and keeps new StorageError(message) working", () => {
    const error = new StorageError("Could not write to \".dash\": disk full");
    assert.equal(error.message, "Could not write to \".dash\": disk full");
    assert.equal(error.name, "StorageError");
    assert.equal(error.status, undefined);
    assert.equal(error.retryable, true);
    assert.ok(error instanceof mod.MlDashError);
  });

  it("takes retryable from the status: 5xx, 408 and 429 are, other 4xx are not", () => {
    for (const status of [500, 502, 503, 408, 429]) assert.equal(new StorageError("x", { status }).retryable, true, `status ${status}`);
    for (const status of [400, 401, 403, 404, 409, 413]) assert.equal(new StorageError("x", { status }).retryable, false, `status ${status}`);
    assert.equal(new StorageError("x", { status: 401 }).status, 401);
  });

  it("keeps an explicit retryable and the cause", () => {
    const cause = new Error("ENOSPC");
    const error = new StorageError("x", { status: 503, retryable: false, cause });
    assert.equal(error.retryable, false);
    assert.equal(error.cause, cause);
  });

  it("is the class mod.ts exports, so instanceof holds across the backends", () => {
    assert.equal(mod.StorageError, StorageError);
    assert.equal(mod.ConfigError, ConfigError);
    assert.equal(mod.checkPrefix, checkPrefix);
  });
});

describe("StorageError from the HTTP backend", () => {
  /** A server that answers every request with `status` and a JSON error. */
  async function answering(status: number, work: (url: string) => Promise<void>): Promise<void> {
    const server = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: `refused with ${status}` }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      await work(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }

  it("carries the status a server answered, not retryable for a 401", async () => {
    await answering(401, async (url) => {
      const backend = new HttpBackend({ url, token: "t", outbox: false, giveUpAfterMs: 0 });
      await assert.rejects(backend.open("alice/demo/x"), (e: unknown) => {
        assert.ok(e instanceof StorageError);
        assert.equal(e.status, 401);
        assert.equal(e.retryable, false);
        assert.match(e.message, /answered 401: refused with 401/);
        return true;
      });
    });
  });

  it("carries the status a server answered, retryable for a 503", async () => {
    await answering(503, async (url) => {
      const backend = new HttpBackend({ url, token: "t", outbox: false, giveUpAfterMs: 0 });
      await assert.rejects(backend.write("alice/demo/x", { logs: ['{"_ts":1,"level":"info","message":"m"}'] }), (e: unknown) => {
        assert.ok(e instanceof StorageError);
        assert.equal(e.status, 503);
        assert.equal(e.retryable, true);
        return true;
      });
    });
  });

  it("has no status when no server answered", async () => {
    const backend = new HttpBackend({ url: "http://127.0.0.1:1", token: "t", outbox: false, giveUpAfterMs: 0 });
    await assert.rejects(backend.open("alice/demo/x"), (e: unknown) => {
      assert.ok(e instanceof StorageError);
      assert.equal(e.status, undefined);
      assert.equal(e.retryable, true);
      return true;
    });
  });
});

describe("checkFilePath", () => {
  it("accepts relative paths of names", () => {
    checkFilePath("loss.png");
    checkFilePath("plots/epoch-1/loss.png");
    checkFilePath("é".repeat(Math.floor(MAX_FILE_NAME_BYTES / 2)));
  });

  it("refuses paths that could leave files/ or hide, saying why", () => {
    const cases: [string, RegExp][] = [
      ["", /Invalid file path "": it cannot be empty/],
      ["../x", /a segment cannot be "\.\."/],
      ["a/./b", /a segment cannot be "\."/],
      ["/etc/passwd", /it cannot be absolute/],
      ["C:/x", /it cannot be absolute/],
      ["a\\b", /it cannot contain a backslash/],
      ["a//b", /a segment cannot be empty/],
      [".env", /a segment cannot start with "\." \(found "\.env"\)/],
      ["a\0b", /it cannot contain a NUL character/],
    ];
    for (const [file, message] of cases) assert.throws(() => checkFilePath(file), (e: unknown) => e instanceof ConfigError && message.test(e.message), file);
  });

  it("leaves room in the last name for the temp file's suffix, not in the folders", () => {
    checkFilePath(`${"d".repeat(255)}/${"f".repeat(MAX_FILE_NAME_BYTES)}`);
    assert.throws(() => checkFilePath("f".repeat(MAX_FILE_NAME_BYTES + 1)), /Invalid file path segment "f+…": 224 bytes, the limit is 223/);
    assert.throws(() => checkFilePath(`${"d".repeat(256)}/f`), /256 bytes, the limit is 255/);
  });

  it("refuses what is not a string", () => {
    assert.throws(() => checkFilePath(42 as unknown as string), /Invalid file path 42: expected a string/);
  });
});
