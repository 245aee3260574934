import type pg from "pg";
import type { KeyColumn } from "../db/key.js";
import type { QualifiedName } from "../db/quote.js";
import type { ServerInfo } from "../db/server.js";
import type { SourceTable } from "../source/catalog.js";
import type { ReadPart } from "../source/read.js";
import type { CopyContext } from "./copy.js";
import type { Tuning } from "./tuning.js";
import type { ProgressPhase } from "./types.js";

/** What the steps of one table's run share, fixed once the table is resolved. */
export interface TableContext extends CopyContext {
  /** The table's target connection; the run's final transaction is on it. */
  target: pg.Client;
  /** The backend holding the table's lock: transactions that commit data check it still does. */
  lockPid: number;
  targetServer: ServerInfo;
  tuning: Tuning;
  table: SourceTable;
  targetName: QualifiedName;
  key: KeyColumn[];
  /** The source keeps the key unique and NOT NULL itself: no need to check the rows read. */
  keyEnforced: boolean;
  /**
   * The parts of the plan's filtered read: `parts`, one through an index
   * for a narrow cursor window, or one sequential scan per leaf bigger than
   * the source's shared_buffers (spareSourceCache).
   */
  filteredParts: ReadPart[];
  /** The parts of the source's key set, read by every run that reconciles deletes: spareSourceCache's. */
  keyParts: ReadPart[];
  /** Progress of a long phase: bytes streamed so far, or steps done of a total. */
  progress: (phase: ProgressPhase, p: { bytes?: number; done?: number; total?: number }) => void;
  /** Phase timings and sizes, for the logs. */
  log: (fields: Record<string, unknown>, msg: string) => void;
}

export const columnsOf = (ctx: TableContext) => ctx.table.columns.map((c) => c.name);
