import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { sync } from "../src/index.js";
import { startCluster, type Cluster, type Version } from "./helpers/cluster.js";
import { testDatabase, type TestDatabase } from "./helpers/databases.js";
import { assertSameRows } from "./helpers/compare.js";

/**
 * docs/correctness.md, "The watermark is the snapshot's xmin": a
 * transaction with an older xid, still open while a newer one commits and a
 * sync runs, must arrive with the next sync after it commits. Run across
 * versions so both the MERGE (target 15+) and the ON CONFLICT (target 14)
 * paths carry it.
 */
for (const [sourceVersion, targetVersion] of [
  ["14", "17"],
  ["17", "14"],
] as [Version, Version][]) {
  describe(`in-flight transactions, source ${sourceVersion} -> target ${targetVersion}`, () => {
    // The source has a server of its own: the watermark is the snapshot's
    // xmin, which another test's open transaction on a shared server would
    // hold back, and this test asserts its exact value.
    let source: Cluster;
    let target: TestDatabase;

    before(async () => {
      [source, target] = await Promise.all([
        startCluster({ version: sourceVersion }),
        testDatabase(targetVersion),
      ]);
      await source.sql(`
        CREATE SCHEMA fds;
        CREATE TABLE fds.ticker (fsym_id text PRIMARY KEY, exchange text NOT NULL, price numeric(12,4));
        INSERT INTO fds.ticker SELECT 'F' || i, 'NYS', i FROM generate_series(1, 5000) i;
      `);
    });
    after(async () => {
      await Promise.all([source?.stop(), target?.stop()]);
    });

    const run = async () => {
      const [r] = await sync({
        source: source.url(),
        target: target.url(),
        tables: [
          {
            source: { schema: "fds", name: "ticker" },
            target: { schema: "raw_data", name: "ticker" },
          },
        ],
      });
      assert.equal(r!.status, "ok", r!.error);
      return r!;
    };
    const assertEqual = async () => {
      await assertSameRows(source, "fds.ticker", target, "raw_data.ticker", ["fsym_id"]);
    };

    test("an older open transaction's writes arrive after it commits", async () => {
      const first = await run();
      assert.equal(first.mode, "full");
      assert.equal(first.rowsCopied, 5000);
      await assertEqual();

      const older = await source.client();
      await older.query("BEGIN");
      await older.query("INSERT INTO fds.ticker VALUES ('LATE', 'LON', 1)");
      await older.query("UPDATE fds.ticker SET price = -1 WHERE fsym_id = 'F1'");
      const { rows } = await older.query<{ x: string }>("SELECT txid_current()::text AS x");
      const olderXid = BigInt(rows[0]!.x);

      // A newer transaction commits while the older one stays open.
      await source.sql(
        "INSERT INTO fds.ticker VALUES ('NEW', 'NAS', 2); UPDATE fds.ticker SET price = 0 WHERE fsym_id = 'F2'",
      );

      const second = await run();
      assert.equal(second.mode, "xmin");
      assert.equal(second.inserted, 1);
      assert.equal(second.updated, 1);
      assert.equal(
        BigInt(second.watermark!),
        olderXid,
        "watermark stops at the oldest running transaction",
      );
      assert.ok(second.heldBackBy, "the blocking backend is reported");
      const late = await target.sql("SELECT 1 FROM raw_data.ticker WHERE fsym_id = 'LATE'");
      assert.equal(late.length, 0, "uncommitted row not copied");

      await older.query("COMMIT");
      const third = await run();
      assert.equal(third.mode, "xmin");
      assert.equal(third.inserted, 1, "the late insert arrives");
      assert.equal(third.updated, 1, "the late update arrives");
      await assertEqual();

      // Nothing changed: a re-run re-reads nothing new and writes nothing.
      const fourth = await run();
      assert.equal(fourth.inserted + fourth.updated, 0);
      await assertEqual();
    });
  });
}
