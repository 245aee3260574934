import type pg from "pg";
import { connect, type Role } from "../db/connect.js";

/**
 * One connection for a long-lived process (worker, status server), opened
 * on first use and reopened after it drops, so that a database restart
 * fails the queries made meanwhile and nothing after.
 */
export class Reconnecting {
  private client: Promise<pg.Client> | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly url: string,
    private readonly role: Role,
    private readonly applicationName: string,
  ) {}

  /**
   * Runs a query; with `timeoutMs`, gives up after that long and drops the
   * connection (a server that stopped answering would otherwise hold the
   * caller forever).
   */
  query<T extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    values?: unknown[],
    opts: { timeoutMs?: number } = {},
  ): Promise<pg.QueryResult<T>> {
    // One query at a time: callers that share the connection (pg-boss's
    // timers, the worker loop) queue here rather than inside pg.
    const run = this.queue.then(() => this.run<T>(text, values, opts));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async run<T extends pg.QueryResultRow>(
    text: string,
    values: unknown[] | undefined,
    opts: { timeoutMs?: number },
  ): Promise<pg.QueryResult<T>> {
    const pending = (this.client ??= this.open());
    let client: pg.Client;
    try {
      client = await withTimeout(pending, opts.timeoutMs, "connecting");
    } catch (err) {
      this.drop(pending);
      throw err;
    }
    try {
      return await withTimeout(client.query<T>(text, values), opts.timeoutMs, "the query");
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (!code || code.startsWith("08")) this.drop(pending);
      // A failed statement of a multi-statement transaction (pg-boss sends
      // "BEGIN; …; COMMIT" as one query) leaves the session in an aborted
      // transaction: end it before the next caller's query.
      else await client.query("ROLLBACK").catch(() => this.drop(pending));
      throw err;
    }
  }

  private async open(): Promise<pg.Client> {
    const client = await connect(this.url, this.role, { applicationName: this.applicationName });
    const pending = this.client;
    client.on("end", () => {
      if (this.client === pending) this.client = undefined;
    });
    return client;
  }

  private drop(pending: Promise<pg.Client>): void {
    if (this.client === pending) this.client = undefined;
    pending.then((c) => c.end()).catch(() => undefined);
  }

  async close(): Promise<void> {
    const pending = this.client;
    this.client = undefined;
    await pending?.then((c) => c.end()).catch(() => undefined);
  }
}

async function withTimeout<T>(p: Promise<T>, ms: number | undefined, what: string): Promise<T> {
  if (ms === undefined) return p;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
