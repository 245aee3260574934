import type pg from "pg";

/** A server or database the test can run SQL on. */
interface Queryable {
  sql<T extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    params?: unknown[],
  ): Promise<T[]>;
}

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

/**
 * xmin-sync's sessions in the database `cluster` connects to (its
 * connections name themselves 'xmin-sync source|target'); other databases
 * of a shared server are other tests'.
 */
export async function ourBackends(cluster: Queryable): Promise<Backend[]> {
  return cluster.sql<Backend>(
    `SELECT pid, application_name AS application, state, query, wait_event_type AS waiting
       FROM pg_stat_activity
      WHERE application_name LIKE 'xmin-sync%' AND pid <> pg_backend_pid()
        AND datname = current_database()`,
  );
}

/** The first of our backends running a statement that matches. */
export async function runningStatement(
  cluster: Queryable,
  pattern: RegExp,
): Promise<Backend | undefined> {
  return (await ourBackends(cluster)).find((b) => b.state === "active" && pattern.test(b.query));
}
