import type pg from "pg";

/** What a server can do, by version. Read once per connection role per run. */
export interface ServerInfo {
  versionNum: number;
  /** MERGE (15+). */
  hasMerge: boolean;
  /** MERGE … RETURNING merge_action() (17+). */
  hasMergeReturning: boolean;
  /** pg_current_snapshot() and xid8 (13+); txid_current_snapshot() before. */
  hasXid8: boolean;
  /** TID range scans, `ctid >= '(n,0)'` without a full scan (14+). */
  hasTidRangeScan: boolean;
  inRecovery: boolean;
  /** shared_buffers, in pages (pg_settings counts it in blocks, as relpages does). */
  sharedBufferPages: number;
}

export async function readServerInfo(client: pg.Client): Promise<ServerInfo> {
  const { rows } = await client.query<{ v: string; rec: boolean; sb: string }>(
    `SELECT current_setting('server_version_num') AS v, pg_is_in_recovery() AS rec,
            (SELECT setting FROM pg_settings WHERE name = 'shared_buffers') AS sb`,
  );
  const versionNum = Number(rows[0]!.v);
  if (versionNum < 120000) {
    throw new Error(
      `PostgreSQL ${Math.floor(versionNum / 10000)} is not supported: xmin-sync needs 12 or later`,
    );
  }
  return {
    versionNum,
    hasMerge: versionNum >= 150000,
    hasMergeReturning: versionNum >= 170000,
    hasXid8: versionNum >= 130000,
    hasTidRangeScan: versionNum >= 140000,
    inRecovery: rows[0]!.rec,
    sharedBufferPages: Number(rows[0]!.sb),
  };
}
