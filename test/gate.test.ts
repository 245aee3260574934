import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type pg from "pg";
import { runCli } from "./helpers/cli.js";
import { testDatabase, type TestDatabase } from "./helpers/databases.js";

/**
 * `validate` as a pipeline gate (README, validate): differences among the
 * rows the last sync saw fail it (exit 1); rows written on the source since
 * are lag, reported, and fail it only beyond --max-lag. A busy source no
 * longer fails it, even right after --deep --repair. Source 17 -> target 14.
 */

interface Report {
  passed: boolean;
  failures: string[];
  isSynchronized: boolean;
  lag: {
    rows: number | null;
    transactions: string | null;
    seconds: number | null;
    exceeded: boolean;
  };
  deep?: {
    missing: number;
    extra: number;
    different: number;
    lag?: { missing: number; extra: number; different: number };
  };
}

describe("validate gates a pipeline (source 17 -> target 14)", () => {
  let source: TestDatabase;
  let target: TestDatabase;

  before(async () => {
    [source, target] = await Promise.all([testDatabase("17"), testDatabase("14")]);
    await source.sql(`
      CREATE TABLE public.t (id int PRIMARY KEY, v text NOT NULL);
      INSERT INTO public.t SELECT i, 'v' || i FROM generate_series(1, 1000) i;
    `);
  });
  after(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  const conn = () => ["--source", source.url(), "--target", target.url(), "--table", "public.t"];
  const sync = async () => {
    const r = await runCli(["sync", ...conn(), "--deletes", "hard", "--json"]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  };
  const validate = async (...args: string[]) => {
    const r = await runCli(["validate", ...conn(), "--json", ...args]);
    return { code: r.code, report: r.json[0] as unknown as Report, r };
  };

  test("rows written since the last sync are lag: reported, exit 0, with and without --deep", async () => {
    await sync();
    await source.sql(`UPDATE public.t SET v = 'changed' WHERE id <= 5;
                      INSERT INTO public.t SELECT i, 'new' FROM generate_series(1001, 1003) i;
                      DELETE FROM public.t WHERE id IN (500, 501);`);
    const counts = await validate();
    assert.equal(counts.code, 0, counts.r.stdout + counts.r.stderr);
    assert.equal(counts.report.passed, true);
    assert.deepEqual(counts.report.failures, []);
    assert.equal(counts.report.lag.rows, 8, "5 updated and 3 inserted rows");
    assert.equal(counts.report.isSynchronized, false, "not an exact copy of the source now");

    const deep = await validate("--deep");
    assert.equal(deep.code, 0, deep.r.stdout);
    assert.deepEqual(
      [deep.report.deep!.missing, deep.report.deep!.extra, deep.report.deep!.different],
      [3, 2, 5],
    );
    assert.deepEqual(deep.report.deep!.lag, { missing: 3, extra: 2, different: 5 });

    const human = await runCli(["validate", ...conn(), "--deep"]);
    assert.equal(human.code, 0);
    assert.match(
      human.stdout,
      /^ok {3}public\.t -> public\.t: no difference among the rows the last sync saw\n {5}source 1001 rows, target 1000 rows, integrity [\d.]+; lag 8 rows written since the last sync, \d+ transactions, \d+ s\n {5}deep: 3 missing, 2 extra, 5 different \(of which lag: 3 missing, 2 extra, 5 different\)$/m,
    );
  });

  test("right after --deep --repair, a busy source still passes", async () => {
    const repaired = await validate("--deep", "--repair");
    assert.equal(repaired.code, 0, "every difference was lag");
    assert.equal(repaired.report.passed, true);
    const again = await validate("--deep");
    assert.equal(again.code, 0, again.r.stdout);
    assert.deepEqual(
      [again.report.deep!.missing, again.report.deep!.extra, again.report.deep!.different],
      [0, 0, 0],
    );
    assert.equal(again.report.lag.rows, 8, "still written after the last sync's snapshot");
  });

  test("under a live load of inserts, updates and deletes, validate and validate --deep pass", async () => {
    await sync();
    const writer: pg.Client = await source.client();
    let stop = false;
    let next = 5000;
    const load = (async () => {
      while (!stop) {
        await writer.query(
          `BEGIN; UPDATE public.t SET v = v || '+' WHERE id = (SELECT id FROM public.t ORDER BY random() LIMIT 1);
           INSERT INTO public.t VALUES ($1, 'live'); DELETE FROM public.t WHERE id = $1 - 3; COMMIT;`.replace(
            /\$1/g,
            String(next++),
          ),
        );
      }
    })();
    try {
      await new Promise((r) => setTimeout(r, 500));
      for (const args of [[], ["--deep"]]) {
        const r = await validate(...args);
        assert.equal(r.code, 0, `${args.join(" ")}: ${r.r.stdout}${r.r.stderr}`);
        assert.ok((r.report.lag.rows ?? 0) > 0, "the load shows as lag");
      }
    } finally {
      stop = true;
      await load;
      await writer.end();
    }
  });

  test("a difference among rows the last sync saw fails it (exit 1), with and without --deep", async () => {
    await sync();
    await target.sql("UPDATE public.t SET v = 'tampered' WHERE id = 10");
    const deep = await validate("--deep");
    assert.equal(deep.code, 1, deep.r.stdout);
    assert.deepEqual(deep.report.failures, [
      "1 rows the last sync saw differ on the target (0 missing, 1 different)",
    ]);
    const human = await runCli(["validate", ...conn(), "--deep"]);
    assert.equal(human.code, 1);
    assert.match(
      human.stdout,
      /^DIFF public\.t -> public\.t: 1 rows the last sync saw differ on the target/,
    );

    await target.sql("DELETE FROM public.t WHERE id IN (11, 12)");
    const counts = await validate();
    assert.equal(counts.code, 1, counts.r.stdout);
    assert.match(
      counts.report.failures[0]!,
      /^the target has \d+ rows, fewer than the \d+ source rows the last sync saw$/,
    );
    await validate("--deep", "--repair");
  });

  test("--max-lag in transactions or as a duration", async () => {
    await sync();
    assert.equal((await validate("--max-lag", "1000000")).code, 0);
    assert.equal((await validate("--max-lag", "1h")).code, 0);
    // Transactions since the sync (each statement its own).
    for (let i = 0; i < 20; i++) await source.sql("SELECT txid_current()");
    const tx = await validate("--max-lag", "10");
    assert.equal(tx.code, 1, tx.r.stdout);
    assert.equal(tx.report.lag.exceeded, true);
    assert.match(tx.report.failures[0]!, /^lag of \d+ transactions is over --max-lag 10$/);
    await new Promise((r) => setTimeout(r, 2100));
    const time = await runCli(["validate", ...conn(), "--max-lag", "1s"]);
    assert.equal(time.code, 1);
    assert.match(
      time.stdout,
      /^LAG {2}public\.t -> public\.t: \d+s since the last sync is over --max-lag 1s$/m,
    );

    const bad = await runCli(["validate", ...conn(), "--max-lag", "soon"]);
    assert.equal(bad.code, 2);
    assert.equal(
      bad.stderr,
      'xmin-sync: --max-lag takes a number of transactions (10000) or a duration (90s, 15m, 2h, 1d), not "soon"\n',
    );
  });

  test("validate that cannot connect exits 2 with one line; with --json, one JSON object", async () => {
    const closed = "postgres://postgres@127.0.0.1:1/postgres";
    const r = await runCli([
      "validate",
      "--source",
      closed,
      "--target",
      target.url(),
      "--table",
      "public.t",
    ]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^xmin-sync: cannot connect to source [^\n]*\n$/);
    const json = await runCli([
      "validate",
      "--source",
      source.url(),
      "--target",
      closed,
      "--table",
      "public.t",
      "--json",
    ]);
    assert.equal(json.code, 2);
    assert.equal(json.json.length, 1, json.stdout);
    assert.equal(json.json[0]!.status, "error");
    assert.match(String(json.json[0]!.error), /cannot connect to target/);
  });
});
