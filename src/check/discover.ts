import type pg from "pg";
import type { QualifiedName } from "../db/quote.js";
import { XMIN_RELKINDS } from "../source/catalog.js";

/** A relation of the source that xmin-sync could copy, as `list` shows it. */
export interface ListedTable {
  name: QualifiedName;
  /** table, partitioned table, materialized view, view, foreign table. */
  kind: string;
  /** The planner's estimate (over every partition); null when never analyzed. */
  estimatedRows: number | null;
  /** Heap and TOAST bytes (over every partition); 0 for views and foreign tables. */
  bytes: number;
  /** The key a run would take: the primary key, else a unique index on NOT NULL columns. */
  key: string[] | null;
  /** Our role may read it: USAGE on its schema and SELECT on it. */
  readable: boolean;
  /** Rows carry xmin (tables, partitioned tables, materialized views); views and foreign tables do not. */
  hasXmin: boolean;
}

const KIND: Record<string, string> = {
  r: "table",
  p: "partitioned table",
  m: "materialized view",
  v: "view",
  f: "foreign table",
};

/**
 * The planner's row estimate and the size on disk (heap and TOAST pages) of
 * relation `c` and the relations under it (partitions, inheritance
 * children), as a LATERAL join yielding `size.rows` (null when never
 * analyzed) and `size.bytes`. From pg_class alone: pg_table_size() and
 * pg_partition_tree() take a lock on each table, and would wait behind a
 * running ALTER TABLE or VACUUM FULL.
 */
export const SIZE_LATERAL = `LEFT JOIN LATERAL (
   WITH RECURSIVE tree(relid) AS (
     SELECT c.oid UNION ALL SELECT i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.relid)
   SELECT CASE WHEN bool_or(l.reltuples > 0 OR l.relpages > 0) THEN sum(greatest(l.reltuples, 0)) END::float8 AS rows,
          (coalesce(sum(l.relpages::bigint + coalesce(tt.relpages, 0)), 0)
             * current_setting('block_size')::bigint)::text AS bytes
     FROM tree JOIN pg_class l ON l.oid = tree.relid LEFT JOIN pg_class tt ON tt.oid = l.reltoastrelid
    WHERE l.relkind IN ('r', 'm')) AS size ON true`;

/**
 * The key a run would take for relation `c` (as source/key.ts chooses it):
 * the primary key, else a unique index with no predicate or expression
 * whose key columns are all NOT NULL, the one with the fewest columns, then
 * the first by name. Yields `key.columns` (null when there is none) and
 * `key.index` (the unique index's name; null for a primary key).
 */
export const KEY_LATERAL = `LEFT JOIN LATERAL (
   SELECT ARRAY(SELECT a.attname::text FROM unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord)
                  JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                 WHERE k.ord <= x.indnkeyatts ORDER BY k.ord) AS columns,
          CASE WHEN NOT x.indisprimary THEN ic.relname::text END AS index
     FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
    WHERE x.indrelid = c.oid AND x.indisunique AND x.indisvalid
      AND x.indpred IS NULL AND x.indexprs IS NULL
      AND NOT EXISTS (SELECT 1 FROM unnest(x.indkey) WITH ORDINALITY AS u(attnum, ord)
                        JOIN pg_attribute aa ON aa.attrelid = x.indrelid AND aa.attnum = u.attnum
                       WHERE u.ord <= x.indnkeyatts AND NOT aa.attnotnull)
    ORDER BY x.indisprimary DESC, x.indnkeyatts, ic.relname
    LIMIT 1) AS key ON true`;

/**
 * The source's tables, views and foreign tables, in the given schemas (all
 * but the system's when none), sorted by name. Partitions and inheritance
 * children are left out: their parent's run reads their rows. Catalog
 * queries only; sizes and row counts are the planner's.
 */
export async function listTables(
  client: pg.Client,
  opts: { schemas?: string[] } = {},
): Promise<ListedTable[]> {
  const { rows } = await client.query<{
    schema: string;
    name: string;
    relkind: string;
    rows: number | null;
    bytes: string;
    key: string[] | null;
    readable: boolean;
  }>(
    `SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS relkind,
            size.rows, size.bytes,
            key.columns AS key,
            has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT') AS readable
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       ${SIZE_LATERAL}
       ${KEY_LATERAL}
      WHERE c.relkind IN ('r', 'p', 'm', 'v', 'f')
        AND NOT c.relispartition
        AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = c.oid)
        AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'xmin_sync')
        AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
        AND (cardinality($1::text[]) = 0 OR n.nspname = ANY($1::text[]))
      ORDER BY n.nspname, c.relname`,
    [opts.schemas ?? []],
  );
  return rows.map((r) => ({
    name: { schema: r.schema, name: r.name },
    kind: KIND[r.relkind] ?? r.relkind,
    estimatedRows: r.rows === null ? null : Math.round(r.rows),
    bytes: Number(r.bytes),
    key: r.key,
    readable: r.readable,
    hasXmin: XMIN_RELKINDS.has(r.relkind),
  }));
}
