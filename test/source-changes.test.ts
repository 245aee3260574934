import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type pg from "pg";
import { sync, type TableSpec } from "../src/index.js";
import type { TableResult } from "../src/sync/types.js";
import { testDatabase, type TestDatabase } from "./helpers/databases.js";
import { assertDeepValidates, assertSameRows } from "./helpers/compare.js";

/**
 * Issue 7: the source changes under the copy. Partitioned tables sync as one
 * table read per leaf; partitions attached, detached or replaced between
 * runs and tables made to INHERIT are noticed from the stored leaf set;
 * TRUNCATE, VACUUM FULL, CLUSTER and rewriting ALTERs are told apart by
 * storage and xmin; and a rewrite or TRUNCATE racing a running sync is never
 * read as an empty table. Each case syncs twice after the change and checks
 * the target row for row against the source, then `validate --deep`.
 */
describe("changes on the source", () => {
  let source: TestDatabase;
  let target: TestDatabase;

  before(async () => {
    [source, target] = await Promise.all([testDatabase("17"), testDatabase("17")]);
    await source.sql("CREATE SCHEMA app");
  });
  after(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  const spec = (name: string, extra: Partial<TableSpec> = {}): TableSpec => ({
    source: { schema: "app", name },
    ...extra,
  });
  const run = async (s: TableSpec, sourceUrl = source.url()): Promise<TableResult> => {
    const [r] = await sync({
      source: sourceUrl,
      target: target.url(),
      tables: [s],
      // Small parts, so each leaf is split and read in parallel.
      tuning: { workers: 2, minBatchSize: 500 },
    });
    assert.equal(r!.status, "ok", r!.error);
    return r!;
  };
  /** app.<name> (id, v) with `rows` rows on the source, synced once. */
  const synced = async (name: string, rows: number, extra: Partial<TableSpec>) => {
    await source.sql(`
      CREATE TABLE app.${name} (id int PRIMARY KEY, v text);
      INSERT INTO app.${name} SELECT i, 'v' || i FROM generate_series(1, ${rows}) i;
    `);
    const s = spec(name, extra);
    await run(s);
    return s;
  };
  /** Two syncs (the second must find nothing left to do), then the copy equals the source, and deep validation agrees. */
  const converge = async (s: TableSpec, key: string[]) => {
    const first = await run(s);
    const second = await run(s);
    assert.equal(second.mode, "xmin");
    assert.equal(
      second.inserted + second.updated + second.deleted,
      0,
      "a second run finds nothing",
    );
    const name = `app.${s.source.name}`;
    await assertSameRows(source, name, target, name, key);
    await assertDeepValidates(source, target, s);
    return first;
  };

  test("a partitioned table syncs as one plain table; rows moving between leaves arrive and their old key goes", async () => {
    await source.sql(`
      CREATE TABLE app.events (at date NOT NULL, id int NOT NULL, v text, PRIMARY KEY (at, id)) PARTITION BY RANGE (at);
      CREATE TABLE app.events_2024 PARTITION OF app.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
      CREATE TABLE app.events_2025 PARTITION OF app.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
      CREATE TABLE app.events_2026 PARTITION OF app.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
      INSERT INTO app.events SELECT date '2024-01-01' + (i % 1000), i, 'v' || i FROM generate_series(1, 6000) i;
    `);
    const s = spec("events", { deletes: "hard" });
    const first = await run(s);
    assert.equal(first.mode, "full");
    assert.equal(first.rowsCopied, 6000);
    const [kind] = await target.sql<{ k: string }>(
      "SELECT relkind::text AS k FROM pg_class WHERE oid = 'app.events'::regclass",
    );
    assert.equal(kind!.k, "r", "the target is a plain table");

    await source.sql(
      "UPDATE app.events SET at = at + 365, v = 'moved' WHERE id % 10 = 0 AND at < '2025-06-01'",
    );
    const moved = await converge(s, ["at", "id"]);
    assert.equal(moved.mode, "xmin");
    assert.equal(moved.inserted, moved.deleted, "each moved row is a new key and an old one gone");
    assert.ok(moved.inserted > 0);
  });

  test("a partition attached with old rows arrives whole; a detached one's rows go; a replaced leaf is read whole", async () => {
    await source.sql(`
      CREATE TABLE app.sales (region text NOT NULL, id int NOT NULL, amount numeric, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
      CREATE TABLE app.sales_eu PARTITION OF app.sales FOR VALUES IN ('eu');
      CREATE TABLE app.sales_us PARTITION OF app.sales FOR VALUES IN ('us');
      INSERT INTO app.sales SELECT (ARRAY['eu','us'])[1 + i % 2], i, i * 1.5 FROM generate_series(1, 4000) i;
      CREATE TABLE app.sales_asia (LIKE app.sales INCLUDING ALL);
      INSERT INTO app.sales_asia SELECT 'asia', i, i FROM generate_series(1, 1000) i;
    `);
    const s = spec("sales", { deletes: "hard" });
    await run(s);
    // Written before that run, attached after it: its rows' xmins are older than the watermark.
    await source.sql(
      "ALTER TABLE app.sales ATTACH PARTITION app.sales_asia FOR VALUES IN ('asia')",
    );
    const attached = await converge(s, ["region", "id"]);
    assert.equal(attached.mode, "xmin", "no full resync of the other leaves");
    assert.equal(attached.inserted, 1000);
    assert.equal(attached.rowsCopied, 1000, "only the new leaf's rows were read");
    assert.match(attached.reason ?? "", /added/);

    await source.sql("ALTER TABLE app.sales DETACH PARTITION app.sales_asia");
    const detached = await converge(s, ["region", "id"]);
    assert.equal(detached.deleted, 1000);

    // The same name, another table: the leaf is new and read whole.
    await source.sql(`
      ALTER TABLE app.sales DETACH PARTITION app.sales_us;
      ALTER TABLE app.sales_us RENAME TO sales_us_old;
      CREATE TABLE app.sales_us (LIKE app.sales INCLUDING ALL);
      INSERT INTO app.sales_us SELECT region, id, amount * 2 FROM app.sales_us_old WHERE id <= 1000;
    `);
    await source.sql("ALTER TABLE app.sales ATTACH PARTITION app.sales_us FOR VALUES IN ('us')");
    const replaced = await converge(s, ["region", "id"]);
    assert.equal(replaced.mode, "xmin");
    assert.equal(replaced.deleted, 1500, "rows of the old leaf beyond the new one's");
  });

  test("a role with SELECT on the parent only reads the partitions through it", async () => {
    await source.sql(`
      CREATE TABLE app.granted (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
      CREATE TABLE app.granted_a PARTITION OF app.granted FOR VALUES FROM (0) TO (1000);
      CREATE TABLE app.granted_b PARTITION OF app.granted FOR VALUES FROM (1000) TO (2000);
      INSERT INTO app.granted SELECT i, 'v' || i FROM generate_series(0, 1999) i;
      CREATE ROLE parent_reader LOGIN;
      GRANT USAGE ON SCHEMA app TO parent_reader;
      GRANT SELECT ON app.granted TO parent_reader;
    `);
    const url = source.url().replace("postgres@", "parent_reader@");
    const s = spec("granted");
    const first = await run(s, url);
    assert.equal(first.rowsCopied, 2000);
    await source.sql(`
      UPDATE app.granted SET v = 'x' WHERE id % 7 = 0;
      CREATE TABLE app.granted_c (LIKE app.granted INCLUDING ALL);
      INSERT INTO app.granted_c SELECT i, 'c' FROM generate_series(2000, 2099) i;
      ALTER TABLE app.granted ATTACH PARTITION app.granted_c FOR VALUES FROM (2000) TO (3000);
    `);
    const r = await run(s, url);
    assert.equal(r.mode, "xmin");
    assert.equal(r.inserted, 100, "the attached leaf's old rows, read through the parent");
    await assertSameRows(source, "app.granted", target, "app.granted", ["id"]);
  });

  test("an existing table made to INHERIT brings its rows; the parent keeps its own", async () => {
    await source.sql(`
      CREATE TABLE app.animals (id int PRIMARY KEY, name text NOT NULL);
      INSERT INTO app.animals SELECT i, 'animal ' || i FROM generate_series(1, 500) i;
      CREATE TABLE app.cats (id int PRIMARY KEY, name text NOT NULL, lives int DEFAULT 9);
      INSERT INTO app.cats SELECT i, 'cat ' || i FROM generate_series(10001, 11000) i;
    `);
    const s = spec("animals", { deletes: "hard" });
    assert.equal((await run(s)).rowsCopied, 500);
    await source.sql("ALTER TABLE app.cats INHERIT app.animals");
    const r = await converge(s, ["id"]);
    assert.equal(r.mode, "xmin");
    assert.equal(r.inserted, 1000);
    await source.sql("ALTER TABLE app.cats NO INHERIT app.animals");
    assert.equal((await converge(s, ["id"])).deleted, 1000);
  });

  test("TRUNCATE: with deletes tracked the rows go; without, the result says so", async () => {
    for (const name of ["trunc_hard", "trunc_ignore"]) {
      await source.sql(`
        CREATE TABLE app.${name} (id int PRIMARY KEY, v text);
        INSERT INTO app.${name} SELECT i, 'v' || i FROM generate_series(1, 2000) i;
      `);
    }
    const hard = spec("trunc_hard", { deletes: "hard" });
    await run(hard);
    await source.sql(
      "TRUNCATE app.trunc_hard; INSERT INTO app.trunc_hard SELECT i, 'new' FROM generate_series(1, 10) i",
    );
    const r = await converge(hard, ["id"]);
    assert.equal(r.mode, "xmin");
    assert.equal(r.deleted, 1990);
    assert.equal(r.updated, 10);
    assert.match(r.reason ?? "", /storage of app\.trunc_hard replaced/);

    const ignore = spec("trunc_ignore");
    await run(ignore);
    await source.sql("TRUNCATE app.trunc_ignore");
    const n = await run(ignore);
    assert.equal(n.deleted, 0);
    assert.match(
      (n.notes ?? []).join(" "),
      /deletes are not tracked/,
      "named even though not propagated",
    );
  });

  test("VACUUM FULL and CLUSTER keep xmin: no resync, only the changed rows", async () => {
    const s = await synced("kept", 3000, { deletes: "hard" });
    for (const rewrite of ["VACUUM FULL app.kept", "CLUSTER app.kept USING kept_pkey"]) {
      await source.sql("UPDATE app.kept SET v = v || '+' WHERE id % 100 = 0");
      await source.sql(rewrite);
      const r = await converge(s, ["id"]);
      assert.equal(r.mode, "xmin", rewrite);
      assert.equal(r.rowsCopied, 30, `${rewrite}: only the changed rows are read`);
      assert.equal(r.updated, 30);
    }
  });

  test("a rewriting ALTER gives every row a new xmin: merged by content, not as a mass update", async () => {
    const s = await synced("rewritten", 3000, { deletes: "hard" });
    await source.sql("UPDATE app.rewritten SET v = 'changed' WHERE id <= 5");
    // An older transaction stays open: it holds the watermark below the rewrite.
    const older: pg.Client = await source.client();
    await older.query("BEGIN");
    await older.query("SELECT txid_current()");
    // Same type; the USING expression forces a rewrite of every row.
    await source.sql("ALTER TABLE app.rewritten ALTER COLUMN v TYPE text USING v || ''");
    const r = await run(s);
    assert.equal(r.mode, "xmin");
    assert.equal(r.rowsCopied, 3000, "every row has a new xmin");
    assert.equal(r.updated, 5, "only the rows whose content changed are written");
    const again = await run(s);
    assert.equal(again.rowsCopied, 3000, "held back: the rewritten rows are read again");
    assert.equal(again.updated, 0, "and compared by content, not rewritten for their xmin");
    await older.query("COMMIT");
    await older.end();
    await converge(s, ["id"]);
  });

  for (const change of ["rewrite", "truncate"] as const) {
    test(`a ${change} racing a running sync with deletes tracked never empties the target`, async () => {
      const name = `race_${change}`;
      await source.sql(`
        CREATE TABLE app.${name} (id int PRIMARY KEY, v text);
        INSERT INTO app.${name} SELECT i, 'v' || i FROM generate_series(1, 5000) i;
      `);
      const s = spec(name, { deletes: "hard" });
      await run(s);
      await source.sql(`UPDATE app.${name} SET v = 'u' WHERE id % 50 = 0`);

      const holder: pg.Client = await source.client();
      await holder.query("BEGIN");
      await holder.query(`LOCK TABLE app.${name} IN ACCESS EXCLUSIVE MODE`);
      const syncing = run(s);
      syncing.catch(() => undefined);
      // The run has taken its snapshot and waits for the table.
      for (let waited = 0; ; waited += 20) {
        const rows = await source.sql(
          "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name LIKE 'xmin-sync%' AND datname = current_database()",
        );
        if (rows.length > 0) break;
        assert.ok(waited < 20_000, "the sync never waited for the table");
        await new Promise((r) => setTimeout(r, 20));
      }
      if (change === "rewrite") {
        await holder.query(`ALTER TABLE app.${name} ALTER COLUMN v TYPE text USING v || ''`);
      } else {
        await holder.query(`TRUNCATE app.${name}`);
        await holder.query(
          `INSERT INTO app.${name} SELECT i, 'after' FROM generate_series(1, 5) i`,
        );
      }
      await holder.query("COMMIT");
      await holder.end();

      const r = await syncing;
      if (change === "rewrite") assert.equal(r.deleted, 0, "nothing deleted");
      else assert.equal(r.deleted, 4995);
      const [n] = await target.sql<{ n: string }>(`SELECT count(*)::text AS n FROM app.${name}`);
      assert.equal(n!.n, change === "rewrite" ? "5000" : "5");
      await converge(s, ["id"]);
    });
  }

  test("a run that would delete most of the target stops unless the source agrees", async () => {
    const s = await synced("guarded", 1000, { deletes: "hard" });
    // A real mass delete: the fresh look at the source agrees, so it goes through.
    await source.sql("DELETE FROM app.guarded WHERE id > 100");
    const r = await run(s);
    assert.equal(r.deleted, 900);
    await assertSameRows(source, "app.guarded", target, "app.guarded", ["id"]);
    // Most rows replaced by new ones between two runs: the copy keeps the
    // new ones, so the source's fresh count agrees with what it keeps.
    await source.sql(`
      DELETE FROM app.guarded WHERE id > 25;
      INSERT INTO app.guarded SELECT i, 'n' || i FROM generate_series(1001, 1200) i;
    `);
    const replaced = await run(s);
    assert.equal(replaced.status, "ok", replaced.error);
    assert.equal(replaced.deleted, 75);
    assert.equal(replaced.inserted, 200);
    await assertSameRows(source, "app.guarded", target, "app.guarded", ["id"]);
  });

  test("soft deletes: the guard weighs the rows still live, not the marked ones", async () => {
    const s = await synced("soft_guarded", 1000, { deletes: "soft" });
    await source.sql("DELETE FROM app.soft_guarded WHERE id > 100");
    assert.equal((await run(s)).deleted, 900);
    // 90 of the 100 live rows go: a mass delete of the live rows (9% of the
    // table), which the source confirms, so it is committed.
    await source.sql("DELETE FROM app.soft_guarded WHERE id > 10");
    const r = await run(s);
    assert.equal(r.status, "ok", r.error);
    assert.equal(r.deleted, 90);
    const [live] = await target.sql<{ n: string }>(
      "SELECT count(*)::text AS n FROM app.soft_guarded WHERE source_deleted_at IS NULL",
    );
    assert.equal(live!.n, "10");
  });

  test("server timeouts meant for applications do not cut a run short (PostgreSQL 17)", async () => {
    await source.sql(`
      CREATE TABLE app.slow (id int PRIMARY KEY);
      INSERT INTO app.slow SELECT generate_series(1, 100);
      CREATE ROLE impatient LOGIN SUPERUSER;
      ALTER ROLE impatient SET transaction_timeout = '300ms';
      ALTER ROLE impatient SET idle_in_transaction_session_timeout = '300ms';
    `);
    const holder: pg.Client = await source.client();
    await holder.query("BEGIN");
    await holder.query("LOCK TABLE app.slow IN ACCESS EXCLUSIVE MODE");
    // The run waits for the lock well past both timeouts, inside its snapshot's transaction.
    const syncing = run(spec("slow"), source.url().replace("postgres@", "impatient@"));
    syncing.catch(() => undefined);
    await new Promise((r) => setTimeout(r, 1500));
    await holder.query("COMMIT");
    await holder.end();
    assert.equal((await syncing).rowsCopied, 100);
  });
});
