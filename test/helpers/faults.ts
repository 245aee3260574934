import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { spawnCli, type CliResult } from "./cli.js";
import {
  runAsPostgres,
  startCluster,
  startStandby,
  waitForReplay,
  type Cluster,
} from "./cluster.js";

/**
 * Fault injection, from outside, as a user's runs die: a source under a
 * live pgbench load (inserts, updates that move rows, deletes, hot rows
 * updated by transactions that started in another order), synced with
 * deletes tracked hard, while the sync process is killed with SIGKILL at
 * seeded moments of each phase (a first load's COPY, its index builds,
 * the staging COPY, the key-set COPY, the merge slices, the delete
 * reconciliation, a --full resync), its sessions terminated on either
 * server, either server restarted at once (`pg_ctl -m immediate`), and a
 * standby it reads promoted mid-run. Then the load stops, two clean runs
 * follow, and source and target are compared row by row (key and a hash of
 * the row's text), independently of `validate`.
 *
 * Used by test/faults.test.ts (a short run) and scripts/faults.mjs (as many
 * kills as asked).
 */

export const KILL_PHASES = ["load", "index", "stage", "keys", "merge", "deletes", "full"] as const;
export type KillPhase = (typeof KILL_PHASES)[number];

export const FAULTS = [
  "terminate-source-copy",
  "terminate-source-merge",
  "terminate-target-copy",
  "terminate-target-merge",
  "restart-target",
  "restart-source",
  "sigint",
  "sigterm",
  "promote-standby",
] as const;
export type Fault = (typeof FAULTS)[number];

export interface FaultOptions {
  seed: number;
  kills: number;
  /** Rows of the main table (a first load must last long enough to be hit). */
  rows: number;
  faults: readonly Fault[];
  /** pgbench transactions per second (each: an update, an insert, a delete, a hot-row update). */
  loadRate?: number;
  log?: (line: string) => void;
}

export interface TableComparison {
  table: string;
  sourceRows: number;
  targetRows: number;
  lost: number;
  extra: number;
  duplicated: number;
  different: number;
  samples: string[];
}

export interface FaultReport {
  seed: number;
  rows: number;
  kills: { aimedAt: KillPhase; landedIn: string; delayMs: number }[];
  killsByPhase: Record<string, number>;
  faults: { fault: Fault; hit: boolean; exitCode: number | null; detail: string }[];
  /** Runs that ended by themselves (clean runs, runs the aim missed, runs hit by a fault). */
  runs: { ok: number; failed: number };
  /** First loads that went on from a killed one, and the parts they did not read again. */
  resumedLoads: number;
  partsSkipped: number;
  /** The longest a killed run's sessions lingered on a server. */
  orphanMaxMs: number;
  loadTransactions: number;
  tables: TableComparison[];
  /** Work tables (load_, stage_, keys_, repair_) and first-load plans left after the clean runs. */
  workTablesLeft: number;
  durationMs: number;
}

/** Statements that mark each phase (the target's side; all are ours). */
const PHASE_STATEMENTS: [string, RegExp][] = [
  ["load", /^COPY "xmin_sync"\."load_/],
  ["index", /^(CREATE (UNIQUE )?INDEX .* ON "xmin_sync"\."load_|ANALYZE "xmin_sync"\."load_)/],
  ["resume", /^(DELETE FROM|INSERT INTO) "xmin_sync"\."load_/],
  ["stage", /^COPY "xmin_sync"\."stage_/],
  ["keys", /^COPY "xmin_sync"\."keys_/],
  ["merge", /MERGE INTO "raw"\."items"|^INSERT INTO "raw"\."items" AS t/],
  ["deletes", /^DELETE FROM "raw"\."items" AS t WHERE NOT EXISTS/],
];
const statementOf = (phase: string) => PHASE_STATEMENTS.find(([p]) => p === phase)![1];

/** Where each kill aims: the statement to wait for, and how long after it to strike at most. */
const AIM: Record<KillPhase, { statement: RegExp; maxDelayMs: number; flags?: string[] }> = {
  load: { statement: statementOf("load"), maxDelayMs: 1500 },
  index: { statement: statementOf("index"), maxDelayMs: 150 },
  stage: { statement: statementOf("stage"), maxDelayMs: 200 },
  keys: { statement: statementOf("keys"), maxDelayMs: 150 },
  merge: { statement: statementOf("merge"), maxDelayMs: 250 },
  deletes: { statement: statementOf("deletes"), maxDelayMs: 60 },
  full: {
    statement: /^COPY "xmin_sync"\."stage_|MERGE INTO "raw"\."items"/,
    maxDelayMs: 400,
    flags: ["--full"],
  },
};

/** pgbench's transaction: one row of each class locked in the same order, so no deadlocks. */
const LOAD_SCRIPT = `\\set lo random(1, :rows / 2)
\\set hi random(:rows / 2 + 1, :rows)
\\set c random(1, 100)
BEGIN;
UPDATE fds.items SET val = val + 1, note = repeat('u', (random() * 150)::int) WHERE id = :lo;
INSERT INTO fds.items (id, grp, val, note, pad) VALUES (nextval('fds.items_new'), :c, 0, 'new', md5(random()::text));
DELETE FROM fds.items WHERE id = :hi;
UPDATE fds.counters SET n = n + 1, touched = now() WHERE id = :c;
END;
`;

/** A seeded PRNG (mulberry32): the same seed aims the same way. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The promise's value, or null after `ms` (the timer does not outlive it). */
async function within<T>(p: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((r) => (timer = setTimeout(() => r(null), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A persistent session for watching a server, reconnecting after the server went away. */
class Watch {
  private client: pg.Client | undefined;
  constructor(private readonly cluster: () => Cluster) {}

  async query<T extends pg.QueryResultRow>(sql: string, values: unknown[] = []): Promise<T[]> {
    try {
      if (!this.client) {
        const c = new pg.Client({ connectionString: this.cluster().url() });
        c.on("error", () => undefined);
        await c.connect();
        this.client = c;
      }
      return (await this.client.query<T>(sql, values)).rows;
    } catch (err) {
      await this.end();
      throw err;
    }
  }

  /** Our sessions' statements now; none while the server is away. */
  async ours(): Promise<{ pid: number; query: string; state: string | null }[]> {
    return this.query<{ pid: number; query: string; state: string | null }>(
      `SELECT pid, query, state FROM pg_stat_activity
        WHERE application_name LIKE 'xmin-sync%' AND pid <> pg_backend_pid()`,
    ).catch(() => []);
  }

  async end(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => undefined);
  }
}

/** pgbench writing to the source, started again whenever it dies (a restarted or promoted server). */
class Load {
  private child: ChildProcess | undefined;
  private stopping = false;
  private restarts = 0;

  constructor(
    private server: Cluster,
    private readonly script: string,
    private readonly rows: number,
    private readonly rate: number,
  ) {}

  start(): void {
    this.stopping = false;
    const child = spawn(
      join(this.server.bin, "pgbench"),
      [
        ...["-h", "127.0.0.1", "-p", String(this.server.port), "-U", "postgres"],
        ...["-n", "-c", "3", "-j", "1", "-T", "100000", "-R", String(this.rate)],
        ...["-f", this.script, "-D", `rows=${this.rows}`, "postgres"],
      ],
      { stdio: "ignore" },
    );
    this.child = child;
    child.on("close", () => {
      if (this.child !== child || this.stopping) return;
      this.restarts++;
      setTimeout(() => {
        if (!this.stopping && this.child === child) this.start();
      }, 500);
    });
  }

  /** Writes go to another server from now on (a promoted standby). */
  async moveTo(server: Cluster): Promise<void> {
    await this.stop();
    this.server = server;
    this.start();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const closed = new Promise((r) => child.once("close", r));
    child.kill("SIGINT");
    if ((await within(closed, 10_000)) === null) child.kill("SIGKILL");
    await closed;
  }
}

/** Stops a server at once (as a crash would) and starts it again on the same port. */
async function restartImmediate(cluster: Cluster): Promise<void> {
  const pgCtl = join(cluster.bin, "pg_ctl");
  await runAsPostgres(pgCtl, ["-D", cluster.dataDir, "-m", "immediate", "-w", "stop"]);
  await runAsPostgres(pgCtl, [
    ...["-D", cluster.dataDir, "-l", join(cluster.dir, "server.log")],
    ...["-o", `-p ${cluster.port}`, "-w", "-t", "120", "start"],
  ]);
}

type Run = ReturnType<typeof spawnCli>;

class Harness {
  readonly rng: () => number;
  private readonly started = Date.now();
  private source!: Cluster;
  private target!: Cluster;
  private standby: Cluster | undefined;
  /** The server the runs read (the source, or the standby once it is in use). */
  private reading!: Cluster;
  private sourceWatch = new Watch(() => this.reading);
  private targetWatch = new Watch(() => this.target);
  private load!: Load;
  private workDir = "";
  private readonly report: FaultReport;

  constructor(private readonly opts: FaultOptions) {
    this.rng = prng(opts.seed);
    this.report = {
      seed: opts.seed,
      rows: opts.rows,
      kills: [],
      killsByPhase: {},
      faults: [],
      runs: { ok: 0, failed: 0 },
      resumedLoads: 0,
      partsSkipped: 0,
      orphanMaxMs: 0,
      loadTransactions: 0,
      tables: [],
      workTablesLeft: 0,
      durationMs: 0,
    };
  }

  private log(line: string) {
    this.opts.log?.(
      `[${new Date().toISOString().slice(11, 19)} +${((Date.now() - this.started) / 1000).toFixed(1)}s] ${line}`,
    );
  }

  async setUp(): Promise<void> {
    this.log("starting servers");
    [this.source, this.target] = await Promise.all([
      startCluster({ version: "system" }),
      startCluster({ version: "17" }),
    ]);
    this.reading = this.source;
    const rows = this.opts.rows;
    await this.source.sql(`
      CREATE SCHEMA fds;
      CREATE TABLE fds.items (id bigint PRIMARY KEY, grp int NOT NULL, val numeric NOT NULL, note text, pad text);
      INSERT INTO fds.items SELECT i, i % 100, i, 'note ' || i, repeat(md5(i::text), 2)
        FROM generate_series(1, ${rows}) i;
      CREATE SEQUENCE fds.items_new START ${rows * 10 + 1};
      CREATE TABLE fds.counters (id int PRIMARY KEY, n bigint NOT NULL, touched timestamptz);
      INSERT INTO fds.counters SELECT i, 0, NULL FROM generate_series(1, 100) i;
    `);
    await this.source.sql("VACUUM ANALYZE fds.items, fds.counters");
    this.workDir = await mkdtemp(join(tmpdir(), "xmin-sync-faults-"));
    const script = join(this.workDir, "load.sql");
    await writeFile(script, LOAD_SCRIPT);
    this.load = new Load(this.source, script, rows, this.opts.loadRate ?? 100);
    this.load.start();
    this.log(`source (PostgreSQL 15) has ${rows} rows; pgbench writing`);
  }

  async tearDown(): Promise<void> {
    this.log("stopping");
    await this.load?.stop();
    await this.sourceWatch.end();
    await this.targetWatch.end();
    await this.standby?.stop();
    await Promise.all([this.source?.stop(), this.target?.stop()]);
    if (this.workDir) await rm(this.workDir, { recursive: true, force: true });
  }

  private spawnSync(flags: string[] = []): Run {
    return spawnCli(
      [
        "sync",
        ...["--source", this.reading.url(), "--target", this.target.url()],
        ...["--table", "fds.items:raw.items", "--table", "fds.counters:raw.counters"],
        ...["--deletes", "hard", "--workers", "2", "--json", ...flags],
      ],
      {
        env: {
          // Four parts to a first load (two per worker); merges in slices of 5000 rows.
          MIN_BATCH_SIZE: "5000",
          MAX_BATCH_SIZE: "5000",
          LOG_LEVEL: "error",
        },
      },
    );
  }

  private count(r: CliResult): void {
    if (r.code === 0) this.report.runs.ok++;
    else this.report.runs.failed++;
    for (const t of r.json) {
      const resumed = t.resumed as { partsSkipped: number } | undefined;
      if (t.status !== "ok" || !resumed) continue;
      this.report.resumedLoads++;
      this.report.partsSkipped += resumed.partsSkipped;
    }
  }

  /** Waits until none of our sessions is left on either server; records how long that took. */
  private async waitNoBackends(): Promise<void> {
    const since = Date.now();
    for (;;) {
      const left = [...(await this.sourceWatch.ours()), ...(await this.targetWatch.ours())];
      if (left.length === 0) break;
      if (Date.now() - since > 30_000) {
        throw new Error(`sessions of a killed run still there after 30 s: ${JSON.stringify(left)}`);
      }
      await sleep(50);
    }
    this.report.orphanMaxMs = Math.max(this.report.orphanMaxMs, Date.now() - since);
  }

  /** A run that is left to end; true when it succeeded. */
  private async cleanRun(flags: string[] = []): Promise<boolean> {
    const r = await this.spawnSync(flags).done;
    this.count(r);
    await this.waitNoBackends();
    if (r.code !== 0) this.log(`a clean run failed (${r.code}): ${r.stderr.trim().split("\n")[0]}`);
    return r.code === 0;
  }

  /** Waits for one of our statements matching `statement`; false if the run ended first. */
  private async aim(run: Run, statement: RegExp): Promise<boolean> {
    for (;;) {
      if (run.child.exitCode !== null || run.child.signalCode !== null) return false;
      const ours = await this.targetWatch.ours();
      if (ours.some((b) => b.state === "active" && statement.test(b.query))) return true;
      await sleep(10);
    }
  }

  /** The phase our sessions are in now, by their statements (the aimed one first: two tables run at once). */
  private async phaseNow(aimed: RegExp): Promise<string> {
    const active = (await this.targetWatch.ours()).filter((b) => b.state === "active");
    const statements = [...PHASE_STATEMENTS].sort(
      ([, a], [, b]) => Number(b.source === aimed.source) - Number(a.source === aimed.source),
    );
    for (const [phase, re] of statements) {
      if (active.some((b) => re.test(b.query))) return phase;
    }
    const other = active[0]?.query.match(/^\s*(\w+)/)?.[1]?.toUpperCase();
    return other ? `other (${other})` : "between statements";
  }

  private async targetHasItems(): Promise<boolean> {
    const rows = await this.targetWatch.query<{ t: string | null }>(
      "SELECT to_regclass('raw.items')::text AS t",
    );
    return rows[0]!.t !== null;
  }

  /** Changes enough rows that staging, key copies, merges and deletes last long enough to hit. */
  private async bulkChanges(): Promise<void> {
    const r = Math.floor(this.rng() * 13);
    const d = Math.floor(this.rng() * 97);
    const n = Math.ceil(this.opts.rows / 100);
    await this.reading.sql(`
      UPDATE fds.items SET val = val + 1, note = repeat('b', (random() * 150)::int) WHERE id % 13 = ${r};
      DELETE FROM fds.items WHERE id % 97 = ${d};
      INSERT INTO fds.items SELECT nextval('fds.items_new'), i % 100, i, 'bulk', md5(i::text)
        FROM generate_series(1, ${n}) i;
    `);
  }

  /** Puts the target where the phase can be hit: no table for a first load, a synced one otherwise. */
  private async prepare(phase: KillPhase): Promise<void> {
    if (phase === "load" || phase === "index") {
      // A first load again (resuming the load table a killed one left, if any).
      await this.target.sql("DROP TABLE IF EXISTS raw.items");
      const state = await this.target.sql("SELECT to_regclass('xmin_sync.state') AS t");
      if (state[0]!.t !== null) {
        await this.target.sql(
          "DELETE FROM xmin_sync.state WHERE target_schema = 'raw' AND target_table = 'items'",
        );
      }
      return;
    }
    for (let i = 0; i < 3 && !(await this.targetHasItems()); i++) await this.cleanRun();
    await this.bulkChanges();
  }

  async kill(phase: KillPhase): Promise<void> {
    const aim = AIM[phase];
    for (let attempt = 1; attempt <= 5; attempt++) {
      await this.prepare(phase);
      const run = this.spawnSync(aim.flags);
      if (!(await this.aim(run, aim.statement))) {
        this.count(await run.done);
        await this.waitNoBackends();
        continue;
      }
      const delayMs = Math.round(this.rng() * aim.maxDelayMs);
      await sleep(delayMs);
      const landedIn = await this.phaseNow(aim.statement);
      run.child.kill("SIGKILL");
      await run.done;
      this.report.kills.push({ aimedAt: phase, landedIn, delayMs });
      this.report.killsByPhase[landedIn] = (this.report.killsByPhase[landedIn] ?? 0) + 1;
      this.log(`kill ${this.report.kills.length}: aimed at ${phase}, landed in ${landedIn}`);
      await this.waitNoBackends();
      return;
    }
    this.log(`missed ${phase} five times; going on`);
  }

  async fault(fault: Fault): Promise<void> {
    if (fault === "promote-standby") return this.promoteStandby();
    const copy = fault.endsWith("-copy") || fault === "restart-source";
    await this.prepare("stage");
    const run = this.spawnSync();
    const hit = await this.aim(run, copy ? statementOf("stage") : statementOf("merge"));
    let detail = "";
    if (hit) detail = await this.inject(fault, run);
    const ended = await within(run.done, 120_000);
    if (!ended) run.child.kill("SIGKILL");
    const r = ended ?? (await run.done);
    this.count(r);
    if (fault === "sigint" || fault === "sigterm") {
      const since = Date.now();
      await this.waitNoBackends();
      detail += `; no session left ${Date.now() - since} ms after the exit`;
    } else {
      await this.waitNoBackends();
    }
    this.report.faults.push({ fault, hit, exitCode: r.code, detail });
    this.log(`fault ${fault}: ${hit ? "hit" : "missed"}, run exited ${r.code}; ${detail}`);
  }

  private async inject(fault: Fault, run: Run): Promise<string> {
    switch (fault) {
      case "terminate-source-copy":
      case "terminate-source-merge":
      case "terminate-target-copy":
      case "terminate-target-merge": {
        const side = fault.includes("source") ? this.reading : this.target;
        const rows = await side.sql<{ n: number }>(
          `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
            WHERE application_name LIKE 'xmin-sync%'`,
        );
        return `${rows[0]!.n} sessions terminated`;
      }
      case "restart-target":
        await this.targetWatch.end();
        await restartImmediate(this.target);
        return "target restarted (immediate)";
      case "restart-source":
        await this.sourceWatch.end();
        await restartImmediate(this.source);
        return "source restarted (immediate)";
      case "sigint":
      case "sigterm":
        run.child.kill(fault === "sigint" ? "SIGINT" : "SIGTERM");
        return `${fault.toUpperCase()} sent`;
      case "promote-standby":
        return "";
    }
  }

  /**
   * Runs read a streaming standby of the source; one is under way when the
   * standby is promoted. From then on the promoted standby is the source
   * (writes move to it); the old primary is stopped.
   */
  private async promoteStandby(): Promise<void> {
    await this.prepare("stage");
    const standby = await startStandby(this.source, { settings: { hot_standby_feedback: "on" } });
    this.standby = standby;
    await this.bulkChanges();
    await waitForReplay(this.source, standby);
    await this.sourceWatch.end();
    this.reading = standby;
    // One run from the standby, then one the promotion hits.
    const before = await this.cleanRun();
    await this.source.sql(
      "UPDATE fds.items SET val = val + 1 WHERE id % 11 = 3; DELETE FROM fds.items WHERE id % 89 = 5",
    );
    await waitForReplay(this.source, standby);
    const run = this.spawnSync();
    const hit = await this.aim(run, /^COPY "xmin_sync"\."(stage|keys)_|MERGE INTO "raw"\."items"/);
    if (hit)
      await runAsPostgres(join(standby.bin, "pg_ctl"), ["-D", standby.dataDir, "-w", "promote"]);
    const r = await run.done;
    this.count(r);
    await this.waitNoBackends();
    // The old primary goes; writes go on against the promoted standby.
    await this.load.moveTo(standby);
    await this.source.halt("immediate");
    this.report.faults.push({
      fault: "promote-standby",
      hit,
      exitCode: r.code,
      detail: `a run from the standby ${before ? "succeeded" : "failed"} first; then it was promoted mid-run`,
    });
    this.log(`fault promote-standby: ${hit ? "hit" : "missed"}, run exited ${r.code}`);
    await sleep(3000);
  }

  /** Stops the load, runs two clean syncs, compares every row. */
  async finish(): Promise<FaultReport> {
    await this.load.stop();
    await this.waitNoBackends();
    let clean = 0;
    for (let attempt = 0; clean < 2 && attempt < 5; attempt++) {
      if (await this.cleanRun()) clean++;
    }
    if (clean < 2) throw new Error("two clean runs did not succeed after the faults");
    this.report.tables = [
      await compareTable(this.reading, this.target, "fds.items", "raw.items"),
      await compareTable(this.reading, this.target, "fds.counters", "raw.counters"),
    ];
    const left = await this.target.sql<{ n: number }>(
      `SELECT (SELECT count(*)::int FROM pg_tables WHERE schemaname = 'xmin_sync'
                 AND tablename ~ '^(load|stage|keys|repair)_[0-9a-f]{16}$')
            + (SELECT count(*)::int FROM xmin_sync.first_load) AS n`,
    );
    this.report.workTablesLeft = left[0]!.n;
    const tx = await this.reading.sql<{ n: string }>(
      "SELECT coalesce(sum(n), 0)::text AS n FROM fds.counters",
    );
    this.report.loadTransactions = Number(tx[0]!.n);
    this.report.durationMs = Date.now() - this.started;
    return this.report;
  }
}

/** Every row on both sides as its key and a hash of its text; what differs, counted. */
export async function compareTable(
  source: Cluster,
  target: Cluster,
  sourceTable: string,
  targetTable: string,
): Promise<TableComparison> {
  const read = async (cluster: Cluster, table: string, columns: string[]) => {
    const c = await cluster.client();
    try {
      await c.query("SET TimeZone = 'UTC'");
      const { rows } = await c.query<{ k: string; h: string }>(
        `SELECT id::text AS k, md5(ROW(${columns.join(", ")})::text) AS h FROM ${table} ORDER BY id`,
      );
      return rows;
    } finally {
      await c.end();
    }
  };
  const cols = await source.sql<{ c: string }>(
    `SELECT quote_ident(attname) AS c FROM pg_attribute
      WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [sourceTable],
  );
  const columns = cols.map((r) => r.c);
  const [src, dst] = await Promise.all([
    read(source, sourceTable, columns),
    read(target, targetTable, columns),
  ]);
  const want = new Map(src.map((r) => [r.k, r.h]));
  const seen = new Map<string, number>();
  const out: TableComparison = {
    table: sourceTable,
    sourceRows: src.length,
    targetRows: dst.length,
    lost: 0,
    extra: 0,
    duplicated: 0,
    different: 0,
    samples: [],
  };
  for (const r of dst) {
    const n = (seen.get(r.k) ?? 0) + 1;
    seen.set(r.k, n);
    if (n > 1) out.duplicated++;
    const h = want.get(r.k);
    if (h === undefined) out.extra++;
    else if (h !== r.h && n === 1) out.different++;
    if ((h === undefined || h !== r.h) && out.samples.length < 5) out.samples.push(r.k);
  }
  for (const r of src) {
    if (!seen.has(r.k)) {
      out.lost++;
      if (out.samples.length < 5) out.samples.push(r.k);
    }
  }
  return out;
}

/**
 * The kills, spread evenly over the phases in a seeded order, with the
 * faults among them; then the load stops, two clean runs, the comparison.
 */
export async function runFaults(opts: FaultOptions): Promise<FaultReport> {
  const h = new Harness(opts);
  try {
    await h.setUp();
    const phases: KillPhase[] = [];
    while (phases.length < opts.kills) {
      const round = [...KILL_PHASES];
      for (let i = round.length - 1; i > 0; i--) {
        const j = Math.floor(h.rng() * (i + 1));
        [round[i], round[j]] = [round[j]!, round[i]!];
      }
      phases.push(...round);
    }
    phases.length = opts.kills;
    // Faults go between kills; the standby's promotion last (the source changes with it).
    const faults = opts.faults.filter((f) => f !== "promote-standby");
    const every = Math.max(1, Math.floor(phases.length / (faults.length + 1)));
    let next = 0;
    for (const [i, phase] of phases.entries()) {
      await h.kill(phase);
      if ((i + 1) % every === 0 && next < faults.length) await h.fault(faults[next++]!);
    }
    while (next < faults.length) await h.fault(faults[next++]!);
    if (opts.faults.includes("promote-standby")) await h.fault("promote-standby");
    return await h.finish();
  } finally {
    await h.tearDown();
  }
}

/** The report as Markdown, for the README and the script's output. */
export function formatFaultReport(r: FaultReport): string {
  const lines = [
    `seed ${r.seed}, ${r.rows} rows, ${r.loadTransactions} pgbench transactions, ${(r.durationMs / 1000).toFixed(0)} s`,
    "",
    `| SIGKILLs | ${r.kills.length} |`,
    "| --- | --- |",
    ...Object.entries(r.killsByPhase)
      .sort()
      .map(([p, n]) => `| … landing in ${p} | ${n} |`),
    `| faults injected | ${r.faults.filter((f) => f.hit).length} of ${r.faults.length} (${r.faults.map((f) => f.fault).join(", ")}) |`,
    `| runs that ended by themselves | ${r.runs.ok} ok, ${r.runs.failed} failed |`,
    `| first loads resumed from a killed one | ${r.resumedLoads} (${r.partsSkipped} parts not read again) |`,
    `| longest a killed run's sessions lingered | ${r.orphanMaxMs} ms |`,
    ...r.tables.map(
      (t) =>
        `| ${t.table}: rows lost / extra / duplicated / different | ${t.lost} / ${t.extra} / ${t.duplicated} / ${t.different} (of ${t.sourceRows}) |`,
    ),
    `| work tables left after the clean runs | ${r.workTablesLeft} |`,
  ];
  return lines.join("\n") + "\n";
}
