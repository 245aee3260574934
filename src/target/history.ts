import { hostname } from "node:os";
import pLimit from "p-limit";
import type pg from "pg";
import { parseDuration } from "../config/duration.js";
import { connect, describeError } from "../db/connect.js";
import { displayName, type QualifiedName } from "../db/quote.js";
import { silentLogger, type Logger } from "../log.js";
import type { TableResult, TableSpec } from "../sync/types.js";
import type { ValidationReport } from "../validate/run.js";
import { ensureProjectSchema } from "./project.js";

/** Run history settings, from the config (`historyRetention`) or the caller. */
export interface HistoryOptions {
  /** How long a run stays in the history: a duration like 30d (the default), 12h. */
  retention?: string | undefined;
  /** What ran it, recorded with host and pid: "cli", "worker"; default "library". */
  process?: string | undefined;
}

export const DEFAULT_RETENTION = "30d";

/** A retention duration in seconds; throws on anything else (the config schema checks it first). */
export function retentionSeconds(retention: string = DEFAULT_RETENTION): number {
  const seconds = parseDuration(retention);
  if (seconds === null)
    throw new Error(
      `historyRetention: expected a duration like 30d, got ${JSON.stringify(retention)}`,
    );
  return seconds;
}

interface Entry {
  kind: "sync" | "validate";
  target: QualifiedName;
  source: string;
  durationMs: number;
  mode: string | null;
  reason: string | null;
  rows: { copied: number; inserted: number; updated: number; deleted: number } | null;
  watermarkBefore: string | null;
  watermarkAfter: string | null;
  status: string;
  error: string | null;
  integrityScore: number | null;
  report: unknown;
}

interface Caller {
  target: string;
  logger?: Logger | undefined;
  history?: HistoryOptions | undefined;
}

/**
 * Appends a table's sync result to the history and returns it unchanged.
 * Never throws: a history that cannot be written must not fail the sync.
 */
export async function recordRun(
  opts: Caller,
  spec: TableSpec,
  r: TableResult,
  client?: pg.Client,
): Promise<TableResult> {
  await append(
    opts,
    {
      kind: "sync",
      target: spec.target ?? spec.source,
      source: r.table,
      durationMs: r.durationMs,
      mode: r.mode,
      reason: r.reason ?? null,
      rows: { copied: r.rowsCopied, inserted: r.inserted, updated: r.updated, deleted: r.deleted },
      watermarkBefore: r.previousWatermark,
      watermarkAfter: r.watermark,
      status: r.status,
      error: r.error ?? null,
      integrityScore: null,
      report: r.heldBackBy ? { heldBackBy: r.heldBackBy } : null,
    },
    client,
  );
  return r;
}

/** Appends a run that failed before sync() had a table result (a database unreachable). */
export async function recordFailure(
  opts: Caller,
  spec: TableSpec,
  error: string,
  durationMs: number,
): Promise<void> {
  await append(opts, {
    kind: "sync",
    target: spec.target ?? spec.source,
    source: displayName(spec.source),
    durationMs,
    mode: spec.mode ?? "auto",
    reason: null,
    rows: null,
    watermarkBefore: null,
    watermarkAfter: null,
    status: "error",
    error,
    integrityScore: null,
    report: null,
  });
}

/** Appends a validation's result (its integrity score feeds the metrics and the page). */
export async function recordValidation(
  opts: Caller & { deep?: boolean | undefined; repair?: boolean | undefined },
  spec: TableSpec,
  r: ValidationReport,
): Promise<void> {
  // The figures a person compares between validations, not the samples.
  const report = {
    isSynchronized: r.isSynchronized,
    sourceCount: r.sourceCount,
    targetCount: r.targetCount,
    pendingRows: r.pendingRows,
    syncGap: r.syncGap,
    ...(r.deep
      ? { deep: { missing: r.deep.missing, extra: r.deep.extra, different: r.deep.different } }
      : {}),
  };
  await append(opts, {
    kind: "validate",
    target: spec.target ?? spec.source,
    source: r.table,
    durationMs: r.durationMs,
    mode: opts.repair ? "repair" : opts.deep ? "deep" : "counts",
    reason: null,
    rows: r.repaired
      ? { copied: r.repaired.copied, inserted: 0, updated: 0, deleted: r.repaired.deleted }
      : null,
    watermarkBefore: null,
    watermarkAfter: r.watermark,
    status: r.status,
    error: r.error ?? null,
    integrityScore: r.status === "ok" ? r.integrityScore : null,
    report,
  });
}

/**
 * Writes one history row and prunes rows past the retention, in one
 * statement (so it can share a busy connection: no transaction to
 * interleave). On `client` when the caller has a target connection whose
 * project schema may be current (a sync's lock holder), else on a
 * connection of its own.
 */
async function append(opts: Caller, e: Entry, client?: pg.Client): Promise<void> {
  const logger = opts.logger ?? silentLogger;
  try {
    // The caller's connection serves once the history table is there; when
    // it does not (a table that failed before its run upgraded the schema)
    // or fails (the connection broke), a connection of our own.
    if (client) {
      const ready = await client
        .query<{ e: boolean }>("SELECT to_regclass('xmin_sync.history') IS NOT NULL AS e")
        .then((r) => r.rows[0]!.e)
        .catch(() => false);
      if (
        ready &&
        (await insertEntry(client, opts, e).then(
          () => true,
          () => false,
        ))
      )
        return;
    }
    await ownConnections(async () => {
      const own = await connect(opts.target, "target");
      try {
        // A target that never had a table synced is left as it was: a run
        // that failed on the source side before creating the project schema
        // has nowhere to be recorded. An older project schema is upgraded.
        const { rows } = await own.query<{ e: boolean }>(
          "SELECT to_regclass('xmin_sync.schema_version') IS NOT NULL AS e",
        );
        if (!rows[0]!.e) return;
        await ensureProjectSchema(own);
        await insertEntry(own, opts, e);
      } finally {
        await own.end().catch(() => undefined);
      }
    });
  } catch (err) {
    logger.warn(
      { table: displayName(e.target), err: describeError(err) },
      "could not record the run in the history",
    );
  }
}

/**
 * Records that need a connection of their own (refused tables, an
 * interrupted run's) take turns: a run of hundreds of tables must not open
 * hundreds of connections at once.
 */
const ownConnections = pLimit(2);

async function insertEntry(c: pg.Client, opts: Caller, e: Entry): Promise<void> {
  // Retention by the finished_at index: a probe that finds nothing is
  // cheap, so every record prunes instead of a separate job.
  await c.query(
    `WITH pruned AS (
       DELETE FROM xmin_sync.history
        WHERE finished_at < now() - make_interval(secs => $21::double precision)
     )
     INSERT INTO xmin_sync.history (kind, target_schema, target_table, source_table, started_at,
        finished_at, duration_ms, mode, reason, rows_copied, inserted, updated, deleted,
        watermark_before, watermark_after, status, error, integrity_score, report, host, pid, process)
     VALUES ($1, $2, $3, $4, clock_timestamp() - make_interval(secs => $5::double precision / 1000),
        clock_timestamp(), $5::bigint, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
        $16::double precision, $17::jsonb, $18, $19, $20)`,
    [
      e.kind,
      e.target.schema,
      e.target.name,
      e.source,
      Math.round(e.durationMs),
      e.mode,
      e.reason,
      e.rows?.copied ?? null,
      e.rows?.inserted ?? null,
      e.rows?.updated ?? null,
      e.rows?.deleted ?? null,
      e.watermarkBefore,
      e.watermarkAfter,
      e.status,
      e.error,
      e.integrityScore,
      e.report === null ? null : JSON.stringify(e.report),
      hostname(),
      process.pid,
      opts.history?.process ?? "library",
      retentionSeconds(opts.history?.retention),
    ],
  );
}

/** One row of the run history, as `status --history --json` prints it. */
export interface HistoryRow {
  id: string;
  kind: "sync" | "validate";
  table: string;
  source: string;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  mode: string | null;
  reason: string | null;
  rowsCopied: number | null;
  inserted: number | null;
  updated: number | null;
  deleted: number | null;
  watermarkBefore: string | null;
  watermarkAfter: string | null;
  status: string;
  error: string | null;
  integrityScore: number | null;
  report: Record<string, unknown> | null;
  host: string;
  pid: number;
  process: string;
}

export interface HistoryQuery {
  table?: QualifiedName | undefined;
  kind?: "sync" | "validate" | undefined;
  /** Rows after this id, oldest first (for following the history); else newest first. */
  afterId?: string | undefined;
  limit?: number | undefined;
}

/** A connection, or anything that runs a query like one. */
export interface Queryable {
  query<T extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    values?: unknown[],
  ): Promise<pg.QueryResult<T>>;
}

/** Whether the target has a run history yet. */
export async function hasHistory(client: Queryable): Promise<boolean> {
  const { rows } = await client.query<{ e: boolean }>(
    "SELECT to_regclass('xmin_sync.history') IS NOT NULL AS e",
  );
  return rows[0]!.e;
}

export async function readHistory(client: Queryable, q: HistoryQuery = {}): Promise<HistoryRow[]> {
  if (!(await hasHistory(client))) return [];
  // One table's runs are read per kind, each along the (table, kind, id)
  // index, and merged: ordering all its runs by id would sort millions.
  if (q.table && !q.kind) {
    const [syncs, validations] = await Promise.all([
      readHistory(client, { ...q, kind: "sync" }),
      readHistory(client, { ...q, kind: "validate" }),
    ]);
    const byId = (a: HistoryRow, b: HistoryRow) => Number(BigInt(a.id) - BigInt(b.id));
    const merged = [...syncs, ...validations].sort(
      q.afterId === undefined ? (a, b) => byId(b, a) : byId,
    );
    return merged.slice(0, q.limit ?? 1000);
  }
  const following = q.afterId !== undefined;
  const { rows } = await client.query(
    `SELECT id::text, kind, target_schema, target_table, source_table, started_at, finished_at,
            duration_ms::float8 AS duration_ms, mode, reason, rows_copied::float8 AS rows_copied,
            inserted::float8 AS inserted, updated::float8 AS updated, deleted::float8 AS deleted,
            watermark_before, watermark_after, status, error, integrity_score, report, host, pid, process
       FROM xmin_sync.history h
      WHERE ($1::text IS NULL OR (target_schema = $1 AND target_table = $2))
        AND ($3::text IS NULL OR kind = $3)
        AND ($4::bigint IS NULL OR id > $4::bigint)
      ORDER BY h.id ${following ? "ASC" : "DESC"}
      LIMIT $5`,
    [
      q.table?.schema ?? null,
      q.table?.name ?? null,
      q.kind ?? null,
      q.afterId ?? null,
      q.limit ?? 1000,
    ],
  );
  return rows.map((r) => ({
    id: r.id,
    kind: r.kind,
    table: displayName({ schema: r.target_schema, name: r.target_table }),
    source: r.source_table,
    startedAt: r.started_at.toISOString(),
    finishedAt: r.finished_at.toISOString(),
    durationMs: r.duration_ms,
    mode: r.mode,
    reason: r.reason,
    rowsCopied: r.rows_copied,
    inserted: r.inserted,
    updated: r.updated,
    deleted: r.deleted,
    watermarkBefore: r.watermark_before,
    watermarkAfter: r.watermark_after,
    status: r.status,
    error: r.error,
    integrityScore: r.integrity_score,
    report: r.report,
    host: r.host,
    pid: r.pid,
    process: r.process,
  }));
}
