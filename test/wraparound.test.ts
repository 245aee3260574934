import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { sync } from "../src/index.js";
import {
  runAsPostgres,
  startCluster,
  systemPostgresSkip,
  type Cluster,
} from "./helpers/cluster.js";
import { columnList, tableText } from "./helpers/compare.js";

/**
 * docs/correctness.md, "Watermarks are 64-bit, across wraparound": a source pushed to just before 32-bit
 * xid wraparound (pg_resetwal -x, Debian's PostgreSQL 15). A full copy is
 * taken before the wrap; rows written on both sides of it, then frozen, must
 * arrive with the next incremental run (mode xmin, only the changed rows),
 * whose watermark is in epoch 1 (> 2^32).
 *
 * Recipe: freeze every database (vacuumdb --all --freeze) so no tuple needs
 * the commit status of an xid we skip, stop the server, pg_resetwal -x to
 * 2^32 - 5000, create the pg_xact segment that xid falls in (a zero-filled
 * 256 kB file: 32 pages of 32768 xids), start again, and freeze again so
 * every relfrozenxid/datfrozenxid is current. On PostgreSQL 15 pg_resetwal
 * -x leaves oldestXID alone (-u sets it), so the server neither stops nor
 * forces anti-wraparound vacuums; autovacuum is off so that nothing but the
 * test writes or freezes.
 */
const TWO_32 = 4294967296n;
const START_XID = TWO_32 - 5000n;

describe("xid wraparound on the source", { skip: systemPostgresSkip() }, () => {
  let source: Cluster;
  let target: Cluster;
  /** Raw xmin of the rows written (and frozen) before pg_resetwal. */
  let oldRaw: bigint;

  const tableSpec = {
    source: { schema: "fds", name: "ticker" },
    target: { schema: "raw_data", name: "ticker" },
  };
  const run = async () => {
    const [r] = await sync({ source: source.url(), target: target.url(), tables: [tableSpec] });
    assert.equal(r!.status, "ok", r!.error);
    return r!;
  };
  const assertEqual = async () => {
    const cols = await columnList(source, "postgres", "fds.ticker");
    assert.deepEqual(
      await tableText(target, "postgres", "raw_data.ticker", cols, ["id"]),
      await tableText(source, "postgres", "fds.ticker", cols, ["id"]),
    );
  };
  const txid = async () =>
    BigInt((await source.sql<{ x: string }>("SELECT txid_current()::text AS x"))[0]!.x);
  /** Uses up xids, one committed transaction each, until the next one is `next`. */
  const burnTo = async (next: bigint) => {
    const n = next - (await txid()) - 1n;
    assert.ok(n >= 0n && n < 100000n, `burnTo(${next}): ${n} xids`);
    await source.sql(
      `DO $$ BEGIN FOR i IN 1..${n} LOOP PERFORM txid_current(); COMMIT; END LOOP; END $$`,
    );
  };
  /** Runs statements in one transaction; returns its full (64-bit) xid. */
  const write = async (sql: string) => {
    const c = await source.client();
    try {
      await c.query("BEGIN");
      await c.query(sql);
      const { rows } = await c.query<{ x: string }>("SELECT txid_current()::text AS x");
      await c.query("COMMIT");
      return BigInt(rows[0]!.x);
    } finally {
      await c.end();
    }
  };
  /** source_xmin of target rows, by id. */
  const targetXmin = async (ids: number[]) => {
    const rows = await target.sql<{ id: number; x: string }>(
      "SELECT id, source_xmin::text AS x FROM raw_data.ticker WHERE id = ANY($1::int[]) ORDER BY id",
      [ids],
    );
    return rows.map((r) => BigInt(r.x));
  };

  const freezeAll = () =>
    runAsPostgres(join(source.bin, "vacuumdb"), [
      ...["--all", "--freeze", "--quiet"],
      ...["-h", "127.0.0.1", "-p", String(source.port), "-U", "postgres"],
    ]);

  before(async () => {
    [source, target] = await Promise.all([
      // No autovacuum: nothing but the test writes or freezes.
      startCluster({ version: "system", settings: { autovacuum: "off" } }),
      startCluster({ version: "17" }),
    ]);
    await source.sql(`
      CREATE EXTENSION pageinspect;
      CREATE SCHEMA fds;
      CREATE TABLE fds.ticker (id int PRIMARY KEY, exchange text NOT NULL, price numeric(12,4));
      INSERT INTO fds.ticker SELECT i, 'NYS', i FROM generate_series(1, 5000) i;
    `);
    oldRaw = BigInt(
      (
        await source.sql<{ x: string }>("SELECT max(xmin::text::bigint)::text AS x FROM fds.ticker")
      )[0]!.x,
    );
    await freezeAll();
    await source.halt();
    await runAsPostgres(join(source.bin, "pg_resetwal"), [
      "-x",
      START_XID.toString(),
      "-D",
      source.dataDir,
    ]);
    const segment = (START_XID / 1048576n).toString(16).toUpperCase().padStart(4, "0");
    await runAsPostgres("truncate", ["-s", "262144", join(source.dataDir, "pg_xact", segment)]);
    await source.start();
    // Again, before any write: pg_class.relfrozenxid (725 or so) now looks newer
    // than the counter, and a later VACUUM of a table holding rows from after
    // the wrap would fail ("found xmin 103 from before relfrozenxid 725").
    // VACUUM overwrites a relfrozenxid "in the future" with a current one.
    await freezeAll();
    const now = await txid();
    assert.ok(now >= START_XID && now < START_XID + 100n, `pg_resetwal set the next xid (${now})`);
  });
  after(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  test("rows written across the wrap arrive incrementally, frozen or not", async () => {
    // Rows written after the reset, before the first sync: unfrozen at first.
    await source.sql(
      "INSERT INTO fds.ticker SELECT i, 'LON', i FROM generate_series(6001, 6100) i",
    );
    const first = await run();
    assert.equal(first.mode, "full");
    assert.equal(first.rowsCopied, 5100);
    const w1 = BigInt(first.watermark!);
    assert.ok(w1 > START_XID && w1 < TWO_32, `first watermark ${w1} is before the wrap`);
    await assertEqual();

    // Before the wrap: 10 updates, 20 inserts, 5 updates of rows from after the reset.
    const before = await write(`
      UPDATE fds.ticker SET price = -id WHERE id BETWEEN 1 AND 10;
      INSERT INTO fds.ticker SELECT i, 'PRE', i FROM generate_series(10001, 10020) i;
      UPDATE fds.ticker SET exchange = 'PRE' WHERE id BETWEEN 6001 AND 6005;
    `);
    assert.ok(before < TWO_32);

    await burnTo(TWO_32 + 100n);
    // After the wrap: 10 updates, 20 inserts, and 5 rows changed before the wrap changed again.
    const afterWrap = await write(`
      UPDATE fds.ticker SET price = id * 2 WHERE id BETWEEN 11 AND 20;
      UPDATE fds.ticker SET exchange = 'AGAIN' WHERE id IN (1, 2);
      INSERT INTO fds.ticker SELECT i, 'POST', i FROM generate_series(10021, 10040) i;
      UPDATE fds.ticker SET price = 0 WHERE id IN (10001, 10002, 10003);
    `);
    assert.ok(afterWrap >= TWO_32 + 100n, `${afterWrap} is past the wrap`);
    const raw = (
      await source.sql<{ x: string }>("SELECT xmin::text AS x FROM fds.ticker WHERE id = 10021")
    )[0]!.x;
    assert.equal(BigInt(raw), afterWrap - TWO_32, "row xmin wrapped to a small raw value");

    // Freeze every row now: those the first sync copied (6006..6100 were still
    // unfrozen then and did not change since: they must not be read again)
    // and those it has not seen yet (they must not be lost).
    await source.sql("VACUUM (FREEZE) fds.ticker");
    const unfrozen = await source.sql<{ n: string }>(`
      SELECT count(*)::text AS n
        FROM generate_series(0, pg_relation_size('fds.ticker') / 8192 - 1) AS b,
             heap_page_items(get_raw_page('fds.ticker', b::int)) AS h
       WHERE h.lp_flags = 1 AND (h.t_infomask & 768) <> 768`);
    assert.equal(unfrozen[0]!.n, "0", "every tuple is frozen (HEAP_XMIN_FROZEN)");

    const second = await run();
    assert.equal(second.mode, "xmin", second.reason);
    // 35 rows changed before the wrap, 35 after, 5 of them on both sides: 65 distinct rows.
    assert.equal(second.rowsCopied, 65, "only the changed rows are read");
    assert.equal(second.inserted, 40);
    assert.equal(second.updated, 25);
    assert.equal(BigInt(second.previousWatermark!), w1);
    const w2 = BigInt(second.watermark!);
    assert.ok(w2 > TWO_32, `new watermark ${w2} is in epoch 1`);
    await assertEqual();
    // Full 64-bit xids reconstructed on both sides of the wrap, frozen or not.
    assert.deepEqual(await targetXmin([3, 10004, 6001]), [before, before, before]);
    assert.deepEqual(await targetXmin([1, 11, 10001, 10021]), [
      afterWrap,
      afterWrap,
      afterWrap,
      afterWrap,
    ]);

    // Nothing changed since: nothing is read.
    const third = await run();
    assert.equal(third.mode, "xmin");
    assert.equal(third.rowsCopied, 0);
    assert.ok(BigInt(third.watermark!) >= w2);
    await assertEqual();
  });

  test("frozen rows from the previous epoch are re-read once their raw xmin comes round, never lost", async () => {
    // Rows written before pg_resetwal keep raw xmin `oldRaw` (frozen tuples keep
    // their raw xmin). Once the counter passes 2^32 + oldRaw those rows look
    // new relative to the snapshot: SQL cannot see a tuple's frozen bit, so the
    // engine re-reads them, once per 2^32 xids (docs/correctness.md promises only that
    // freezing loses nothing). The copy must stay equal, and a re-run quiet.
    await burnTo(TWO_32 + oldRaw + 10n);
    await write("UPDATE fds.ticker SET price = 7 WHERE id = 5000");
    const r = await run();
    assert.equal(r.mode, "xmin", r.reason);
    assert.ok(
      r.rowsCopied >= 4980,
      `the ${r.rowsCopied} untouched pre-reset rows are re-read (raw xmin ${oldRaw})`,
    );
    await assertEqual();
    const again = await run();
    assert.equal(again.rowsCopied, 0, "and only once");
  });
});
