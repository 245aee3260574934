import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli, type CliResult } from "./helpers/cli.js";
import { startCluster, type Cluster } from "./helpers/cluster.js";
import { tableText } from "./helpers/compare.js";

/**
 * The CLI contract (README "Commands"), run as a user runs it (the built CLI in a
 * child process) against real servers: conventional flags and help, exit
 * codes, --json results, env defaults, config files, and errors that are one
 * clear line, leave the target as it was and show a stack only with --debug.
 * Source 17, target 14: the target has no MERGE (ON CONFLICT path).
 */

const STACK = /\n\s+at .+:\d+/;

/** Lines of text output, without the empty last one. */
const lines = (text: string) => text.split("\n").filter((l) => l.trim() !== "");

/** An error the contract allows: non-zero, exactly one line on stderr, no stack. */
function assertOneLineError(r: CliResult, code: number, pattern: RegExp): string {
  assert.equal(r.code, code, `exit code; stderr: ${r.stderr}`);
  const err = lines(r.stderr);
  assert.equal(err.length, 1, `one line on stderr, got: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, STACK, "no stack trace without --debug");
  assert.match(err[0]!, /^xmin-sync: /);
  assert.match(err[0]!, pattern);
  return err[0]!;
}

describe("CLI contract (source 17 -> target 14)", () => {
  let source: Cluster;
  let target: Cluster;
  let dir: string;
  let closedPort: number;
  let databases = 0;

  before(async () => {
    [source, target] = await Promise.all([
      startCluster({ version: "17" }),
      startCluster({ version: "14" }),
    ]);
    dir = await mkdtemp(join(tmpdir(), "xmin-sync-cli-"));
    // Port 1: privileged, so no test server (they run as postgres) can take
    // it in the meantime, unlike a port that was merely free a moment ago.
    closedPort = 1;
    await source.sql(`
      CREATE SCHEMA fds;
      CREATE TABLE fds.ticker (fsym_id text PRIMARY KEY, exchange text NOT NULL, price numeric(12,4));
      INSERT INTO fds.ticker SELECT 'F' || i, 'NYS', i FROM generate_series(1, 200) i;
      CREATE TABLE fds.exchange (code char(3) PRIMARY KEY, name text);
      INSERT INTO fds.exchange VALUES ('NYS', 'New York'), ('LON', 'London');
      CREATE TABLE fds.nokey (id int NOT NULL, v text);
      INSERT INTO fds.nokey SELECT i, 'v' || i FROM generate_series(1, 10) i;
      CREATE SCHEMA "My Schema";
      CREATE TABLE "My Schema"."Odd ""Table""-1" (id int PRIMARY KEY, "Value" text, "Mixed Case" int);
      INSERT INTO "My Schema"."Odd ""Table""-1" SELECT i, 'x' || i, i * 10 FROM generate_series(1, 5) i;
    `);
  });
  after(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** A fresh, empty target database, to show a failed run leaves it as it was. */
  const freshTarget = async () => {
    const name = `t${++databases}`;
    return { name, url: await target.createDatabase(name) };
  };
  /** Every schema and relation in a target database, except the system's. */
  const shape = async (database: string) =>
    (
      await target.sql<{ r: string }>(
        `SELECT n.nspname || '.' || coalesce(c.relname, '') AS r
           FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid
          WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
          ORDER BY 1`,
        [],
        database,
      )
    ).map((x) => x.r);
  const EMPTY = ["public."];

  const sync = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(["sync", ...args], { env });

  test("--help on every command exits 0", async () => {
    for (const args of [
      ["--help"],
      ["sync", "--help"],
      ["status", "--help"],
      ["demo", "--help"],
      ["help", "sync"],
    ]) {
      const r = await runCli(args);
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stdout, /^Usage: xmin-sync/, args.join(" "));
    }
    const sync = await runCli(["sync", "--help"]);
    for (const flag of ["--source", "--target", "--table", "--config", "--json", "--full"]) {
      assert.ok(sync.stdout.includes(flag), `sync --help mentions ${flag}`);
    }
    const version = await runCli(["--version"]);
    assert.equal(version.code, 0);
    assert.match(version.stdout, /^\d+\.\d+\.\d+/);
  });

  test("usage mistakes: exit 2, one line, no stack", async () => {
    assertOneLineError(await sync(["--tabel", "x"]), 2, /unknown option '--tabel'/);
    assertOneLineError(await runCli(["frobnicate"]), 2, /unknown command 'frobnicate'/);
    assertOneLineError(
      await sync(["--mode", "sideways", "--table", "t"]),
      2,
      /--mode.*sideways|sideways.*--mode/,
    );
    assertOneLineError(
      await sync(["--source", source.url(), "--target", target.url()]),
      2,
      /no tables given/,
    );
    assertOneLineError(
      await sync(["--target", target.url(), "--table", "t"]),
      2,
      /no source database.*SOURCE_DATABASE_URL/,
    );
    assertOneLineError(
      await sync(["--source", source.url(), "--target", target.url(), "--table", "a.b.c"]),
      2,
      /--table: too many dots/,
    );
    assertOneLineError(
      await sync([
        "--source",
        source.url(),
        "--target",
        target.url(),
        "--table",
        "fds.ticker:raw.x",
        "--table",
        "fds.exchange:raw.x",
      ]),
      2,
      /raw\.x is named twice/,
    );
  });

  test("a missing source table: one clear line naming it once, exit 2, target untouched", async () => {
    const t = await freshTarget();
    const r = await sync([
      "--source",
      source.url(),
      "--target",
      t.url,
      "--table",
      "fds.nope:raw_data.nope",
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.doesNotMatch(r.stdout + r.stderr, STACK);
    const out = lines(r.stdout);
    assert.equal(out.length, 1, r.stdout);
    assert.match(out[0]!, /^FAIL fds\.nope -> raw_data\.nope: source: no such table \(0\.0s\)$/);
    assert.deepEqual(await shape(t.name), EMPTY, "no schema, table or state row created");

    const json = await sync([
      "--source",
      source.url(),
      "--target",
      t.url,
      "--table",
      "fds.nope",
      "--json",
    ]);
    assert.equal(json.code, 2);
    assert.equal(json.json.length, 1);
    assert.equal(json.json[0]!.status, "error");
    assert.equal(json.json[0]!.badInput, true);
    assert.equal(json.json[0]!.error, "source: no such table");
    assert.deepEqual(await shape(t.name), EMPTY);
  });

  test("a table without a primary key is refused clearly; --key makes it work", async () => {
    const t = await freshTarget();
    const refused = await sync([
      "--source",
      source.url(),
      "--target",
      t.url,
      "--table",
      "fds.nokey",
    ]);
    assert.equal(refused.code, 2, refused.stderr);
    assert.doesNotMatch(refused.stdout + refused.stderr, STACK);
    assert.match(
      refused.stdout,
      /^FAIL fds\.nokey -> fds\.nokey: source: has no primary key.*--key/m,
    );
    assert.deepEqual(await shape(t.name), EMPTY);

    const badKey = await sync([
      "--source",
      source.url(),
      "--target",
      t.url,
      "--table",
      "fds.nokey",
      "--key",
      "nope",
    ]);
    assert.equal(badKey.code, 2);
    assert.match(
      badKey.stdout,
      /^FAIL fds\.nokey -> fds\.nokey: key column "nope" is not a column of fds\.nokey/,
    );
    assert.deepEqual(await shape(t.name), EMPTY);

    const ok = await sync([
      "--source",
      source.url(),
      "--target",
      t.url,
      "--table",
      "fds.nokey",
      "--key",
      "id",
      "--json",
    ]);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.equal(ok.json[0]!.status, "ok");
    assert.equal(ok.json[0]!.rowsCopied, 10);
    const pk = await target.sql<{ def: string }>(
      `SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint
        WHERE conrelid = 'fds.nokey'::regclass AND contype = 'p'`,
      [],
      t.name,
    );
    assert.deepEqual(
      pk.map((p) => p.def),
      ["PRIMARY KEY (id)"],
    );
  });

  test("unreachable source or target: one line naming the side, password hidden", async () => {
    const t = await freshTarget();
    const closed = `postgres://postgres:s3cret-pw@127.0.0.1:${closedPort}/postgres`;
    const src = await sync(["--source", closed, "--target", t.url, "--table", "fds.ticker"]);
    const srcLine = assertOneLineError(src, 1, /cannot connect to source /);
    assert.ok(!srcLine.includes("s3cret-pw"), srcLine);
    assert.ok(
      srcLine.includes(`postgres://postgres:***@127.0.0.1:${closedPort}/postgres`),
      srcLine,
    );
    assert.deepEqual(await shape(t.name), EMPTY, "the target is left as it was");

    const dst = await sync(["--source", source.url(), "--target", closed, "--table", "fds.ticker"]);
    const dstLine = assertOneLineError(dst, 1, /cannot connect to target /);
    assert.ok(!dstLine.includes("s3cret-pw"), dstLine);
    assert.ok(dstLine.includes(":***@"), dstLine);

    const query = await sync([
      "--source",
      `postgres://postgres@127.0.0.1:${closedPort}/postgres?password=s3cret-pw`,
      "--target",
      t.url,
      "--table",
      "fds.ticker",
    ]);
    const queryLine = assertOneLineError(query, 1, /cannot connect to source /);
    assert.ok(!queryLine.includes("s3cret-pw"), queryLine);
  });

  test("--debug shows a stack trace", async () => {
    const closed = `postgres://postgres@127.0.0.1:${closedPort}/postgres`;
    const r = await sync(["--source", closed, "--target", target.url(), "--table", "t", "--debug"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, STACK);
    assert.match(r.stderr, /cannot connect to source/);

    const input = await sync(["--table", "a.b.c", "--debug"]);
    assert.equal(input.code, 2);
    assert.match(input.stderr, STACK);

    // A table refused before the run is in its result, and in the debug log.
    const table = await sync([
      "--source",
      source.url(),
      "--target",
      target.url(),
      "--table",
      "fds.nope",
      "--debug",
    ]);
    assert.equal(table.code, 2);
    assert.match(table.stderr, /"table":"fds\.nope","err":"source: no such table"/);
  });

  test("a bad config file: exit 2 with file:line", async () => {
    const file = join(dir, "bad.yaml");
    await writeFile(file, `source: ${source.url()}\nworkers: "four"\ntables:\n  - source: t\n`);
    assertOneLineError(
      await sync(["--config", file]),
      2,
      new RegExp(`^xmin-sync: ${file.replaceAll(".", "\\.")}:2: workers: `),
    );
    await writeFile(file, "tables:\n  - source: t\n    mode: sometimes\n");
    assertOneLineError(await sync(["--config", file]), 2, /bad\.yaml:3: tables\.0\.mode: /);
    await writeFile(file, "tables:\n  - source: t\n   target: [x\n");
    assertOneLineError(await sync(["--config", file]), 2, /bad\.yaml:3: invalid YAML/);
    assertOneLineError(
      await sync(["--config", join(dir, "missing.yaml")]),
      2,
      /cannot read config .*missing\.yaml/,
    );
  });

  test("--json: one object per table with the documented fields; exit 2 when one was refused", async () => {
    const t = await freshTarget();
    const r = await sync([
      "--source",
      source.url(),
      "--target",
      t.url,
      "--table",
      "fds.ticker:raw_data.ticker",
      "--table",
      "fds.missing:raw_data.missing",
      "--table",
      "fds.exchange:raw_data.exchange",
      "--json",
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(lines(r.stdout).length, 3, "stdout carries only the results");
    assert.equal(r.json.length, 3);
    const [ticker, missing, exchange] = r.json;
    for (const [res, table, target, rows] of [
      [ticker, "fds.ticker", "raw_data.ticker", 200],
      [exchange, "fds.exchange", "raw_data.exchange", 2],
    ] as const) {
      assert.equal(res!.table, table);
      assert.equal(res!.target, target);
      assert.equal(res!.mode, "full");
      assert.equal(res!.status, "ok");
      assert.equal(res!.rowsCopied, rows);
      assert.equal(res!.inserted, rows);
      assert.equal(res!.updated, 0);
      assert.equal(res!.deleted, 0);
      assert.equal(typeof res!.watermark, "string");
      assert.match(res!.watermark as string, /^[1-9]\d*$/);
      assert.equal(typeof res!.durationMs, "number");
      assert.ok((res!.durationMs as number) >= 0);
      assert.equal(res!.error, undefined);
    }
    assert.equal(ticker!.watermark, exchange!.watermark, "one snapshot per run");
    assert.equal(missing!.table, "fds.missing");
    assert.equal(missing!.target, "raw_data.missing");
    assert.equal(missing!.status, "error");
    assert.equal(missing!.error, "source: no such table");
    for (const k of ["mode", "rowsCopied", "inserted", "updated", "deleted", "durationMs"]) {
      assert.ok(k in missing!, `error result has ${k}`);
    }
    const cols = ["fsym_id", "exchange", "price"];
    assert.deepEqual(
      await tableText(target, t.name, "raw_data.ticker", cols, ["fsym_id"]),
      await tableText(source, "postgres", "fds.ticker", cols, ["fsym_id"]),
    );
    assert.equal(
      (await target.sql("SELECT 1 FROM xmin_sync.state", [], t.name)).length,
      2,
      "state rows for the two synced tables only",
    );

    // Incremental: an update arrives, with updated = 1 and the watermark moving forward.
    await source.sql("UPDATE fds.ticker SET price = -1 WHERE fsym_id = 'F7'");
    const again = await sync([
      "--source",
      source.url(),
      "--target",
      t.url,
      "--table",
      "fds.ticker:raw_data.ticker",
      "--json",
    ]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.json[0]!.mode, "xmin");
    assert.equal(again.json[0]!.updated, 1);
    assert.equal(again.json[0]!.inserted, 0);
    assert.ok(BigInt(again.json[0]!.watermark as string) > BigInt(ticker!.watermark as string));
  });

  test("SOURCE_DATABASE_URL and TARGET_DATABASE_URL are the defaults", async () => {
    const t = await freshTarget();
    const r = await sync(["--table", "fds.exchange", "--json"], {
      SOURCE_DATABASE_URL: source.url(),
      TARGET_DATABASE_URL: t.url,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json[0]!.status, "ok");
    assert.equal(r.json[0]!.rowsCopied, 2);
    const rows = await target.sql("SELECT * FROM fds.exchange", [], t.name);
    assert.equal(rows.length, 2);
    // Flags win over the environment.
    const wrong = `postgres://postgres@127.0.0.1:${closedPort}/postgres`;
    const flags = await sync(["--table", "fds.exchange", "--target", t.url], {
      SOURCE_DATABASE_URL: source.url(),
      TARGET_DATABASE_URL: wrong,
    });
    assert.equal(flags.code, 0, flags.stderr);
  });

  test("--config with two tables, and --table picking one of them", async () => {
    const t = await freshTarget();
    const file = join(dir, "two.yaml");
    await writeFile(
      file,
      `source: \${SRC_URL}
target: \${DST_URL}
tables:
  - source: fds.ticker
    target: raw_data.ticker
  - source: fds.exchange
    target: raw_data.exchange
`,
    );
    const env = { SRC_URL: source.url(), DST_URL: t.url };
    const one = await sync(["--config", file, "--table", "raw_data.exchange", "--json"], env);
    assert.equal(one.code, 0, one.stderr);
    assert.deepEqual(
      one.json.map((j) => [j.table, j.target, j.status]),
      [["fds.exchange", "raw_data.exchange", "ok"]],
    );
    const created = await shape(t.name);
    assert.ok(created.includes("raw_data.exchange"), created.join(", "));
    assert.ok(!created.includes("raw_data.ticker"), "the other table is not synced");

    const bySource = await sync(["--config", file, "--table", "fds.ticker", "--json"], env);
    assert.equal(bySource.code, 0, bySource.stderr);
    assert.deepEqual(
      bySource.json.map((j) => j.table),
      ["fds.ticker"],
    );

    const all = await sync(["--config", file, "--json"], env);
    assert.equal(all.code, 0, all.stderr);
    assert.deepEqual(
      all.json.map((j) => [j.table, j.mode]),
      [
        ["fds.ticker", "xmin"],
        ["fds.exchange", "xmin"],
      ],
    );

    assertOneLineError(
      await sync(["--config", file, "--table", "fds.nope"], env),
      2,
      /table fds\.nope is not in the config/,
    );
  });

  test("a quoted mixed-case name with a space, a quote and a dash, to another name", async () => {
    const t = await freshTarget();
    const mapping = '"My Schema"."Odd ""Table""-1":"Raw Data"."odd ""copy"""';
    const args = ["--source", source.url(), "--target", t.url, "--table", mapping, "--json"];
    const first = await sync(args);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    assert.equal(first.json[0]!.table, '"My Schema"."Odd ""Table""-1"');
    assert.equal(first.json[0]!.target, '"Raw Data"."odd ""copy"""');
    assert.equal(first.json[0]!.rowsCopied, 5);
    const cols = ["id", '"Value"', '"Mixed Case"'];
    const src = () => tableText(source, "postgres", '"My Schema"."Odd ""Table""-1"', cols, ["id"]);
    const dst = () => tableText(target, t.name, '"Raw Data"."odd ""copy"""', cols, ["id"]);
    assert.deepEqual(await dst(), await src());

    await source.sql(`UPDATE "My Schema"."Odd ""Table""-1" SET "Value" = 'changed' WHERE id = 3;
                      INSERT INTO "My Schema"."Odd ""Table""-1" VALUES (6, 'six', 60)`);
    const second = await sync(args);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.json[0]!.mode, "xmin");
    assert.equal(second.json[0]!.inserted, 1);
    assert.equal(second.json[0]!.updated, 1);
    assert.deepEqual(await dst(), await src());

    // The human output names both tables as a user would type them.
    const human = await sync(args.slice(0, -1));
    assert.equal(human.code, 0);
    assert.match(
      human.stdout,
      /^ok {3}"My Schema"\."Odd ""Table""-1" -> "Raw Data"\."odd ""copy""": xmin/,
    );
  });

  test("status lists synced tables", async () => {
    const t = await freshTarget();
    const empty = await runCli(["status", "--target", t.url]);
    assert.equal(empty.code, 0, empty.stderr);
    assert.match(empty.stdout, /no tables synced/);
    assert.deepEqual(await shape(t.name), EMPTY, "status writes nothing");

    const r = await sync([
      "--source",
      source.url(),
      "--target",
      t.url,
      "--table",
      "fds.ticker:raw_data.ticker",
      "--table",
      "fds.exchange",
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const watermark = r.json[0]!.watermark;

    const json = await runCli(["status", "--json"], { env: { TARGET_DATABASE_URL: t.url } });
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(
      json.json.map((j) => [j.target, j.source, j.mode, j.watermark, j.runs]),
      [
        ["fds.exchange", "fds.exchange", "full", watermark, 1],
        ["raw_data.ticker", "fds.ticker", "full", watermark, 1],
      ],
    );
    for (const j of json.json) assert.ok(!Number.isNaN(Date.parse(j.lastRunAt as string)));

    const human = await runCli(["status", "--target", t.url]);
    assert.equal(human.code, 0);
    assert.match(
      human.stdout,
      /^raw_data\.ticker <- fds\.ticker: full, ~200 rows, watermark \d+, last run \d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d \((\d+s|\d+ min) ago: 200 copied, 200 inserted, 0 updated, 0 deleted\), 1 run$/m,
    );
    assert.match(human.stdout, /^fds\.exchange <- fds\.exchange: /m);

    const closed = `postgres://postgres:s3cret-pw@127.0.0.1:${closedPort}/postgres`;
    const down = await runCli(["status", "--target", closed]);
    const line = assertOneLineError(down, 1, /cannot connect to target /);
    assert.ok(!line.includes("s3cret-pw"));
  });
});
