import type pg from "pg";
import { displayName, quoteIdent, quoteLiteral, quoteQualified } from "../db/quote.js";
import type { CollationDef, UserType } from "../source/catalog.js";
import { ensureCollations } from "./collations.js";
import { createSchemaIfMissing, lockSharedDdl } from "./project.js";
import type { StoredColumn, StoredType } from "./state.js";

/** A user type as the target has it now. */
export interface TargetType {
  /** pg_type.typtype: e enum, d domain, c composite, b base, r range, m multirange. */
  typtype: string;
  /** An enum's labels in sort order. */
  labels: string[];
  /** A domain's NOT NULL. */
  notNull: boolean;
  /** A composite's attributes in order. */
  attributes: { name: string; type: string }[];
}

/** Changes to the target's user types: each in one line, and the DDL that makes them, in order. */
export interface TypeChanges {
  changes: string[];
  sql: string[];
}

const typeKey = (t: { schema: string; name: string }) => `${t.schema}\0${t.name}`;

/** The target's version of each of `types` that exists there. */
export async function readTargetTypes(
  client: pg.Client,
  types: UserType[],
): Promise<Map<string, TargetType>> {
  if (types.length === 0) return new Map();
  // (labels are text[]: node-pg leaves name[] as an unparsed array literal.)
  const { rows } = await client.query<TargetType & { schema: string; name: string }>(
    `SELECT w.s AS schema, w.n AS name, t.typtype::text AS typtype, t.typnotnull AS "notNull",
            coalesce((SELECT array_agg(enumlabel::text ORDER BY enumsortorder)
                        FROM pg_enum WHERE enumtypid = t.oid), '{}') AS labels,
            coalesce((SELECT json_agg(json_build_object('name', attname, 'type', format_type(atttypid, atttypmod)) ORDER BY attnum)
                        FROM pg_attribute WHERE attrelid = t.typrelid AND attnum > 0 AND NOT attisdropped), '[]') AS attributes
       FROM unnest($1::text[], $2::text[]) AS w(s, n)
       JOIN pg_namespace ns ON ns.nspname = w.s
       JOIN pg_type t ON t.typnamespace = ns.oid AND t.typname = w.n`,
    [types.map((t) => t.name.schema), types.map((t) => t.name.name)],
  );
  return new Map(rows.map((r) => [typeKey(r), r]));
}

/** What the state stores of the types a table uses, to tell renames from drops next time. */
export function storedTypes(types: UserType[]): StoredType[] {
  const out: StoredType[] = [];
  for (const t of types) {
    const { schema, name } = t.name;
    if (t.kind === "enum") {
      const labels = t.labels.map((label, i) => ({ oid: t.labelOids[i]!, label }));
      out.push({ kind: "enum", schema, name, labels });
    } else if (t.kind === "composite") {
      out.push({ kind: "composite", schema, name, attributes: t.attributes });
    }
  }
  return out;
}

/**
 * What the target's existing types need to match the source's: enum labels
 * renamed (matched by the source's pg_enum oid as stored) and added in the
 * source's order, a domain's NOT NULL dropped, composite attributes
 * renamed, dropped, added and retyped. Types the target lacks are created,
 * not changed: they are not in the list. CHECK constraints (and a NOT NULL
 * added) stay on the source: its data already passed them.
 */
export function planTypeChanges(
  types: UserType[],
  stored: StoredType[] | null,
  existing: Map<string, TargetType>,
): TypeChanges {
  const before = new Map((stored ?? []).map((s) => [typeKey(s), s]));
  const out: TypeChanges = { changes: [], sql: [] };
  for (const t of types) {
    const have = existing.get(typeKey(t.name));
    if (!have) continue;
    const was = before.get(typeKey(t.name));
    const wrongKind = (what: string) =>
      new Error(`target type ${displayName(t.name)} exists and is not ${what}`);
    switch (t.kind) {
      case "enum":
        if (have.typtype !== "e") throw wrongKind("an enum");
        enumChanges(out, t, was?.kind === "enum" ? was.labels : null, have.labels);
        break;
      case "domain":
        if (have.typtype !== "d") throw wrongKind("a domain");
        if (have.notNull && !t.notNull) {
          out.changes.push(`domain ${displayName(t.name)}: NOT NULL dropped`);
          out.sql.push(`ALTER DOMAIN ${quoteQualified(t.name)} DROP NOT NULL`);
        }
        break;
      case "composite":
        if (have.typtype !== "c") throw wrongKind("a composite type");
        compositeChanges(
          out,
          t,
          was?.kind === "composite" ? was.attributes : null,
          have.attributes,
        );
        break;
      case "external":
        break;
    }
  }
  return out;
}

/**
 * Renames first (a RENAME VALUE on the source keeps the label's oid, so
 * the stored label of that oid is the one to rename; through temporary
 * names when labels swap), then each label the target lacks, where the
 * source has it (AFTER its predecessor, BEFORE the first), so the target's
 * enum sorts as the source's does.
 */
function enumChanges(
  out: TypeChanges,
  t: Extract<UserType, { kind: "enum" }>,
  stored: { oid: string; label: string }[] | null,
  have: string[],
): void {
  const q = quoteQualified(t.name);
  const name = displayName(t.name);
  const old = new Map((stored ?? []).map((l) => [l.oid, l.label]));
  const labels = new Set(have);
  const renames: [string, string][] = [];
  for (const [i, label] of t.labels.entries()) {
    const was = old.get(t.labelOids[i]!);
    if (was !== undefined && was !== label && labels.has(was)) renames.push([was, label]);
  }
  const leaving = new Set(renames.map(([from]) => from));
  const doable = renames.filter(([, to]) => !labels.has(to) || leaving.has(to));
  const rename = (from: string, to: string) =>
    `ALTER TYPE ${q} RENAME VALUE ${quoteLiteral(from)} TO ${quoteLiteral(to)}`;
  // Labels renamed to one another's names (a swap) go through temporary names.
  const swap = doable.some(([, to]) => leaving.has(to));
  const tmp = (i: number) => `xmin_sync_rename_${i}`;
  for (const [i, [from, to]] of doable.entries()) {
    out.changes.push(
      `enum ${name}: label ${JSON.stringify(from)} renamed to ${JSON.stringify(to)}`,
    );
    out.sql.push(rename(from, swap ? tmp(i) : to));
  }
  if (swap) for (const [i, [, to]] of doable.entries()) out.sql.push(rename(tmp(i), to));
  const renamed = new Map(doable);
  const now = have.map((l) => renamed.get(l) ?? l);
  labels.clear();
  for (const l of now) labels.add(l);

  const first = now[0];
  for (const [i, label] of t.labels.entries()) {
    if (labels.has(label)) continue;
    const prev = i > 0 ? t.labels[i - 1] : undefined;
    const where =
      prev !== undefined
        ? ` AFTER ${quoteLiteral(prev)}`
        : first !== undefined
          ? ` BEFORE ${quoteLiteral(first)}`
          : "";
    out.changes.push(`enum ${name}: label ${JSON.stringify(label)} added`);
    out.sql.push(`ALTER TYPE ${q} ADD VALUE IF NOT EXISTS ${quoteLiteral(label)}${where}`);
    labels.add(label);
  }
}

/**
 * The source's attributes by attnum as stored (else by name) against the
 * target's: renamed, dropped, retyped, added. ADD ATTRIBUTE appends, and a
 * composite's text form is positional: an attribute whose place the target
 * cannot keep (the source dropped and re-added it) is dropped and re-added
 * there too, as NULL in existing values, as on the source.
 */
function compositeChanges(
  out: TypeChanges,
  t: Extract<UserType, { kind: "composite" }>,
  stored: StoredColumn[] | null,
  have: { name: string; type: string }[],
): void {
  const q = quoteQualified(t.name);
  const label = `composite ${displayName(t.name)}`;
  const storedName = new Map((stored ?? []).map((a) => [a.attnum, a.name]));
  const targetNames = new Set(have.map((a) => a.name));
  // Each source attribute's name on the target, or null for a new one.
  const matched = t.attributes.map((a) => {
    const was = stored ? storedName.get(a.attnum) : a.name;
    return was !== undefined && targetNames.has(was) ? was : null;
  });
  const kept = new Set(matched.filter((m): m is string => m !== null));
  // Attributes keep their place while the source's order walks forward
  // through the target's; from the first that does not (or a new one), the
  // rest go to the end: re-added.
  const position = new Map(have.map((a, i) => [a.name, i]));
  let from = 0;
  for (let at = -1; from < matched.length; from++) {
    const p = matched[from] === null ? -1 : position.get(matched[from]!)!;
    if (p <= at) break;
    at = p;
  }
  const readd = new Set(matched.slice(from).filter((m): m is string => m !== null));

  const change = (text: string, sql: string) => {
    out.changes.push(`${label}: ${text}`);
    out.sql.push(`ALTER TYPE ${q} ${sql}`);
  };
  for (const a of have) {
    if (!kept.has(a.name) || readd.has(a.name))
      change(`attribute ${quoteIdent(a.name)} dropped`, `DROP ATTRIBUTE ${quoteIdent(a.name)}`);
  }
  for (const [i, a] of t.attributes.entries()) {
    const was = matched[i];
    if (was === null || was === undefined || readd.has(was)) continue;
    if (was !== a.name) {
      change(
        `attribute ${quoteIdent(was)} renamed to ${quoteIdent(a.name)}`,
        `RENAME ATTRIBUTE ${quoteIdent(was)} TO ${quoteIdent(a.name)}`,
      );
    }
    const type = have.find((h) => h.name === was)!.type;
    if (type !== a.type) {
      change(
        `attribute ${quoteIdent(a.name)} changed type from ${type} to ${a.type}`,
        `ALTER ATTRIBUTE ${quoteIdent(a.name)} TYPE ${a.type}`,
      );
    }
  }
  for (const a of t.attributes.slice(from))
    change(
      `attribute ${quoteIdent(a.name)} added`,
      `ADD ATTRIBUTE ${quoteIdent(a.name)} ${a.type}`,
    );
}

/** The DDL that creates a type the target lacks. */
function createTypeSql(t: UserType): string[] {
  const q = quoteQualified(t.name);
  switch (t.kind) {
    case "enum":
      return [`CREATE TYPE ${q} AS ENUM (${t.labels.map(quoteLiteral).join(", ")})`];
    case "domain":
      // The source's CHECK constraints stay on the source: its data already
      // passed them, and copying their expressions would run source-defined
      // code in the target.
      return [
        `CREATE DOMAIN ${q} AS ${t.baseType}` +
          (t.collation ? ` COLLATE ${t.collation}` : "") +
          (t.notNull ? " NOT NULL" : ""),
      ];
    case "composite":
      return [
        `CREATE TYPE ${q} AS (${t.attributes.map((a) => `${quoteIdent(a.name)} ${a.type}`).join(", ")})`,
      ];
    case "external":
      throw new Error(
        `type ${displayName(t.name)} does not exist on the target; create it (or install the extension that provides it) first`,
      );
  }
}

/** The changes the target's types need now, without making them (for schemaChanges: fail). */
export async function pendingTypeChanges(
  client: pg.Client,
  types: UserType[],
  stored: StoredType[] | null,
): Promise<TypeChanges> {
  return planTypeChanges(types, stored, await readTargetTypes(client, types));
}

/**
 * Creates the user-defined types the table needs and brings existing ones
 * up to date; returns the changes made. Runs in its own transaction, under
 * the shared-DDL lock (tables of one run may share a type, and the target is
 * read again under it): a new enum label cannot be used in the transaction
 * that adds it.
 */
export async function ensureUserTypes(
  client: pg.Client,
  types: UserType[],
  stored: StoredType[] | null,
  collations: CollationDef[] = [],
): Promise<string[]> {
  if (types.length === 0 && collations.length === 0) return [];
  await client.query("BEGIN");
  try {
    await lockSharedDdl(client);
    await ensureCollations(client, collations);
    const existing = await readTargetTypes(client, types);
    // Dependencies first (types is in that order); changes may use new types.
    for (const t of types) {
      if (existing.has(typeKey(t.name))) continue;
      await createSchemaIfMissing(client, t.name.schema);
      for (const sql of createTypeSql(t)) await client.query(sql);
    }
    const { changes, sql } = planTypeChanges(types, stored, existing);
    for (const statement of sql) await client.query(statement);
    await client.query("COMMIT");
    return changes;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
}
