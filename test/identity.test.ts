import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { sync } from "../src/index.js";
import type { TableResult } from "../src/sync/types.js";
import { startCluster, type Cluster, type Version } from "./helpers/cluster.js";
import { columnList, tableText } from "./helpers/compare.js";

/**
 * docs/correctness.md, "Identity": a watermark only means something against the
 * source cluster, database and table it was taken from. When the table is
 * dropped and recreated, or the source is another cluster (a restore, a new
 * server behind the same name), the next run is a full resync that removes
 * the rows the source no longer has and rewrites changed ones, even where the
 * new source's xmins happen to equal the old ones. Both the MERGE (17) and
 * the ON CONFLICT (14) targets.
 */

const TABLE_DDL = `
  CREATE SCHEMA IF NOT EXISTS fds;
  CREATE TABLE fds.ticker (fsym_id int PRIMARY KEY, exchange text NOT NULL, price numeric(12,4), note text);
`;

for (const targetVersion of ["17", "14"] as Version[]) {
  describe(`source identity changes, target ${targetVersion}`, () => {
    let a: Cluster;
    let target: Cluster;

    before(async () => {
      [a, target] = await Promise.all([
        startCluster({ version: "17" }),
        startCluster({ version: targetVersion }),
      ]);
    });
    after(async () => {
      await Promise.all([a?.stop(), target?.stop()]);
    });

    const run = async (source: Cluster, database = "postgres", dst = "ticker") => {
      const [r] = await sync({
        source: source.url(database),
        target: target.url(),
        tables: [
          {
            source: { schema: "fds", name: "ticker" },
            target: { schema: "raw_data", name: dst },
          },
        ],
      });
      assert.equal(r!.status, "ok", r!.error);
      return r!;
    };
    const assertEqual = async (source: Cluster, database = "postgres", dst = "ticker") => {
      const cols = await columnList(source, database, "fds.ticker");
      assert.deepEqual(
        await tableText(target, "postgres", `raw_data.${dst}`, cols, ["fsym_id"]),
        await tableText(source, database, "fds.ticker", cols, ["fsym_id"]),
      );
    };
    const assertFull = (r: TableResult, reason: RegExp) => {
      assert.equal(r.mode, "full");
      assert.match(r.reason ?? "", reason);
    };

    test("table dropped and recreated on the source: full resync, vanished rows gone", async () => {
      await a.sql(
        TABLE_DDL +
          "INSERT INTO fds.ticker SELECT i, 'NYS', i, 'n' || i FROM generate_series(1, 1000) i",
      );
      const first = await run(a);
      assert.equal(first.mode, "full");
      await a.sql("UPDATE fds.ticker SET price = price + 1 WHERE fsym_id <= 10");
      const second = await run(a);
      assert.equal(second.mode, "xmin");
      await assertEqual(a);

      // Recreated: keys 1-200 gone, 201-400 changed, 401-1000 as they were,
      // 1001-1100 new. Same name, new OID.
      await a.sql(`
        DROP TABLE fds.ticker;
        ${TABLE_DDL}
        INSERT INTO fds.ticker SELECT i, 'NYS', i, 'n' || i FROM generate_series(401, 1000) i;
        INSERT INTO fds.ticker SELECT i, 'LON', -i, NULL FROM generate_series(201, 400) i;
        INSERT INTO fds.ticker SELECT i, 'NAS', i, 'new' FROM generate_series(1001, 1100) i;
      `);
      const third = await run(a);
      assertFull(third, /recreated/);
      assert.equal(third.rowsCopied, 900);
      assert.equal(third.deleted, 200);
      assert.equal(third.inserted, 100);
      await assertEqual(a);

      // And back to incremental from the new table's watermark.
      await a.sql("INSERT INTO fds.ticker VALUES (2000, 'NYS', 1, 'after')");
      const fourth = await run(a);
      assert.equal(fourth.mode, "xmin");
      assert.equal(fourth.inserted, 1);
      await assertEqual(a);
    });

    test("source database swapped for another one: full resync, target equals the new one", async () => {
      await a.sql("CREATE DATABASE other");
      await a.sql(
        TABLE_DDL +
          "INSERT INTO fds.ticker SELECT i, 'OTH', i * 2, 'o' FROM generate_series(500, 700) i",
        [],
        "other",
      );
      const r = await run(a, "other");
      assertFull(r, /database changed/);
      // The target had keys 201-1100 and 2000; the other database has 500-700.
      assert.equal(r.deleted, 700);
      assert.equal(r.inserted, 0);
      await assertEqual(a, "other");
    });

    test("source cluster swapped for another one: full resync, target equals the new one", async () => {
      // Two fresh clusters built by the same statements: in practice their
      // database and table OIDs and their rows' xmins are equal, so only the
      // system identifier tells the clusters apart, and only row content
      // tells changed rows apart.
      const [c1, c2] = await Promise.all([
        startCluster({ version: "17" }),
        startCluster({ version: "17" }),
      ]);
      try {
        await c1.sql(
          TABLE_DDL +
            "INSERT INTO fds.ticker SELECT i, 'NYS', i, 'n' || i FROM generate_series(1, 1000) i",
        );
        await c2.sql(
          TABLE_DDL +
            `INSERT INTO fds.ticker SELECT i, CASE WHEN i % 7 = 0 THEN 'XET' ELSE 'NYS' END, i, 'n' || i
               FROM generate_series(101, 1050) i`,
        );
        const ids = await Promise.all(
          [c1, c2].map(async (c) => {
            const rows = await c.sql<{ id: string; db: string; rel: string; xmin: string }>(
              `SELECT (SELECT system_identifier::text FROM pg_control_system()) AS id,
                      (SELECT oid::text FROM pg_database WHERE datname = current_database()) AS db,
                      'fds.ticker'::regclass::oid::text AS rel,
                      (SELECT min(xmin::text) FROM fds.ticker) AS xmin`,
            );
            return rows[0]!;
          }),
        );
        assert.notEqual(ids[0]!.id, ids[1]!.id, "two clusters, two system identifiers");

        const first = await run(c1, "postgres", "swapped");
        assert.equal(first.mode, "full");
        await assertEqual(c1, "postgres", "swapped");

        const r = await run(c2, "postgres", "swapped");
        assertFull(r, /system identifier/);
        assert.equal(r.deleted, 100, "keys 1-100 are not in the new source");
        assert.equal(r.inserted, 50, "keys 1001-1050 are new");
        if (ids[0]!.xmin === ids[1]!.xmin) {
          // Equal source_xmin everywhere: only the content comparison finds
          // the 128 rows (multiples of 7 in 101-1000) that differ.
          assert.equal(r.updated, 128, "changed rows rewritten, equal ones left alone");
        }
        await assertEqual(c2, "postgres", "swapped");

        const again = await run(c2, "postgres", "swapped");
        assert.equal(again.mode, "xmin");
        assert.equal(again.inserted + again.updated + again.deleted, 0);
      } finally {
        await Promise.all([c1.stop(), c2.stop()]);
      }
    });
  });
}
