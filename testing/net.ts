/**
 * Loopback helpers for tests.
 *
 * @module
 */
import * as net from "node:net";

/**
 * A port on 127.0.0.1 that nobody listened on a moment ago.
 *
 * @returns The port.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
