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
  primaryKey: string[] | null;
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
    pk: string[] | null;
    readable: boolean;
  }>(
    `SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS relkind,
            size.rows, size.bytes,
            (SELECT array_agg(a.attname::text ORDER BY k.ord)
               FROM pg_index i
               CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              WHERE i.indrelid = c.oid AND i.indisprimary) AS pk,
            has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT') AS readable
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       ${SIZE_LATERAL}
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
    primaryKey: r.pk,
    readable: r.readable,
    hasXmin: XMIN_RELKINDS.has(r.relkind),
  }));
}
