import { connect } from "../db/connect.js";
import { SQLSTATE, sqlState } from "../db/errors.js";
import { keyNames } from "../db/key.js";
import { quoteIdent, quoteQualified, type QualifiedName } from "../db/quote.js";
import { createTableSql, sourceXminIndexSql } from "../target/ddl.js";
import { createKeysSql, createStageSql } from "../target/merge.js";
import { workTable } from "../target/work.js";
import { copyParts } from "./copy.js";
import { columnsOf, type TableContext } from "./context.js";
import { refuseBadLoadedKeys, refuseBadStagedKeys } from "./key-check.js";
import type { Plan } from "./plan.js";

/** A first load's key index or NOT NULL failed: the key is not unique, or has NULLs. */
const KEY_VIOLATIONS = new Set<string>([SQLSTATE.uniqueViolation, SQLSTATE.notNullViolation]);

/** Where a run's rows landed, for the apply step. */
export interface Staged {
  /** Rows copied out of the source. */
  rows: number;
  /** The table holding them: the private load table, the (empty) target itself, or the staging table. */
  table: QualifiedName;
  /** The source's key set, when deletes are reconciled against it. */
  keys?: QualifiedName;
}

/**
 * Copies the rows the plan reads into where the plan puts them. Nothing
 * here is visible to users: a first load goes into a private table, changes
 * into an unlogged staging table; only an empty table nobody has synced is
 * filled in place.
 */
export async function stageRows(ctx: TableContext, plan: Plan): Promise<Staged> {
  const started = Date.now();
  let bytes = 0;
  const onBytes = (n: number) => ctx.progress("copy", { bytes: (bytes += n) });
  const xmin = plan.watermark !== null ? "full" : "null";
  const read = { columns: columnsOf(ctx), xmin, filter: plan.filter } as const;
  let staged: Staged;
  switch (plan.into) {
    case "new-table": {
      const load = workTable("load", ctx.targetName);
      await ctx.target.query(
        createTableSql(load, ctx.table.columns, { softDeletes: plan.softDeletes }),
      );
      const rows = await copyParts(ctx, load, read, onBytes);
      ctx.log({ rows, ms: Date.now() - started }, "copied");
      await buildIndexes(ctx, load).catch((err: unknown) =>
        KEY_VIOLATIONS.has(sqlState(err) ?? "")
          ? refuseBadLoadedKeys(ctx, load, err)
          : Promise.reject(err),
      );
      staged = { rows, table: load };
      break;
    }
    case "empty-table": {
      const rows = await copyParts(ctx, ctx.targetName, read, onBytes);
      staged = { rows, table: ctx.targetName };
      break;
    }
    case "staging": {
      const stage = workTable("stage", ctx.targetName);
      await ctx.target.query(
        createStageSql({ target: ctx.targetName, stage, columns: columnsOf(ctx) }),
      );
      const rows = await copyParts(ctx, stage, read, onBytes);
      ctx.log({ rows, ms: Date.now() - started }, "staged");
      staged = { rows, table: stage };
      if (plan.deletes === "against-keys") staged.keys = await stageKeys(ctx);
      await refuseBadStagedKeys(ctx, plan, staged);
      break;
    }
  }
  return staged;
}

/** The source's key set, every row, in the run's snapshot: what deletes are reconciled against. */
async function stageKeys(ctx: TableContext): Promise<QualifiedName> {
  const started = Date.now();
  const keys = workTable("keys", ctx.targetName);
  await ctx.target.query(createKeysSql(ctx.targetName, keys, keyNames(ctx.key)));
  let bytes = 0;
  const rows = await copyParts(
    ctx,
    keys,
    { columns: keyNames(ctx.key), xmin: "none", filter: { kind: "all" } },
    (n) => ctx.progress("keys", { bytes: (bytes += n) }),
  );
  // Statistics, so the anti-join against millions of keys is planned as a hash join.
  await ctx.target.query(`ANALYZE ${quoteQualified(keys)}`);
  ctx.log({ rows, ms: Date.now() - started }, "source keys copied");
  return keys;
}

/**
 * Builds a first load's indexes one after another, on one worker slot.
 * Measured on a freshly loaded table: the first scan sets every tuple's hint
 * bits and rewrites every page, and two builds at once (or parallel
 * maintenance workers) fight over that and over the cores the servers
 * share; one after another, without parallel workers, was a third faster
 * (docs/performance.md).
 */
async function buildIndexes(ctx: TableContext, load: QualifiedName): Promise<void> {
  const started = Date.now();
  const loadQ = quoteQualified(load);
  // The primary key needs its columns NOT NULL; set here, a NULL key fails
  // in this step with the duplicates, not when the table is published.
  const nullable = ctx.key.filter(
    (k) => !ctx.table.columns.find((c) => c.name === k.name)!.notNull,
  );
  const statements = [
    ...nullable.map((k) => `ALTER TABLE ${loadQ} ALTER COLUMN ${quoteIdent(k.name)} SET NOT NULL`),
    `CREATE UNIQUE INDEX ${quoteIdent(`${load.name}_key`)} ON ${loadQ} (${keyNames(ctx.key).map(quoteIdent).join(", ")})`,
    sourceXminIndexSql(load, `${load.name}_xmin`),
    // Statistics now, for the users' first queries and the next run's merge plans.
    `ANALYZE ${loadQ}`,
  ];
  await ctx.pool(async () => {
    const c = await connect(ctx.targetUrl, "target");
    try {
      await c.query(
        `SELECT set_config('maintenance_work_mem',
                  CASE WHEN pg_size_bytes(current_setting('maintenance_work_mem')) < 268435456
                       THEN '256MB' ELSE current_setting('maintenance_work_mem') END, false),
                set_config('max_parallel_maintenance_workers', '0', false)`,
      );
      for (const [i, sql] of statements.entries()) {
        ctx.progress("index", { done: i, total: statements.length });
        await c.query(sql);
      }
    } finally {
      await c.end().catch(() => undefined);
    }
  });
  ctx.log({ ms: Date.now() - started }, "indexes built");
}
