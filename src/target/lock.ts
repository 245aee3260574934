import type pg from "pg";
import { SQLSTATE, sqlState } from "../db/errors.js";
import { displayName, quoteQualified, type QualifiedName } from "../db/quote.js";
import { LOCK_CLASS } from "./project.js";

export interface LockOptions {
  /** Wait for the run that holds the table instead of failing at once. */
  wait: boolean;
  /** With wait: give up after this many milliseconds (default: wait as long as it takes). */
  timeoutMs?: number | undefined;
  /** Told whom the run waits for when it starts waiting, and every minute after. */
  log?: ((fields: Record<string, unknown>, msg: string) => void) | undefined;
}

/** A waiting run says whom it still waits for this often. */
const REPORT_EVERY_MS = 60_000;

/**
 * One run per target table at a time: a session advisory lock in the target,
 * held by the run's target connection and released when it ends or dies.
 * A run that waits queues for the lock (first come, first served) in spells
 * bounded by lock_timeout, so that between them it can say who holds the
 * table, and give up after the timeout.
 */
export async function lockTargetTable(
  client: pg.Client,
  target: QualifiedName,
  opts: LockOptions,
): Promise<void> {
  const key = quoteQualified(target);
  const { rows } = await client.query<{ ok: boolean }>(
    "SELECT pg_try_advisory_lock($1::int, hashtext($2) & 2147483647) AS ok",
    [LOCK_CLASS, key],
  );
  if (rows[0]!.ok) return;
  const name = displayName(target);
  let holder = await lockHolder(client, key);
  if (!opts.wait) {
    throw new Error(
      `another xmin-sync run is syncing ${name}${describeHolder(holder)}; try again when it finishes, or pass --wait`,
    );
  }
  const started = Date.now();
  opts.log?.(
    { holder, ...(opts.timeoutMs !== undefined ? { timeoutSeconds: opts.timeoutMs / 1000 } : {}) },
    `waiting for the run syncing ${name}${describeHolder(holder)}`,
  );
  const previous = await client.query<{ t: string }>("SELECT current_setting('lock_timeout') AS t");
  try {
    for (;;) {
      const left =
        opts.timeoutMs === undefined ? Infinity : opts.timeoutMs - (Date.now() - started);
      const spell = Math.max(1, Math.ceil(Math.min(left, REPORT_EVERY_MS)));
      await client.query("SELECT set_config('lock_timeout', $1, false)", [`${spell}ms`]);
      try {
        await client.query("SELECT pg_advisory_lock($1::int, hashtext($2) & 2147483647)", [
          LOCK_CLASS,
          key,
        ]);
        opts.log?.({ waitedSeconds: Math.round((Date.now() - started) / 1000) }, "lock taken");
        return;
      } catch (err) {
        if (sqlState(err) !== SQLSTATE.lockNotAvailable) throw err;
      }
      const waited = Math.round((Date.now() - started) / 1000);
      holder = await lockHolder(client, key);
      if (opts.timeoutMs !== undefined && Date.now() - started >= opts.timeoutMs) {
        throw new Error(
          `gave up after ${waited}s (--wait-timeout) waiting for the run syncing ${name}${describeHolder(holder)}`,
        );
      }
      opts.log?.(
        { holder, waitedSeconds: waited },
        `still waiting for the run syncing ${name}${describeHolder(holder)}`,
      );
    }
  } finally {
    await client
      .query("SELECT set_config('lock_timeout', $1, false)", [previous.rows[0]!.t])
      .catch(() => undefined);
  }
}

/** The session holding a table's lock, as far as our role may see it. */
interface Holder {
  pid: number;
  application: string | null;
  client: string | null;
  user: string | null;
  /** Seconds since its session started. */
  seconds: number | null;
}

async function lockHolder(client: pg.Client, key: string): Promise<Holder | null> {
  const { rows } = await client.query<Holder>(
    `SELECT l.pid, a.application_name AS application, host(a.client_addr) AS client,
            a.usename::text AS user, extract(epoch FROM now() - a.backend_start)::int AS seconds
       FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::int::oid
        AND l.objid = (hashtext($2) & 2147483647)::oid AND l.objsubid = 2`,
    [LOCK_CLASS, key],
  );
  return rows[0] ?? null;
}

function describeHolder(h: Holder | null): string {
  if (!h) return "";
  const parts = [
    `target backend pid ${h.pid}`,
    h.application ? `application ${JSON.stringify(h.application)}` : null,
    h.user ? `user ${h.user}` : null,
    h.client ? `from ${h.client}` : null,
    h.seconds !== null ? `connected ${h.seconds}s ago` : null,
  ];
  return ` (${parts.filter((p) => p !== null).join(", ")})`;
}
