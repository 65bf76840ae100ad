/**
 * The remote backend: sends batches to an ml-dash server over `fetch`.
 *
 * @module
 */
import { ConfigError } from "../mod.ts";
import type { Backend, Batch, ExistingState } from "../mod.ts";

/** Options of {@linkcode HttpBackend}. */
export interface HttpBackendOptions {
  /** The server's base URL. */
  url: string;
  /** Bearer token. */
  token?: string;
  /** Local root for the outbox, where a filesystem exists. */
  outboxRoot?: string;
}

/**
 * Sends batches to a server (not yet implemented).
 *
 * @example
 * ```ts ignore
 * import { HttpBackend } from "./storage/http.ts";
 * const backend = new HttpBackend({ url: "http://127.0.0.1:8787" });
 * ```
 */
export class HttpBackend implements Backend {
  /** The server URL. */
  readonly description: string;
  /** @param options Where to send. */
  constructor(options: HttpBackendOptions) {
    this.description = options.url;
  }
  /** Not implemented yet. */
  open(_prefix: string): Promise<ExistingState> {
    return Promise.reject(new ConfigError(`Remote mode is not available yet (dashUrl ${this.description})`));
  }
  /** Not implemented yet. */
  write(_prefix: string, _batch: Batch): Promise<void> {
    return Promise.reject(new ConfigError("Remote mode is not available yet"));
  }
  /** Nothing to release. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
