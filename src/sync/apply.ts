import type pg from "pg";
import { keyNames } from "../db/key.js";
import { closeSoon } from "../db/connect.js";
import { displayName, quoteIdent, quoteQualified, type QualifiedName } from "../db/quote.js";
import { withSettings, withTransaction } from "../db/tx.js";
import { freeRelationName, SOURCE_DELETED_AT } from "../target/ddl.js";
import { dropLoadPlan } from "../target/load-plan.js";
import { assertTargetLockHeld } from "../target/lock.js";
import { deleteMissingSql, markMissingSql, type MergeSpec } from "../target/merge.js";
import { hasUpsertArbiter, mergeRows } from "../target/merge-rows.js";
import { createSchemaIfMissing, lockSharedDdl } from "../target/project.js";
import { writeState, type StateUpdate } from "../target/state.js";
import { columnsOf, type TableContext } from "./context.js";
import { takeTarget, trimSpares } from "./copy.js";
import { indexNames } from "./load.js";
import type { Plan } from "./plan.js";
import type { Staged } from "./stage.js";

export interface Counts {
  rowsCopied: number;
  inserted: number;
  updated: number;
  deleted: number;
}

/** The state the run commits, but for what only the final transaction knows. */
export type StateDraft = Omit<StateUpdate, keyof Counts | "cursorValue">;

export interface Applied {
  counts: Counts;
  /** The cursor's new high mark, when the plan has a cursor. */
  cursorValue: string | null;
  /** The watermark committed. */
  watermark: bigint | null;
}

export interface ApplyOptions {
  /** Deleting or marking more than this share of the target's rows needs allowMassDelete. */
  massDeleteShare: number;
  allowMassDelete: boolean;
}

/**
 * Moves what was staged into the target and commits the run's state in the
 * same transaction as the last of the data: a crash before that commit
 * leaves the old watermark (the run is redone, writing nothing twice), never
 * a watermark ahead of the data.
 */
export async function applyStaged(
  ctx: TableContext,
  plan: Plan,
  staged: Staged,
  draft: StateDraft,
  opts: ApplyOptions,
): Promise<Applied> {
  const started = Date.now();
  const counts: Counts = { rowsCopied: staged.rows, inserted: 0, updated: 0, deleted: 0 };
  let cursorValue: string | null = null;
  const watermark = staged.watermark !== undefined ? staged.watermark : draft.watermark;
  // The rows this run read, for the cursor's high mark: a first load has moved into place by then.
  const rowsRead = plan.into === "new-table" ? ctx.targetName : staged.table;
  const commitState = async () => {
    cursorValue = await newCursorValue(ctx.target, plan, rowsRead);
    await writeState(ctx.target, ctx.targetName, { ...draft, ...counts, watermark, cursorValue });
    await assertTargetLockHeld(ctx.target, ctx.targetName, ctx.lockPid);
  };
  ctx.signal?.throwIfAborted();
  switch (plan.into) {
    case "new-table":
      counts.inserted = staged.inserted ?? staged.rows;
      await withTransaction(ctx.target, async () => {
        await publishLoadedTable(ctx, staged.table);
        await dropLoadPlan(ctx.target, ctx.targetName);
        await commitState();
      });
      break;
    case "empty-table":
      counts.inserted = staged.rows;
      await withTransaction(ctx.target, commitState);
      break;
    case "staging":
      await mergeStaged(ctx, plan, staged, counts, commitState, opts);
      break;
  }
  ctx.log({ ms: Date.now() - started }, "applied");
  return { counts, cursorValue, watermark };
}

/**
 * Moves a first load from the project schema into place under the target's
 * name, with its key as primary key: until this commits, users see no table.
 */
async function publishLoadedTable(ctx: TableContext, load: QualifiedName): Promise<void> {
  const c = ctx.target;
  const { schema, name } = ctx.targetName;
  await lockSharedDdl(c);
  await createSchemaIfMissing(c, schema);
  await c.query(`ALTER TABLE ${quoteQualified(load)} SET SCHEMA ${quoteIdent(schema)}`);
  await c.query(
    `ALTER TABLE ${quoteIdent(schema)}.${quoteIdent(load.name)} RENAME TO ${quoteIdent(name)}`,
  );
  const [keyIndex, xminIndex] = indexNames(load);
  const pkey = await freeRelationName(c, schema, name, "_pkey");
  await c.query(
    `ALTER TABLE ${quoteQualified(ctx.targetName)} ADD CONSTRAINT ${quoteIdent(pkey)} PRIMARY KEY USING INDEX ${quoteIdent(keyIndex)}`,
  );
  const xminName = await freeRelationName(c, schema, name, "_source_xmin_idx");
  await c.query(
    `ALTER INDEX ${quoteIdent(schema)}.${quoteIdent(xminIndex)} RENAME TO ${quoteIdent(xminName)}`,
  );
}

/** Merges of fewer rows than this are not split across connections: a connection costs more than it saves. */
const MIN_PARALLEL_MERGE_ROWS = 10_000;

/**
 * Merges staged rows by key in slices (ctid ranges of the staging table) of
 * at most maxBatchSize rows, each its own transaction, up to one per worker
 * at once on connections of their own. The last slice runs in the final
 * transaction on the table's locked connection, which also reconciles
 * deletes and writes the state, and commits only once every other slice
 * has: a failure anywhere rolls back that final transaction, and slices
 * already committed are merged again, writing nothing, by the next run.
 * Slices hold disjoint keys (the staged rows of a keyed source), so they
 * never wait on one another.
 */
async function mergeStaged(
  ctx: TableContext,
  plan: Plan,
  staged: Staged,
  counts: Counts,
  commitState: () => Promise<void>,
  opts: ApplyOptions,
): Promise<void> {
  const c = ctx.target;
  const spec: MergeSpec = {
    target: ctx.targetName,
    stage: staged.table,
    columns: columnsOf(ctx),
    key: ctx.key,
    compareContent: plan.compareContent,
    softDeletes: plan.softDeletes,
  };
  const parallel = Math.min(ctx.tuning.workers, Math.floor(staged.rows / MIN_PARALLEL_MERGE_ROWS));
  const wanted = Math.max(1, Math.ceil(staged.rows / ctx.tuning.maxBatchSize), parallel);
  const slices = await sliceBounds(c, staged.table, wanted);
  const targetRows = await estimatedRows(c, ctx.targetName);
  // A few rows against a big table: probing the key index per staged row
  // beats the hash join over the whole table the planner tends to pick
  // (0.27 s against 0.93 s for 1% of 2M rows, docs/performance.md). Only
  // for the statements it was measured on.
  const few = (staged.rows / slices.length) * 20 < targetRows;
  // On 15/16, few rows go by INSERT … ON CONFLICT where the target's key
  // index can arbitrate as MERGE would; else count + MERGE.
  const upsert =
    few &&
    ctx.targetServer.hasMerge &&
    !ctx.targetServer.hasMergeReturning &&
    (await hasUpsertArbiter(c, ctx.targetName, keyNames(ctx.key)));
  const planner: Record<string, string> = few
    ? { enable_hashjoin: "off", enable_mergejoin: "off" }
    : {};
  let done = 0;
  const mergeSlice = async (client: pg.Client, slice: [string, string] | null) => {
    const s: MergeSpec = slice ? { ...spec, slice } : spec;
    await withSettings(client, planner, async () => {
      ctx.signal?.throwIfAborted();
      const merged = await mergeRows(client, ctx.targetServer, s, upsert);
      counts.inserted += merged.inserted;
      counts.updated += merged.updated;
    });
    ctx.progress("merge", { done: ++done, total: slices.length });
  };
  const others = slices.slice(0, -1);
  // Spare connections the slices will not use are not held through the merge.
  trimSpares(ctx.spareTargets, others.length);
  const last = slices[slices.length - 1]!;
  ctx.progress("merge", { done, total: slices.length });
  await withTransaction(c, async () => {
    // A failed slice stops the queued ones from starting; so does the run's signal.
    const stop = new AbortController();
    const failFast = <T>(p: Promise<T>) =>
      p.catch((err: unknown) => {
        stop.abort();
        throw err;
      });
    const rest = Promise.all(
      others.map((slice) =>
        ctx.pool(async () => {
          stop.signal.throwIfAborted();
          ctx.signal?.throwIfAborted();
          const other = await takeTarget(ctx);
          try {
            // Each slice commits only while the run still holds the table's
            // lock: a run that lost it (its connection ended) must not write
            // older rows over those of a run that has started since.
            await withTransaction(other, async () => {
              await mergeSlice(other, slice);
              await assertTargetLockHeld(other, ctx.targetName, ctx.lockPid);
            });
          } finally {
            closeSoon(other);
          }
        }),
      ),
    );
    // Both settle before the transaction ends either way: no slice is left
    // running against a table whose run has given up.
    const [mine, theirs] = await Promise.allSettled([
      failFast(mergeSlice(c, last)),
      failFast(rest),
    ]);
    if (mine.status === "rejected") throw mine.reason;
    if (theirs.status === "rejected") throw theirs.reason;

    const against = plan.deletes === "against-staged" ? staged.table : staged.keys;
    if (against) {
      ctx.progress("deletes", {});
      ctx.signal?.throwIfAborted();
      const t = Date.now();
      const sql = plan.softDeletes ? markMissingSql : deleteMissingSql;
      counts.deleted = (await c.query(sql(ctx.targetName, against, ctx.key))).rowCount ?? 0;
      ctx.log({ deleted: counts.deleted, ms: Date.now() - t }, "deletes reconciled");
      await checkMassDelete(ctx, plan, counts, targetRows, opts);
    }
    await commitState();
  });
}

/**
 * The last line of defence against reading a table as empty when it is not
 * (a TRUNCATE or rewrite racing the run, a role that lost its grants on a
 * partition): a run that would delete or mark more than a share of the
 * target's rows stops before committing, unless told to go ahead or a fresh
 * look at the source agrees that the rows are gone.
 */
async function checkMassDelete(
  ctx: TableContext,
  plan: Plan,
  counts: Counts,
  targetRows: number,
  opts: ApplyOptions,
): Promise<void> {
  const { deleted, inserted } = counts;
  if (opts.allowMassDelete || deleted === 0) return;
  // Soft deletes keep the rows they mark, so the table's size overstates
  // what was live before this run: a copy whose rows are mostly marked
  // already could lose all its live ones and stay under the share. Count
  // them (rows marked by this run were live; rows it inserted were not there).
  // It is a mass delete when live < deleted / share - deleted + inserted:
  // live rows are counted up to just past that bound, not through the table.
  const bound = Math.ceil(deleted / opts.massDeleteShare - deleted + inserted) + 1;
  const before = plan.softDeletes
    ? (await liveRowsUpTo(ctx.target, ctx.targetName, bound)) + deleted - inserted
    : Math.max(targetRows, deleted);
  if (!isMassDelete(deleted, before, opts.massDeleteShare)) return;
  const fresh = await freshSourceCount(ctx);
  if (sourceConfirmsDelete({ deleted, inserted, before, fresh })) return;
  throw new Error(
    `refusing to ${plan.softDeletes ? "mark as deleted" : "delete"} ${deleted} of ${before} rows of ${displayName(ctx.targetName)}: ` +
      `the source now has ${fresh} rows (a TRUNCATE or rewrite may have raced this run); nothing was committed. ` +
      `Run again, or pass --allow-mass-delete if the rows are really gone`,
  );
}

/** More than `share` of the target's rows would go. */
export function isMassDelete(deleted: number, targetRows: number, share: number): boolean {
  return deleted > 0 && deleted > Math.max(targetRows, deleted) * share;
}

/**
 * The rows really are gone if the source now holds about what the copy
 * keeps (its rows before, less those deleted, plus those this run
 * inserted): rows written since may add some, but a table read as empty
 * would still hold about all of them.
 */
export function sourceConfirmsDelete(n: {
  deleted: number;
  inserted: number;
  before: number;
  fresh: number;
}): boolean {
  return n.fresh <= n.before - n.deleted + n.inserted + n.deleted / 2;
}

/** Target rows not marked as deleted, at most `limit`, in the caller's transaction (after this run's marks). */
async function liveRowsUpTo(c: pg.Client, table: QualifiedName, limit: number): Promise<number> {
  const { rows } = await c.query<{ n: string }>(
    `SELECT count(*)::bigint AS n FROM (SELECT 1 FROM ${quoteQualified(table)}` +
      ` WHERE ${quoteIdent(SOURCE_DELETED_AT)} IS NULL LIMIT $1::bigint) AS live`,
    [limit],
  );
  return Number(rows[0]!.n);
}

async function freshSourceCount(ctx: TableContext): Promise<number> {
  const client = await ctx.source.freshClient();
  try {
    const { rows } = await client.query<{ n: string }>(
      `SELECT count(*)::bigint AS n FROM ${quoteQualified(ctx.table.name)}`,
    );
    return Number(rows[0]!.n);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * The cursor's new high mark: the largest value among the rows this run
 * read (every row at or after the lookback bound), never lower than the
 * last one.
 */
async function newCursorValue(
  c: pg.Client,
  plan: Plan,
  rows: QualifiedName,
): Promise<string | null> {
  if (!plan.cursor) return null;
  const previous = plan.filter.kind === "cursor" ? plan.filter.last : null;
  const { column, type } = plan.cursor;
  const { rows: r } = await c.query<{ v: string | null }>(
    `SELECT greatest($1::${type}, (SELECT max(${quoteIdent(column)}) FROM ${quoteQualified(rows)}))::text AS v`,
    [previous],
  );
  return r[0]!.v;
}

async function estimatedRows(c: pg.Client, table: QualifiedName): Promise<number> {
  const { rows } = await c.query<{ n: number }>(
    "SELECT greatest(reltuples, 0)::float8 AS n FROM pg_class WHERE oid = $1::regclass",
    [quoteQualified(table)],
  );
  return rows[0]?.n ?? 0;
}

/**
 * `n` page ranges of the staging table, as tid bounds; [null] (the whole
 * table) for one.
 */
async function sliceBounds(
  c: pg.Client,
  stage: QualifiedName,
  n: number,
): Promise<([string, string] | null)[]> {
  if (n <= 1) return [null];
  const { rows: r } = await c.query<{ pages: string }>(
    "SELECT pg_relation_size($1::regclass) / current_setting('block_size')::int AS pages",
    [quoteQualified(stage)],
  );
  const pages = Number(r[0]!.pages);
  const per = Math.max(1, Math.ceil(pages / n));
  const out: [string, string][] = [];
  for (let from = 0; from < pages; from += per) {
    // The last slice's upper bound is past any page: rows are all below it.
    const to = from + per >= pages ? 4294967294 : from + per;
    out.push([`(${from},0)`, `(${to},0)`]);
  }
  return out.length > 0 ? out : [null];
}
