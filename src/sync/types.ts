import type { QualifiedName } from "../db/quote.js";
import type { Logger } from "../log.js";

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
  /** Column for timestamp mode. */
  cursor?: string;
  deletes?: DeletesMode;
}

export interface SyncOptions {
  source: string;
  target: string;
  tables: TableSpec[];
  /** Copy every row, whatever the stored watermark. */
  full?: boolean;
  /** Wait for another run on the same table to finish instead of failing. */
  waitForLock?: boolean;
  logger?: Logger;
  signal?: AbortSignal;
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
