import type pg from "pg";
import type { ServerInfo } from "../db/server.js";
import { quoteQualified, type QualifiedName } from "../db/quote.js";
import type { Statement } from "../db/statement.js";
import { countNewSql, mergeSql, upsertSql, type MergeSpec } from "./merge.js";

/**
 * Whether `INSERT … ON CONFLICT (key)` can settle conflicts on `table` as
 * MERGE's key equality does: a valid, immediate (not deferrable) unique
 * index on exactly the key's columns, each with its column's collation.
 * Our own targets have one (their primary key); a table made by hand may
 * not.
 */
export async function hasUpsertArbiter(
  client: pg.Client,
  table: QualifiedName,
  key: string[],
): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean }>(
    `SELECT EXISTS (
       SELECT 1 FROM pg_index i
        WHERE i.indrelid = $1::regclass AND i.indisunique AND i.indisvalid AND i.indimmediate
          AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indnkeyatts = cardinality($2::text[])
          AND (SELECT array_agg(a.attname::text ORDER BY a.attname)
                 FROM generate_series(0, i.indnkeyatts - 1) AS j
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[j]
                WHERE i.indcollation[j] = a.attcollation)
              = (SELECT array_agg(x ORDER BY x) FROM unnest($2::text[]) AS x)
     ) AS ok`,
    [quoteQualified(table), key],
  );
  return rows[0]?.ok === true;
}

/**
 * Merges staged rows into the target with the statement the server has,
 * and says how many it inserted and updated: one statement on 17 (MERGE …
 * RETURNING) and on 13/14 (INSERT … ON CONFLICT … RETURNING). On 15 and 16
 * MERGE reports only a total: with `upsert` (a few rows, each probed by
 * key, into a target with an arbiter) they go by INSERT … ON CONFLICT too,
 * which costs what the MERGE does (30-80 ms less than counting first, for
 * 10,000 rows into 2M); else the new keys are counted first, then MERGEd
 * with the hash join ON CONFLICT cannot use.
 */
export async function mergeRows(
  client: pg.Client,
  server: ServerInfo,
  spec: MergeSpec,
  /** A few rows, into a target with an upsert arbiter (hasUpsertArbiter). */
  upsert = false,
): Promise<{ inserted: number; updated: number }> {
  const counted = async (stmt: Statement) => {
    const { rows } = await client.query<{ inserted: string; updated: string }>(stmt);
    return { inserted: Number(rows[0]!.inserted), updated: Number(rows[0]!.updated) };
  };
  if (server.hasMergeReturning) return counted(mergeSql(spec, { counted: true }));
  if (!server.hasMerge || upsert) return counted(upsertSql(spec));
  const { rows } = await client.query<{ n: string }>(countNewSql(spec));
  const inserted = Number(rows[0]!.n);
  const merged = await client.query(mergeSql(spec));
  return { inserted, updated: (merged.rowCount ?? 0) - inserted };
}
