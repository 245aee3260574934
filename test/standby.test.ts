import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import pino from "pino";
import { sync, type TableSpec } from "../src/index.js";
import { join } from "node:path";
import {
  runAsPostgres,
  startCluster,
  startStandby,
  systemPostgresSkip,
  waitForReplay,
  type Cluster,
} from "./helpers/cluster.js";
import { runCli } from "./helpers/cli.js";
import { columnList, tableText } from "./helpers/compare.js";

/**
 * docs/correctness.md, "Standbys and other sources": a physical streaming standby has the primary's heap,
 * hence its xmin values, so it can be the sync source. Its snapshots come
 * from the replayed WAL (known-assigned xids), so a transaction still open on
 * the primary holds the watermark back there too. A recovery conflict
 * (SQLSTATE 40001) cancels the run's reads; the table is retried on a fresh
 * snapshot and succeeds. Target 14: the ON CONFLICT merge path.
 */
describe("a streaming standby as the source", { skip: systemPostgresSkip() }, () => {
  let primary: Cluster;
  let standby: Cluster;
  let target: Cluster;

  before(async () => {
    [primary, target] = await Promise.all([
      // No autovacuum: no VACUUM on the primary but the test's own.
      startCluster({ version: "system", settings: { autovacuum: "off" } }),
      startCluster({ version: "14" }),
    ]);
    await primary.sql(`
      CREATE SCHEMA fds;
      CREATE TABLE fds.ticker (fsym_id text PRIMARY KEY, exchange text NOT NULL, price numeric(12,4));
      INSERT INTO fds.ticker SELECT 'F' || i, 'NYS', i FROM generate_series(1, 5000) i;
      CREATE TABLE fds.locked (id int PRIMARY KEY, v text);
      INSERT INTO fds.locked SELECT i, 'v' || i FROM generate_series(1, 1000) i;
      CREATE TABLE fds.churn (id int PRIMARY KEY, v text);
      INSERT INTO fds.churn SELECT i, 'c' || i FROM generate_series(1, 1000) i;
    `);
    await primary.createDatabase("other");
    standby = await startStandby(primary, {
      // Cancel conflicting standby queries at once, and do not tell the
      // primary what they still need: conflicts happen, deterministically.
      settings: { max_standby_streaming_delay: "0", hot_standby_feedback: "off" },
    });
    await waitForReplay(primary, standby);
  });
  after(async () => {
    await standby?.stop();
    await Promise.all([primary?.stop(), target?.stop()]);
  });

  const ticker: TableSpec = {
    source: { schema: "fds", name: "ticker" },
    target: { schema: "raw_data", name: "ticker" },
  };
  const run = async (source: Cluster, tables: TableSpec[] = [ticker], logger?: pino.Logger) => {
    const results = await sync({
      source: source.url(),
      target: target.url(),
      tables,
      // One worker: tables one after another, so the second table meets the
      // snapshot the first one's conflict destroyed.
      tuning: { workers: 1 },
      ...(logger ? { logger } : {}),
    });
    for (const r of results) assert.equal(r.status, "ok", r.error);
    return results;
  };
  const assertEqual = async (source: string, copy: string, key: string) => {
    const cols = await columnList(primary, "postgres", source);
    assert.deepEqual(
      await tableText(target, "postgres", copy, cols, [key]),
      await tableText(primary, "postgres", source, cols, [key]),
      `${copy} equals the primary's ${source}`,
    );
  };

  test("first and incremental syncs from the standby equal the primary", async () => {
    assert.equal((await standby.sql("SELECT pg_is_in_recovery() AS r"))[0]!.r, true);
    const [first] = await run(standby);
    assert.equal(first!.mode, "full");
    assert.equal(first!.rowsCopied, 5000);
    await assertEqual("fds.ticker", "raw_data.ticker", "fsym_id");

    // An older transaction stays open on the primary while a newer one commits.
    const older = await primary.client();
    await older.query("BEGIN");
    await older.query("INSERT INTO fds.ticker VALUES ('LATE', 'LON', 1)");
    const { rows } = await older.query<{ x: string }>("SELECT txid_current()::text AS x");
    const olderXid = BigInt(rows[0]!.x);
    await primary.sql(`
      UPDATE fds.ticker SET price = -price WHERE fsym_id IN ('F1', 'F2', 'F3');
      INSERT INTO fds.ticker VALUES ('NEW', 'NAS', 2);
    `);
    await waitForReplay(primary, standby);

    const [second] = await run(standby);
    assert.equal(second!.mode, "xmin", second!.reason);
    assert.equal(second!.rowsCopied, 4);
    assert.equal(second!.inserted, 1);
    assert.equal(second!.updated, 3);
    assert.equal(
      BigInt(second!.watermark!),
      olderXid,
      "the standby's snapshot holds the watermark at the primary's open transaction",
    );
    const late = await target.sql("SELECT 1 FROM raw_data.ticker WHERE fsym_id = 'LATE'");
    assert.equal(late.length, 0, "uncommitted row not copied");

    await older.query("COMMIT");
    await older.end();
    await waitForReplay(primary, standby);
    const [third] = await run(standby);
    assert.equal(third!.mode, "xmin");
    assert.equal(third!.inserted, 1, "the late insert arrives");
    await assertEqual("fds.ticker", "raw_data.ticker", "fsym_id");

    // Same cluster (system identifier, timeline, OIDs): switching the source
    // from the standby to its primary continues incrementally.
    await primary.sql("UPDATE fds.ticker SET exchange = 'PRI' WHERE fsym_id = 'F4'");
    const [fourth] = await run(primary);
    assert.equal(fourth!.mode, "xmin", fourth!.reason);
    assert.equal(fourth!.rowsCopied, 1);
    await assertEqual("fds.ticker", "raw_data.ticker", "fsym_id");
  });

  test("a recovery conflict cancels the read; the table is retried and succeeds", async () => {
    const locked: TableSpec = {
      source: { schema: "fds", name: "locked" },
      target: { schema: "raw_data", name: "locked" },
    };
    const churn: TableSpec = {
      source: { schema: "fds", name: "churn" },
      target: { schema: "raw_data", name: "churn" },
    };
    // 1. A transaction with an xid stays open in another database: every
    //    standby snapshot has it as running (the standby's known-assigned xids
    //    are cluster-wide), so the sync's snapshot xmin is older than what
    //    follows, while the primary's VACUUM in this database ignores it.
    const elsewhere = await primary.client("other");
    await elsewhere.query("BEGIN");
    await elsewhere.query("SELECT txid_current()");
    // 2. Rows deleted after it: dead to every snapshot on the primary, but
    //    the sync's snapshot on the standby may still need them.
    await primary.sql("DELETE FROM fds.churn WHERE id <= 500");
    // 3. The primary holds an ACCESS EXCLUSIVE lock on fds.locked; the standby
    //    replays it, so a standby read of that table waits, inside the run's
    //    snapshot, until the lock is released.
    const holder = await primary.client();
    await holder.query("BEGIN");
    await holder.query("LOCK TABLE fds.locked IN ACCESS EXCLUSIVE MODE");
    await waitForReplay(primary, standby);

    const logs: string[] = [];
    const logger = pino({ level: "warn" }, { write: (line: string) => void logs.push(line) });
    // fds.locked first: its read blocks on the replayed lock, inside the run's snapshot.
    const syncing = run(standby, [locked, churn], logger);
    syncing.catch(() => undefined); // awaited below; no unhandled rejection if we fail first
    const deadline = Date.now() + 20_000;
    for (;;) {
      const waiting = await standby.sql(
        "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name LIKE 'xmin-sync%'",
      );
      if (waiting.length > 0) break;
      assert.ok(Date.now() < deadline, "the standby read never waited on the replayed lock");
      await new Promise((r) => setTimeout(r, 20));
    }
    // 4. VACUUM removes those rows; replaying that conflicts with the run's
    //    snapshot, and with max_standby_streaming_delay = 0 the standby
    //    cancels the run's queries (SQLSTATE 40001) at once.
    await primary.sql("VACUUM fds.churn");
    await waitForReplay(primary, standby);
    // 5. Release the lock: the retry's read (fresh snapshot) goes through.
    await holder.query("COMMIT");
    await elsewhere.query("COMMIT");
    await Promise.all([holder.end(), elsewhere.end()]);

    const [l, c] = await syncing;
    assert.equal(l!.mode, "full");
    assert.equal(c!.mode, "full");
    const retries = logs
      .map((line) => JSON.parse(line))
      .filter((e) => e.msg === "retrying on a fresh snapshot")
      .map((e) => `${e.table}: ${e.err}`);
    // fds.locked: its read was cancelled ("canceling statement due to
    // conflict with recovery"). fds.churn: the run's coordinator, idle in the
    // same snapshot, was terminated too, so the shared snapshot is gone and
    // that table is retried on a fresh one instead of failing.
    assert.ok(
      retries.some((r) => /^fds\.locked: .*conflict with recovery/.test(r)),
      retries.join("\n"),
    );
    assert.ok(
      retries.some((r) =>
        /^fds\.churn: the run's source snapshot is gone: .*conflict with recovery/.test(r),
      ),
      retries.join("\n"),
    );
    const [conflicts] = await standby.sql<{ n: string }>(
      "SELECT confl_snapshot::text AS n FROM pg_stat_database_conflicts WHERE datname = 'postgres'",
    );
    assert.ok(Number(conflicts!.n) >= 1, "the standby counted a snapshot conflict");
    await waitForReplay(primary, standby);
    await assertEqual("fds.locked", "raw_data.locked", "id");
    await assertEqual("fds.churn", "raw_data.churn", "id");
  });

  test("check: a standby source without hot_standby_feedback is a warning; a standby target an error", async () => {
    const table = ["--table", "fds.ticker:raw_data.ticker"];
    const asSource = await runCli([
      "check",
      "--source",
      standby.url(),
      "--target",
      target.url(),
      ...table,
    ]);
    assert.equal(asSource.code, 0, asSource.stdout + asSource.stderr);
    assert.match(
      asSource.stdout,
      /^warn {2}source: a standby without hot_standby_feedback \(max_standby_streaming_delay 0s\): replay cancels reads/m,
    );
    assert.match(asSource.stdout, /^ok {4}source: PostgreSQL 15\.\d+ \(standby\)/m);
    const asTarget = await runCli([
      "check",
      "--source",
      primary.url(),
      "--target",
      standby.url(),
      ...table,
    ]);
    assert.equal(asTarget.code, 2, asTarget.stdout);
    assert.match(
      asTarget.stdout,
      /^ERROR target: is a standby \(read-only\): the target must be a primary$/m,
    );
  });

  test("a promoted standby is a new timeline at once, before its first checkpoint", async () => {
    await runAsPostgres(join(standby.bin, "pg_ctl"), ["-D", standby.dataDir, "-w", "promote"]);
    await primary.sql("UPDATE fds.ticker SET exchange = 'OLD' WHERE fsym_id = 'F5'");
    const [r] = await run(standby);
    assert.equal(r!.mode, "full");
    assert.match(r!.reason ?? "", /timeline changed/);
    const cols = await columnList(standby, "postgres", "fds.ticker");
    assert.deepEqual(
      await tableText(target, "postgres", "raw_data.ticker", cols, ["fsym_id"]),
      await tableText(standby, "postgres", "fds.ticker", cols, ["fsym_id"]),
      "the copy follows the promoted server, not the old primary",
    );
  });
});
