import type { QualifiedName } from "../db/quote.js";
import type { Logger } from "../log.js";
import type { HistoryOptions } from "../target/history.js";
import type { Tuning } from "./tuning.js";

export type Mode = "auto" | "xmin" | "timestamp" | "full";
export type DeletesMode = "ignore" | "hard" | "soft";

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
}

/** Bytes streamed so far for a table, for progress bars and progress logs. */
export interface ProgressEvent {
  table: string;
  bytes: number;
  /** The source table's size on disk (heap and TOAST), a rough total. */
  estimatedBytes: number;
  mode: "full" | "xmin" | "timestamp";
}

export interface SyncOptions {
  source: string;
  target: string;
  tables: TableSpec[];
  /** Copy every row, whatever the stored watermark. */
  full?: boolean;
  /** Wait for another run on the same table to finish instead of failing. */
  waitForLock?: boolean;
  /** Parallel COPY streams and batch sizes; see resolveTuning for defaults. */
  tuning?: Partial<Tuning>;
  onProgress?: (e: ProgressEvent) => void;
  logger?: Logger;
  signal?: AbortSignal;
  /** Run history retention and who ran it. */
  history?: HistoryOptions;
}

/** What one table's run did; the CLI prints it as one JSON line. */
export interface TableResult {
  table: string;
  target: string;
  /** What the run did; on error, what was asked for. */
  mode: Mode;
  /** Why a full copy was made, when it was. */
  reason?: string;
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
  durationMs: number;
  status: "ok" | "error";
  error?: string;
}
