import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type pg from "pg";
import type { LimitFunction } from "p-limit";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import { cancelOnAbort } from "../db/cancel.js";
import { closeSoon, connect, endClient, openBoth } from "../db/connect.js";
import type { QualifiedName } from "../db/quote.js";
import {
  bindRead,
  copyOutSql,
  readSettings,
  type ReadPart,
  type RowFilter,
} from "../source/read.js";
import type { SourceRun } from "../source/run.js";
import { copyInSql } from "../target/merge.js";
import { withSettings } from "../db/tx.js";

/**
 * Streams one COPY out of the source into one COPY into the target. The
 * pipeline gives backpressure end to end: the source's socket is read only
 * as fast as the target takes the data, so memory stays at a few stream
 * buffers whatever the table's size. Returns the rows the target took.
 */
export async function streamCopy(
  reader: pg.Client,
  readSql: string,
  writer: pg.Client,
  writeSql: string,
  onBytes?: (bytes: number) => void,
  signal?: AbortSignal,
): Promise<number> {
  const out = reader.query(copyTo(readSql));
  const into = writer.query(copyFrom(writeSql));
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      onBytes?.(chunk.length);
      done(null, chunk);
    },
  });
  await pipeline(out, counter, into, ...(signal ? [{ signal }] : []));
  return Number(into.rowCount ?? 0);
}

/** What copyParts needs from the table's run. */
export interface CopyContext {
  source: SourceRun;
  targetUrl: string;
  /** Worker slots shared by every table of the run. */
  pool: LimitFunction;
  parts: ReadPart[];
  format: "text" | "binary";
  signal?: AbortSignal | undefined;
  /**
   * Target connections a finished copy leaves here, idle and outside any
   * transaction, for the table's merge to take instead of opening new ones
   * (each costs a start-up round); whoever made the context closes the rest.
   */
  spareTargets?: pg.Client[];
  /** Connection pairs opened ahead of the table's copies, taken before any new one is opened. */
  pairsAhead?: PairsAhead;
}

/** A reader in the run's snapshot and a target connection. */
interface Pair {
  reader: pg.Client;
  writer: pg.Client;
  /** The table's own connections, lent: given back when the copy is done with them, not closed. */
  lent?: true;
}

export interface CopyPartsOptions {
  /** The parts to read (default: the table's). */
  parts?: ReadPart[];
  /**
   * Runs in the transaction of part `i`'s COPY, after its rows: what is
   * written there commits with them, or not at all.
   */
  record?: (writer: pg.Client, i: number, rows: number) => Promise<void>;
}

/**
 * Copies every part of a read into `into`, in parallel on the worker pool,
 * each part by its own reader (in the run's snapshot) and its own target
 * connection, committed as it ends.
 */
export async function copyParts(
  ctx: CopyContext,
  into: QualifiedName,
  read: { columns: string[]; xmin: "full" | "null" | "none"; filter: RowFilter },
  onBytes: (bytes: number) => void,
  opts: CopyPartsOptions = {},
): Promise<number> {
  // One failed part stops the others: queued parts do not start, running
  // ones are cancelled, and we return only once all have ended, so none
  // writes into the work tables after the caller dropped them (or into the
  // next attempt's, which have the same names).
  const stop = new AbortController();
  const signal = ctx.signal ? AbortSignal.any([ctx.signal, stop.signal]) : stop.signal;
  const writeSql = copyInSql(into, read.columns, {
    format: ctx.format,
    withXmin: read.xmin !== "none",
  });
  // A part's connections serve the next part on the same slot: the reader
  // stays in the run's snapshot (its settings are bound anew per part), and
  // a connection pair costs 50-100 ms to open, on every part's critical path.
  // A pair is kept only while parts of this copy are still to start: the
  // pool's slots are shared with other tables, which open their own.
  const idle: Pair[] = [];
  // At most one spare per other worker slot: what a merge's slices can use.
  const release = (writer: pg.Client) =>
    ctx.spareTargets && !stop.signal.aborted && ctx.spareTargets.length < ctx.pool.concurrency - 1
      ? ctx.spareTargets.push(writer)
      : closeSoon(writer);
  // A pair no part of this copy will take: a lent one goes back to its table.
  const done = async (pair: Pair) => {
    if (pair.lent) return ctx.pairsAhead?.giveBack(pair);
    await ctx.source.closeReader(pair.reader);
    release(pair.writer);
  };
  const parts = opts.parts ?? ctx.parts;
  let notStarted = parts.length;
  const settled = await Promise.allSettled(
    parts.map((part, i) =>
      ctx.pool(async () => {
        notStarted--;
        signal.throwIfAborted();
        const pair = idle.pop() ?? ctx.pairsAhead?.take();
        let reader: pg.Client | undefined;
        let writer: pg.Client | undefined;
        let failed = false;
        try {
          const open = await (pair ?? openPair(ctx));
          ({ reader, writer } = open);
          const spec = { part, filter: read.filter, columns: read.columns, xmin: read.xmin };
          await bindRead(reader, ctx.source.snapshot, spec);
          const readSql = copyOutSql({ ...spec, format: ctx.format });
          // Only for the statement: the reader serves other parts next.
          const copy = () =>
            withSettings(open.reader, readSettings(part), () =>
              streamCopy(open.reader, readSql, open.writer, writeSql, onBytes, signal),
            );
          let rows: number;
          if (!opts.record) {
            signal.throwIfAborted();
            rows = await copy();
          } else {
            // Not withTransaction: after a failed COPY the connection is cut
            // (below), which rolls back without waiting on the protocol.
            await writer.query("BEGIN");
            signal.throwIfAborted();
            rows = await copy();
            await opts.record(writer, i, rows);
            await writer.query("COMMIT");
          }
          if (notStarted > 0) idle.push(open);
          else await done(open);
          return rows;
        } catch (err) {
          failed = true;
          if (!stop.signal.aborted) stop.abort(err);
          throw err;
        } finally {
          // A COPY cut off midway leaves its connection waiting for the rest
          // of the protocol exchange: end those sockets rather than wait.
          if (failed) {
            reader?.connection.stream.destroy();
            writer?.connection.stream.destroy();
            if (reader) await ctx.source.closeReader(reader);
            await writer?.end().catch(() => undefined);
          }
        }
      }),
    ),
  );
  await Promise.all(idle.map(done));
  // The first failure is the cause; the others were cancelled because of it.
  if (stop.signal.aborted) throw stop.signal.reason;
  const failure = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failure) throw failure.reason;
  return settled.reduce((a, r) => a + (r as PromiseFulfilledResult<number>).value, 0);
}

/** A reader in the run's snapshot and a target connection, opened at once. */
async function openPair(ctx: PairContext): Promise<Pair> {
  const [reader, writer] = await openBoth(
    ctx.source.openReader(),
    connect(ctx.targetUrl, "target"),
    [(r) => ctx.source.closeReader(r), endClient],
  );
  cancelOnAbort(writer, ctx.signal);
  return { reader, writer };
}

type PairContext = Pick<CopyContext, "source" | "targetUrl" | "signal" | "pool">;

/** Pairs opened ahead and not yet taken or closed, per worker pool: they hold its free slots. */
const heldAhead = new WeakMap<LimitFunction, number>();

/**
 * Connection pairs a table opens before its copies need them, so that they
 * open while its catalog and target are read, not on the copy's critical
 * path (a pair costs 50-100 ms to open). Until a copy takes one or it is
 * closed, each holds a slot of the worker pool: the tables of one run
 * never hold more pairs than it has workers.
 */
export class PairsAhead {
  private readonly pairs: Promise<Pair>[] = [];
  private readonly own: Pair | undefined;
  private ownOut = false;

  /**
   * `own`: the table's reader (in the run's snapshot, holding the source
   * table's lock) and its target connection, which have nothing else to
   * do while the table copies: lent to the first copy slot instead of
   * opening a pair (beside the pairs held ahead, not counted with them). Each connection
   * costs a backend start on its server (about 45 ms of CPU each here),
   * which on a small machine the copies' own work waits for.
   */
  constructor(
    private readonly ctx: PairContext,
    own?: { reader: pg.Client; writer: pg.Client },
  ) {
    this.own = own && { ...own, lent: true };
  }

  /** Starts opening up to `wanted` pairs, as many as the pool has slots nobody uses or holds. */
  open(wanted: number): void {
    const pool = this.ctx.pool;
    const held = heldAhead.get(pool) ?? 0;
    const free = pool.concurrency - pool.activeCount - pool.pendingCount - held;
    // The lent pair takes one of the slots: a part on it needs no other.
    const n = Math.max(0, Math.min(wanted, free) - (this.own ? 1 : 0));
    heldAhead.set(pool, held + n);
    for (let i = 0; i < n; i++) {
      const pair = openPair(this.ctx);
      // A pair that fails to open fails the copy that takes it; unused, it is no one's error.
      pair.catch(() => undefined);
      this.pairs.push(pair);
    }
  }

  take(): Promise<Pair> | undefined {
    if (this.own && !this.ownOut) {
      this.ownOut = true;
      return Promise.resolve(this.own);
    }
    const pair = this.pairs.shift();
    if (pair) this.release(1);
    return pair;
  }

  /** The lent pair is back, idle, for the table's next step or copy. */
  giveBack(pair: Pair): void {
    if (pair === this.own) this.ownOut = false;
  }

  /** Closes the pairs opened beyond what `keep` parts at once need: they hold the run's snapshot, and the pool's slots. */
  async trim(keep = 0): Promise<void> {
    const extra = this.pairs.splice(Math.max(0, keep - (this.own ? 1 : 0)));
    this.release(extra.length);
    await Promise.all(
      extra.map((p) =>
        p.then(
          async ({ reader, writer }) => {
            closeSoon(writer);
            await this.ctx.source.closeReader(reader);
          },
          () => undefined,
        ),
      ),
    );
  }

  private release(n: number): void {
    heldAhead.set(this.ctx.pool, (heldAhead.get(this.ctx.pool) ?? 0) - n);
  }
}

/**
 * A target connection watched by the run's signal for one step of the
 * table's run: a copy's spare if there is one, else a new one.
 */
export async function takeTarget(ctx: CopyContext): Promise<pg.Client> {
  const spare = ctx.spareTargets?.pop();
  if (spare) return spare;
  const c = await connect(ctx.targetUrl, "target");
  cancelOnAbort(c, ctx.signal);
  return c;
}

/** Closes the spare target connections beyond the first `keep`. */
export function trimSpares(spares: pg.Client[] | undefined, keep = 0): void {
  for (const spare of spares?.splice(keep) ?? []) closeSoon(spare);
}
