import type pg from "pg";
import { displayName, type QualifiedName } from "../db/quote.js";
import { readMissingValues, type SourceTable } from "../source/catalog.js";
import type { SourceIdentity } from "../source/snapshot.js";
import { alterTargetTable } from "../target/alter.js";
import type { TargetTable } from "../target/ddl.js";
import type { StoredColumn, StoredType, TableState } from "../target/state.js";
import { ensureUserTypes, pendingTypeChanges } from "../target/types.js";
import { matchColumns, MIXED, planSchema, type MissingValue, type SchemaPlan } from "./schema.js";
import type { DroppedColumns, SchemaChanges } from "./types.js";

/** A table stopped by `schemaChanges: fail`; carries the changes it found. */
export class SchemaChangedError extends Error {
  override name = "SchemaChangedError";
  constructor(
    message: string,
    readonly changes: string[],
  ) {
    super(message);
  }
}

/** How the target must change for this run, found before anything on it changes. */
export interface Evolution {
  /** The table's columns and key (null when the target table does not exist yet). */
  plan: SchemaPlan | null;
  /** The source's enum labels and composite attributes as the last run stored them, when comparable. */
  storedTypes: StoredType[] | null;
}

/** A source column as the state stores it. */
export const storedColumns = (table: SourceTable): StoredColumn[] =>
  table.columns.map((c) => ({ attnum: c.attnum, name: c.name, type: c.type }));

/**
 * What changed in the source table's schema since the last run, and the
 * DDL the target needs. Attribute numbers and enum oids mean something only
 * on the same source table of the same cluster: otherwise columns match by name.
 */
export async function planEvolution(
  source: pg.Client,
  i: {
    table: SourceTable;
    key: string[];
    state: TableState | null;
    identity: SourceIdentity;
    targetName: QualifiedName;
    existing: TargetTable | null;
    targetEmpty: boolean;
    droppedColumns: DroppedColumns;
  },
): Promise<Evolution> {
  const { table, state } = i;
  const same =
    state !== null &&
    state.sourceTableOid === table.oid &&
    state.sourceDatabaseOid === i.identity.databaseOid &&
    state.sourceSystemId === i.identity.systemIdentifier;
  const storedTypes = same ? state.types : null;
  if (!i.existing) return { plan: null, storedTypes };
  const match = matchColumns(
    table.columns,
    same ? state.columns : null,
    i.existing,
    state !== null,
  );
  const hasStorage = ["r", "p", "m"].includes(table.relkind);
  const missing =
    match.added.size > 0 && hasStorage
      ? await missingValues(source, table, same ? state.leaves : null, [...match.added])
      : new Map<string, MissingValue>();
  const domains = new Map<string, string>();
  for (const t of table.userTypes) if (t.kind === "domain") domains.set(t.sql, t.baseType);
  const plan = planSchema({
    target: i.targetName,
    source: table.columns,
    sourceHasStorage: hasStorage,
    domains,
    match,
    existing: i.existing,
    key: i.key,
    missing,
    targetEmpty: i.targetEmpty,
    droppedColumns: i.droppedColumns,
  });
  return { plan, storedTypes };
}

/**
 * The value rows written before each added column carry, over the leaves
 * the last run read (leaves new since are read whole anyway): one value,
 * or MIXED where leaves hold different ones (partitions given the column
 * apart, with different defaults).
 */
async function missingValues(
  source: pg.Client,
  table: SourceTable,
  storedLeaves: { oid: string }[] | null,
  columns: string[],
): Promise<Map<string, MissingValue>> {
  const known = storedLeaves ? new Set(storedLeaves.map((l) => l.oid)) : null;
  const old = table.leaves.filter(
    (l) => (l.relkind === "r" || l.relkind === "m") && (!known || known.has(l.oid)),
  );
  const byLeaf = await readMissingValues(
    source,
    old.map((l) => l.oid),
    columns,
  );
  const out = new Map<string, MissingValue>();
  for (const name of columns) {
    const values = new Set([...byLeaf.values()].map((m) => m.get(name) ?? null));
    out.set(name, values.size > 1 ? MIXED : ([...values][0] ?? null));
  }
  return out;
}

/**
 * With `schemaChanges: fail`, stops the table before anything changes on
 * the target if its schema changed: one line naming the table and each change.
 */
export async function checkSchemaPolicy(
  target: pg.Client,
  table: SourceTable,
  evolution: Evolution,
  policy: SchemaChanges,
): Promise<void> {
  if (policy !== "fail" || !evolution.plan) return;
  const types = await pendingTypeChanges(target, table.userTypes, evolution.storedTypes);
  const changes = [...types.changes, ...evolution.plan.changes];
  if (changes.length === 0) return;
  throw new SchemaChangedError(
    `source table ${displayName(table.name)} changed: ${changes.join("; ")}; ` +
      "schemaChanges is fail, so the target was left as it was",
    changes,
  );
}

/**
 * Brings the target's types and table in line with the source; returns the
 * changes made, one line each.
 */
export async function evolveTarget(
  target: pg.Client,
  targetName: QualifiedName,
  table: SourceTable,
  evolution: Evolution,
): Promise<string[]> {
  const typeChanges = await ensureUserTypes(
    target,
    table.userTypes,
    evolution.storedTypes,
    table.collations,
  );
  const plan = evolution.plan;
  if (!plan || plan.changes.length === 0) return typeChanges;
  await alterTargetTable(target, targetName, plan.steps, {
    columns: storedColumns(table),
    resyncReason: plan.resync,
  });
  return [...typeChanges, ...plan.changes];
}
