/**
 * Reading back, from a real server, what a Worker, an edge function or a page
 * logged after its response (their `waitUntil` work ends later than the request).
 *
 * @example
 * ```ts ignore
 * import { waitForExperiment } from "./edge_server.ts";
 *
 * const experiment = await waitForExperiment("http://127.0.0.1:8787", "alice/workerd/a");
 * console.log(experiment.status.status); // "COMPLETED"
 * ```
 *
 * @module
 */
import { sleep } from "./temp.ts";

/** What the read API answers for one experiment, the parts the tests check. */
export interface StoredExperiment {
  /** The run's status. */
  status: { status: string };
  /** Per metric key, how many values were stored. */
  summary: Record<string, { count: number }>;
}

/**
 * Polls the read API until the experiment's run has ended (COMPLETED, FAILED
 * or CANCELLED); fails after `deadlineMs` with the last answer, so that a
 * Worker that never finished is an error, not a hang.
 *
 * @param url The server's base URL.
 * @param prefix The experiment's prefix.
 * @param token A read token, where the server wants one.
 * @param deadlineMs How long to keep asking.
 * @returns The experiment as the read API answers it.
 */
export async function waitForExperiment(url: string, prefix: string, token?: string, deadlineMs = 30_000): Promise<StoredExperiment> {
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const until = Date.now() + deadlineMs;
  let last = "";
  while (Date.now() < until) {
    const response = await fetch(`${url}/api/v1/experiment?prefix=${encodeURIComponent(prefix)}`, { headers });
    last = `${response.status} ${await response.text()}`;
    if (response.ok) {
      const experiment = JSON.parse(last.slice(4)) as Partial<StoredExperiment>;
      if (experiment.status && ["COMPLETED", "FAILED", "CANCELLED"].includes(experiment.status.status)) return experiment as StoredExperiment;
    }
    await sleep(100);
  }
  throw new Error(`The run of ${prefix} did not end on ${url}; the last answer: ${last}`);
}
