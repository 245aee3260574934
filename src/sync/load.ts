import { createHash } from "node:crypto";
import type pg from "pg";
import type { LimitFunction } from "p-limit";
import { connect } from "../db/connect.js";
import { quoteIdent, quoteQualified, type QualifiedName } from "../db/quote.js";
import type { ServerInfo } from "../db/server.js";
import type { SourceTable } from "../source/catalog.js";
import { bindRead, copyOutSql, type ReadRange } from "../source/read.js";
import { createTableSql, freeRelationName, sourceXminIndexSql } from "../target/ddl.js";
import {
  copyInSql,
  countNewSql,
  createKeysSql,
  createStageSql,
  deleteMissingSql,
  markMissingSql,
  mergeSql,
  upsertSql,
  type MergeSpec,
} from "../target/merge.js";
import { lockSharedDdl, PROJECT_SCHEMA } from "../target/project.js";
import { streamCopy } from "./copy.js";
import type { SourceRun } from "./source-run.js";
import type { Tuning } from "./tuning.js";

export interface Counts {
  rowsCopied: number;
  inserted: number;
  updated: number;
  deleted: number;
}

/** Everything the load paths share for one table's run. */
export interface LoadContext {
  run: SourceRun;
  targetUrl: string;
  /** The target connection that holds the table's lock; the run's final transaction is on it. */
  control: pg.Client;
  targetServer: ServerInfo;
  /** Worker slots shared by every table of the run. */
  pool: LimitFunction;
  tuning: Tuning;
  table: SourceTable;
  targetName: QualifiedName;
  key: string[];
  hasXmin: boolean;
  format: "text" | "binary";
  chunks: (ReadRange | undefined)[];
  /** Rows newer than this are read (incremental); null reads every row. */
  since: bigint | null;
  /** Timestamp mode: rows whose cursor column is at or after `from` are read. */
  cursor?: { column: string; type: string; from: string };
  softDeletes: boolean;
  onBytes: (bytes: number) => void;
  /** Phase timings and sizes, for the logs. */
  log: (fields: Record<string, unknown>, msg: string) => void;
  signal?: AbortSignal;
}

const columnsOf = (ctx: LoadContext) => ctx.table.columns.map((c) => c.name);

/** A name in the project schema tied to one target table, for its load/stage/keys tables. */
function workTable(ctx: LoadContext, kind: string): QualifiedName {
  const hash = createHash("sha256")
    .update(quoteQualified(ctx.targetName))
    .digest("hex")
    .slice(0, 16);
  return { schema: PROJECT_SCHEMA, name: `${kind}_${hash}` };
}

/**
 * Copies every chunk of the table's read into `into`, in parallel on the
 * worker pool, each chunk by its own reader (in the run's snapshot) and its
 * own target connection, committed as it ends.
 */
async function copyChunks(
  ctx: LoadContext,
  into: QualifiedName,
  read: { onlyNew: boolean; keysOnly?: boolean },
): Promise<number> {
  const columns = read.keysOnly ? ctx.key : columnsOf(ctx);
  // One failed part stops the others: queued parts do not start, running
  // ones are cancelled, and we return only once all have ended, so none
  // writes into the work tables after the caller dropped them (or into the
  // next attempt's, which have the same names).
  const stop = new AbortController();
  const signal = ctx.signal ? AbortSignal.any([ctx.signal, stop.signal]) : stop.signal;
  const settled = await Promise.allSettled(
    ctx.chunks.map((range) =>
      ctx.pool(async () => {
        signal.throwIfAborted();
        const reader = await ctx.run.openReader();
        let writer: pg.Client | undefined;
        let failed = false;
        try {
          writer = await connect(ctx.targetUrl, "target");
          const byCursor = read.onlyNew && ctx.cursor !== undefined;
          await bindRead(
            reader,
            ctx.run.snapshot,
            read.onlyNew && !byCursor ? ctx.since : null,
            range,
            byCursor ? ctx.cursor!.from : undefined,
          );
          const readSql = copyOutSql({
            table: ctx.table.name,
            columns,
            hasXmin: ctx.hasXmin,
            onlyNew: read.onlyNew && !byCursor,
            withoutXmin: read.keysOnly ?? false,
            ...(byCursor ? { cursor: { column: ctx.cursor!.column, type: ctx.cursor!.type } } : {}),
            ...(range ? { range } : {}),
            format: ctx.format,
          });
          const writeSql = copyInSql(into, columns, {
            format: ctx.format,
            withXmin: !read.keysOnly,
          });
          return await streamCopy(reader, readSql, writer, writeSql, ctx.onBytes, signal);
        } catch (err) {
          failed = true;
          if (!stop.signal.aborted) stop.abort(err);
          throw err;
        } finally {
          // A COPY cut off midway leaves its connection waiting for the rest
          // of the protocol exchange: end those sockets rather than wait.
          if (failed) {
            reader.connection.stream.destroy();
            writer?.connection.stream.destroy();
          }
          await ctx.run.closeReader(reader);
          await writer?.end().catch(() => undefined);
        }
      }),
    ),
  );
  // The first failure is the cause; the others were cancelled because of it.
  if (stop.signal.aborted) throw stop.signal.reason;
  const failure = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failure) throw failure.reason;
  return settled.reduce((a, r) => a + (r as PromiseFulfilledResult<number>).value, 0);
}

/**
 * Builds indexes one after another, on one worker slot. Measured on a
 * freshly loaded table: the first scan sets every tuple's hint bits and
 * rewrites every page, and two builds at once (or parallel maintenance
 * workers) fight over that and over the cores the servers share; one after
 * another, without parallel workers, was a third faster (bench/README.md).
 */
async function buildIndexes(ctx: LoadContext, statements: string[]): Promise<void> {
  await ctx.pool(async () => {
    const c = await connect(ctx.targetUrl, "target");
    try {
      await c.query(
        `SELECT set_config('maintenance_work_mem',
                  CASE WHEN pg_size_bytes(current_setting('maintenance_work_mem')) < 268435456
                       THEN '256MB' ELSE current_setting('maintenance_work_mem') END, false),
                set_config('max_parallel_maintenance_workers', '0', false)`,
      );
      for (const sql of statements) await c.query(sql);
    } finally {
      await c.end().catch(() => undefined);
    }
  });
}

/**
 * First load into a new table, as pg_dump and pgcopydb do it: COPY in
 * parallel into a bare table, build the key and the source_xmin index
 * after the data, then publish. The table is loaded under a
 * private name in the project schema and moved into place in the
 * transaction that writes the watermark: until then users see no table, and
 * a crash leaves only a private table the next run drops.
 */
export async function loadNewTable(
  ctx: LoadContext,
  finish: (counts: Counts, rows: QualifiedName) => Promise<void>,
): Promise<Counts> {
  const load = workTable(ctx, "load");
  const loadQ = quoteQualified(load);
  const keyIndex = `${load.name}_key`;
  const xminIndex = `${load.name}_xmin`;
  await ctx.control.query(`DROP TABLE IF EXISTS ${loadQ}`);
  await ctx.control.query(
    createTableSql(load, ctx.table.columns, { softDeletes: ctx.softDeletes }),
  );
  try {
    let t = Date.now();
    const rows = await copyChunks(ctx, load, { onlyNew: false });
    ctx.log({ rows, ms: Date.now() - t }, "copied");
    t = Date.now();
    await buildIndexes(ctx, [
      `CREATE UNIQUE INDEX ${quoteIdent(keyIndex)} ON ${loadQ} (${ctx.key.map(quoteIdent).join(", ")})`,
      sourceXminIndexSql(load, xminIndex),
      // Statistics now, for the users' first queries and the next run's merge plans.
      `ANALYZE ${loadQ}`,
    ]);
    ctx.log({ ms: Date.now() - t }, "indexes built");
    const { schema, name } = ctx.targetName;
    const counts = { rowsCopied: rows, inserted: rows, updated: 0, deleted: 0 };
    await inTransaction(ctx.control, async () => {
      await lockSharedDdl(ctx.control);
      await ctx.control.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
      await ctx.control.query(`ALTER TABLE ${loadQ} SET SCHEMA ${quoteIdent(schema)}`);
      await ctx.control.query(
        `ALTER TABLE ${quoteIdent(schema)}.${quoteIdent(load.name)} RENAME TO ${quoteIdent(name)}`,
      );
      const pkey = await freeRelationName(ctx.control, schema, name, "_pkey");
      await ctx.control.query(
        `ALTER TABLE ${quoteQualified(ctx.targetName)} ADD CONSTRAINT ${quoteIdent(pkey)} PRIMARY KEY USING INDEX ${quoteIdent(keyIndex)}`,
      );
      const xminName = await freeRelationName(ctx.control, schema, name, "_source_xmin_idx");
      await ctx.control.query(
        `ALTER INDEX ${quoteIdent(schema)}.${quoteIdent(xminIndex)} RENAME TO ${quoteIdent(xminName)}`,
      );
      await finish(counts, ctx.targetName);
    });
    return counts;
  } finally {
    await ctx.control.query(`DROP TABLE IF EXISTS ${loadQ}`).catch(() => undefined);
  }
}

/**
 * First load into an existing empty table (made by the user): COPY straight
 * in, in parallel. A crash leaves part of the rows and no watermark; the
 * next run then resyncs through staging, which is idempotent.
 */
export async function loadEmptyTable(
  ctx: LoadContext,
  finish: (counts: Counts, rows: QualifiedName) => Promise<void>,
): Promise<Counts> {
  const rows = await copyChunks(ctx, ctx.targetName, { onlyNew: false });
  const counts = { rowsCopied: rows, inserted: rows, updated: 0, deleted: 0 };
  await inTransaction(ctx.control, () => finish(counts, ctx.targetName));
  return counts;
}

/**
 * Incremental runs, and full resyncs of a table that has rows: COPY in
 * parallel into an unlogged staging table, then merge by key in slices of
 * at most maxBatchSize rows, each its own transaction; the last slice
 * commits with the watermark (`finish`). A crash before that leaves the old
 * watermark (merged slices are simply merged again, writing nothing) and a
 * staging table the next run drops.
 *
 * Deleted rows: a full resync removes (or marks) target rows missing from
 * the staged set; an incremental run with `checkDeletes` first copies the
 * source's key set and does the same against it.
 */
export async function loadStaged(
  ctx: LoadContext,
  targetOid: string,
  opts: { full: boolean; checkDeletes: boolean; compareContent: boolean },
  finish: (counts: Counts, rows: QualifiedName) => Promise<void>,
): Promise<Counts> {
  const stage = { schema: PROJECT_SCHEMA, name: `stage_${targetOid}` };
  const keys = { schema: PROJECT_SCHEMA, name: `keys_${targetOid}` };
  const spec: MergeSpec = {
    target: ctx.targetName,
    stage,
    columns: columnsOf(ctx),
    key: ctx.key,
    compareContent: opts.compareContent,
    softDeletes: ctx.softDeletes,
  };
  const c = ctx.control;
  // Only one run holds this table's lock: work tables here are a crashed run's.
  await c.query(`DROP TABLE IF EXISTS ${quoteQualified(stage)}, ${quoteQualified(keys)}`);
  await c.query(createStageSql(spec));
  try {
    let t = Date.now();
    const rowsCopied = await copyChunks(ctx, stage, { onlyNew: !opts.full });
    ctx.log({ rows: rowsCopied, ms: Date.now() - t }, "staged");
    const reconcile = !opts.full && opts.checkDeletes;
    if (reconcile) {
      await c.query(createKeysSql(spec, keys));
      await copyChunks(ctx, keys, { onlyNew: false, keysOnly: true });
      await c.query(`ANALYZE ${quoteQualified(keys)}`);
    }
    await c.query(`ANALYZE ${quoteQualified(stage)}`);
    t = Date.now();

    const slices = await sliceBounds(c, stage, rowsCopied, ctx.tuning.maxBatchSize);
    const counts: Counts = { rowsCopied, inserted: 0, updated: 0, deleted: 0 };
    const targetRows = await estimatedRows(c, ctx.targetName);
    const mergeSlice = async (bounds: [string, string] | null) => {
      const s: MergeSpec = { ...spec, slice: bounds !== null };
      const params: string[] = bounds ? [...bounds] : [];
      const sliceRows = bounds ? ctx.tuning.maxBatchSize : rowsCopied;
      if (sliceRows * 20 < targetRows) {
        // A few rows against a big table: probing the key index per staged
        // row beats the hash join over the whole table the planner tends to
        // pick (2.5x faster for 1% of 2M rows in bench/README.md).
        await c.query("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off");
      }
      const { rows } = await c.query<{ n: string }>(countNewSql(s), params);
      const inserted = Number(rows[0]!.n);
      const merged = await c.query(ctx.targetServer.hasMerge ? mergeSql(s) : upsertSql(s), params);
      counts.inserted += inserted;
      counts.updated += (merged.rowCount ?? 0) - inserted;
    };
    for (const bounds of slices.slice(0, -1)) {
      await inTransaction(c, () => mergeSlice(bounds));
    }
    await inTransaction(c, async () => {
      await mergeSlice(slices[slices.length - 1] ?? null);
      if (opts.full || reconcile) {
        const against = { ...spec, stage: opts.full ? stage : keys };
        const sql = ctx.softDeletes ? markMissingSql(against) : deleteMissingSql(against);
        counts.deleted = (await c.query(sql)).rowCount ?? 0;
      }
      await finish(counts, stage);
    });
    ctx.log({ slices: slices.length, ms: Date.now() - t }, "merged");
    return counts;
  } finally {
    await c
      .query(`DROP TABLE IF EXISTS ${quoteQualified(stage)}, ${quoteQualified(keys)}`)
      .catch(() => undefined);
  }
}

async function estimatedRows(c: pg.Client, table: QualifiedName): Promise<number> {
  const { rows } = await c.query<{ n: number }>(
    "SELECT greatest(reltuples, 0)::float8 AS n FROM pg_class WHERE oid = $1::regclass",
    [quoteQualified(table)],
  );
  return rows[0]?.n ?? 0;
}

/**
 * Page ranges of the staging table holding about maxRows rows each, as tid
 * bounds; [null] (the whole table) when one slice will do.
 */
async function sliceBounds(
  c: pg.Client,
  stage: QualifiedName,
  rows: number,
  maxRows: number,
): Promise<([string, string] | null)[]> {
  if (rows <= maxRows) return [null];
  const { rows: r } = await c.query<{ pages: string }>(
    "SELECT pg_relation_size($1::regclass) / current_setting('block_size')::int AS pages",
    [quoteQualified(stage)],
  );
  const pages = Number(r[0]!.pages);
  const n = Math.ceil(rows / maxRows);
  const per = Math.max(1, Math.ceil(pages / n));
  const out: [string, string][] = [];
  for (let from = 0; from < pages; from += per) {
    // The last slice's upper bound is past any page: rows are all below it.
    const to = from + per >= pages ? 4294967294 : from + per;
    out.push([`(${from},0)`, `(${to},0)`]);
  }
  return out.length > 0 ? out : [null];
}

export async function inTransaction<T>(c: pg.Client, fn: () => Promise<T>): Promise<T> {
  await c.query("BEGIN");
  try {
    const out = await fn();
    await c.query("COMMIT");
    return out;
  } catch (err) {
    await c.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
}
