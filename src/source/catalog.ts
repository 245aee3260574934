import type pg from "pg";
import { displayName, type QualifiedName } from "../db/quote.js";

export interface Column {
  name: string;
  /** pg_attribute.attnum: stable across renames, so a renamed column is told from a new one. */
  attnum: number;
  /**
   * Rows written before the column was added carry its default without
   * being rewritten (a "fast default", atthasmissing): they keep their old xmin.
   */
  hasMissing: boolean;
  /** format_type() under search_path=pg_catalog: built-ins bare, everything else qualified. */
  type: string;
  notNull: boolean;
  /** A generated column on the source; a plain column on the target. */
  generated: boolean;
  /**
   * The column's own COLLATE, when it differs from its type's default
   * (`text COLLATE "C"`): it decides sort order and comparisons, so the
   * target column needs it too. Null when the type's collation applies.
   */
  collation: QualifiedName | null;
  /**
   * A built-in type (or array of one) with binary I/O: its COPY binary form
   * is the same on any server. User types are not (arrays and composites
   * carry type OIDs, which differ between servers).
   */
  binarySafe: boolean;
  /** A plain integer type (smallint, integer, bigint): usable for key-range splits. */
  integer: boolean;
}

/** A user-defined type a table depends on, which the target must have too. */
export type UserType =
  | {
      kind: "enum";
      name: QualifiedName;
      sql: string;
      labels: string[];
      /** pg_enum oids, label for label: a RENAME VALUE keeps the oid. */
      labelOids: string[];
    }
  | {
      kind: "domain";
      name: QualifiedName;
      sql: string;
      baseType: string;
      notNull: boolean;
      collation: string | null;
      checks: string[];
    }
  | {
      kind: "composite";
      name: QualifiedName;
      sql: string;
      /** attnum is stable across RENAME ATTRIBUTE, as a column's is. */
      attributes: { attnum: number; name: string; type: string }[];
    }
  | { kind: "external"; name: QualifiedName; sql: string };

/**
 * A relation that holds rows of the table: the table itself, or each leaf
 * partition of a partitioned table, or the parent and each child of an
 * inheritance tree. Reads, parallel splits and storage checks are per leaf.
 */
export interface Leaf {
  name: QualifiedName;
  oid: string;
  relkind: string;
  /** The storage our snapshot sees (pg_class.relfilenode read in it). */
  relfilenode: string;
  /** Heap + TOAST bytes, for planning parallel reads. */
  bytes: number;
  /** Heap pages, for ctid range splits. */
  pages: number;
  /** The planner's row estimate (0 when never analyzed). */
  estimatedRows: number;
  /** Our role may read the leaf by its own name (else it is read through the root). */
  canSelect: boolean;
}

export interface SourceTable {
  name: QualifiedName;
  oid: string;
  /** r table, p partitioned, m materialized view, v view, f foreign table. */
  relkind: string;
  columns: Column[];
  primaryKey: string[] | null;
  /** Types to create on the target first, dependencies before dependants. */
  userTypes: UserType[];
  /** Relations holding the rows (for a plain table, itself). */
  leaves: Leaf[];
  /** Heap + TOAST bytes of every leaf, for progress. */
  bytes: number;
  /** The planner's row estimate over every leaf (0 when never analyzed). */
  estimatedRows: number;
}

/** relkinds whose rows carry a usable xmin. */
export const XMIN_RELKINDS = new Set(["r", "p", "m"]);

export async function readSourceTable(
  client: pg.Client,
  name: QualifiedName,
): Promise<SourceTable> {
  const rel = await client.query<{ oid: string; relkind: string; can_select: boolean }>(
    `SELECT c.oid::text AS oid, c.relkind::text AS relkind, has_table_privilege(c.oid, 'SELECT') AS can_select
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2`,
    [name.schema, name.name],
  );
  const r = rel.rows[0];
  if (!r) throw new Error(`source table ${displayName(name)} does not exist`);
  if (!["r", "p", "m", "v", "f"].includes(r.relkind)) {
    throw new Error(`source ${displayName(name)} is not a table or view (relkind ${r.relkind})`);
  }
  if (!r.can_select) throw new Error(`no SELECT permission on source table ${displayName(name)}`);

  const cols = await client.query<{
    name: string;
    attnum: number;
    has_missing: boolean;
    type: string;
    typid: number;
    notnull: boolean;
    generated: boolean;
    coll_schema: string | null;
    coll_name: string | null;
    binary_safe: boolean;
    integer: boolean;
  }>(
    `SELECT a.attname AS name, a.attnum::int AS attnum, a.atthasmissing AS has_missing,
            format_type(a.atttypid, a.atttypmod) AS type, a.atttypid AS typid,
            a.attnotnull AS notnull, a.attgenerated <> '' AS generated,
            cn.nspname AS coll_schema, co.collname AS coll_name,
            t.typnamespace = 'pg_catalog'::regnamespace AND t.typsend <> 0 AND t.typtype = 'b'
              AND (t.typelem = 0 OR EXISTS (SELECT 1 FROM pg_type e WHERE e.oid = t.typelem
                     AND e.typnamespace = 'pg_catalog'::regnamespace AND e.typtype = 'b' AND e.typsend <> 0))
              AS binary_safe,
            a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype) AS integer
       FROM pg_attribute a
       JOIN pg_type t ON t.oid = a.atttypid
       LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> t.typcollation
       LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
      WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [r.oid],
  );
  if (cols.rows.length === 0) throw new Error(`source table ${displayName(name)} has no columns`);

  const pk = await client.query<{ name: string }>(
    `SELECT a.attname AS name
       FROM pg_index i
       CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE i.indrelid = $1::oid AND i.indisprimary
      ORDER BY k.ord`,
    [r.oid],
  );

  const leaves = await readLeaves(client, r.oid, r.relkind);
  return {
    name,
    oid: r.oid,
    relkind: r.relkind,
    columns: cols.rows.map((c) => ({
      name: c.name,
      attnum: c.attnum,
      hasMissing: c.has_missing,
      type: c.type,
      notNull: c.notnull,
      generated: c.generated,
      collation:
        c.coll_schema !== null && c.coll_name !== null
          ? { schema: c.coll_schema, name: c.coll_name }
          : null,
      binarySafe: c.binary_safe,
      integer: c.integer,
    })),
    primaryKey: pk.rows.length > 0 ? pk.rows.map((p) => p.name) : null,
    userTypes: await readUserTypes(
      client,
      cols.rows.map((c) => c.typid),
    ),
    leaves,
    bytes: leaves.reduce((a, l) => a + l.bytes, 0),
    estimatedRows: leaves.reduce((a, l) => a + l.estimatedRows, 0),
  };
}

/**
 * The relations that hold the table's rows, read in the caller's snapshot:
 * every leaf of a partition tree, or an inheritance parent and all its
 * descendants (the parent keeps rows of its own). Views and foreign tables
 * are their own single leaf, without storage.
 */
async function readLeaves(client: pg.Client, oid: string, relkind: string): Promise<Leaf[]> {
  const { rows } = await client.query<{
    oid: string;
    schema: string;
    name: string;
    relkind: string;
    relfilenode: string;
    bytes: string;
    pages: string;
    rows: number;
    can_select: boolean;
  }>(
    `WITH RECURSIVE tree AS (
       SELECT $1::oid AS oid
       UNION ALL
       SELECT i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.oid WHERE $2::text IN ('r', 'p')
     )
     SELECT c.oid::text AS oid, n.nspname AS schema, c.relname AS name, c.relkind::text AS relkind,
            c.relfilenode::text AS relfilenode, greatest(c.reltuples, 0)::float8 AS rows,
            has_table_privilege(c.oid, 'SELECT') AS can_select,
            CASE WHEN c.relkind IN ('r','m') THEN pg_table_size(c.oid) ELSE 0 END::text AS bytes,
            CASE WHEN c.relkind IN ('r','m') THEN pg_relation_size(c.oid) / current_setting('block_size')::int ELSE 0 END::text AS pages
       FROM (SELECT DISTINCT oid FROM tree) t JOIN pg_class c ON c.oid = t.oid
       JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind <> 'p'
      ORDER BY c.oid`,
    [oid, relkind],
  );
  return rows.map((l) => {
    if (l.relkind === "f" && (relkind === "r" || relkind === "p")) {
      throw new Error(
        `partition or child ${displayName({ schema: l.schema, name: l.name })} is a foreign table: its rows have no xmin; sync it on its own (mode timestamp or full)`,
      );
    }
    return {
      name: { schema: l.schema, name: l.name },
      oid: l.oid,
      relkind: l.relkind,
      relfilenode: l.relfilenode,
      bytes: Number(l.bytes),
      pages: Number(l.pages),
      estimatedRows: l.rows,
      canSelect: l.can_select,
    };
  });
}

interface TypeRow {
  oid: number;
  schema: string;
  name: string;
  sql: string;
  typtype: string;
  category: string;
  elem: number;
  basetype: number;
  base_sql: string | null;
  notnull: boolean;
  collation: string | null;
  relid: number;
}

/**
 * Walks the column types down to built-ins (array elements, domain bases,
 * composite attributes, range subtypes) and returns the user-defined ones in
 * dependency order.
 */
async function readUserTypes(client: pg.Client, rootTypeOids: number[]): Promise<UserType[]> {
  const ordered: UserType[] = [];
  const seen = new Set<number>();

  const visit = async (oid: number): Promise<void> => {
    if (seen.has(oid)) return;
    seen.add(oid);
    const { rows } = await client.query<TypeRow>(
      `SELECT t.oid::int AS oid, n.nspname AS schema, t.typname AS name,
              format_type(t.oid, NULL) AS sql, t.typtype::text AS typtype, t.typcategory::text AS category,
              t.typelem::int AS elem, t.typbasetype::int AS basetype,
              CASE WHEN t.typbasetype <> 0 THEN format_type(t.typbasetype, t.typtypmod) END AS base_sql,
              t.typnotnull AS notnull, t.typrelid::int AS relid,
              CASE WHEN t.typcollation <> 0 AND t.typcollation IS DISTINCT FROM bt.typcollation
                   THEN format('%I.%I', cn.nspname, co.collname) END AS collation
         FROM pg_type t
         JOIN pg_namespace n ON n.oid = t.typnamespace
         LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
         LEFT JOIN pg_collation co ON co.oid = t.typcollation
         LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
        WHERE t.oid = $1::oid`,
      [oid],
    );
    const t = rows[0];
    if (!t) return;
    // An array needs its element type; the array type comes with it.
    if (t.category === "A" && t.elem !== 0) {
      await visit(t.elem);
      return;
    }
    const builtIn = t.schema === "pg_catalog" || t.schema === "information_schema";
    if (builtIn) return;
    const name = { schema: t.schema, name: t.name };
    switch (t.typtype) {
      case "e": {
        const labels = await client.query<{ l: string; oid: string }>(
          "SELECT enumlabel AS l, oid::text AS oid FROM pg_enum WHERE enumtypid = $1::oid ORDER BY enumsortorder",
          [oid],
        );
        ordered.push({
          kind: "enum",
          name,
          sql: t.sql,
          labels: labels.rows.map((x) => x.l),
          labelOids: labels.rows.map((x) => x.oid),
        });
        return;
      }
      case "d": {
        await visit(t.basetype);
        const checks = await client.query<{ def: string }>(
          "SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE contypid = $1::oid AND contype = 'c' ORDER BY conname",
          [oid],
        );
        ordered.push({
          kind: "domain",
          name,
          sql: t.sql,
          baseType: t.base_sql!,
          notNull: t.notnull,
          collation: t.collation,
          checks: checks.rows.map((c) => c.def),
        });
        return;
      }
      case "c": {
        const attrs = await client.query<{
          attnum: number;
          name: string;
          type: string;
          typid: number;
        }>(
          `SELECT attnum::int AS attnum, attname AS name, format_type(atttypid, atttypmod) AS type, atttypid::int AS typid
             FROM pg_attribute WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
          [t.relid],
        );
        for (const a of attrs.rows) await visit(a.typid);
        ordered.push({
          kind: "composite",
          name,
          sql: t.sql,
          attributes: attrs.rows.map((a) => ({ attnum: a.attnum, name: a.name, type: a.type })),
        });
        return;
      }
      default:
        // Base types from extensions, custom ranges, multiranges: the target must have them already.
        ordered.push({ kind: "external", name, sql: t.sql });
    }
  };

  for (const oid of rootTypeOids) await visit(oid);
  return ordered;
}

/**
 * The value rows written before a column was added carry (its "fast
 * default", pg_attribute.attmissingval, as text), per leaf holding rows:
 * leaf oid → column name → value, or null where the leaf has none (its old
 * rows read NULL). Read in the caller's snapshot.
 */
export async function readMissingValues(
  client: pg.Client,
  leafOids: string[],
  columns: string[],
): Promise<Map<string, Map<string, string | null>>> {
  const { rows } = await client.query<{ leaf: string; name: string; value: string | null }>(
    // attmissingval is a one-element array of the column's type; its text
    // form, read back as text[], gives the element's own text.
    `SELECT attrelid::text AS leaf, attname AS name,
            CASE WHEN atthasmissing THEN (attmissingval::text::text[])[1] END AS value
       FROM pg_attribute
      WHERE attrelid = ANY($1::oid[]) AND attname = ANY($2::text[]) AND attnum > 0 AND NOT attisdropped`,
    [leafOids, columns],
  );
  const out = new Map<string, Map<string, string | null>>(leafOids.map((oid) => [oid, new Map()]));
  for (const r of rows) out.get(r.leaf)?.set(r.name, r.value);
  return out;
}
