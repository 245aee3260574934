import type pg from "pg";
import type { ServerInfo } from "../db/server.js";

/**
 * A source snapshot as full 64-bit transaction ids. `xmin` is the oldest
 * transaction still running when it was taken: the next watermark. `xmax` is
 * the first id not yet assigned: the reference point for reconstructing a
 * row's 64-bit xmin from its 32-bit one.
 */
export interface Snapshot {
  xmin: bigint;
  xmax: bigint;
  /** Transaction ids in progress at snapshot time. */
  xip: bigint[];
  text: string;
}

export function parseSnapshot(text: string): Snapshot {
  const m = /^(\d+):(\d+):([\d,]*)$/.exec(text.trim());
  if (!m) throw new Error(`unexpected snapshot format: ${JSON.stringify(text)}`);
  return {
    xmin: BigInt(m[1]!),
    xmax: BigInt(m[2]!),
    xip: m[3] ? m[3].split(",").map((x) => BigInt(x)) : [],
    text,
  };
}

export interface SourceIdentity {
  systemIdentifier: string | null;
  /** Changes on promotion: a failover may rewind the transaction counter. */
  timeline: number | null;
  databaseOid: string;
}

/**
 * Starts the run's read transaction and takes its snapshot with the first
 * statement, so the snapshot we record is the one every read sees. The
 * snapshot is exported (when asked) so parallel readers can share it.
 */
export async function beginSnapshot(
  client: pg.Client,
  server: ServerInfo,
  opts: { exportSnapshot: boolean },
): Promise<{ snapshot: Snapshot; exportedId: string | null }> {
  await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  const fn = server.hasXid8 ? "pg_current_snapshot()" : "txid_current_snapshot()";
  const exp = opts.exportSnapshot ? "pg_export_snapshot()" : "NULL::text";
  const { rows } = await client.query<{ snap: string; exported: string | null }>(
    `SELECT ${fn}::text AS snap, ${exp} AS exported`,
  );
  return { snapshot: parseSnapshot(rows[0]!.snap), exportedId: rows[0]!.exported };
}

/** Joins a snapshot exported by the run's coordinator (as pg_dump -j does). */
export async function joinSnapshot(client: pg.Client, exportedId: string): Promise<void> {
  await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  // SET TRANSACTION SNAPSHOT takes no bind parameters; the id is a server-made
  // token (hex and dashes), checked before it is put into the statement.
  if (!/^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$/i.test(exportedId)) {
    throw new Error(`unexpected snapshot id ${JSON.stringify(exportedId)}`);
  }
  await client.query(`SET TRANSACTION SNAPSHOT '${exportedId}'`);
}

/**
 * Who the source is. A watermark only means something against the same
 * cluster (system identifier) and database; the table OID is checked per table.
 */
export async function readSourceIdentity(client: pg.Client): Promise<SourceIdentity> {
  const { rows } = await client.query<{ db: string }>(
    "SELECT oid::text AS db FROM pg_database WHERE datname = current_database()",
  );
  let systemIdentifier: string | null = null;
  let timeline: number | null = null;
  try {
    await client.query("SAVEPOINT xmin_sync_ident");
    const r = await client.query<{ id: string; tli: number }>(
      "SELECT s.system_identifier::text AS id, c.timeline_id AS tli FROM pg_control_system() s, pg_control_checkpoint() c",
    );
    systemIdentifier = r.rows[0]?.id ?? null;
    timeline = r.rows[0]?.tli ?? null;
    await client.query("RELEASE SAVEPOINT xmin_sync_ident");
  } catch {
    // pg_control_system() may be revoked for our role; fall back to OIDs only.
    await client.query("ROLLBACK TO SAVEPOINT xmin_sync_ident");
  }
  // The checkpoint's timeline lags a promotion until the first checkpoint
  // after it; on a primary the current WAL file's name carries the timeline
  // at once (its first eight hex digits). Standbys cannot name WAL files.
  try {
    await client.query("SAVEPOINT xmin_sync_tli");
    const r = await client.query<{ f: string | null }>(
      "SELECT CASE WHEN NOT pg_is_in_recovery() THEN pg_walfile_name(pg_current_wal_lsn()) END AS f",
    );
    const f = r.rows[0]?.f;
    if (f) timeline = parseInt(f.slice(0, 8), 16);
    await client.query("RELEASE SAVEPOINT xmin_sync_tli");
  } catch {
    await client.query("ROLLBACK TO SAVEPOINT xmin_sync_tli");
  }
  return { systemIdentifier, timeline, databaseOid: rows[0]!.db };
}
