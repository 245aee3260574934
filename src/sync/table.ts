import { pipeline } from "node:stream/promises";
import type pg from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import { connect } from "../db/connect.js";
import { displayName, quoteIdent, quoteQualified, type QualifiedName } from "../db/quote.js";
import { readServerInfo, type ServerInfo } from "../db/server.js";
import { readSourceTable, XMIN_RELKINDS, type SourceTable } from "../source/catalog.js";
import { bindXidWindow, copyOutSql } from "../source/read.js";
import { parseSnapshot, type Snapshot } from "../source/snapshot.js";
import { needsFullRescan, xidWindow } from "../source/xid.js";
import {
  checkTargetTable,
  createTableSql,
  ensureUserTypes,
  keyDdl,
  readTargetTable,
  RESERVED_COLUMNS,
  type TargetTable,
} from "../target/ddl.js";
import { lockTargetTable } from "../target/lock.js";
import {
  copyInSql,
  countNewSql,
  createStageSql,
  deleteMissingSql,
  mergeSql,
  upsertSql,
  type MergeSpec,
} from "../target/merge.js";
import { ensureProjectSchema, PROJECT_SCHEMA } from "../target/project.js";
import { readState, writeState, type TableState } from "../target/state.js";
import type { Logger } from "../log.js";
import type { SourceRun } from "./source-run.js";
import type { TableResult, TableSpec } from "./types.js";

interface Plan {
  mode: "full" | "xmin";
  reason?: string;
}

/**
 * One run of one table, start to end: read the source catalog, decide full or
 * incremental, prepare the target, stream rows, merge, and commit the new
 * watermark with the last of the data.
 */
export async function syncTable(
  run: SourceRun,
  targetUrl: string,
  spec: TableSpec,
  opts: { full: boolean; waitForLock: boolean; logger: Logger },
): Promise<Omit<TableResult, "durationMs" | "status" | "error">> {
  const targetName = spec.target ?? spec.source;
  const log = opts.logger.child({ table: displayName(spec.source) });
  const target = await connect(targetUrl, "target");
  let reader: pg.Client | undefined;
  try {
    const targetServer = await readServerInfo(target);
    // Source checks first: a missing table or key fails before the target is touched.
    reader = await run.openReader();
    const table = await readSourceTable(reader, spec.source);
    const key = resolveKey(table, spec);

    await ensureProjectSchema(target);
    await lockTargetTable(target, targetName, { wait: opts.waitForLock });
    const state = await readState(target, targetName);
    await checkSnapshotNotStale(run, state, targetName);
    const hasXmin = XMIN_RELKINDS.has(table.relkind);
    const existing = await readTargetTable(target, targetName);
    const plan = planRun(run, table, state, existing, spec, hasXmin, opts.full);
    log.info({ mode: plan.mode, reason: plan.reason }, "planned");

    const previousWatermark = state?.watermark ?? null;
    const columns = table.columns.map((c) => c.name);
    const snapshot = run.snapshot;
    const watermark = hasXmin ? snapshot.xmin : null;
    if (hasXmin) {
      const window =
        plan.mode === "xmin"
          ? xidWindow(snapshot.xmax, previousWatermark!)
          : xidWindow(snapshot.xmax, snapshot.xmax);
      await bindXidWindow(reader, window);
    }
    const readSql = copyOutSql({
      table: spec.source,
      columns,
      hasXmin,
      onlyNew: plan.mode === "xmin",
    });

    await ensureUserTypes(target, table.userTypes);
    const stateUpdate = (counts: {
      rowsCopied: number;
      inserted: number;
      updated: number;
      deleted: number;
    }) => ({
      source: spec.source,
      sourceSystemId: run.identity.systemIdentifier,
      sourceTimeline: run.identity.timeline,
      sourceDatabaseOid: run.identity.databaseOid,
      sourceTableOid: table.oid,
      mode: plan.mode,
      watermark,
      cursorValue: null,
      snapshot: snapshot.text,
      ...counts,
    });

    let counts: { rowsCopied: number; inserted: number; updated: number; deleted: number };
    const direct =
      plan.mode === "full" && (existing === null || (await isEmpty(target, targetName)));
    if (direct) {
      counts = await loadDirect(target, reader, {
        targetName,
        table,
        key,
        existing,
        readSql,
        finish: async (rowsCopied) => {
          const c = { rowsCopied, inserted: rowsCopied, updated: 0, deleted: 0 };
          await writeState(target, targetName, stateUpdate(c));
          return c;
        },
      });
    } else {
      for (const sql of checkTargetTable(targetName, existing!, table.columns, key)) {
        await target.query(sql);
      }
      counts = await loadViaStage(target, targetServer, reader, {
        targetName,
        targetOid: existing!.oid,
        columns,
        key,
        full: plan.mode === "full",
        readSql,
        writeState: async (c) => writeState(target, targetName, stateUpdate(c)),
      });
    }
    log.info({ ...counts, watermark: watermark?.toString() }, "committed");

    const held = await run.oldestRunning();
    return {
      table: displayName(spec.source),
      target: displayName(targetName),
      mode: plan.mode,
      ...(plan.reason ? { reason: plan.reason } : {}),
      ...counts,
      watermark: watermark?.toString() ?? null,
      previousWatermark: previousWatermark?.toString() ?? null,
      ...(held ? { heldBackBy: held } : {}),
    };
  } finally {
    if (reader) await run.closeReader(reader);
    await target.end().catch(() => undefined);
  }
}

export function resolveKey(table: SourceTable, spec: TableSpec): string[] {
  const key = spec.key ?? table.primaryKey;
  if (!key || key.length === 0) {
    throw new Error(
      `source table ${displayName(table.name)} has no primary key; give its key columns (--key or key: [...] in the config)`,
    );
  }
  const names = new Set(table.columns.map((c) => c.name));
  for (const k of key) {
    if (!names.has(k))
      throw new Error(`key column ${quoteIdent(k)} is not a column of ${displayName(table.name)}`);
  }
  for (const r of RESERVED_COLUMNS) {
    if (names.has(r)) {
      throw new Error(
        `source table ${displayName(table.name)} has a column named ${r}, which xmin-sync reserves`,
      );
    }
  }
  return key;
}

/**
 * Thrown when another run committed this table from a newer snapshot than
 * this run's; `sync` retries the table on a fresh snapshot.
 */
export class StaleSnapshotError extends Error {
  override name = "StaleSnapshotError";
}

/**
 * A run whose snapshot predates the one another run already committed for
 * this table (it waited for the table's lock, or reached the table late in a
 * long multi-table run) would MERGE older row versions over newer ones and
 * move the watermark back; planRun would even take the newer watermark for a
 * restore and resync the whole table from the old snapshot, deleting rows
 * inserted since. Found by test/lock.test.ts. A source whose ids really went
 * backwards (its current xmax is behind the stored one) is left to planRun.
 */
async function checkSnapshotNotStale(
  run: SourceRun,
  state: TableState | null,
  name: QualifiedName,
): Promise<void> {
  if (!state || state.watermark === null) return;
  const id = run.identity;
  if (
    state.sourceSystemId !== id.systemIdentifier ||
    state.sourceTimeline !== id.timeline ||
    state.sourceDatabaseOid !== id.databaseOid
  ) {
    return;
  }
  let stored: Snapshot;
  try {
    stored = parseSnapshot(state.snapshot);
  } catch {
    return;
  }
  const ours = run.snapshot;
  if (stored.xmax <= ours.xmax && state.watermark <= ours.xmin) return;
  const now = await run.currentSnapshot();
  if (now.xmax < stored.xmax) return;
  throw new StaleSnapshotError(
    `${displayName(name)} was synced by another run from a newer snapshot (${stored.text}) than this run's (${ours.text})`,
  );
}

function planRun(
  run: SourceRun,
  table: SourceTable,
  state: TableState | null,
  existing: TargetTable | null,
  spec: TableSpec,
  hasXmin: boolean,
  forceFull: boolean,
): Plan {
  const mode = spec.mode ?? "auto";
  if (mode === "timestamp")
    throw new Error("mode timestamp is not supported yet; use auto, xmin or full");
  if (mode === "xmin" && !hasXmin) {
    throw new Error(
      `${displayName(table.name)} is a view or foreign table: its rows have no xmin; use mode full`,
    );
  }
  if (mode === "full" || forceFull) return { mode: "full", reason: "requested" };
  if (!hasXmin) return { mode: "full", reason: "source has no xmin (view or foreign table)" };
  if (!state || state.watermark === null) return { mode: "full", reason: "first run" };
  if (!existing) return { mode: "full", reason: "target table missing" };
  const id = run.identity;
  if (state.sourceSystemId !== id.systemIdentifier && state.sourceSystemId && id.systemIdentifier) {
    return { mode: "full", reason: "source cluster changed (system identifier)" };
  }
  if (
    state.sourceTimeline !== id.timeline &&
    state.sourceTimeline !== null &&
    id.timeline !== null
  ) {
    return { mode: "full", reason: "source timeline changed (failover or restore)" };
  }
  if (state.sourceDatabaseOid !== id.databaseOid)
    return { mode: "full", reason: "source database changed" };
  if (state.sourceTableOid !== table.oid)
    return { mode: "full", reason: "source table was recreated" };
  if (run.snapshot.xmax < state.watermark) {
    return { mode: "full", reason: "source transaction ids went backwards (restore or failover)" };
  }
  if (needsFullRescan(run.snapshot.xmax, state.watermark)) {
    return { mode: "full", reason: "watermark is 2^32 or more transactions old" };
  }
  return { mode: "xmin" };
}

async function isEmpty(client: pg.Client, name: QualifiedName): Promise<boolean> {
  const { rows } = await client.query<{ e: boolean }>(
    `SELECT NOT EXISTS (SELECT 1 FROM ${quoteQualified(name)}) AS e`,
  );
  return rows[0]!.e;
}

export async function streamCopy(
  reader: pg.Client,
  readSql: string,
  target: pg.Client,
  writeSql: string,
): Promise<number> {
  const out = reader.query(copyTo(readSql));
  const into = target.query(copyFrom(writeSql));
  await pipeline(out, into);
  return Number(into.rowCount ?? 0);
}

/**
 * First load into a new or empty table: COPY straight into it and build the
 * key afterwards. One transaction: a failure leaves the target as it was.
 */
async function loadDirect(
  target: pg.Client,
  reader: pg.Client,
  p: {
    targetName: QualifiedName;
    table: SourceTable;
    key: string[];
    existing: TargetTable | null;
    readSql: string;
    finish: (
      rowsCopied: number,
    ) => Promise<{ rowsCopied: number; inserted: number; updated: number; deleted: number }>;
  },
) {
  await target.query("BEGIN");
  try {
    if (!p.existing) {
      await target.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(p.targetName.schema)}`);
      await target.query(createTableSql(p.targetName, p.table.columns));
    } else {
      for (const sql of checkTargetTable(p.targetName, p.existing, p.table.columns, p.key)) {
        await target.query(sql);
      }
    }
    const rows = await streamCopy(
      reader,
      p.readSql,
      target,
      copyInSql(
        p.targetName,
        p.table.columns.map((c) => c.name),
      ),
    );
    if (!p.existing) {
      for (const sql of keyDdl(p.targetName, p.key)) await target.query(sql);
    }
    const counts = await p.finish(rows);
    await target.query("COMMIT");
    return counts;
  } catch (err) {
    await target.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
}

/**
 * Incremental runs and full resyncs of a non-empty table: COPY into an
 * unlogged staging table, then merge by key and commit the watermark in the
 * same transaction. A crash before that commit leaves the old watermark and a
 * staging table the next run drops.
 */
async function loadViaStage(
  target: pg.Client,
  server: ServerInfo,
  reader: pg.Client,
  p: {
    targetName: QualifiedName;
    targetOid: string;
    columns: string[];
    key: string[];
    full: boolean;
    readSql: string;
    writeState: (c: {
      rowsCopied: number;
      inserted: number;
      updated: number;
      deleted: number;
    }) => Promise<void>;
  },
) {
  const stage = { schema: PROJECT_SCHEMA, name: `stage_${p.targetOid}` };
  const spec: MergeSpec = {
    target: p.targetName,
    stage,
    columns: p.columns,
    key: p.key,
    compareContent: p.full,
  };
  // Only one run holds this table's lock, so a staging table here is a crashed run's.
  await target.query(`DROP TABLE IF EXISTS ${quoteQualified(stage)}`);
  await target.query(createStageSql(spec));
  try {
    const rowsCopied = await streamCopy(reader, p.readSql, target, copyInSql(stage, p.columns));
    await target.query(`ANALYZE ${quoteQualified(stage)}`);
    await target.query("BEGIN");
    try {
      const { rows } = await target.query<{ n: string }>(countNewSql(spec));
      const inserted = Number(rows[0]!.n);
      const merged = await target.query(server.hasMerge ? mergeSql(spec) : upsertSql(spec));
      const updated = (merged.rowCount ?? 0) - inserted;
      const deleted = p.full ? ((await target.query(deleteMissingSql(spec))).rowCount ?? 0) : 0;
      const counts = { rowsCopied, inserted, updated, deleted };
      await p.writeState(counts);
      await target.query("COMMIT");
      return counts;
    } catch (err) {
      await target.query("ROLLBACK").catch(() => undefined);
      throw err;
    }
  } finally {
    await target.query(`DROP TABLE IF EXISTS ${quoteQualified(stage)}`).catch(() => undefined);
  }
}
