import type pg from "pg";
import type { ServerInfo } from "../db/server.js";
import type { Statement } from "../db/statement.js";
import { countNewSql, mergeSql, upsertSql, type MergeSpec } from "./merge.js";

/**
 * Merges staged rows into the target with the statement the server has,
 * and says how many it inserted and updated: one statement on 17 (MERGE …
 * RETURNING) and on 13/14 (INSERT … ON CONFLICT … RETURNING). On 15 and 16
 * MERGE reports only a total: a few rows (`few`: each probed by key) go
 * by INSERT … ON CONFLICT too, which costs what the MERGE does (30-80 ms
 * less than counting first, for 10,000 rows into 2M); many rows are counted
 * first, then MERGEd with the hash join ON CONFLICT cannot use.
 */
export async function mergeRows(
  client: pg.Client,
  server: ServerInfo,
  spec: MergeSpec,
  few = false,
): Promise<{ inserted: number; updated: number }> {
  const counted = async (stmt: Statement) => {
    const { rows } = await client.query<{ inserted: string; updated: string }>(stmt);
    return { inserted: Number(rows[0]!.inserted), updated: Number(rows[0]!.updated) };
  };
  if (server.hasMergeReturning) return counted(mergeSql(spec, { counted: true }));
  if (!server.hasMerge || few) return counted(upsertSql(spec));
  const { rows } = await client.query<{ n: string }>(countNewSql(spec));
  const inserted = Number(rows[0]!.n);
  const merged = await client.query(mergeSql(spec));
  return { inserted, updated: (merged.rowCount ?? 0) - inserted };
}
