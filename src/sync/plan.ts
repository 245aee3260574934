import { displayName, quoteIdent, type QualifiedName } from "../db/quote.js";
import type { SourceTable } from "../source/catalog.js";
import { parseSnapshot, type Snapshot } from "../source/snapshot.js";
import { needsFullRescan } from "../source/xid.js";
import { RESERVED_COLUMNS, type TargetTable } from "../target/ddl.js";
import type { TableState } from "../target/state.js";
import type { SourceRun } from "./source-run.js";
import type { TableSpec } from "./types.js";

/** What a run of one table will do, and why when it copies everything. */
export interface Plan {
  mode: "full" | "xmin" | "timestamp";
  reason?: string;
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
export async function checkSnapshotNotStale(
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
  // Ours is at least as new if it sees as completed every transaction the
  // stored one did: its xmax is not behind, and nothing it sees running had
  // completed for the stored one (same xmax, fewer running, is newer too).
  const storedRunning = new Set(stored.xip);
  const oursSeesLess = ours.xip.some((x) => x < stored.xmax && !storedRunning.has(x));
  if (stored.xmax <= ours.xmax && state.watermark <= ours.xmin && !oursSeesLess) return;
  const now = await run.currentSnapshot();
  if (now.xmax < stored.xmax) return;
  throw new StaleSnapshotError(
    `${displayName(name)} was synced by another run from a newer snapshot (${stored.text}) than this run's (${ours.text})`,
  );
}

export function planRun(
  run: SourceRun,
  table: SourceTable,
  state: TableState | null,
  existing: (TargetTable & { empty: boolean }) | null,
  spec: TableSpec,
  hasXmin: boolean,
  forceFull: boolean,
  sourceHasRows: boolean,
): Plan {
  const mode = spec.mode ?? "auto";
  if (mode === "xmin" && !hasXmin) {
    throw new Error(
      `${displayName(table.name)} is a view or foreign table: its rows have no xmin; use mode timestamp (with a cursor) or full`,
    );
  }
  // Timestamp mode: asked for, or auto on a source without xmin that names
  // a cursor column. Without either, a source without xmin is copied whole.
  const byCursor =
    mode === "timestamp" || (mode === "auto" && !hasXmin && spec.cursor !== undefined);
  if (byCursor) {
    if (!spec.cursor)
      throw new Error(`mode timestamp needs a cursor column (cursor: in the config)`);
    if (!table.columns.some((c) => c.name === spec.cursor)) {
      throw new Error(
        `cursor column ${quoteIdent(spec.cursor)} is not a column of ${displayName(table.name)}`,
      );
    }
  }
  if (mode === "full" || forceFull) return { mode: "full", reason: "requested" };
  if (!hasXmin && !byCursor) {
    return {
      mode: "full",
      reason: "source has no xmin (view or foreign table) and no cursor column",
    };
  }
  const incremental = byCursor ? "timestamp" : "xmin";
  const stored = byCursor ? state?.cursorValue : state?.watermark;
  if (
    !state ||
    stored === null ||
    stored === undefined ||
    (state.mode !== incremental && state.mode !== "full")
  ) {
    return { mode: "full", reason: "first run" };
  }
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
  if (existing.empty && sourceHasRows) {
    // Someone emptied the copy (TRUNCATE): an incremental run would not bring the old rows back.
    return { mode: "full", reason: "target table is empty" };
  }
  if (byCursor) return { mode: "timestamp" };
  if (state.watermark === null) return { mode: "full", reason: "first run" };
  if (run.snapshot.xmax < state.watermark) {
    return { mode: "full", reason: "source transaction ids went backwards (restore or failover)" };
  }
  if (needsFullRescan(run.snapshot.xmax, state.watermark)) {
    return { mode: "full", reason: "watermark is over a billion transactions old" };
  }
  return { mode: "xmin" };
}
