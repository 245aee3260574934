import type pg from "pg";
import { quoteIdent, quoteQualified, type QualifiedName } from "../db/quote.js";
import { isNewSql, sourceXminSql, type XidRefs } from "../source/read.js";
import { nextFromAge } from "../source/xid.js";
import type { Snapshot } from "../source/snapshot.js";
import { SOURCE_DELETED_AT } from "../target/ddl.js";

export interface XminDistribution {
  count: number;
  min: string | null;
  max: string | null;
  avg: string | null;
  stddev: string | null;
  range: string | null;
}

export interface SourceStats {
  count: number;
  /** Rows the last run could not have seen: written after its snapshot. Null for sources without xmin. */
  pending: number | null;
  xminDistribution: XminDistribution | null;
}

/**
 * Per row: its full xmin (fx), its distance behind N (d, small enough for
 * float8 sums of squares), and whether the last run could not have seen it
 * (xid at or past its snapshot's xmax, or running then: xmin_sync.xip).
 */
export function xminStatsRow(r: XidRefs, xip: string): string {
  const fx = sourceXminSql(r);
  return `${fx} AS fx, ${r.n} - (${fx}) AS d, (${isNewSql(r)}) OR (${fx}) = ANY(${xip}) AS pending`;
}

/**
 * Binds for xminStatsRow, as the bind parameters $first.. of a plain query
 * (a join to set_config'd values would keep the planner from running the
 * scan in parallel).
 */
export function xminStatsParams(first: number): { refs: XidRefs; xip: string } {
  return {
    refs: { n: `$${first}::bigint`, w: `$${first + 1}::bigint`, c: `$${first + 2}::bigint` },
    xip: `$${first + 3}::bigint[]`,
  };
}

/** Values for xminStatsParams, in order. */
export interface XminStatsBinding {
  next: bigint;
  values: string[];
}

/** Sums over XMIN_STATS_ROW that combine across groups (see combineXminStats). */
export const XMIN_STATS_AGGREGATES =
  "min(x.fx)::text AS fmin, max(x.fx)::text AS fmax, sum(x.d::float8) AS dsum," +
  " sum(x.d::float8 * x.d::float8) AS dsq, count(*) FILTER (WHERE x.pending)::bigint AS pending";

export interface XminStatsRow {
  n: string | number;
  fmin: string | null;
  fmax: string | null;
  dsum: number | null;
  dsq: number | null;
  pending: string;
}

/**
 * The values xminStatsRow needs, read in the caller's transaction: N (fixed
 * by the first age() call), the window back to the last run's xmax (all
 * rows when there was no run), and the xids running at the last run.
 */
export async function bindXminStats(
  client: pg.Client,
  now: Snapshot,
  lastRun: Snapshot | null,
): Promise<XminStatsBinding> {
  const { rows } = await client.query<{ a: number }>("SELECT age('3'::xid) AS a");
  const next = nextFromAge(rows[0]!.a, now.xmax);
  const window = lastRun ? next - lastRun.xmax : 2147483646n;
  return {
    next,
    values: [
      next.toString(),
      window.toString(),
      now.xmax.toString(),
      `{${(lastRun?.xip ?? []).join(",")}}`,
    ],
  };
}

/** Count, pending rows and the xmin distribution from per-group sums. */
export function combineXminStats(rows: XminStatsRow[], next: bigint): SourceStats {
  let count = 0;
  let pending = 0;
  let dsum = 0;
  let dsq = 0;
  let min: bigint | null = null;
  let max: bigint | null = null;
  for (const r of rows) {
    count += Number(r.n);
    pending += Number(r.pending);
    dsum += r.dsum ?? 0;
    dsq += r.dsq ?? 0;
    if (r.fmin !== null && (min === null || BigInt(r.fmin) < min)) min = BigInt(r.fmin);
    if (r.fmax !== null && (max === null || BigInt(r.fmax) > max)) max = BigInt(r.fmax);
  }
  const meanAge = count > 0 ? dsum / count : 0;
  const variance = count > 0 ? Math.max(0, dsq / count - meanAge * meanAge) : 0;
  return {
    count,
    pending,
    xminDistribution: {
      count,
      min: min?.toString() ?? null,
      max: max?.toString() ?? null,
      avg: count > 0 ? (next - BigInt(Math.round(meanAge))).toString() : null,
      stddev: count > 0 ? Math.round(Math.sqrt(variance)).toString() : null,
      range: min !== null && max !== null ? (max - min).toString() : null,
    },
  };
}

/**
 * One scan of the source in the caller's snapshot: row count, the spread of
 * full 64-bit xmins, and how many rows are newer than what the last run saw.
 * (A deep validation gets the same figures from its first bucket scan.)
 */
export async function sourceStats(
  client: pg.Client,
  table: QualifiedName,
  hasXmin: boolean,
  now: Snapshot,
  lastRun: Snapshot | null,
): Promise<SourceStats> {
  if (!hasXmin) {
    const { rows } = await client.query<{ n: string }>(
      `SELECT count(*)::bigint AS n FROM ${quoteQualified(table)}`,
    );
    return { count: Number(rows[0]!.n), pending: null, xminDistribution: null };
  }
  const binding = await bindXminStats(client, now, lastRun);
  const p = xminStatsParams(1);
  const { rows } = await client.query<XminStatsRow>(
    `SELECT count(*)::bigint AS n, ${XMIN_STATS_AGGREGATES}
       FROM (SELECT ${xminStatsRow(p.refs, p.xip)} FROM ${quoteQualified(table)} AS t) AS x`,
    binding.values,
  );
  return combineXminStats(rows, binding.next);
}

/** Rows in the target copy, not counting soft-deleted ones. */
export async function targetCount(
  client: pg.Client,
  table: QualifiedName,
  softDeletes: boolean,
): Promise<number> {
  const where = softDeletes ? ` WHERE ${quoteIdent(SOURCE_DELETED_AT)} IS NULL` : "";
  const { rows } = await client.query<{ n: string }>(
    `SELECT count(*)::bigint AS n FROM ${quoteQualified(table)}${where}`,
  );
  return Number(rows[0]!.n);
}

/**
 * integrityScore, from 0 (nothing matches) to 1 (an exact, current copy),
 * rounded down to 6 decimals:
 *   counts    = min(source, target) / max(source, target)      (1 when both are 0)
 *   freshness = 1 - pending / source                            (1 when source is 0)
 *   content   = 1 - (missing + extra + different) / max(source, target)   (deep only)
 *   score     = counts * freshness * content
 */
export function integrityScore(p: {
  sourceCount: number;
  targetCount: number;
  pending: number | null;
  differences: number | null;
}): number {
  const larger = Math.max(p.sourceCount, p.targetCount);
  const counts = larger === 0 ? 1 : Math.min(p.sourceCount, p.targetCount) / larger;
  const freshness =
    p.sourceCount === 0 || p.pending === null
      ? 1
      : 1 - Math.min(p.pending, p.sourceCount) / p.sourceCount;
  const content =
    p.differences === null || larger === 0 ? 1 : 1 - Math.min(p.differences, larger) / larger;
  // Floored, so a copy with any difference never shows as 1.
  return Math.floor(counts * freshness * content * 1e6) / 1e6;
}
