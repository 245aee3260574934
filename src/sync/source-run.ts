import type pg from "pg";
import { connect } from "../db/connect.js";
import { readServerInfo, type ServerInfo } from "../db/server.js";
import {
  beginSnapshot,
  joinSnapshot,
  readSourceIdentity,
  type Snapshot,
  type SourceIdentity,
} from "../source/snapshot.js";

/**
 * The source side of one run: a coordinator connection that holds the run's
 * snapshot open and exports it, and readers that join it. Every table of the
 * run is read as of the same instant and gets the same watermark.
 */
export class SourceRun {
  private readers = new Set<pg.Client>();

  private constructor(
    private readonly url: string,
    private readonly coordinator: pg.Client,
    readonly server: ServerInfo,
    readonly snapshot: Snapshot,
    readonly exportedId: string,
    readonly identity: SourceIdentity,
  ) {}

  static async open(url: string): Promise<SourceRun> {
    const client = await connect(url, "source");
    try {
      const server = await readServerInfo(client);
      const { snapshot, exportedId } = await beginSnapshot(client, server, {
        exportSnapshot: true,
      });
      const identity = await readSourceIdentity(client);
      return new SourceRun(url, client, server, snapshot, exportedId!, identity);
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
  }

  /** A new connection reading in the run's snapshot. Release with `closeReader`. */
  async openReader(): Promise<pg.Client> {
    const client = await connect(this.url, "source");
    try {
      await joinSnapshot(client, this.exportedId);
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
    this.readers.add(client);
    return client;
  }

  async closeReader(client: pg.Client): Promise<void> {
    this.readers.delete(client);
    await client.query("ROLLBACK").catch(() => undefined);
    await client.end().catch(() => undefined);
  }

  /**
   * The backend whose transaction is the snapshot's xmin, if it is still
   * running on this server: it holds the watermark back until it ends.
   */
  async oldestRunning(): Promise<{
    pid: number;
    xactStart: string | null;
    ageSeconds: number | null;
    query: string | null;
  } | null> {
    if (this.snapshot.xip.length === 0) return null;
    const { rows } = await this.coordinator.query(
      `SELECT pid, xact_start::text AS xact_start,
              extract(epoch FROM now() - xact_start)::int AS age, left(query, 200) AS query
         FROM pg_stat_activity
        WHERE backend_xid IS NOT NULL AND backend_xid::text::bigint = ($1::bigint & 4294967295)
        LIMIT 1`,
      [this.snapshot.xmin.toString()],
    );
    const r = rows[0];
    if (!r) return null;
    return { pid: r.pid, xactStart: r.xact_start, ageSeconds: r.age, query: r.query };
  }

  async close(): Promise<void> {
    await Promise.all([...this.readers].map((r) => this.closeReader(r)));
    await this.coordinator.query("COMMIT").catch(() => undefined);
    await this.coordinator.end().catch(() => undefined);
  }
}
