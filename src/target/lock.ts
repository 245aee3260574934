import type pg from "pg";
import { displayName, quoteQualified, type QualifiedName } from "../db/quote.js";
import { LOCK_CLASS } from "./project.js";

/**
 * One run per target table at a time: a session advisory lock in the target,
 * held by the run's target connection and released when it ends or dies.
 */
export async function lockTargetTable(
  client: pg.Client,
  target: QualifiedName,
  opts: { wait: boolean },
): Promise<void> {
  const key = quoteQualified(target);
  if (opts.wait) {
    await client.query("SELECT pg_advisory_lock($1::int, hashtext($2) & 2147483647)", [
      LOCK_CLASS,
      key,
    ]);
    return;
  }
  const { rows } = await client.query<{ ok: boolean }>(
    "SELECT pg_try_advisory_lock($1::int, hashtext($2) & 2147483647) AS ok",
    [LOCK_CLASS, key],
  );
  if (rows[0]!.ok) return;
  const holder = await client.query<{ pid: number; since: string | null }>(
    `SELECT l.pid, a.xact_start::text AS since
       FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::int::oid
        AND l.objid = (hashtext($2) & 2147483647)::oid AND l.objsubid = 2`,
    [LOCK_CLASS, key],
  );
  const pid = holder.rows[0]?.pid;
  throw new Error(
    `another xmin-sync run is syncing ${displayName(target)}` +
      (pid ? ` (target backend pid ${pid})` : "") +
      `; try again when it finishes`,
  );
}
