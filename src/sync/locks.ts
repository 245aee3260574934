import type pg from "pg";
import { cancelOnAbort } from "../db/cancel.js";
import { connect } from "../db/connect.js";
import { displayName, type QualifiedName } from "../db/quote.js";
import type { Logger } from "../log.js";
import {
  lockTargetTable,
  tryLockTargetTable,
  unlockTargetTable,
  type LockHolder,
} from "../target/lock.js";

/** A target table's lock, held by a session of this run. */
export interface TableLock {
  /** The backend holding it: transactions that commit the table's data check that it still does. */
  pid: number;
  /** The session still answers, so its lock is still held. */
  alive(): Promise<boolean>;
  release(): Promise<void>;
}

export async function backendPid(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
  return rows[0]!.pid;
}

const answers = (client: pg.Client) => () =>
  client.query("SELECT 1").then(
    () => true,
    () => false,
  );

/**
 * Takes a table's lock on the run's lock connection, which holds the locks
 * of every table of the run that was free when the run started: one
 * connection, however many tables. When another run holds it: null if the
 * caller will wait for it, else the error saying who holds it.
 */
export async function lockOnHolder(
  holder: pg.Client,
  holderPid: number,
  target: QualifiedName,
  wait: boolean,
): Promise<TableLock | null> {
  if (!wait) await lockTargetTable(holder, target, { wait: false });
  else if (!(await tryLockTargetTable(holder, target))) return null;
  return {
    pid: holderPid,
    alive: answers(holder),
    release: () => unlockTargetTable(holder, target).catch(() => undefined),
  };
}

export interface OwnLockOptions {
  wait: boolean;
  timeoutMs?: number | undefined;
  signal?: AbortSignal | undefined;
  logger: Logger;
}

/**
 * Takes a table's lock on a connection of its own: for a table that waits
 * for another run (without holding a source snapshot meanwhile), or whose
 * lock went with a dropped connection.
 */
export async function lockOnOwnConnection(
  url: string,
  target: QualifiedName,
  opts: OwnLockOptions,
): Promise<TableLock> {
  opts.signal?.throwIfAborted();
  const client = await connect(url, "target");
  cancelOnAbort(client, opts.signal);
  try {
    await lockTargetTable(client, target, {
      wait: opts.wait,
      timeoutMs: opts.timeoutMs,
      onWait: (holder) => logWait(opts.logger, target, holder, opts.timeoutMs),
    });
    const pid = await backendPid(client);
    return {
      pid,
      alive: answers(client),
      release: () => client.end().catch(() => undefined),
    };
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
}

function logWait(
  logger: Logger,
  target: QualifiedName,
  holder: LockHolder | null,
  timeoutMs: number | undefined,
): void {
  logger.info(
    {
      table: displayName(target),
      ...(holder
        ? {
            heldByPid: holder.pid,
            heldSince: holder.since,
            heldByApplication: holder.applicationName,
          }
        : {}),
      ...(timeoutMs ? { giveUpAfterMs: timeoutMs } : {}),
    },
    `waiting for another xmin-sync run to finish with ${displayName(target)}` +
      (holder ? ` (target backend pid ${holder.pid})` : "") +
      "; no source snapshot is held meanwhile",
  );
}
