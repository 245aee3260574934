import type pg from "pg";
import { quoteIdent, quoteQualified, type QualifiedName } from "../db/quote.js";
import type { Snapshot } from "./snapshot.js";
import { nextFromAge } from "./xid.js";

/** A range of one relation for one parallel reader. */
export type ReadRange =
  /** Heap pages [fromPage, toPage): a TID range scan on PostgreSQL 14+. */
  | { kind: "ctid"; fromPage: number | null; toPage: number | null }
  /** Integer key values [from, to), for older servers. */
  | { kind: "key"; column: string; from: string | null; to: string | null };

/**
 * What one reader copies: one relation (a leaf read with ONLY, or the table
 * as a whole), optionally one range of it.
 */
export interface ReadPart {
  relation: QualifiedName;
  /** Read this relation's own rows only (a leaf of a partition or inheritance tree). */
  only: boolean;
  range?: ReadRange;
  /**
   * Read every row of this part, even in an incremental run: a leaf that
   * was attached or replaced since the last run holds rows older than the
   * watermark that the copy has never seen.
   */
  allRows?: boolean;
  /** The same, for leaves read through their root: rows whose tableoid is one of these. */
  allRowsOf?: string[];
  /**
   * Read through the cursor column's index: a narrow window of a big table.
   * The planner cannot see the bound (a setting, read at run time) and
   * would scan the whole table.
   */
  byIndex?: boolean;
  /**
   * Read by a sequential scan, never an index: what spares the source's
   * buffer cache (spareSourceCache). The planner would read a key set of an
   * all-visible table by an index-only scan, through the cache.
   */
  sequential?: boolean;
}

/** Which rows a read selects. */
export type RowFilter =
  | { kind: "all" }
  /** Rows whose full xmin is newer than the watermark. */
  | { kind: "xmin"; since: bigint }
  /** Rows whose cursor column is at or after the last high mark minus the lookback. */
  | { kind: "cursor"; column: string; type: string; last: string; lookback: string };

/**
 * What one reader copies out of the source: the table's columns (or the
 * key only) plus the row's reconstructed 64-bit xmin. Values come from
 * set_config (COPY takes no bind parameters) and are read once per statement
 * through uncorrelated scalar subqueries (`setting`) or as TID/key scan bounds.
 */
export interface ReadSpec {
  part: ReadPart;
  columns: string[];
  /** full: the 64-bit xmin as source_xmin; null: a NULL source_xmin (no xmin: views); none: no column (key sets). */
  xmin: "full" | "null" | "none";
  filter: RowFilter;
  format?: "text" | "binary";
}

const AGE = "age(t.xmin)";
const RAW_XMIN = "t.xmin::text::bigint";

/** Where the bound xid values come from: set_config'd settings (COPY), or bind parameters. */
export interface XidRefs {
  /** N as a full id (age() counts back from it). */
  n: string;
  /** How far behind N a row may be and still be new. */
  w: string;
  /** The snapshot's xmax, for the rare text fallback. */
  c: string;
}

/**
 * A set_config'd value as an uncorrelated scalar subquery: the planner makes
 * it an InitPlan, read once per statement, and a filter on it stays in the
 * scan. (A join to a fenced subquery of the settings put a nested loop over
 * every row and made an incremental scan five times slower.)
 */
const setting = (name: string, type: string) =>
  `(SELECT current_setting('xmin_sync.${name}')::${type})`;

const SETTING_REFS: XidRefs = {
  n: setting("next", "bigint"),
  w: setting("window", "int"),
  c: setting("reference", "bigint"),
};

/**
 * The row's full 64-bit xmin: N minus its age. age() is INT_MAX for raw
 * xmin 1 and 2 (bootstrap, frozen before 9.4), which keep their raw value,
 * and for a row exactly 2^31-1 behind, which falls back to text arithmetic.
 */
export function sourceXminSql(r: XidRefs = SETTING_REFS): string {
  return (
    `CASE WHEN ${AGE} < 2147483647 THEN ${r.n} - (${AGE}::bigint & 4294967295)` +
    ` WHEN ${RAW_XMIN} <= 2 THEN ${RAW_XMIN}` +
    ` ELSE ${r.c} - ((${r.c} - ${RAW_XMIN}) & 4294967295) END`
  );
}

/**
 * Newer than the watermark: at most w behind N. age() is the signed 32-bit
 * distance N - xmin, INT_MAX for non-normal xids (never new), negative for a
 * frozen row over 2^31 old; w is under 2^30 (a larger gap is a full
 * rescan), so one range test on age() says it, with one call per row.
 */
export function isNewSql(r: XidRefs = SETTING_REFS): string {
  return `${AGE} BETWEEN 0 AND ${r.w}`;
}

export const SOURCE_XMIN_SQL = sourceXminSql();

/** The cursor's lower bound, computed once on the source in the column's own type. */
function cursorBoundSql(type: string): string {
  return `(SELECT ${cursorBound(type, "current_setting('xmin_sync.cursor_last')", "current_setting('xmin_sync.lookback')")})`;
}

/** The last high mark less the lookback, in the column's type, from two text values. */
export function cursorBound(type: string, last: string, lookback: string): string {
  const step = /^(timestamp|date)/.test(type) ? "interval" : "numeric";
  return `(${last}::${type} - ${lookback}::${step})::${type}`;
}

function rangeSql(range: ReadRange): string[] {
  const conds: string[] = [];
  const lhs = range.kind === "ctid" ? "t.ctid" : `t.${quoteIdent(range.column)}`;
  const cast = range.kind === "ctid" ? "tid" : "bigint";
  const from = range.kind === "ctid" ? range.fromPage : range.from;
  const to = range.kind === "ctid" ? range.toPage : range.to;
  if (from !== null) conds.push(`${lhs} >= current_setting('xmin_sync.range_from')::${cast}`);
  if (to !== null) conds.push(`${lhs} < current_setting('xmin_sync.range_to')::${cast}`);
  return conds;
}

/**
 * Planner settings a part's read needs, for its one statement: the scan
 * its flags ask for (copyOutSql writes the rest of the read).
 */
export function readSettings(part: ReadPart): Record<string, string> {
  if (part.byIndex) return { enable_seqscan: "off" };
  if (part.sequential)
    return { enable_indexscan: "off", enable_indexonlyscan: "off", enable_bitmapscan: "off" };
  return {};
}

export function copyOutSql(spec: ReadSpec): string {
  const { part, filter } = spec;
  const select = spec.columns.map((c) => `t.${quoteIdent(c)}`);
  const from = `${part.only ? "ONLY " : ""}${quoteQualified(part.relation)} AS t`;
  const where = part.range ? rangeSql(part.range) : [];
  if (spec.xmin === "full") select.push(`${SOURCE_XMIN_SQL} AS source_xmin`);
  if (spec.xmin === "null") select.push("NULL::bigint AS source_xmin");
  if (!part.allRows) {
    let cond: string | undefined;
    if (filter.kind === "xmin") cond = isNewSql();
    if (filter.kind === "cursor")
      cond = `t.${quoteIdent(filter.column)} >= ${cursorBoundSql(filter.type)}`;
    if (cond && part.allRowsOf?.length) {
      // The cast makes the subquery an array value: ANY over a bare
      // subquery compares with each of its rows instead.
      cond = `(${cond} OR t.tableoid = ANY(${setting("all_rows_of", "oid[]")}::oid[]))`;
    }
    if (cond) where.unshift(cond);
  }
  const filterSql = where.length > 0 ? ` WHERE ${where.join(" AND ")}` : "";
  const binary = spec.format === "binary" ? " (FORMAT binary)" : "";
  return `COPY (SELECT ${select.join(", ")} FROM ${from}${filterSql}) TO STDOUT${binary}`;
}

/**
 * Binds what copyOutSql reads, in the reader's (read-only, repeatable read)
 * transaction: N from age() (fixing it for the transaction), the window
 * back to the watermark, the cursor bound and the range bounds. Without a
 * watermark the window covers everything age() can tell apart.
 */
export async function bindRead(
  client: pg.Client,
  snapshot: Snapshot,
  spec: Pick<ReadSpec, "part" | "filter">,
): Promise<void> {
  const names: string[] = [];
  const values: string[] = [];
  const bind = (name: string, value: string) => {
    names.push(`xmin_sync.${name}`);
    values.push(value);
  };
  const { rows } = await client.query<{ a: number }>("SELECT age('3'::xid) AS a");
  const next = nextFromAge(rows[0]!.a, snapshot.xmax);
  const { filter, part } = spec;
  bind("next", next.toString());
  bind("window", (filter.kind === "xmin" ? next - filter.since : 2147483646n).toString());
  bind("reference", snapshot.xmax.toString());
  if (filter.kind === "cursor") {
    bind("cursor_last", filter.last);
    bind("lookback", filter.lookback);
  }
  if (part.allRowsOf?.length) bind("all_rows_of", `{${part.allRowsOf.join(",")}}`);
  const range = part.range;
  if (range) {
    const from = range.kind === "ctid" ? range.fromPage : range.from;
    const to = range.kind === "ctid" ? range.toPage : range.to;
    const bound = (v: number | string) => (range.kind === "ctid" ? `(${v},0)` : String(v));
    if (from !== null) bind("range_from", bound(from));
    if (to !== null) bind("range_to", bound(to));
  }
  await client.query(
    "SELECT set_config(name, value, true) FROM unnest($1::text[], $2::text[]) AS s(name, value)",
    [names, values],
  );
}
