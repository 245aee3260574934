import { quoteIdent, quoteLiteral, quoteQualified, type QualifiedName } from "../db/quote.js";
import type { Column } from "../source/catalog.js";
import type { SchemaStep } from "../target/alter.js";
import { RESERVED_COLUMNS, SOURCE_XMIN, fitName, type TargetTable } from "../target/ddl.js";
import type { StoredColumn } from "../target/state.js";
import type { DroppedColumns } from "./types.js";

/** Where the source's leaves disagree on the value old rows carry for an added column. */
export const MIXED = Symbol("mixed");
export type MissingValue = string | null | typeof MIXED;

/**
 * How the source's columns line up with the target's: by attribute number
 * as the last run stored them (a rename keeps it, a drop and re-add does
 * not), or by name where nothing is stored.
 */
export interface ColumnMatch {
  /** Each source column's name on the target now (null: the target has none). */
  targetName: (string | null)[];
  /** Source columns new since the last run. */
  added: Set<string>;
  /** Target columns whose source column was dropped since the last run. */
  dropped: string[];
  /** Target columns that are neither (kept from an earlier drop, or the user's own). */
  others: string[];
}

/**
 * `stored` null compares by name; `synced` false (no state: a table the
 * user created) knows of no drop, so the target's extra columns are the user's.
 */
export function matchColumns(
  source: Column[],
  stored: StoredColumn[] | null,
  target: TargetTable,
  synced = true,
): ColumnMatch {
  const onTarget = new Set(target.columnList.map((c) => c.name));
  const reserved = new Set(RESERVED_COLUMNS);
  const before = new Map((stored ?? []).map((s) => [s.attnum, s.name]));
  const added = new Set<string>();
  const targetName = source.map((c) => {
    const was = stored ? before.get(c.attnum) : c.name;
    if (was === undefined) added.add(c.name);
    else if (onTarget.has(was)) return was;
    // Renamed on the target already (by a run that did not get to record it).
    else if (onTarget.has(c.name)) return c.name;
    return null;
  });
  // Without a stored list, a column the target lacks was added since: the last run could not have copied the table without it.
  if (!stored) for (const [i, c] of source.entries()) if (!targetName[i]) added.add(c.name);
  const claimed = new Set(targetName.filter((n): n is string => n !== null));
  const attnums = new Set(source.map((c) => c.attnum));
  const dropped = stored
    ? stored
        .filter((s) => !attnums.has(s.attnum) && onTarget.has(s.name) && !claimed.has(s.name))
        .map((s) => s.name)
    : synced
      ? [...onTarget].filter((n) => !claimed.has(n) && !reserved.has(n))
      : [];
  const gone = new Set(dropped);
  const others = [...onTarget].filter((n) => !claimed.has(n) && !gone.has(n) && !reserved.has(n));
  return { targetName, added, dropped, others };
}

/** What the target table needs to take the source's rows again. */
export interface SchemaPlan {
  /** One line per change, naming the column. */
  changes: string[];
  /** The DDL, in order, for one transaction. */
  steps: SchemaStep[];
  /** Why the table must now be copied whole and compared, or null. */
  resync: string | null;
}

export interface SchemaInput {
  target: QualifiedName;
  source: Column[];
  /**
   * The source keeps rows (a table): rows written before a column was added
   * carry its fast default. A view or foreign table does not: its new
   * column's old values are known only by reading every row.
   */
  sourceHasStorage: boolean;
  /** Source domain → its base type (format_type), to compare what a column holds. */
  domains: Map<string, string>;
  match: ColumnMatch;
  existing: TargetTable;
  key: string[];
  /** For each added column: the value rows written before it carry (its fast default, as text). */
  missing: Map<string, MissingValue>;
  targetEmpty: boolean;
  droppedColumns: DroppedColumns;
}

/**
 * The DDL that brings an existing target table in line with the source:
 * key dropped if it changed, dropped columns kept or dropped, names freed,
 * renames, type changes (in place when the values stay the same, else
 * rebuilt with a resync), added columns (with the value old rows carry, so
 * the rows the xmin read does not bring are right), NOT NULL relaxed, and
 * the new key. A pure value: tested by exact statements.
 */
export function planSchema(p: SchemaInput): SchemaPlan {
  const t = quoteQualified(p.target);
  const alter = (sql: string) => `ALTER TABLE ${t} ${sql}`;
  const col = (name: string) => p.existing.columnList.find((c) => c.name === name)!;
  const changes: string[] = [];
  const steps: SchemaStep[] = [];
  const resync: string[] = [];
  const names = new Set(p.existing.columnList.map((c) => c.name));
  const { match } = p;

  const renamedTo = new Map<string, string>();
  for (const [i, c] of p.source.entries()) {
    const was = match.targetName[i];
    if (was) renamedTo.set(was, c.name);
  }
  const keyText = (k: string[]) => `(${k.map(quoteIdent).join(", ")})`;
  const targetKeys = p.existing.uniqueKeys.map((k) => k.map((n) => renamedTo.get(n) ?? n));
  const keyChanged = !targetKeys.some((k) => sameSet(k, p.key));
  if (keyChanged && p.existing.primaryKey) {
    steps.push({ sql: alter(`DROP CONSTRAINT ${quoteIdent(p.existing.primaryKey.name)}`) });
  }

  const leftovers = [...match.others];
  for (const name of match.dropped) {
    const q = quoteIdent(name);
    if (p.droppedColumns === "drop") {
      changes.push(`column ${q} dropped on the source: dropped on the target too`);
      steps.push({ sql: alter(`DROP COLUMN ${q}`) });
      names.delete(name);
      continue;
    }
    changes.push(`column ${q} dropped on the source: kept on the target, no longer written`);
    // New rows leave it NULL.
    if (col(name).notNull) steps.push({ sql: alter(`ALTER COLUMN ${q} DROP NOT NULL`) });
    leftovers.push(name);
  }

  // A column kept from an earlier drop (or the user's own) holding a name the source now uses moves aside.
  const needed = new Set(p.source.map((c) => c.name));
  for (const name of leftovers) {
    if (!needed.has(name)) continue;
    let aside = fitName(name, "_dropped");
    for (let n = 1; names.has(aside); n++) aside = fitName(name, `_dropped${n}`);
    changes.push(
      `column ${quoteIdent(name)} renamed to ${quoteIdent(aside)} on the target, for the source's new ${quoteIdent(name)}`,
    );
    steps.push({ sql: alter(`RENAME COLUMN ${quoteIdent(name)} TO ${quoteIdent(aside)}`) });
    names.delete(name);
    names.add(aside);
  }

  const renames = p.source
    .map((c, i) => ({ from: match.targetName[i], to: c.name }))
    .filter((r): r is { from: string; to: string } => r.from !== null && r.from !== r.to);
  // Columns renamed to one another's names (a swap) go through temporary names.
  const swap = renames.some((r) => names.has(r.to));
  const tmp = (i: number) => quoteIdent(`xmin_sync_rename_${i}`);
  for (const [i, r] of renames.entries()) {
    changes.push(`column ${quoteIdent(r.from)} renamed to ${quoteIdent(r.to)}`);
    const to = swap ? tmp(i) : quoteIdent(r.to);
    steps.push({ sql: alter(`RENAME COLUMN ${quoteIdent(r.from)} TO ${to}`) });
  }
  if (swap) {
    for (const [i, r] of renames.entries())
      steps.push({ sql: alter(`RENAME COLUMN ${tmp(i)} TO ${quoteIdent(r.to)}`) });
  }

  const definition = (c: Column) =>
    c.type + (c.collation ? ` COLLATE ${quoteQualified(c.collation)}` : "");
  for (const [i, c] of p.source.entries()) {
    const was = match.targetName[i];
    if (!was) continue;
    const have = col(was);
    const sameType = have.type === c.type;
    if (sameType && sameName(have.collation, c.collation)) continue;
    const q = quoteIdent(c.name);
    const change = alter(`ALTER COLUMN ${q} TYPE ${definition(c)} USING ${q}::${c.type}`);
    if (sameType) {
      changes.push(`column ${q} collation changed to ${collationText(c.collation)}`);
      steps.push({ sql: change });
    } else if (widens(have.baseType ?? have.type, p.domains.get(c.type) ?? c.type)) {
      // The source's values did not change (or its rewrite gave every row a new xmin): the same cast here keeps them equal.
      changes.push(`column ${q} widened from ${have.type} to ${c.type}`);
      steps.push({ sql: change });
    } else {
      changes.push(
        `column ${q} changed type from ${have.type} to ${c.type}: rebuilt on the target, table resynced`,
      );
      resync.push(`column ${q} changed type from ${have.type} to ${c.type}`);
      // Converted in place where the target can cast it (the resync then
      // rewrites only rows that differ); else emptied and refilled by the
      // resync. A key column cannot be emptied: a failed cast fails the run.
      steps.push(
        p.key.includes(c.name)
          ? { sql: change }
          : {
              sql: change,
              fallback: [alter(`DROP COLUMN ${q}`), alter(`ADD COLUMN ${q} ${definition(c)}`)],
            },
      );
    }
  }

  for (const [i, c] of p.source.entries()) {
    if (match.targetName[i]) continue;
    const q = quoteIdent(c.name);
    let value = p.missing.get(c.name) ?? null;
    if (!match.added.has(c.name)) {
      resync.push(`column ${q} was missing on the target`);
      value = null;
    } else if (!p.sourceHasStorage) {
      resync.push(`column ${q} added to a view or foreign table`);
      value = null;
    } else if (value === MIXED) {
      resync.push(`column ${q} added with a default the partitions hold differently`);
      value = null;
    }
    // Old rows take the value the source's old rows carry (its fast default):
    // a constant default is itself a fast default here, and dropping it after
    // keeps the value for those rows only. NOT NULL holds only if every row has a value.
    const fill = value !== null ? ` DEFAULT ${quoteLiteral(value)}::${c.type}` : "";
    const notNull = c.notNull && (p.targetEmpty || value !== null) ? " NOT NULL" : "";
    steps.push({ sql: alter(`ADD COLUMN ${q} ${definition(c)}${notNull}${fill}`) });
    if (fill) steps.push({ sql: alter(`ALTER COLUMN ${q} DROP DEFAULT`) });
    changes.push(
      `column ${q} added (${c.type})` +
        (value !== null ? `, existing rows given its default ${shortValue(value)}` : "") +
        (match.added.has(c.name) ? "" : ", table resynced"),
    );
  }

  for (const [i, c] of p.source.entries()) {
    const was = match.targetName[i];
    if (!was || c.notNull || !col(was).notNull || p.key.includes(c.name)) continue;
    const q = quoteIdent(c.name);
    changes.push(`column ${q} NOT NULL dropped, as on the source`);
    steps.push({ sql: alter(`ALTER COLUMN ${q} DROP NOT NULL`) });
  }

  if (keyChanged) {
    const before = p.existing.primaryKey?.columns ?? p.existing.uniqueKeys[0];
    const what = before
      ? `key changed from ${keyText(before.map((n) => renamedTo.get(n) ?? n))} to ${keyText(p.key)}`
      : `target had no unique key on ${keyText(p.key)}`;
    changes.push(`${what}: table resynced`);
    resync.push(what);
    // The source's rows are unique on the new key; target rows that are not
    // are stale copies (rows since deleted), and the resync brings the rest.
    const k = p.key.map(quoteIdent);
    const newest = p.existing.columns.has(SOURCE_XMIN)
      ? ` ORDER BY ${quoteIdent(SOURCE_XMIN)} DESC NULLS LAST`
      : "";
    steps.push({
      sql:
        `DELETE FROM ${t} WHERE ${k.map((c) => `${c} IS NULL`).join(" OR ")} OR ctid IN (` +
        `SELECT ctid FROM (SELECT ctid, row_number() OVER (PARTITION BY ${k.join(", ")}${newest}) AS n` +
        ` FROM ${t}) AS d WHERE d.n > 1)`,
    });
    steps.push({ sql: alter(`ADD PRIMARY KEY (${k.join(", ")})`) });
  }

  return { changes, steps, resync: resync.length > 0 ? resync.join("; ") : null };
}

function sameSet(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

function sameName(a: QualifiedName | null, b: QualifiedName | null): boolean {
  return a?.schema === b?.schema && a?.name === b?.name;
}

function collationText(c: QualifiedName | null): string {
  return c ? quoteQualified(c) : "the type's default";
}

/** A default's text for a one-line message. */
function shortValue(value: string): string {
  const line = value.replace(/\s+/g, " ");
  return JSON.stringify(line.length > 40 ? `${line.slice(0, 37)}...` : line);
}

const INTEGERS = ["smallint", "integer", "bigint"];
const VARCHAR = /^character varying(?:\((\d+)\))?$/;
const NUMERIC = /^numeric(?:\((\d+),(\d+)\))?$/;
const BIT_VARYING = /^bit varying(?:\((\d+)\))?$/;
const TIMES = /^(timestamp|time)(?:\((\d)\))? (with(?:out)? time zone)$/;

/**
 * Whether every value of type `from` is the same value, with the same text,
 * as `to`: a cast the target can make in place without a resync (integers
 * to wider ones or numeric, varchar to a longer varchar or text, numeric to
 * more precision at the same scale, longer bit strings, finer times).
 */
export function widens(from: string, to: string): boolean {
  if (from === to) return true;
  if (from.endsWith("[]") && to.endsWith("[]")) return widens(from.slice(0, -2), to.slice(0, -2));
  const i = INTEGERS.indexOf(from);
  if (i >= 0) return INTEGERS.indexOf(to) >= i || to === "numeric";
  const vf = VARCHAR.exec(from);
  if (vf || from === "text") {
    if (to === "text") return true;
    const vt = VARCHAR.exec(to);
    return !!vt && (vt[1] === undefined || (vf?.[1] !== undefined && +vt[1] >= +vf[1]));
  }
  const nf = NUMERIC.exec(from);
  const nt = NUMERIC.exec(to);
  if (nf && nt)
    return nt[1] === undefined || (nf[1] !== undefined && nf[2] === nt[2] && +nt[1] >= +nf[1]);
  const bf = BIT_VARYING.exec(from);
  const bt = BIT_VARYING.exec(to);
  if (bf && bt) return bt[1] === undefined || (bf[1] !== undefined && +bt[1] >= +bf[1]);
  const tf = TIMES.exec(from);
  const tt = TIMES.exec(to);
  if (tf && tt && tf[1] === tt[1] && tf[3] === tt[3]) return +(tt[2] ?? 6) >= +(tf[2] ?? 6);
  return false;
}
