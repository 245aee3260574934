import type PgBoss from "pg-boss";
import { describeError } from "../db/connect.js";
import { displayName, type QualifiedName } from "../db/quote.js";
import type { Logger } from "../log.js";
import { sync } from "../sync/run.js";
import type { SyncOptions, TableSpec } from "../sync/types.js";
import { recordFailure, type HistoryOptions } from "../target/history.js";
import { ensureProjectSchema } from "../target/project.js";
import { connect } from "../db/connect.js";
import { Activity } from "./activity.js";
import { ParallelismController, SourceProbe } from "./adaptive.js";
import { Leases, whileStarting } from "./lease.js";
import {
  ControlDb,
  JOB_TABLE,
  prepareQueues,
  queueName,
  startBoss,
  type ScheduledTable,
} from "./queue.js";

export interface WorkerTable extends ScheduledTable {
  spec: TableSpec;
}

export interface WorkerOptions {
  source: string;
  target: string;
  /** Where the queue lives; usually the target. */
  control: string;
  tables: WorkerTable[];
  timezone: string;
  /** Parallel streams: where to start and the bounds the controller keeps to. */
  parallelism: { initial: number; min: number; max: number };
  batches: { minBatchSize?: number | undefined; maxBatchSize?: number | undefined };
  /** Busy when this many other backends are active on the source. */
  busyBackends: number;
  history: HistoryOptions;
  /** The config's sourceLockTimeout and maxDeleteShare, as sync() takes them. */
  guards: Pick<SyncOptions, "sourceLockTimeoutMs" | "massDeleteShare">;
  logger: Logger;
  /** How often the worker looks for due tables. */
  pollMs: number;
  /** SIGTERM: how long a running table may take to finish before it is cancelled. */
  shutdownMs: number;
  /** pg-boss's cron check interval, seconds. */
  cronSeconds: number;
}

/** How often the worker looks for running tables whose worker is gone. */
const REAP_MS = 5000;
/** How often the worker makes sure every `every:` table has its next run queued. */
const ENSURE_MS = 5000;
/** How often the source is sampled and the parallelism adjusted. */
const SAMPLE_MS = 2000;
/** A cancelled run gets this long to roll back before the worker leaves it to the server. */
const CANCEL_GRACE_MS = 5000;

interface Running {
  table: WorkerTable;
  jobId: string;
  slots: number;
  since: Date;
  abort: AbortController;
  done: Promise<void>;
}

/**
 * A worker of the fleet: runs due tables from the shared queue, as many at
 * once as its parallelism allows, until stopped. See README "Worker".
 */
export class Worker {
  readonly controller: ParallelismController;
  private readonly running = new Map<string, Running>();
  private readonly byQueue: Map<string, WorkerTable>;
  private usedSlots = 0;
  private demand = false;
  private bytesSinceSample = 0;
  private readonly progressBytes = new Map<string, number>();
  private stopping = false;
  private wakeUp: (() => void) | undefined;
  private nextReap = 0;
  private nextEnsure = 0;
  private nextSample = 0;
  lastSample: { latencyMs: number; activeBackends: number } | undefined;
  readonly done: Promise<void>;

  private constructor(
    private readonly opts: WorkerOptions,
    private readonly db: ControlDb,
    private readonly boss: PgBoss,
    private readonly leases: Leases,
    private readonly activity: Activity,
    private readonly probe: SourceProbe,
  ) {
    this.byQueue = new Map(opts.tables.map((t) => [t.queue, t]));
    this.controller = new ParallelismController({
      ...opts.parallelism,
      busyBackends: opts.busyBackends,
    });
    this.done = this.loop();
  }

  static async start(opts: WorkerOptions): Promise<Worker> {
    // The target gets the project schema now: the activity and history
    // tables are written before the first run creates it.
    const target = await connect(opts.target, "target");
    try {
      await ensureProjectSchema(target);
    } finally {
      await target.end().catch(() => undefined);
    }
    const db = new ControlDb(opts.control);
    const boss = await whileStarting(opts.control, async () => {
      const b = await startBoss(db, opts.logger, {
        cronSeconds: opts.cronSeconds,
        maintenanceSeconds: 60,
      });
      try {
        await prepareQueues(b, opts.tables, opts.timezone);
        return b;
      } catch (err) {
        await b.stop({ graceful: false }).catch(() => undefined);
        throw err;
      }
    }).catch(async (err) => {
      await db.close();
      throw err;
    });
    const worker = new Worker(
      opts,
      db,
      boss,
      new Leases(opts.control, opts.logger),
      new Activity(opts.target, opts.logger),
      new SourceProbe(opts.source),
    );
    opts.logger.info(
      {
        tables: opts.tables.length,
        parallelism: worker.controller.limit,
        min: opts.parallelism.min,
        max: opts.parallelism.max,
      },
      "worker started",
    );
    return worker;
  }

  /** Tables running in this process, for the status page and metrics. */
  runningTables(): { table: string; since: Date; slots: number }[] {
    return [...this.running.values()].map((r) => ({
      table: displayName(r.table.target),
      since: r.since,
      slots: r.slots,
    }));
  }

  /**
   * Stops taking work and waits for the running tables to finish; after
   * shutdownMs (or at once with `now`) cancels them, which rolls them back.
   */
  async stop(opts: { now?: boolean } = {}): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      this.opts.logger.info({ running: this.running.size }, "stopping: no new work");
      this.wakeUp?.();
    }
    // The loop ends first, so that no table starts once we wait for them.
    // A loop stuck on a control database that stopped answering is left.
    await within(this.done, 10_000);
    const runs = () => Promise.all([...this.running.values()].map((r) => r.done));
    const finished = await within(runs(), opts.now ? 0 : this.opts.shutdownMs);
    if (!finished) {
      this.opts.logger.warn({ running: this.running.size }, "cancelling running tables");
      for (const r of this.running.values()) r.abort.abort(new Error("worker shutting down"));
      if (!(await within(runs(), CANCEL_GRACE_MS))) {
        // A statement the cancel cannot reach (waiting on a lock): hand the
        // job back now; the server rolls the run back when we exit.
        for (const [queue, r] of this.running) {
          await this.boss
            .fail(queue, r.jobId, { message: "worker shut down during the run" })
            .catch(() => undefined);
        }
      }
    }
    await within(this.boss.stop({ graceful: false, wait: true }), 10_000).catch(() => undefined);
    await Promise.all([this.leases.close(), this.activity.close(), this.probe.close()]);
    await this.db.close();
    this.opts.logger.info("worker stopped");
  }

  private async loop(): Promise<void> {
    while (!this.stopping) {
      await this.step("tick", () => this.tick());
      if (this.stopping) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.opts.pollMs);
        this.wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeUp = undefined;
    }
  }

  private async step(what: string, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      this.opts.logger.warn({ err: describeError(err) }, `worker ${what} failed; will retry`);
    }
  }

  private async tick(): Promise<void> {
    const now = Date.now();
    if (now >= this.nextReap) {
      this.nextReap = now + REAP_MS;
      await this.step("reap", () => this.reap());
    }
    if (now >= this.nextEnsure) {
      this.nextEnsure = now + ENSURE_MS;
      await this.step("schedule", () => this.ensureEvery());
    }
    if (now >= this.nextSample) {
      this.nextSample = now + SAMPLE_MS;
      await this.step("sample", () => this.adapt());
    }
    await this.dispatch();
  }

  private queues(filter: (t: WorkerTable) => boolean = () => true): string[] {
    return this.opts.tables.filter(filter).map((t) => t.queue);
  }

  /** Queues with a job ready to run and none running (a look at pg-boss's job table). */
  private async dueQueues(limit: number): Promise<string[]> {
    const { rows } = await this.db.executeSql(
      `SELECT j.name FROM ${JOB_TABLE} j
        WHERE j.name = ANY($1::text[]) AND j.state < 'active' AND j.start_after < now()
          AND NOT EXISTS (SELECT 1 FROM ${JOB_TABLE} a WHERE a.name = j.name AND a.state = 'active')
        GROUP BY j.name ORDER BY min(j.start_after) LIMIT $2`,
      [this.queues(), limit],
    );
    return (rows as { name: string }[]).map((r) => r.name);
  }

  private async dispatch(): Promise<void> {
    const free = Math.max(0, this.controller.limit - this.usedSlots);
    const due = (await this.dueQueues(free + this.running.size + 1)).filter(
      (q) => !this.running.has(q),
    );
    // Demand, for the controller: a due table waited for a stream.
    if (due.length > free) this.demand = true;
    const starting = due.slice(0, free);
    // Tables due together share the free streams; one alone gets them all.
    const share = Math.max(1, Math.floor(free / Math.max(1, starting.length)));
    for (const queue of starting) {
      if (this.stopping) return;
      const slots = Math.min(share, this.controller.limit - this.usedSlots);
      if (slots < 1) return;
      if (!(await this.leases.take(queue))) continue;
      const [job] = await this.boss.fetch(queue).catch(async (err) => {
        await this.leases.release(queue);
        throw err;
      });
      if (!job) {
        await this.leases.release(queue);
        continue;
      }
      this.run(queue, job.id, slots);
    }
  }

  private run(queue: string, jobId: string, slots: number): void {
    const table = this.byQueue.get(queue)!;
    const abort = new AbortController();
    this.usedSlots += slots;
    const entry: Running = {
      table,
      jobId,
      slots,
      since: new Date(),
      abort,
      done: Promise.resolve(),
    };
    this.running.set(queue, entry);
    entry.done = this.execute(entry)
      .catch((err) =>
        this.opts.logger.error({ table: queue, err: describeError(err) }, "worker run failed"),
      )
      .finally(async () => {
        await this.activity.finish(table.target);
        await this.leases.release(queue).catch(() => undefined);
        this.usedSlots -= slots;
        this.progressBytes.delete(queue);
        this.running.delete(queue);
        this.wakeUp?.();
      });
  }

  private async execute(r: Running): Promise<void> {
    const { table, slots } = r;
    const queue = table.queue;
    const logger = this.opts.logger;
    const started = Date.now();
    await this.activity.start(table.target);
    let error: string | undefined;
    try {
      const [result] = await sync({
        source: this.opts.source,
        target: this.opts.target,
        tables: [table.spec],
        tuning: { workers: slots, ...this.opts.batches },
        waitForLock: false,
        signal: r.abort.signal,
        logger,
        history: this.opts.history,
        ...this.opts.guards,
        onProgress: (e) => {
          const before = this.progressBytes.get(queue) ?? 0;
          this.bytesSinceSample += Math.max(0, e.bytes - before);
          this.progressBytes.set(queue, e.bytes);
          this.activity.progress(
            table.target,
            e.bytes,
            e.mode === "full" ? e.estimatedBytes : null,
          );
        },
      });
      if (result!.status !== "ok") error = result!.error ?? "failed";
    } catch (err) {
      // sync() throws before any table ran (a database unreachable): the
      // worker records the failure itself, so the page shows it.
      error = `${displayName(table.spec.source)}: ${describeError(err)}`;
      logger.error({ table: queue, err: error }, "table failed");
      await recordFailure(
        { target: this.opts.target, logger, history: this.opts.history },
        table.spec,
        error,
        Date.now() - started,
      );
    }
    if (!this.leases.holds(queue)) {
      logger.warn({ table: queue }, "lease lost during the run; its job is another worker's now");
      return;
    }
    if (error === undefined) {
      await this.boss.complete(queue, r.jobId);
      if (table.everyMs !== undefined) {
        // Runs start every `every` (a run longer than that is followed at once).
        const wait = Math.max(0, table.everyMs - (Date.now() - started)) / 1000;
        await this.boss.send(queue, { table: displayName(table.target) }, { startAfter: wait });
      }
    } else {
      await this.boss.fail(queue, r.jobId, { message: error });
    }
  }

  /** Hands back running jobs whose worker is gone (its lease is free). */
  private async reap(): Promise<void> {
    const { rows } = await this.db.executeSql(
      `SELECT id::text, name FROM ${JOB_TABLE} WHERE name = ANY($1::text[]) AND state = 'active'`,
      [this.queues()],
    );
    for (const job of rows as { id: string; name: string }[]) {
      if (this.running.has(job.name)) continue;
      if (!(await this.leases.orphaned(job.name))) continue;
      await this.boss.fail(job.name, job.id, {
        message: "the worker running it is gone; handed back to the queue",
      });
      this.opts.logger.warn(
        { table: job.name, job: job.id },
        "took over a table whose worker is gone",
      );
    }
  }

  /** Queues the next run of each `every:` table that has none queued, waiting or running. */
  private async ensureEvery(): Promise<void> {
    const every = this.queues((t) => t.everyMs !== undefined);
    if (every.length === 0) return;
    const { rows } = await this.db.executeSql(
      `SELECT DISTINCT name FROM ${JOB_TABLE} WHERE name = ANY($1::text[]) AND state <= 'active'`,
      [every],
    );
    const present = new Set((rows as { name: string }[]).map((r) => r.name));
    for (const queue of every) {
      if (present.has(queue) || this.running.has(queue)) continue;
      // Stately queues keep one queued job: other workers' sends are no-ops.
      await this.boss.send(queue, { table: displayName(this.byQueue.get(queue)!.target) }, {});
    }
  }

  private async adapt(): Promise<void> {
    const sample = await this.probe.sample();
    this.lastSample = sample;
    const bytes = this.bytesSinceSample;
    this.bytesSinceSample = 0;
    const demand = this.demand;
    this.demand = false;
    const d = this.controller.observe({ at: Date.now(), ...sample, bytes, demand });
    const fields = {
      parallelism: d.limit,
      latencyMs: Math.round(sample.latencyMs * 10) / 10,
      activeBackends: sample.activeBackends,
      bytes,
      demand,
      running: this.running.size,
    };
    if (d.reason) this.opts.logger.info(fields, `parallelism: ${d.reason}`);
    else this.opts.logger.debug(fields, "source sampled");
  }
}

async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([p.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function workerTable(
  targetUrl: string,
  spec: TableSpec,
  everyMs?: number,
  schedule?: string,
): WorkerTable {
  const target: QualifiedName = spec.target ?? spec.source;
  return { spec, target, queue: queueName(targetUrl, target), schedule, everyMs };
}
