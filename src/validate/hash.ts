import { quoteIdent, quoteQualified, type QualifiedName } from "../db/quote.js";

/**
 * SQL for deep comparison. A row is summarised by two 64-bit hashes computed
 * on each server from text: `h` of its key, `rh` of its content. Buckets are
 * ranges of `h` (its low bits), so they mean the same rows on both servers
 * whatever the key's type or the columns' collations, and split evenly.
 * hashtextextended() is the function hash partitioning relies on: stable
 * across PostgreSQL versions and built in (no extension).
 */
export interface HashSpec {
  table: QualifiedName;
  columns: string[];
  key: string[];
  /** Extra WHERE condition on alias t, e.g. excluding soft-deleted target rows. */
  filter?: string;
}

/** The key as text: a JSON array of each key column's text, unique and NULL-safe. */
function keyText(spec: HashSpec): string {
  return `json_build_array(${spec.key.map((k) => `t.${quoteIdent(k)}::text`).join(", ")})::text`;
}

function rowText(spec: HashSpec): string {
  return `ROW(${spec.columns.map((c) => `t.${quoteIdent(c)}`).join(", ")})::text`;
}

/** Rows with their key text and both hashes. */
function hashedRows(spec: HashSpec): string {
  const where = spec.filter ? ` WHERE ${spec.filter}` : "";
  return (
    `SELECT r.k, hashtextextended(r.k, 0) AS h, hashtextextended(r.c, 0) AS rh` +
    ` FROM (SELECT ${keyText(spec)} AS k, ${rowText(spec)} AS c FROM ${quoteQualified(spec.table)} AS t${where}) AS r`
  );
}

/**
 * Count and hash sum per bucket `h & $1`; with $2 (parent mask) and $3
 * (parent buckets) only rows in those parents. The sum is order-free, so no
 * sort is needed.
 */
export function bucketSql(spec: HashSpec, withParents: boolean): string {
  const parents = withParents ? " WHERE (x.h & $2::bigint) IN (SELECT unnest($3::bigint[]))" : "";
  return (
    `SELECT (x.h & $1::bigint)::text AS b, count(*)::bigint AS n, sum(x.rh)::text AS s` +
    ` FROM (${hashedRows(spec)}) AS x${parents} GROUP BY 1`
  );
}

/** The rows of some buckets, in an order both servers agree on (hash, then key bytes). */
export function leafSql(spec: HashSpec): string {
  return (
    `SELECT x.h::text AS h, x.rh::text AS rh, x.k FROM (${hashedRows(spec)}) AS x` +
    ` WHERE (x.h & $1::bigint) IN (SELECT unnest($2::bigint[])) ORDER BY x.h, x.k COLLATE "C"`
  );
}
