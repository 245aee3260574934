import type pg from "pg";
import type { ServerInfo } from "../db/server.js";
import type { Statement } from "../db/statement.js";
import { countNewSql, mergeSql, upsertSql, type MergeSpec } from "./merge.js";

/**
 * Merges staged rows into the target with the statement the server has,
 * and says how many it inserted and updated: one statement on 17 (MERGE …
 * RETURNING) and on 13/14 (INSERT … ON CONFLICT … RETURNING); on 15 and 16
 * MERGE reports only a total, so the new keys are counted first.
 */
export async function mergeRows(
  client: pg.Client,
  server: ServerInfo,
  spec: MergeSpec,
): Promise<{ inserted: number; updated: number }> {
  const counted = async (stmt: Statement) => {
    const { rows } = await client.query<{ inserted: string; updated: string }>(stmt);
    return { inserted: Number(rows[0]!.inserted), updated: Number(rows[0]!.updated) };
  };
  if (server.hasMergeReturning) return counted(mergeSql(spec, { counted: true }));
  if (!server.hasMerge) return counted(upsertSql(spec));
  const { rows } = await client.query<{ n: string }>(countNewSql(spec));
  const inserted = Number(rows[0]!.n);
  const merged = await client.query(mergeSql(spec));
  return { inserted, updated: (merged.rowCount ?? 0) - inserted };
}
