import type pg from "pg";
import { SQLSTATE, sqlState } from "../db/errors.js";
import { displayName, quoteQualified, type QualifiedName } from "../db/quote.js";
import { withSettings, withTransaction } from "../db/tx.js";
import { LOCK_CLASS } from "./project.js";

/**
 * One run per target table at a time: a session advisory lock in the target,
 * held by a connection of the run and released when it ends or dies. The
 * lock's key is the table's quoted name, hashed into the advisory lock's
 * object id under xmin-sync's lock class.
 */
const KEY = "$1::int, hashtext($2) & 2147483647";
const keyValues = (target: QualifiedName) => [LOCK_CLASS, quoteQualified(target)];

/** The session holding a table's lock, for messages. */
export interface LockHolder {
  pid: number;
  since: string | null;
  applicationName: string | null;
}

export interface LockOptions {
  /** Wait for another run to finish instead of failing at once. */
  wait: boolean;
  /** With wait: give up after this long (0 or undefined: wait as long as it takes). */
  timeoutMs?: number | undefined;
  /** With wait: called once, before waiting, with whoever holds the lock. */
  onWait?: ((holder: LockHolder | null) => void) | undefined;
}

/** Takes the lock if it is free; false when another session holds it. */
export async function tryLockTargetTable(client: pg.Client, target: QualifiedName) {
  const { rows } = await client.query<{ ok: boolean }>(
    `SELECT pg_try_advisory_lock(${KEY}) AS ok`,
    keyValues(target),
  );
  return rows[0]!.ok;
}

export async function lockTargetTable(
  client: pg.Client,
  target: QualifiedName,
  opts: LockOptions,
): Promise<void> {
  if (await tryLockTargetTable(client, target)) return;
  const holder = await targetLockHolder(client, target);
  const held = holder ? ` (target backend pid ${holder.pid})` : "";
  if (!opts.wait) {
    throw new Error(
      `another xmin-sync run is syncing ${displayName(target)}${held}; try again when it finishes`,
    );
  }
  opts.onWait?.(holder);
  const timeoutMs = opts.timeoutMs ?? 0;
  try {
    // A session lock taken inside a transaction outlives it; the timeout ends with it.
    await withTransaction(client, () =>
      withSettings(client, { lock_timeout: `${timeoutMs}ms` }, () =>
        client.query(`SELECT pg_advisory_lock(${KEY})`, keyValues(target)),
      ),
    );
  } catch (err) {
    if (sqlState(err) !== SQLSTATE.lockNotAvailable) throw err;
    throw new Error(
      `gave up after ${formatSeconds(timeoutMs)} waiting for another xmin-sync run syncing ${displayName(target)}${held}`,
      { cause: err },
    );
  }
}

export async function unlockTargetTable(client: pg.Client, target: QualifiedName): Promise<void> {
  await client.query(`SELECT pg_advisory_unlock(${KEY})`, keyValues(target));
}

/** Who holds the table's lock now, if anyone. */
export async function targetLockHolder(
  client: pg.Client,
  target: QualifiedName,
): Promise<LockHolder | null> {
  const { rows } = await client.query<LockHolder>(
    `SELECT l.pid, a.backend_start::text AS since, a.application_name AS "applicationName"
       FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::int::oid
        AND l.objid = (hashtext($2) & 2147483647)::oid AND l.objsubid = 2`,
    keyValues(target),
  );
  return rows[0] ?? null;
}

/** The session holding a table's lock ended: another run may have the table now. Retried. */
export class LockLostError extends Error {
  override name = "LockLostError";
}

/**
 * Fails unless the session `pid` still holds the table's lock: checked by
 * each transaction that commits a run's data on another connection than the
 * one holding the lock, so that a run whose lock went with its connection
 * (a terminated backend, a restarted server) commits nothing after another
 * run may have started on the table.
 */
export async function assertTargetLockHeld(
  client: pg.Client,
  target: QualifiedName,
  pid: number,
): Promise<void> {
  const holder = await targetLockHolder(client, target);
  if (holder?.pid === pid) return;
  throw new LockLostError(
    `lost the lock on ${displayName(target)}: its connection ended (target backend pid ${pid}); nothing more was committed`,
  );
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${(ms / 1000).toFixed(1)}s`;
}
