import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type pg from "pg";
import { spawnCli } from "./helpers/cli.js";
import { startCluster, type Cluster } from "./helpers/cluster.js";
import { columnList, tableText } from "./helpers/compare.js";
import { waitFor } from "./helpers/wait.js";

/**
 * The fleet (DESIGN §1, "a fleet of workers that share a schedule"): real
 * worker processes on a real pg-boss queue. Two workers share three
 * scheduled tables (two `every: 1s`, one cron); every table converges; the
 * run history shows no two runs of a table overlapping; a SIGKILLed
 * worker's table is taken over by the other; SIGTERM exits 0.
 */

const TABLES = ["fleet.t1", "fleet.t2", "fleet.t3"];

describe("two workers sharing a schedule", () => {
  let source: Cluster;
  let target: Cluster;
  let dir: string;
  let config: string;
  const workers: ReturnType<typeof spawnCli>[] = [];
  const clients: pg.Client[] = [];

  const startWorker = () => {
    const w = spawnCli(
      [
        ...["worker", "--config", config, "--poll", "0.2", "--cron-check", "1"],
        ...["--http", "127.0.0.1:0", "--shutdown-timeout", "1"],
      ],
      { env: { LOG_LEVEL: "info" } },
    );
    workers.push(w);
    return w;
  };
  /** The worker's status endpoint, from its log. */
  const endpoint = (w: ReturnType<typeof spawnCli>) =>
    waitFor("the worker's endpoint", async () => /"url":"(http:[^"]+)"/.exec(w.stderr())?.[1]);

  /** Whether the copy has the source's rows (as text, in key order). */
  const converged = async (table: string) => {
    const cols = await columnList(source, "postgres", table);
    const [a, b] = await Promise.all([
      tableText(source, "postgres", table, cols, ["id"]),
      tableText(target, "postgres", table, cols, ["id"]).catch(() => null),
    ]);
    return b !== null && JSON.stringify(a) === JSON.stringify(b);
  };

  const runs = (table: string) =>
    target.sql<{
      started: Date;
      finished: Date;
      pid: number;
      status: string;
      error: string | null;
    }>(
      `SELECT started_at AS started, finished_at AS finished, pid, status, error
         FROM xmin_sync.history
        WHERE kind = 'sync' AND target_schema = 'fleet' AND target_table = $1
        ORDER BY started_at`,
      [table.split(".")[1]],
    );

  before(async () => {
    [source, target] = await Promise.all([
      startCluster({ version: "17" }),
      startCluster({ version: "17" }),
    ]);
    await source.sql(`
      CREATE SCHEMA fleet;
      CREATE TABLE fleet.t1 (id int PRIMARY KEY, v text);
      CREATE TABLE fleet.t2 (id int PRIMARY KEY, v text);
      CREATE TABLE fleet.t3 (id int PRIMARY KEY, v text);
      INSERT INTO fleet.t1 SELECT i, 'one ' || i FROM generate_series(1, 3000) i;
      INSERT INTO fleet.t2 SELECT i, 'two ' || i FROM generate_series(1, 3000) i;
      INSERT INTO fleet.t3 SELECT i, 'three ' || i FROM generate_series(1, 3000) i;
    `);
    dir = await mkdtemp(join(tmpdir(), "xmin-sync-fleet-"));
    config = join(dir, "sync.yaml");
    await writeFile(
      config,
      `source: ${source.url()}
target: ${target.url()}
workers: 1
maxWorkers: 2
tables:
  - source: fleet.t1
    every: 1s
  - source: fleet.t2
    every: 1s
  - source: fleet.t3
    schedule: "* * * * *"
`,
    );
  });

  after(async () => {
    for (const w of workers) {
      if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill("SIGKILL");
      await w.done;
    }
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    await Promise.all([source?.stop(), target?.stop()]);
    await rm(dir, { recursive: true, force: true });
  });

  test("every table converges, and no two runs of a table overlap", async () => {
    startWorker();
    startWorker();
    for (const t of TABLES) await waitFor(`${t} copied`, () => converged(t), 60_000);

    await source.sql(`
      UPDATE fleet.t1 SET v = 'changed' WHERE id % 7 = 0;
      INSERT INTO fleet.t2 SELECT i, 'new' FROM generate_series(3001, 3100) i;
    `);
    await waitFor("fleet.t1 updated", () => converged("fleet.t1"), 30_000);
    await waitFor("fleet.t2 inserts copied", () => converged("fleet.t2"), 30_000);

    const pids = new Set<number>();
    for (const t of TABLES) {
      const history = await runs(t);
      assert.ok(history.length >= 1, `${t} has runs in the history`);
      for (let i = 1; i < history.length; i++) {
        assert.ok(
          history[i]!.started >= history[i - 1]!.finished,
          `${t}: run ${i} started ${history[i]!.started.toISOString()} before run ${i - 1} ` +
            `finished ${history[i - 1]!.finished.toISOString()}`,
        );
      }
      for (const r of history) pids.add(r.pid);
    }
    const workerPids = new Set(workers.map((w) => w.child.pid));
    assert.deepEqual(
      [...pids].filter((p) => !workerPids.has(p)),
      [],
      "runs were made by the workers",
    );
    const logs = () => workers.map((w) => w.child.pid + ": " + w.stderr().slice(-3000)).join("\n");
    assert.equal(pids.size, 2, `both workers ran tables\n${logs()}`);
    // Nothing to do for a while: runs of `every: 1s` tables keep coming,
    // one at a time (the overlap check above covers them).
    assert.ok((await runs("fleet.t1")).length >= 3, "t1 runs every second");
  });

  test("a SIGKILLed worker's table is run by the other worker", async (t) => {
    // Hold the copy so that t1's next run stays in progress: it can stage
    // rows but its MERGE waits for this lock.
    const blocker = await target.client();
    clients.push(blocker);
    await blocker.query("BEGIN");
    await blocker.query("LOCK TABLE fleet.t1 IN SHARE MODE");
    await source.sql("UPDATE fleet.t1 SET v = 'while a worker died' WHERE id <= 100");

    const victimPid = await waitFor(
      "a run of t1 blocked on the lock",
      async () => {
        const rows = await target.sql<{ pid: number }>(
          `SELECT a.pid FROM xmin_sync.activity a
            WHERE a.target_schema = 'fleet' AND a.target_table = 't1'
              AND EXISTS (SELECT 1 FROM pg_locks l
                           WHERE NOT l.granted AND l.relation = 'fleet.t1'::regclass)`,
        );
        return rows[0]?.pid;
      },
      30_000,
    );
    const victim = workers.find((w) => w.child.pid === victimPid);
    assert.ok(victim, `the run is one of our workers' (pid ${victimPid})`);
    const survivor = workers.find((w) => w !== victim && w.child.exitCode === null)!;
    // Any worker's page shows the table running, and where.
    const view = (await (await fetch(`${await endpoint(survivor)}/api/tables`)).json()) as {
      tables: { table: string; state: string; running: { pid: number } | null }[];
    };
    const t1 = view.tables.find((t) => t.table === "fleet.t1")!;
    assert.equal(t1.state, "running");
    assert.equal(t1.running?.pid, victimPid);
    const metrics = await (await fetch(`${await endpoint(survivor)}/metrics`)).text();
    assert.match(metrics, /^xmin_sync_worker_parallelism [12]$/m);
    const killedAt = new Date();
    victim.child.kill("SIGKILL");
    await victim.done;
    await blocker.query("COMMIT");

    const takeover = await waitFor(
      "the other worker to run t1",
      async () =>
        (await runs("fleet.t1")).find(
          (r) => r.pid === survivor.child.pid && r.status === "ok" && r.started > killedAt,
        ),
      60_000,
      250,
    );
    const seconds = (takeover.finished.getTime() - killedAt.getTime()) / 1000;
    assert.ok(seconds < 60, `taken over within a minute (${seconds} s)`);
    t.diagnostic(`t1 taken over ${seconds.toFixed(1)} s after the SIGKILL`);
    assert.ok(await converged("fleet.t1"), "t1 equals the source after the takeover");
  });

  test("SIGTERM: the worker cancels a table it cannot finish in time, and exits 0", async () => {
    const survivor = workers.find((w) => w.child.exitCode === null && w.child.signalCode === null)!;
    const watermark = async () =>
      (
        await target.sql<{ w: string }>(
          "SELECT watermark::text AS w FROM xmin_sync.state WHERE target_table = 't2'",
        )
      )[0]!.w;
    await waitFor("t2 up to date", () => converged("fleet.t2"), 30_000);
    // A run of t2 that cannot finish: its MERGE waits for this lock.
    const blocker = await target.client();
    clients.push(blocker);
    await blocker.query("BEGIN");
    await blocker.query("LOCK TABLE fleet.t2 IN SHARE MODE");
    const before = await watermark();
    await source.sql("UPDATE fleet.t2 SET v = 'not before the shutdown' WHERE id <= 10");
    await waitFor(
      "t2's run blocked",
      async () =>
        (
          await target.sql(
            "SELECT 1 FROM pg_locks WHERE NOT granted AND relation = 'fleet.t2'::regclass",
          )
        ).length > 0,
      30_000,
    );
    const stopping = Date.now();
    survivor.child.kill("SIGTERM");
    const r = await survivor.done;
    assert.equal(r.code, 0, `exit code 0 after SIGTERM; stderr: ${r.stderr.slice(-2000)}`);
    assert.match(r.stderr, /"msg":"cancelling running tables"/);
    assert.match(r.stderr, /"msg":"worker stopped"/);
    assert.ok(Date.now() - stopping < 20_000, "within the shutdown timeout and the cancel grace");
    await blocker.query("COMMIT");
    // The cancelled run committed nothing: the watermark is where it was,
    // and its job went back to the queue instead of staying "running".
    await waitFor(
      "the cancelled run's connections to go",
      async () =>
        (
          await target.sql(
            "SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'xmin-sync%' AND pid <> pg_backend_pid()",
          )
        ).length === 0,
      10_000,
    );
    assert.equal(await watermark(), before);
    assert.equal(await converged("fleet.t2"), false, "the change waits for the next run");
    const active = await target.sql<{ n: number }>(
      "SELECT count(*)::int AS n FROM xmin_sync_queue.job WHERE state = 'active' AND name LIKE 'xmin-sync/%'",
    );
    assert.equal(active[0]!.n, 0, "no job left running");
  });
});
