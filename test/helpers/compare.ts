import assert from "node:assert/strict";
import type pg from "pg";
import { sync, validate, type TableSpec } from "../../src/index.js";
import type { TableResult } from "../../src/sync/types.js";
import type { TuningInput } from "../../src/sync/tuning.js";
/** A server or database the test can run SQL on. */
interface Queryable {
  sql<T extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    params?: unknown[],
    database?: string,
  ): Promise<T[]>;
}

/**
 * Every row of a table as text, ordered by key: what "the target equals the
 * source" means, compared as a user would see it.
 */
export async function tableText(
  cluster: Queryable,
  database: string,
  table: string,
  columns: string[],
  orderBy: string[],
): Promise<string[]> {
  const rows = await cluster.sql<{ r: string }>(
    `SELECT ROW(${columns.join(", ")})::text AS r FROM ${table} ORDER BY ${orderBy.join(", ")}`,
    [],
    database,
  );
  return rows.map((r) => r.r);
}

/** Column list of a table, quoted, in order (for comparing a source with its copy). */
export async function columnList(
  cluster: Queryable,
  database: string,
  table: string,
): Promise<string[]> {
  const rows = await cluster.sql<{ c: string }>(
    `SELECT quote_ident(attname) AS c FROM pg_attribute
      WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [table],
    database,
  );
  return rows.map((r) => r.c);
}

/**
 * The copy's rows equal the source's: every row's text (the source's
 * columns, in key order) is the same on both sides.
 */
export async function assertSameRows(
  source: Queryable,
  sourceTable: string,
  target: Queryable,
  targetTable: string,
  key: string[],
  opts: { sourceDb?: string; targetDb?: string; message?: string } = {},
): Promise<void> {
  const cols = await columnList(source, opts.sourceDb ?? "postgres", sourceTable);
  assert.deepEqual(
    await tableText(target, opts.targetDb ?? "postgres", targetTable, cols, key),
    await tableText(source, opts.sourceDb ?? "postgres", sourceTable, cols, key),
    opts.message,
  );
}

/** `validate --deep` agrees: no row missing, extra or different. */
export async function assertDeepValidates(
  source: Queryable & { url(): string },
  target: Queryable & { url(): string },
  spec: TableSpec,
): Promise<void> {
  const [v] = await validate({
    source: source.url(),
    target: target.url(),
    tables: [spec],
    deep: true,
  });
  assert.equal(v!.status, "ok", v!.error);
  assert.deepEqual(
    [v!.deep!.missing, v!.deep!.extra, v!.deep!.different],
    [0, 0, 0],
    "validate --deep agrees",
  );
}

/** Syncs one table and asserts it went well: the result, for the test's own checks. */
export async function syncOk(
  source: { url(): string },
  target: { url(): string },
  spec: TableSpec,
  tuning?: TuningInput,
): Promise<TableResult> {
  const [r] = await sync({
    source: source.url(),
    target: target.url(),
    tables: [spec],
    ...(tuning ? { tuning } : {}),
  });
  assert.equal(r!.status, "ok", r!.error);
  return r!;
}
