import type { QualifiedName } from "../db/quote.js";
import type { Logger } from "../log.js";
import type { HistoryOptions } from "../target/history.js";
import type { Tuning } from "./tuning.js";

export type Mode = "auto" | "xmin" | "timestamp" | "full";
export type DeletesMode = "ignore" | "hard" | "soft";
/** When the source's schema changed: follow it, or stop the table. */
export type SchemaChanges = "evolve" | "fail";
/** What happens to a target column whose source column was dropped. */
export type DroppedColumns = "keep" | "drop";

/** One table to sync: where from, where to, and how. */
export interface TableSpec {
  source: QualifiedName;
  /** Defaults to the source's name. */
  target?: QualifiedName;
  /** Defaults to the source's primary key. */
  key?: string[];
  mode?: Mode;
  /** Column for timestamp mode: a timestamp, date or number that grows as rows change. */
  cursor?: string;
  /** How far before the last high mark a timestamp-mode read starts ("5m" by default; a number for numeric cursors). */
  lookback?: string | number;
  deletes?: DeletesMode;
  /**
   * How often deletes are looked for (deletes hard or soft): every run
   * (default), every N runs, or at most once per duration ("15m", "6h", "1d").
   */
  deleteCheckEvery?: number | string;
  /** When the source's schema changed: follow it (default) or stop the table. */
  schemaChanges?: SchemaChanges;
  /** A column dropped on the source: kept on the target, no longer written (default), or dropped. */
  droppedColumns?: DroppedColumns;
}

/**
 * The long phases of a table's run: copying rows (bytes), copying the
 * source's key set for delete detection (bytes), building a first load's
 * indexes (steps), merging staged rows (slices), reconciling deletes.
 */
export type ProgressPhase = "copy" | "keys" | "index" | "merge" | "deletes";

/** How far a table's run is, for progress bars and progress logs. */
export interface ProgressEvent {
  table: string;
  mode: "full" | "xmin" | "timestamp";
  phase: ProgressPhase;
  /** Bytes streamed so far in a copying phase (0 in the others). */
  bytes: number;
  /** The source table's size on disk (heap and TOAST), a rough total for copies. */
  estimatedBytes: number;
  /** Steps of a phase that has them (index builds, merge slices): done of total. */
  step?: { done: number; total: number };
}

export interface SyncOptions {
  source: string;
  target: string;
  tables: TableSpec[];
  /** Copy every row, whatever the stored watermark. */
  full?: boolean;
  /**
   * Wait for another run on the same table to finish instead of failing.
   * No source snapshot is held while waiting; the table then reads on a
   * fresh snapshot of its own.
   */
  waitForLock?: boolean;
  /** With waitForLock: give up waiting after this long (default: wait as long as it takes). */
  waitTimeoutMs?: number;
  /** Parallel COPY streams and batch sizes; see resolveTuning for defaults. */
  tuning?: Partial<Tuning>;
  onProgress?: (e: ProgressEvent) => void;
  logger?: Logger;
  /**
   * Stops the run: statements running on either server are cancelled,
   * transactions rolled back, locks released; tables report `interrupted`.
   */
  signal?: AbortSignal;
  /**
   * Commit a run that deletes (or marks) more than massDeleteShare of a
   * target table's rows even when a fresh look at the source does not
   * confirm they are gone.
   */
  allowMassDelete?: boolean;
  /** Share of a target's rows above which deletes need confirming (default 0.5). */
  massDeleteShare?: number;
  /** How long to wait for a lock on a source table before giving up (default 60 s). */
  sourceLockTimeoutMs?: number;
  /** Run history retention and who ran it. */
  history?: HistoryOptions;
}

/** What one table's run did; the CLI prints it as one JSON line. */
export interface TableResult {
  table: string;
  target: string;
  /** What the run did; on error, what was asked for. */
  mode: Mode;
  /** Why a full copy was made, when it was, or why the run did more than usual. */
  reason?: string;
  /** What the user should know that did not stop the run (a TRUNCATE whose deletes are not tracked). */
  notes?: string[];
  /**
   * Changes to the source's schema this run found, one line each: made on
   * the target (schemaChanges: evolve), or, on error, why the table stopped
   * (schemaChanges: fail).
   */
  schemaChanges?: string[];
  rowsCopied: number;
  inserted: number;
  updated: number;
  deleted: number;
  /** The new watermark, a 64-bit transaction id as a decimal string. */
  watermark: string | null;
  previousWatermark: string | null;
  /** The oldest transaction still running at snapshot time, when one holds the watermark back. */
  heldBackBy?: {
    pid: number;
    xactStart: string | null;
    ageSeconds: number | null;
    query: string | null;
  };
  /**
   * How long the source's vacuum horizon was held for this table: from the
   * snapshot until the table had read its rows (merging comes after).
   */
  snapshotHeldMs?: number;
  /** A first load that went on from the parts an interrupted one had committed. */
  resumed?: ResumeReport;
  durationMs: number;
  status: "ok" | "error";
  error?: string;
  /** The run was stopped (a signal) while the table was at this step; the next run resumes. */
  interrupted?: string;
  /** The error was in what was asked (a missing table, a key that is not a column): found before anything was copied. */
  badInput?: boolean;
}

/** What resuming an interrupted first load saved, and what it cost. */
export interface ResumeReport {
  /** Parts an earlier run had committed, not read again. */
  partsSkipped: number;
  partsTotal: number;
  /** Rows in those parts. */
  rowsSkipped: number;
  /** Rows read again because they changed since the oldest of those parts was read. */
  rowsCaughtUp: number;
  /** Rows removed because the source no longer has their key. */
  rowsRemoved: number;
}
