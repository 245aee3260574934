import type pg from "pg";
import type { LimitFunction } from "p-limit";
import { connect } from "../db/connect.js";
import { displayName, quoteIdent, quoteQualified, type QualifiedName } from "../db/quote.js";
import { readServerInfo } from "../db/server.js";
import { readSourceTable, XMIN_RELKINDS, type Column } from "../source/catalog.js";
import { planChunks } from "../source/chunks.js";
import {
  checkTargetTable,
  ensureUserTypes,
  readTargetTable,
  SOURCE_DELETED_AT,
} from "../target/ddl.js";
import { lockTargetTable } from "../target/lock.js";
import { ensureProjectSchema } from "../target/project.js";
import { readState, writeState, type TableState } from "../target/state.js";
import type { Logger } from "../log.js";
import { loadEmptyTable, loadNewTable, loadStaged, type Counts, type LoadContext } from "./load.js";
import { checkSnapshotNotStale, planRun, resolveKey } from "./plan.js";
import type { SourceRun } from "./source-run.js";
import type { Tuning } from "./tuning.js";
import type { ProgressEvent, TableResult, TableSpec } from "./types.js";

export interface TableRunOptions {
  full: boolean;
  waitForLock: boolean;
  logger: Logger;
  pool: LimitFunction;
  tuning: Tuning;
  onProgress?: ((e: ProgressEvent) => void) | undefined;
  signal?: AbortSignal | undefined;
}

/**
 * One run of one table, start to end: read the source catalog, decide full or
 * incremental, prepare the target, stream rows in parallel, merge, and
 * commit the new watermark with the last of the data.
 */
export async function syncTable(
  run: SourceRun,
  targetUrl: string,
  spec: TableSpec,
  opts: TableRunOptions,
): Promise<Omit<TableResult, "durationMs" | "status" | "error">> {
  const targetName = spec.target ?? spec.source;
  const tableName = displayName(spec.source);
  const log = opts.logger.child({ table: tableName });
  const control = await connect(targetUrl, "target");
  let reader: pg.Client | undefined;
  try {
    const targetServer = await readServerInfo(control);
    // Source checks first: a missing table or key fails before the target is touched.
    reader = await run.openReader();
    const table = await readSourceTable(reader, spec.source);
    const key = resolveKey(table, spec);

    await ensureProjectSchema(control);
    await lockTargetTable(control, targetName, { wait: opts.waitForLock });
    const state = await readState(control, targetName);
    await checkSnapshotNotStale(run, state, targetName);
    const hasXmin = XMIN_RELKINDS.has(table.relkind);
    const existing = await readTargetTable(control, targetName);
    const empty = existing === null || (await hasNoRows(control, targetName));
    const sourceHasRows =
      existing !== null && empty && state !== null && !(await hasNoRows(reader, spec.source));
    const plan = planRun(
      run,
      table,
      state,
      existing && { ...existing, empty },
      spec,
      hasXmin,
      opts.full,
      sourceHasRows,
    );
    const softDeletes = spec.deletes === "soft";
    const checkDeletes =
      plan.mode === "full" ||
      (spec.deletes !== undefined &&
        spec.deletes !== "ignore" &&
        deleteCheckDue(state, spec.deleteCheckEvery));
    log.info({ mode: plan.mode, reason: plan.reason, checkDeletes }, "planned");

    await ensureUserTypes(control, table.userTypes);
    if (existing) {
      for (const sql of checkTargetTable(targetName, existing, table.columns, key)) {
        await control.query(sql);
      }
      if (softDeletes && !existing.columns.has(SOURCE_DELETED_AT)) {
        await control.query(
          `ALTER TABLE ${quoteQualified(targetName)} ADD COLUMN ${quoteIdent(SOURCE_DELETED_AT)} timestamptz`,
        );
      }
    }
    const chunks = await planChunks(reader, run.server, table, {
      workers: opts.tuning.workers,
      minRows: opts.tuning.minBatchSize,
      key,
    });
    const cursor = spec.cursor ? cursorColumn(table.columns, spec.cursor) : undefined;
    const cursorFrom =
      plan.mode === "timestamp"
        ? await lookbackFrom(reader, cursor!, state!.cursorValue!, spec.lookback)
        : undefined;
    await run.closeReader(reader);
    reader = undefined;

    let bytes = 0;
    const ctx: LoadContext = {
      run,
      targetUrl,
      control,
      targetServer,
      pool: opts.pool,
      tuning: opts.tuning,
      table,
      targetName,
      key,
      hasXmin,
      // Binary COPY skips text formatting and parsing, but carries type OIDs
      // inside arrays and composites: only for built-in types.
      format: table.columns.every((c) => c.binarySafe) ? "binary" : "text",
      chunks,
      since: plan.mode === "xmin" ? state!.watermark : null,
      ...(cursorFrom !== undefined ? { cursor: { ...cursor!, from: cursorFrom } } : {}),
      softDeletes: softDeletes || (existing?.columns.has(SOURCE_DELETED_AT) ?? false),
      onBytes: (n) => {
        bytes += n;
        opts.onProgress?.({
          table: tableName,
          bytes,
          estimatedBytes: table.bytes,
          mode: plan.mode,
        });
      },
      log: (fields, msg) => log.info(fields, msg),
      ...(opts.signal ? { signal: opts.signal } : {}),
    };

    const snapshot = run.snapshot;
    const watermark = hasXmin ? snapshot.xmin : null;
    let cursorValue: string | null = null;
    const finish = async (counts: Counts, rows: QualifiedName) => {
      // The cursor's new high mark: the largest value among the rows this
      // run read (every row at or after the lookback bound), never lower
      // than the last one.
      if (cursor) {
        const previous = plan.mode === "timestamp" ? state!.cursorValue : null;
        const { rows: r } = await control.query<{ v: string | null }>(
          `SELECT greatest($1::${cursor.type}, (SELECT max(${quoteIdent(cursor.column)}) FROM ${quoteQualified(rows)}))::text AS v`,
          [previous],
        );
        cursorValue = r[0]!.v;
      }
      await writeState(control, targetName, {
        source: spec.source,
        sourceSystemId: run.identity.systemIdentifier,
        sourceTimeline: run.identity.timeline,
        sourceDatabaseOid: run.identity.databaseOid,
        sourceTableOid: table.oid,
        mode: plan.mode,
        watermark,
        cursorValue,
        snapshot: snapshot.text,
        checkedDeletes: checkDeletes,
        ...counts,
      });
    };

    log.info(
      { chunks: chunks.length, format: ctx.format, workers: opts.tuning.workers },
      "copying",
    );
    let counts: Counts;
    if (plan.mode === "full" && !existing) counts = await loadNewTable(ctx, finish);
    // Straight into an empty table only when nothing is stored for it: with a
    // stored watermark, a reload cut off midway would leave a half-filled
    // table next to a watermark that says its rows were copied.
    else if (plan.mode === "full" && empty && state === null)
      counts = await loadEmptyTable(ctx, finish);
    else
      counts = await loadStaged(
        ctx,
        existing!.oid,
        // Without xmin to tell changed rows apart, content decides.
        { full: plan.mode === "full", checkDeletes, compareContent: plan.mode !== "xmin" },
        finish,
      );
    log.info({ ...counts, watermark: watermark?.toString(), bytes }, "committed");

    // Only a report: the data is committed, so a lost coordinator must not fail the table now.
    const held = await run.oldestRunning().catch(() => null);
    const previousWatermark = state?.watermark ?? null;
    const byCursor = plan.mode === "timestamp" || (!hasXmin && cursor !== undefined);
    return {
      table: tableName,
      target: displayName(targetName),
      mode: plan.mode,
      ...(plan.reason ? { reason: plan.reason } : {}),
      ...counts,
      // In timestamp mode the watermark is the cursor's high mark.
      watermark: byCursor ? cursorValue : (watermark?.toString() ?? null),
      previousWatermark: byCursor
        ? (state?.cursorValue ?? null)
        : (previousWatermark?.toString() ?? null),
      ...(held ? { heldBackBy: held } : {}),
    };
  } finally {
    if (reader) await run.closeReader(reader);
    await control.end().catch(() => undefined);
  }
}

const TIME_TYPES = /^(timestamp|date)/;
const NUMBER_TYPES = /^(smallint|integer|bigint|numeric)/;

/** The cursor column and its type, which must order rows in time. */
function cursorColumn(columns: Column[], name: string): { column: string; type: string } {
  const c = columns.find((x) => x.name === name);
  if (!c) throw new Error(`cursor column ${quoteIdent(name)} does not exist`);
  if (!TIME_TYPES.test(c.type) && !NUMBER_TYPES.test(c.type)) {
    throw new Error(
      `cursor column ${quoteIdent(name)} is ${c.type}: it must be a timestamp, a date or a number`,
    );
  }
  return { column: c.name, type: c.type };
}

/**
 * Where a timestamp-mode read starts: the last high mark minus the
 * lookback, which catches rows that committed late with an earlier cursor
 * value (default 5 minutes for times, 0 for numbers). Computed on the source.
 */
async function lookbackFrom(
  client: pg.Client,
  cursor: { column: string; type: string },
  last: string,
  lookback: string | number | undefined,
): Promise<string> {
  if (TIME_TYPES.test(cursor.type)) {
    const interval = durationToInterval(lookback ?? "5m");
    const { rows } = await client.query<{ v: string }>(
      `SELECT ($1::${cursor.type} - $2::interval)::${cursor.type}::text AS v`,
      [last, interval],
    );
    return rows[0]!.v;
  }
  const { rows } = await client.query<{ v: string }>(
    `SELECT ($1::${cursor.type} - $2::numeric)::text AS v`,
    [last, String(lookback ?? 0)],
  );
  return rows[0]!.v;
}

const UNIT_NAMES: Record<string, string> = { s: "seconds", m: "minutes", h: "hours", d: "days" };

function durationToInterval(d: string | number): string {
  if (typeof d === "number") return `${d} seconds`;
  const m = /^(\d+)([smhd])$/.exec(d);
  if (!m)
    throw new Error(`lookback: expected a duration like 30s, 5m, 1h; got ${JSON.stringify(d)}`);
  return `${m[1]} ${UNIT_NAMES[m[2]!]}`;
}

async function hasNoRows(client: pg.Client, name: QualifiedName): Promise<boolean> {
  const { rows } = await client.query<{ e: boolean }>(
    `SELECT NOT EXISTS (SELECT 1 FROM ${quoteQualified(name)}) AS e`,
  );
  return rows[0]!.e;
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Whether this run looks for deletes: every run, every N runs, or once per duration. */
export function deleteCheckDue(
  state: TableState | null,
  every: number | string | undefined,
  now = new Date(),
): boolean {
  if (every === undefined || state === null) return true;
  if (typeof every === "number") return state.runsSinceDeleteCheck + 1 >= every;
  const m = /^(\d+)([smhd])$/.exec(every);
  if (!m)
    throw new Error(
      `deleteCheckEvery: expected a number of runs or a duration like 15m, 6h, 1d; got ${JSON.stringify(every)}`,
    );
  if (!state.lastDeleteCheckAt) return true;
  return now.getTime() - state.lastDeleteCheckAt.getTime() >= Number(m[1]) * UNIT_MS[m[2]!]!;
}
