import type pg from "pg";
import { displayName, quoteIdent, quoteQualified, type QualifiedName } from "../db/quote.js";
import type { Column } from "../source/catalog.js";

/** Columns the target table carries besides the source's. */
export const SOURCE_XMIN = "source_xmin";
export const SOURCE_DELETED_AT = "source_deleted_at";
export const RESERVED_COLUMNS = [SOURCE_XMIN, SOURCE_DELETED_AT];

export interface TargetColumn {
  name: string;
  /** format_type() under search_path=pg_catalog, as the source's Column.type. */
  type: string;
  notNull: boolean;
  /** The column's own COLLATE where it is not its type's default, as the source's. */
  collation: QualifiedName | null;
  /** A domain's base type (format_type), or null for a column whose type is not a domain. */
  baseType: string | null;
}

export interface TargetTable {
  oid: string;
  /** Column name → format_type() text. */
  columns: Map<string, string>;
  /** Every column, in order. */
  columnList: TargetColumn[];
  /** Column sets of the primary key and of unique indexes without predicates. */
  uniqueKeys: string[][];
  /** The primary key constraint, if there is one. */
  primaryKey: { name: string; columns: string[] } | null;
}

export async function readTargetTable(
  client: pg.Client,
  name: QualifiedName,
): Promise<TargetTable | null> {
  const rel = await client.query<{ oid: string; relkind: string }>(
    `SELECT c.oid::text AS oid, c.relkind::text AS relkind
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2`,
    [name.schema, name.name],
  );
  const r = rel.rows[0];
  if (!r) return null;
  if (r.relkind !== "r" && r.relkind !== "p") {
    throw new Error(`target ${displayName(name)} exists and is not a table`);
  }
  const cols = await client.query<{
    name: string;
    type: string;
    notnull: boolean;
    collation: QualifiedName | null;
    base: string | null;
  }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS notnull,
            CASE WHEN co.oid IS NOT NULL THEN json_build_object('schema', cn.nspname, 'name', co.collname) END AS collation,
            CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END AS base
       FROM pg_attribute a
       JOIN pg_type t ON t.oid = a.atttypid
       LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> t.typcollation
       LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
      WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [r.oid],
  );
  const keys = await client.query<{ cols: string[]; pkey: string | null }>(
    `SELECT array_agg(a.attname::text ORDER BY k.ord) AS cols,
            (SELECT conname::text FROM pg_constraint WHERE conindid = i.indexrelid AND contype = 'p') AS pkey
       FROM pg_index i
       CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE i.indrelid = $1::oid AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
      GROUP BY i.indexrelid`,
    [r.oid],
  );
  const pk = keys.rows.find((k) => k.pkey !== null);
  return {
    oid: r.oid,
    columns: new Map(cols.rows.map((c) => [c.name, c.type])),
    columnList: cols.rows.map((c) => ({
      name: c.name,
      type: c.type,
      notNull: c.notnull,
      collation: c.collation,
      baseType: c.base,
    })),
    uniqueKeys: keys.rows.map((k) => k.cols),
    primaryKey: pk ? { name: pk.pkey!, columns: pk.cols } : null,
  };
}

/** CREATE TABLE for a new target: the source's columns and types, plus source_xmin. No key yet: it is built after the data (sync/load.ts). */
export function createTableSql(
  target: QualifiedName,
  columns: Column[],
  opts: { softDeletes?: boolean } = {},
): string {
  const defs = columns.map(
    (c) =>
      `${quoteIdent(c.name)} ${c.type}` +
      // A column-level COLLATE (not the type's default) changes sort order: keep it.
      (c.collation ? ` COLLATE ${quoteQualified(c.collation)}` : "") +
      (c.notNull ? " NOT NULL" : ""),
  );
  defs.push(`${quoteIdent(SOURCE_XMIN)} bigint`);
  if (opts.softDeletes) defs.push(`${quoteIdent(SOURCE_DELETED_AT)} timestamptz`);
  return `CREATE TABLE ${quoteQualified(target)} (${defs.join(", ")})`;
}

/**
 * Checks that an existing target can take the source's rows: same columns
 * with the same types, a unique key on the key columns. Returns the DDL that
 * adds what xmin-sync itself needs (source_xmin) when a user created the table.
 */
export function checkTargetTable(
  target: QualifiedName,
  t: TargetTable,
  columns: Column[],
  key: string[],
): string[] {
  for (const c of columns) {
    const type = t.columns.get(c.name);
    if (type === undefined) {
      throw new Error(
        `target ${displayName(target)} has no column ${quoteIdent(c.name)} (source type ${c.type})`,
      );
    }
    if (type !== c.type) {
      throw new Error(
        `target ${displayName(target)} column ${quoteIdent(c.name)} is ${type}, but the source has ${c.type}`,
      );
    }
  }
  const keyText = [...key].sort().join("\0");
  if (!t.uniqueKeys.some((k) => [...k].sort().join("\0") === keyText)) {
    throw new Error(
      `target ${displayName(target)} has no primary key or unique index on (${key.map(quoteIdent).join(", ")})`,
    );
  }
  const add: string[] = [];
  if (!t.columns.has(SOURCE_XMIN)) {
    add.push(`ALTER TABLE ${quoteQualified(target)} ADD COLUMN ${quoteIdent(SOURCE_XMIN)} bigint`);
    add.push(sourceXminIndexSql(target));
  }
  return add;
}

/**
 * The source_xmin index is BRIN: source_xmin grows with the heap (rows are
 * appended as they are copied), so block ranges summarise it well for
 * "changed since" queries; it builds in half the time of a btree after a
 * first load (docs/performance.md), and from PostgreSQL 16 on, a summarizing
 * index does not prevent HOT updates, which every merged update changes.
 */
export function sourceXminIndexSql(table: QualifiedName, name?: string): string {
  return `CREATE INDEX ${name ? `${quoteIdent(name)} ` : ""}ON ${quoteQualified(table)} USING brin (${quoteIdent(SOURCE_XMIN)})`;
}

/** PostgreSQL keeps the first 63 bytes of a name; cut `base` so `base + suffix` fits, at a character boundary. */
export function fitName(base: string, suffix: string): string {
  const room = 63 - Buffer.byteLength(suffix);
  let out = "";
  for (const ch of base) {
    if (Buffer.byteLength(out + ch) > room) break;
    out += ch;
  }
  return out + suffix;
}

/** `base` if no relation in `schema` has that name, else base1, base2, … */
export async function freeRelationName(
  client: pg.Client,
  schema: string,
  base: string,
  suffix: string,
): Promise<string> {
  for (let i = 0; ; i++) {
    const candidate = fitName(base, i === 0 ? suffix : `${suffix}${i}`);
    const { rows } = await client.query(
      `SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = $2`,
      [schema, candidate],
    );
    if (rows.length === 0) return candidate;
  }
}
