import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { HistoryRow } from "../target/history.js";
import type { FleetStatus, FleetView } from "./tables.js";

/** What a worker adds to its endpoint's metrics. */
export interface WorkerGauges {
  parallelism(): number;
  runningTables(): number;
  lastSample(): { latencyMs: number; activeBackends: number } | undefined;
}

const OPS = ["copied", "inserted", "updated", "deleted"] as const;

/**
 * Prometheus metrics of the fleet. Counters and the duration histogram
 * follow the target's run history (every run, whoever ran it), from the
 * moment this process started: every endpoint serving one target shows the
 * same increases, so scrape one, or aggregate with max rather than sum.
 * Gauges (last success, lag, integrity) are read when scraped.
 */
export class FleetMetrics {
  readonly registry = new Registry();
  private readonly runs: Counter<"table" | "status">;
  private readonly rows: Counter<"table" | "op">;
  private readonly duration: Histogram<"table">;
  private readonly lastSuccess: Gauge<"table">;
  private readonly lagTransactions: Gauge<"table">;
  private readonly lagSeconds: Gauge<"table">;
  private readonly integrity: Gauge<"table">;
  private afterId: string | undefined;
  private readonly seen = new Set<string>();
  /** Scrapes one at a time, so a run is never counted twice. */
  private last: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly status: FleetStatus,
    worker?: WorkerGauges,
  ) {
    const registers = [this.registry];
    this.runs = new Counter({
      name: "xmin_sync_runs_total",
      help: "Sync runs recorded in the history, by outcome (ok, error)",
      labelNames: ["table", "status"],
      registers,
    });
    this.rows = new Counter({
      name: "xmin_sync_rows_total",
      help: "Rows copied from the source, and inserted, updated, deleted in the target",
      labelNames: ["table", "op"],
      registers,
    });
    this.duration = new Histogram({
      name: "xmin_sync_run_duration_seconds",
      help: "Duration of sync runs",
      labelNames: ["table"],
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
      registers,
    });
    this.lastSuccess = new Gauge({
      name: "xmin_sync_last_success_timestamp_seconds",
      help: "When the table's last successful sync finished (Unix time)",
      labelNames: ["table"],
      registers,
    });
    this.lagTransactions = new Gauge({
      name: "xmin_sync_lag_transactions",
      help: "Transactions between the source's horizon and the table's watermark (needs the source)",
      labelNames: ["table"],
      registers,
    });
    this.lagSeconds = new Gauge({
      name: "xmin_sync_lag_seconds",
      help: "Seconds since the snapshot of the table's last successful sync: how old the copy may be",
      labelNames: ["table"],
      registers,
    });
    this.integrity = new Gauge({
      name: "xmin_sync_integrity_score",
      help: "Integrity score of the table's last validation (0..1)",
      labelNames: ["table"],
      registers,
    });
    if (worker) {
      new Gauge({
        name: "xmin_sync_worker_parallelism",
        help: "Parallel streams this worker allows itself now (adapts within minWorkers..maxWorkers)",
        registers,
        collect() {
          this.set(worker.parallelism());
        },
      });
      new Gauge({
        name: "xmin_sync_worker_running_tables",
        help: "Tables this worker is syncing now",
        registers,
        collect() {
          this.set(worker.runningTables());
        },
      });
      new Gauge({
        name: "xmin_sync_source_probe_seconds",
        help: "Round trip of the worker's probe statement on the source",
        registers,
        collect() {
          const s = worker.lastSample();
          if (s) this.set(s.latencyMs / 1000);
        },
      });
      new Gauge({
        name: "xmin_sync_source_active_backends",
        help: "Other sessions running a statement on the source, as the worker last saw",
        registers,
        collect() {
          const s = worker.lastSample();
          if (s) this.set(s.activeBackends);
        },
      });
    }
  }

  /**
   * Counting starts from the newest run in the history now; when the target
   * does not answer yet, from the newest run at the first scrape that works.
   */
  async start(): Promise<void> {
    this.afterId ??= await this.status.lastRunId().catch(() => undefined);
  }

  /** The Prometheus text exposition of the fleet now. */
  text(): Promise<string> {
    const next = this.last.then(
      () => this.render(),
      () => this.render(),
    );
    this.last = next;
    return next;
  }

  private async render(): Promise<string> {
    const view = await this.status.view();
    if (view.target.ok) {
      this.afterId ??= await this.status.lastRunId();
      for (;;) {
        const rows = await this.status.runsAfter(this.afterId);
        for (const r of rows) this.count(r);
        if (rows.length === 0) break;
        this.afterId = rows.at(-1)!.id;
      }
    }
    this.setGauges(view);
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private count(r: HistoryRow): void {
    if (r.kind !== "sync") return;
    const table = r.table;
    this.runs.inc({ table, status: r.status === "ok" ? "ok" : "error" });
    this.rows.inc({ table, op: "copied" }, r.rowsCopied ?? 0);
    this.rows.inc({ table, op: "inserted" }, r.inserted ?? 0);
    this.rows.inc({ table, op: "updated" }, r.updated ?? 0);
    this.rows.inc({ table, op: "deleted" }, r.deleted ?? 0);
    this.duration.observe({ table }, r.durationMs / 1000);
  }

  private setGauges(view: FleetView): void {
    for (const t of view.tables) {
      const table = t.table;
      if (!this.seen.has(table)) {
        // Every table's series exist from the start, at zero, so that
        // rate() and alerts see the first run.
        this.seen.add(table);
        for (const status of ["ok", "error"]) this.runs.inc({ table, status }, 0);
        for (const op of OPS) this.rows.inc({ table, op }, 0);
        this.duration.zero({ table });
      }
      if (t.lastSuccessAt) this.lastSuccess.set({ table }, Date.parse(t.lastSuccessAt) / 1000);
      if (t.lag.transactions !== null)
        this.lagTransactions.set({ table }, Number(t.lag.transactions));
      else this.lagTransactions.remove({ table });
      if (t.lag.seconds !== null) this.lagSeconds.set({ table }, t.lag.seconds);
      if (t.validation?.integrityScore != null)
        this.integrity.set({ table }, t.validation.integrityScore);
    }
  }
}
