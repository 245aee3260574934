import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { sync, type TableSpec } from "../src/index.js";
import { startCluster, type Cluster } from "./helpers/cluster.js";
import { testDatabase, type TestDatabase } from "./helpers/databases.js";
import { assertSameRows } from "./helpers/compare.js";

/**
 * A source whose cache is smaller than the synced table, as a production
 * server's is smaller than its big tables: what the source's own work keeps
 * cached must still be cached after every run reads the table's changed
 * rows and its key set. (Parallel TID parts read through the whole cache
 * and evicted it.)
 */
describe("the source's buffer cache", () => {
  let source: Cluster;
  let target: TestDatabase;
  const table: TableSpec = { source: { schema: "app", name: "big" }, deletes: "hard" };
  // Parts of 10,000 rows: the 150,000-row table would be read in four.
  const tuning = { workers: 2, minBatchSize: 10000 };

  before(async () => {
    [source, target] = await Promise.all([
      // 2,048 pages; the synced table has about 2,700.
      startCluster({ version: "17", settings: { shared_buffers: "16MB" } }),
      testDatabase("17"),
    ]);
    await source.sql(`
      CREATE EXTENSION pg_buffercache;
      CREATE EXTENSION pg_prewarm;
      CREATE SCHEMA app;
      CREATE TABLE app.big (id int PRIMARY KEY, n int, note text);
      INSERT INTO app.big SELECT i, 0, repeat('x', 100) FROM generate_series(1, 150000) i;
      -- What the source's own work keeps cached: about 600 pages.
      CREATE TABLE app.hot AS SELECT i, repeat('y', 200) AS f FROM generate_series(1, 20000) i;
    `);
    await source.sql("VACUUM ANALYZE app.big, app.hot");
  });
  after(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  const run = () => sync({ source: source.url(), target: target.url(), tables: [table], tuning });

  const hotBuffers = async () => {
    const [row] = await source.sql<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_buffercache
        WHERE relfilenode = pg_relation_filenode('app.hot')
          AND reldatabase = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    );
    return row!.n;
  };

  test("an incremental run with deletes leaves what the source cached", async () => {
    const [first] = await run();
    assert.equal(first!.status, "ok", first!.error);
    assert.equal(first!.rowsCopied, 150000);

    // Changes on a few pages, as recent writes are; VACUUM sets their hint
    // bits, so the run's scans have nothing to write back.
    await source.sql(`
      UPDATE app.big SET n = n + 1 WHERE id BETWEEN 70001 AND 71500;
      DELETE FROM app.big WHERE id BETWEEN 90001 AND 90100;
    `);
    await source.sql("VACUUM app.big");
    await source.sql("SELECT pg_prewarm('app.hot')");
    const cached = await hotBuffers();
    assert.ok(cached > 500, `the hot table is cached (${cached} buffers)`);

    const [next] = await run();
    assert.equal(next!.status, "ok", next!.error);
    assert.equal(next!.mode, "xmin");
    assert.equal(next!.updated, 1500);
    assert.equal(next!.deleted, 100);
    // Some of its buffers may go to the catalog pages a run's new backends
    // read, and to its scans' rings of 32 buffers each.
    const left = await hotBuffers();
    assert.ok(left >= cached * 0.8, `${left} of ${cached} hot buffers left`);
    await assertSameRows(source, "app.big", target, "app.big", ["id"]);
  });
});
