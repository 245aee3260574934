import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { sync, validate } from "../src/index.js";
import { startCluster, type Cluster } from "./helpers/cluster.js";
import { columnList, tableText } from "./helpers/compare.js";

/**
 * Issue 4: deep validation finds exactly the injected differences (changed,
 * missing and extra rows, including NULLs, trailing spaces and json key
 * order) on a composite text key, and repair makes the copy equal again.
 */
describe("validate --deep and --repair, composite text key", () => {
  let source: Cluster;
  let target: Cluster;
  const spec = {
    source: { schema: "app", name: "positions" },
    target: { schema: "raw", name: "positions" },
  };

  before(async () => {
    [source, target] = await Promise.all([
      startCluster({ version: "17" }),
      startCluster({ version: "14" }),
    ]);
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
    const cols = await columnList(source, "postgres", "app.positions");
    assert.deepEqual(
      await tableText(target, "postgres", "raw.positions", cols, ["account", "symbol"]),
      await tableText(source, "postgres", "app.positions", cols, ["account", "symbol"]),
    );
  });
});
