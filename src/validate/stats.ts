import type pg from "pg";
import { quoteIdent, quoteQualified, type QualifiedName } from "../db/quote.js";
import { nextFromAge } from "../source/xid.js";
import type { Snapshot } from "../source/snapshot.js";
import { parseDuration } from "../config/duration.js";
import type { KeyColumn } from "../db/key.js";
import { InputError } from "../input-error.js";
import { SOURCE_DELETED_AT } from "../target/ddl.js";
import { keyMatchSql } from "./repair.js";

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
 * Per row, from one age() call: d, its distance behind N (N - full xmin,
 * 2^31-1 for raw xmin 1 and 2), whether the last run could not have seen it
 * (at or past its snapshot's xmax: d <= w; or running then: in xip), and
 * its raw xmin, which only the aggregates for non-normal rows read. Working
 * on d rather than the full xmin keeps this to a fifth of the scan's cost.
 */
export function xminStatsRow(p: XminStatsParams): string {
  const d = "(age(t.xmin)::bigint & 4294967295)";
  return `${d} AS d, ${d} <= ${p.w} OR ${p.n} - ${d} = ANY(${p.xip}) AS pending, t.xmin::text::bigint AS raw`;
}

/** SQL for the values xminStatsRow reads: N, the window w, the last run's running xids. */
export interface XminStatsParams {
  n: string;
  w: string;
  xip: string;
}

/**
 * Binds for xminStatsRow, as the bind parameters $first.. of a plain query
 * (a join to set_config'd values would keep the planner from running the
 * scan in parallel).
 */
export function xminStatsParams(first: number): XminStatsParams {
  return { n: `$${first}::bigint`, w: `$${first + 1}::bigint`, xip: `$${first + 2}::bigint[]` };
}

/** Values for xminStatsParams, in order. */
export interface XminStatsBinding {
  next: bigint;
  values: string[];
}

/** Sums over XMIN_STATS_ROW that combine across groups (see combineXminStats). */
const NORMAL = "FILTER (WHERE x.d < 2147483647)";
export const XMIN_STATS_AGGREGATES =
  `count(*) ${NORMAL} AS normal, min(x.d) ${NORMAL} AS dmin, max(x.d) ${NORMAL} AS dmax,` +
  ` sum(x.d::float8) ${NORMAL} AS dsum, sum(x.d::float8 * x.d::float8) ${NORMAL} AS dsq,` +
  " min(x.raw) FILTER (WHERE x.d = 2147483647) AS rawmin, max(x.raw) FILTER (WHERE x.d = 2147483647) AS rawmax," +
  " count(*) FILTER (WHERE x.pending)::bigint AS pending";

export interface XminStatsRow {
  n: string | number;
  normal: string;
  dmin: string | null;
  dmax: string | null;
  dsum: number | null;
  dsq: number | null;
  rawmin: string | null;
  rawmax: string | null;
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
    values: [next.toString(), window.toString(), `{${(lastRun?.xip ?? []).join(",")}}`],
  };
}

/**
 * Count, pending rows and the xmin distribution from per-group sums. Mean
 * and deviation are over rows with a normal xmin (raw 1 and 2, frozen
 * before 9.4, would swamp them); min and max include those.
 */
export function combineXminStats(rows: XminStatsRow[], next: bigint): SourceStats {
  let count = 0;
  let normal = 0;
  let pending = 0;
  let dsum = 0;
  let dsq = 0;
  let min: bigint | null = null;
  let max: bigint | null = null;
  const see = (v: bigint) => {
    if (min === null || v < min) min = v;
    if (max === null || v > max) max = v;
  };
  for (const r of rows) {
    count += Number(r.n);
    normal += Number(r.normal);
    pending += Number(r.pending);
    dsum += r.dsum ?? 0;
    dsq += r.dsq ?? 0;
    if (r.dmax !== null) see(next - BigInt(r.dmax));
    if (r.dmin !== null) see(next - BigInt(r.dmin));
    if (r.rawmin !== null) see(BigInt(r.rawmin));
    if (r.rawmax !== null) see(BigInt(r.rawmax));
  }
  const meanAge = normal > 0 ? dsum / normal : 0;
  const variance = normal > 0 ? Math.max(0, dsq / normal - meanAge * meanAge) : 0;
  const lo = min as bigint | null;
  const hi = max as bigint | null;
  return {
    count,
    pending,
    xminDistribution: {
      count,
      min: lo?.toString() ?? null,
      max: hi?.toString() ?? null,
      avg: normal > 0 ? (next - BigInt(Math.round(meanAge))).toString() : null,
      stddev: normal > 0 ? Math.round(Math.sqrt(variance)).toString() : null,
      range: lo !== null && hi !== null ? (hi - lo).toString() : null,
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
       FROM (SELECT ${xminStatsRow(p)} FROM ${quoteQualified(table)} AS t) AS x`,
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

/**
 * Of the rows a deep comparison found missing from the target or different
 * there (keys as text, as deepCompare gives them), how many were written
 * on the source since the last run's snapshot: lag, which the next sync
 * brings, rather than a difference among rows that run saw. Read on a
 * connection in the validation's source snapshot; one query per batch.
 */
export async function countPending(
  client: pg.Client,
  table: QualifiedName,
  key: KeyColumn[],
  keys: (string | null)[][],
  binding: XminStatsBinding,
): Promise<number> {
  if (keys.length === 0) return 0;
  const p = xminStatsParams(2);
  const { rows } = await client.query<{ n: string }>(
    `SELECT count(*) FILTER (WHERE x.pending)::bigint AS n
       FROM (SELECT ${xminStatsRow(p)} FROM ${quoteQualified(table)} AS t
              WHERE ${keyMatchSql(key, "$1::jsonb")}) AS x`,
    [JSON.stringify(keys), ...binding.values],
  );
  return Number(rows[0]!.n);
}

/** How far behind a copy may be before validate fails: transactions, or seconds since the last run. */
export type MaxLag = { transactions: bigint } | { seconds: number };

/** `10000` (transactions) or a duration: `90s`, `15m`, `2h`, `1d`. */
export function parseMaxLag(text: string): MaxLag {
  if (/^\d+$/.test(text)) return { transactions: BigInt(text) };
  const seconds = parseDuration(text);
  if (seconds === null) {
    throw new InputError(
      `--max-lag takes a number of transactions (10000) or a duration (90s, 15m, 2h, 1d), not ${JSON.stringify(text)}`,
    );
  }
  return { seconds };
}
