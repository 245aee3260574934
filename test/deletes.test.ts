import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { sync, validate, type TableSpec } from "../src/index.js";
import { testDatabase, type TestDatabase } from "./helpers/databases.js";
import { columnList, tableText } from "./helpers/compare.js";

/**
 * Issue 4: deletes are invisible to xmin; they are found by reconciling key
 * sets. hard removes rows, soft marks them (and a key that comes back is
 * revived), a key change is a delete plus an insert, and deleteCheckEvery
 * spaces the reconciliation out.
 */
describe("delete propagation", () => {
  let source: TestDatabase;
  let target: TestDatabase;

  before(async () => {
    [source, target] = await Promise.all([testDatabase("14"), testDatabase("17")]);
    await source.sql(`
      CREATE TABLE public.hard_t (id int PRIMARY KEY, v text);
      CREATE TABLE public.soft_t (region text, id int, v text, PRIMARY KEY (region, id));
      CREATE TABLE public.every_t (id int PRIMARY KEY, v text);
      INSERT INTO public.hard_t SELECT i, 'v' || i FROM generate_series(1, 1000) i;
      INSERT INTO public.soft_t SELECT 'eu', i, 'v' || i FROM generate_series(1, 1000) i;
      INSERT INTO public.every_t SELECT i, 'v' || i FROM generate_series(1, 100) i;
    `);
  });
  after(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  const run = async (spec: TableSpec) => {
    const [r] = await sync({
      source: source.url(),
      target: target.url(),
      tables: [spec],
      tuning: { workers: 2 },
    });
    assert.equal(r!.status, "ok", r!.error);
    return r!;
  };
  const assertEqual = async (table: string, key: string[], where = "true") => {
    const cols = await columnList(source, "postgres", table);
    assert.deepEqual(
      await tableText(
        target,
        "postgres",
        `(SELECT * FROM ${table} WHERE ${where}) AS x`,
        cols,
        key,
      ),
      await tableText(source, "postgres", table, cols, key),
    );
  };

  test("hard: deleted rows are removed; a changed key is a delete plus an insert", async () => {
    const spec: TableSpec = { source: { schema: "public", name: "hard_t" }, deletes: "hard" };
    await run(spec);
    await source.sql(
      "DELETE FROM public.hard_t WHERE id % 10 = 0; UPDATE public.hard_t SET id = 5001 WHERE id = 1",
    );
    const r = await run(spec);
    assert.equal(r.mode, "xmin");
    assert.equal(r.deleted, 101, "100 deleted rows and the old key");
    assert.equal(r.inserted, 1, "the new key");
    await assertEqual("public.hard_t", ["id"]);
  });

  test("soft: deleted rows are marked, a returning key is revived", async () => {
    const spec: TableSpec = { source: { schema: "public", name: "soft_t" }, deletes: "soft" };
    await run(spec);
    await source.sql("DELETE FROM public.soft_t WHERE id <= 50");
    const r = await run(spec);
    assert.equal(r.deleted, 50);
    const [marked] = await target.sql<{ n: string; total: string }>(
      "SELECT count(*) FILTER (WHERE source_deleted_at IS NOT NULL) AS n, count(*) AS total FROM public.soft_t",
    );
    assert.deepEqual(marked, { n: "50", total: "1000" });
    await assertEqual("public.soft_t", ["region", "id"], "source_deleted_at IS NULL");

    // Marked once: the next run does not touch them again.
    assert.equal((await run(spec)).deleted, 0);

    await source.sql("INSERT INTO public.soft_t VALUES ('eu', 7, 'back again')");
    const back = await run(spec);
    assert.equal(back.updated, 1, "the revived row is rewritten");
    const [row] = await target.sql(
      "SELECT v, source_deleted_at FROM public.soft_t WHERE region = 'eu' AND id = 7",
    );
    assert.deepEqual(row, { v: "back again", source_deleted_at: null });
    await assertEqual("public.soft_t", ["region", "id"], "source_deleted_at IS NULL");

    const [v] = await validate({
      source: source.url(),
      target: target.url(),
      tables: [spec],
      deep: true,
    });
    assert.equal(v!.status, "ok", v!.error);
    assert.equal(v!.targetCount, v!.sourceCount, "soft-deleted rows are not counted");
    assert.deepEqual([v!.deep!.missing, v!.deep!.extra, v!.deep!.different], [0, 0, 0]);
  });

  test("deleteCheckEvery: 2 looks for deletes every second run", async () => {
    const spec: TableSpec = {
      source: { schema: "public", name: "every_t" },
      deletes: "hard",
      deleteCheckEvery: 2,
    };
    await run(spec); // full: reconciles by nature
    await source.sql("DELETE FROM public.every_t WHERE id <= 10");
    assert.equal((await run(spec)).deleted, 0, "first run after: not due");
    assert.equal((await run(spec)).deleted, 10, "second run after: due");
    await assertEqual("public.every_t", ["id"]);

    const hourly: TableSpec = { ...spec, deleteCheckEvery: "1h" };
    await source.sql("DELETE FROM public.every_t WHERE id <= 20");
    assert.equal((await run(hourly)).deleted, 0, "checked less than an hour ago");
  });
});
