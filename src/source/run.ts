import type pg from "pg";
import { cancelOnAbort } from "../db/cancel.js";
import { closeSoon, connect, describeError } from "../db/connect.js";
import { SQLSTATE, sqlState } from "../db/errors.js";
import { displayName, quoteQualified } from "../db/quote.js";
import { readServerInfo, type ServerInfo } from "../db/server.js";
import { withSettings } from "../db/tx.js";
import type { SourceTable } from "./catalog.js";
import {
  beginSnapshot,
  joinSnapshot,
  parseSnapshot,
  readSourceIdentity,
  type Snapshot,
  type SourceIdentity,
} from "./snapshot.js";

/**
 * A table's storage changed between the run's snapshot and its lock: read
 * now, it would look empty. Retried on a fresh snapshot.
 */
export class StorageChangedError extends Error {
  override name = "StorageChangedError";
}

export interface SourceRunOptions {
  /** Cancels the run's statements on the source when it aborts. */
  signal?: AbortSignal | undefined;
  /**
   * How many tables will read in this snapshot: once each has said it is
   * done (`tableDone`), the snapshot is released. Without it, the snapshot
   * is held until `close`.
   */
  tables?: number | undefined;
  /** Called when the snapshot is released, with how long it was held. */
  onRelease?: ((heldMs: number) => void) | undefined;
  /** A connection opened ahead (outside any transaction) to become the coordinator. */
  client?: pg.Client | undefined;
}

/**
 * The source side of one run: a coordinator connection that holds the run's
 * snapshot open and exports it, and readers that join it. Every table of the
 * run is read as of the same instant and gets the same watermark.
 *
 * The snapshot holds back the source's vacuum horizon (on a vendor's
 * primary, or through hot_standby_feedback on a standby) for as long as it
 * is open, so it is released as soon as the last table has read its rows,
 * not when the last merge ends.
 */
export class SourceRun {
  private readers = new Set<pg.Client>();
  /** Why the coordinator's connection ended, taking the exported snapshot with it. */
  private lost: Error | undefined;
  /** Tables still to read in the snapshot. */
  private reading: number | undefined;
  private released = false;
  /** The coordinator is the one table's reader (`tableReader`). */
  private coordinatorReads = false;
  /** When the snapshot was taken (Date.now()). */
  readonly takenAt = Date.now();

  private constructor(
    private readonly url: string,
    private readonly coordinator: pg.Client,
    readonly server: ServerInfo,
    readonly snapshot: Snapshot,
    readonly exportedId: string,
    readonly identity: SourceIdentity,
    private readonly opts: SourceRunOptions,
  ) {
    this.reading = opts.tables;
    // A standby ends an idle transaction whose snapshot conflicts with WAL
    // replay (FATAL, SQLSTATE 40001): the coordinator, idle while a reader
    // copies (unless it is the one table's reader), goes with the reader.
    // Remembered so the next table's reader can tell why the snapshot
    // cannot be joined.
    coordinator.on("error", (err) => (this.lost ??= err));
    coordinator.on("end", () => (this.lost ??= new Error("Connection terminated")));
  }

  /** The coordinator's connection, for read-only catalog questions in the run's snapshot. */
  get coordinatorClient(): pg.Client {
    return this.coordinator;
  }

  static async open(url: string, opts: SourceRunOptions = {}): Promise<SourceRun> {
    let client = opts.client;
    if (!client) {
      opts.signal?.throwIfAborted();
      client = await connect(url, "source");
    }
    cancelOnAbort(client, opts.signal);
    try {
      // Here, so that a connection given to us is ended on the one path.
      opts.signal?.throwIfAborted();
      const server = await readServerInfo(client);
      const { snapshot, exportedId } = await beginSnapshot(client, server, {
        exportSnapshot: true,
      });
      const identity = await readSourceIdentity(client);
      return new SourceRun(url, client, server, snapshot, exportedId!, identity, opts);
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
  }

  /**
   * A connection reading in the run's snapshot: a new one, or `given`, idle
   * outside a transaction (ended if it cannot join). Release with `closeReader`.
   */
  async openReader(given?: pg.Client): Promise<pg.Client> {
    if (this.released) {
      if (given) closeSoon(given);
      throw new Error("the run's source snapshot was already released");
    }
    if (given) cancelOnAbort(given, this.opts.signal);
    const client = given ?? (await this.freshClient());
    try {
      await joinSnapshot(client, this.exportedId);
    } catch (err) {
      await client.end().catch(() => undefined);
      throw (await this.snapshotLost()) ?? err;
    }
    this.readers.add(client);
    return client;
  }

  /**
   * A table's own reader (its catalog, its lock, its first copy slot). With
   * one table in the snapshot, the coordinator itself: it is in the
   * snapshot, a failure there can end no other table's snapshot, and the
   * snapshot's release ends it (with the table's source lock). That is one
   * backend fewer per run (about 45 ms of the source's CPU here). Else, as
   * `openReader`.
   */
  async tableReader(given?: pg.Client): Promise<pg.Client> {
    if (this.opts.tables !== 1 || this.coordinatorReads || this.released) {
      return this.openReader(given);
    }
    if (given) closeSoon(given);
    this.coordinatorReads = true;
    return this.coordinator;
  }

  /**
   * After joining the snapshot failed ("invalid snapshot identifier"): if the
   * coordinator's connection is gone, an error saying so that is retryable
   * like its cause (40001 from a recovery conflict, or a dropped connection),
   * so the table is retried on a fresh snapshot instead of failing.
   */
  private async snapshotLost(): Promise<Error | undefined> {
    // A round trip: a FATAL already on its way arrives as this query's error.
    if (!this.lost) await this.coordinator.query("SELECT 1").catch((e) => (this.lost ??= e));
    if (!this.lost) return undefined;
    return new Error(`the run's source snapshot is gone: ${describeError(this.lost)}`, {
      cause: this.lost,
    });
  }

  async closeReader(client: pg.Client): Promise<void> {
    // The coordinator ends with the snapshot's release.
    if (client === this.coordinator) return;
    this.readers.delete(client);
    await client.query("ROLLBACK").catch(() => undefined);
    closeSoon(client);
  }

  /**
   * One table has read all it reads in this snapshot. When the last one has,
   * the snapshot is released (its readers are closed by then).
   */
  tableDone(): void {
    if (this.reading === undefined) return;
    this.reading--;
    if (this.reading <= 0) void this.releaseSnapshot();
  }

  /** Ends the coordinator's transaction, and with it the exported snapshot. */
  private async releaseSnapshot(): Promise<void> {
    if (this.released) return;
    this.released = true;
    this.opts.onRelease?.(Date.now() - this.takenAt);
    await this.coordinator.query("COMMIT").catch(() => undefined);
    await this.coordinator.end().catch(() => undefined);
  }

  /**
   * The backend whose transaction is the snapshot's xmin, if it is still
   * running on this server: it holds the watermark back until it ends. Asked
   * on a connection in the run (a reader, or the coordinator).
   */
  async oldestRunning(client: pg.Client = this.coordinator): Promise<{
    pid: number;
    xactStart: string | null;
    ageSeconds: number | null;
    query: string | null;
  } | null> {
    if (this.snapshot.xip.length === 0) return null;
    const { rows } = await client.query(
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

  /**
   * Locks the table, on a connection in the run's snapshot, until that
   * connection ends, as pg_dump does (ACCESS SHARE:
   * reads and writes go on; TRUNCATE, VACUUM FULL, CLUSTER and rewriting
   * ALTERs wait for the run), then checks that the storage of each leaf is
   * the one the run's snapshot sees. Rewrites and TRUNCATE are not MVCC-safe:
   * one that committed after the snapshot (while we waited for its lock,
   * say) left a new file whose rows are all invisible to the snapshot, and
   * reading it would look like an empty table. Then the table is retried on
   * a fresh snapshot.
   */
  async lockTable(c: pg.Client, table: SourceTable, timeoutMs: number): Promise<void> {
    if (table.relkind !== "r" && table.relkind !== "p" && table.relkind !== "m") return;
    try {
      await withSettings(c, { lock_timeout: `${timeoutMs}ms` }, () => {
        this.opts.signal?.throwIfAborted();
        return c.query(`LOCK TABLE ${quoteQualified(table.name)} IN ACCESS SHARE MODE`);
      });
    } catch (err) {
      if (sqlState(err) !== SQLSTATE.lockNotAvailable) throw err;
      const holder = await this.lockHolder(table.oid).catch(() => null);
      throw new Error(
        `source table ${displayName(table.name)} stayed locked by another session for ${Math.round(timeoutMs / 1000)}s` +
          (holder ? ` (pid ${holder.pid}: ${holder.query})` : "") +
          "; it is being truncated or altered: try again when that is done",
        { cause: err },
      );
    }
    // c.relfilenode is read in the run's snapshot; pg_relation_filenode()
    // looks the relation up in the catalogs as they are now.
    const { rows } = await c.query<{ name: string; seen: string; now: string | null }>(
      `SELECT c.relname AS name, c.relfilenode::text AS seen, pg_relation_filenode(c.oid)::text AS now
         FROM pg_class c WHERE c.oid = ANY($1::oid[])`,
      [table.leaves.map((l) => l.oid)],
    );
    const moved = rows.filter((r) => r.seen !== r.now);
    if (moved.length > 0) {
      throw new StorageChangedError(
        `the storage of ${moved.map((r) => r.name).join(", ")} changed after this run's snapshot ` +
          "(TRUNCATE, VACUUM FULL, CLUSTER or a rewriting ALTER)",
      );
    }
  }

  /** Who holds a lock that conflicts with ours on a relation, for the message. */
  private async lockHolder(oid: string): Promise<{ pid: number; query: string } | null> {
    const client = await this.freshClient();
    try {
      const { rows } = await client.query<{ pid: number; query: string }>(
        `SELECT l.pid, left(a.query, 120) AS query FROM pg_locks l
           JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.relation = $1::oid AND l.granted AND l.mode = 'AccessExclusiveLock' LIMIT 1`,
        [oid],
      );
      return rows[0] ?? null;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /** A new connection outside the run's snapshot: it sees the source as it is now. */
  async freshClient(): Promise<pg.Client> {
    this.opts.signal?.throwIfAborted();
    const client = await connect(this.url, "source");
    cancelOnAbort(client, this.opts.signal);
    return client;
  }

  /**
   * The source's snapshot now, outside the run's transaction (which keeps
   * returning the run's own). Tells a run whose snapshot is merely older than
   * another run's from a source whose transaction ids went backwards.
   */
  async currentSnapshot(): Promise<Snapshot> {
    const client = await this.freshClient();
    try {
      const fn = this.server.hasXid8 ? "pg_current_snapshot()" : "txid_current_snapshot()";
      const { rows } = await client.query<{ snap: string }>(`SELECT ${fn}::text AS snap`);
      return parseSnapshot(rows[0]!.snap);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.readers].map((r) => this.closeReader(r)));
    await this.releaseSnapshot();
  }
}
