import type pg from "pg";
import type { LimitFunction } from "p-limit";
import { cancelOnAbort } from "../db/cancel.js";
import { closeSoon, connect, endClient, openBoth } from "../db/connect.js";
import { keyNames } from "../db/key.js";
import {
  displayIdent,
  displayName,
  quoteIdent,
  quoteQualified,
  type QualifiedName,
} from "../db/quote.js";
import { readServerInfo } from "../db/server.js";
import type { Logger } from "../log.js";
import { readSourceTable, type SourceTable } from "../source/catalog.js";
import { likelyParts, narrowCursorRead, planParts, spareSourceCache } from "../source/chunks.js";
import { resolveKey } from "../source/key.js";
import type { SourceRun } from "../source/run.js";
import {
  checkTargetTable,
  readTargetTable,
  SOURCE_DELETED_AT,
  type TargetTable,
} from "../target/ddl.js";
import { ensureProjectSchema } from "../target/project.js";
import { readState, type TableState } from "../target/state.js";
import { storedTypes } from "../target/types.js";
import { dropWorkTables, type WorkKind } from "../target/work.js";
import { applyStaged, type Applied, type ApplyOptions, type StateDraft } from "./apply.js";
import type { TableContext } from "./context.js";
import { PairsAhead, trimSpares } from "./copy.js";
import {
  checkSchemaPolicy,
  evolveTarget,
  planEvolution,
  storedColumns,
  type Evolution,
} from "./evolve.js";
import { dropLoad } from "./load.js";
import { planTable, type Plan } from "./plan.js";
import { stageRows, type Staged } from "./stage.js";
import { checkSnapshotNotStale } from "./stale.js";
import type { Tuning } from "./tuning.js";
import type { ProgressEvent, TableResult, TableSpec } from "./types.js";

export interface TableRunOptions extends ApplyOptions {
  full: boolean;
  sourceLockTimeoutMs: number;
  /** The backend holding the target table's lock (taken by the caller, before the snapshot). */
  lockPid: number;
  /** Called once the table has read all it reads from the source: the snapshot may go. */
  onReadDone: () => void;
  /** Idle connections to take instead of opening the table's own (the preflight's). */
  given?: { source?: pg.Client | undefined; target?: pg.Client | undefined } | undefined;
  logger: Logger;
  pool: LimitFunction;
  tuning: Tuning;
  onProgress?: ((e: ProgressEvent) => void) | undefined;
  signal?: AbortSignal | undefined;
}

export type TableOutcome = Omit<TableResult, "durationMs" | "status" | "error">;

/** Work tables of a run, but for a first load's, which an interrupted load resumes from. */
const RUN_WORK_TABLES: WorkKind[] = ["stage", "keys", "repair"];

/**
 * One run of one table, top to bottom: resolve the source table and its
 * key, read the stored state, plan, prepare the target, stage the rows,
 * apply them and commit the new state with the last of the data. The
 * caller holds the target table's lock, taken before the run's snapshot.
 */
export async function syncTable(
  run: SourceRun,
  targetUrl: string,
  spec: TableSpec,
  opts: TableRunOptions,
): Promise<TableOutcome> {
  const targetName = spec.target ?? spec.source;
  const tableName = displayName(spec.source);
  const log = opts.logger.child({ table: tableName });
  opts.signal?.throwIfAborted();
  // The table's own connection in the run's snapshot: it reads the catalog,
  // copies a part, and holds the table's source lock until the rows are
  // staged (until the snapshot's release, when it is the run's coordinator:
  // only when the snapshot is this table's alone, since a failed statement
  // there, such as a standby's recovery conflict while waiting for a lock,
  // would end the snapshot for every table of the run). Both open at once:
  // each costs a start-up round; the run's first table takes the
  // preflight's instead, and a run of one table has made the preflight's
  // source connection its coordinator already.
  const given = opts.given ?? {};
  const [target, reader] = await openBoth(
    given.target ? Promise.resolve(given.target) : connect(targetUrl, "target"),
    run.tableReader(given.source),
    [endClient, (r) => run.closeReader(r)],
  );
  cancelOnAbort(target, opts.signal);
  let source: pg.Client | undefined = reader;
  // Target connections the copies are done with, for the merge's slices.
  const spares: pg.Client[] = [];
  // The copy's connections: the table's own two, and more opened while the steps before it run.
  const pairsAhead = new PairsAhead(
    { source: run, targetUrl, signal: opts.signal, pool: opts.pool },
    { reader, writer: target },
  );
  try {
    // 1. Resolve, in the run's snapshot: a missing table or key fails before the target is touched.
    const table = await readSourceTable(source, spec.source);
    pairsAhead.open(
      likelyParts(table, { workers: opts.tuning.workers, minRows: opts.tuning.minBatchSize }),
    );
    const key = resolveKey(table, spec);
    if (key.index !== null) {
      log.info(
        { key: keyNames(key.columns), index: key.index },
        `no primary key: keyed by unique index ${displayIdent(key.index)}`,
      );
    }
    await run.lockTable(source, table, opts.sourceLockTimeoutMs);

    // 2. The target table is locked (one run per table at a time); its project schema.
    const targetServer = await readServerInfo(target);
    await ensureProjectSchema(target);

    // 3. Read what the last run stored, and what the target holds.
    const state = await readState(target, targetName);
    await checkSnapshotNotStale(run, state, targetName);
    const existing = await readTargetTable(target, targetName);
    const empty = existing === null || (await hasNoRows(target, targetName));

    // 4. What the source's schema changed since, and the plan: values computed once.
    const evolution = await planEvolution(source, {
      table,
      key: keyNames(key.columns),
      state,
      identity: run.identity,
      targetName,
      existing,
      targetEmpty: empty,
      droppedColumns: spec.droppedColumns ?? "keep",
    });
    await checkSchemaPolicy(target, table, evolution, spec.schemaChanges ?? "evolve");
    const plan = planTable({
      spec,
      forceFull: opts.full,
      source: table,
      identity: run.identity,
      snapshot: run.snapshot,
      state,
      target: {
        exists: existing !== null,
        empty,
        softDeleteColumn: existing?.columns.has(SOURCE_DELETED_AT) ?? false,
      },
      sourceHasRows:
        existing !== null && empty && state !== null && !(await hasNoRows(source, spec.source)),
      schemaResync: evolution.plan?.resync ?? state?.resyncReason ?? null,
      keyEnforced: key.enforced,
      now: new Date(),
    });
    log.info(
      { mode: plan.mode, reason: plan.reason, into: plan.into, deletes: plan.deletes },
      "planned",
    );
    for (const note of plan.notes) log.warn(note);

    // 5. Prepare the target: types, columns, no work tables left by a crashed run.
    const schemaChanges = await prepareTarget(
      target,
      targetName,
      table,
      keyNames(key.columns),
      existing,
      plan,
      evolution,
    );
    for (const change of schemaChanges) log.info({ change }, "schema change");
    const parts = await planParts(source, run.server, table, {
      workers: opts.tuning.workers,
      minRows: opts.tuning.minBatchSize,
      key: keyNames(key.columns),
      newLeaves: plan.newLeaves,
    });
    // What every run reads (changed rows, the key set, a resync into
    // staging) spares the source's buffer cache; changed rows in a narrow
    // cursor window go through its index. A first load keeps its parts.
    const recurringParts = spareSourceCache(run.server, table, parts);
    const filteredParts =
      plan.into !== "staging"
        ? parts
        : (plan.filter.kind === "cursor" &&
            (await narrowCursorRead(source, table, plan.filter, parts))) ||
          recurringParts;
    // Pairs opened ahead that no copy of this plan can use at once go now.
    const keysRead = plan.into === "staging" && plan.deletes === "against-keys";
    await pairsAhead.trim(Math.max(filteredParts.length, keysRead ? recurringParts.length : 0));
    const ctx: TableContext = {
      source: run,
      targetUrl,
      spareTargets: spares,
      pairsAhead,
      pool: opts.pool,
      parts,
      // Binary COPY skips text formatting and parsing, but carries type OIDs
      // inside arrays and composites: only for built-in types.
      format: table.columns.every((c) => c.binarySafe) ? "binary" : "text",
      signal: opts.signal,
      target,
      lockPid: opts.lockPid,
      targetServer,
      tuning: opts.tuning,
      table,
      targetName,
      key: key.columns,
      keyEnforced: key.enforced,
      filteredParts,
      keyParts: recurringParts,
      progress: (phase, p) =>
        opts.onProgress?.({
          table: tableName,
          mode: plan.mode,
          phase,
          bytes: p.bytes ?? 0,
          estimatedBytes: table.bytes,
          ...(p.total !== undefined ? { step: { done: p.done ?? 0, total: p.total } } : {}),
        }),
      log: (fields, msg) => log.info(fields, msg),
    };
    log.info(
      {
        parts: filteredParts.length,
        ...(filteredParts[0]?.byIndex && plan.filter.kind === "cursor"
          ? { byIndex: plan.filter.column }
          : {}),
        ...(filteredParts.some((p) => p.sequential) ||
        (keysRead && recurringParts.some((p) => p.sequential))
          ? { sequential: "bigger than the source's shared_buffers" }
          : {}),
        format: ctx.format,
        workers: opts.tuning.workers,
      },
      "copying",
    );

    try {
      // 6. Stage the rows the plan reads; then the source is no longer needed,
      // and neither is the snapshot, once every table of the run is done with it.
      const staged = await stageRows(ctx, plan);
      // Pairs the copies did not take (fewer parts than estimated) hold the snapshot: closed now.
      await pairsAhead.trim();
      // The reader's last question and its closing go on beside the merge.
      // Only a report: a lost connection must not fail the table now.
      const reader = source;
      source = undefined;
      const heldBy = run
        .oldestRunning(reader)
        .catch(() => null)
        .finally(() => run.closeReader(reader));
      const snapshotHeldMs = Date.now() - run.takenAt;
      opts.onReadDone();
      // 7. Apply them and commit the state with the last of the data.
      const applied = await applyStaged(
        ctx,
        plan,
        staged,
        stateDraft(run, spec, table, plan),
        opts,
      );
      log.info({ ...applied.counts, watermark: applied.watermark?.toString() }, "committed");
      const held = await heldBy;
      return {
        ...outcome(spec, targetName, plan, staged, applied, state),
        ...(held ? { heldBackBy: held } : {}),
        snapshotHeldMs,
        ...(schemaChanges.length > 0 ? { schemaChanges } : {}),
      };
    } finally {
      await dropWorkTables(target, targetName, RUN_WORK_TABLES).catch(() =>
        // A failed copy cuts the connections it ran on: the table's own, when lent.
        dropWorkTablesOnFresh(targetUrl, targetName),
      );
    }
  } finally {
    await pairsAhead.trim();
    if (source) await run.closeReader(source);
    closeSoon(target);
    trimSpares(spares);
  }
}

/**
 * Makes the target ready to take the plan's rows: its types and columns
 * changed as the source's were (returns those changes, one line each), no
 * work tables left by a crashed run.
 */
async function prepareTarget(
  target: pg.Client,
  targetName: QualifiedName,
  table: SourceTable,
  key: string[],
  existing: TargetTable | null,
  plan: Plan,
  evolution: Evolution,
): Promise<string[]> {
  const changes = await evolveTarget(target, targetName, table, evolution);
  await dropWorkTables(target, targetName, RUN_WORK_TABLES);
  // A first load's table is kept for the next first load to resume; any other plan drops it.
  if (plan.into !== "new-table") await dropLoad({ target, targetName });
  if (!existing) return changes;
  if (evolution.plan && evolution.plan.steps.length > 0)
    existing = (await readTargetTable(target, targetName))!;
  for (const sql of checkTargetTable(targetName, existing, table.columns, key)) {
    await target.query(sql);
  }
  if (plan.softDeletes && !existing.columns.has(SOURCE_DELETED_AT)) {
    await target.query(
      `ALTER TABLE ${quoteQualified(targetName)} ADD COLUMN ${quoteIdent(SOURCE_DELETED_AT)} timestamptz`,
    );
  }
  return changes;
}

/** The state this run commits, but for the counts and the cursor's high mark. */
function stateDraft(run: SourceRun, spec: TableSpec, table: SourceTable, plan: Plan): StateDraft {
  return {
    source: spec.source,
    sourceSystemId: run.identity.systemIdentifier,
    sourceTimeline: run.identity.timeline,
    sourceDatabaseOid: run.identity.databaseOid,
    sourceTableOid: table.oid,
    mode: plan.mode,
    watermark: plan.watermark,
    snapshot: run.snapshot.text,
    checkedDeletes: plan.deletes !== "none" || plan.mode === "full",
    leaves: table.leaves.map((l) => ({ oid: l.oid, relfilenode: l.relfilenode })),
    columns: storedColumns(table),
    types: storedTypes(table.userTypes),
    contentUntil: plan.contentUntil,
  };
}

function outcome(
  spec: TableSpec,
  targetName: QualifiedName,
  plan: Plan,
  staged: Staged,
  applied: Applied,
  state: TableState | null,
): TableOutcome {
  // In timestamp mode (and for sources without xmin) the watermark is the cursor's high mark.
  const byCursor = plan.mode === "timestamp" || (plan.watermark === null && plan.cursor !== null);
  return {
    table: displayName(spec.source),
    target: displayName(targetName),
    mode: plan.mode,
    ...(plan.reason ? { reason: plan.reason } : {}),
    ...(plan.notes.length > 0 ? { notes: plan.notes } : {}),
    ...applied.counts,
    watermark: byCursor ? applied.cursorValue : (applied.watermark?.toString() ?? null),
    previousWatermark: byCursor
      ? (state?.cursorValue ?? null)
      : (state?.watermark?.toString() ?? null),
    ...(staged.resumed ? { resumed: staged.resumed } : {}),
  };
}

/** The run's work tables dropped on a connection of their own; nothing is said if that fails too. */
async function dropWorkTablesOnFresh(targetUrl: string, targetName: QualifiedName): Promise<void> {
  const fresh = await connect(targetUrl, "target").catch(() => undefined);
  if (!fresh) return;
  await dropWorkTables(fresh, targetName, RUN_WORK_TABLES).catch(() => undefined);
  closeSoon(fresh);
}

async function hasNoRows(client: pg.Client, name: QualifiedName): Promise<boolean> {
  const { rows } = await client.query<{ e: boolean }>(
    `SELECT NOT EXISTS (SELECT 1 FROM ${quoteQualified(name)}) AS e`,
  );
  return rows[0]!.e;
}
