import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type pg from "pg";
import { sync } from "../src/index.js";
import { LOCK_CLASS } from "../src/target/project.js";
import { ourBackends, runningStatement, waitFor } from "./helpers/activity.js";
import { killChildren, spawnCli } from "./helpers/cli.js";
import { startCluster, type Cluster } from "./helpers/cluster.js";
import { assertSameRows } from "./helpers/compare.js";

/**
 * A run holds the source's vacuum horizon (its snapshot) no longer than it
 * reads: `--wait` waits for another run's lock before taking a snapshot,
 * says whom it waits for, and gives up after the wait timeout; and the
 * snapshot is released once every table has read its rows, not when the
 * last merge ends. The result says how long it was held.
 */
describe("waits and the source horizon", () => {
  let source: Cluster;
  let target: Cluster;
  const clients: pg.Client[] = [];
  const children: ReturnType<typeof spawnCli>[] = [];
  const accounts = { schema: "public", name: "accounts" };
  const audit = { schema: "public", name: "audit" };

  before(async () => {
    [source, target] = await Promise.all([
      startCluster({ version: "17" }),
      startCluster({ version: "17" }),
    ]);
    await source.sql(`
      CREATE TABLE public.accounts (id int PRIMARY KEY, balance numeric(12,2));
      INSERT INTO public.accounts SELECT i, i FROM generate_series(1, 5000) i;
      CREATE TABLE public.audit (id int PRIMARY KEY, note text);
      INSERT INTO public.audit SELECT i, 'note ' || i FROM generate_series(1, 500) i;
    `);
    const first = await sync({
      source: source.url(),
      target: target.url(),
      tables: [{ source: accounts }, { source: audit }],
    });
    for (const r of first) assert.equal(r.status, "ok", r.error);
  });
  after(async () => {
    await killChildren(children);
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    await Promise.all([source?.stop(), target?.stop()]);
  });

  /** Holds a table's lock as another run would. */
  async function holdLock(table: string): Promise<{ client: pg.Client; pid: number }> {
    const client = await target.client();
    clients.push(client);
    const { rows } = await client.query<{ pid: number }>(
      "SELECT pg_advisory_lock($1::int, hashtext($2) & 2147483647), pg_backend_pid() AS pid",
      [LOCK_CLASS, table],
    );
    return { client, pid: rows[0]!.pid };
  }

  test("--wait takes no source snapshot while it waits, says for whom, then runs", async () => {
    await source.sql("UPDATE public.accounts SET balance = balance + 1 WHERE id <= 100");
    const other = await holdLock('"public"."accounts"');
    const run = spawnCli(
      [
        "sync",
        ...["--source", source.url(), "--target", target.url()],
        ...["--table", "public.accounts", "--wait", "--json"],
      ],
      { env: { LOG_LEVEL: "info" } },
    );
    children.push(run);
    await waitFor("the run to wait for the table's lock", async () => {
      if (run.child.exitCode !== null) throw new Error((await run.done).stderr);
      return (await ourBackends(target)).some((b) => b.waiting === "Lock");
    });
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(await ourBackends(source), [], "no session on the source while waiting");

    await other.client.query("SELECT pg_advisory_unlock_all()");
    const done = await run.done;
    assert.equal(done.code, 0, done.stderr);
    assert.equal(done.json[0]?.status, "ok");
    assert.equal(done.json[0]?.updated, 100);
    assert.match(
      done.stderr,
      new RegExp(
        `waiting for another xmin-sync run to finish with public\\.accounts \\(target backend pid ${other.pid}\\); no source snapshot is held meanwhile`,
      ),
    );
    await assertSameRows(source, "public.accounts", target, "public.accounts", ["id"]);
  });

  test("the wait gives up after waitTimeoutMs, naming who holds the table", async () => {
    const other = await holdLock('"public"."accounts"');
    const started = Date.now();
    const [r] = await sync({
      source: source.url(),
      target: target.url(),
      tables: [{ source: accounts }],
      waitForLock: true,
      waitTimeoutMs: 1500,
    });
    const took = Date.now() - started;
    assert.equal(r!.status, "error");
    assert.equal(
      r!.error,
      `gave up after 1.5s waiting for another xmin-sync run syncing public.accounts (target backend pid ${other.pid})`,
    );
    assert.ok(took >= 1500 && took < 10_000, `gave up after ${took} ms`);
    await other.client.query("SELECT pg_advisory_unlock_all()");
  });

  test("the snapshot is released once the rows are read, before the merge ends", async () => {
    await source.sql("UPDATE public.accounts SET balance = balance + 1 WHERE id <= 100");
    await source.sql("UPDATE public.audit SET note = note || '!' WHERE id <= 10");
    // The merge of accounts waits for a row another session holds.
    const blocker = await target.client();
    clients.push(blocker);
    await blocker.query("BEGIN");
    await blocker.query("SELECT 1 FROM public.accounts WHERE id = 50 FOR UPDATE");
    const running = sync({
      source: source.url(),
      target: target.url(),
      tables: [{ source: accounts }, { source: audit }],
    });
    await waitFor("the merge of accounts to wait", () =>
      runningStatement(target, /MERGE INTO "public"\."accounts"/),
    );
    // The other table may still be reading its rows (the snapshot is held
    // until the last table has): wait for that, while the merge still waits.
    await waitFor(
      "the source snapshot to be released",
      async () => (await ourBackends(source)).length === 0,
      15_000,
    );
    assert.ok(
      await runningStatement(target, /MERGE INTO "public"\."accounts"/),
      "the merge of accounts still waits",
    );
    await blocker.query("ROLLBACK");
    const results = await running;
    for (const r of results) {
      assert.equal(r.status, "ok", r.error);
      assert.ok(
        typeof r.snapshotHeldMs === "number" && r.snapshotHeldMs < r.durationMs,
        `${r.table}: snapshot held ${r.snapshotHeldMs} ms of ${r.durationMs} ms`,
      );
    }
    await assertSameRows(source, "public.accounts", target, "public.accounts", ["id"]);
    await assertSameRows(source, "public.audit", target, "public.audit", ["id"]);
  });
});
