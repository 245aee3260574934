import type pg from "pg";
import { quoteIdent, quoteQualified } from "../db/quote.js";
import type { ServerInfo } from "../db/server.js";
import type { SourceTable } from "./catalog.js";
import type { ReadRange } from "./read.js";

const MIN_PART_BYTES = 64 * 1024 * 1024;

/**
 * Splits a table into parts that parallel readers copy at once, all in the
 * run's snapshot. Sized by the table's row estimate and bytes (heap and
 * TOAST): no part smaller than `minRows` rows or 64 MB, at most two per worker (so
 * tables of one run can share workers evenly). TID ranges on PostgreSQL 14+
 * (each reader scans only its pages); an integer key's value range before
 * that; otherwise one stream. The last part is open-ended: rows on pages
 * added after we measured are still read.
 */
export async function planChunks(
  client: pg.Client,
  server: ServerInfo,
  table: SourceTable,
  opts: { workers: number; minRows: number; key: string[] },
): Promise<(ReadRange | undefined)[]> {
  // By rows, and by bytes (heap and TOAST): a table of few, wide rows is
  // worth splitting too. A part holds at least minRows rows or 64 MB.
  const byRows = Math.floor(table.estimatedRows / Math.max(1, opts.minRows));
  const byBytes = Math.floor(table.bytes / MIN_PART_BYTES);
  const wanted = Math.min(opts.workers * 2, Math.max(byRows, byBytes));
  if (opts.workers < 2 || wanted < 2) return [undefined];

  if (
    server.hasTidRangeScan &&
    (table.relkind === "r" || table.relkind === "m") &&
    table.pages >= wanted
  ) {
    const per = Math.ceil(table.pages / wanted);
    const parts: ReadRange[] = [];
    for (let from = 0; from < table.pages; from += per) {
      const to = from + per >= table.pages ? null : from + per;
      parts.push({ kind: "ctid", fromPage: from === 0 ? null : from, toPage: to });
    }
    return parts;
  }

  const keyColumn =
    opts.key.length === 1 ? table.columns.find((c) => c.name === opts.key[0]) : undefined;
  // Only a NOT NULL key: a range condition never matches NULL, so rows with
  // a NULL key (possible with a user-given key) would be skipped.
  if (keyColumn?.integer && keyColumn.notNull) {
    const { rows: mm } = await client.query<{ lo: string | null; hi: string | null }>(
      `SELECT min(${quoteIdent(keyColumn.name)})::text AS lo, max(${quoteIdent(keyColumn.name)})::text AS hi FROM ${quoteQualified(table.name)}`,
    );
    if (mm[0]?.lo == null || mm[0]?.hi == null) return [undefined];
    const lo = BigInt(mm[0].lo);
    const hi = BigInt(mm[0].hi);
    const span = hi - lo + 1n;
    if (span < BigInt(wanted)) return [undefined];
    const step = span / BigInt(wanted);
    const parts: ReadRange[] = [];
    for (let i = 0; i < wanted; i++) {
      const from = i === 0 ? null : (lo + step * BigInt(i)).toString();
      const to = i === wanted - 1 ? null : (lo + step * BigInt(i + 1)).toString();
      parts.push({ kind: "key", column: keyColumn.name, from, to });
    }
    return parts;
  }
  return [undefined];
}
