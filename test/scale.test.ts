import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { sync, validate, type TableSpec } from "../src/index.js";
import { hasSystemPostgres } from "./helpers/cluster.js";
import { testDatabase, type TestDatabase } from "./helpers/databases.js";
import { assertSameRows } from "./helpers/compare.js";

/**
 * Every path once on a table big enough that a quadratic plan or a per-row
 * round trip would not finish: 300,000 rows through a full load, an
 * incremental run, hard and soft delete reconciliation, timestamp mode,
 * validate, deep validate and a repair of 10,000 differences. A correctness
 * test with a generous timeout, not a timing: the bench measures speed.
 * The target is PostgreSQL 15 when the system has it (MERGE without
 * RETURNING, where inserts are counted separately), else 17.
 */
const ROWS = 300_000;
const TIMEOUT = 5 * 60_000;

describe("every path on 300,000 rows", { timeout: 4 * TIMEOUT }, () => {
  let source: TestDatabase;
  let target: TestDatabase;
  const hard: TableSpec = {
    source: { schema: "app", name: "big" },
    target: { schema: "raw", name: "big" },
    deletes: "hard",
  };
  const soft: TableSpec = { ...hard, target: { schema: "raw", name: "big_soft" }, deletes: "soft" };
  const byCursor: TableSpec = {
    ...hard,
    target: { schema: "raw", name: "big_ts" },
    mode: "timestamp",
    cursor: "updated_at",
    lookback: "0s",
  };
  const all = [hard, soft, byCursor];

  before(async () => {
    [source, target] = await Promise.all([
      testDatabase("17"),
      testDatabase(hasSystemPostgres() ? "system" : "17"),
    ]);
    await source.sql(`
      CREATE SCHEMA app;
      CREATE TABLE app.big (id int PRIMARY KEY, grp int NOT NULL, v text, updated_at timestamptz NOT NULL);
      INSERT INTO app.big SELECT i, i % 97, md5(i::text), timestamptz '2026-01-01' + i * interval '1 second'
        FROM generate_series(1, ${ROWS}) i;
      -- As a table read by a cursor usually is: timestamp mode reads a narrow window through it.
      CREATE INDEX ON app.big (updated_at);
    `);
    await source.sql("VACUUM ANALYZE app.big");
  });
  after(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  const run = async (specs: TableSpec[]) => {
    const results = await sync({
      source: source.url(),
      target: target.url(),
      tables: specs,
      tuning: { workers: 2, maxBatchSize: 100_000 },
    });
    for (const r of results) assert.equal(r.status, "ok", r.error);
    return results;
  };
  const deep = async (spec: TableSpec, repair = false) => {
    const [v] = await validate({
      source: source.url(),
      target: target.url(),
      tables: [spec],
      deep: true,
      repair,
    });
    assert.equal(v!.status, "ok", v!.error);
    return v!;
  };

  test(
    "full load, then an incremental run with 1% updated, 0.1% deleted and new rows",
    { timeout: TIMEOUT },
    async () => {
      const first = await run(all);
      for (const r of first) assert.deepEqual([r.mode, r.rowsCopied], ["full", ROWS]);

      await source.sql(`
      UPDATE app.big SET v = 'changed', updated_at = timestamptz '2027-01-01' WHERE id % 100 = 0;
      DELETE FROM app.big WHERE id % 1000 = 1;
      INSERT INTO app.big SELECT i, 1, 'new', timestamptz '2027-01-02' FROM generate_series(${ROWS + 1}, ${ROWS + 1000}) i;
    `);
      const [h, s, t] = await run(all);
      assert.deepEqual([h!.mode, h!.inserted, h!.updated, h!.deleted], ["xmin", 1000, 3000, 300]);
      assert.deepEqual([s!.mode, s!.deleted], ["xmin", 300]);
      assert.equal(t!.mode, "timestamp");
      assert.equal(t!.rowsCopied, 4000, "the cursor read only the changed and new rows");
      await assertSameRows(source, "app.big", target, "raw.big", ["id"]);
      await assertSameRows(
        source,
        "app.big",
        target,
        "(SELECT * FROM raw.big_soft WHERE source_deleted_at IS NULL) AS x",
        ["id"],
      );
    },
  );

  test(
    "validate and validate --deep agree the copies are exact",
    { timeout: TIMEOUT },
    async () => {
      const [counts] = await validate({
        source: source.url(),
        target: target.url(),
        tables: [hard],
      });
      assert.equal(counts!.isSynchronized, true);
      const v = await deep(hard);
      assert.deepEqual([v.deep!.missing, v.deep!.extra, v.deep!.different], [0, 0, 0]);
      assert.equal(v.sourceCount, ROWS + 700);
    },
  );

  test("--repair fixes 10,000 differences", { timeout: TIMEOUT }, async () => {
    const c = await target.client();
    let injected = 0;
    for (const sql of [
      "UPDATE raw.big SET v = 'wrong' WHERE id BETWEEN 2001 AND 7000",
      "DELETE FROM raw.big WHERE id BETWEEN 10001 AND 12500",
      `INSERT INTO raw.big SELECT i, 0, 'extra', now(), 0 FROM generate_series(${ROWS + 10_001}, ${ROWS + 12_500}) i`,
    ]) {
      injected += (await c.query(sql)).rowCount ?? 0;
    }
    await c.end();
    const found = await deep(hard, true);
    const d = found.deep!;
    assert.ok(injected >= 9_990, `about 10,000 differences: ${injected}`);
    assert.equal(d.missing + d.extra + d.different, injected);
    assert.equal(found.repaired!.copied, d.missing + d.different);
    assert.equal(found.repaired!.deleted, d.extra);
    const clean = await deep(hard);
    assert.deepEqual([clean.deep!.missing, clean.deep!.extra, clean.deep!.different], [0, 0, 0]);
    await assertSameRows(source, "app.big", target, "raw.big", ["id"]);
  });
});
