import type { Cluster } from "./cluster.js";

/** Polls `probe` until it returns something truthy; fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false>,
  timeoutMs = 20_000,
  everyMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface Backend {
  pid: number;
  application: string;
  state: string | null;
  query: string;
  waiting: string | null;
}

/** xmin-sync's sessions on a server (its connections name themselves 'xmin-sync source|target'). */
export async function ourBackends(cluster: Cluster): Promise<Backend[]> {
  return cluster.sql<Backend>(
    `SELECT pid, application_name AS application, state, query, wait_event_type AS waiting
       FROM pg_stat_activity
      WHERE application_name LIKE 'xmin-sync%' AND pid <> pg_backend_pid()`,
  );
}

/** The first of our backends running a statement that matches. */
export async function runningStatement(
  cluster: Cluster,
  pattern: RegExp,
): Promise<Backend | undefined> {
  return (await ourBackends(cluster)).find((b) => b.state === "active" && pattern.test(b.query));
}
