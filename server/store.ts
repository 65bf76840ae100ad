/**
 * The contract between the server's handler and where it keeps experiments.
 * The handler knows HTTP and the protocol; a store knows its storage: the JSONL
 * store (`jsonl_store.ts`) keeps the `.dash` layout on the server's disk, and
 * any other store (a database) implements the same methods with the same
 * answers.
 *
 * Rules every store keeps:
 * - **Exactly once.** A batch is identified by `(prefix, session, seq)`; storing
 *   one whose key is stored already changes nothing and answers `duplicate`.
 *   A batch that fails is not stored at all (rolled back), so a retry after an
 *   error stores it once.
 * - **Errors say who is at fault.** A `StorageError` with a 4xx `status` is the
 *   request's fault (the handler answers that status, and the client does not
 *   retry); any other error means the storage failed (answered 5xx, retried).
 * - **Names from users are data.** A store never uses them as keys of plain
 *   objects.
 *
 * @example A store in a handler
 * ```ts ignore
 * import { createHandler } from "../server.ts";
 * import { JsonlStore } from "./jsonl_store.ts";
 *
 * const handler = createHandler({ store: new JsonlStore(".dash") });
 * ```
 *
 * @module
 */
import type { Batch, FileInfo, LogRecord, ParamValue } from "../storage/backend.ts";
import type { ExperimentOverview, ExperimentSummary, KeySummary } from "../storage/jsonl.ts";

export type { ExperimentOverview, ExperimentSummary, KeySummary };

/** The identity of a batch: the same key is stored once. */
export interface BatchKey {
  /** The experiment's prefix. */
  prefix: string;
  /** The sender's session id. */
  session: string;
  /** The batch's sequence number in its session. */
  seq: number;
}

/** What a resuming client needs to know of an experiment. */
export interface OpenState {
  /** The parameters stored so far. */
  params: Record<string, ParamValue>;
  /** The files saved so far. */
  files: FileInfo[];
  /** The last step of each metric. */
  steps: Record<string, number>;
  /** The largest seq stored of each session asked about (null: none). */
  sessions?: Record<string, number | null>;
}

/** Which experiments to list. */
export interface ListQuery {
  /** Only experiments whose prefix starts with this. */
  prefix?: string;
  /** Only experiments with this status. */
  status?: string;
  /** Experiments to skip. */
  offset: number;
  /** Experiments to answer at most. */
  limit?: number;
}

/** A page of experiments and how many there are in all. */
export interface ExperimentPage {
  /** The experiments of the page. */
  experiments: ExperimentSummary[];
  /** How many match the query. */
  total: number;
}

/** One experiment as the read API shows it: record, status, params, summary and files. */
export type ExperimentView = ExperimentOverview;

/** Which points of a series to answer. */
export interface SeriesQuery {
  /** The x axis: `step`, `_ts` or another field of the same metric. */
  x: string;
  /** Only points with x at least this. */
  from?: number;
  /** Only points with x at most this. */
  to?: number;
  /** Points of the range to skip, before downsampling. */
  offset: number;
  /** Points of the range to keep at most, before downsampling. */
  limit?: number;
  /** Points to answer at most: more are min-max downsampled. */
  points: number;
  /** Also answer each point's `_ts` (`SeriesPage.time`), when the page is not downsampled. */
  time?: boolean;
}

/** The answered points of a series. */
export interface SeriesPage {
  /** x of each point, in order. */
  x: number[];
  /** The value of each point (NaN and ±Infinity as they were logged). */
  value: number[];
  /** How many points the range holds. */
  total: number;
  /** Whether points were left out by downsampling. */
  downsampled: boolean;
  /** With `SeriesQuery.time` and no downsampling: the `_ts` of each point, in seconds. */
  time?: number[];
}

/** Which log lines to answer. */
export interface LogPageQuery {
  /** Only lines of this level or above. */
  level?: string;
  /** Lines to skip. */
  offset: number;
  /** Lines to answer at most. */
  limit?: number;
}

/** A page of log lines. */
export interface LogPage {
  /** The lines. */
  logs: LogRecord[];
  /** How many lines match. */
  total: number;
}

/** A saved file. */
export interface StoredFile {
  /** Its content. */
  data: Uint8Array;
  /** The media type it was saved with, if known. */
  mime?: string;
}

/** Something that changed in a store, for live views. */
export interface Change {
  /** An experiment appeared or changed status; metrics or logs were added. */
  kind: "experiment" | "metrics" | "logs";
  /** The experiment. */
  prefix: string;
  /** The status, with kind `experiment`. */
  status?: string;
}

/** Where the server keeps experiments. */
export interface Store {
  /**
   * Whether the batch of this key is stored already (a cheap look before its records are decoded).
   *
   * @param key The batch's key.
   * @returns True when it is stored.
   */
  has(key: BatchKey): Promise<boolean>;
  /**
   * Stores a batch once; nothing of it when it fails.
   *
   * @param key The batch's key.
   * @param batch The records and state patches.
   * @returns Whether it had been stored before.
   */
  ingest(key: BatchKey, batch: Batch): Promise<{ duplicate: boolean }>;
  /**
   * What a resuming client needs.
   *
   * @param prefix The experiment.
   * @param sessions Sessions whose largest stored seq to answer.
   * @returns Params, files, last steps and sessions.
   */
  open(prefix: string, sessions?: readonly string[]): Promise<OpenState>;
  /**
   * Whether the experiment exists.
   *
   * @param prefix The experiment.
   * @returns True when it was ever written.
   */
  exists(prefix: string): Promise<boolean>;
  /**
   * Lists experiments, sorted by prefix.
   *
   * @param query Prefix, status and paging.
   * @returns The page and the total.
   */
  list(query: ListQuery): Promise<ExperimentPage>;
  /**
   * One experiment (it exists: see `exists`).
   *
   * @param prefix The experiment.
   * @returns Its record (`metadata`), status, params, summary and files.
   */
  experiment(prefix: string): Promise<ExperimentView>;
  /**
   * Points of one key (`metric/field`), in x order.
   *
   * @param prefix The experiment.
   * @param key The key.
   * @param query The x axis, range, paging and points.
   * @returns The points.
   */
  series(prefix: string, key: string, query: SeriesQuery): Promise<SeriesPage>;
  /**
   * Log lines in order.
   *
   * @param prefix The experiment.
   * @param query Level and paging.
   * @returns The page and the total.
   */
  logs(prefix: string, query: LogPageQuery): Promise<LogPage>;
  /**
   * A saved file.
   *
   * @param prefix The experiment.
   * @param path The file's path in the experiment's files.
   * @returns Its content and type, or undefined when there is none.
   */
  file(prefix: string, path: string): Promise<StoredFile | undefined>;
  /**
   * Calls `onChange` for every change, from when the promise resolves until
   * the function it gives is called.
   *
   * @param onChange Receives the changes.
   * @returns A function that stops the calls.
   */
  watch(onChange: (change: Change) => void): Promise<() => void>;
  /** Ends watches and timers and closes files. */
  close(): Promise<void>;
}
