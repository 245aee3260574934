import { keyNames } from "../db/key.js";
import { quoteQualified, type QualifiedName } from "../db/quote.js";
import { createKeysSql, createStageSql } from "../target/merge.js";
import { workTable } from "../target/work.js";
import { copyParts } from "./copy.js";
import { columnsOf, type TableContext } from "./context.js";
import { refuseBadStagedKeys } from "./key-check.js";
import { loadNewTable } from "./load.js";
import type { Plan } from "./plan.js";
import type { ResumeReport } from "./types.js";

/** Where a run's rows landed, for the apply step. */
export interface Staged {
  /** Rows copied out of the source. */
  rows: number;
  /** The table holding them: the private load table, the (empty) target itself, or the staging table. */
  table: QualifiedName;
  /** The source's key set, when deletes are reconciled against it. */
  keys?: QualifiedName;
  /** Rows a first load publishes (when not all it read: a resumed load). */
  inserted?: number;
  /** The watermark to commit, when not the plan's (a resumed load: its oldest part's). */
  watermark?: bigint | null;
  resumed?: ResumeReport;
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
    case "new-table":
      staged = await loadNewTable(ctx, plan);
      break;
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
      const rows = await copyParts(ctx, stage, read, onBytes, { parts: ctx.filteredParts });
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
    { parts: ctx.keyParts },
  );
  // Statistics, so the anti-join against millions of keys is planned as a hash join.
  ctx.signal?.throwIfAborted();
  await ctx.target.query(`ANALYZE ${quoteQualified(keys)}`);
  ctx.log({ rows, ms: Date.now() - started }, "source keys copied");
  return keys;
}
