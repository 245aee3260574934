import { Reconnecting } from "./connection.js";

/** What the worker sees of the source and of its own work, every few seconds. */
export interface LoadSample {
  /** Milliseconds since some origin (Date.now()). */
  at: number;
  /** Round trip of a small fixed statement on the source. */
  latencyMs: number;
  /** Other sessions in a transaction on the source (ours excluded). */
  activeBackends: number;
  /** Bytes this worker copied since the previous sample. */
  bytes: number;
  /** Work waited for a slot, or every slot was busy. */
  demand: boolean;
}

export interface Decision {
  limit: number;
  /** Why the limit changed; undefined when it did not. */
  reason?: string;
  busy: boolean;
}

export interface ControllerOptions {
  min: number;
  max: number;
  initial: number;
  /** Busy when this many other backends are active on the source. */
  busyBackends: number;
}

/**
 * Busy when the probe takes this many times its quiet baseline (and 3 ms
 * more) two samples in a row: one slow sample is a hiccup (a checkpoint, an
 * index build of ours), two are a trend.
 */
const LATENCY_FACTOR = 2.5;
const LATENCY_FLOOR_MS = 3;
/** After backing off, growth waits this long with the source quiet. */
const QUIET_MS = 10_000;
/** A step above the last good limit is judged on this much time. */
const TRIAL_MS = 10_000;
/** A step is kept when throughput grew by this much with it. */
const GAIN = 1.1;
/** After a step that brought nothing, wait this long before trying again. */
const TRIAL_HOLD_MS = 60_000;

/**
 * How many parallel streams a worker uses, within minWorkers..maxWorkers.
 * It halves when the source is busy (other backends active, or our probe
 * statement slower than its quiet baseline), climbs back to the last limit
 * that paid off once the source is quiet again, and above that tries one
 * more stream at a time, keeping it only when throughput grows with it.
 */
export class ParallelismController {
  limit: number;
  /** The highest limit whose throughput gain was shown, or the starting one. */
  private good: number;
  private baseline: number | undefined;
  private smoothed: number | undefined;
  private slowSamples = 0;
  private quietSince = 0;
  private lastDecrease = 0;
  private holdUntil = 0;
  private trial: { from: number; since: number; before: number; bytes: number } | undefined;
  private readonly recent: { at: number; bytes: number }[] = [];

  constructor(private readonly opts: ControllerOptions) {
    this.limit = clamp(opts.initial, opts.min, opts.max);
    this.good = this.limit;
  }

  observe(s: LoadSample): Decision {
    this.recent.push({ at: s.at, bytes: s.bytes });
    while (this.recent.length > 0 && s.at - this.recent[0]!.at > TRIAL_MS) this.recent.shift();
    if (this.trial) this.trial.bytes += s.bytes;

    this.smoothed =
      this.smoothed === undefined ? s.latencyMs : this.smoothed * 0.7 + s.latencyMs * 0.3;
    // The baseline follows the quietest the source has been, and drifts up
    // slowly so that a permanently busier source is eventually the new quiet.
    if (this.baseline === undefined || this.smoothed < this.baseline) this.baseline = this.smoothed;
    else this.baseline += (this.smoothed - this.baseline) * 0.005;

    // Each sample (itself a median) against the quiet baseline; the
    // smoothed value only moves the baseline, so one spike counts once.
    this.slowSamples =
      s.latencyMs > this.baseline * LATENCY_FACTOR && s.latencyMs - this.baseline > LATENCY_FLOOR_MS
        ? this.slowSamples + 1
        : 0;
    const slow = this.slowSamples >= 2;
    const crowded = s.activeBackends >= this.opts.busyBackends;
    const busy = slow || crowded;

    if (busy) {
      this.quietSince = s.at;
      // Back to the last good limit once quiet, but no step above it for a
      // while: a trial under way when the source got busy may be the cause.
      this.trial = undefined;
      this.holdUntil = s.at + TRIAL_HOLD_MS;
      // Wait a sample after a decrease, so that it shows before the next one.
      if (this.limit > this.opts.min && s.at - this.lastDecrease >= 4000) {
        const from = this.limit;
        this.limit = Math.max(this.opts.min, Math.floor(this.limit / 2));
        this.lastDecrease = s.at;
        const why = [
          ...(slow
            ? [`probe ${s.latencyMs.toFixed(1)} ms vs ${this.baseline.toFixed(1)} ms quiet`]
            : []),
          ...(crowded ? [`${s.activeBackends} other sessions in a transaction`] : []),
        ].join(", ");
        return {
          limit: this.limit,
          busy,
          reason: `source busy (${why}): ${from} -> ${this.limit}`,
        };
      }
      return { limit: this.limit, busy };
    }

    if (!s.demand || this.limit >= this.opts.max || s.at - this.quietSince < QUIET_MS) {
      return { limit: this.limit, busy };
    }
    // Back to what worked before the source got busy: no need to prove it again.
    if (this.limit < this.good) {
      const from = this.limit;
      this.limit += 1;
      return { limit: this.limit, busy, reason: `source quiet again: ${from} -> ${this.limit}` };
    }
    if (this.trial) {
      if (s.at - this.trial.since < TRIAL_MS) return { limit: this.limit, busy };
      const after = (this.trial.bytes / (s.at - this.trial.since)) * 1000;
      const { from, before } = this.trial;
      this.trial = undefined;
      if (after >= before * GAIN && after > 0) {
        this.good = this.limit;
        return {
          limit: this.limit,
          busy,
          reason: `throughput grew ${rate(before)} -> ${rate(after)}: keeping ${this.limit}`,
        };
      }
      this.limit = from;
      this.holdUntil = s.at + TRIAL_HOLD_MS;
      return {
        limit: this.limit,
        busy,
        reason: `throughput did not grow (${rate(before)} -> ${rate(after)}): back to ${from}`,
      };
    }
    if (s.at < this.holdUntil) return { limit: this.limit, busy };
    const before = this.throughput(s.at);
    this.trial = { from: this.limit, since: s.at, before, bytes: 0 };
    this.limit += 1;
    return { limit: this.limit, busy, reason: `trying ${this.limit} (at ${rate(before)})` };
  }

  /** Bytes per second over the last samples. */
  private throughput(now: number): number {
    const first = this.recent[0];
    if (!first || now - first.at <= 0) return 0;
    const bytes = this.recent.slice(1).reduce((a, r) => a + r.bytes, 0);
    return (bytes / (now - first.at)) * 1000;
  }
}

function clamp(n: number, min: number, max: number): number {
  return Math.max(min, Math.min(max, n));
}

function rate(bytesPerSecond: number): string {
  return `${(bytesPerSecond / 1e6).toFixed(1)} MB/s`;
}

/**
 * Measures the source: the round trip of a small CPU-bound statement (the
 * median of three; it slows down when the server's CPUs are contended) and
 * the number of other sessions in a transaction. Seeing other roles'
 * sessions' state needs pg_read_all_stats (or superuser); without it only
 * the latency counts.
 */
export class SourceProbe {
  private readonly conn: Reconnecting;

  constructor(url: string) {
    this.conn = new Reconnecting(url, "source", "xmin-sync probe");
  }

  async sample(): Promise<{ latencyMs: number; activeBackends: number }> {
    const q = (sql: string) => this.conn.query(sql, [], { timeoutMs: 10_000 });
    // Connected first, so that the timed statements measure the server alone.
    await q("SELECT 1");
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const started = performance.now();
      await q("SELECT sum(i) FROM generate_series(1, 20000) AS s(i)");
      times.push(performance.now() - started);
    }
    // Sessions inside a transaction, whether running a statement right now
    // or between two: a busy OLTP session is often the latter.
    const { rows } = await this.conn.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')
          AND backend_type = 'client backend' AND pid <> pg_backend_pid()
          AND application_name NOT LIKE 'xmin-sync%'`,
      [],
      { timeoutMs: 10_000 },
    );
    return { latencyMs: times.sort((a, b) => a - b)[1]!, activeBackends: rows[0]!.n };
  }

  close(): Promise<void> {
    return this.conn.close();
  }
}
