/**
 * The file operations of the JSONL backend and reader, with one small adapter
 * per runtime: `Deno.*` on Deno, `node:fs` on Node and Bun, and a remote-only
 * stub that refuses every operation where there is no file system (a Worker,
 * an edge runtime, a browser). On Deno, loading the `node:fs` compatibility
 * layer costs tens of milliseconds at start-up, which a short script or a
 * serverless job pays in full. The adapter is picked synchronously, without a
 * top-level `await` and without any `node:` import a bundler would have to
 * resolve.
 *
 * @example
 * ```ts
 * import { mkdtempSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { fileSystem } from "./file_system.ts";
 *
 * const dir = join(mkdtempSync(join(tmpdir(), "dash-")), "alice/x");
 * fileSystem.makeDirectory(dir);
 * const file = fileSystem.openAppend(`${dir}/logs.jsonl`);
 * const line = new TextEncoder().encode("{}\n");
 * file.write(line, line.length);
 * file.close();
 * console.log(fileSystem.size(`${dir}/logs.jsonl`)); // 3
 * ```
 *
 * @module
 */
import { StorageError } from "./errors.ts";
import { denoNamespace, nodeBuiltin, runtimeKey } from "./runtime.ts";

/** A file opened for appending. */
export interface AppendFile {
  /** Writes the first `length` bytes, all of them; throws a {@linkcode PartialWriteError} if some landed before a failure. */
  write(bytes: Uint8Array, length: number): void;
  /** Flushes the file to the disk. */
  sync(): void;
  /** Closes the file. */
  close(): void;
  /** Whether the file was removed since it was opened (no name links to it any more): writes to it would be lost. */
  isGone(): boolean;
}

/**
 * A write that failed after part of its bytes landed (a disk that filled up):
 * `bytesWritten` of them are in the file.
 *
 * @example Resume a write after the bytes that landed
 * ```ts
 * import { PartialWriteError } from "./file_system.ts";
 * import type { AppendFile } from "./file_system.ts";
 *
 * function bytesLanded(file: AppendFile, bytes: Uint8Array): number {
 *   try {
 *     file.write(bytes, bytes.length);
 *     return bytes.length;
 *   } catch (e) {
 *     if (e instanceof PartialWriteError) return e.bytesWritten; // write bytes.subarray(e.bytesWritten) later
 *     throw e;
 *   }
 * }
 * ```
 */
export class PartialWriteError extends Error {
  /** How many of the bytes are in the file. */
  readonly bytesWritten: number;

  /**
   * Creates the error.
   *
   * @param bytesWritten How many of the bytes are in the file.
   * @param cause The failure of the write that stopped.
   */
  constructor(bytesWritten: number, cause: unknown) {
    super(`Only ${bytesWritten} bytes were written: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = "PartialWriteError";
    this.bytesWritten = bytesWritten;
  }
}

/** Writes `bytes[0, length)` with `writeOnce` (which may write fewer), reporting what landed if it then fails. */
function writeAll(bytes: Uint8Array, length: number, writeOnce: (offset: number) => number): void {
  for (let offset = 0; offset < length;) {
    try {
      offset += writeOnce(offset);
    } catch (error) {
      throw offset > 0 ? new PartialWriteError(offset, error) : error;
    }
  }
}

/** A file opened for reading. */
export interface ReadFile {
  /** Reads into `into` from byte `position`; returns how many bytes were read (0 at the end). */
  read(into: Uint8Array, position: number): number;
  /** Closes the file. */
  close(): void;
}

/** An entry of a directory. */
export interface DirectoryEntry {
  /** The entry's name. */
  name: string;
  /** Whether it is a file. */
  isFile: boolean;
  /** Whether it is a directory. */
  isDirectory: boolean;
}

/** Synchronous file operations; "missing" answers are values, other failures throw. */
export interface FileSystem {
  /** Creates a directory and its parents. */
  makeDirectory(dir: string): void;
  /** Opens a file for appending, creating it. */
  openAppend(file: string): AppendFile;
  /** Opens a file for reading; undefined if it does not exist. */
  openRead(file: string): ReadFile | undefined;
  /** A file's text; undefined if it does not exist. */
  readText(file: string): string | undefined;
  /** A file's bytes. */
  readBytes(file: string): Uint8Array;
  /** Creates or replaces a file's content. */
  writeFile(file: string, data: string | Uint8Array): void;
  /** Renames a file, replacing the target. */
  rename(from: string, to: string): void;
  /** Removes a file; nothing happens if it does not exist. */
  remove(file: string): void;
  /** A file's size in bytes; 0 if it does not exist. */
  size(file: string): number;
  /** The entries of a directory; none if it does not exist. */
  list(dir: string): DirectoryEntry[];
  /** The path with every link resolved; undefined if it does not exist (or is a link to nothing). */
  realPath(path: string): string | undefined;
  /** Whether the path is a symbolic link (false if nothing is there). */
  isLink(path: string): boolean;
  /** Whether an error says that a path (or one of its folders) does not exist. */
  isMissing(error: unknown): boolean;
}

/** The part of `Deno` this module uses (declared here so that tsc builds it without Deno's types). */
interface DenoFileApi {
  mkdirSync(path: string, options: { recursive: boolean }): void;
  openSync(path: string, options: { append?: boolean; create?: boolean; read?: boolean }): {
    writeSync(p: Uint8Array): number;
    readSync(p: Uint8Array): number | null;
    seekSync(offset: number, whence: number): number;
    syncSync(): void;
    statSync(): { nlink: number | null };
    close(): void;
  };
  readTextFileSync(path: string): string;
  readFileSync(path: string): Uint8Array;
  writeFileSync(path: string, data: Uint8Array): void;
  writeTextFileSync(path: string, data: string): void;
  renameSync(from: string, to: string): void;
  removeSync(path: string): void;
  statSync(path: string): { size: number };
  lstatSync(path: string): { isSymlink: boolean };
  realPathSync(path: string): string;
  readDirSync(path: string): Iterable<DirectoryEntry>;
  errors: { NotFound: new (...args: never[]) => Error; NotADirectory?: new (...args: never[]) => Error };
}

type NodeFs = typeof import("node:fs");

/** What `work` returns, or `fallback` where it failed because the path does not exist. */
function unlessMissing(isMissing: (error: unknown) => boolean): <T>(work: () => T, fallback: T) => T {
  return (work, fallback) => {
    try {
      return work();
    } catch (error) {
      if (isMissing(error)) return fallback;
      throw error;
    }
  };
}

function denoFileSystem(deno: DenoFileApi): FileSystem {
  const isMissing = (error: unknown): boolean =>
    error instanceof deno.errors.NotFound || (deno.errors.NotADirectory !== undefined && error instanceof deno.errors.NotADirectory);
  const orMissing = unlessMissing(isMissing);
  return {
    makeDirectory: (dir) => deno.mkdirSync(dir, { recursive: true }),
    openAppend: (file) => {
      const handle = deno.openSync(file, { append: true, create: true });
      return {
        write: (bytes, length) => writeAll(bytes, length, (offset) => handle.writeSync(bytes.subarray(offset, length))),
        sync: () => handle.syncSync(),
        close: () => handle.close(),
        isGone: () => handle.statSync().nlink === 0,
      };
    },
    openRead: (file) => {
      const handle = orMissing(() => deno.openSync(file, { read: true }), undefined);
      if (!handle) return undefined;
      return {
        read: (into, position) => {
          handle.seekSync(position, 0);
          return handle.readSync(into) ?? 0;
        },
        close: () => handle.close(),
      };
    },
    readText: (file) => orMissing(() => deno.readTextFileSync(file), undefined),
    readBytes: (file) => deno.readFileSync(file),
    writeFile: (file, data) => typeof data === "string" ? deno.writeTextFileSync(file, data) : deno.writeFileSync(file, data),
    rename: (from, to) => deno.renameSync(from, to),
    remove: (file) => orMissing(() => deno.removeSync(file), undefined),
    size: (file) => orMissing(() => deno.statSync(file).size, 0),
    list: (dir) => orMissing(() => [...deno.readDirSync(dir)], []),
    realPath: (path) => orMissing(() => deno.realPathSync(path), undefined),
    isLink: (path) => orMissing(() => deno.lstatSync(path).isSymlink, false),
    isMissing,
  };
}

function nodeFileSystem(fs: NodeFs): FileSystem {
  const isMissing = (error: unknown): boolean => ["ENOENT", "ENOTDIR"].includes((error as { code?: string }).code ?? "");
  const orMissing = unlessMissing(isMissing);
  return {
    makeDirectory: (dir) => void fs.mkdirSync(dir, { recursive: true }),
    openAppend: (file) => {
      const fd = fs.openSync(file, "a");
      return {
        write: (bytes, length) => writeAll(bytes, length, (offset) => fs.writeSync(fd, bytes, offset, length - offset)),
        sync: () => fs.fsyncSync(fd),
        close: () => fs.closeSync(fd),
        isGone: () => fs.fstatSync(fd).nlink === 0,
      };
    },
    openRead: (file) => {
      const fd = orMissing(() => fs.openSync(file, "r"), undefined);
      if (fd === undefined) return undefined;
      return {
        read: (into, position) => fs.readSync(fd, into, 0, into.length, position),
        close: () => fs.closeSync(fd),
      };
    },
    readText: (file) => orMissing(() => fs.readFileSync(file, "utf8"), undefined),
    readBytes: (file) => new Uint8Array(fs.readFileSync(file)),
    writeFile: (file, data) => fs.writeFileSync(file, data),
    rename: (from, to) => fs.renameSync(from, to),
    remove: (file) => fs.rmSync(file, { force: true }),
    size: (file) => orMissing(() => fs.statSync(file).size, 0),
    list: (dir) =>
      orMissing(() => fs.readdirSync(dir, { withFileTypes: true }), []).map((e) => ({
        name: e.name,
        isFile: e.isFile(),
        isDirectory: e.isDirectory(),
      })),
    realPath: (path) => orMissing(() => fs.realpathSync.native(path), undefined),
    isLink: (path) => orMissing(() => fs.lstatSync(path).isSymbolicLink(), false),
    isMissing,
  };
}

/**
 * The file operations where there are none (a Worker, an edge runtime, a
 * browser): each one throws an error that names the runtime and the way out.
 */
function remoteOnlyFileSystem(): FileSystem {
  const refuse = (): never => {
    throw new StorageError(
      `No file system in this runtime (${runtimeKey()}): a local .dash folder needs Deno, Bun or Node 20.16+ (process.getBuiltinModule); log to a server instead (the dashUrl option or ML_DASH_URL)`,
    );
  };
  return {
    makeDirectory: refuse,
    openAppend: refuse,
    openRead: refuse,
    readText: refuse,
    readBytes: refuse,
    writeFile: refuse,
    rename: refuse,
    remove: refuse,
    size: refuse,
    list: refuse,
    realPath: refuse,
    isLink: refuse,
    isMissing: () => false,
  };
}

/** The adapter of this runtime, picked synchronously (no top-level `await`: see {@linkcode nodeBuiltin}); undefined where there is none. */
function localFileSystem(): FileSystem | undefined {
  const deno = denoNamespace<DenoFileApi>();
  if (deno) return denoFileSystem(deno);
  const fs = nodeBuiltin<NodeFs>("node:fs");
  return fs ? nodeFileSystem(fs) : undefined;
}

const local = localFileSystem();

/**
 * Whether this runtime has a file system (Deno, Bun, Node); false in a Worker,
 * an edge runtime or a browser, where {@linkcode fileSystem} refuses every operation.
 *
 * @example
 * ```ts
 * import { hasFileSystem } from "./file_system.ts";
 *
 * console.log(hasFileSystem ? "a .dash folder can be written" : "remote only");
 * ```
 */
export const hasFileSystem: boolean = local !== undefined;

/**
 * The file operations of this runtime: `Deno.*` on Deno, `node:fs` on Node and
 * Bun; where there is no file system, every operation throws a
 * {@linkcode StorageError} that says so.
 *
 * @example
 * ```ts
 * import { fileSystem } from "./file_system.ts";
 *
 * console.log(fileSystem.size("package.json")); // 0 where there is none
 * ```
 */
export const fileSystem: FileSystem = local ?? remoteOnlyFileSystem();
