import type pg from "pg";
import { displayIdent, displayName, quoteIdent, type QualifiedName } from "../db/quote.js";
import { InputError } from "../input-error.js";
import { readSourceTable, XMIN_RELKINDS } from "../source/catalog.js";
import { resolveKey } from "../source/key.js";
import type { TableSpec } from "../sync/types.js";
import { RESERVED_COLUMNS } from "../target/ddl.js";
import { KEY_LATERAL, SIZE_LATERAL } from "./discover.js";
import { error, ok, type At, type Finding } from "./findings.js";

/** What the target side's checks need to know of a source table that passed. */
export interface SourceFacts {
  columns: { name: string; type: string }[];
  key: string[];
  /** User-defined types of its columns (array element types included), which the target needs too. */
  userTypes: { name: QualifiedName; creatable: boolean }[];
}

interface Row {
  i: number;
  schema_exists: boolean;
  usage: boolean | null;
  relkind: string | null;
  can_select: boolean | null;
  rows: number | null;
  bytes: string | null;
  key: string[] | null;
  key_index: string | null;
  columns: { name: string; type: string; tschema: string; tname: string; ttype: string }[] | null;
}

const NOT_A_TABLE: Record<string, string> = {
  S: "a sequence",
  i: "an index",
  I: "a partitioned index",
  c: "a composite type",
  t: "a TOAST table",
};

/**
 * Per table, from one catalog query in the source (no table is read):
 * it exists, our role may read it, its key is usable, and the mode and
 * cursor asked for fit it. Tables that pass get their columns and key for
 * the target's checks.
 */
export async function checkSourceTables(
  client: pg.Client,
  role: string,
  specs: TableSpec[],
): Promise<{ findings: Finding[]; facts: Map<number, SourceFacts> }> {
  const { rows } = await client.query<Row>(
    `SELECT s.i::int AS i, n.oid IS NOT NULL AS schema_exists,
            has_schema_privilege(n.oid, 'USAGE') AS usage,
            c.relkind::text AS relkind, has_table_privilege(c.oid, 'SELECT') AS can_select,
            size.rows, CASE WHEN c.relkind IN ('r', 'p', 'm') THEN size.bytes END AS bytes,
            key.columns AS key, key.index AS key_index,
            (SELECT json_agg(json_build_object(
                      'name', a.attname, 'type', format_type(a.atttypid, a.atttypmod),
                      'tschema', tn.nspname, 'tname', t.typname, 'ttype', t.typtype)
                      ORDER BY a.attnum)
               FROM pg_attribute a
               JOIN pg_type t0 ON t0.oid = a.atttypid
               JOIN pg_type t ON t.oid = CASE WHEN t0.typcategory = 'A' AND t0.typelem <> 0 THEN t0.typelem ELSE t0.oid END
               JOIN pg_namespace tn ON tn.oid = t.typnamespace
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns
       FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS s(schema, name, i)
       LEFT JOIN pg_namespace n ON n.nspname = s.schema
       LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.name
       ${SIZE_LATERAL}
       ${KEY_LATERAL}
      ORDER BY s.i`,
    [specs.map((s) => s.source.schema), specs.map((s) => s.source.name)],
  );
  const findings: Finding[] = [];
  const facts = new Map<number, SourceFacts>();
  for (const r of rows) {
    const index = r.i - 1;
    const spec = specs[index]!;
    const at: At = { table: displayName(spec.source), index };
    const problem = tableProblem(r, spec, role);
    if (problem) {
      findings.push(error("source", problem, at));
      continue;
    }
    if (keyInDoubt(r, spec)) {
      // The engine's own words, which name each unique index and why it cannot serve.
      const refusal = await engineRefusal(client, spec);
      if (refusal !== null) {
        const prefix = `source table ${displayName(spec.source)} `;
        findings.push({
          ...error("source", refusal.replace(prefix, ""), at),
          result: refusal,
        });
        continue;
      }
    }
    const key = spec.key ?? r.key!;
    const columns = (r.columns ?? []).map((c) => ({ name: c.name, type: c.type }));
    const userTypes = (r.columns ?? [])
      .filter((c) => c.tschema !== "pg_catalog" && c.tschema !== "information_schema")
      .map((c) => ({
        name: { schema: c.tschema, name: c.tname },
        // Enums, domains and composites are made on the target; base types and ranges come from extensions.
        creatable: ["e", "d", "c"].includes(c.ttype),
      }));
    facts.set(index, { columns, key, userTypes });
    findings.push(ok("source", describe(r, spec, key), at));
  }
  return { findings, facts };
}

/** Why the table cannot be synced as asked, or null. */
function tableProblem(r: Row, spec: TableSpec, role: string): string | null {
  const schema = displayIdent(spec.source.schema);
  const grantee = displayIdent(role);
  if (!r.schema_exists) return `no such table: schema ${schema} does not exist`;
  if (r.relkind === null) return "no such table";
  if (!["r", "p", "m", "v", "f"].includes(r.relkind)) {
    return `is ${NOT_A_TABLE[r.relkind] ?? `a relation of kind ${r.relkind}`}, not a table or view`;
  }
  if (!r.usage) {
    return `no USAGE privilege on schema ${schema} for role ${grantee} (GRANT USAGE ON SCHEMA ${schema} TO ${grantee})`;
  }
  if (!r.can_select) {
    return `no SELECT privilege for role ${grantee} (GRANT SELECT ON ${displayName(spec.source)} TO ${grantee})`;
  }
  const hasXmin = XMIN_RELKINDS.has(r.relkind);
  if (spec.mode === "xmin" && !hasXmin) {
    return (
      `is a ${r.relkind === "v" ? "view" : "foreign table"}: its rows have no xmin; ` +
      "use mode timestamp with a cursor column, or mode full (--mode, --cursor; mode:, cursor: in the config)"
    );
  }
  if (spec.mode === "timestamp" && spec.cursor === undefined) {
    return "mode timestamp needs a cursor column (--cursor COLUMN after its --table, or cursor: in the config)";
  }
  if (spec.cursor !== undefined) {
    const c = r.columns!.find((x) => x.name === spec.cursor);
    if (!c) return `cursor column ${quoteIdent(spec.cursor)} is not a column`;
    if (!/^(timestamp|date|smallint|integer|bigint|numeric)/.test(c.type)) {
      return `cursor column ${quoteIdent(spec.cursor)} is ${c.type}: it must be a timestamp, a date or a number`;
    }
  }
  return null;
}

/**
 * Whether the catalog leaves the key in doubt: no columns, no key given
 * and no primary key or unique index on NOT NULL columns, a key column that
 * is not there, or a column name xmin-sync reserves.
 */
function keyInDoubt(r: Row, spec: TableSpec): boolean {
  const names = new Set((r.columns ?? []).map((c) => c.name));
  const key = spec.key ?? r.key;
  return (
    names.size === 0 ||
    !key ||
    key.length === 0 ||
    key.some((k) => !names.has(k)) ||
    RESERVED_COLUMNS.some((c) => names.has(c))
  );
}

/**
 * The engine's refusal of the table's key, read as a run reads it (only for
 * the few tables whose key is in doubt): one rule, and one message, for
 * check and sync alike. Null when the engine takes the table after all.
 */
async function engineRefusal(client: pg.Client, spec: TableSpec): Promise<string | null> {
  try {
    resolveKey(await readSourceTable(client, spec.source), spec);
    return null;
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    return err.message;
  }
}

/** The ok line: how the table will be read. */
function describe(r: Row, spec: TableSpec, key: string[]): string {
  const hasXmin = XMIN_RELKINDS.has(r.relkind!);
  const mode =
    spec.mode === "full"
      ? "copied whole each run (mode full)"
      : spec.mode === "timestamp" || (!hasXmin && spec.cursor !== undefined)
        ? `timestamp mode on ${quoteIdent(spec.cursor!)}`
        : hasXmin
          ? "xmin mode"
          : "copied whole each run (a view or foreign table without a cursor column)";
  const size =
    r.rows !== null
      ? `, ~${Math.round(r.rows)} rows${r.bytes !== null ? `, ${formatBytes(Number(r.bytes))}` : ""}`
      : "";
  return `readable, key (${key.map(displayIdent).join(", ")}), ${mode}${size}`;
}

export function formatBytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}
