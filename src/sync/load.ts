import { closeSoon } from "../db/connect.js";
import { SQLSTATE, sqlState } from "../db/errors.js";
import { keyEqualsSql, keyNames } from "../db/key.js";
import { quoteIdent, quoteQualified, type QualifiedName } from "../db/quote.js";
import { withTransaction } from "../db/tx.js";
import type { ReadPart } from "../source/read.js";
import { needsFullRescan } from "../source/xid.js";
import { createTableSql, SOURCE_XMIN, sourceXminIndexSql } from "../target/ddl.js";
import {
  dropLoadPlan,
  markLoadCurrent,
  readLoadPlan,
  recordLoadPart,
  writeLoadPlan,
  type DonePart,
  type LoadSource,
} from "../target/load-plan.js";
import { createKeysSql, createStageSql, deleteMissingSql } from "../target/merge.js";
import { dropWorkTables, workTable } from "../target/work.js";
import { copyParts, takeTarget, trimSpares } from "./copy.js";
import { columnsOf, type TableContext } from "./context.js";
import { refuseBadLoadedKeys } from "./key-check.js";
import type { Plan } from "./plan.js";
import type { Staged } from "./stage.js";
import type { ResumeReport } from "./types.js";

/**
 * A first load: every row into a private table in the project schema, its
 * key and index built after the data; the apply step moves it into place.
 *
 * The load resumes. Its parts (TID or key ranges per leaf) are stored with
 * what the source looked like, and each part's COPY commits with a row
 * saying it is done and on which snapshot it was read. A later run that
 * finds the load table and a plan for the same source (same table, same
 * storage of each leaf, same columns and key) reads only the parts not done.
 * Parts read on older snapshots are then brought up to this run's (see
 * `catchUp`): the published table is the source as of one snapshot, as a
 * load in one go would be.
 */
/** A first load's key index or NOT NULL failed: the key is not unique, or has NULLs. */
const KEY_VIOLATIONS = new Set<string>([SQLSTATE.uniqueViolation, SQLSTATE.notNullViolation]);

export async function loadNewTable(ctx: TableContext, plan: Plan): Promise<Staged> {
  const started = Date.now();
  const load = workTable("load", ctx.targetName);
  const snapshot = ctx.source.snapshot;
  // Only rows with an xmin can be caught up by it (views and foreign tables start over).
  const resumable = plan.watermark !== null;
  const source = loadSource(ctx, plan);
  let stored = resumable ? await readLoadPlan(ctx.target, ctx.targetName, source) : null;
  const why = stored ? await whyNotResume(ctx, load, stored.matches, stored.done) : null;
  if (why) {
    ctx.log({ reason: why }, "starting the first load over");
    stored = null;
  }
  const parts = stored?.parts ?? ctx.parts;
  const done = stored?.done ?? new Map<number, DonePart>();
  if (!stored) {
    await withTransaction(ctx.target, async () => {
      await dropLoad(ctx);
      await ctx.target.query(
        createTableSql(load, ctx.table.columns, { softDeletes: plan.softDeletes }),
      );
      if (resumable) await writeLoadPlan(ctx.target, ctx.targetName, source, parts);
    });
  } else {
    ctx.log({ partsDone: done.size, parts: parts.length }, "resuming an interrupted first load");
    // Built by a run stopped after its last part: built again after the rest.
    await ctx.target.query(
      `DROP INDEX IF EXISTS ${indexNames(load)
        .map((n) => quoteQualified({ schema: load.schema, name: n }))
        .join(", ")}`,
    );
  }

  const todo = parts.map((part, i) => ({ part, i })).filter(({ i }) => !done.has(i));
  let bytes = 0;
  const rows = await copyParts(
    ctx,
    load,
    { columns: columnsOf(ctx), xmin: resumable ? "full" : "null", filter: { kind: "all" } },
    (n) => ctx.progress("copy", { bytes: (bytes += n) }),
    {
      parts: todo.map((t) => t.part),
      ...(resumable
        ? {
            record: (writer, k, n) =>
              recordLoadPart(writer, ctx.targetName, todo[k]!.i, snapshot, n),
          }
        : {}),
    },
  );
  ctx.log({ rows, parts: todo.length, ms: Date.now() - started }, "copied");

  let resumed: ResumeReport | undefined;
  let watermark = plan.watermark;
  let inserted = rows;
  if (done.size > 0 && watermark !== null) {
    const skipped = [...done.values()];
    const rowsSkipped = skipped.reduce((a, d) => a + d.rows, 0);
    const oldest = skipped.reduce((a, d) => (d.snapshotXmin < a ? d.snapshotXmin : a), watermark);
    const fixed = await catchUp(ctx, load, parts, oldest);
    resumed = {
      partsSkipped: done.size,
      partsTotal: parts.length,
      rowsSkipped,
      rowsCaughtUp: fixed.caughtUp,
      rowsRemoved: fixed.removed,
    };
    inserted = rowsSkipped + rows - fixed.replaced + fixed.caughtUp - fixed.removed;
    // The load now holds the rows of this run's snapshot. The watermark is
    // still the oldest part's: the next run reads again what changed since,
    // writing only rows that differ (correctness.md, "Resumed first loads").
    watermark = oldest;
  }
  await buildIndexes(ctx, load).catch((err: unknown) =>
    KEY_VIOLATIONS.has(sqlState(err) ?? "")
      ? refuseBadLoadedKeys(ctx, load, err)
      : Promise.reject(err),
  );
  return {
    rows: rows + (resumed?.rowsCaughtUp ?? 0),
    table: load,
    inserted,
    watermark,
    ...(resumed ? { resumed } : {}),
  };
}

/** The source as a stored plan must find it again (target/load-plan.ts). */
function loadSource(ctx: TableContext, plan: Plan): LoadSource {
  const id = ctx.source.identity;
  return {
    systemIdentifier: id.systemIdentifier,
    timeline: id.timeline,
    databaseOid: id.databaseOid,
    tableOid: ctx.table.oid,
    leaves: ctx.table.leaves.map((l) => ({ oid: l.oid, relfilenode: l.relfilenode })),
    columns: ctx.table.columns.map((c) => ({ attnum: c.attnum, name: c.name, type: c.type })),
    key: keyNames(ctx.key),
    softDeletes: plan.softDeletes,
  };
}

/** Why a stored load cannot go on, or null when it can. */
async function whyNotResume(
  ctx: TableContext,
  load: QualifiedName,
  matches: boolean,
  done: Map<number, DonePart>,
): Promise<string | null> {
  if (!matches)
    return "the source table, its storage (VACUUM FULL, CLUSTER, TRUNCATE), columns or key changed";
  const { rows } = await ctx.target.query<{ ok: boolean }>(
    "SELECT to_regclass($1) IS NOT NULL AS ok",
    [quoteQualified(load)],
  );
  if (!rows[0]!.ok) return "the load table is gone";
  for (const d of done.values()) {
    if (needsFullRescan(ctx.source.snapshot.xmax, d.snapshotXmin))
      return "its parts are over a billion transactions old";
  }
  return null;
}

/** Drops a load table and its plan: a crashed run's, or one that cannot go on. */
export async function dropLoad(ctx: Pick<TableContext, "target" | "targetName">): Promise<void> {
  await dropWorkTables(ctx.target, ctx.targetName, ["load"]);
  await dropLoadPlan(ctx.target, ctx.targetName);
}

/**
 * Brings parts read on older snapshots up to this run's, which read the
 * rest. Every row version the source has now was either written before the
 * oldest part's snapshot (its xmin is below that snapshot's xmin: it was
 * visible to every part's snapshot, and sits where its part read it, the
 * only version of its key any part saw), or after: then it is read again
 * now, with every other row whose xmin is at or after that xmin. So:
 * replace every version of the keys read again with the version read now,
 * and remove rows whose key the source no longer has (its key set, read
 * now). What is left is the source as of this run's snapshot. (Deciding by
 * the highest source_xmin instead would be wrong: a transaction that started
 * earlier can write a row's later version.)
 */
async function catchUp(
  ctx: TableContext,
  load: QualifiedName,
  parts: ReadPart[],
  since: bigint,
): Promise<{ replaced: number; caughtUp: number; removed: number }> {
  const started = Date.now();
  const stage = workTable("stage", ctx.targetName);
  const keys = workTable("keys", ctx.targetName);
  const columns = columnsOf(ctx);
  await dropWorkTables(ctx.target, ctx.targetName, ["stage", "keys"]);
  await ctx.target.query(createStageSql({ target: load, stage, columns }));
  await ctx.target.query(createKeysSql(load, keys, keyNames(ctx.key)));
  let bytes = 0;
  const onBytes = (n: number) => ctx.progress("copy", { bytes: (bytes += n) });
  const changed = await copyParts(
    ctx,
    stage,
    { columns, xmin: "full", filter: { kind: "xmin", since } },
    onBytes,
    { parts },
  );
  await copyParts(
    ctx,
    keys,
    { columns: keyNames(ctx.key), xmin: "none", filter: { kind: "all" } },
    onBytes,
    { parts },
  );
  ctx.signal?.throwIfAborted();
  await ctx.target.query(`ANALYZE ${quoteQualified(stage)}, ${quoteQualified(keys)}`);
  const join = keyEqualsSql(ctx.key, "t", "s");
  const all = [...columns, SOURCE_XMIN].map(quoteIdent).join(", ");
  const out = await withTransaction(ctx.target, async () => {
    ctx.signal?.throwIfAborted();
    const replaced = await ctx.target.query(
      `DELETE FROM ${quoteQualified(load)} AS t USING ${quoteQualified(stage)} AS s WHERE ${join}`,
    );
    await ctx.target.query(
      `INSERT INTO ${quoteQualified(load)} (${all}) SELECT ${all} FROM ${quoteQualified(stage)}`,
    );
    const removed = await ctx.target.query(deleteMissingSql(load, keys, ctx.key));
    await markLoadCurrent(ctx.target, ctx.targetName, ctx.source.snapshot);
    return { replaced: replaced.rowCount ?? 0, caughtUp: changed, removed: removed.rowCount ?? 0 };
  });
  await dropWorkTables(ctx.target, ctx.targetName, ["stage", "keys"]);
  ctx.log({ ...out, ms: Date.now() - started }, "resumed parts brought up to this snapshot");
  return out;
}

/** The load table's key and source_xmin indexes; publishing renames them. */
export function indexNames(load: QualifiedName): [string, string] {
  return [`${load.name}_key`, `${load.name}_xmin`];
}

/**
 * Builds a first load's indexes one after another, on one worker slot.
 * Measured on a freshly loaded table: the first scan sets every tuple's hint
 * bits and rewrites every page, and two builds at once fight over that and
 * over the cores the servers share; one after another was a third faster.
 * The server's own parallel maintenance workers may help a build: the key's
 * index on 10M rows took 5.2 s with two against 7.5 s without (the same on
 * 2M rows), so their number is left to the server's setting
 * (docs/performance.md).
 */
async function buildIndexes(ctx: TableContext, load: QualifiedName): Promise<void> {
  const started = Date.now();
  const loadQ = quoteQualified(load);
  const [keyIndex, xminIndex] = indexNames(load);
  // The primary key needs its columns NOT NULL; set here, a NULL key fails
  // in this step with the duplicates, not when the table is published.
  const nullable = ctx.key.filter(
    (k) => !ctx.table.columns.find((c) => c.name === k.name)!.notNull,
  );
  const statements = [
    ...nullable.map((k) => `ALTER TABLE ${loadQ} ALTER COLUMN ${quoteIdent(k.name)} SET NOT NULL`),
    `CREATE UNIQUE INDEX ${quoteIdent(keyIndex)} ON ${loadQ} (${keyNames(ctx.key).map(quoteIdent).join(", ")})`,
    sourceXminIndexSql(load, xminIndex),
    // Statistics now, for the users' first queries and the next run's merge plans.
    `ANALYZE ${loadQ}`,
  ];
  await ctx.pool(async () => {
    ctx.signal?.throwIfAborted();
    // Its settings below are its own: it is closed afterwards, not handed on.
    const c = await takeTarget(ctx);
    trimSpares(ctx.spareTargets);
    try {
      await c.query(
        `SELECT set_config('maintenance_work_mem',
                  CASE WHEN pg_size_bytes(current_setting('maintenance_work_mem')) < 268435456
                       THEN '256MB' ELSE current_setting('maintenance_work_mem') END, false)`,
      );
      for (const [i, sql] of statements.entries()) {
        ctx.progress("index", { done: i, total: statements.length });
        ctx.signal?.throwIfAborted();
        await c.query(sql);
      }
    } finally {
      closeSoon(c);
    }
  });
  ctx.log({ ms: Date.now() - started }, "indexes built");
}
