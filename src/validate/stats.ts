import type pg from "pg";
import { quoteIdent, quoteQualified, type QualifiedName } from "../db/quote.js";
import { bindRead, IS_NEW_SQL, SOURCE_XMIN_SQL, XID_PARAMS_SQL } from "../source/read.js";
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
 * One scan of the source in the caller's snapshot: row count, the spread of
 * full 64-bit xmins, and how many rows are newer than what the last run saw
 * (xid at or past its snapshot's xmax, or running when it was taken).
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
  // Rows at or past the last run's xmax; all rows when there was no run.
  await bindRead(client, now, lastRun ? lastRun.xmax : null);
  const { rows } = await client.query(
    `SELECT count(*)::bigint AS n, min(s.fx)::text AS min, max(s.fx)::text AS max,
            round(avg(s.fx))::text AS avg, round(stddev_pop(s.fx))::text AS stddev,
            (max(s.fx) - min(s.fx))::text AS range,
            count(*) FILTER (WHERE s.is_new OR s.fx = ANY($1::bigint[]))::bigint AS pending
       FROM (SELECT ${SOURCE_XMIN_SQL} AS fx, ${IS_NEW_SQL} AS is_new
               FROM ${quoteQualified(table)} AS t CROSS JOIN ${XID_PARAMS_SQL}) AS s`,
    [lastRun ? lastRun.xip.map(String) : []],
  );
  const r = rows[0];
  return {
    count: Number(r.n),
    pending: Number(r.pending),
    xminDistribution: {
      count: Number(r.n),
      min: r.min,
      max: r.max,
      avg: r.avg,
      stddev: r.stddev,
      range: r.range,
    },
  };
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
 * integrityScore, from 0 (nothing matches) to 1 (an exact, current copy):
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
  return Math.round(counts * freshness * content * 10000) / 10000;
}
