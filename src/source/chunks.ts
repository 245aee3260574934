import type pg from "pg";
import { quoteIdent, quoteQualified } from "../db/quote.js";
import type { ServerInfo } from "../db/server.js";
import type { Leaf, SourceTable } from "./catalog.js";
import { cursorBound, type ReadPart, type ReadRange, type RowFilter } from "./read.js";

const MIN_PART_BYTES = 64 * 1024 * 1024;

/**
 * Splits a table into parts that parallel readers copy at once, all in the
 * run's snapshot: one or more per leaf (a partitioned table's size is its
 * leaves'). Sized by row estimate and bytes (heap and TOAST): no part
 * smaller than `minRows` rows or 64 MB, at most two per worker (so tables of
 * one run share workers evenly). TID ranges on PostgreSQL 14+ (each reader
 * scans only its pages); an integer key's value range before that;
 * otherwise one stream per leaf. The last part of a leaf is open-ended: rows
 * on pages added after we measured are still read.
 *
 * Leaves our role may not read by name (a grant on the parent only) are
 * read through the root in one stream.
 */
export async function planParts(
  client: pg.Client,
  server: ServerInfo,
  table: SourceTable,
  opts: { workers: number; minRows: number; key: string[]; newLeaves: Set<string> },
): Promise<ReadPart[]> {
  const isTree = table.leaves.length !== 1 || table.leaves[0]!.oid !== table.oid;
  if (!isTree || !table.leaves.every((l) => l.canSelect)) {
    const only = table.leaves[0] ?? null;
    const newOids = table.leaves.filter((l) => opts.newLeaves.has(l.oid)).map((l) => l.oid);
    const whole: ReadPart = {
      relation: table.name,
      only: false,
      ...(newOids.length > 0 ? { allRowsOf: newOids } : {}),
    };
    if (isTree || !only) return [whole];
    const ranges = await splitLeaf(client, server, table, only, opts.workers * 2, opts);
    return ranges.map((range) => ({ ...whole, ...(range ? { range } : {}) }));
  }
  // Parts in proportion to each leaf's share of the table, at least one each.
  const budget = opts.workers * 2;
  const parts: ReadPart[] = [];
  for (const leaf of table.leaves) {
    const ranges = await splitLeaf(client, server, table, leaf, shareOf(table, leaf, budget), opts);
    for (const range of ranges) {
      parts.push({
        relation: leaf.name,
        only: true,
        ...(range ? { range } : {}),
        ...(opts.newLeaves.has(leaf.oid) ? { allRows: true } : {}),
      });
    }
  }
  return parts;
}

/**
 * How many parts planParts will likely make of a table, from the catalog's
 * estimates alone (it may make fewer: a leaf with too few pages, a key with
 * too narrow a range): how many readers a copy can use at once.
 */
export function likelyParts(
  table: SourceTable,
  opts: { workers: number; minRows: number },
): number {
  const budget = opts.workers * 2;
  const parts = table.leaves.reduce(
    (n, leaf) => n + Math.max(1, partsOf(leaf, shareOf(table, leaf, budget), opts)),
    0,
  );
  return Math.max(1, Math.min(budget, parts));
}

/** A leaf's share of a table's part budget, by its bytes: at least one part. */
function shareOf(table: SourceTable, leaf: Leaf, budget: number): number {
  return table.bytes > 0 ? Math.max(1, Math.ceil((budget * leaf.bytes) / table.bytes)) : 1;
}

/** Parts a leaf is worth splitting into: no part under `minRows` rows or 64 MB, at most `maxParts`. */
function partsOf(leaf: Leaf, maxParts: number, opts: { workers: number; minRows: number }): number {
  // Views and foreign tables are read in one stream: a split would run their query once per part.
  if (opts.workers < 2 || (leaf.relkind !== "r" && leaf.relkind !== "m")) return 1;
  const byRows = Math.floor(leaf.estimatedRows / Math.max(1, opts.minRows));
  const byBytes = Math.floor(leaf.bytes / MIN_PART_BYTES);
  return Math.min(maxParts, Math.max(byRows, byBytes));
}

async function splitLeaf(
  client: pg.Client,
  server: ServerInfo,
  table: SourceTable,
  leaf: Leaf,
  maxParts: number,
  opts: { workers: number; minRows: number; key: string[] },
): Promise<(ReadRange | undefined)[]> {
  const wanted = partsOf(leaf, maxParts, opts);
  if (wanted < 2) return [undefined];
  if (server.hasTidRangeScan && leaf.pages >= wanted) {
    const per = Math.ceil(leaf.pages / wanted);
    const parts: ReadRange[] = [];
    for (let from = 0; from < leaf.pages; from += per) {
      const to = from + per >= leaf.pages ? null : from + per;
      parts.push({ kind: "ctid", fromPage: from === 0 ? null : from, toPage: to });
    }
    return parts;
  }

  const keyColumn =
    opts.key.length === 1 ? table.columns.find((c) => c.name === opts.key[0]) : undefined;
  // Only a NOT NULL key: a range condition never matches NULL, so rows with
  // a NULL key (possible with a user-given key) would be skipped.
  if (keyColumn?.integer && keyColumn.notNull) {
    const col = quoteIdent(keyColumn.name);
    const { rows: mm } = await client.query<{ lo: string | null; hi: string | null }>(
      `SELECT min(${col})::text AS lo, max(${col})::text AS hi FROM ONLY ${quoteQualified(leaf.name)}`,
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

/**
 * The parts of a read every run makes (changed rows, the key set) that
 * leave the source's buffer cache as it was. A TID range scan reads
 * through shared_buffers as an index scan does: every page it reads takes
 * a buffer from what the source's own work keeps cached. A plain
 * sequential scan of a relation bigger than a quarter of shared_buffers
 * reads through a small ring of buffers instead. So a leaf with more pages
 * than shared_buffers, which the cache could not hold anyway, is read in
 * one part, by a sequential scan even where the planner would take an
 * index-only scan (a key set): a run every few minutes does not sweep a
 * production server's cache each time. On a server without huge pages the
 * one scan is also the faster read (docs/performance.md). A first load
 * keeps its parallel parts: it happens once. The size is a leaf's: a
 * partition tree of leaves the cache can each hold is still read in parts.
 */
export function spareSourceCache(
  server: ServerInfo,
  table: SourceTable,
  parts: ReadPart[],
): ReadPart[] {
  const big = new Set(
    table.leaves
      .filter((l) => l.pages > server.sharedBufferPages)
      .map((l) => quoteQualified(l.name)),
  );
  const out: ReadPart[] = [];
  const whole = new Set<string>();
  for (const part of parts) {
    const relation = quoteQualified(part.relation);
    if (!big.has(relation)) {
      out.push(part);
    } else if (!whole.has(relation)) {
      // A leaf's parts differ only in their range (TID or key; the first
      // and last are open-ended), so one part without it reads them all.
      whole.add(relation);
      const { range: _range, ...rest } = part;
      out.push({ ...rest, sequential: true });
    }
  }
  return out;
}

/**
 * The parts for a cursor's read when its window is narrow: one part, read
 * through an index led by the cursor column, instead of every page of the
 * table in parallel parts. The read's bound is a setting the planner cannot
 * see, so it would scan the whole table; asked here with the bound as a
 * value (EXPLAIN, which reads no rows), it says whether it would use such
 * an index for the window. Only a whole (not partial) btree index counts:
 * the read itself, with the bound unknown at plan time, can use no other.
 * Null when the read stays as planned: a partition tree, a table read in
 * one part anyway, or a window the planner would scan for.
 */
export async function narrowCursorRead(
  client: pg.Client,
  table: SourceTable,
  filter: Extract<RowFilter, { kind: "cursor" }>,
  parts: ReadPart[],
): Promise<ReadPart[] | null> {
  const leaf = table.leaves[0];
  if (parts.length < 2 || table.leaves.length !== 1 || leaf?.oid !== table.oid) return null;
  // A table whose storage was replaced is read whole (allRowsOf), not by its cursor.
  if (parts.some((p) => p.allRows || p.allRowsOf?.length)) return null;
  const { rows: usable } = await client.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_index i
       JOIN pg_class c ON c.oid = i.indexrelid
       JOIN pg_am am ON am.oid = c.relam
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
      WHERE i.indrelid = $1::oid AND a.attname = $2 AND am.amname = 'btree'
        AND i.indisvalid AND i.indpred IS NULL`,
    [table.oid, filter.column],
  );
  if (usable.length === 0) return null;
  const { rows } = await client.query<{ "QUERY PLAN": [{ Plan: PlanNode }] }>(
    `EXPLAIN (FORMAT JSON) SELECT * FROM ONLY ${quoteQualified(table.name)}
      WHERE ${quoteIdent(filter.column)} >= ${cursorBound(filter.type, "$1", "$2")}`,
    [filter.last, filter.lookback],
  );
  const scan = rows[0]!["QUERY PLAN"][0].Plan;
  // A bitmap scan names its index on the node below.
  const index = scan["Index Name"] ?? scan.Plans?.[0]?.["Index Name"];
  if (!INDEX_SCANS.has(scan["Node Type"]) || !usable.some((u) => u.name === index)) return null;
  return [{ relation: table.name, only: false, byIndex: true }];
}

interface PlanNode {
  "Node Type": string;
  "Index Name"?: string;
  Plans?: PlanNode[];
}

const INDEX_SCANS = new Set(["Index Scan", "Index Only Scan", "Bitmap Heap Scan"]);
