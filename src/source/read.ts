import { pipeline } from "node:stream/promises";
import type { Writable } from "node:stream";
import type pg from "pg";
import { to as copyTo } from "pg-copy-streams";
import { quoteIdent, quoteQualified, type QualifiedName } from "../db/quote.js";
import type { XidWindow } from "./xid.js";

/**
 * What one reader copies out of the source: the table's columns plus the
 * row's reconstructed 64-bit xmin, optionally only rows newer than the
 * watermark. The xid bounds are bound with set_config (COPY takes no bind
 * parameters) and read once per statement through an OFFSET 0 fence.
 */
export interface ReadSpec {
  table: QualifiedName;
  columns: string[];
  /** Whether rows carry a usable xmin (false for views and foreign tables). */
  hasXmin: boolean;
  /** Only rows newer than the watermark; absent: every row. */
  onlyNew: boolean;
}

const RAW_XMIN = "t.xmin::text::bigint";

/** The row's full 64-bit xmin, reconstructed against p.c (needs XID_PARAMS joined as p). */
export const SOURCE_XMIN_SQL = `CASE WHEN ${RAW_XMIN} <= 2 THEN ${RAW_XMIN} ELSE p.c - ((p.c - ${RAW_XMIN}) & 4294967295) END`;

/** Whether the row is newer than the watermark. Raw xmin 1 and 2 (bootstrap, frozen before 9.4) never are. */
export const IS_NEW_SQL = `${RAW_XMIN} > 2 AND ((p.c - ${RAW_XMIN}) & 4294967295) <= p.w`;

/** The bound xid window, read once per statement (OFFSET 0 keeps it from being inlined per row). */
export const XID_PARAMS_SQL =
  "(SELECT current_setting('xmin_sync.reference')::bigint AS c," +
  " current_setting('xmin_sync.window')::bigint AS w OFFSET 0) AS p";

export function copyOutSql(spec: ReadSpec): string {
  const cols = spec.columns.map((c) => `t.${quoteIdent(c)}`).join(", ");
  const from = `${quoteQualified(spec.table)} AS t`;
  if (!spec.hasXmin) {
    return `COPY (SELECT ${cols}, NULL::bigint AS source_xmin FROM ${from}) TO STDOUT`;
  }
  const where = spec.onlyNew ? ` WHERE ${IS_NEW_SQL}` : "";
  return `COPY (SELECT ${cols}, ${SOURCE_XMIN_SQL} AS source_xmin FROM ${from} CROSS JOIN ${XID_PARAMS_SQL}${where}) TO STDOUT`;
}

/** Binds the run's xid window for this read transaction. */
export async function bindXidWindow(client: pg.Client, w: XidWindow): Promise<void> {
  await client.query(
    "SELECT set_config('xmin_sync.reference', $1::bigint::text, true), set_config('xmin_sync.window', $2::bigint::text, true)",
    [w.reference.toString(), w.window.toString()],
  );
}

/** Streams COPY output into `sink` with backpressure; resolves when the sink has it all. */
export async function copyOut(client: pg.Client, sql: string, sink: Writable): Promise<void> {
  const stream = client.query(copyTo(sql));
  await pipeline(stream, sink);
}
