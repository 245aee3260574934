import type pg from "pg";
import { quoteIdent, quoteQualified, type QualifiedName } from "../db/quote.js";
import type { Snapshot } from "./snapshot.js";
import { nextFromAge } from "./xid.js";

/** Part of a table for one parallel reader. Bounds are bound with set_config, like the xids. */
export type ReadRange =
  /** Heap pages [fromPage, toPage): a TID range scan on PostgreSQL 14+. */
  | { kind: "ctid"; fromPage: number | null; toPage: number | null }
  /** Integer key values [from, to), for older servers. */
  | { kind: "key"; column: string; from: string | null; to: string | null };

/**
 * What one reader copies out of the source: the table's columns (or some of
 * them) plus the row's reconstructed 64-bit xmin, optionally only rows newer
 * than the watermark, optionally one range of the table. Values come from
 * set_config (COPY takes no bind parameters) and are read once per statement
 * through an OFFSET 0 fence (p.n, p.w, p.c) or as TID/key scan bounds.
 */
export interface ReadSpec {
  table: QualifiedName;
  columns: string[];
  /** Whether rows carry a usable xmin (false for views and foreign tables). */
  hasXmin: boolean;
  /** Only rows newer than the watermark. */
  onlyNew: boolean;
  /** Omit source_xmin (key-only reads for delete detection). */
  withoutXmin?: boolean;
  range?: ReadRange;
  /** Timestamp mode: only rows whose cursor column is at or after xmin_sync.cursor_from. */
  cursor?: { column: string; type: string };
  format?: "text" | "binary";
}

const AGE = "age(t.xmin)";
const RAW_XMIN = "t.xmin::text::bigint";

/** Where the bound xid values come from: the p.* fence (COPY), or bind parameters. */
export interface XidRefs {
  /** N as a full id (age() counts back from it). */
  n: string;
  /** How far behind N a row may be and still be new. */
  w: string;
  /** The snapshot's xmax, for the rare text fallback. */
  c: string;
}
const P_REFS: XidRefs = { n: "p.n", w: "p.w", c: "p.c" };

/**
 * The row's full 64-bit xmin: N minus its age. age() is INT_MAX for raw
 * xmin 1 and 2 (bootstrap, frozen before 9.4), which keep their raw value,
 * and for a row exactly 2^31-1 behind, which falls back to text arithmetic.
 */
export function sourceXminSql(r: XidRefs = P_REFS): string {
  return (
    `CASE WHEN ${AGE} < 2147483647 THEN ${r.n} - (${AGE}::bigint & 4294967295)` +
    ` WHEN ${RAW_XMIN} <= 2 THEN ${RAW_XMIN}` +
    ` ELSE ${r.c} - ((${r.c} - ${RAW_XMIN}) & 4294967295) END`
  );
}

/** Newer than the watermark: at most w behind N. Non-normal xids never are. */
export function isNewSql(r: XidRefs = P_REFS): string {
  return `${AGE} < 2147483647 AND (${AGE}::bigint & 4294967295) <= ${r.w}`;
}

export const SOURCE_XMIN_SQL = sourceXminSql();
export const IS_NEW_SQL = isNewSql();

export const XID_PARAMS_SQL =
  "(SELECT current_setting('xmin_sync.next')::bigint AS n," +
  " current_setting('xmin_sync.window')::bigint AS w," +
  " current_setting('xmin_sync.reference')::bigint AS c OFFSET 0) AS p";

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

export function copyOutSql(spec: ReadSpec): string {
  const cols = spec.columns.map((c) => `t.${quoteIdent(c)}`);
  const from = `${quoteQualified(spec.table)} AS t`;
  const where = spec.range ? rangeSql(spec.range) : [];
  const binary = spec.format === "binary" ? " (FORMAT binary)" : "";
  let select: string;
  if (spec.withoutXmin) {
    select = `SELECT ${cols.join(", ")} FROM ${from}`;
  } else if (!spec.hasXmin) {
    select = `SELECT ${cols.join(", ")}, NULL::bigint AS source_xmin FROM ${from}`;
  } else {
    select = `SELECT ${[...cols, `${SOURCE_XMIN_SQL} AS source_xmin`].join(", ")} FROM ${from} CROSS JOIN ${XID_PARAMS_SQL}`;
    if (spec.onlyNew) where.unshift(IS_NEW_SQL);
  }
  if (spec.cursor) {
    where.unshift(
      `t.${quoteIdent(spec.cursor.column)} >= current_setting('xmin_sync.cursor_from')::${spec.cursor.type}`,
    );
  }
  const filter = where.length > 0 ? ` WHERE ${where.join(" AND ")}` : "";
  return `COPY (${select}${filter}) TO STDOUT${binary}`;
}

/**
 * Binds what copyOutSql reads, in the reader's (read-only, repeatable read)
 * transaction: N from age() (fixing it for the transaction), the window
 * back to the watermark, and the range bounds. Without a watermark the
 * window covers everything age() can tell apart.
 */
export async function bindRead(
  client: pg.Client,
  snapshot: Snapshot,
  watermark: bigint | null,
  range?: ReadRange,
  cursorFrom?: string,
): Promise<void> {
  const { rows } = await client.query<{ a: number }>("SELECT age('3'::xid) AS a");
  const next = nextFromAge(rows[0]!.a, snapshot.xmax);
  const window = watermark === null ? 2147483646n : next - watermark;
  const names = ["xmin_sync.next", "xmin_sync.window", "xmin_sync.reference"];
  const values = [next.toString(), window.toString(), snapshot.xmax.toString()];
  if (cursorFrom !== undefined) {
    names.push("xmin_sync.cursor_from");
    values.push(cursorFrom);
  }
  if (range) {
    const from = range.kind === "ctid" ? range.fromPage : range.from;
    const to = range.kind === "ctid" ? range.toPage : range.to;
    const bound = (v: number | string) => (range.kind === "ctid" ? `(${v},0)` : String(v));
    if (from !== null) {
      names.push("xmin_sync.range_from");
      values.push(bound(from));
    }
    if (to !== null) {
      names.push("xmin_sync.range_to");
      values.push(bound(to));
    }
  }
  await client.query(
    "SELECT set_config(name, value, true) FROM unnest($1::text[], $2::text[]) AS s(name, value)",
    [names, values],
  );
}
