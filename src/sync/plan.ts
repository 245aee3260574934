import { displayName, quoteIdent } from "../db/quote.js";
import { InputError } from "../input-error.js";
import { XMIN_RELKINDS, type Column, type SourceTable } from "../source/catalog.js";
import type { RowFilter } from "../source/read.js";
import type { SourceIdentity, Snapshot } from "../source/snapshot.js";
import { needsFullRescan } from "../source/xid.js";
import type { StoredLeaf, TableState } from "../target/state.js";
import type { TableSpec } from "./types.js";

/**
 * What one run of one table does, decided once from what is known before a
 * row moves: a plain value the later steps read, never a callback.
 */
export interface Plan {
  mode: "full" | "xmin" | "timestamp";
  /** Why the run copies everything, or why it does more than usual. */
  reason?: string;
  /**
   * Where rows go: a new table (loaded privately, indexed, then moved into
   * place), an empty table nobody has synced yet (straight in), or staging
   * (then merged by key).
   */
  into: "new-table" | "empty-table" | "staging";
  /** Which source rows are read. */
  filter: RowFilter;
  /** Leaves (partitions, inheritance children) new since the last run: read whole. */
  newLeaves: Set<string>;
  /** Decide by content whether a matched row is rewritten (xmins prove nothing here). */
  compareContent: boolean;
  /** How rows gone from the source are found: not at all, against the staged full set, or against the source's key set. */
  deletes: "none" | "against-staged" | "against-keys";
  /** Mark rows gone from the source (source_deleted_at) instead of deleting them. */
  softDeletes: boolean;
  /** The cursor column whose high mark the run stores (timestamp mode, or a full run of a table that has one). */
  cursor: { column: string; type: string } | null;
  /** The watermark the run commits: the snapshot's xmin (null without xmin). */
  watermark: bigint | null;
  /**
   * What the run stores as contentUntil: rows below this xid may have a
   * target source_xmin older than their source xmin (this run rewrote them
   * by content, or an earlier one did and the watermark has not passed it).
   */
  contentUntil: bigint | null;
  /** Things the user should know that do not stop the run (a TRUNCATE not propagated, a detached partition). */
  notes: string[];
}

/** Everything the plan is computed from. */
export interface PlanInput {
  spec: TableSpec;
  forceFull: boolean;
  source: SourceTable;
  identity: SourceIdentity;
  snapshot: Snapshot;
  state: TableState | null;
  target: { exists: boolean; empty: boolean; softDeleteColumn: boolean };
  /** The source has rows (asked only when the target is empty but has a watermark). */
  sourceHasRows: boolean;
  /** A schema change that needs the table copied whole and compared (a column rebuilt, a new key). */
  schemaResync?: string | null;
  /** The source keeps the key unique and NOT NULL itself (source/key.ts). */
  keyEnforced: boolean;
  now: Date;
}

const TIME_TYPES = /^(timestamp|date)/;
const NUMBER_TYPES = /^(smallint|integer|bigint|numeric)/;

/** The cursor column and its type, which must order rows in time. */
export function cursorColumn(columns: Column[], name: string): { column: string; type: string } {
  const c = columns.find((x) => x.name === name);
  if (!c) throw new InputError(`cursor column ${quoteIdent(name)} does not exist`);
  if (!TIME_TYPES.test(c.type) && !NUMBER_TYPES.test(c.type)) {
    throw new InputError(
      `cursor column ${quoteIdent(name)} is ${c.type}: it must be a timestamp, a date or a number`,
    );
  }
  return { column: c.name, type: c.type };
}

/** The lookback as the source will subtract it: an interval for times, a number otherwise. */
function lookbackValue(type: string, lookback: string | number | undefined): string {
  if (!TIME_TYPES.test(type)) return String(lookback ?? 0);
  const d = lookback ?? "5m";
  if (typeof d === "number") return `${d} seconds`;
  const m = /^(\d+)([smhd])$/.exec(d);
  if (!m)
    throw new InputError(
      `lookback: expected a duration like 30s, 5m, 1h; got ${JSON.stringify(d)}`,
    );
  return `${m[1]} ${UNIT_NAMES[m[2]!]}`;
}

const UNIT_NAMES: Record<string, string> = { s: "seconds", m: "minutes", h: "hours", d: "days" };
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
    throw new InputError(
      `deleteCheckEvery: expected a number of runs or a duration like 15m, 6h, 1d; got ${JSON.stringify(every)}`,
    );
  if (!state.lastDeleteCheckAt) return true;
  return now.getTime() - state.lastDeleteCheckAt.getTime() >= Number(m[1]) * UNIT_MS[m[2]!]!;
}

/** Why the stored state cannot be continued from, or null when it can. */
function fullResyncReason(p: PlanInput, byCursor: boolean): string | null {
  const { state, identity: id, source } = p;
  const incremental = byCursor ? "timestamp" : "xmin";
  const stored = byCursor ? state?.cursorValue : state?.watermark;
  if (!state || stored == null || (state.mode !== incremental && state.mode !== "full"))
    return "first run";
  if (!p.target.exists) return "target table missing";
  if (state.sourceSystemId !== id.systemIdentifier && state.sourceSystemId && id.systemIdentifier)
    return "source cluster changed (system identifier)";
  if (state.sourceTimeline !== id.timeline && state.sourceTimeline !== null && id.timeline !== null)
    return "source timeline changed (failover or restore)";
  if (state.sourceDatabaseOid !== id.databaseOid) return "source database changed";
  if (state.sourceTableOid !== source.oid) return "source table was recreated";
  if (p.schemaResync) return p.schemaResync;
  // Someone emptied the copy (TRUNCATE): an incremental run would not bring the old rows back.
  if (p.target.empty && p.sourceHasRows) return "target table is empty";
  if (byCursor) return null;
  if (state.watermark === null) return "first run";
  if (p.snapshot.xmax < state.watermark)
    return "source transaction ids went backwards (restore or failover)";
  if (needsFullRescan(p.snapshot.xmax, state.watermark))
    return "watermark is over a billion transactions old";
  return null;
}

/**
 * Leaves attached, detached or given new storage since the last run. A new
 * leaf is read whole (its rows may be older than the watermark). New storage
 * (TRUNCATE, VACUUM FULL, CLUSTER, a rewriting ALTER) keeps or renews xmins,
 * so the xmin read stays right, but rows may be gone (TRUNCATE) or every row
 * may come back unchanged (a rewrite): deletes are reconciled and content
 * compared.
 */
function leafChanges(source: SourceTable, stored: StoredLeaf[] | null) {
  const before = new Map((stored ?? []).map((l) => [l.oid, l.relfilenode]));
  const added = new Set<string>();
  const replaced: string[] = [];
  for (const leaf of source.leaves) {
    const old = before.get(leaf.oid);
    if (old === undefined) added.add(leaf.oid);
    else if (old !== leaf.relfilenode) replaced.push(displayName(leaf.name));
    before.delete(leaf.oid);
  }
  // Without a stored leaf set (a state from an older version), nothing is known to have changed.
  if (stored === null) added.clear();
  return { added, removed: before.size, replaced };
}

export function planTable(p: PlanInput): Plan {
  const { spec, source, state } = p;
  const hasXmin = XMIN_RELKINDS.has(source.relkind);
  const mode = spec.mode ?? "auto";
  if (mode === "xmin" && !hasXmin) {
    throw new InputError(
      `${displayName(source.name)} is a view or foreign table: its rows have no xmin; use mode timestamp (with a cursor) or full`,
    );
  }
  // Timestamp mode: asked for, or auto on a source without xmin that names
  // a cursor column. Without either, a source without xmin is copied whole.
  const byCursor =
    mode === "timestamp" || (mode === "auto" && !hasXmin && spec.cursor !== undefined);
  if (byCursor && !spec.cursor)
    throw new InputError(
      "mode timestamp needs a cursor column (--cursor, or cursor: in the config)",
    );
  const cursor = spec.cursor ? cursorColumn(source.columns, spec.cursor) : null;
  const softDeletes = spec.deletes === "soft" || p.target.softDeleteColumn;
  const tracksDeletes = spec.deletes === "hard" || spec.deletes === "soft";
  const base = {
    newLeaves: new Set<string>(),
    softDeletes,
    cursor,
    watermark: hasXmin ? p.snapshot.xmin : null,
    notes: [] as string[],
  };

  let reason: string | null;
  if (mode === "full" || p.forceFull) reason = "requested";
  else if (!hasXmin && !byCursor)
    reason = "source has no xmin (view or foreign table) and no cursor column";
  else reason = fullResyncReason(p, byCursor);

  if (reason !== null) {
    const into = !p.target.exists
      ? "new-table"
      : // Straight into an empty table only when nothing is stored for it: with a
        // stored watermark, a reload cut off midway would leave a half-filled
        // table next to a watermark that says its rows were copied. And only
        // under a key the source enforces: otherwise the rows are staged, so
        // duplicate or NULL keys are refused before any part commits.
        p.target.empty && state === null && p.keyEnforced
        ? "empty-table"
        : "staging";
    return {
      ...base,
      mode: "full",
      reason,
      into,
      filter: { kind: "all" },
      // Equal xmins prove nothing across a new identity, a restore or a view.
      compareContent: true,
      // Rows left unwritten keep the source_xmin of the copy they came from.
      contentUntil: into === "staging" && hasXmin ? p.snapshot.xmax : null,
      deletes: into === "staging" ? "against-staged" : "none",
    };
  }

  const leaves = leafChanges(source, state!.leaves);
  const reasons: string[] = [];
  if (leaves.added.size > 0)
    reasons.push(`${leaves.added.size} partition(s) or child table(s) added`);
  if (leaves.removed > 0) reasons.push(`${leaves.removed} partition(s) or child table(s) removed`);
  if (leaves.replaced.length > 0)
    reasons.push(
      `storage of ${leaves.replaced.join(", ")} replaced (TRUNCATE, VACUUM FULL, CLUSTER or a rewriting ALTER)`,
    );
  const structural = leaves.removed > 0 || leaves.replaced.length > 0;
  const checkDeletes =
    tracksDeletes && (structural || deleteCheckDue(state, spec.deleteCheckEvery, p.now));
  if (structural && !tracksDeletes) {
    base.notes.push(
      `${reasons.join("; ")}: rows may be gone from the source, and deletes are not tracked (deletes: ignore); the copy keeps them until a run with --deletes hard|soft or --full`,
    );
  }
  const filter: RowFilter = byCursor
    ? {
        kind: "cursor",
        column: cursor!.column,
        type: cursor!.type,
        last: state!.cursorValue!,
        lookback: lookbackValue(cursor!.type, spec.lookback),
      }
    : { kind: "xmin", since: state!.watermark! };
  // Rows written by a rewrite keep their old source_xmin in the target when
  // their content is the same: until the watermark passes the rewrite,
  // rows re-read are compared by content too, or they would all be
  // rewritten once more for an xmin alone.
  const rewritten = leaves.replaced.length > 0;
  const carried =
    state!.contentUntil !== null && state!.contentUntil > (base.watermark ?? 0n)
      ? state!.contentUntil
      : null;
  const contentUntil = rewritten ? p.snapshot.xmax : byCursor ? null : carried;
  const since = state!.watermark ?? 0n;
  return {
    ...base,
    mode: byCursor ? "timestamp" : "xmin",
    ...(reasons.length > 0 ? { reason: reasons.join("; ") } : {}),
    into: "staging",
    filter,
    newLeaves: leaves.added,
    // Without xmin (timestamp mode), or after a rewrite, content decides.
    compareContent:
      byCursor || rewritten || (state!.contentUntil !== null && since < state!.contentUntil),
    contentUntil,
    deletes: checkDeletes ? "against-keys" : "none",
  };
}
