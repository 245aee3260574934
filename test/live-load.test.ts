import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { userInfo } from "node:os";
import { join } from "node:path";
import { sync } from "../src/index.js";
import type { TableResult } from "../src/sync/types.js";
import {
  runAsPostgres,
  startCluster,
  systemPostgresSkip,
  type Cluster,
} from "./helpers/cluster.js";
import { columnList, tableText } from "./helpers/compare.js";

/**
 * The correctness model (docs/correctness.md) as a whole, under a live write load: pgbench (the TPC-B script
 * plus a script that inserts accounts, tellers and branches) runs against a
 * PostgreSQL 15 source while syncs run one after another: the first a full
 * copy, the rest incremental, each from a snapshot taken mid-load with
 * transactions in flight. One more sync after the load ends, and every table
 * on every target equals the source row for row. Two targets at once: 17
 * (MERGE) and 14 (INSERT … ON CONFLICT).
 */

const TABLES = [
  { name: "pgbench_accounts", key: "aid" },
  { name: "pgbench_branches", key: "bid" },
  { name: "pgbench_tellers", key: "tid" },
];
const LOAD_SECONDS = 20;

/** Inserts alongside TPC-B's updates: new keys, in transactions that also update. */
const INSERT_SCRIPT = `\\set bid random(1, 5)
\\set tid random(1, 50)
BEGIN;
INSERT INTO pgbench_accounts (aid, bid, abalance, filler) VALUES (nextval('extra_aid'), :bid, 0, 'added under load');
UPDATE pgbench_tellers SET tbalance = tbalance - 1 WHERE tid = :tid;
INSERT INTO pgbench_tellers (tid, bid, tbalance, filler) SELECT nextval('extra_tid'), :bid, 0, 'new teller' WHERE random() < 0.05;
INSERT INTO pgbench_branches (bid, bbalance, filler) SELECT nextval('extra_bid'), 0, 'new branch' WHERE random() < 0.01;
END;
`;

function postgresIds(): { uid: number; gid: number } | undefined {
  if (userInfo().uid !== 0) return undefined;
  const u = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
  const g = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
  return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
}

/** Count and digest of the rows as text, in key order, with samples of any difference. */
async function assertSameRows(source: Cluster, target: Cluster, table: string, key: string) {
  const cols = await columnList(source, "postgres", table);
  const digest = async (c: Cluster) =>
    (
      await c.sql<{ n: string; d: string }>(
        `SELECT count(*)::text AS n,
                md5(coalesce(string_agg(ROW(${cols.join(", ")})::text, E'\\n' ORDER BY ${key}), '')) AS d
           FROM ${table}`,
      )
    )[0]!;
  const [s, t] = await Promise.all([digest(source), digest(target)]);
  if (s.n === t.n && s.d === t.d) return;
  const [src, dst] = await Promise.all([
    tableText(source, "postgres", table, cols, [key]),
    tableText(target, "postgres", table, cols, [key]),
  ]);
  const inTarget = new Set(dst);
  const inSource = new Set(src);
  const missing = src.filter((r) => !inTarget.has(r));
  const extra = dst.filter((r) => !inSource.has(r));
  assert.fail(
    `${table} on target ${target.version}: ${t.n} rows, source ${s.n}; ` +
      `${missing.length} source rows missing or different, e.g. ${missing.slice(0, 3).join(" ")}; ` +
      `${extra.length} target rows not in the source, e.g. ${extra.slice(0, 3).join(" ")}`,
  );
}

describe("under a live pgbench load", { skip: systemPostgresSkip() }, () => {
  let source: Cluster;
  let targets: Cluster[] = [];
  let pgbench: ChildProcess | undefined;

  before(async () => {
    let t17: Cluster;
    let t14: Cluster;
    [source, t17, t14] = await Promise.all([
      startCluster({ version: "system" }),
      startCluster({ version: "17" }),
      startCluster({ version: "14" }),
    ]);
    targets = [t17, t14];
    await runAsPostgres(join(source.bin, "pgbench"), [
      "-i",
      "-q",
      "-s",
      "5",
      ...pgbenchTo(),
      "postgres",
    ]);
    await source.sql(`
      CREATE SEQUENCE extra_aid START 10000001;
      CREATE SEQUENCE extra_tid START 100001;
      CREATE SEQUENCE extra_bid START 10001;
    `);
  });
  after(async () => {
    if (pgbench && pgbench.exitCode === null && pgbench.signalCode === null) {
      const exited = new Promise((r) => pgbench!.once("close", r));
      pgbench.kill("SIGKILL");
      await exited;
    }
    await Promise.all([source?.stop(), ...targets.map((t) => t.stop())]);
  });

  /** pgbench's connection flags for the source. */
  const pgbenchTo = () => ["-h", "127.0.0.1", "-p", String(source.port), "-U", "postgres"];

  const syncAll = async (): Promise<TableResult[][]> =>
    Promise.all(
      targets.map(async (target) => {
        const results = await sync({
          source: source.url(),
          target: target.url(),
          tables: TABLES.map((t) => ({ source: { schema: "public", name: t.name } })),
        });
        for (const r of results) assert.equal(r.status, "ok", `${target.version}: ${r.error}`);
        return results;
      }),
    );

  test("several syncs during the load and one after: every target equals the source", async () => {
    const script = join(source.dir, "inserts.sql");
    await writeFile(script, INSERT_SCRIPT, { mode: 0o644 });
    // One pgbench run of LOAD_SECONDS, then short ones until three syncs
    // have run under load: a slow machine must not turn into a failed test.
    const startLoad = (seconds: number) => {
      const child = spawn(
        join(source.bin, "pgbench"),
        [
          ...pgbenchTo(),
          "-c",
          "4",
          "-j",
          "2",
          "-T",
          String(seconds),
          "-b",
          "tpcb-like@4",
          "-f",
          `${script}@1`,
          "postgres",
        ],
        { ...(postgresIds() ?? {}), env: { ...process.env, LC_ALL: "C" }, stdio: "pipe" },
      );
      pgbench = child;
      let out = "";
      child.stdout!.on("data", (d) => (out += d));
      child.stderr!.on("data", (d) => (out += d));
      const load = { running: true, done: new Promise<void>(() => {}), out: () => out };
      load.done = new Promise<void>((resolve, reject) =>
        child.once("close", (code) => {
          load.running = false;
          if (code !== 0) reject(new Error(`pgbench failed (${code}):\n${out}`));
          else resolve();
        }),
      );
      load.done.catch(() => {});
      return load;
    };
    let load = startLoad(LOAD_SECONDS);

    // Let the load start, so even the first (full) copy reads a busy table.
    await new Promise((r) => setTimeout(r, 1000));
    const during: TableResult[][][] = [];
    for (;;) {
      during.push(await syncAll());
      if (load.running) continue;
      await load.done;
      assert.match(load.out(), /number of transactions actually processed: [1-9]/, load.out());
      if (during.length >= 3) break;
      load = startLoad(5);
    }

    assert.ok(during.length >= 3, `at least 3 syncs ran during the load (${during.length})`);
    for (const perTarget of during[0]!) {
      for (const r of perTarget) assert.equal(r.mode, "full", "the first run copies whole tables");
    }
    const incremental = during.slice(1).flat(2);
    assert.ok(
      incremental.every((r) => r.mode === "xmin"),
      "later runs during the load are incremental",
    );
    const changed = (table: string) =>
      incremental.filter((r) => r.table === `public.${table}`).some((r) => r.updated > 0);
    assert.ok(changed("pgbench_accounts"), "runs during the load picked up account updates");
    assert.ok(
      incremental.some((r) => r.table === "public.pgbench_accounts" && r.inserted > 0),
      "runs during the load picked up inserted accounts",
    );

    const final = await syncAll();
    for (const r of final.flat()) assert.equal(r.mode, "xmin");
    const added = await source.sql<{ n: string }>(
      "SELECT count(*)::text AS n FROM pgbench_accounts WHERE aid > 10000000",
    );
    assert.ok(Number(added[0]!.n) > 0, "the insert script ran");
    for (const target of targets) {
      for (const t of TABLES) await assertSameRows(source, target, t.name, t.key);
    }
  });
});
