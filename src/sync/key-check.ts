import type pg from "pg";
import { keyNames, keyProblemsSql } from "../db/key.js";
import {
  displayIdent,
  displayName,
  quoteIdent,
  quoteQualified,
  type QualifiedName,
} from "../db/quote.js";
import type { Statement } from "../db/statement.js";
import { InputError } from "../input-error.js";
import type { TableContext } from "./context.js";
import type { Plan } from "./plan.js";
import type { Staged } from "./stage.js";

/**
 * Staged keys looked up on the source one statement at a time up to this
 * many; more than that, and the whole source is grouped instead (one scan
 * either way, but no list of keys that large in a parameter).
 */
const MAX_KEYS_LOOKED_UP = 100_000;

interface KeyProblems {
  nulls: number;
  duplicates: number;
  duplicateRows: number;
}

/**
 * A key the source does not enforce (given with --key, or an inheritance
 * parent's primary key) may hold duplicates or NULLs there. Merged as they
 * are, two rows with one key collapse into one (or fail on an internal
 * index), and a NULL key matches nothing. So the rows a run staged are
 * checked before anything is merged, and a bad key is refused with its
 * counts:
 * - a full read staged every row: they are checked themselves;
 * - with the source's key set copied (deletes tracked): the key set, which
 *   holds every source row's key;
 * - else the staged rows, then the source for other rows holding their keys
 *   (an unchanged row sharing its key with a new one).
 */
export async function refuseBadStagedKeys(
  ctx: TableContext,
  plan: Plan,
  staged: Staged,
): Promise<void> {
  if (ctx.keyEnforced || plan.into !== "staging") return;
  if (plan.filter.kind === "all" || staged.keys) {
    await refuseIfBad(ctx, ctx.target, keyProblemsSql(staged.keys ?? staged.table, ctx.key));
    return;
  }
  await refuseIfBad(ctx, ctx.target, keyProblemsSql(staged.table, ctx.key));
  if (staged.rows === 0) return;
  const among = staged.rows <= MAX_KEYS_LOOKED_UP ? await stagedKeys(ctx, staged.table) : undefined;
  const reader = await ctx.source.openReader();
  try {
    await refuseIfBad(ctx, reader, keyProblemsSql(ctx.table.name, ctx.key, among));
  } finally {
    await ctx.source.closeReader(reader);
  }
}

/**
 * After a first load's key index or NOT NULL failed (unique_violation,
 * not_null_violation): the same refusal, with the load table's counts,
 * instead of an error naming an internal index.
 */
export async function refuseBadLoadedKeys(
  ctx: TableContext,
  load: QualifiedName,
  err: unknown,
): Promise<never> {
  await refuseIfBad(ctx, ctx.target, keyProblemsSql(load, ctx.key));
  throw err;
}

async function refuseIfBad(ctx: TableContext, client: pg.Client, sql: Statement): Promise<void> {
  const { rows } = await client.query<{
    nulls: string;
    duplicates: string;
    duplicate_rows: string;
  }>(sql);
  const r = rows[0]!;
  const found: KeyProblems = {
    nulls: Number(r.nulls),
    duplicates: Number(r.duplicates),
    duplicateRows: Number(r.duplicate_rows),
  };
  if (found.nulls === 0 && found.duplicates === 0) return;
  throw new InputError(badKeyMessage(ctx, found));
}

function badKeyMessage(ctx: TableContext, p: KeyProblems): string {
  const cols = keyNames(ctx.key).map(displayIdent).join(", ");
  const what: string[] = [];
  if (p.duplicates > 0) {
    what.push(
      p.duplicates === 1
        ? `1 value is held by ${p.duplicateRows} rows`
        : `${p.duplicates} values are held by more than one row (${p.duplicateRows} rows)`,
    );
  }
  if (p.nulls > 0) what.push(`${p.nulls} ${p.nulls === 1 ? "row has" : "rows have"} a NULL in it`);
  return (
    `source table ${displayName(ctx.table.name)}: its key (${cols}) is not unique and NOT NULL there: ` +
    `${what.join(", and ")}; merged by that key, rows would collapse or be lost, so nothing was committed; ` +
    `give key columns whose values are unique and NOT NULL (--key, or key: [...] in the config)`
  );
}

/** The staged rows' distinct keys, one text array per key column. */
async function stagedKeys(ctx: TableContext, stage: QualifiedName): Promise<string[][]> {
  const cols = ctx.key.map((k, i) => `t.${quoteIdent(k.name)}::text AS k${i}`).join(", ");
  const arrays = ctx.key.map((_, i) => `coalesce(array_agg(d.k${i}), '{}') AS k${i}`).join(", ");
  const { rows } = await ctx.target.query<Record<string, string[]>>(
    `SELECT ${arrays} FROM (SELECT DISTINCT ${cols} FROM ${quoteQualified(stage)} AS t) AS d`,
  );
  return ctx.key.map((_, i) => rows[0]![`k${i}`]!);
}
