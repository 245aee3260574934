import { connect, describeError } from "../db/connect.js";
import { displayName } from "../db/quote.js";
import { isRetryable } from "../db/errors.js";
import { InputError } from "../input-error.js";
import { silentLogger } from "../log.js";
import { recordRun } from "../target/history.js";
import { SourceRun } from "./source-run.js";
import pLimit, { type LimitFunction } from "p-limit";
import type pg from "pg";
import { StaleSnapshotError } from "./plan.js";
import { syncTable } from "./table.js";
import { capWorkers, resolveTuning, type Tuning } from "./tuning.js";
import type { SyncOptions, TableResult, TableSpec } from "./types.js";

const RETRY_ATTEMPTS = 3;

/**
 * Syncs every table of the request from one source snapshot. A table that
 * fails does not stop the others; its result says why. A retryable failure
 * (a standby's recovery conflict, a dropped connection) is retried on a fresh
 * snapshot of its own.
 */
export async function sync(opts: SyncOptions): Promise<TableResult[]> {
  const logger = opts.logger ?? silentLogger;
  checkDistinctTargets(opts.tables);

  // Fail early, with nothing written, when the target is unreachable. The
  // project schema is created per table once its source checks pass, so a
  // run that fails on the source side leaves the target as it was.
  const tuning = resolveTuning(opts.tuning);
  const target = await connect(opts.target, "target");
  try {
    tuning.workers = capWorkers(tuning.workers, await freeConnections(target));
  } finally {
    await target.end().catch(() => undefined);
  }

  const run = await SourceRun.open(opts.source);
  try {
    tuning.workers = capWorkers(tuning.workers, await freeConnections(run.coordinatorClient));
    logger.info({ snapshot: run.snapshot.text, ...tuning }, "source snapshot taken");
    // Workers are shared: a table's parallel reads and index builds take
    // slots from one pool, and as many tables run at once as there are
    // workers, so a run of many small tables and one big one keeps every
    // worker busy.
    const pool = pLimit(tuning.workers);
    const tables = pLimit(tuning.workers);
    return await Promise.all(
      opts.tables.map((spec) =>
        tables(async () => recordRun(opts, spec, await syncOne(run, opts, spec, pool, tuning))),
      ),
    );
  } finally {
    await run.close();
  }
}

/** Connections a server has left for us (superuser-reserved ones excluded). */
async function freeConnections(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ free: number }>(
    `SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int
            - (SELECT count(*)::int FROM pg_stat_activity) AS free`,
  );
  return rows[0]!.free;
}

async function syncOne(
  shared: SourceRun,
  opts: SyncOptions,
  spec: TableSpec,
  pool: LimitFunction,
  tuning: Tuning,
): Promise<TableResult> {
  const logger = opts.logger ?? silentLogger;
  const started = Date.now();
  const base = {
    table: displayName(spec.source),
    target: displayName(spec.target ?? spec.source),
  };
  let retryRun: SourceRun | undefined;
  let freshSnapshot = false;
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        // Opened inside the try: a source that cannot be reached again fails
        // this table (or is retried), not the whole run.
        if (freshSnapshot) {
          await retryRun?.close();
          retryRun = undefined;
          retryRun = await SourceRun.open(opts.source);
        }
        const r = await syncTable(retryRun ?? shared, opts.target, spec, {
          full: opts.full ?? false,
          waitForLock: opts.waitForLock ?? false,
          logger,
          pool,
          tuning,
          onProgress: opts.onProgress,
          signal: opts.signal,
        });
        return { ...r, durationMs: Date.now() - started, status: "ok" };
      } catch (err) {
        // A stale snapshot (another run committed this table from a newer
        // one) is not transient: retry at once on a fresh snapshot.
        const stale = err instanceof StaleSnapshotError;
        if (attempt < RETRY_ATTEMPTS && (stale || isRetryable(err))) {
          logger.warn(
            { table: base.table, attempt, err: describeError(err) },
            "retrying on a fresh snapshot",
          );
          if (!stale) {
            await new Promise((r) => setTimeout(r, 250 * 2 ** attempt * (0.5 + Math.random())));
          }
          freshSnapshot = true;
          continue;
        }
        logger.error({ table: base.table, err: describeError(err) }, "table failed");
        logger.debug({ table: base.table, err }, "table failure details");
        return {
          ...base,
          mode: spec.mode ?? "auto",
          rowsCopied: 0,
          inserted: 0,
          updated: 0,
          deleted: 0,
          watermark: null,
          previousWatermark: null,
          durationMs: Date.now() - started,
          status: "error",
          error: `${base.table}: ${describeError(err)}`,
        };
      }
    }
  } finally {
    await retryRun?.close();
  }
}

function checkDistinctTargets(tables: TableSpec[]): void {
  const seen = new Set<string>();
  for (const t of tables) {
    const name = displayName(t.target ?? t.source);
    if (seen.has(name)) throw new InputError(`target table ${name} is named twice in one run`);
    seen.add(name);
  }
}
