import { keyEqualsSql, type KeyColumn } from "../db/key.js";
import { quoteIdent, quoteQualified, type QualifiedName } from "../db/quote.js";
import { statement, type Statement } from "../db/statement.js";
import { SOURCE_DELETED_AT, SOURCE_XMIN } from "./ddl.js";

/**
 * SQL that moves staged rows into the target table. Pure builders, tested by
 * exact string; each returns its text with its bound values.
 */
export interface MergeSpec {
  target: QualifiedName;
  stage: QualifiedName;
  /** Source columns, key columns included. */
  columns: string[];
  /** Matched by each column's type's own equality and collation (db/key.ts). */
  key: KeyColumn[];
  /**
   * Decide by content, not by source_xmin: after the source changed
   * identity, or rewrote every row, xmins prove nothing.
   */
  compareContent: boolean;
  /**
   * The target has source_deleted_at: a staged row revives a soft-deleted
   * one (clears the mark), even when its source_xmin is unchanged.
   */
  softDeletes?: boolean;
  /** Merge one slice of the staging table: staged rows whose ctid is in [from, to). */
  slice?: [string, string];
}

/** The staged rows as `s`: the staging table, or one slice of it. */
function stagedRows(spec: MergeSpec): string {
  return spec.slice
    ? `(SELECT * FROM ${quoteQualified(spec.stage)} WHERE ctid >= $1::tid AND ctid < $2::tid) AS s`
    : `${quoteQualified(spec.stage)} AS s`;
}

const sliceValues = (spec: MergeSpec): unknown[] => (spec.slice ? [...spec.slice] : []);

const keyJoin = (spec: MergeSpec, a: string, b: string) => keyEqualsSql(spec.key, a, b);

/**
 * The condition under which a matched row is rewritten; `s` is the new row.
 * Normally a changed source_xmin. When xmins prove nothing (a resync after
 * the source's identity changed, a rewrite that gave every row a new xmin,
 * timestamp mode), the content decides: rows that read the same are not
 * written, whatever their xmin. Text form compares what a user sees (NULLs,
 * trailing spaces, json key order) and works for types without an equality
 * operator (json, xml, point).
 */
function changedCondition(spec: MergeSpec, s: string): string {
  const row = (alias: string) =>
    `ROW(${spec.columns.map((c) => `${alias}.${quoteIdent(c)}`).join(", ")})::text`;
  const changed = spec.compareContent
    ? `${row("t")} IS DISTINCT FROM ${row(s)}`
    : `t.${quoteIdent(SOURCE_XMIN)} IS DISTINCT FROM ${s}.${quoteIdent(SOURCE_XMIN)}`;
  if (!spec.softDeletes) return changed;
  // A soft-deleted row that is staged again comes back, changed or not.
  return `(${changed} OR t.${quoteIdent(SOURCE_DELETED_AT)} IS NOT NULL)`;
}

/**
 * Every column, the key's too: a key equal under its type's equality may be
 * spelled differently (numeric 1.0 and 1.00, 'Abc' and 'ABC' under a
 * case-insensitive collation or citext), and the copy takes the source's
 * spelling. A key column set to the same bytes costs nothing more (the
 * update can still be HOT).
 */
function updatedColumns(spec: MergeSpec): string[] {
  return [...spec.columns, SOURCE_XMIN];
}

/** SET list; `from` is the alias of the new row (s, or EXCLUDED). */
function setList(spec: MergeSpec, from: string): string {
  const set = updatedColumns(spec).map((c) => `${quoteIdent(c)} = ${from}.${quoteIdent(c)}`);
  if (spec.softDeletes) set.push(`${quoteIdent(SOURCE_DELETED_AT)} = NULL`);
  return set.join(", ");
}

/**
 * PostgreSQL 15+. Rows whose source_xmin did not change are left alone: no
 * write, no bloat. With `counted` (17+), one statement also returns how many
 * rows it inserted and updated.
 */
export function mergeSql(spec: MergeSpec, opts: { counted?: boolean } = {}): Statement {
  const all = [...spec.columns, SOURCE_XMIN].map(quoteIdent);
  const merge =
    `MERGE INTO ${quoteQualified(spec.target)} AS t USING ${stagedRows(spec)} ON ${keyJoin(spec, "t", "s")}` +
    ` WHEN MATCHED AND ${changedCondition(spec, "s")} THEN UPDATE SET ${setList(spec, "s")}` +
    ` WHEN NOT MATCHED THEN INSERT (${all.join(", ")}) VALUES (${all.map((c) => `s.${c}`).join(", ")})`;
  if (!opts.counted) return statement(merge, sliceValues(spec));
  return statement(
    `WITH m AS (${merge} RETURNING merge_action() AS a)` +
      ` SELECT count(*) FILTER (WHERE a = 'INSERT')::bigint AS inserted,` +
      ` count(*) FILTER (WHERE a = 'UPDATE')::bigint AS updated FROM m`,
    sliceValues(spec),
  );
}

/**
 * PostgreSQL 13 and 14: the same effect with INSERT … ON CONFLICT on the
 * key, counting as it goes: a row version made by the insert branch has no
 * xmax, one made by the update branch carries the conflict's row lock.
 */
export function upsertSql(spec: MergeSpec): Statement {
  const all = [...spec.columns, SOURCE_XMIN].map(quoteIdent);
  const upsert =
    `INSERT INTO ${quoteQualified(spec.target)} AS t (${all.join(", ")})` +
    ` SELECT ${all.map((c) => `s.${c}`).join(", ")} FROM ${stagedRows(spec)}` +
    ` ON CONFLICT (${spec.key.map((k) => quoteIdent(k.name)).join(", ")}) DO UPDATE SET ${setList(spec, "EXCLUDED")}` +
    ` WHERE ${changedCondition(spec, "EXCLUDED")}`;
  return statement(
    `WITH m AS (${upsert} RETURNING (t.xmax = 0) AS inserted)` +
      ` SELECT count(*) FILTER (WHERE inserted)::bigint AS inserted,` +
      ` count(*) FILTER (WHERE NOT inserted)::bigint AS updated FROM m`,
    sliceValues(spec),
  );
}

/** Staged rows with no target row yet: the inserts of a MERGE that cannot count them (15, 16). */
export function countNewSql(spec: MergeSpec): Statement {
  return statement(
    `SELECT count(*)::bigint AS n FROM ${stagedRows(spec)}` +
      ` WHERE NOT EXISTS (SELECT 1 FROM ${quoteQualified(spec.target)} AS t WHERE ${keyJoin(spec, "t", "s")})`,
    sliceValues(spec),
  );
}

/** Target row `t` has no key in `keys` (the full staged set, or the source's key set). */
function missingFrom(keys: QualifiedName, key: KeyColumn[]): string {
  return `NOT EXISTS (SELECT 1 FROM ${quoteQualified(keys)} AS s WHERE ${keyEqualsSql(key, "s", "t")})`;
}

/** Target rows the source no longer has. */
export function deleteMissingSql(
  target: QualifiedName,
  keys: QualifiedName,
  key: KeyColumn[],
): Statement {
  return statement(`DELETE FROM ${quoteQualified(target)} AS t WHERE ${missingFrom(keys, key)}`);
}

/** deleteMissingSql for soft deletes: mark, once, the target rows the source no longer has. */
export function markMissingSql(
  target: QualifiedName,
  keys: QualifiedName,
  key: KeyColumn[],
): Statement {
  return statement(
    `UPDATE ${quoteQualified(target)} AS t SET ${quoteIdent(SOURCE_DELETED_AT)} = now()` +
      ` WHERE t.${quoteIdent(SOURCE_DELETED_AT)} IS NULL AND ${missingFrom(keys, key)}`,
  );
}

/** An unlogged table shaped like the target's synced columns, for one run. */
export function createStageSql(spec: Pick<MergeSpec, "target" | "stage" | "columns">): string {
  const all = [...spec.columns, SOURCE_XMIN].map(quoteIdent).join(", ");
  return `CREATE UNLOGGED TABLE ${quoteQualified(spec.stage)} AS SELECT ${all} FROM ${quoteQualified(spec.target)} WITH NO DATA`;
}

/** An unlogged table of the key columns, for the source's key set (delete detection). */
export function createKeysSql(target: QualifiedName, keys: QualifiedName, key: string[]): string {
  const cols = key.map(quoteIdent).join(", ");
  return `CREATE UNLOGGED TABLE ${quoteQualified(keys)} AS SELECT ${cols} FROM ${quoteQualified(target)} WITH NO DATA`;
}

export function copyInSql(
  table: QualifiedName,
  columns: string[],
  opts: { format?: "text" | "binary"; withXmin?: boolean } = {},
): string {
  const cols = opts.withXmin === false ? columns : [...columns, SOURCE_XMIN];
  const binary = opts.format === "binary" ? " (FORMAT binary)" : "";
  return `COPY ${quoteQualified(table)} (${cols.map(quoteIdent).join(", ")}) FROM STDIN${binary}`;
}
