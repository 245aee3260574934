import type pg from "pg";
import { describeError } from "../db/connect.js";
import { displayName, quoteQualified, type QualifiedName } from "../db/quote.js";
import { Reconnecting } from "../schedule/connection.js";
import { LOCK_CLASS } from "../target/project.js";
import { readHistory, type HistoryRow } from "../target/history.js";

/** A table the config names (shown even before its first run). */
export interface ConfiguredTable {
  target: QualifiedName;
  source: QualifiedName;
  /** "every 30s" or a cron expression. */
  schedule: string | null;
}

export interface RunSummary {
  id: string;
  finishedAt: string;
  durationMs: number;
  rowsCopied: number;
  status: string;
}

/** One row of the status page, and of /api/tables. */
export interface TableView {
  table: string;
  source: string | null;
  schedule: string | null;
  state: "idle" | "running" | "failed";
  running: {
    since: string;
    host: string | null;
    pid: number | null;
    bytes: number | null;
    estimatedBytes: number | null;
  } | null;
  mode: string | null;
  watermark: string | null;
  lastSuccessAt: string | null;
  lag: { transactions: string | null; seconds: number | null };
  lastRun:
    | (RunSummary & {
        mode: string | null;
        reason: string | null;
        inserted: number;
        updated: number;
        deleted: number;
        error: string | null;
        host: string;
        pid: number;
        process: string;
      })
    | null;
  lastError: { at: string; error: string } | null;
  recent: RunSummary[];
  validation: {
    at: string;
    mode: string | null;
    status: string;
    integrityScore: number | null;
    isSynchronized: boolean | null;
    error: string | null;
  } | null;
}

export interface Check {
  ok: boolean;
  error?: string;
}

export interface FleetView {
  generatedAt: string;
  target: Check;
  /** Lag in transactions needs the source; `configured` false when none was given. */
  source: Check & { configured: boolean };
  tables: TableView[];
}

/** Runs shown in a table's chart. */
const RECENT_RUNS = 30;
/** A worker's progress row older than this belongs to a worker that is gone. */
const STALE_ACTIVITY_SECONDS = 30;
const QUERY_TIMEOUT_MS = 10_000;

/**
 * What the status page, /api/tables and /metrics show, read from the
 * target (state, run history, runs in progress, table locks) and, when
 * given, the source (its transaction horizon, for lag in transactions).
 */
export class FleetStatus {
  private readonly target: Reconnecting;
  private readonly source: Reconnecting | undefined;
  private cached: { at: number; view: Promise<FleetView> } | undefined;

  constructor(
    targetUrl: string,
    sourceUrl: string | undefined,
    private readonly configured: ConfiguredTable[] = [],
  ) {
    this.target = new Reconnecting(targetUrl, "target", "xmin-sync serve");
    this.source = sourceUrl ? new Reconnecting(sourceUrl, "source", "xmin-sync serve") : undefined;
  }

  /** The fleet now; computed at most once a second, whoever asks (page, API, Prometheus). */
  view(): Promise<FleetView> {
    const now = Date.now();
    if (!this.cached || now - this.cached.at > 1000) {
      this.cached = { at: now, view: this.read() };
    }
    return this.cached.view;
  }

  /** Whether each database answers. */
  async health(): Promise<{ target: Check; source?: Check }> {
    const ping = (c: Reconnecting) =>
      c.query("SELECT 1", [], { timeoutMs: 3000 }).then(
        (): Check => ({ ok: true }),
        (err): Check => ({ ok: false, error: describeError(err) }),
      );
    const [target, source] = await Promise.all([
      ping(this.target),
      this.source ? ping(this.source) : undefined,
    ]);
    return { target, ...(source ? { source } : {}) };
  }

  /** A table's runs and validations, newest first. */
  async history(table: QualifiedName, limit: number): Promise<HistoryRow[]> {
    return readHistory(this.target, { table, limit });
  }

  /** Runs recorded after `afterId`, oldest first (for following the history). */
  async runsAfter(afterId: string): Promise<HistoryRow[]> {
    return readHistory(this.target, { afterId, limit: 5000 });
  }

  /** The id of the newest run in the history ("0" when there is none). */
  async lastRunId(): Promise<string> {
    const { rows } = await this.target.query<{ id: string | null }>(
      `SELECT CASE WHEN to_regclass('xmin_sync.history') IS NULL THEN NULL
                   ELSE (SELECT max(id)::text FROM xmin_sync.history) END AS id`,
      [],
      { timeoutMs: QUERY_TIMEOUT_MS },
    );
    return rows[0]!.id ?? "0";
  }

  async close(): Promise<void> {
    await Promise.all([this.target.close(), this.source?.close()]);
  }

  private async read(): Promise<FleetView> {
    const generatedAt = new Date().toISOString();
    const sourceCheck = this.sourceHorizon();
    let tables: TableView[] = [];
    let target: Check = { ok: true };
    try {
      tables = await this.readTables(await sourceCheck);
    } catch (err) {
      target = { ok: false, error: describeError(err) };
      tables = this.configured.map((c) => emptyView(c));
    }
    const s = await sourceCheck;
    return {
      generatedAt,
      target,
      source: {
        configured: this.source !== undefined,
        ok: s.ok,
        ...(s.error ? { error: s.error } : {}),
      },
      tables,
    };
  }

  /** The source's oldest running transaction (epoch-aware): where lag in transactions is counted from. */
  private async sourceHorizon(): Promise<Check & { horizon?: bigint }> {
    if (!this.source) return { ok: false };
    try {
      const { rows } = await this.source.query<{ x: string }>(
        // txid_* works on every version we support (pg_current_snapshot needs 13).
        "SELECT txid_snapshot_xmin(txid_current_snapshot())::text AS x",
        [],
        { timeoutMs: QUERY_TIMEOUT_MS },
      );
      return { ok: true, horizon: BigInt(rows[0]!.x) };
    } catch (err) {
      return { ok: false, error: describeError(err) };
    }
  }

  private async readTables(source: { horizon?: bigint }): Promise<TableView[]> {
    const q = <T extends pg.QueryResultRow>(text: string, values: unknown[] = []) =>
      this.target.query<T>(text, values, { timeoutMs: QUERY_TIMEOUT_MS });
    const { rows: have } = await q<{ state: boolean; history: boolean; activity: boolean }>(
      `SELECT to_regclass('xmin_sync.state') IS NOT NULL AS state,
              to_regclass('xmin_sync.history') IS NOT NULL AS history,
              to_regclass('xmin_sync.activity') IS NOT NULL AS activity`,
    );
    const exists = have[0]!;

    // Every table the target knows of, and those the config names.
    const known = new Map<string, { target: QualifiedName; source: string | null }>();
    const add = (target: QualifiedName, source: string | null) => {
      const key = displayName(target);
      const had = known.get(key);
      if (!had || (had.source === null && source !== null)) known.set(key, { target, source });
    };
    for (const c of this.configured) add(c.target, displayName(c.source));
    const states = new Map<string, { mode: string; watermark: string | null; lastRunAt: Date }>();
    if (exists.state) {
      const { rows } = await q<{
        s: string;
        n: string;
        ss: string;
        sn: string;
        mode: string;
        watermark: string | null;
        last_run_at: Date;
      }>(
        `SELECT target_schema AS s, target_table AS n, source_schema AS ss, source_table AS sn,
                mode, watermark::text, last_run_at FROM xmin_sync.state`,
      );
      for (const r of rows) {
        const target = { schema: r.s, name: r.n };
        add(target, displayName({ schema: r.ss, name: r.sn }));
        states.set(displayName(target), {
          mode: r.mode,
          watermark: r.watermark,
          lastRunAt: r.last_run_at,
        });
      }
    }
    if (exists.history) {
      // Distinct tables of the history by skipping along its index: a
      // table whose first run failed has no state yet, only runs.
      const { rows } = await q<{ s: string; n: string; src: string }>(
        `WITH RECURSIVE t(s, n) AS (
           (SELECT target_schema, target_table FROM xmin_sync.history
             ORDER BY target_schema, target_table LIMIT 1)
           UNION ALL
           SELECT x.target_schema, x.target_table FROM t, LATERAL (
             SELECT target_schema, target_table FROM xmin_sync.history h
              WHERE (h.target_schema, h.target_table) > (t.s, t.n)
              ORDER BY target_schema, target_table LIMIT 1) x)
         SELECT s, n, (SELECT source_table FROM xmin_sync.history h
                        WHERE h.target_schema = t.s AND h.target_table = t.n
                        ORDER BY kind, id DESC LIMIT 1) AS src
           FROM t`,
      );
      for (const r of rows) add({ schema: r.s, name: r.n }, r.src);
    }
    const list = [...known.values()].sort((a, b) =>
      displayName(a.target).localeCompare(displayName(b.target)),
    );
    if (list.length === 0) return [];
    const schemas = list.map((t) => t.target.schema);
    const names = list.map((t) => t.target.name);

    const { rows: now } = await q<{ now: Date }>("SELECT now() AS now");
    const dbNow = now[0]!.now.getTime();

    const runs = exists.history
      ? (
          await q<{
            s: string;
            n: string;
            last_run: Record<string, unknown> | null;
            last_ok: { started_at: string; finished_at: string } | null;
            recent: Record<string, unknown>[] | null;
            last_error: { finished_at: string; error: string } | null;
            validation: Record<string, unknown> | null;
          }>(
            `SELECT t.s, t.n,
               (SELECT to_jsonb(r) FROM (SELECT id::text, finished_at, duration_ms, rows_copied, inserted,
                        updated, deleted, status, error, mode, reason, host, pid, process
                   FROM xmin_sync.history h
                  WHERE h.target_schema = t.s AND h.target_table = t.n AND h.kind = 'sync'
                  ORDER BY h.id DESC LIMIT 1) r) AS last_run,
               (SELECT to_jsonb(r) FROM (SELECT started_at, finished_at FROM xmin_sync.history h
                  WHERE h.target_schema = t.s AND h.target_table = t.n AND h.kind = 'sync'
                    AND h.status = 'ok'
                  ORDER BY h.id DESC LIMIT 1) r) AS last_ok,
               (SELECT jsonb_agg(r ORDER BY r.id) FROM (SELECT id, finished_at, duration_ms,
                        rows_copied, status
                   FROM xmin_sync.history h
                  WHERE h.target_schema = t.s AND h.target_table = t.n AND h.kind = 'sync'
                  ORDER BY h.id DESC LIMIT ${RECENT_RUNS}) r) AS recent,
               (SELECT to_jsonb(r) FROM (SELECT finished_at, error FROM xmin_sync.history h
                  WHERE h.target_schema = t.s AND h.target_table = t.n AND h.status <> 'ok'
                    AND h.kind = 'sync'
                  ORDER BY h.id DESC LIMIT 1) r) AS last_error,
               (SELECT to_jsonb(r) FROM (SELECT finished_at, mode, status, error, integrity_score,
                        report
                   FROM xmin_sync.history h
                  WHERE h.target_schema = t.s AND h.target_table = t.n AND h.kind = 'validate'
                  ORDER BY h.id DESC LIMIT 1) r) AS validation
             FROM unnest($1::text[], $2::text[]) AS t(s, n)`,
            [schemas, names],
          )
        ).rows
      : [];
    const runsOf = new Map(runs.map((r) => [displayName({ schema: r.s, name: r.n }), r]));

    const activity = new Map<
      string,
      { started_at: Date; host: string; pid: number; bytes: string; estimated_bytes: string | null }
    >();
    if (exists.activity) {
      const { rows } = await q<{
        s: string;
        n: string;
        started_at: Date;
        host: string;
        pid: number;
        bytes: string;
        estimated_bytes: string | null;
      }>(
        `SELECT target_schema AS s, target_table AS n, started_at, host, pid, bytes, estimated_bytes
           FROM xmin_sync.activity
          WHERE updated_at > now() - make_interval(secs => $1)`,
        [STALE_ACTIVITY_SECONDS],
      );
      for (const r of rows) activity.set(displayName({ schema: r.s, name: r.n }), r);
    }
    // A run from any entry point (CLI, Airflow, a worker) holds the table's
    // lock in the target (target/lock.ts): running, even without progress.
    const { rows: locked } = await q<{ i: number; since: Date | null }>(
      `SELECT k.i, (SELECT a.backend_start FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                      WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::int::oid
                        AND l.objsubid = 2 AND l.database = (SELECT oid FROM pg_database
                                                              WHERE datname = current_database())
                        AND l.objid = (hashtext(k.key) & 2147483647)::oid
                      LIMIT 1) AS since
         FROM unnest($2::text[]) WITH ORDINALITY AS k(key, i)`,
      [LOCK_CLASS, list.map((t) => quoteQualified(t.target))],
    );
    const lockedSince = new Map(
      locked.filter((r) => r.since !== null).map((r) => [Number(r.i) - 1, r.since!]),
    );

    const scheduleOf = new Map(this.configured.map((c) => [displayName(c.target), c.schedule]));
    return list.map((t, i): TableView => {
      const key = displayName(t.target);
      const st = states.get(key);
      const h = runsOf.get(key);
      const act = activity.get(key);
      const lockSince = lockedSince.get(i);
      const lastRun = h?.last_run ?? null;
      const lastOkStart = h?.last_ok ? Date.parse(h.last_ok.started_at) : undefined;
      const since = act?.started_at ?? lockSince;
      const running = since
        ? {
            since: since.toISOString(),
            host: act?.host ?? null,
            pid: act?.pid ?? null,
            bytes: act ? Number(act.bytes) : null,
            estimatedBytes: act?.estimated_bytes ? Number(act.estimated_bytes) : null,
          }
        : null;
      const watermark = st?.watermark ?? null;
      // How old the copy may be: since the snapshot of the last good run was taken.
      const freshAsOf = lastOkStart ?? st?.lastRunAt.getTime();
      return {
        table: key,
        source: t.source,
        schedule: scheduleOf.get(key) ?? null,
        state: running ? "running" : lastRun && lastRun.status !== "ok" ? "failed" : "idle",
        running,
        mode: st?.mode ?? null,
        watermark,
        lastSuccessAt: h?.last_ok?.finished_at
          ? new Date(h.last_ok.finished_at).toISOString()
          : (st?.lastRunAt.toISOString() ?? null),
        lag: {
          transactions:
            source.horizon !== undefined && watermark !== null
              ? bigMax(0n, source.horizon - BigInt(watermark)).toString()
              : null,
          seconds:
            freshAsOf !== undefined ? Math.max(0, Math.round((dbNow - freshAsOf) / 1000)) : null,
        },
        lastRun: lastRun
          ? {
              id: String(lastRun.id),
              finishedAt: iso(lastRun.finished_at),
              durationMs: Number(lastRun.duration_ms),
              rowsCopied: Number(lastRun.rows_copied ?? 0),
              inserted: Number(lastRun.inserted ?? 0),
              updated: Number(lastRun.updated ?? 0),
              deleted: Number(lastRun.deleted ?? 0),
              status: String(lastRun.status),
              error: (lastRun.error as string | null) ?? null,
              mode: (lastRun.mode as string | null) ?? null,
              reason: (lastRun.reason as string | null) ?? null,
              host: String(lastRun.host),
              pid: Number(lastRun.pid),
              process: String(lastRun.process),
            }
          : null,
        lastError: h?.last_error
          ? { at: iso(h.last_error.finished_at), error: h.last_error.error }
          : null,
        recent: (h?.recent ?? []).map((r) => ({
          id: String(r.id),
          finishedAt: iso(r.finished_at),
          durationMs: Number(r.duration_ms),
          rowsCopied: Number(r.rows_copied ?? 0),
          status: String(r.status),
        })),
        validation: h?.validation
          ? {
              at: iso(h.validation.finished_at),
              mode: (h.validation.mode as string | null) ?? null,
              status: String(h.validation.status),
              integrityScore: (h.validation.integrity_score as number | null) ?? null,
              isSynchronized:
                ((h.validation.report as { isSynchronized?: boolean } | null)?.isSynchronized as
                  boolean | undefined) ?? null,
              error: (h.validation.error as string | null) ?? null,
            }
          : null,
      };
    });
  }
}

function emptyView(c: ConfiguredTable): TableView {
  return {
    table: displayName(c.target),
    source: displayName(c.source),
    schedule: c.schedule,
    state: "idle",
    running: null,
    mode: null,
    watermark: null,
    lastSuccessAt: null,
    lag: { transactions: null, seconds: null },
    lastRun: null,
    lastError: null,
    recent: [],
    validation: null,
  };
}

function iso(v: unknown): string {
  return new Date(v as string).toISOString();
}

function bigMax(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}
