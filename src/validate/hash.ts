import type { KeyColumn } from "../db/key.js";
import { quoteIdent, quoteQualified, type QualifiedName } from "../db/quote.js";
import {
  XMIN_STATS_AGGREGATES,
  xminStatsParams,
  xminStatsRow,
  type XminStatsBinding,
} from "./stats.js";

/**
 * SQL for deep comparison. A row is summarised by two 64-bit hashes computed
 * on each server: `h` of its key, `rh` of its content's text. Buckets are
 * ranges of `h` (its low bits), so they mean the same rows on both servers
 * and split evenly. `h` is the key type's own extended hash (the function
 * hash partitioning relies on: stable across PostgreSQL versions, built in)
 * under the column's collation, which hashes alike whatever its type's
 * equality holds equal: numeric 1.0 and 1.00, 'Abc' and 'ABC' under a
 * case-insensitive collation or citext. A key respelled on one side thus
 * lands in the same bucket with the same `h` and is told apart from a
 * missing row and an extra one (deep.ts). Types whose hash is not the same
 * on two servers (enums hash their OIDs) hash their text, which for them is
 * the only spelling.
 */
export interface HashSpec {
  table: QualifiedName;
  columns: string[];
  key: KeyColumn[];
  /** Extra WHERE condition on alias t, e.g. excluding soft-deleted target rows. */
  filter?: string;
  /**
   * Also gather the xmin statistics of stats.ts (per bucket) in the same
   * scan, so a deep validation reads the source once for both: the values
   * of bindXminStats, passed as the first level's parameters $2..$4.
   */
  xminStats?: XminStatsBinding;
}

/**
 * The key as text, as a JSON array of each key column's text: unique and
 * NULL-safe. A one-column key is its text alone (a third of the cost); the
 * caller wraps it.
 */
function keyText(spec: HashSpec): string {
  if (spec.key.length === 1) return `t.${quoteIdent(spec.key[0]!.name)}::text`;
  return `json_build_array(${spec.key.map((k) => `t.${quoteIdent(k.name)}::text`).join(", ")})::text`;
}

/**
 * The key's hash: each column's own (or its text's), the next column's
 * chained through hashint8extended's seed so that every column's hash
 * appears once in the expression. NULL hashes as 0.
 */
function keyHash(spec: HashSpec): string {
  const one = (k: KeyColumn) => {
    const col = `t.${quoteIdent(k.name)}`;
    return k.hash ? `${quoteQualified(k.hash)}(${col}, 0)` : `hashtextextended(${col}::text, 0)`;
  };
  const [first, ...rest] = spec.key;
  if (!first) throw new Error("a key has at least one column");
  if (rest.length === 0 && !first.hash) return `hashtextextended(${keyText(spec)}, 0)`;
  return rest.reduce(
    (h, k) => `hashint8extended(coalesce(${one(k)}, 0), ${h})`,
    `coalesce(${one(first)}, 0)`,
  );
}

function rowText(spec: HashSpec): string {
  return `ROW(${spec.columns.map((c) => `t.${quoteIdent(c)}`).join(", ")})::text`;
}

/** Rows with their key text and both hashes (and xmin figures, when asked). */
function hashedRows(spec: HashSpec, xminStats = false): string {
  const where = spec.filter ? ` WHERE ${spec.filter}` : "";
  const p = xminStatsParams(2);
  const stats = xminStats ? `, ${xminStatsRow(p)}` : "";
  return (
    // Not r.*: the row text (c) would be computed a second time for the output.
    `SELECT r.k${xminStats ? ", r.d, r.pending, r.raw" : ""}, r.h, hashtextextended(r.c, 0) AS rh` +
    ` FROM (SELECT ${keyText(spec)} AS k, ${keyHash(spec)} AS h, ${rowText(spec)} AS c${stats} FROM ${quoteQualified(spec.table)} AS t${where}) AS r`
  );
}

/**
 * Count and hash sum per bucket `h & $1`; with $2 (parent mask) and $3
 * (parent buckets) only rows in those parents. The sum is order-free, so no
 * sort is needed.
 */
export function bucketSql(spec: HashSpec, withParents: boolean): string {
  const parents = withParents ? " WHERE (x.h & $2::bigint) IN (SELECT unnest($3::bigint[]))" : "";
  const stats = spec.xminStats !== undefined && !withParents;
  return (
    // Grouped by the bigint (a text cast would hide that there are few groups
    // and make the planner sort instead of hash).
    `SELECT g.*, g.b::text AS b, g.s::text AS s FROM (SELECT x.h & $1::bigint AS b, count(*)::bigint AS n, sum(x.rh) AS s` +
    (stats ? `, ${XMIN_STATS_AGGREGATES}` : "") +
    ` FROM (${hashedRows(spec, stats)}) AS x${parents} GROUP BY 1) AS g`
  );
}

/** The rows of some buckets, in an order both servers agree on (hash, then key bytes). */
export function leafSql(spec: HashSpec): string {
  return (
    `SELECT x.h::text AS h, x.rh::text AS rh, x.k FROM (${hashedRows(spec)}) AS x` +
    ` WHERE (x.h & $1::bigint) IN (SELECT unnest($2::bigint[])) ORDER BY x.h, x.k COLLATE "C"`
  );
}
