import type pg from "pg";
import type { QualifiedName } from "../db/quote.js";

/** A leaf of the source table as the last run saw it: its storage tells a TRUNCATE or rewrite since. */
export interface StoredLeaf {
  oid: string;
  relfilenode: string;
}

/** A source column as the last run saw it, by attribute number (a rename keeps it). */
export interface StoredColumn {
  attnum: number;
  name: string;
  type: string;
}

/**
 * A user type the source table uses, as the last run saw it: an enum's
 * labels by pg_enum oid (a RENAME VALUE keeps the oid), a composite's
 * attributes by attnum (a RENAME ATTRIBUTE keeps it).
 */
export type StoredType =
  | { kind: "enum"; schema: string; name: string; labels: { oid: string; label: string }[] }
  | { kind: "composite"; schema: string; name: string; attributes: StoredColumn[] };

/** What the target remembers about one table between runs. */
export interface TableState {
  sourceSchema: string;
  sourceTable: string;
  sourceSystemId: string | null;
  sourceTimeline: number | null;
  sourceDatabaseOid: string;
  sourceTableOid: string;
  mode: string;
  /** Full 64-bit xid; null for modes without one. */
  watermark: bigint | null;
  cursorValue: string | null;
  snapshot: string;
  runs: number;
  lastRunAt: Date;
  lastDeleteCheckAt: Date | null;
  runsSinceDeleteCheck: number;
  /** Null in a state written before leaves were stored. */
  leaves: StoredLeaf[] | null;
  /** Null in a state written before columns were stored. */
  columns: StoredColumn[] | null;
  /**
   * Rows whose xmin is below this were written by a rewrite, or come from a
   * resync that compared content: their target source_xmin may be older than
   * their source xmin, so while the watermark is below it re-read rows are
   * compared by content.
   */
  contentUntil: bigint | null;
  /** Null in a state written before types were stored. */
  types: StoredType[] | null;
  /**
   * Why the table must be copied whole and compared (a column rebuilt, a
   * new key), recorded with the schema change that needs it and cleared by
   * the run that commits the copy: a crash in between does not lose it.
   */
  resyncReason: string | null;
}

export interface StateUpdate {
  source: QualifiedName;
  sourceSystemId: string | null;
  sourceTimeline: number | null;
  sourceDatabaseOid: string;
  sourceTableOid: string;
  mode: string;
  watermark: bigint | null;
  cursorValue: string | null;
  snapshot: string;
  rowsCopied: number;
  inserted: number;
  updated: number;
  deleted: number;
  /** This run reconciled key sets (deletes): resets the delete-check schedule. */
  checkedDeletes: boolean;
  leaves: StoredLeaf[];
  columns: StoredColumn[];
  contentUntil: bigint | null;
  types: StoredType[];
}

export async function readState(
  client: pg.Client,
  target: QualifiedName,
): Promise<TableState | null> {
  const { rows } = await client.query(
    `SELECT source_schema, source_table, source_system_id, source_timeline, source_database_oid::text,
            source_table_oid::text, mode, watermark::text, cursor_value, snapshot, runs::int, last_run_at,
            last_delete_check_at, runs_since_delete_check, source_leaves, source_columns,
            content_until::text, source_types, resync_reason
       FROM xmin_sync.state WHERE target_schema = $1 AND target_table = $2`,
    [target.schema, target.name],
  );
  const r = rows[0];
  if (!r) return null;
  return {
    sourceSchema: r.source_schema,
    sourceTable: r.source_table,
    sourceSystemId: r.source_system_id,
    sourceTimeline: r.source_timeline,
    sourceDatabaseOid: r.source_database_oid,
    sourceTableOid: r.source_table_oid,
    mode: r.mode,
    watermark: r.watermark === null ? null : BigInt(r.watermark),
    cursorValue: r.cursor_value,
    snapshot: r.snapshot,
    runs: r.runs,
    lastRunAt: r.last_run_at,
    lastDeleteCheckAt: r.last_delete_check_at,
    runsSinceDeleteCheck: r.runs_since_delete_check,
    leaves: r.source_leaves,
    columns: r.source_columns,
    contentUntil: r.content_until === null ? null : BigInt(r.content_until),
    types: r.source_types,
    resyncReason: r.resync_reason,
  };
}

/** Must run inside the transaction that commits the run's last data. */
export async function writeState(
  client: pg.Client,
  target: QualifiedName,
  s: StateUpdate,
): Promise<void> {
  await client.query(
    `INSERT INTO xmin_sync.state AS st (target_schema, target_table, source_schema, source_table,
        source_system_id, source_timeline, source_database_oid, source_table_oid, mode, watermark,
        cursor_value, snapshot, rows_copied, inserted, updated, deleted,
        last_delete_check_at, runs_since_delete_check, source_leaves, source_columns, content_until,
        source_types, resync_reason)
     VALUES ($1, $2, $3, $4, $5, $16, $6::bigint, $7::bigint, $8, $9::bigint, $10, $11, $12, $13, $14, $15,
        CASE WHEN $17::boolean THEN now() END, 0, $18::jsonb, $19::jsonb, $20::bigint, $21::jsonb, NULL)
     ON CONFLICT (target_schema, target_table) DO UPDATE SET
        source_schema = EXCLUDED.source_schema, source_table = EXCLUDED.source_table,
        source_system_id = EXCLUDED.source_system_id, source_timeline = EXCLUDED.source_timeline,
        source_database_oid = EXCLUDED.source_database_oid,
        source_table_oid = EXCLUDED.source_table_oid, mode = EXCLUDED.mode,
        watermark = EXCLUDED.watermark, cursor_value = EXCLUDED.cursor_value,
        snapshot = EXCLUDED.snapshot, rows_copied = EXCLUDED.rows_copied,
        inserted = EXCLUDED.inserted, updated = EXCLUDED.updated, deleted = EXCLUDED.deleted,
        runs = st.runs + 1, last_run_at = now(),
        last_delete_check_at = CASE WHEN $17::boolean THEN now() ELSE st.last_delete_check_at END,
        runs_since_delete_check = CASE WHEN $17::boolean THEN 0 ELSE st.runs_since_delete_check + 1 END,
        source_leaves = EXCLUDED.source_leaves, source_columns = EXCLUDED.source_columns,
        content_until = EXCLUDED.content_until,
        source_types = EXCLUDED.source_types, resync_reason = NULL`,
    [
      target.schema,
      target.name,
      s.source.schema,
      s.source.name,
      s.sourceSystemId,
      s.sourceDatabaseOid,
      s.sourceTableOid,
      s.mode,
      s.watermark === null ? null : s.watermark.toString(),
      s.cursorValue,
      s.snapshot,
      s.rowsCopied,
      s.inserted,
      s.updated,
      s.deleted,
      s.sourceTimeline,
      s.checkedDeletes,
      JSON.stringify(s.leaves),
      JSON.stringify(s.columns),
      s.contentUntil === null ? null : s.contentUntil.toString(),
      JSON.stringify(s.types),
    ],
  );
}

/**
 * Records the source columns the target was just altered to match, and a
 * resync the change needs, in the transaction of that DDL: the next run
 * compares against what the target now is, and still resyncs if this one
 * stops before its copy commits. (No state yet: nothing to record; the next
 * run compares by name.)
 */
export async function recordSchema(
  client: pg.Client,
  target: QualifiedName,
  columns: StoredColumn[],
  resyncReason: string | null,
): Promise<void> {
  await client.query(
    `UPDATE xmin_sync.state SET source_columns = $3::jsonb,
            resync_reason = coalesce($4, resync_reason)
      WHERE target_schema = $1 AND target_table = $2`,
    [target.schema, target.name, JSON.stringify(columns), resyncReason],
  );
}

/** Every table the target knows, for `status`. */
export async function listStates(
  client: pg.Client,
): Promise<(TableState & { target: QualifiedName })[]> {
  const exists = await client.query("SELECT to_regclass('xmin_sync.state') IS NOT NULL AS e");
  if (!exists.rows[0].e) return [];
  const { rows } = await client.query<{ s: string; t: string }>(
    "SELECT target_schema AS s, target_table AS t FROM xmin_sync.state ORDER BY 1, 2",
  );
  const out: (TableState & { target: QualifiedName })[] = [];
  for (const r of rows) {
    const target = { schema: r.s, name: r.t };
    const st = await readState(client, target);
    if (st) out.push({ ...st, target });
  }
  return out;
}
