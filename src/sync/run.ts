import type pg from "pg";
import pLimit, { type LimitFunction } from "p-limit";
import { cancelOnAbort } from "../db/cancel.js";
import { closeHandoff, preflight, takeHandoff, type Handoff } from "../check/run.js";
import {
  allClosed,
  closeSoon,
  connect,
  describeError,
  endClient,
  openBoth,
} from "../db/connect.js";
import { displayName, type QualifiedName } from "../db/quote.js";
import { isRetryable, SQLSTATE, sqlState } from "../db/errors.js";
import { InputError } from "../input-error.js";
import { silentLogger, type Logger } from "../log.js";
import { SourceRun, StorageChangedError } from "../source/run.js";
import { SchemaChangedError } from "./evolve.js";
import { recordRun } from "../target/history.js";
import { LockLostError } from "../target/lock.js";
import { backendPid, lockOnHolder, lockOnOwnConnection, type TableLock } from "./locks.js";
import { StaleSnapshotError } from "./stale.js";
import { failedResult } from "./failed.js";
import { syncTable, type TableRunOptions } from "./table.js";
import { capWorkers, resolveTuning, type Tuning } from "./tuning.js";
import type { ProgressPhase, SyncOptions, TableResult, TableSpec } from "./types.js";

const RETRY_ATTEMPTS = 3;

/** What every table of one run shares. */
interface RunShared {
  opts: SyncOptions;
  logger: Logger;
  pool: LimitFunction;
  tuning: Tuning;
  /** The run's snapshot, for the tables whose lock was free at the start. */
  shared: SourceRun | undefined;
  /** The preflight's connections, for the first table to start. */
  handoff: Partial<Handoff>;
}

/**
 * Syncs every table of the request from one source snapshot. A table that
 * fails does not stop the others; its result says why. A retryable failure
 * (a standby's recovery conflict, a dropped connection) is retried on a fresh
 * snapshot of its own.
 *
 * The target tables are locked before the snapshot is taken, so that a run
 * never holds the source's vacuum horizon while it waits for another run:
 * tables whose lock is free are locked at once; with `waitForLock`, a table
 * another run holds waits for it on its own, and then reads on a fresh
 * snapshot of its own.
 */
export async function sync(asked: SyncOptions): Promise<TableResult[]> {
  const logger = asked.logger ?? silentLogger;
  const signal = asked.signal;
  checkDistinctTargets(asked.tables);
  signal?.throwIfAborted();
  // Bad tuning input fails here, before any connection is opened.
  const tuning = resolveTuning(asked.tuning);
  // The run's two long-lived connections (the target's lock holder, the
  // source's coordinator) open while the preflight runs: opening one
  // writes nothing, and each costs a start-up round on the critical path.
  // A run of one table takes the preflight's source connection as its
  // coordinator, which is also the table's reader (SourceRun.tableReader).
  const oneTable = asked.tables.length === 1;
  const early = openBoth(
    connect(asked.target, "target"),
    oneTable ? Promise.resolve(undefined) : connect(asked.source, "source"),
    [endClient, (c) => c?.end() ?? Promise.resolve()],
  );
  // A failure to open is the preflight's to report.
  early.catch(() => undefined);
  const closeEarly = () =>
    early.then(
      (both) => Promise.all(both.map((c) => c?.end().catch(() => undefined))),
      () => undefined,
    );
  // Everything the run needs, checked on both servers before anything is
  // written: a table refused there has its result, the others run.
  let checked: Awaited<ReturnType<typeof preflight>>;
  try {
    checked = await preflight({ ...asked, logger });
  } catch (err) {
    await closeEarly();
    throw err;
  }
  const opts = { ...asked, tables: checked.runnable };
  const handoff: Partial<Handoff> = checked.handoff;
  // A refused table's run is over: it goes to the history now (a target
  // that never had a sync has none, and is left as it was).
  await Promise.all(checked.refused.map((r) => recordRun(asked, r.spec, r.result)));
  if (opts.tables.length === 0) {
    closeHandoff(handoff);
    await closeEarly();
    return checked.results([]);
  }

  // The project schema is created per table once its source checks pass,
  // so a run that fails on the source side leaves the target as it was.
  let holder: pg.Client;
  let firstSource: pg.Client | undefined;
  try {
    [holder, firstSource] = await early;
  } catch (err) {
    closeHandoff(handoff);
    throw err;
  }
  let coordinator: pg.Client | undefined = firstSource;
  cancelOnAbort(holder, signal);
  let shared: SourceRun | undefined;
  try {
    // The preflight counted the connections both servers have left.
    tuning.workers = capWorkers(tuning.workers, checked.handoff.freeConnections);
    const holderPid = await backendPid(holder);

    // 1. Lock the target tables, one connection for all, in name order (two
    // runs of many tables then cannot deadlock).
    const locks = new Map<TableSpec, TableLock | "wait" | Error>();
    for (const spec of [...opts.tables].sort(byTarget)) {
      const lock = await lockOnHolder(holder, holderPid, targetOf(spec), opts.waitForLock ?? false)
        .then((l) => l ?? ("wait" as const))
        .catch((err: Error) => err);
      locks.set(spec, lock);
    }

    // 2. Then the snapshot, for the tables that hold their lock.
    const ready = [...locks.values()].filter((l) => typeof l === "object" && !(l instanceof Error));
    if (ready.length === 0) {
      // Every table waits for another run: no session on the source meanwhile.
      if (coordinator) closeSoon(coordinator);
      coordinator = undefined;
      closeHandoff(handoff);
    } else {
      let client = coordinator;
      coordinator = undefined;
      if (!client) {
        // A run of one table opened no coordinator: the preflight's source connection is.
        client = handoff.source;
        handoff.source = undefined;
      }
      shared = await SourceRun.open(opts.source, {
        client,
        signal,
        tables: ready.length,
        onRelease: (heldMs) => logger.info({ heldMs }, "source snapshot released"),
      });
      logger.info({ snapshot: shared.snapshot.text, ...tuning }, "source snapshot taken");
    }

    // Workers are shared: a table's parallel reads and index builds take
    // slots from one pool, and as many tables run at once as there are
    // workers, so a run of many small tables and one big one keeps every
    // worker busy. A table waiting for another run's lock takes no slot.
    const run: RunShared = {
      opts,
      logger,
      pool: pLimit(tuning.workers),
      tuning,
      shared,
      handoff,
    };
    const tables = pLimit(tuning.workers);
    const runTable = async (spec: TableSpec): Promise<TableResult> => {
      const started = Date.now();
      let lock = locks.get(spec)!;
      const waited = lock === "wait";
      if (lock === "wait") {
        try {
          lock = await lockOnOwnConnection(opts.target, targetOf(spec), {
            wait: true,
            timeoutMs: opts.waitTimeoutMs,
            signal,
            logger,
          });
        } catch (err) {
          return failed(run, spec, err, started, "waiting for another run");
        }
      }
      if (lock instanceof Error) return failed(run, spec, lock, started, "locking");
      const held = lock;
      return tables(() => syncOne(run, spec, held, started, !waited));
    };
    // Every table's run lands in the history, whatever became of it: on
    // the lock holder's connection (no new connection per table), or, once
    // the run was interrupted and its connections cancelled, on a new one.
    const results = await Promise.all(
      opts.tables.map(async (spec) => {
        const result = await runTable(spec);
        return recordRun(opts, spec, result, signal?.aborted ? undefined : holder);
      }),
    );
    return checked.results(results);
  } finally {
    closeHandoff(handoff);
    await shared?.close();
    await coordinator?.end().catch(() => undefined);
    await holder.end().catch(() => undefined);
    // Connections ended along the way have closed by the time sync() returns.
    await allClosed();
  }
}

async function syncOne(
  run: RunShared,
  spec: TableSpec,
  initialLock: TableLock,
  started: number,
  onShared: boolean,
): Promise<TableResult> {
  const { opts, logger } = run;
  const base = { table: displayName(spec.source), target: displayName(targetOf(spec)) };
  let lock = initialLock;
  let own: SourceRun | undefined;
  let phase: Phase = "preparing";
  // The shared snapshot is released once every table that reads in it is done with it.
  let sharedDone = !onShared;
  const leaveShared = () => {
    if (sharedDone) return;
    sharedDone = true;
    run.shared?.tableDone();
  };
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        opts.signal?.throwIfAborted();
        let source: SourceRun;
        let given: TableRunOptions["given"];
        if (onShared && attempt === 1) {
          source = run.shared!;
          given = takeHandoff(run.handoff);
        } else {
          // A fresh snapshot, taken once the table's lock is held again.
          leaveShared();
          await own?.close();
          own = undefined;
          if (!(await lock.alive())) {
            await lock.release();
            lock = await lockOnOwnConnection(opts.target, targetOf(spec), {
              wait: opts.waitForLock ?? false,
              timeoutMs: opts.waitTimeoutMs,
              signal: opts.signal,
              logger,
            });
          }
          own = await SourceRun.open(opts.source, { signal: opts.signal, tables: 1 });
          source = own;
        }
        const r = await syncTable(source, opts.target, spec, {
          full: opts.full ?? false,
          sourceLockTimeoutMs: opts.sourceLockTimeoutMs ?? 60_000,
          allowMassDelete: opts.allowMassDelete ?? false,
          massDeleteShare: opts.massDeleteShare ?? 0.5,
          lockPid: lock.pid,
          logger,
          pool: run.pool,
          tuning: run.tuning,
          onProgress: (e) => {
            phase = e.phase;
            opts.onProgress?.(e);
          },
          onReadDone: () => (source === own ? own.tableDone() : leaveShared()),
          given,
          signal: opts.signal,
        });
        return { ...r, durationMs: Date.now() - started, status: "ok" };
      } catch (err) {
        if (opts.signal?.aborted) return failed(run, spec, err, started, phase);
        // A stale snapshot (another run committed this table from a newer
        // one, its storage was replaced after ours, or a column our snapshot
        // saw was dropped or renamed before our reads began) is not
        // transient: retry at once on a fresh snapshot. So is a lost lock.
        const stale =
          err instanceof StaleSnapshotError ||
          err instanceof StorageChangedError ||
          err instanceof LockLostError ||
          sqlState(err) === SQLSTATE.undefinedColumn;
        if (attempt < RETRY_ATTEMPTS && (stale || isRetryable(err))) {
          logger.warn(
            { table: base.table, attempt, err: describeError(err) },
            "retrying on a fresh snapshot",
          );
          if (!stale) {
            await new Promise((r) => setTimeout(r, 250 * 2 ** attempt * (0.5 + Math.random())));
          }
          continue;
        }
        return failed(run, spec, err, started, phase);
      }
    }
  } finally {
    leaveShared();
    await own?.close();
    await lock.release();
  }
}

/** Where a table's run was, for the line an interrupted run prints. */
type Phase = ProgressPhase | "preparing" | "locking" | "waiting for another run";

const PHASE_TEXT: Record<Phase, string> = {
  preparing: "preparing",
  locking: "locking",
  "waiting for another run": "waiting for another run",
  copy: "copying rows",
  keys: "copying the source's keys",
  index: "building indexes",
  merge: "merging",
  deletes: "reconciling deletes",
};

function failed(
  run: RunShared,
  spec: TableSpec,
  err: unknown,
  started: number,
  phase: Phase,
): TableResult {
  const table = displayName(spec.source);
  const interrupted = run.opts.signal?.aborted === true;
  if (interrupted) {
    // The caller reports the interruption in one line; per-table detail is for --debug.
    run.logger.debug({ table, err: describeError(err) }, "table interrupted");
  } else {
    run.logger.error({ table, err: describeError(err) }, "table failed");
    run.logger.debug({ table, err }, "table failure details");
  }
  const error = interrupted ? `interrupted while ${PHASE_TEXT[phase]}` : describeError(err);
  return {
    ...failedResult(spec, error, Date.now() - started),
    ...(interrupted ? { interrupted: PHASE_TEXT[phase] } : {}),
    ...(err instanceof InputError && !interrupted ? { badInput: true } : {}),
    ...(err instanceof SchemaChangedError ? { schemaChanges: err.changes } : {}),
  };
}

const targetOf = (spec: TableSpec): QualifiedName => spec.target ?? spec.source;

function byTarget(a: TableSpec, b: TableSpec): number {
  const x = displayName(targetOf(a));
  const y = displayName(targetOf(b));
  return x < y ? -1 : x > y ? 1 : 0;
}

function checkDistinctTargets(tables: TableSpec[]): void {
  const seen = new Set<string>();
  for (const t of tables) {
    const name = displayName(targetOf(t));
    if (seen.has(name)) throw new InputError(`target table ${name} is named twice in one run`);
    seen.add(name);
  }
}
