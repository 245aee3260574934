import type pg from "pg";
import { connect } from "../db/connect.js";
import type { Logger } from "../log.js";

/**
 * Advisory lock class of worker leases ('xmls'); the target's table locks
 * use 'xmin' (target/project.ts), so the two never collide when the control
 * database is the target.
 */
const LEASE_CLASS = 0x786d6c73;

/**
 * Runs `fn` while holding the fleet's start lock: workers that start at once
 * would otherwise create the same pg-boss queues and partitions at once,
 * which can deadlock.
 */
export async function whileStarting<T>(controlUrl: string, fn: () => Promise<T>): Promise<T> {
  const client = await connect(controlUrl, "target", { applicationName: "xmin-sync start" });
  try {
    await client.query("SELECT pg_advisory_lock($1::int, 0)", [LEASE_CLASS]);
    return await fn();
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Session settings that let the server notice a worker that vanished without
 * closing its connection (a machine lost, a network cut) in about half a
 * minute instead of the kernel's two hours: its leases go with it. A killed
 * process closes its sockets and loses them at once.
 */
const KEEPALIVE = [
  "SET tcp_keepalives_idle = 10",
  "SET tcp_keepalives_interval = 5",
  "SET tcp_keepalives_count = 3",
];

/**
 * A worker holds a lease on each table it runs: a session advisory lock in
 * the control database, on one connection that lives as long as the worker.
 * A lease is taken before the table's job is fetched, so a running job whose
 * lease anyone can take belongs to a worker that is gone: `orphaned` tells,
 * and the job is handed back to the queue.
 */
export class Leases {
  private client: pg.Client | undefined;
  /** Leases this process holds; after the connection drops they may be someone else's. */
  private readonly held = new Set<string>();
  private readonly lost = new Set<string>();

  constructor(
    private readonly url: string,
    private readonly logger: Logger,
  ) {}

  private async session(): Promise<pg.Client> {
    if (this.client) return this.client;
    const client = await connect(this.url, "target", { applicationName: "xmin-sync lease" });
    for (const sql of KEEPALIVE) await client.query(sql);
    const gone = () => {
      if (this.client !== client) return;
      this.client = undefined;
      for (const q of this.held) this.lost.add(q);
      this.held.clear();
      if (this.lost.size > 0)
        this.logger.warn(
          { tables: [...this.lost] },
          "lease connection lost; running tables may be taken over",
        );
    };
    client.on("error", gone);
    client.on("end", gone);
    this.client = client;
    return client;
  }

  private async tryLock(client: pg.Client, queue: string): Promise<boolean> {
    const { rows } = await client.query<{ ok: boolean }>(
      "SELECT pg_try_advisory_lock($1::int, hashtext($2)) AS ok",
      [LEASE_CLASS, queue],
    );
    return rows[0]!.ok;
  }

  private async unlock(client: pg.Client, queue: string): Promise<void> {
    await client.query("SELECT pg_advisory_unlock($1::int, hashtext($2))", [LEASE_CLASS, queue]);
  }

  /** Takes the table's lease; false when another worker holds it. */
  async take(queue: string): Promise<boolean> {
    const ok = await this.tryLock(await this.session(), queue);
    if (ok) {
      this.held.add(queue);
      this.lost.delete(queue);
    }
    return ok;
  }

  /** Whether this worker still holds the lease (not lost with a dropped connection). */
  holds(queue: string): boolean {
    return this.held.has(queue);
  }

  async release(queue: string): Promise<void> {
    this.lost.delete(queue);
    if (!this.held.delete(queue)) return;
    await this.unlock(await this.session(), queue).catch(() => undefined);
  }

  /**
   * Whether nobody holds the lease of a table whose job is running. Only for
   * tables this process does not run itself: advisory locks are re-entrant
   * within a session.
   */
  async orphaned(queue: string): Promise<boolean> {
    const client = await this.session();
    if (!(await this.tryLock(client, queue))) return false;
    await this.unlock(client, queue);
    return true;
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    this.held.clear();
    await c?.end().catch(() => undefined);
  }
}
