import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { sync, validate } from "../src/index.js";
import { testDatabase, type TestDatabase } from "./helpers/databases.js";
import { assertSameRows } from "./helpers/compare.js";
import { runCli } from "./helpers/cli.js";

/**
 * Issue 4: deep validation finds exactly the injected differences (changed,
 * missing and extra rows, including NULLs, trailing spaces and json key
 * order) on a composite text key, and repair makes the copy equal again.
 */
describe("validate --deep and --repair, composite text key", () => {
  let source: TestDatabase;
  let target: TestDatabase;
  const spec = {
    source: { schema: "app", name: "positions" },
    target: { schema: "raw", name: "positions" },
  };

  before(async () => {
    [source, target] = await Promise.all([testDatabase("17"), testDatabase("14")]);
    await source.sql(`
      CREATE SCHEMA app;
      CREATE TABLE app.positions (
        account text, symbol text, qty numeric, note text, attrs jsonb, meta json,
        PRIMARY KEY (account, symbol));
      INSERT INTO app.positions
        SELECT 'acct' || (i % 500), 'SYM' || i, i, 'note ' || i, jsonb_build_object('i', i), json_build_object('a', 1, 'b', i)
          FROM generate_series(1, 20000) i;
    `);
    const [r] = await sync({ source: source.url(), target: target.url(), tables: [spec] });
    assert.equal(r!.status, "ok", r!.error);
  });
  after(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  test("a synced copy validates clean", async () => {
    const [r] = await validate({
      source: source.url(),
      target: target.url(),
      tables: [spec],
      deep: true,
    });
    assert.equal(r!.status, "ok", r!.error);
    assert.equal(r!.isSynchronized, true);
    assert.equal(r!.sourceCount, 20000);
    assert.equal(r!.targetCount, 20000);
    assert.equal(r!.pendingRows, 0);
    assert.equal(r!.integrityScore, 1);
    assert.deepEqual([r!.deep!.missing, r!.deep!.extra, r!.deep!.different], [0, 0, 0]);
    assert.equal(r!.xminDistribution!.count, 20000);
  });

  test("finds exactly the injected differences, then repairs them", async () => {
    await target.sql(`
      UPDATE raw.positions SET note = NULL WHERE account = 'acct1' AND symbol = 'SYM1';
      UPDATE raw.positions SET note = note || ' ' WHERE account = 'acct2' AND symbol = 'SYM2';
      UPDATE raw.positions SET meta = '{"b": 3, "a": 1}' WHERE account = 'acct3' AND symbol = 'SYM3';
      UPDATE raw.positions SET qty = 1.0 WHERE account = 'acct1' AND symbol = 'SYM501';
      DELETE FROM raw.positions WHERE account = 'acct4' AND symbol IN ('SYM4', 'SYM504');
      INSERT INTO raw.positions VALUES ('ghost', 'SYM0', 0, 'extra', '{}', '{}', 1);
    `);
    const [r] = await validate({
      source: source.url(),
      target: target.url(),
      tables: [spec],
      deep: true,
    });
    assert.equal(r!.status, "ok", r!.error);
    assert.equal(r!.isSynchronized, false);
    assert.equal(r!.deep!.different, 4);
    assert.equal(r!.deep!.missing, 2);
    assert.equal(r!.deep!.extra, 1);
    assert.deepEqual(r!.deep!.samples.extra, [["ghost", "SYM0"]]);
    assert.deepEqual(r!.deep!.samples.missing.map((k) => k.join("/")).sort(), [
      "acct4/SYM4",
      "acct4/SYM504",
    ]);
    assert.ok(r!.integrityScore < 1);

    const [fixed] = await validate({
      source: source.url(),
      target: target.url(),
      tables: [spec],
      deep: true,
      repair: true,
    });
    assert.equal(fixed!.status, "ok", fixed!.error);
    assert.deepEqual(fixed!.repaired, { copied: 6, deleted: 1 });

    const [again] = await validate({
      source: source.url(),
      target: target.url(),
      tables: [spec],
      deep: true,
    });
    assert.equal(again!.isSynchronized, true);
    assert.deepEqual([again!.deep!.missing, again!.deep!.extra, again!.deep!.different], [0, 0, 0]);
    await assertSameRows(source, "app.positions", target, "raw.positions", ["account", "symbol"]);
  });
});

describe("validate from the CLI: exit codes", () => {
  let source: TestDatabase;
  let target: TestDatabase;

  before(async () => {
    [source, target] = await Promise.all([testDatabase("17"), testDatabase("17")]);
    await source.sql(`
      CREATE TABLE public.items (id uuid PRIMARY KEY, name text);
      INSERT INTO public.items SELECT gen_random_uuid(), 'item ' || i FROM generate_series(1, 3000) i;`);
    const [r] = await sync({
      source: source.url(),
      target: target.url(),
      tables: [{ source: { schema: "public", name: "items" } }],
    });
    assert.equal(r!.status, "ok", r!.error);
  });
  after(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  const validateCli = (...extra: string[]) =>
    runCli(["validate", "--source", source.url(), "--target", target.url(), "--json", ...extra]);

  test("0 when equal, 1 when different (uuid key), 0 after --repair, 2 when a table cannot be validated", async () => {
    const clean = await validateCli("--table", "items", "--deep");
    assert.equal(clean.code, 0, clean.stderr);
    assert.equal(clean.json[0]!.isSynchronized, true);

    await target.sql(
      "UPDATE public.items SET name = name || '!' WHERE id = (SELECT id FROM public.items ORDER BY id LIMIT 1)",
    );
    const dirty = await validateCli("--table", "items", "--deep");
    assert.equal(dirty.code, 1, dirty.stderr);
    assert.equal((dirty.json[0]!.deep as { different: number }).different, 1);

    const repaired = await validateCli("--table", "items", "--deep", "--repair");
    assert.equal(repaired.code, 1, "differences were found (and repaired)");
    assert.deepEqual(repaired.json[0]!.repaired, { copied: 1, deleted: 0 });
    assert.equal((await validateCli("--table", "items", "--deep")).code, 0);

    const missing = await validateCli("--table", "nope");
    assert.equal(missing.code, 2);
    assert.equal(missing.json[0]!.status, "error");

    const usage = await runCli(["validate", "--repair", "--table", "items"]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--repair needs --deep/);
  });
});
