import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ourBackends, waitFor } from "./helpers/activity.js";
import { killChildren, runCli, spawnCli } from "./helpers/cli.js";
import { startCluster, type Cluster } from "./helpers/cluster.js";
import { assertSameRows } from "./helpers/compare.js";

/**
 * docs/correctness.md, "Resumed first loads": a first load killed after some
 * of its parts committed goes on from them. Meanwhile the source changes
 * under it: rows inserted, updated in place, deleted, and updated so that
 * their new version lands on pages an earlier part had already copied
 * (space freed by a delete and a VACUUM). The rerun reads only the parts
 * not done, brings the others up to its own snapshot, and publishes a copy
 * equal to the source; it says what it saved. A load whose table was
 * rewritten in between (VACUUM FULL) starts over.
 */
describe("resuming an interrupted first load", () => {
  let source: Cluster;
  let target: Cluster;
  const children: ReturnType<typeof spawnCli>[] = [];
  const ROWS = 150_000;

  before(async () => {
    [source, target] = await Promise.all([
      startCluster({ version: "17" }),
      startCluster({ version: "14" }),
    ]);
    await source.sql(`
      CREATE TABLE public.big (id bigint PRIMARY KEY, grp int NOT NULL, note text, pad text);
      INSERT INTO public.big SELECT i, i % 100, 'note ' || i, repeat(md5(i::text), 2)
        FROM generate_series(1, ${ROWS}) i;
    `);
    await source.sql("VACUUM ANALYZE public.big");
  });
  after(async () => {
    await killChildren(children);
    await Promise.all([source?.stop(), target?.stop()]);
  });

  const args = (into: string) => [
    "sync",
    ...["--source", source.url(), "--target", target.url()],
    ...["--table", `public.big:${into}`, "--workers", "4", "--json"],
  ];
  // Eight parts, four at a time.
  const env = { MIN_BATCH_SIZE: "10000" };

  /** Starts a first load and kills it (SIGKILL) once `parts` of its parts have committed. */
  async function killAfterParts(into: string, parts: number): Promise<number> {
    const run = spawnCli(args(into), { env });
    children.push(run);
    const done = await waitFor(`${parts} parts committed`, async () => {
      if (run.child.exitCode !== null)
        throw new Error(`the load ended first: ${(await run.done).stderr}`);
      const rows = await target
        .sql<{ n: number }>("SELECT count(*)::int AS n FROM xmin_sync.first_load_part")
        .catch(() => [{ n: 0 }]);
      return rows[0]!.n >= parts ? rows[0]!.n : 0;
    });
    run.child.kill("SIGKILL");
    await run.done;
    await waitFor(
      "the killed run's sessions to end",
      async () => (await ourBackends(target)).length === 0,
    );
    return done;
  }

  const sourceRows = async () =>
    Number((await source.sql<{ n: string }>("SELECT count(*) AS n FROM public.big"))[0]!.n);

  test("the rerun reads only the parts not done and publishes the source as it is", async () => {
    await killAfterParts("copy.big", 2);
    assert.equal(
      (await target.sql("SELECT to_regclass('copy.big') AS t"))[0]!.t,
      null,
      "nothing is published before the load ends",
    );

    // Changes while the load is stopped: rows gone from the first parts,
    // and their space taken by the new versions of rows from the last ones.
    await source.sql("DELETE FROM public.big WHERE id <= 3000");
    await source.sql("VACUUM public.big");
    await source.sql(`
      UPDATE public.big SET pad = pad || ' moved' WHERE id BETWEEN 140000 AND 142000;
      UPDATE public.big SET note = 'changed in place' WHERE id % 1000 = 7;
      DELETE FROM public.big WHERE id % 997 = 3;
      INSERT INTO public.big SELECT i, i % 100, 'late ' || i, 'x' FROM generate_series(${ROWS + 1}, ${ROWS + 2000}) i;
    `);
    const moved = await source.sql<{ n: number }>(
      "SELECT count(*)::int AS n FROM public.big WHERE id BETWEEN 140000 AND 142000 AND (ctid::text::point)[0] < 60",
    );
    assert.ok(moved[0]!.n > 0, "some updated rows moved onto pages of the first part");

    const rerun = await runCli(args("copy.big"), { env });
    assert.equal(rerun.code, 0, rerun.stderr);
    const r = rerun.json[0]!;
    assert.equal(r.status, "ok", String(r.error));
    assert.equal(r.mode, "full");
    const resumed = r.resumed as Record<string, number>;
    assert.ok(resumed, `the result says it resumed: ${rerun.stdout}`);
    assert.ok(resumed.partsSkipped! >= 2 && resumed.partsSkipped! < resumed.partsTotal!);
    assert.ok(resumed.rowsSkipped! > 0);
    assert.ok(resumed.rowsRemoved! > 0, "rows deleted from done parts were removed");
    const total = await sourceRows();
    assert.ok(
      Number(r.rowsCopied) < total - resumed.rowsSkipped! / 2,
      `read ${r.rowsCopied} rows, fewer than the ${total} of the table`,
    );
    assert.equal(r.inserted, total, "published as many rows as the source has");
    await assertSameRows(source, "public.big", target, "copy.big", ["id"]);

    // The next run continues from the oldest part's watermark, and stays equal.
    await source.sql("UPDATE public.big SET note = 'after' WHERE id % 500 = 1");
    const next = await runCli(args("copy.big"), { env });
    assert.equal(next.code, 0, next.stderr);
    assert.equal(next.json[0]?.mode, "xmin");
    await assertSameRows(source, "public.big", target, "copy.big", ["id"]);
    const left = await target.sql<{ t: string }>(
      `SELECT tablename AS t FROM pg_tables WHERE schemaname = 'xmin_sync' AND tablename ~ '^(load|stage|keys|repair)_[0-9a-f]{16}$'
       UNION ALL SELECT 'plan ' || target_table FROM xmin_sync.first_load`,
    );
    assert.deepEqual(left, [], "no load table or plan left");
  });

  test("a load whose source table was rewritten (VACUUM FULL) since starts over", async () => {
    await killAfterParts("copy.again", 1);
    await source.sql("VACUUM FULL public.big");
    const rerun = await runCli(args("copy.again"), { env });
    assert.equal(rerun.code, 0, rerun.stderr);
    const r = rerun.json[0]!;
    assert.equal(r.status, "ok", String(r.error));
    assert.equal(r.resumed, undefined, "not resumed");
    assert.equal(r.rowsCopied, await sourceRows());
    await assertSameRows(source, "public.big", target, "copy.again", ["id"]);
  });
});
