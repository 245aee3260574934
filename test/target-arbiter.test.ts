import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { assertSameRows, syncOk } from "./helpers/compare.js";
import { testDatabase, type TestDatabase } from "./helpers/databases.js";
import { hasSystemPostgres } from "./helpers/servers.js";

/**
 * On PostgreSQL 15 and 16 a merge of a few rows goes by INSERT … ON
 * CONFLICT, which needs an immediate, valid unique index on the key in the
 * column's collation. A target made by hand may have only a deferrable key:
 * those merges go by count + MERGE. (The target is the system's 15 where
 * installed, as in CI.)
 */
describe("a small merge into a target whose key cannot arbitrate ON CONFLICT", () => {
  let source: TestDatabase;
  let target: TestDatabase;

  before(async () => {
    [source, target] = await Promise.all([
      testDatabase("17"),
      testDatabase(hasSystemPostgres() ? "system" : "17"),
    ]);
  });
  after(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  const run = () => syncOk(source, target, { source: { schema: "public", name: "d" } });

  test("a deferrable primary key made by hand: the rows still merge by key", async () => {
    await source.sql(`
      CREATE TABLE public.d (id int PRIMARY KEY, v text);
      INSERT INTO public.d SELECT i, 'v' || i FROM generate_series(1, 3000) i;
    `);
    // Rows already there: the first run merges into this table rather than
    // loading a new one in its place.
    await target.sql(`
      CREATE TABLE public.d (id int PRIMARY KEY DEFERRABLE, v text);
      INSERT INTO public.d SELECT i, 'old' FROM generate_series(1, 3000) i;
    `);
    await run();
    await source.sql(`
      UPDATE public.d SET v = v || '+' WHERE id <= 20;
      INSERT INTO public.d VALUES (3001, 'new');
    `);
    const r = await run();
    const [deferrable] = await target.sql<{ d: boolean }>(
      "SELECT condeferrable AS d FROM pg_constraint WHERE conrelid = 'public.d'::regclass AND contype = 'p'",
    );
    assert.equal(deferrable!.d, true, "the table made by hand is still there");
    assert.equal(r.updated, 20);
    assert.equal(r.inserted, 1);
    await assertSameRows(source, "public.d", target, "public.d", ["id"]);
  });
});
