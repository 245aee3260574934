import type pg from "pg";
import {
  displayName,
  quoteIdent,
  quoteLiteral,
  quoteQualified,
  type QualifiedName,
} from "../db/quote.js";
import type { Column, UserType } from "../source/catalog.js";
import { createSchemaIfMissing, lockSharedDdl } from "./project.js";

/** Columns the target table carries besides the source's. */
export const SOURCE_XMIN = "source_xmin";
export const SOURCE_DELETED_AT = "source_deleted_at";
export const RESERVED_COLUMNS = [SOURCE_XMIN, SOURCE_DELETED_AT];

export interface TargetTable {
  oid: string;
  /** Column name → format_type() text. */
  columns: Map<string, string>;
  /** Column sets of the primary key and of unique indexes without predicates. */
  uniqueKeys: string[][];
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
  const cols = await client.query<{ name: string; type: string }>(
    `SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute
      WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [r.oid],
  );
  const keys = await client.query<{ cols: string[] }>(
    `SELECT array_agg(a.attname::text ORDER BY k.ord) AS cols
       FROM pg_index i
       CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE i.indrelid = $1::oid AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
      GROUP BY i.indexrelid`,
    [r.oid],
  );
  return {
    oid: r.oid,
    columns: new Map(cols.rows.map((c) => [c.name, c.type])),
    uniqueKeys: keys.rows.map((k) => k.cols),
  };
}

/**
 * Creates the user-defined types the table needs, or brings enums up to date
 * (labels added on the source since). Runs in its own transaction: a new
 * enum label cannot be used in the transaction that adds it.
 */
export async function ensureUserTypes(client: pg.Client, types: UserType[]): Promise<void> {
  if (types.length === 0) return;
  await client.query("BEGIN");
  try {
    await lockSharedDdl(client);
    await createOrUpdateTypes(client, types);
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
}

async function createOrUpdateTypes(client: pg.Client, types: UserType[]): Promise<void> {
  for (const t of types) {
    const existing = await client.query<{ typtype: string; labels: string[] | null }>(
      `SELECT t.typtype::text AS typtype,
              (SELECT array_agg(enumlabel::text ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = t.oid) AS labels
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname = $1 AND t.typname = $2`,
      [t.name.schema, t.name.name],
    );
    const found = existing.rows[0];
    const q = quoteQualified(t.name);
    if (found) {
      if (t.kind === "enum") {
        if (found.typtype !== "e")
          throw new Error(`target type ${displayName(t.name)} exists and is not an enum`);
        // (labels is text[] above: node-pg leaves name[] as an unparsed array literal.)
        // A new label goes where the source has it (ADD VALUE … AFTER/BEFORE),
        // so the target's enum sorts as the source's does. Walking the
        // source's order, the previous label is on the target by then.
        const have = new Set(found.labels ?? []);
        const first = found.labels?.[0];
        for (const [i, label] of t.labels.entries()) {
          if (have.has(label)) continue;
          const prev = i > 0 ? t.labels[i - 1] : undefined;
          const where =
            prev !== undefined
              ? ` AFTER ${quoteLiteral(prev)}`
              : first !== undefined
                ? ` BEFORE ${quoteLiteral(first)}`
                : "";
          await client.query(
            `ALTER TYPE ${q} ADD VALUE IF NOT EXISTS ${quoteLiteral(label)}${where}`,
          );
          have.add(label);
        }
      }
      continue;
    }
    await createSchemaIfMissing(client, t.name.schema);
    switch (t.kind) {
      case "enum":
        await client.query(`CREATE TYPE ${q} AS ENUM (${t.labels.map(quoteLiteral).join(", ")})`);
        break;
      case "domain":
        // The source's CHECK constraints stay on the source: its data already
        // passed them, and copying their expressions would run source-defined
        // code in the target.
        await client.query(
          `CREATE DOMAIN ${q} AS ${t.baseType}` +
            (t.collation ? ` COLLATE ${t.collation}` : "") +
            (t.notNull ? " NOT NULL" : ""),
        );
        break;
      case "composite":
        await client.query(
          `CREATE TYPE ${q} AS (${t.attributes.map((a) => `${quoteIdent(a.name)} ${a.type}`).join(", ")})`,
        );
        break;
      case "external":
        throw new Error(
          `type ${displayName(t.name)} does not exist on the target; create it (or install the extension that provides it) first`,
        );
    }
  }
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
  columns: Pick<Column, "name" | "type">[],
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
