import type pg from "pg";
import { allClosed, connect, describeError } from "../db/connect.js";
import { displayName } from "../db/quote.js";
import { readServerInfo } from "../db/server.js";
import { silentLogger, type Logger } from "../log.js";
import { readSourceTable, XMIN_RELKINDS } from "../source/catalog.js";
import { parseSnapshot } from "../source/snapshot.js";
import { SourceRun } from "../source/run.js";
import { keyNames } from "../db/key.js";
import { resolveKey } from "../source/key.js";
import type { TableSpec } from "../sync/types.js";
import { checkTargetTable, readTargetTable, SOURCE_DELETED_AT } from "../target/ddl.js";
import { lockTargetTable } from "../target/lock.js";
import { readState } from "../target/state.js";
import { recordValidation, type HistoryOptions } from "../target/history.js";
import { deepCompare, type DeepResult, type Difference } from "./deep.js";
import { quoteIdent } from "../db/quote.js";
import { createRepairer } from "./repair.js";
import {
  bindXminStats,
  combineXminStats,
  countPending,
  integrityScore,
  type MaxLag,
  sourceStats,
  targetCount,
  type SourceStats,
  type XminDistribution,
  type XminStatsRow,
} from "./stats.js";

export interface ValidateOptions {
  source: string;
  target: string;
  tables: TableSpec[];
  /** Compare content, not just counts. */
  deep?: boolean;
  /** With deep: re-copy differing rows and remove extra ones. */
  repair?: boolean;
  sampleSize?: number;
  /** Fail when the copy trails by more than this (default: lag never fails). */
  maxLag?: MaxLag;
  logger?: Logger;
  /** Run history retention and who ran it. */
  history?: HistoryOptions;
}

export interface ValidationReport {
  table: string;
  target: string;
  /**
   * What the exit code reflects: no difference among the rows the last
   * sync saw, and lag within maxLag. Rows written since are lag, not failures.
   */
  passed: boolean;
  /** Why it did not pass, one sentence each. */
  failures: string[];
  /** How far the copy trails the source: rows written since the last sync's snapshot, transactions, seconds. */
  lag: {
    rows: number | null;
    transactions: string | null;
    seconds: number | null;
    exceeded: boolean;
  };
  /** Counts agree, no source row is newer than the last run saw, and (deep) no content differs. */
  isSynchronized: boolean;
  watermark: string | null;
  lastRunAt: string | null;
  /** How far the copy trails: transactions between the source's horizon and the watermark, seconds since the last run. */
  syncGap: { transactions: string | null; seconds: number | null };
  sourceCount: number;
  targetCount: number;
  /** Source rows written after the last run's snapshot (null for sources without xmin). */
  pendingRows: number | null;
  xminDistribution: XminDistribution | null;
  integrityScore: number;
  /** With lag: of the differences, those explained by changes since the last sync (every extra row: deleted since, or deletes not propagated). */
  deep?: DeepResult & { lag?: { missing: number; different: number; extra: number } };
  repaired?: { copied: number; deleted: number };
  durationMs: number;
  status: "ok" | "error";
  error?: string;
}

export async function validate(opts: ValidateOptions): Promise<ValidationReport[]> {
  const logger = opts.logger ?? silentLogger;
  const run = await SourceRun.open(opts.source);
  const reports: ValidationReport[] = [];
  try {
    for (const spec of opts.tables) {
      const started = Date.now();
      try {
        reports.push({
          ...(await validateTable(run, opts, spec, logger)),
          durationMs: Date.now() - started,
        });
      } catch (err) {
        logger.error(
          { table: displayName(spec.source), err: describeError(err) },
          "validation failed",
        );
        reports.push({
          table: displayName(spec.source),
          target: displayName(spec.target ?? spec.source),
          passed: false,
          failures: [],
          lag: { rows: null, transactions: null, seconds: null, exceeded: false },
          isSynchronized: false,
          watermark: null,
          lastRunAt: null,
          syncGap: { transactions: null, seconds: null },
          sourceCount: 0,
          targetCount: 0,
          pendingRows: null,
          xminDistribution: null,
          integrityScore: 0,
          durationMs: Date.now() - started,
          status: "error",
          error: describeError(err),
        });
      }
      await recordValidation(opts, spec, reports.at(-1)!);
    }
  } finally {
    await run.close();
    await allClosed();
  }
  return reports;
}

async function validateTable(
  shared: SourceRun,
  opts: ValidateOptions,
  spec: TableSpec,
  logger: Logger,
): Promise<Omit<ValidationReport, "durationMs">> {
  const targetName = spec.target ?? spec.source;
  // A repair takes the table's lock before it reads either side: a sync
  // committing in between would otherwise make its new rows look extra, and
  // the repair would delete them behind the watermark.
  let writer: pg.Client | undefined;
  let own: SourceRun | undefined;
  if (opts.repair) {
    writer = await connect(opts.target, "target");
    try {
      await lockTargetTable(writer, targetName, { wait: false });
      own = await SourceRun.open(opts.source);
    } catch (err) {
      await writer.end().catch(() => undefined);
      throw err;
    }
  }
  const run = own ?? shared;
  const reader = await run.openReader().catch(async (err) => {
    await own?.close();
    await writer?.end().catch(() => undefined);
    throw err;
  });
  // Reads of the target in one snapshot, so every level of a deep compare sees the same rows.
  const targetRead = await connect(opts.target, "target");
  try {
    const table = await readSourceTable(reader, spec.source);
    const key = resolveKey(table, spec).columns;
    const hasXmin = XMIN_RELKINDS.has(table.relkind);
    const existing = await readTargetTable(targetRead, targetName);
    if (!existing)
      throw new Error(`target table ${displayName(targetName)} does not exist; run sync first`);
    checkTargetTable(targetName, existing, table.columns, keyNames(key));
    const softDeletes = existing.columns.has(SOURCE_DELETED_AT);
    if (opts.deep) await checkSameEncoding(reader, targetRead);
    const state = await readState(targetRead, targetName).catch(() => null);
    await targetRead.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");

    const lastRun = state ? parseSnapshot(state.snapshot) : null;
    const ageRows = await targetRead.query<{ s: number | null }>(
      "SELECT extract(epoch FROM now() - $1::timestamptz)::int AS s",
      [state?.lastRunAt ?? null],
    );
    // A deep validation takes its counts and xmin figures from its first
    // bucket scan: the source is read once, not twice.
    let src: SourceStats | undefined;
    let dstCount: number | undefined;
    if (!opts.deep) {
      [src, dstCount] = await Promise.all([
        sourceStats(reader, spec.source, hasXmin, run.snapshot, lastRun),
        targetCount(targetRead, targetName, softDeletes),
      ]);
    }
    const binding =
      opts.deep && hasXmin ? await bindXminStats(reader, run.snapshot, lastRun) : undefined;
    let deep: ValidationReport["deep"];
    let repaired: { copied: number; deleted: number } | undefined;
    // Differences among rows written since the last sync are lag: told apart
    // on a connection of their own in this snapshot (the reader's is busy
    // streaming the comparison).
    const lagReader = opts.deep && binding && lastRun ? await run.openReader() : undefined;
    // Its own binding: age() counts back from the transaction counter as its
    // transaction first reads it, which moves on under a busy source.
    const lagBinding = lagReader
      ? await bindXminStats(lagReader, run.snapshot, lastRun)
      : undefined;
    const lag = { missing: 0, different: 0, extra: 0 };
    const countLag = async (c: pg.Client, batch: Difference[]) => {
      for (const kind of ["missing", "different"] as const) {
        const keys = batch.filter((d) => d.kind === kind).map((d) => d.key);
        lag[kind] += await countPending(c, spec.source, key, keys, lagBinding!);
      }
      lag.extra += batch.filter((d) => d.kind === "extra").length;
    };
    if (opts.deep) {
      const columns = table.columns.map((c) => c.name);
      let repairer: Awaited<ReturnType<typeof createRepairer>> | undefined;
      if (writer) {
        repairer = await createRepairer({
          sourceUrl: opts.source,
          source: table,
          hasXmin,
          target: writer,
          targetServer: await readServerInfo(writer),
          targetName,
          targetOid: existing.oid,
          key,
          softDeletes,
        });
      }
      try {
        deep = await deepCompare(
          reader,
          targetRead,
          { table: spec.source, columns, key, ...(binding ? { xminStats: binding } : {}) },
          {
            table: targetName,
            columns,
            key,
            ...(softDeletes ? { filter: `t.${quoteIdent(SOURCE_DELETED_AT)} IS NULL` } : {}),
          },
          table.estimatedRows,
          {
            onFirstLevel: (sourceRows, targetRows) => {
              const count = (rows: Record<string, unknown>[]) =>
                rows.reduce((a, r) => a + Number(r.n), 0);
              src = binding
                ? combineXminStats(sourceRows as unknown as XminStatsRow[], binding.next)
                : { count: count(sourceRows), pending: null, xminDistribution: null };
              dstCount = count(targetRows);
            },
            sampleSize: opts.sampleSize ?? 10,
            log: (fields, msg) => logger.debug({ table: displayName(spec.source), ...fields }, msg),
            ...(repairer || lagReader
              ? {
                  onDifferences: async (batch: Difference[]) => {
                    if (lagReader) await countLag(lagReader, batch);
                    await repairer?.apply(batch);
                  },
                }
              : {}),
          },
        );
        if (repairer) repaired = { ...repairer.counts };
        if (lagReader) deep = { ...deep, lag };
      } finally {
        await repairer?.close();
        if (lagReader) await run.closeReader(lagReader);
      }
      logger.info(
        { table: displayName(spec.source), ...deep, samples: undefined },
        "deep comparison done",
      );
    }

    if (!src || dstCount === undefined) throw new Error("validation read no counts");
    const differences = deep ? deep.missing + deep.extra + deep.different : null;
    const pending = src.pending;
    const gap = {
      transactions: state?.watermark != null ? run.snapshot.xmin - state.watermark : null,
      seconds: ageRows.rows[0]?.s ?? null,
    };
    const failures = judge({
      sourceCount: src.count,
      targetCount: dstCount,
      // Without a stored snapshot nothing can be told apart as lag.
      pending: lastRun ? pending : null,
      deep,
      synced: state !== null,
    });
    const exceeded = opts.maxLag ? lagExceeded(opts.maxLag, gap) : null;
    if (exceeded) failures.push(exceeded);
    return {
      table: displayName(spec.source),
      target: displayName(targetName),
      passed: failures.length === 0,
      failures,
      lag: {
        rows: lastRun ? pending : null,
        transactions: gap.transactions?.toString() ?? null,
        seconds: gap.seconds,
        exceeded: exceeded !== null,
      },
      isSynchronized: src.count === dstCount && (pending ?? 0) === 0 && (differences ?? 0) === 0,
      watermark: state?.watermark?.toString() ?? null,
      lastRunAt: state?.lastRunAt.toISOString() ?? null,
      syncGap: { transactions: gap.transactions?.toString() ?? null, seconds: gap.seconds },
      sourceCount: src.count,
      targetCount: dstCount,
      pendingRows: pending,
      xminDistribution: src.xminDistribution,
      integrityScore: integrityScore({
        sourceCount: src.count,
        targetCount: dstCount,
        pending,
        differences,
      }),
      ...(deep ? { deep } : {}),
      ...(repaired ? { repaired } : {}),
      status: "ok",
    };
  } finally {
    await run.closeReader(reader);
    await targetRead.query("ROLLBACK").catch(() => undefined);
    await targetRead.end().catch(() => undefined);
    await writer?.end().catch(() => undefined);
    await own?.close();
  }
}

/**
 * Differences among the rows the last sync saw: what makes validate fail.
 * Rows written on the source since its snapshot (pending) are lag: a
 * source row the target lacks, or has older, is a failure only when the
 * last sync saw it (deep tells them apart row by row); a target row the
 * source no longer has was deleted since (or its delete is not propagated,
 * with deletes: ignore), so is lag too. Without --deep, only a shortfall
 * the rows written since cannot explain is a failure. Sources without xmin
 * (timestamp or full mode) cannot tell lag apart: every difference counts.
 */
function judge(p: {
  sourceCount: number;
  targetCount: number;
  pending: number | null;
  deep: ValidationReport["deep"];
  synced: boolean;
}): string[] {
  const failures: string[] = [];
  if (!p.synced) failures.push("no sync of this table is recorded on the target");
  if (p.pending === null) {
    const d = p.deep;
    if (d && d.missing + d.extra + d.different > 0)
      failures.push(`${d.missing} rows missing, ${d.extra} extra, ${d.different} different`);
    else if (p.sourceCount !== p.targetCount)
      failures.push(`the source has ${p.sourceCount} rows, the target ${p.targetCount}`);
    return failures;
  }
  if (p.deep?.lag) {
    const missing = p.deep.missing - p.deep.lag.missing;
    const different = p.deep.different - p.deep.lag.different;
    if (missing + different > 0) {
      failures.push(
        `${missing + different} rows the last sync saw differ on the target (${missing} missing, ${different} different)`,
      );
    }
    return failures;
  }
  const settled = p.sourceCount - p.pending;
  if (p.targetCount < settled) {
    failures.push(
      `the target has ${p.targetCount} rows, fewer than the ${settled} source rows the last sync saw`,
    );
  }
  return failures;
}

/** Why the lag is beyond maxLag, or null. Unknown lag (no sync recorded, no xmin watermark) fails. */
function lagExceeded(
  max: MaxLag,
  gap: { transactions: bigint | null; seconds: number | null },
): string | null {
  if ("transactions" in max) {
    if (gap.transactions === null)
      return "lag in transactions unknown (no xmin watermark stored): --max-lag cannot be checked";
    return gap.transactions > max.transactions
      ? `lag of ${gap.transactions} transactions is over --max-lag ${max.transactions}`
      : null;
  }
  if (gap.seconds === null) return "time since the last sync unknown: --max-lag cannot be checked";
  return gap.seconds > max.seconds
    ? `${gap.seconds}s since the last sync is over --max-lag ${max.seconds}s`
    : null;
}

/**
 * Deep comparison hashes text as the servers store it: the same row in two
 * encodings would hash differently and show as a difference.
 */
async function checkSameEncoding(source: pg.Client, target: pg.Client): Promise<void> {
  const q = "SELECT current_setting('server_encoding') AS e";
  const [a, b] = await Promise.all([
    source.query<{ e: string }>(q),
    target.query<{ e: string }>(q),
  ]);
  if (a.rows[0]!.e !== b.rows[0]!.e) {
    throw new Error(
      `--deep needs both databases in one encoding (source ${a.rows[0]!.e}, target ${b.rows[0]!.e})`,
    );
  }
}
