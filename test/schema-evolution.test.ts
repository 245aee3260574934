import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sync, type TableSpec } from "../src/index.js";
import type { TableResult } from "../src/sync/types.js";
import { startCluster, type Cluster } from "./helpers/cluster.js";
import { runCli } from "./helpers/cli.js";
import { assertDeepValidates, assertSameRows } from "./helpers/compare.js";

/**
 * Issue 7, schema evolution: each change to a source table's schema is
 * followed on the target (schemaChanges: evolve, the default), or stops the
 * table with the target untouched (fail). Each case syncs, changes the
 * source, syncs twice, and checks the copy row for row against the source,
 * then with `validate --deep`. One server of each version: the DDL runs on
 * the target, so the column changes run both ways (17 → 14, without MERGE,
 * and 14 → 17); a schema per case.
 */
describe("schema changes on the source", () => {
  let v17: Cluster;
  let v14: Cluster;
  type Way = "17 to 14" | "14 to 17";
  const servers = (way: Way) =>
    way === "17 to 14" ? { source: v17, target: v14 } : { source: v14, target: v17 };

  before(async () => {
    [v17, v14] = await Promise.all([
      startCluster({ version: "17" }),
      startCluster({ version: "14" }),
    ]);
  });
  after(async () => {
    await Promise.all([v17?.stop(), v14?.stop()]);
  });

  const spec = (schema: string, name: string, extra: Partial<TableSpec> = {}): TableSpec => ({
    source: { schema, name },
    ...extra,
  });
  const runOnce = async (way: Way, s: TableSpec): Promise<TableResult> => {
    const { source, target } = servers(way);
    const [r] = await sync({
      source: source.url(),
      target: target.url(),
      tables: [s],
      tuning: { workers: 2, minBatchSize: 500 },
    });
    return r!;
  };
  const run = async (way: Way, s: TableSpec): Promise<TableResult> => {
    const r = await runOnce(way, s);
    assert.equal(r.status, "ok", r.error);
    return r;
  };
  /**
   * Two syncs after a change: the second finds nothing left to do; then the
   * copy equals the source row for row and deep validation agrees.
   */
  const converge = async (way: Way, s: TableSpec, key: string[]): Promise<TableResult> => {
    const { source, target } = servers(way);
    const first = await run(way, s);
    const second = await run(way, s);
    assert.equal(second.mode, "xmin", "the second run is incremental");
    assert.equal(second.schemaChanges, undefined, "the second run finds no change");
    assert.equal(
      second.inserted + second.updated + second.deleted,
      0,
      "the second run finds nothing",
    );
    const name = `${s.source.schema}.${s.source.name}`;
    await assertSameRows(source, name, target, name, key);
    await assertDeepValidates(source, target, s);
    return first;
  };
  const targetColumns = async (c: Cluster, table: string) =>
    c.sql<{ name: string; type: string; notnull: boolean }>(
      `SELECT attname AS name, format_type(atttypid, atttypmod) AS type, attnotnull AS notnull
         FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
      [table],
    );
  const hasChange = (r: TableResult, pattern: RegExp) =>
    assert.ok(
      (r.schemaChanges ?? []).some((c) => pattern.test(c)),
      `${pattern} in ${JSON.stringify(r.schemaChanges)}`,
    );

  for (const way of ["17 to 14", "14 to 17"] as const) {
    const tag = way.replace(/ to /, "_");

    test(`added columns reach the target; old rows carry the fast default without a full copy (${way})`, async () => {
      const { source, target } = servers(way);
      const s = `added_${tag}`;
      await source.sql(`
        CREATE SCHEMA ${s};
        CREATE TABLE ${s}.items (id int PRIMARY KEY, name text NOT NULL);
        INSERT INTO ${s}.items SELECT i, 'item ' || i FROM generate_series(1, 3000) i;
        CREATE TABLE ${s}.parts (region text NOT NULL, id int NOT NULL, v int, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
        CREATE TABLE ${s}.parts_eu PARTITION OF ${s}.parts FOR VALUES IN ('eu');
        CREATE TABLE ${s}.parts_us PARTITION OF ${s}.parts FOR VALUES IN ('us');
        INSERT INTO ${s}.parts SELECT (ARRAY['eu','us'])[1 + i % 2], i, i FROM generate_series(1, 2000) i;
      `);
      const items = spec(s, "items", { deletes: "hard" });
      const parts = spec(s, "parts");
      await run(way, items);
      await run(way, parts);

      // Rows written before the ADD COLUMNs keep their xmin and read the defaults.
      await source.sql(`
        ALTER TABLE ${s}.items ADD COLUMN note text;
        ALTER TABLE ${s}.items ADD COLUMN status text NOT NULL DEFAULT 'new';
        ALTER TABLE ${s}.items ADD COLUMN since timestamptz DEFAULT '2024-05-06 07:08:09+02';
        ALTER TABLE ${s}.items ADD COLUMN "Odd ""name""" int[] DEFAULT '{1,2}';
        UPDATE ${s}.items SET status = 'shipped', note = 'n' WHERE id % 100 = 0;
        INSERT INTO ${s}.items (id, name) VALUES (5001, 'after');
        -- A later default is not what old rows carry.
        ALTER TABLE ${s}.items ALTER COLUMN status SET DEFAULT 'other';
        INSERT INTO ${s}.items (id, name) VALUES (5002, 'later');
        ALTER TABLE ${s}.parts ADD COLUMN flag boolean NOT NULL DEFAULT true;
        UPDATE ${s}.parts SET flag = false WHERE id <= 10;
      `);
      const r = await converge(way, items, ["id"]);
      assert.equal(r.mode, "xmin", "no full copy");
      assert.equal(r.rowsCopied, 32, "only the rows written since are read");
      hasChange(r, /^column "note" added \(text\)$/);
      hasChange(r, /^column "status" added \(text\), existing rows given its default "new"$/);
      hasChange(r, /^column "Odd ""name""" added \(integer\[\]\), existing rows given/);
      const [counts] = await target.sql<{ new: number; other: number }>(
        `SELECT count(*) FILTER (WHERE status = 'new')::int AS new, count(*) FILTER (WHERE status = 'other')::int AS other FROM ${s}.items`,
      );
      assert.deepEqual(counts, { new: 2971, other: 1 });
      const status = (await targetColumns(target, `${s}.items`)).find((c) => c.name === "status");
      assert.equal(status?.notnull, true, "NOT NULL holds: every row has a value");

      const p = await converge(way, parts, ["region", "id"]);
      assert.equal(p.rowsCopied, 10, "a partitioned table: the leaves' default");
      if (way === "17 to 14") {
        // A leaf given the column apart, with another default: old rows differ by leaf.
        await source.sql(`
          ALTER TABLE ${s}.parts DETACH PARTITION ${s}.parts_us;
          ALTER TABLE ${s}.parts ADD COLUMN grade int DEFAULT 1;
          ALTER TABLE ${s}.parts_us ADD COLUMN grade int DEFAULT 2;
          ALTER TABLE ${s}.parts ATTACH PARTITION ${s}.parts_us FOR VALUES IN ('us');
        `);
        const mixed = await converge(way, parts, ["region", "id"]);
        assert.equal(mixed.mode, "full");
        assert.match(
          mixed.reason ?? "",
          /column "grade" added with a default the partitions hold differently/,
        );
      }

      // A state written before columns were stored: compared by name.
      await target.sql(
        `UPDATE xmin_sync.state SET source_columns = NULL, source_types = NULL WHERE target_schema = '${s}' AND target_table = 'items'`,
      );
      await source.sql(`ALTER TABLE ${s}.items ADD COLUMN score numeric(6,2) DEFAULT 1.5`);
      const legacy = await converge(way, items, ["id"]);
      assert.equal(legacy.rowsCopied, 0);
      hasChange(
        legacy,
        /^column "score" added \(numeric\(6,2\)\), existing rows given its default "1.50"$/,
      );
    });

    test(`a changed key resyncs the table, comparing content, and merges by the new key (${way})`, async () => {
      const { source, target } = servers(way);
      const s = `key_${tag}`;
      await source.sql(`
        CREATE SCHEMA ${s};
        CREATE TABLE ${s}.accounts (id int PRIMARY KEY, region text NOT NULL, v text);
        INSERT INTO ${s}.accounts SELECT i, (ARRAY['eu','us'])[1 + i % 2], 'v' || i FROM generate_series(1, 2000) i;
      `);
      const a = spec(s, "accounts", { deletes: "hard" });
      await run(way, a);
      await source.sql(`
        ALTER TABLE ${s}.accounts DROP CONSTRAINT accounts_pkey, ADD PRIMARY KEY (region, id);
        INSERT INTO ${s}.accounts VALUES (1, 'asia', 'same id, another region');
        UPDATE ${s}.accounts SET v = 'changed' WHERE id <= 5;
      `);
      const r = await converge(way, a, ["region", "id"]);
      assert.equal(r.mode, "full");
      assert.match(r.reason ?? "", /key changed from \("id"\) to \("region", "id"\)/);
      assert.equal(r.inserted, 1);
      assert.equal(r.updated, 5, "content decides: only the changed rows are written");
      const [pk] = await target.sql<{ def: string }>(
        `SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = '${s}.accounts'::regclass AND contype = 'p'`,
      );
      assert.equal(pk!.def, "PRIMARY KEY (region, id)");
      await source.sql(`UPDATE ${s}.accounts SET v = 'again' WHERE id = 1`);
      const after = await converge(way, a, ["region", "id"]);
      assert.equal(after.mode, "xmin");
      assert.equal(after.updated, 2);
    });
  }

  test("widened columns are altered in place; an incompatible type is rebuilt and the table resynced", async () => {
    const way = "17 to 14";
    const { source, target } = servers(way);
    const s = "retyped";
    await source.sql(`
      CREATE SCHEMA ${s};
      CREATE TABLE ${s}.w (id int PRIMARY KEY, qty int, code varchar(10), price numeric(6,2), tags varchar(5)[], n text, d text);
      INSERT INTO ${s}.w SELECT i, i, 'c' || i, i / 7.0, ARRAY['a' || i % 10], (i * 3)::text, repeat('x', i % 9)
        FROM generate_series(1, 3000) i;
    `);
    const w = spec(s, "w", { deletes: "hard" });
    await run(way, w);

    // No rewrite on the source: the old rows keep their xmin.
    await source.sql(`
      ALTER TABLE ${s}.w ALTER COLUMN code TYPE varchar(40), ALTER COLUMN price TYPE numeric(12,2);
      UPDATE ${s}.w SET code = repeat('long', 10), price = 1234567.89 WHERE id <= 3;
    `);
    const widened = await converge(way, w, ["id"]);
    assert.equal(widened.mode, "xmin");
    assert.equal(widened.rowsCopied, 3);
    hasChange(
      widened,
      /^column "code" widened from character varying\(10\) to character varying\(40\)$/,
    );
    hasChange(widened, /^column "price" widened from numeric\(6,2\) to numeric\(12,2\)$/);

    // A rewrite on the source: every row has a new xmin, and content decides.
    await source.sql(`
      ALTER TABLE ${s}.w ALTER COLUMN qty TYPE bigint, ALTER COLUMN tags TYPE text[];
      UPDATE ${s}.w SET qty = 5000000000 WHERE id = 1;
    `);
    const bigint = await converge(way, w, ["id"]);
    assert.equal(bigint.mode, "xmin");
    assert.equal(bigint.updated, 1);
    hasChange(bigint, /^column "qty" widened from integer to bigint$/);
    hasChange(bigint, /^column "tags" widened from character varying\(5\)\[\] to text\[\]$/);

    // n converts on the target too; d does not ('xxx' is no integer): emptied, then refilled by the resync.
    await source.sql(`
      ALTER TABLE ${s}.w ALTER COLUMN n TYPE integer USING n::integer,
        ALTER COLUMN d TYPE integer USING length(d);
    `);
    const rebuilt = await converge(way, w, ["id"]);
    assert.equal(rebuilt.mode, "full");
    assert.match(rebuilt.reason ?? "", /column "n" changed type from text to integer/);
    assert.match(rebuilt.reason ?? "", /column "d" changed type from text to integer/);
    hasChange(
      rebuilt,
      /^column "d" changed type from text to integer: rebuilt on the target, table resynced$/,
    );
    const types = await targetColumns(target, `${s}.w`);
    assert.deepEqual(
      types
        .filter((c) => c.name !== "source_xmin")
        .map((c) => `${c.name} ${c.type}`)
        .sort(),
      [
        "code character varying(40)",
        "d integer",
        "id integer",
        "n integer",
        "price numeric(12,2)",
        "qty bigint",
        "tags text[]",
      ],
    );
  });

  test("a dropped column is kept (no longer written, NULL allowed) or dropped; a new one of its name starts afresh", async () => {
    const way = "14 to 17";
    const { source, target } = servers(way);
    const s = "dropped";
    await source.sql(`
      CREATE SCHEMA ${s};
      CREATE TABLE ${s}.kept (id int PRIMARY KEY, legacy text NOT NULL, v int);
      INSERT INTO ${s}.kept SELECT i, 'old' || i, i FROM generate_series(1, 2000) i;
      CREATE TABLE ${s}.gone (LIKE ${s}.kept INCLUDING ALL);
      INSERT INTO ${s}.gone SELECT * FROM ${s}.kept;
    `);
    const kept = spec(s, "kept", { deletes: "hard" });
    const gone = spec(s, "gone", { droppedColumns: "drop" });
    await run(way, kept);
    await run(way, gone);
    for (const t of ["kept", "gone"]) {
      await source.sql(`
        ALTER TABLE ${s}.${t} DROP COLUMN legacy;
        INSERT INTO ${s}.${t} VALUES (3001, 1);
        UPDATE ${s}.${t} SET v = -1 WHERE id <= 10;
      `);
    }
    const k = await converge(way, kept, ["id"]);
    assert.deepEqual(k.schemaChanges, [
      'column "legacy" dropped on the source: kept on the target, no longer written',
    ]);
    assert.equal(k.rowsCopied, 11);
    const legacy = await target.sql<{ id: number; legacy: string | null }>(
      `SELECT id, legacy FROM ${s}.kept WHERE id IN (5, 3001) ORDER BY id`,
    );
    assert.deepEqual(legacy, [
      { id: 5, legacy: "old5" },
      { id: 3001, legacy: null },
    ]);
    // A view of the user's on the copy holds the column: the run says so, and changes nothing.
    await target.sql(`CREATE VIEW ${s}.report AS SELECT id, legacy FROM ${s}.gone`);
    const refused = await runOnce(way, gone);
    assert.equal(refused.status, "error");
    assert.match(
      refused.error ?? "",
      /^cannot change target table dropped\.gone to match the source: ALTER TABLE "dropped"\."gone" DROP COLUMN "legacy": cannot drop column legacy of table dropped\.gone because other objects depend on it \(view dropped\.report depends on column legacy of table dropped\.gone\)$/,
    );
    await target.sql(`DROP VIEW ${s}.report`);
    const g = await converge(way, gone, ["id"]);
    assert.deepEqual(g.schemaChanges, [
      'column "legacy" dropped on the source: dropped on the target too',
    ]);
    assert.ok(!(await targetColumns(target, `${s}.gone`)).some((c) => c.name === "legacy"));

    // The same name again, another column: the kept one moves aside with its old values.
    await source.sql(`ALTER TABLE ${s}.kept ADD COLUMN legacy text DEFAULT 'fresh'`);
    const again = await converge(way, kept, ["id"]);
    hasChange(again, /^column "legacy" renamed to "legacy_dropped" on the target/);
    const [row] = await target.sql<{ legacy: string; legacy_dropped: string }>(
      `SELECT legacy, legacy_dropped FROM ${s}.kept WHERE id = 5`,
    );
    assert.deepEqual(row, { legacy: "fresh", legacy_dropped: "old5" });
  });

  test("renamed columns (even swapped) are renamed on the target, without a copy", async () => {
    const way = "17 to 14";
    const { source, target } = servers(way);
    const s = "renamed";
    await source.sql(`
      CREATE SCHEMA ${s};
      CREATE TABLE ${s}.people (id int PRIMARY KEY, first text, last text, age int NOT NULL);
      INSERT INTO ${s}.people SELECT i, 'f' || i, 'l' || i, i % 90 FROM generate_series(1, 2000) i;
    `);
    const p = spec(s, "people");
    await run(way, p);
    await source.sql(`
      ALTER TABLE ${s}.people RENAME COLUMN age TO years;
      ALTER TABLE ${s}.people RENAME COLUMN first TO tmp;
      ALTER TABLE ${s}.people RENAME COLUMN last TO first;
      ALTER TABLE ${s}.people RENAME COLUMN tmp TO last;
      ALTER TABLE ${s}.people ALTER COLUMN years DROP NOT NULL, ALTER COLUMN first TYPE text COLLATE "C";
      UPDATE ${s}.people SET years = NULL WHERE id % 100 = 0;
    `);
    const r = await converge(way, p, ["id"]);
    assert.equal(r.mode, "xmin");
    assert.equal(r.rowsCopied, 20);
    assert.deepEqual(r.schemaChanges, [
      'column "first" renamed to "last"',
      'column "last" renamed to "first"',
      'column "age" renamed to "years"',
      'column "first" collation changed to "pg_catalog"."C"',
      'column "years" NOT NULL dropped, as on the source',
    ]);
    const [row] = await target.sql(`SELECT first, last FROM ${s}.people WHERE id = 7`);
    assert.deepEqual(row, { first: "l7", last: "f7" });
  });

  test("a column added to a view is brought by a resync: its old rows' values are known only by reading them", async () => {
    const way = "14 to 17";
    const { source } = servers(way);
    const s = "viewed";
    await source.sql(`
      CREATE SCHEMA ${s};
      CREATE TABLE ${s}.events (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), v text);
      INSERT INTO ${s}.events (id, v) SELECT i, 'v' || i FROM generate_series(1, 1000) i;
      CREATE VIEW ${s}.events_v AS SELECT id, at, v FROM ${s}.events;
    `);
    const v = spec(s, "events_v", { key: ["id"], cursor: "at" });
    assert.equal((await run(way, v)).mode, "full");
    await source.sql(
      `CREATE OR REPLACE VIEW ${s}.events_v AS SELECT id, at, v, upper(v) AS loud FROM ${s}.events`,
    );
    const r = await run(way, v);
    assert.equal(r.mode, "full");
    assert.match(r.reason ?? "", /column "loud" added to a view or foreign table/);
    const again = await run(way, v);
    assert.equal(again.mode, "timestamp");
    assert.equal(again.inserted + again.updated, 0);
    await assertSameRows(source, `${s}.events_v`, servers(way).target, `${s}.events_v`, ["id"]);
    await assertDeepValidates(source, servers(way).target, v);
  });

  test("enum labels added and renamed, a domain's NOT NULL dropped, composite attributes added and renamed", async () => {
    const way = "14 to 17";
    const { source, target } = servers(way);
    const s = "types";
    await source.sql(`
      CREATE SCHEMA ${s};
      CREATE TYPE ${s}.mood AS ENUM ('happy', 'sad', 'meh');
      CREATE DOMAIN ${s}.code AS varchar(8) NOT NULL;
      CREATE DOMAIN ${s}.wide_code AS varchar(20);
      CREATE TYPE ${s}.addr AS (street text, city text);
      CREATE TABLE ${s}.feelings (id int PRIMARY KEY, m ${s}.mood, c ${s}.code, a ${s}.addr);
      INSERT INTO ${s}.feelings SELECT i, (ARRAY['happy','sad','meh'])[1 + i % 3]::${s}.mood, 'c' || i % 1000,
        ROW('street ' || i, 'city')::${s}.addr FROM generate_series(1, 3000) i;
    `);
    const f = spec(s, "feelings");
    await run(way, f);
    // A RENAME VALUE writes no row: 1,000 rows would keep the old label.
    await source.sql(`
      ALTER TYPE ${s}.mood RENAME VALUE 'sad' TO 'blue';
      ALTER TYPE ${s}.mood ADD VALUE 'calm' AFTER 'happy';
      ALTER DOMAIN ${s}.code DROP NOT NULL;
      ALTER TYPE ${s}.addr ADD ATTRIBUTE zip text;
      ALTER TYPE ${s}.addr RENAME ATTRIBUTE city TO town;
    `);
    await source.sql(
      `INSERT INTO ${s}.feelings VALUES (5000, 'calm', NULL, ROW('s', 't', '12345'))`,
    );
    const r = await converge(way, f, ["id"]);
    assert.equal(r.mode, "xmin");
    assert.equal(r.rowsCopied, 1);
    assert.deepEqual(r.schemaChanges, [
      'enum types.mood: label "sad" renamed to "blue"',
      'enum types.mood: label "calm" added',
      "domain types.code: NOT NULL dropped",
      'composite types.addr: attribute "city" renamed to "town"',
      'composite types.addr: attribute "zip" added',
    ]);
    const labels = `SELECT enum_range(NULL::${s}.mood)::text AS r`;
    assert.deepEqual(await target.sql(labels), await source.sql(labels));

    await source.sql(`
      ALTER TABLE ${s}.feelings ALTER COLUMN c TYPE ${s}.wide_code;
      UPDATE ${s}.feelings SET c = 'a much longer code' WHERE id = 1;
    `);
    const wider = await converge(way, f, ["id"]);
    assert.equal(wider.mode, "xmin");
    hasChange(wider, /^column "c" widened from types\.code to types\.wide_code$/);
  });

  test("schemaChanges fail stops the table with one line and leaves the target as it was; evolve from the config goes on", async () => {
    const way = "17 to 14";
    const { source, target } = servers(way);
    const s = "strict";
    await source.sql(`
      CREATE SCHEMA ${s};
      CREATE TABLE ${s}.orders (id int PRIMARY KEY, v text);
      INSERT INTO ${s}.orders SELECT i, 'v' || i FROM generate_series(1, 1000) i;
    `);
    const cli = (...args: string[]) =>
      runCli(["sync", "--source", source.url(), "--target", target.url(), ...args]);
    const first = await cli("--table", `${s}.orders`, "--schema-changes", "fail", "--json");
    assert.equal(first.code, 0, first.stderr);

    await source.sql(`
      ALTER TABLE ${s}.orders ADD COLUMN extra int DEFAULT 1;
      UPDATE ${s}.orders SET v = 'changed' WHERE id <= 10;
    `);
    const before = await target.sql(`SELECT * FROM ${s}.orders ORDER BY id`);
    const failed = await cli("--table", `${s}.orders`, "--schema-changes", "fail", "--json");
    assert.equal(failed.code, 1);
    const [result] = failed.json;
    assert.equal(result!.status, "error");
    assert.equal(
      result!.error,
      `source table ${s}.orders changed: column "extra" added (integer), existing rows given its default "1"; schemaChanges is fail, so the target was left as it was`,
    );
    assert.deepEqual(result!.schemaChanges, [
      'column "extra" added (integer), existing rows given its default "1"',
    ]);
    assert.deepEqual(await target.sql(`SELECT * FROM ${s}.orders ORDER BY id`), before);

    // Top-level fail, the table's own evolve: the table's key wins.
    const dir = await mkdtemp(join(tmpdir(), "xmin-sync-schema-"));
    try {
      const config = join(dir, "sync.yaml");
      await writeFile(
        config,
        [
          `source: ${source.url()}`,
          `target: ${target.url()}`,
          "schemaChanges: fail",
          "droppedColumns: drop",
          "tables:",
          `  - source: ${s}.orders`,
          "    schemaChanges: evolve",
        ].join("\n"),
      );
      const evolved = await runCli(["sync", "--config", config]);
      assert.equal(evolved.code, 0, evolved.stderr);
      assert.match(
        evolved.stdout,
        /^ok {3}strict\.orders -> strict\.orders: xmin, 10 rows copied, .*; schema: column "extra" added \(integer\), existing rows given its default "1"\n$/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    await converge(way, spec(s, "orders"), ["id"]);
  });

  test("a schema change that needs a resync is not lost when the run stops after it", async () => {
    const way = "14 to 17";
    const { source, target } = servers(way);
    const s = "resumed";
    await source.sql(`
      CREATE SCHEMA ${s};
      CREATE TABLE ${s}.t (id int PRIMARY KEY, d text);
      INSERT INTO ${s}.t SELECT i, repeat('x', i % 7) FROM generate_series(1, 1000) i;
    `);
    const t = spec(s, "t");
    await run(way, t);
    await source.sql(`ALTER TABLE ${s}.t ALTER COLUMN d TYPE integer USING length(d)`);
    // A trigger of the user's on the copy rejects a row: the run fails after the column was rebuilt.
    await target.sql(`
      CREATE FUNCTION ${s}.no_six() RETURNS trigger LANGUAGE plpgsql AS
        $$BEGIN IF NEW.d::text = '6' THEN RAISE EXCEPTION 'no six here'; END IF; RETURN NEW; END$$;
      CREATE TRIGGER no_six BEFORE INSERT OR UPDATE ON ${s}.t FOR EACH ROW EXECUTE FUNCTION ${s}.no_six();
    `);
    const failed = await runOnce(way, t);
    assert.equal(failed.status, "error");
    assert.match(failed.error ?? "", /no six here/);
    await target.sql(`DROP TRIGGER no_six ON ${s}.t`);
    const r = await converge(way, t, ["id"]);
    assert.equal(r.mode, "full");
    assert.match(r.reason ?? "", /column "d" changed type from text to integer/);
  });
});
