import { hostname } from "node:os";
import { Reconnecting } from "./connection.js";
import type { QualifiedName } from "../db/quote.js";
import type { Logger } from "../log.js";

/** Progress is written at most this often per table. */
const PROGRESS_EVERY_MS = 2000;

/**
 * The worker's runs in progress, in the target's xmin_sync.activity: which
 * worker runs a table since when, and the bytes copied so far, so that any
 * status page of the fleet can show "running, 40%". Best effort: a failure
 * here is logged and never stops a run.
 */
export class Activity {
  private readonly conn: Reconnecting;
  private readonly lastWrite = new Map<string, number>();

  constructor(
    targetUrl: string,
    private readonly logger: Logger,
  ) {
    this.conn = new Reconnecting(targetUrl, "target", "xmin-sync activity");
  }

  private async write(sql: string, params: unknown[]): Promise<void> {
    try {
      await this.conn.query(sql, params, { timeoutMs: 10_000 });
    } catch (err) {
      this.logger.debug({ err: (err as Error).message }, "could not write the run's progress");
    }
  }

  async start(target: QualifiedName, estimatedBytes: number | null = null): Promise<void> {
    this.lastWrite.set(`${target.schema}.${target.name}`, Date.now());
    await this.write(
      `INSERT INTO xmin_sync.activity AS a (target_schema, target_table, host, pid, process, estimated_bytes)
       VALUES ($1, $2, $3, $4, 'worker', $5)
       ON CONFLICT (target_schema, target_table) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid,
         process = EXCLUDED.process, started_at = now(), bytes = 0,
         estimated_bytes = EXCLUDED.estimated_bytes, updated_at = now()`,
      [target.schema, target.name, hostname(), process.pid, estimatedBytes],
    );
  }

  /**
   * Records bytes copied so far; throttled, so call it on every progress
   * event. The estimate (the table's size) only means something for a full copy.
   */
  progress(target: QualifiedName, bytes: number, estimatedBytes: number | null): void {
    const key = `${target.schema}.${target.name}`;
    const now = Date.now();
    if (now - (this.lastWrite.get(key) ?? 0) < PROGRESS_EVERY_MS) return;
    this.lastWrite.set(key, now);
    void this.write(
      `UPDATE xmin_sync.activity SET bytes = $3, estimated_bytes = $4, updated_at = now()
        WHERE target_schema = $1 AND target_table = $2 AND pid = $5 AND host = $6`,
      [target.schema, target.name, bytes, estimatedBytes, process.pid, hostname()],
    );
  }

  async finish(target: QualifiedName): Promise<void> {
    this.lastWrite.delete(`${target.schema}.${target.name}`);
    await this.write(
      "DELETE FROM xmin_sync.activity WHERE target_schema = $1 AND target_table = $2 AND pid = $3 AND host = $4",
      [target.schema, target.name, process.pid, hostname()],
    );
  }

  close(): Promise<void> {
    return this.conn.close();
  }
}
