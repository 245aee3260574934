import PgBoss from "pg-boss";
import { Reconnecting } from "./connection.js";
import { displayName, quoteIdent, type QualifiedName } from "../db/quote.js";
import type { Logger } from "../log.js";

/**
 * The fleet's queue: pg-boss in its own schema of the control database, one
 * queue per table. Queues are "stately": at most one job per state (queued,
 * waiting to retry, running), so a table runs once at a time across every
 * worker and ticks that come while it runs or waits are not stacked up.
 */
export const QUEUE_SCHEMA = "xmin_sync_queue";
const QUEUE_PREFIX = "xmin-sync/";

/**
 * A failed run is retried with exponential backoff: pg-boss waits
 * retryDelay × 2^n × (0.5..1), so 2, 4, 8 … 256 s, then gives up until the
 * next tick (cron) or the next `every` round.
 */
export const RETRY = { retryLimit: 8, retryDelay: 2, retryBackoff: true } as const;

/**
 * pg-boss fails an active job after expireIn (at most 24 h). Our workers
 * hold a lease on each running table instead (lease.ts), so a dead worker's
 * table is taken over in seconds; this is only a last resort.
 */
const EXPIRE_SECONDS = 23 * 3600;

/**
 * A table's queue: the target database and the table, so that workers of
 * two targets can share a control database without sharing tables
 * (`xmin-sync/warehouse:5432/analytics/raw_data.ticker`).
 */
export function queueName(targetUrl: string, target: QualifiedName): string {
  let where = "target";
  try {
    const u = new URL(targetUrl);
    where = `${u.hostname}:${u.port || "5432"}/${decodeURIComponent(u.pathname.slice(1))}`;
  } catch {
    // Not a URL (a libpq keyword string): one namespace for such targets.
  }
  return `${QUEUE_PREFIX}${where}/${displayName(target)}`;
}

/**
 * pg-boss's database access through our connections (same session settings,
 * UTC time zone, connection errors handled): one connection, reopened when
 * it drops. pg-boss sends each transaction as one multi-statement query, so
 * sharing a connection keeps them whole.
 */
export class ControlDb implements PgBoss.Db {
  private readonly conn: Reconnecting;

  constructor(url: string) {
    this.conn = new Reconnecting(url, "target", "xmin-sync control");
  }

  async executeSql(text: string, values?: unknown[]): Promise<{ rows: never[] }> {
    // A server that stopped answering (a network cut) must not hold the
    // worker forever: the connection is dropped and opened again.
    return (await this.conn.query(text, values, { timeoutMs: 120_000 })) as unknown as {
      rows: never[];
    };
  }

  close(): Promise<void> {
    return this.conn.close();
  }
}

export interface BossTimings {
  /** How often pg-boss looks at the cron schedules (1..45 s). */
  cronSeconds: number;
  /** How often pg-boss expires and archives jobs. */
  maintenanceSeconds: number;
}

export async function startBoss(db: ControlDb, logger: Logger, t: BossTimings): Promise<PgBoss> {
  const boss = new PgBoss({
    db,
    schema: QUEUE_SCHEMA,
    supervise: true,
    schedule: true,
    migrate: true,
    // The run history is the record of runs: finished jobs leave the job
    // table soon (at every: 1s, 200 tables finish 720,000 jobs an hour),
    // and the archive keeps them a day.
    archiveCompletedAfterSeconds: 900,
    archiveFailedAfterSeconds: 86_400,
    deleteAfterSeconds: 86_400,
    cronMonitorIntervalSeconds: t.cronSeconds,
    cronWorkerIntervalSeconds: Math.min(5, t.cronSeconds),
    maintenanceIntervalSeconds: t.maintenanceSeconds,
  });
  boss.on("error", (err) => logger.warn({ err: err.message }, "queue error"));
  await boss.start();
  return boss;
}

export interface ScheduledTable {
  queue: string;
  target: QualifiedName;
  schedule?: string | undefined;
  everyMs?: number | undefined;
}

/**
 * Creates each table's queue and puts the config's cron schedules in place
 * (every worker does this at start: the last one started wins). A table that
 * now runs `every:` loses its cron schedule. A table removed from the config
 * keeps its schedule, harmlessly: its queue holds one job at most and no
 * worker of this config takes it (other configs may share the queue).
 */
export async function prepareQueues(
  boss: PgBoss,
  tables: ScheduledTable[],
  timezone: string,
): Promise<void> {
  const options = { policy: "stately" as const, ...RETRY, expireInSeconds: EXPIRE_SECONDS };
  for (const t of tables) {
    if (await boss.getQueue(t.queue)) {
      await boss.updateQueue(t.queue, { name: t.queue, ...options });
    } else {
      await boss.createQueue(t.queue, { name: t.queue, ...options }).catch(async (err) => {
        // Another worker created it between our look and our insert.
        if (!(await boss.getQueue(t.queue))) throw err;
      });
    }
    if (t.schedule) {
      await boss.schedule(t.queue, t.schedule, { table: displayName(t.target) }, { tz: timezone });
    } else {
      await boss.unschedule(t.queue);
    }
  }
}

/** The queue's job table, for the questions pg-boss has no call for (pinned to pg-boss 10). */
export const JOB_TABLE = `${quoteIdent(QUEUE_SCHEMA)}.job`;
