import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "./helpers/cli.js";
import { testDatabase, type TestDatabase } from "./helpers/databases.js";
import { assertSameRows } from "./helpers/compare.js";

/**
 * Tables in bulk (README, Tables in bulk), run as a user runs them against
 * real servers: `list`, `init` writing a config that syncs, `--table`
 * patterns with `--exclude`, a config's `include:`/`exclude:`, `--key` bound
 * to the `--table` before it, and a keyless table among keyed ones failing
 * only itself. Source 17 -> target 14.
 */

const lines = (text: string) => text.split("\n").filter((l) => l.trim() !== "");

describe("tables in bulk (source 17 -> target 14)", () => {
  let source: TestDatabase;
  const made: TestDatabase[] = [];
  let dir: string;

  before(async () => {
    source = await testDatabase("17");
    dir = await mkdtemp(join(tmpdir(), "xmin-sync-tables-"));
    await source.sql(`
      CREATE SCHEMA fds;
      CREATE TABLE fds.a (id int PRIMARY KEY, v text);
      INSERT INTO fds.a SELECT i, 'a' || i FROM generate_series(1, 300) i;
      CREATE TABLE fds.b (k1 int, k2 text, v numeric, PRIMARY KEY (k1, k2));
      INSERT INTO fds.b SELECT i, 'x', i FROM generate_series(1, 50) i;
      CREATE TABLE fds.nokey (id int NOT NULL, v text);
      INSERT INTO fds.nokey SELECT i, 'n' || i FROM generate_series(1, 20) i;
      CREATE TABLE fds.tmp_scratch (id int PRIMARY KEY);
      CREATE VIEW fds.v AS SELECT id, v FROM fds.a;
      CREATE TABLE fds.p (id int PRIMARY KEY, at date NOT NULL) PARTITION BY RANGE (id);
      CREATE TABLE fds.p1 PARTITION OF fds.p FOR VALUES FROM (0) TO (100);
      CREATE TABLE fds.p2 PARTITION OF fds.p FOR VALUES FROM (100) TO (200);
      INSERT INTO fds.p SELECT i, date '2026-01-01' + i FROM generate_series(0, 199) i;
      CREATE SCHEMA other;
      CREATE TABLE other.o (id int PRIMARY KEY);
      ANALYZE;
    `);
  });
  after(async () => {
    await Promise.all([source, ...made].map((d) => d?.stop()));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** A new target database (version 14); its URL. */
  const fresh = async () => {
    const d = await testDatabase("14");
    made.push(d);
    return d.url();
  };
  const db = (url: string) => made.find((d) => d.url() === url)!;
  const targets = async (url: string) =>
    (
      await db(url).sql<{ r: string }>(
        `SELECT n.nspname || '.' || c.relname AS r FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'xmin_sync')
          ORDER BY 1`,
      )
    ).map((x) => x.r);
  const sync = (t: string, ...args: string[]) =>
    runCli(["sync", "--source", source.url(), "--target", t, ...args]);

  test("list: the source's tables with rows, size, key, and whether they can be synced", async () => {
    const human = await runCli(["list", "--source", source.url(), "--schema", "fds"]);
    assert.equal(human.code, 0, human.stderr);
    const out = lines(human.stdout);
    assert.match(out[0]!, /^table\s+kind\s+~rows\s+size\s+key\s+sync$/);
    const row = (name: string) => out.find((l) => l.startsWith(`${name} `)) ?? "";
    assert.match(row("fds.a"), /^fds\.a\s+table\s+300\s+\d+(\.\d)? kB\s+id\s+xmin$/);
    assert.match(row("fds.b"), /\s+k1,k2\s+xmin$/);
    assert.match(row("fds.nokey"), /\s+-\s+no primary key or unique index: give key columns$/);
    assert.match(
      row("fds.v"),
      /^fds\.v\s+view\s+\?\s+-\s+-\s+no key, no xmin: give key and cursor$/,
    );
    assert.match(row("fds.p"), /^fds\.p\s+partitioned table\s+200\s/);
    assert.equal(row("fds.p1"), "", "partitions are read through their parent");
    assert.ok(!human.stdout.includes("other.o"), "--schema picks");

    const json = await runCli(["list", "--source", source.url(), "--table", "fds.?", "--json"]);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(
      json.json.map((j) => [j.table, j.kind, j.estimatedRows, j.key, j.xmin, j.ready]),
      [
        ["fds.a", "table", 300, ["id"], true, true],
        ["fds.b", "table", 50, ["k1", "k2"], true, true],
        ["fds.p", "partitioned table", 200, ["id"], true, true],
        ["fds.v", "view", null, null, false, false],
      ],
    );
  });

  test("init writes a commented config that syncs; never over a file without --force", async () => {
    const file = join(dir, "sync.yaml");
    const args = ["init", "--source", source.url(), "--schema", "fds", "--target-schema", "raw"];
    const r = await runCli([...args, "--exclude", "fds.tmp_*", "--out", file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /wrote .*sync\.yaml \(5 tables\)/);
    const text = await readFile(file, "utf8");
    assert.match(text, /^ {2}- source: fds\.a\n {4}target: raw\.a$/m);
    assert.match(
      text,
      /^ {2}# table, ~20 rows.*: no primary key or unique index: give key columns; uncomment/m,
    );
    assert.match(text, /^ {2}# - source: fds\.nokey$/m);
    assert.match(text, /^ {2}# {3}key: \[id\]$/m);
    assert.ok(!text.includes("tmp_scratch"), "--exclude");
    assert.ok(!text.includes(source.url()), "no connection string in the file");

    const t = await fresh();
    const synced = await runCli(["sync", "--config", file, "--json"], {
      env: { SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: t },
    });
    assert.equal(synced.code, 0, synced.stdout + synced.stderr);
    assert.deepEqual(
      synced.json.map((j) => [j.table, j.target, j.status]),
      [
        ["fds.a", "raw.a", "ok"],
        ["fds.b", "raw.b", "ok"],
        ["fds.p", "raw.p", "ok"],
      ],
    );
    await assertSameRows(source, "fds.p", db(t), "raw.p", ["id"]);

    const again = await runCli([...args, "--out", file]);
    assert.equal(again.code, 2);
    assert.equal(again.stderr, `xmin-sync: ${file} exists: pass --force to overwrite it\n`);
    assert.equal(await readFile(file, "utf8"), text, "the file is as it was");
    const forced = await runCli([...args, "--out", file, "--force", "--table", "fds.a"]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.ok(!(await readFile(file, "utf8")).includes("fds.b"));
    const stdout = await runCli([...args, "--table", "fds.b"]);
    assert.equal(stdout.code, 0);
    assert.match(stdout.stdout, /^ {2}- source: fds\.b$/m);
  });

  test("--table patterns with --exclude; a keyless table and a view fail only themselves (exit 2)", async () => {
    const t = await fresh();
    const r = await sync(t, "--table", "fds.*:raw.*", "--exclude", "fds.tmp_*");
    assert.equal(r.code, 2, r.stdout + r.stderr);
    const out = lines(r.stdout);
    assert.deepEqual(
      out.map((l) => l.split(":")[0]),
      [
        "ok   fds.a -> raw.a",
        "ok   fds.b -> raw.b",
        "FAIL fds.nokey -> raw.nokey",
        "ok   fds.p -> raw.p",
        "FAIL fds.v -> raw.v",
      ],
    );
    assert.match(
      out[2]!,
      /: source: has no primary key and no unique index; give its key columns \(--key, or key: \[\.\.\.\] in the config\)/,
    );
    assert.deepEqual(await targets(t), ["raw.a", "raw.b", "raw.p"]);
    await assertSameRows(source, "fds.b", db(t), "raw.b", ["k1", "k2"]);

    // --key after a --table is that table's; the pattern's tables keep their primary keys.
    const keyed = await sync(
      t,
      ...["--table", "fds.*:raw.*", "--exclude", "fds.tmp_*", "--exclude", "fds.v"],
      ...["--table", "fds.nokey:raw.nokey", "--key", "id", "--json"],
    );
    assert.equal(keyed.code, 0, keyed.stdout + keyed.stderr);
    assert.deepEqual(
      keyed.json.map((j) => [j.table, j.mode]),
      [
        ["fds.a", "xmin"],
        ["fds.b", "xmin"],
        ["fds.p", "xmin"],
        ["fds.nokey", "full"],
      ],
    );
    await assertSameRows(source, "fds.nokey", db(t), "raw.nokey", ["id"]);

    // Before any --table, --key is every table's.
    const t2 = await fresh();
    const common = await sync(
      t2,
      "--key",
      "id",
      "--table",
      "fds.nokey",
      "--table",
      "fds.a",
      "--json",
    );
    assert.equal(common.code, 0, common.stdout + common.stderr);
    assert.equal(common.json.length, 2);

    const nothing = await sync(t2, "--table", "fds.zz*");
    assert.equal(nothing.code, 2);
    assert.equal(nothing.stderr, 'xmin-sync: --table: no source table matches "fds.zz*"\n');
    const twice = await sync(t2, "--table", "fds.a", "--key", "id", "--key", "v");
    assert.equal(twice.code, 2);
    assert.match(
      twice.stderr,
      /^xmin-sync: option '--key <columns>' argument 'v' is invalid\. given twice for --table fds\.a\n$/,
    );
  });

  test("a config's include: and exclude:, with a table of its own", async () => {
    const t = await fresh();
    const file = join(dir, "include.yaml");
    await writeFile(
      file,
      `include: ['fds.*:raw.*', 'other.*']
exclude: [fds.tmp_*, fds.v]
tables:
  - source: fds.nokey
    target: raw.nokey
    key: [id]
`,
    );
    const r = await runCli(["sync", "--config", file, "--exclude", "fds.p", "--json"], {
      env: { SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: t },
    });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(
      r.json.map((j) => j.target),
      ["raw.nokey", "raw.a", "raw.b", "other.o"],
    );
    // --table picks among them, by name or pattern.
    const picked = await runCli(["sync", "--config", file, "--table", "raw.?", "--json"], {
      env: { SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: t },
    });
    assert.equal(picked.code, 0, picked.stderr);
    assert.deepEqual(
      picked.json.map((j) => j.target),
      ["raw.a", "raw.b", "raw.p"],
    );
    const flags = await runCli(["sync", "--config", file, "--key", "id"], {
      env: { SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: t },
    });
    assert.equal(flags.code, 2);
    assert.match(
      flags.stderr,
      /^xmin-sync: --key, --mode and --cursor go with --table tables given on the command line/,
    );
  });
});
