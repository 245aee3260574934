import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import pino from "pino";
import { sync, validate, type TableSpec } from "../src/index.js";
import type { Column, SourceTable, UniqueIndex } from "../src/source/catalog.js";
import { resolveKey } from "../src/source/key.js";
import type { TableResult } from "../src/sync/types.js";
import type { ValidationReport } from "../src/validate/run.js";
import type { Cluster } from "./helpers/cluster.js";
import { startBothVersions } from "./helpers/versions.js";
import { assertSameRows } from "./helpers/compare.js";

/**
 * Issue 7, items 4 and 5: what a table is keyed by, and keys that are equal
 * under their type's equality but spelled differently. Each case syncs twice
 * after a change, checks the copy row for row against the source (as text:
 * a respelled key must arrive respelled), and `validate --deep` agrees; then
 * a damaged copy is repaired, and the repair deletes nothing the source has.
 * Sources and targets on 17 and 14 both ways, so MERGE (17) and
 * INSERT … ON CONFLICT (14) both merge by the key's own equality.
 */

const SRC = "src";
const DST = "dst";

interface Pair {
  name: string;
  source: Cluster;
  target: Cluster;
}

const spec = (name: string, extra: Partial<TableSpec> = {}): TableSpec => ({
  source: { schema: "app", name },
  deletes: "hard",
  ...extra,
});

async function run(p: Pair, s: TableSpec, logger?: pino.Logger): Promise<TableResult> {
  const [r] = await sync({
    source: p.source.url(SRC),
    target: p.target.url(DST),
    tables: [s],
    tuning: { workers: 2 },
    ...(logger ? { logger } : {}),
  });
  return r!;
}

/** One run of several tables (one snapshot), each of which must succeed. */
async function runAll(p: Pair, specs: TableSpec[]): Promise<TableResult[]> {
  const results = await sync({
    source: p.source.url(SRC),
    target: p.target.url(DST),
    tables: specs,
    tuning: { workers: 2 },
  });
  for (const r of results) assert.equal(r.status, "ok", `${r.table}: ${r.error}`);
  return results;
}

const runOk = async (p: Pair, s: TableSpec) => (await runAll(p, [s]))[0]!;

async function deepAll(p: Pair, specs: TableSpec[], repair = false): Promise<ValidationReport[]> {
  const reports = await validate({
    source: p.source.url(SRC),
    target: p.target.url(DST),
    tables: specs,
    deep: true,
    repair,
  });
  for (const v of reports) assert.equal(v.status, "ok", `${v.table}: ${v.error}`);
  return reports;
}

const deep = async (p: Pair, s: TableSpec, repair = false) => (await deepAll(p, [s], repair))[0]!;

/** A run refused as bad input (the key or the table cannot serve): its one line. */
async function refused(p: Pair, s: TableSpec): Promise<string> {
  const r = await run(p, s);
  assert.equal(r.status, "error");
  assert.equal(r.badInput, true, r.error);
  return r.error!;
}

const counts = (v: ValidationReport) => [v.deep!.missing, v.deep!.extra, v.deep!.different];

/** The copy equals the source row for row, as text, ordered by key on each side. */
const assertSame = (p: Pair, table: string, key: string[]) =>
  assertSameRows(p.source, table, p.target, table, key, { sourceDb: SRC, targetDb: DST });

/**
 * Two syncs after a change: the first brings it, the second finds nothing
 * left; then each copy equals its source, and deep validation agrees.
 */
async function convergeAll(p: Pair, tables: [TableSpec, string[]][]): Promise<TableResult[]> {
  const specs = tables.map(([s]) => s);
  const first = await runAll(p, specs);
  for (const r of await runAll(p, specs)) {
    assert.equal(r.mode, "xmin");
    assert.equal(r.inserted + r.updated + r.deleted, 0, `${r.table}: a second run finds nothing`);
  }
  for (const [s, key] of tables) await assertSame(p, `app.${s.source.name}`, key);
  for (const v of await deepAll(p, specs)) {
    assert.deepEqual(counts(v), [0, 0, 0], `${v.table}: validate --deep agrees`);
  }
  return first;
}

const converge = async (p: Pair, s: TableSpec, key: string[]) =>
  (await convergeAll(p, [[s, key]]))[0]!;

/** A logger that keeps its lines, to read what a run said. */
function capture(): { logger: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split("\n").filter(Boolean));
      done();
    },
  });
  return { logger: pino({ level: "info" }, stream), lines };
}

describe("key choice, as a value (no database)", () => {
  const col = (name: string, notNull = true): Column => ({
    name,
    attnum: 1,
    hasMissing: false,
    type: "integer",
    notNull,
    generated: false,
    collation: null,
    binarySafe: true,
    integer: true,
    equality: { schema: "pg_catalog", name: "=" },
    hash: { schema: "pg_catalog", name: "hashint4extended" },
  });
  const index = (name: string, columns: string[], over: Partial<UniqueIndex> = {}) => ({
    name,
    primary: false,
    columns,
    shown: columns,
    unusable: null,
    ...over,
  });
  const leaf = (oid: string) => ({
    name: { schema: "app", name: `t${oid}` },
    oid,
    relkind: "r",
    relfilenode: oid,
    bytes: 0,
    pages: 0,
    estimatedRows: 0,
    canSelect: true,
  });
  const table = (indexes: UniqueIndex[], leaves = [leaf("1")]): SourceTable => ({
    name: { schema: "app", name: "t" },
    oid: "1",
    relkind: "r",
    columns: [col("a"), col("b"), col("c"), col("n", false)],
    uniqueIndexes: indexes,
    userTypes: [],
    collations: [],
    leaves,
    bytes: 0,
    estimatedRows: 0,
  });
  const source = { schema: "app", name: "t" };
  const names = (k: { columns: { name: string }[] }) => k.columns.map((c) => c.name);

  test("the primary key first; else the usable unique index with the fewest columns, then by name", () => {
    const pk = index("t_pkey", ["a", "b"], { primary: true });
    assert.deepEqual(names(resolveKey(table([index("t_c", ["c"]), pk]), { source })), ["a", "b"]);
    const k = resolveKey(
      table([index("z_c", ["c"]), index("t_ab", ["a", "b"]), index("m_b", ["b"])]),
      { source },
    );
    assert.deepEqual([names(k), k.from, k.index, k.enforced], [["b"], "unique index", "m_b", true]);
  });

  test("a given key is enforced only when a usable unique index lies within it and it is NOT NULL", () => {
    const t = table([index("t_a", ["a"])]);
    assert.equal(resolveKey(t, { source, key: ["a", "b"] }).enforced, true);
    assert.equal(resolveKey(t, { source, key: ["b"] }).enforced, false);
    assert.equal(resolveKey(t, { source, key: ["a", "n"] }).enforced, false, "n allows NULL");
    const tree = table([index("t_a", ["a"])], [leaf("1"), leaf("2")]);
    assert.equal(resolveKey(tree, { source }).enforced, false, "an inheritance tree");
  });

  test("no usable index: refused, naming each", () => {
    const t = table([index("t_n", ["n"], { unusable: "allows NULL in n" })]);
    assert.throws(() => resolveKey(t, { source }), {
      message:
        "source table app.t has no primary key, and no unique index can serve as its key (t_n (n) allows NULL in n); give its key columns (--key, or key: [...] in the config)",
    });
  });
});

describe("keys", () => {
  let v17: Cluster;
  let v14: Cluster;
  let pairs: Pair[];

  before(async () => {
    ({ v17, v14 } = await startBothVersions([SRC, DST]));
    for (const c of [v17, v14]) {
      // citext is an extension type: the target must have it (and gets everything else).
      await c.sql("CREATE EXTENSION citext", [], DST);
      await c.sql(
        `CREATE EXTENSION citext;
         CREATE SCHEMA app;
         CREATE COLLATION app.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);`,
        [],
        SRC,
      );
    }
    pairs = [
      { name: "17 to 14", source: v17, target: v14 },
      { name: "14 to 17", source: v14, target: v17 },
    ];
  });
  after(async () => {
    await Promise.all([v17?.stop(), v14?.stop()]);
  });

  describe("keys equal under their type but spelled differently", () => {
    const TABLES = `
      CREATE TABLE app.num (k numeric PRIMARY KEY, v text);
      INSERT INTO app.num VALUES (1.0, 'one'), (2, 'two'), (3.50, 'three'), (4, 'four');
      CREATE TABLE app.icu (k text COLLATE app.ci PRIMARY KEY, v text);
      INSERT INTO app.icu VALUES ('Abc', 'a'), ('déjà vu', 'd'), ('x', 'x'), ('y', 'y');
      CREATE TABLE app.cit (k citext PRIMARY KEY, v text);
      INSERT INTO app.cit VALUES ('abc', 'a'), ('Xyz', 'x'), ('q', 'q'), ('r', 'r');
      CREATE TABLE app.comp (a numeric, b citext, v text, PRIMARY KEY (a, b));
      INSERT INTO app.comp VALUES (1.0, 'abc', 'a'), (2, 'Def', 'd'), (3, 'z', 'z');
    `;
    /** Each key respelled, one row deleted and one inserted. */
    const RESPELL = `
      UPDATE app.num SET k = 1.00 WHERE k = 1;
      UPDATE app.num SET k = 3.5, v = 'three, shorter' WHERE k = 3.50;
      DELETE FROM app.num WHERE k = 4; INSERT INTO app.num VALUES (5.000, 'five');
      UPDATE app.icu SET k = 'ABC' WHERE k = 'abc';
      UPDATE app.icu SET k = 'DÉJÀ VU' WHERE k = 'déjà vu';
      DELETE FROM app.icu WHERE k = 'y'; INSERT INTO app.icu VALUES ('New', 'n');
      UPDATE app.cit SET k = 'ABC' WHERE k = 'abc';
      UPDATE app.cit SET k = 'xyz', v = 'lower now' WHERE k = 'XYZ';
      DELETE FROM app.cit WHERE k = 'r'; INSERT INTO app.cit VALUES ('New', 'n');
      UPDATE app.comp SET a = 1.000, b = 'ABC' WHERE a = 1 AND b = 'abc';
      UPDATE app.comp SET b = 'DEF' WHERE a = 2;
      DELETE FROM app.comp WHERE a = 3;
    `;
    const tables: [string, string[]][] = [
      ["num", ["k"]],
      ["icu", ["k"]],
      ["cit", ["k"]],
      ["comp", ["a", "b"]],
    ];

    for (const direction of ["17 to 14", "14 to 17"]) {
      test(`${direction}: a respelled key arrives respelled, and a repair puts it back without deleting it`, async () => {
        const p = pairs.find((x) => x.name === direction)!;
        const all = tables.map(([t, key]): [TableSpec, string[]] => [spec(t), key]);
        await p.source.sql(TABLES, [], SRC);
        await runAll(
          p,
          all.map(([s]) => s),
        );
        await p.source.sql(RESPELL, [], SRC);
        for (const r of await convergeAll(p, all)) {
          assert.ok(r.updated >= 2, `${r.table}: the respelled rows are updated`);
          assert.equal(r.deleted, 1, `${r.table}: only the deleted row goes`);
        }
        const [num] = await p.target.sql<{ k: string }>(
          "SELECT k::text FROM app.num WHERE v = 'one'",
          [],
          DST,
        );
        assert.equal(num!.k, "1.00", "the target keeps the source's spelling");

        // Damage the copy: keys spelled the old way, a row gone, a row the source never had.
        await p.target.sql(
          `UPDATE app.num SET k = 1.0 WHERE k = 1; DELETE FROM app.num WHERE k = 2;
           INSERT INTO app.num VALUES (99, 'stray', 1);
           UPDATE app.icu SET k = 'abc' WHERE k = 'abc';
           UPDATE app.cit SET k = 'abc' WHERE k = 'abc';
           UPDATE app.comp SET a = 1, b = 'abc' WHERE a = 1;`,
          [],
          DST,
        );
        const specs = all.map(([s]) => s);
        const [numReport, ...others] = await deepAll(p, specs);
        assert.deepEqual(
          counts(numReport!),
          [1, 1, 1],
          "respelled: different, not missing + extra",
        );
        assert.deepEqual(numReport!.deep!.samples.extra, [["99"]]);
        for (const v of others) assert.deepEqual(counts(v), [0, 0, 1], v.table);
        for (const fixed of await deepAll(p, specs, true)) {
          const stray = fixed.table === "app.num" ? 1 : 0;
          assert.equal(fixed.repaired!.deleted, stray, `${fixed.table}: only the stray row`);
        }
        for (const [s, key] of all) await assertSame(p, `app.${s.source.name}`, key);
        for (const v of await deepAll(p, specs)) {
          assert.deepEqual(counts(v), [0, 0, 0], `${v.table} after repair`);
        }
        // A later sync agrees there is nothing left to do.
        for (const again of await runAll(p, specs)) {
          assert.equal(again.inserted + again.updated + again.deleted, 0, again.table);
        }
      });
    }

    test("a collation that exists on the target with other equality is refused, naming it", async () => {
      const p = pairs[0]!;
      await p.source.sql(
        `CREATE COLLATION app.ci2 (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
         CREATE TABLE app.ci2_t (k text COLLATE app.ci2 PRIMARY KEY);
         INSERT INTO app.ci2_t VALUES ('a');`,
        [],
        SRC,
      );
      await p.target.sql(
        `CREATE SCHEMA IF NOT EXISTS app;
         CREATE COLLATION app.ci2 (provider = icu, locale = 'und-u-ks-level2');`,
        [],
        DST,
      );
      const r = await run(p, spec("ci2_t"));
      assert.equal(r.status, "error");
      assert.match(
        r.error!,
        /^collation app\.ci2 is nondeterministic on the source but deterministic on the target/,
      );
    });
  });

  describe("tables without a primary key", () => {
    const p = () => pairs[0]!;

    test("a unique index on NOT NULL columns keys the table (the same one every time), and the logs say which", async () => {
      await p().source.sql(
        `CREATE TABLE app.nopk (id int, code text NOT NULL, region text NOT NULL, seq int NOT NULL, v text);
         CREATE UNIQUE INDEX nopk_id ON app.nopk (id);
         CREATE UNIQUE INDEX nopk_z_region_seq ON app.nopk (region, seq);
         CREATE UNIQUE INDEX nopk_code ON app.nopk (code);
         INSERT INTO app.nopk SELECT i, 'c' || i, 'eu', i, 'v' || i FROM generate_series(1, 200) i;`,
        [],
        SRC,
      );
      const { logger, lines } = capture();
      const first = await run(p(), spec("nopk"), logger);
      assert.equal(first.status, "ok", first.error);
      assert.ok(
        lines.some((l) => l.includes("no primary key: keyed by unique index nopk_code")),
        "fewest columns, NOT NULL: nopk_code",
      );
      const [pk] = await p().target.sql<{ def: string }>(
        "SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = 'app.nopk'::regclass AND contype = 'p'",
        [],
        DST,
      );
      assert.equal(pk!.def, "PRIMARY KEY (code)");
      await p().source.sql(
        `UPDATE app.nopk SET v = 'changed' WHERE id <= 10;
         UPDATE app.nopk SET code = 'renamed' WHERE id = 11;
         DELETE FROM app.nopk WHERE id BETWEEN 20 AND 24;
         INSERT INTO app.nopk VALUES (NULL, 'no id', 'us', 1, 'new');`,
        [],
        SRC,
      );
      const r = await converge(p(), spec("nopk"), ["code"]);
      assert.deepEqual([r.inserted, r.updated, r.deleted], [2, 10, 6]);

      await p().target.sql(
        "DELETE FROM app.nopk WHERE code = 'c5'; UPDATE app.nopk SET v = 'wrong' WHERE code = 'c6'",
        [],
        DST,
      );
      const fixed = await deep(p(), spec("nopk"), true);
      assert.deepEqual(fixed.repaired, { copied: 2, deleted: 0 });
      await assertSame(p(), "app.nopk", ["code"]);
    });

    test("without a usable unique index, the refusal names each candidate and why it cannot serve", async () => {
      await p().source.sql(
        `CREATE TABLE app.nokey (a int, b int NOT NULL, v text);
         CREATE UNIQUE INDEX nokey_a ON app.nokey (a);
         CREATE UNIQUE INDEX nokey_b_positive ON app.nokey (b) WHERE b > 0;
         CREATE UNIQUE INDEX nokey_lower_v ON app.nokey (lower(v));
         CREATE TABLE app.bare (a int, v text);`,
        [],
        SRC,
      );
      assert.equal(
        await refused(p(), spec("nokey")),
        "source table app.nokey has no primary key, and no unique index can serve as its key " +
          "(nokey_a (a) allows NULL in a; nokey_b_positive (b) has a WHERE clause; " +
          "nokey_lower_v (lower(v)) is on an expression); give its key columns (--key, or key: [...] in the config)",
      );
      assert.equal(
        await refused(p(), spec("bare")),
        "source table app.bare has no primary key and no unique index; give its key columns (--key, or key: [...] in the config)",
      );
      const tables = await p().target.sql(
        "SELECT 1 FROM pg_class WHERE relname IN ('nokey', 'bare')",
        [],
        DST,
      );
      assert.equal(tables.length, 0, "nothing created on the target");
    });

    test("a given key with duplicates or NULLs at a first load is refused with their count; nothing is created", async () => {
      await p().source.sql(
        `CREATE TABLE app.dups (a int, b text, v text);
         INSERT INTO app.dups VALUES (1, 'x', 'one'), (1, 'x', 'one again'), (1, 'x', 'thrice'),
           (2, 'y', 'two'), (2, 'y', 'two again'), (3, NULL, 'null b'), (4, 'z', 'fine');`,
        [],
        SRC,
      );
      assert.equal(
        await refused(p(), spec("dups", { key: ["a", "b"] })),
        "source table app.dups: its key (a, b) is not unique and NOT NULL there: 2 values are held by more than one row (5 rows), " +
          "and 1 row has a NULL in it; merged by that key, rows would collapse or be lost, so nothing was committed; " +
          "give key columns whose values are unique and NOT NULL (--key, or key: [...] in the config)",
      );
      const t = await p().target.sql("SELECT to_regclass('app.dups') AS t", [], DST);
      assert.equal(t[0]!.t, null, "no table on the target");
    });

    test("a duplicate or NULL key arriving incrementally is refused, the copy left as it was", async () => {
      await p().source.sql(
        `CREATE TABLE app.incr (a int, v text);
         INSERT INTO app.incr SELECT i, 'v' || i FROM generate_series(1, 100) i;
         CREATE TABLE app.incr_hard (a int, v text);
         INSERT INTO app.incr_hard SELECT i, 'v' || i FROM generate_series(1, 100) i;`,
        [],
        SRC,
      );
      // Deletes ignored: the new row is looked up among the source's rows;
      // hard: the source's key set (copied for deletes) shows it.
      for (const s of [
        spec("incr", { key: ["a"], deletes: "ignore" }),
        spec("incr_hard", { key: ["a"] }),
      ]) {
        const name = `app.${s.source.name}`;
        await runOk(p(), s);
        await p().source.sql(`INSERT INTO ${name} VALUES (7, 'a second seven')`, [], SRC);
        assert.match(
          await refused(p(), s),
          /its key \(a\) is not unique and NOT NULL there: 1 value is held by 2 rows;/,
        );
        const [kept] = await p().target.sql<{ v: string; n: string }>(
          `SELECT count(*) AS n, min(v) FILTER (WHERE a = 7) AS v FROM ${name}`,
          [],
          DST,
        );
        assert.deepEqual(kept, { n: "100", v: "v7" }, "the copy is as it was");

        await p().source.sql(
          `DELETE FROM ${name} WHERE v = 'a second seven'; INSERT INTO ${name} VALUES (NULL, 'no key')`,
          [],
          SRC,
        );
        assert.match(
          await refused(p(), s),
          /its key \(a\) is not unique and NOT NULL there: 1 row has a NULL in it;/,
        );

        // Fixed on the source, the next runs converge.
        await p().source.sql(`UPDATE ${name} SET a = 101 WHERE a IS NULL`, [], SRC);
        await converge(p(), s, ["a"]);
      }
    });

    test("an empty target table is not filled part by part under a key the source does not enforce", async () => {
      await p().source.sql(
        `CREATE TABLE app.into_empty (a int, v text);
         INSERT INTO app.into_empty SELECT i % 50, 'v' || i FROM generate_series(1, 100) i;`,
        [],
        SRC,
      );
      await p().target.sql(
        "CREATE SCHEMA IF NOT EXISTS app; CREATE TABLE app.into_empty (a int PRIMARY KEY, v text)",
        [],
        DST,
      );
      assert.match(
        await refused(p(), spec("into_empty", { key: ["a"] })),
        /50 values are held by more than one row \(100 rows\)/,
      );
      const [n] = await p().target.sql("SELECT count(*)::int AS n FROM app.into_empty", [], DST);
      assert.equal(n!.n, 0, "still empty");
    });

    test("an inheritance parent's primary key does not cover its children: a duplicate across them is refused", async () => {
      await p().source.sql(
        `CREATE TABLE app.parent (id int PRIMARY KEY, v text);
         CREATE TABLE app.child (PRIMARY KEY (id)) INHERITS (app.parent);
         INSERT INTO app.parent VALUES (1, 'parent row'), (2, 'parent row');
         INSERT INTO app.child VALUES (3, 'child row');`,
        [],
        SRC,
      );
      await runOk(p(), spec("parent"));
      await p().source.sql(
        "INSERT INTO app.child VALUES (1, 'child with the parent''s id')",
        [],
        SRC,
      );
      assert.match(
        await refused(p(), spec("parent")),
        /its key \(id\) is not unique and NOT NULL there: 1 value is held by 2 rows/,
      );
      await p().source.sql("UPDATE app.child SET id = 4 WHERE id = 1", [], SRC);
      await converge(p(), spec("parent"), ["id"]);
    });
  });
});
