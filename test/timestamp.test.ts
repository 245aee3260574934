import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { sync, type TableSpec } from "../src/index.js";
import { testDatabase, type TestDatabase } from "./helpers/databases.js";
import { assertSameRows, syncOk } from "./helpers/compare.js";
import { runCli } from "./helpers/cli.js";

/**
 * docs/correctness.md, "Standbys and other sources": sources whose rows have no xmin (views, foreign tables) fall
 * back to a timestamp cursor column with a lookback window when one is
 * named, or to full copies; mode auto picks, and says which.
 */
describe("timestamp mode on a view", () => {
  let source: TestDatabase;
  let target: TestDatabase;
  const spec: TableSpec = {
    source: { schema: "app", name: "orders_v" },
    target: { schema: "raw", name: "orders" },
    key: ["id"],
    cursor: "updated_at",
  };

  before(async () => {
    [source, target] = await Promise.all([testDatabase("17"), testDatabase("14")]);
    await source.sql(`
      CREATE SCHEMA app;
      CREATE TABLE app.orders (id int PRIMARY KEY, status text, updated_at timestamptz NOT NULL);
      INSERT INTO app.orders SELECT i, 'new', '2020-01-01'::timestamptz + i * interval '1 hour' FROM generate_series(1, 500) i;
      CREATE VIEW app.orders_v AS SELECT id, status, updated_at FROM app.orders;`);
  });
  after(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  const run = async (s: TableSpec = spec) => {
    const [r] = await sync({ source: source.url(), target: target.url(), tables: [s] });
    assert.equal(r!.status, "ok", r!.error);
    return r!;
  };
  const assertEqual = async () => {
    await assertSameRows(source, "app.orders_v", target, "raw.orders", ["id"]);
  };

  test("first run copies all, later runs only rows at or after the high mark minus the lookback", async () => {
    const first = await run();
    assert.equal(first.mode, "full");
    assert.equal(first.rowsCopied, 500);
    assert.match(first.watermark!, /^2020-01-21 20:00:00\+00$/, "the cursor's high mark");
    await assertEqual();

    await source.sql(`
      UPDATE app.orders SET status = 'paid', updated_at = now() WHERE id <= 10;
      INSERT INTO app.orders SELECT i, 'new', now() FROM generate_series(501, 505) i;`);
    const second = await run();
    assert.equal(second.mode, "timestamp");
    // 15 changed rows plus the last high mark's row, inside the 5-minute lookback.
    assert.equal(second.rowsCopied, 16);
    assert.equal(second.updated, 10);
    assert.equal(second.inserted, 5);
    await assertEqual();

    // A row that commits late, with a cursor just before the new high mark.
    await source.sql(
      "INSERT INTO app.orders SELECT 600, 'late', max(updated_at) - interval '1 minute' FROM app.orders",
    );
    const third = await run();
    assert.equal(third.mode, "timestamp");
    assert.equal(third.inserted, 1);
    await assertEqual();
  });

  test("without a cursor, a view is copied whole, and says why", async () => {
    const r = await runCli([
      "sync",
      "--source",
      source.url(),
      "--target",
      target.url(),
      "--table",
      "app.orders_v:raw.orders_all",
      "--key",
      "id",
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json[0]!.mode, "full");
    assert.match(r.json[0]!.reason as string, /no xmin.*no cursor/);
    const again = await runCli([
      "sync",
      "--source",
      source.url(),
      "--target",
      target.url(),
      "--table",
      "app.orders_v:raw.orders_all",
      "--key",
      "id",
      "--mode",
      "xmin",
    ]);
    // Known before anything is copied: bad input, exit 2.
    assert.equal(again.code, 2);
    assert.match(
      again.stdout,
      /^FAIL app\.orders_v -> raw\.orders_all: source: is a view: its rows have no xmin/,
    );
  });
});

describe("timestamp mode on a table with an index on its cursor", () => {
  let source: TestDatabase;
  let target: TestDatabase;
  const ROWS = 40_000;
  const spec: TableSpec = {
    source: { schema: "app", name: "events" },
    mode: "timestamp",
    cursor: "updated_at",
    lookback: "0s",
  };

  before(async () => {
    [source, target] = await Promise.all([testDatabase("17"), testDatabase("14")]);
    await source.sql(`
      CREATE SCHEMA app;
      CREATE TABLE app.events (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL);
      INSERT INTO app.events SELECT i, md5(i::text), timestamptz '2026-01-01' + i * interval '1 second'
        FROM generate_series(1, ${ROWS}) i;
      CREATE INDEX ON app.events (updated_at);`);
    await source.sql("VACUUM ANALYZE app.events");
  });
  after(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  // Small batches: the table is read in parallel parts, unless its window is narrow.
  const run = async () => {
    const r = await syncOk(source, target, spec, { workers: 2, minBatchSize: 5000 });
    await assertSameRows(source, "app.events", target, "app.events", ["id"]);
    return r;
  };

  test("a narrow window (read through the index) and a wide one (read in parts) copy exactly their rows", async () => {
    assert.equal((await run()).mode, "full");

    // 1% changed, spread over every page, as an application's updates are
    // (and the row at the last high mark, read again).
    await source.sql(
      "UPDATE app.events SET v = 'narrow', updated_at = timestamptz '2027-01-01' + id * interval '1 ms' WHERE id % 100 = 7",
    );
    const narrow = await run();
    assert.deepEqual([narrow.mode, narrow.rowsCopied, narrow.updated], ["timestamp", 401, 400]);

    // Most rows changed, and analyzed since (as autovacuum does after so
    // many): the planner would scan, so the parts do.
    await source.sql(
      "UPDATE app.events SET v = 'wide', updated_at = timestamptz '2027-02-01' + id * interval '1 ms' WHERE id % 10 <> 3",
    );
    await source.sql("ANALYZE app.events");
    const wide = await run();
    assert.deepEqual([wide.mode, wide.rowsCopied, wide.updated], ["timestamp", 36_000, 36_000]);
  });
});
