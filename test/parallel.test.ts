import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { sync, type TableSpec } from "../src/index.js";
import type { ServerInfo } from "../src/db/server.js";
import { planParts, spareSourceCache } from "../src/source/chunks.js";
import { readSourceTable } from "../src/source/catalog.js";
import { bindRead, copyOutSql } from "../src/source/read.js";
import { parseSnapshot } from "../src/source/snapshot.js";
import { to as copyTo } from "pg-copy-streams";
import { testDatabase, type TestDatabase } from "./helpers/databases.js";
import { assertSameRows } from "./helpers/compare.js";

/**
 * Issue 3: parallel reads of one table on one snapshot (TID ranges), binary
 * COPY for built-in types and text for the rest, the first-load path (key
 * built after the data), loading into an existing empty table, and merges
 * in slices. Small batch sizes make a small table take every path.
 */
describe("parallel reads, first loads and sliced merges", () => {
  let source: TestDatabase;
  let target: TestDatabase;
  const tuning = { workers: 3, minBatchSize: 4000, maxBatchSize: 7000 };
  const binaryTable: TableSpec = { source: { schema: "app", name: "plain" } };
  const textTable: TableSpec = { source: { schema: "app", name: "typed" } };
  const preCreated: TableSpec = {
    source: { schema: "app", name: "plain" },
    target: { schema: "mine", name: "plain_copy" },
  };

  before(async () => {
    [source, target] = await Promise.all([testDatabase("17"), testDatabase("14")]);
    await source.sql(`
      CREATE SCHEMA app;
      CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
      CREATE TABLE app.plain (id bigint PRIMARY KEY, name text, amount numeric, at timestamptz, tags int[]);
      INSERT INTO app.plain SELECT i, 'name ' || i, i / 7.0, '2026-01-01'::timestamptz + i * interval '1 minute', ARRAY[i, NULL]
        FROM generate_series(1, 30000) i;
      CREATE TABLE app.typed (k text PRIMARY KEY, mood app.mood, note text);
      INSERT INTO app.typed SELECT 'k' || i, (ARRAY['sad','ok','happy']::app.mood[])[1 + i % 3], repeat('x', i % 50)
        FROM generate_series(1, 20000) i;
    `);
    await source.sql("VACUUM ANALYZE app.plain, app.typed");
    await target.sql(`
      CREATE SCHEMA mine;
      CREATE TABLE mine.plain_copy (id bigint PRIMARY KEY, name text, amount numeric, at timestamptz, tags int[]);
    `);
  });
  after(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  /** What readServerInfo would say of a 17 server, with the given differences. */
  const serverInfo = (differences: Partial<ServerInfo>): ServerInfo => ({
    versionNum: 170000,
    hasMerge: true,
    hasMergeReturning: true,
    hasXid8: true,
    hasTidRangeScan: true,
    inRecovery: false,
    sharedBufferPages: 16384,
    ...differences,
  });

  /** The run's work tables in the target's project schema: none once a run has ended. */
  const workTablesLeft = () =>
    target.sql(
      "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = 'xmin_sync' AND relname ~ '^(load|stage|keys)_'",
    );
  const assertEqual = async (src: string, dst: string, key: string) => {
    await assertSameRows(source, src, target, dst, [key]);
  };

  test("first load, then sliced incremental merges, stay equal", async () => {
    const first = await sync({
      source: source.url(),
      target: target.url(),
      tables: [binaryTable, textTable, preCreated],
      tuning,
    });
    for (const r of first) assert.equal(r.status, "ok", r.error);
    assert.deepEqual(
      first.map((r) => [r.mode, r.rowsCopied, r.inserted]),
      [
        ["full", 30000, 30000],
        ["full", 20000, 20000],
        ["full", 30000, 30000],
      ],
    );
    await assertEqual("app.plain", "app.plain", "id");
    await assertEqual("app.typed", "app.typed", "k");
    await assertEqual("app.plain", "mine.plain_copy", "id");
    // The new tables got their key and the source_xmin index after the load.
    const indexes = await target.sql<{ i: string }>(
      `SELECT indexrelid::regclass::text AS i FROM pg_index WHERE indrelid = 'app.plain'::regclass ORDER BY 1`,
    );
    assert.deepEqual(
      indexes.map((r) => r.i),
      ["app.plain_pkey", "app.plain_source_xmin_idx"],
    );
    const leftovers = await target.sql(
      "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = 'xmin_sync' AND relname ~ '^(load|stage|keys|repair)_'",
    );
    assert.deepEqual(leftovers, [], "no load or staging tables left");

    await source.sql(`
      UPDATE app.plain SET amount = amount + 1 WHERE id % 2 = 0;
      INSERT INTO app.plain SELECT i, 'new', 0, now(), '{}' FROM generate_series(30001, 31000) i;
      UPDATE app.typed SET mood = 'happy', note = 'changed' WHERE k LIKE 'k1%';
    `);
    const second = await sync({
      source: source.url(),
      target: target.url(),
      tables: [binaryTable, textTable, preCreated],
      tuning,
    });
    for (const r of second) assert.equal(r.status, "ok", r.error);
    assert.deepEqual(
      second.map((r) => [r.mode, r.inserted, r.updated]),
      [
        ["xmin", 1000, 15000],
        ["xmin", 0, 11111],
        ["xmin", 1000, 15000],
      ],
    );
    await assertEqual("app.plain", "app.plain", "id");
    await assertEqual("app.typed", "app.typed", "k");
    await assertEqual("app.plain", "mine.plain_copy", "id");
  });

  test("a failing part stops the others; the run fails cleanly and a rerun completes", async () => {
    await target.sql(`
      CREATE SCHEMA picky;
      CREATE TABLE picky.plain (id bigint PRIMARY KEY, name text, amount numeric, at timestamptz, tags int[],
                                CHECK (id <> 25000));`);
    const spec: TableSpec = {
      source: { schema: "app", name: "plain" },
      target: { schema: "picky", name: "plain" },
    };
    const [failed] = await sync({
      source: source.url(),
      target: target.url(),
      tables: [spec],
      tuning,
    });
    assert.equal(failed!.status, "error");
    assert.match(failed!.error!, /check constraint/);
    assert.deepEqual(await workTablesLeft(), [], "no work tables left");
    const [{ state }] = (await target.sql(
      "SELECT count(*)::int AS state FROM xmin_sync.state WHERE target_schema = 'picky'",
    )) as [{ state: number }];
    assert.equal(state, 0, "no watermark for a failed first load");

    await target.sql("ALTER TABLE picky.plain DROP CONSTRAINT plain_id_check");
    const [again] = await sync({
      source: source.url(),
      target: target.url(),
      tables: [spec],
      tuning,
    });
    assert.equal(again!.status, "ok", again!.error);
    await assertEqual("app.plain", "picky.plain", "id");

    // Emptied behind our back: the stored watermark must not be trusted.
    await target.sql("TRUNCATE picky.plain");
    const [reload] = await sync({
      source: source.url(),
      target: target.url(),
      tables: [spec],
      tuning,
    });
    assert.equal(reload!.status, "ok", reload!.error);
    assert.equal(reload!.mode, "full");
    assert.equal(reload!.reason, "target table is empty");
    await assertEqual("app.plain", "picky.plain", "id");
  });

  test("a copy that fails on the table's own connections leaves no work tables behind", async () => {
    // The first part of a copy runs on the table's own reader and target
    // connection; a failed COPY cuts both. The view's read fails once the
    // divisor is 0; a view is read in one part, so on those connections.
    await source.sql(`
      CREATE SCHEMA lent;
      CREATE TABLE lent.divisor (d int);
      INSERT INTO lent.divisor VALUES (1);
      CREATE VIEW lent.ratio AS SELECT p.id, p.amount / (SELECT d FROM lent.divisor) AS share FROM app.plain p;`);
    const spec: TableSpec = { source: { schema: "lent", name: "ratio" }, key: ["id"] };
    const run = () => sync({ source: source.url(), target: target.url(), tables: [spec], tuning });
    const [first] = await run();
    assert.equal(first!.status, "ok", first!.error);
    await source.sql("UPDATE lent.divisor SET d = 0");
    const [failed] = await run();
    assert.equal(failed!.status, "error");
    assert.match(failed!.error!, /division by zero/);
    assert.deepEqual(await workTablesLeft(), [], "no work tables left");
    await source.sql("UPDATE lent.divisor SET d = 2");
    const [again] = await run();
    assert.equal(again!.status, "ok", again!.error);
    await assertEqual("lent.ratio", "lent.ratio", "id");
  });

  test("no session outlives a run, whether it succeeded, failed or was refused", async () => {
    // The run hands the preflight's connections to its first table and opens
    // a copy's connections ahead of it: each way out must close them.
    const sessionsLeft = async (db: TestDatabase) => {
      for (let waited = 0; ; waited += 50) {
        const rows = await db.sql(
          "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'xmin-sync%'",
        );
        if (rows.length === 0 || waited >= 5000) return rows.length;
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    const run = (tables: TableSpec[]) =>
      sync({ source: source.url(), target: target.url(), tables, tuning });
    await target.sql(`
      CREATE SCHEMA strict;
      CREATE TABLE strict.plain (id bigint PRIMARY KEY, name text, amount numeric, at timestamptz, tags int[],
                                 CHECK (id < 20000));`);
    const outcomes = [
      await run([binaryTable, textTable]),
      await run([{ source: { schema: "app", name: "missing" } }]),
      await run([{ source: binaryTable.source, target: { schema: "strict", name: "plain" } }]),
    ].map((results) => results.map((r) => r.status));
    assert.deepEqual(outcomes, [["ok", "ok"], ["error"], ["error"]]);
    assert.equal(await sessionsLeft(source), 0, "sessions left on the source");
    assert.equal(await sessionsLeft(target), 0, "sessions left on the target");
  });

  test("tables run at once stay within the source role's connection limit", async () => {
    // Workers are capped by the connections the role has left (14 here: 4
    // workers). Each table opens its copy's connections ahead, and together
    // they hold no more pairs than there are workers: 4 tables opening 4
    // pairs each would pass the limit and fail to connect.
    const role = "parallel_capped";
    await source.sql(`
      DROP ROLE IF EXISTS ${role};
      CREATE ROLE ${role} LOGIN CONNECTION LIMIT 14;
      GRANT CONNECT ON DATABASE ${source.database} TO ${role};
      GRANT USAGE ON SCHEMA app TO ${role};
      GRANT SELECT ON ALL TABLES IN SCHEMA app TO ${role};`);
    try {
      const into = (name: string, spec: TableSpec): TableSpec => ({
        ...spec,
        target: { schema: "capped", name },
      });
      const results = await sync({
        source: source.url().replace("postgres://postgres@", `postgres://${role}@`),
        target: target.url(),
        tables: ["a", "b", "c", "d"].map((name, i) => into(name, i % 2 ? textTable : binaryTable)),
        tuning: { ...tuning, workers: 4 },
      });
      for (const r of results) assert.equal(r.status, "ok", r.error);
      await assertEqual("app.plain", "capped.c", "id");
    } finally {
      await source.sql(`DROP OWNED BY ${role}; DROP ROLE ${role}`);
    }
  });

  test("a table bigger than the source's shared_buffers is read for its changes in one sequential part", async () => {
    const c = await source.client();
    try {
      await c.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
      const table = await readSourceTable(c, { schema: "app", name: "plain" });
      const server = serverInfo({ sharedBufferPages: 16384 });
      const parts = await planParts(c, server, table, {
        workers: 3,
        minRows: 4000,
        key: ["id"],
        newLeaves: new Set(),
      });
      assert.ok(parts.length > 1 && parts.every((p) => p.range?.kind === "ctid"));
      // The cache holds the table: its parallel TID parts stay.
      assert.deepEqual(spareSourceCache(server, table, parts), parts);
      // The cache is smaller than the table: one part, a plain sequential scan of all of it.
      const small = { ...server, sharedBufferPages: table.leaves[0]!.pages - 1 };
      assert.deepEqual(spareSourceCache(small, table, parts), [
        { relation: { schema: "app", name: "plain" }, only: false, sequential: true },
      ]);
      // One worker: one part already, still read by a sequential scan.
      assert.deepEqual(spareSourceCache(small, table, [{ relation: table.name, only: false }]), [
        { relation: { schema: "app", name: "plain" }, only: false, sequential: true },
      ]);
    } finally {
      await c.query("ROLLBACK");
      await c.end();
    }
  });

  test("integer-key ranges (servers before 14) cover every row exactly once", async () => {
    const c = await source.client();
    await c.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    const snapshot = parseSnapshot(
      (await c.query<{ s: string }>("SELECT pg_current_snapshot()::text AS s")).rows[0]!.s,
    );
    await c.query("SET search_path = pg_catalog");
    const table = await readSourceTable(c, { schema: "app", name: "plain" });
    const noTidRanges = serverInfo({
      versionNum: 130000,
      hasMerge: false,
      hasMergeReturning: false,
      hasTidRangeScan: false,
    });
    const parts = await planParts(c, noTidRanges, table, {
      workers: 3,
      minRows: 4000,
      key: ["id"],
      newLeaves: new Set(),
    });
    assert.equal(parts.length, 6);
    assert.ok(parts.every((p) => p.range?.kind === "key"));
    let total = 0;
    for (const part of parts) {
      await c.query("SAVEPOINT r");
      const spec = {
        part,
        filter: { kind: "all" } as const,
        columns: ["id"],
        xmin: "full" as const,
      };
      await bindRead(c, snapshot, spec);
      const sql = copyOutSql(spec);
      const stream = c.query(copyTo(sql));
      for await (const chunk of stream)
        total += (chunk as Buffer).toString().split("\n").length - 1;
      await c.query("RELEASE SAVEPOINT r");
    }
    await c.query("COMMIT");
    await c.end();
    const [{ n }] = (await source.sql<{ n: string }>("SELECT count(*) AS n FROM app.plain")) as [
      { n: string },
    ];
    assert.equal(total, Number(n));
  });
});
