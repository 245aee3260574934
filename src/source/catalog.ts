import type pg from "pg";
import { displayIdent, displayName, type QualifiedName } from "../db/quote.js";
import { InputError } from "../input-error.js";

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
  /**
   * The equality operator of the type's default btree operator class (what
   * a unique index on it uses), found as the server finds it for an index:
   * through domains, binary-compatible types and polymorphic classes. Null
   * when the type has none (json, point): it cannot be a key.
   */
  equality: QualifiedName | null;
  /**
   * The extended hash function of the type's default hash operator class,
   * consistent with that equality, when its values are the same on any
   * server: base types, their arrays and ranges (not enums and what holds
   * them, which hash OIDs). Null otherwise.
   */
  hash: QualifiedName | null;
}

/** A unique index of the source table, and whether it can serve as the key. */
export interface UniqueIndex {
  name: string;
  primary: boolean;
  /** Its key columns in order (INCLUDE columns left out); null for an expression. */
  columns: (string | null)[];
  /** The same as its definition shows them (expressions included), for messages. */
  shown: string[];
  /** Why it cannot serve as the key (a predicate, an expression, a nullable column), or null. */
  unusable: string | null;
}

/** A collation a column or domain uses, as the target must create it. */
export interface CollationDef {
  name: QualifiedName;
  /** pg_collation.collprovider: c libc, i icu, b builtin (17+), d default. */
  provider: string;
  deterministic: boolean;
  /** libc: LC_COLLATE and LC_CTYPE; icu and builtin: the locale in both. */
  collate: string | null;
  ctype: string | null;
  /** ICU tailoring rules (PostgreSQL 16+). */
  rules: string | null;
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
      /** The domain's own collation (0 when its base type's applies). */
      collationOid: number;
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
  /** Unique indexes (the primary key among them), by name. */
  uniqueIndexes: UniqueIndex[];
  /** Types to create on the target first, dependencies before dependants. */
  userTypes: UserType[];
  /** Non-default collations of its columns and domains, to create on the target before them. */
  collations: CollationDef[];
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
    collid: number;
    notnull: boolean;
    generated: boolean;
    coll_schema: string | null;
    coll_name: string | null;
    binary_safe: boolean;
    integer: boolean;
    eq_schema: string | null;
    eq_name: string | null;
    hash_schema: string | null;
    hash_name: string | null;
  }>(
    `SELECT a.attname AS name, a.attnum::int AS attnum, a.atthasmissing AS has_missing,
            format_type(a.atttypid, a.atttypmod) AS type, a.atttypid AS typid,
            CASE WHEN a.attcollation <> t.typcollation THEN a.attcollation ELSE 0 END::int AS collid,
            a.attnotnull AS notnull, a.attgenerated <> '' AS generated,
            cn.nspname AS coll_schema, co.collname AS coll_name,
            t.typnamespace = 'pg_catalog'::regnamespace AND t.typsend <> 0 AND t.typtype = 'b'
              AND (t.typelem = 0 OR EXISTS (SELECT 1 FROM pg_type e WHERE e.oid = t.typelem
                     AND e.typnamespace = 'pg_catalog'::regnamespace AND e.typtype = 'b' AND e.typsend <> 0))
              AS binary_safe,
            a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype) AS integer,
            eq.schema AS eq_schema, eq.name AS eq_name,
            CASE WHEN b.portable THEN h.schema END AS hash_schema,
            CASE WHEN b.portable THEN h.name END AS hash_name
       FROM pg_attribute a
       JOIN pg_type t ON t.oid = a.atttypid
       LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> t.typcollation
       LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
       CROSS JOIN LATERAL (${BASE_TYPE_SQL}) AS b
       LEFT JOIN LATERAL (${defaultOpclassMemberSql("btree")}) AS eq ON true
       LEFT JOIN LATERAL (${defaultOpclassMemberSql("hash")}) AS h ON true
      WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [r.oid],
  );
  if (cols.rows.length === 0) {
    throw new InputError(
      `source table ${displayName(name)} has no columns: there is nothing to key or to copy`,
    );
  }
  const uniqueIndexes = await readUniqueIndexes(client, r.oid);
  const userTypes = await readUserTypes(
    client,
    cols.rows.map((c) => c.typid),
  );
  const collationOids = [
    ...cols.rows.map((c) => c.collid),
    ...userTypes.flatMap((t) => (t.kind === "domain" && t.collationOid ? [t.collationOid] : [])),
  ].filter((oid) => oid !== 0);

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
      equality:
        c.eq_schema !== null && c.eq_name !== null
          ? { schema: c.eq_schema, name: c.eq_name }
          : null,
      hash:
        c.hash_schema !== null && c.hash_name !== null
          ? { schema: c.hash_schema, name: c.hash_name }
          : null,
    })),
    uniqueIndexes,
    userTypes,
    collations: await readCollations(client, collationOids),
    leaves,
    bytes: leaves.reduce((a, l) => a + l.bytes, 0),
    estimatedRows: leaves.reduce((a, l) => a + l.estimatedRows, 0),
  };
}

/**
 * The column's type with its domains unwrapped (as `b`), and whether the
 * type's own hash is the same on any server: base types, arrays of base
 * types that hash, ranges of base types. Enums hash their OIDs, and so do
 * composites and arrays holding them.
 */
const BASE_TYPE_SQL = `WITH RECURSIVE d(oid, base) AS (
    SELECT ty.oid, ty.typbasetype FROM pg_type ty WHERE ty.oid = a.atttypid
    UNION ALL SELECT ty.oid, ty.typbasetype FROM pg_type ty JOIN d ON ty.oid = d.base)
  SELECT bt.oid, bt.typtype, bt.typcategory,
         CASE WHEN bt.typtype = 'b' AND bt.typcategory = 'A' AND bt.typelem <> 0
              THEN EXISTS (SELECT 1 FROM pg_type e WHERE e.oid = bt.typelem AND e.typtype = 'b'
                             AND EXISTS (SELECT 1 FROM pg_opclass eo JOIN pg_am em ON em.oid = eo.opcmethod
                                          WHERE em.amname = 'hash' AND eo.opcdefault AND eo.opcintype = e.oid))
              WHEN bt.typtype = 'r'
              THEN EXISTS (SELECT 1 FROM pg_range rg JOIN pg_type e ON e.oid = rg.rngsubtype
                            WHERE rg.rngtypid = bt.oid AND e.typtype = 'b')
              ELSE bt.typtype = 'b' END AS portable
    FROM d JOIN pg_type bt ON bt.oid = d.oid WHERE d.base = 0`;

/**
 * The member of the default operator class of access method `am` for the
 * base type `b`, chosen as PostgreSQL chooses an index's class: the class
 * for the type itself, else one for a type it is binary-coercible to
 * (preferring its category's preferred type: varchar takes text's, not
 * bpchar's), else the polymorphic one (arrays, enums, ranges, composites).
 * For btree, the equality operator (strategy 3); for hash, the extended hash
 * function (support function 2).
 */
function defaultOpclassMemberSql(am: "btree" | "hash"): string {
  const member =
    am === "btree"
      ? `SELECT o.oprname AS name, o.oprnamespace AS ns FROM pg_amop ao JOIN pg_operator o ON o.oid = ao.amopopr
          WHERE ao.amopfamily = oc.opcfamily AND ao.amoplefttype = oc.opcintype
            AND ao.amoprighttype = oc.opcintype AND ao.amopstrategy = 3`
      : // Callable by name on the column: some are registered for types
        // they are not declared for (timestamptz's takes timestamp, bytea's
        // internal); those types hash their text, which has one spelling.
        `SELECT p.proname AS name, p.pronamespace AS ns FROM pg_amproc ap JOIN pg_proc p ON p.oid = ap.amproc
          JOIN pg_type pt ON pt.oid = p.proargtypes[0]
          WHERE ap.amprocfamily = oc.opcfamily AND ap.amproclefttype = oc.opcintype
            AND ap.amprocrighttype = oc.opcintype AND ap.amprocnum = 2
            AND (pt.oid = b.oid OR (pt.typtype = 'p' AND pt.typname <> 'internal')
                 OR EXISTS (SELECT 1 FROM pg_cast ca WHERE ca.castsource = b.oid AND ca.casttarget = pt.oid
                              AND ca.castmethod = 'b' AND ca.castcontext = 'i'))`;
  return `SELECT n.nspname AS schema, m.name FROM pg_opclass oc
      JOIN pg_am am ON am.oid = oc.opcmethod AND am.amname = '${am}'
      JOIN pg_type it ON it.oid = oc.opcintype
      CROSS JOIN LATERAL (${member}) AS m
      JOIN pg_namespace n ON n.oid = m.ns
     WHERE oc.opcdefault
       AND (oc.opcintype = b.oid
            OR EXISTS (SELECT 1 FROM pg_cast ca WHERE ca.castsource = b.oid AND ca.casttarget = oc.opcintype
                         AND ca.castmethod = 'b' AND ca.castcontext = 'i')
            OR (it.typnamespace = 'pg_catalog'::regnamespace
                AND ((it.typname = 'anyarray' AND b.typcategory = 'A')
                  OR (it.typname = 'anyenum' AND b.typtype = 'e')
                  OR (it.typname = 'anyrange' AND b.typtype = 'r')
                  OR (it.typname = 'anymultirange' AND b.typtype = 'm')
                  OR (it.typname = 'record' AND b.typtype = 'c'))))
     ORDER BY oc.opcintype = b.oid DESC, it.typispreferred DESC, oc.oid
     LIMIT 1`;
}

/**
 * The table's unique indexes, and why each could not serve as its key: a
 * key must be unique on every row, which an index with a predicate or an
 * expression, a nullable column (NULLs are never equal) or an invalid build
 * does not promise.
 */
async function readUniqueIndexes(client: pg.Client, oid: string): Promise<UniqueIndex[]> {
  const { rows } = await client.query<{
    name: string;
    primary: boolean;
    valid: boolean;
    partial: boolean;
    columns: (string | null)[];
    shown: string[];
    nullable: string[];
  }>(
    `SELECT c.relname AS name, i.indisprimary AS primary, i.indisvalid AS valid,
            i.indpred IS NOT NULL AS partial,
            array_agg(a.attname::text ORDER BY k.ord) AS columns,
            array_agg(pg_get_indexdef(i.indexrelid, k.ord::int, true) ORDER BY k.ord) AS shown,
            coalesce(array_agg(a.attname::text ORDER BY k.ord) FILTER (WHERE NOT a.attnotnull), '{}') AS nullable
       FROM pg_index i
       JOIN pg_class c ON c.oid = i.indexrelid
       CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
       LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0
      WHERE i.indrelid = $1::oid AND i.indisunique AND k.ord <= i.indnkeyatts
      GROUP BY c.relname, i.indisprimary, i.indisvalid, i.indpred IS NOT NULL
      ORDER BY c.relname`,
    [oid],
  );
  return rows.map((r) => {
    const q = (cols: string[]) => cols.map(displayIdent).join(", ");
    let unusable: string | null = null;
    if (!r.valid) unusable = "is not valid (a failed or unfinished build)";
    else if (r.partial) unusable = "has a WHERE clause";
    else if (r.columns.some((c) => c === null)) unusable = "is on an expression";
    else if (r.nullable.length > 0) unusable = `allows NULL in ${q(r.nullable)}`;
    return { name: r.name, primary: r.primary, columns: r.columns, shown: r.shown, unusable };
  });
}

/**
 * How the collations the table uses are defined, for creating them on the
 * target. Read from the whole catalog row, whose columns differ by version
 * (colliculocale on 15 and 16, colllocale from 17, collicurules from 16).
 */
async function readCollations(client: pg.Client, oids: number[]): Promise<CollationDef[]> {
  if (oids.length === 0) return [];
  const { rows } = await client.query<{ schema: string; row: Record<string, unknown> }>(
    `SELECT n.nspname AS schema, to_jsonb(co) AS row
       FROM pg_collation co JOIN pg_namespace n ON n.oid = co.collnamespace
      WHERE co.oid = ANY($1::oid[]) ORDER BY co.oid`,
    [[...new Set(oids)]],
  );
  const text = (v: unknown) => (typeof v === "string" && v !== "" ? v : null);
  return rows.map(({ schema, row }) => {
    const locale = text(row.colllocale) ?? text(row.colliculocale);
    return {
      name: { schema, name: String(row.collname) },
      provider: String(row.collprovider),
      deterministic: row.collisdeterministic !== false,
      collate: locale ?? text(row.collcollate),
      ctype: locale ?? text(row.collctype),
      rules: text(row.collicurules),
    };
  });
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
  collation_oid: number;
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
                   THEN format('%I.%I', cn.nspname, co.collname) END AS collation,
              CASE WHEN t.typcollation <> 0 AND t.typcollation IS DISTINCT FROM bt.typcollation
                   THEN t.typcollation ELSE 0 END::int AS collation_oid
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
          collationOid: t.collation_oid,
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
