import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type pg from "pg";
import { workTable } from "../src/target/work.js";
import { waitFor } from "./helpers/activity.js";
import { killChildren, runCli, spawnCli } from "./helpers/cli.js";
import { type Version } from "./helpers/cluster.js";
import { testDatabase, type TestDatabase } from "./helpers/databases.js";
import { assertSameRows } from "./helpers/compare.js";

/**
 * docs/correctness.md, "Exactly-once state": the process killed between staging and
 * commit, then rerun. The kill lands while the run has staged its rows (the
 * COPY into the staging table is complete) and waits for the lock its
 * MERGE (or INSERT … ON CONFLICT on 14) needs. After the kill the stored
 * watermark is still the old one and no staged row reached the target; the
 * rerun drops the left-over staging table, copies the rows again and ends
 * with the target equal to the source. Both the MERGE (17) and the
 * ON CONFLICT (14) targets.
 */

for (const targetVersion of ["17", "14"] as Version[]) {
  describe(`killed between staging and commit, target ${targetVersion}`, () => {
    let source: TestDatabase;
    let target: TestDatabase;
    let blocker: pg.Client | undefined;
    const children: ReturnType<typeof spawnCli>[] = [];

    before(async () => {
      [source, target] = await Promise.all([testDatabase("17"), testDatabase(targetVersion)]);
      await source.sql(`
        CREATE SCHEMA fds;
        CREATE TABLE fds.ticker (fsym_id text PRIMARY KEY, exchange text NOT NULL, price numeric(12,4));
        INSERT INTO fds.ticker SELECT 'F' || i, 'NYS', i FROM generate_series(1, 5000) i;
      `);
    });
    after(async () => {
      await killChildren(children);
      await blocker?.end().catch(() => undefined);
      await Promise.all([source?.stop(), target?.stop()]);
    });

    const args = () => [
      "sync",
      "--source",
      source.url(),
      "--target",
      target.url(),
      "--table",
      "fds.ticker:raw_data.ticker",
      "--json",
    ];
    const watermark = async () =>
      (
        await target.sql<{ w: string }>(
          "SELECT watermark::text AS w FROM xmin_sync.state WHERE target_schema = 'raw_data' AND target_table = 'ticker'",
        )
      )[0]?.w;
    const assertEqual = async () => {
      await assertSameRows(source, "fds.ticker", target, "raw_data.ticker", ["fsym_id"]);
    };

    test("the rerun after a kill leaves the target equal to the source", async () => {
      const first = await runCli(args());
      assert.equal(first.code, 0, first.stderr);
      assert.equal(first.json[0]?.mode, "full");
      const oldWatermark = await watermark();
      assert.ok(oldWatermark, "first run stored a watermark");

      // Changes the next (killed) run will stage: 100 new rows, 50 updates.
      await source.sql(`
        INSERT INTO fds.ticker SELECT 'N' || i, 'LON', i FROM generate_series(1, 100) i;
        UPDATE fds.ticker SET price = -price WHERE fsym_id IN (SELECT 'F' || i FROM generate_series(1, 50) i);
      `);

      // SHARE mode lets the staging table be created from the target's shape
      // (ACCESS SHARE) and the insert count read, but not the MERGE or
      // INSERT … ON CONFLICT (ROW EXCLUSIVE): the run stops after staging,
      // inside the transaction that would commit the watermark.
      blocker = await target.client();
      await blocker.query("BEGIN");
      await blocker.query("LOCK TABLE raw_data.ticker IN SHARE MODE");
      const stage = `xmin_sync.${workTable("stage", { schema: "raw_data", name: "ticker" }).name}`;

      const victim = spawnCli(args());
      children.push(victim);
      const pid = await waitFor("the run to block on the target lock", async () => {
        const rows = await target.sql<{ pid: number; query: string }>(
          `SELECT pid, query FROM pg_stat_activity
            WHERE application_name = 'xmin-sync target' AND wait_event_type = 'Lock'
              AND datname = current_database()`,
        );
        if (victim.child.exitCode !== null) {
          const r = await victim.done;
          throw new Error(`the run ended before blocking: ${r.code} ${r.stderr}`);
        }
        return rows[0];
      }).then((row) => {
        assert.match(
          row.query,
          /^(WITH m AS \()?(MERGE|INSERT) INTO "raw_data"\."ticker"/,
          `blocked in the merge: ${row.query}`,
        );
        return row.pid;
      });

      // Staging is complete: every changed row is in the staging table.
      const staged = await target.sql<{ n: string }>(`SELECT count(*)::text AS n FROM ${stage}`);
      assert.equal(staged[0]!.n, "150", "the staging COPY finished before the MERGE blocked");
      assert.equal(await watermark(), oldWatermark, "watermark unchanged while the run is blocked");

      victim.child.kill("SIGKILL");
      const killed = await victim.done;
      assert.equal(killed.code, null, "the CLI died by the signal");
      await blocker.query("ROLLBACK");

      // The orphaned backend may run its MERGE once the lock is free, but it
      // never receives the state write or COMMIT: it ends with its client gone.
      await waitFor(
        "the killed run's backend to go away",
        async () =>
          (await target.sql("SELECT 1 FROM pg_stat_activity WHERE pid = $1", [pid])).length === 0,
      );

      assert.equal(await watermark(), oldWatermark, "watermark still the old one after the kill");
      const arrived = await target.sql<{ n: string }>(
        "SELECT count(*)::text AS n FROM raw_data.ticker WHERE fsym_id LIKE 'N%' OR price < 0",
      );
      assert.equal(arrived[0]!.n, "0", "none of the killed run's rows reached the target");
      const leftover = await target.sql("SELECT to_regclass($1) AS r", [stage]);
      assert.ok(leftover[0]!.r, "the crash left its staging table behind");

      const rerun = await runCli(args());
      assert.equal(rerun.code, 0, rerun.stderr);
      const r = rerun.json[0]!;
      assert.equal(r.status, "ok", String(r.error));
      assert.equal(r.mode, "xmin");
      assert.equal(r.previousWatermark, oldWatermark);
      assert.equal(r.inserted, 100);
      assert.equal(r.updated, 50);
      assert.equal(await watermark(), r.watermark);
      await assertEqual();
      const stages = await target.sql<{ n: string }>(
        "SELECT count(*)::text AS n FROM pg_tables WHERE schemaname = 'xmin_sync' AND tablename LIKE 'stage%'",
      );
      assert.equal(stages[0]!.n, "0", "no staging table left");
    });
  });
}
