/**
 * Live updates as server-sent events (`GET /api/v1/events`): an `experiment`,
 * `metrics` or `logs` event for each change the store reports, whether it came
 * in over HTTP or from a script writing into the store directly. The store is
 * watched only while a client is connected.
 *
 * @example Stream a store's changes
 * ```ts ignore
 * import { EventHub } from "./events.ts";
 * import { JsonlStore } from "./jsonl_store.ts";
 *
 * const hub = new EventHub(new JsonlStore(".dash"));
 * const res = hub.subscribe(); // text/event-stream
 * hub.close();
 * ```
 *
 * @module
 */
import { unrefTimer } from "../storage/runtime.ts";
import type { Change, Store } from "./store.ts";

/** Milliseconds between comment lines that keep proxies and idle timeouts from closing a stream. */
export const PING_INTERVAL_MS = 15_000;

/**
 * Fans a store's changes out to the connected event streams.
 *
 * @example Connect a stream
 * ```ts
 * import { EventHub } from "./events.ts";
 * import { JsonlStore } from "./jsonl_store.ts";
 *
 * const store = new JsonlStore(await Deno.makeTempDir());
 * const hub = new EventHub(store);
 * const reader = hub.subscribe().body!.getReader();
 * const { value } = await reader.read();
 * console.log(new TextDecoder().decode(value).startsWith(": connected")); // true
 * await reader.cancel();
 * hub.close();
 * await store.close();
 * ```
 */
export class EventHub {
  #store: Store;
  #clients = new Set<ReadableStreamDefaultController<Uint8Array>>();
  #unwatch: Promise<() => void> | undefined;
  #ping: ReturnType<typeof setInterval> | undefined;
  #encoder = new TextEncoder();

  /**
   * Makes a hub over a store; the store is watched only while a stream is connected.
   *
   * @param store The store whose changes to send.
   */
  constructor(store: Store) {
    this.#store = store;
  }

  /**
   * Opens an event stream; its first line says it is connected, once changes from then on are sent.
   *
   * @returns A `text/event-stream` response.
   */
  subscribe(): Response {
    let self: ReadableStreamDefaultController<Uint8Array> | undefined;
    let cancelled = false;
    const stream = new ReadableStream<Uint8Array>({
      start: async (controller) => {
        self = controller;
        this.#unwatch ??= this.#store.watch((change) => this.#send(change)).catch((error) => {
          // A watch that failed is not kept: the next stream asks again.
          this.#unwatch = undefined;
          throw error;
        });
        await this.#unwatch;
        if (cancelled) return;
        this.#clients.add(controller);
        this.#ping ??= setInterval(() => this.#write(": ping\n\n"), PING_INTERVAL_MS);
        unrefTimer(this.#ping);
        controller.enqueue(this.#encoder.encode(": connected\nretry: 2000\n\n"));
      },
      cancel: () => {
        cancelled = true;
        if (self) this.#drop(self);
      },
    });
    return new Response(stream, {
      headers: { "content-type": "text/event-stream", "cache-control": "no-cache", "connection": "keep-alive" },
    });
  }

  /** Ends every stream and the watch. */
  close(): void {
    for (const client of [...this.#clients]) {
      try {
        client.close();
      } catch {
        // Already closed by the client.
      }
      this.#drop(client);
    }
  }

  #drop(client: ReadableStreamDefaultController<Uint8Array>): void {
    this.#clients.delete(client);
    if (this.#clients.size > 0) return;
    if (this.#ping !== undefined) clearInterval(this.#ping);
    this.#ping = undefined;
    const unwatch = this.#unwatch;
    this.#unwatch = undefined;
    unwatch?.then((stop) => stop(), () => {});
  }

  #send(change: Change): void {
    const data = change.kind === "experiment" ? { prefix: change.prefix, status: change.status } : { prefix: change.prefix };
    this.#write(`event: ${change.kind}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  #write(text: string): void {
    const bytes = this.#encoder.encode(text);
    for (const client of [...this.#clients]) {
      try {
        client.enqueue(bytes);
      } catch {
        this.#drop(client);
      }
    }
  }
}
