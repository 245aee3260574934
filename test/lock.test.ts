import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type pg from "pg";
import { waitFor } from "./helpers/activity.js";
import { killChildren, runCli, spawnCli } from "./helpers/cli.js";
import { testDatabase, type TestDatabase } from "./helpers/databases.js";
import { assertSameRows } from "./helpers/compare.js";

/**
 * docs/correctness.md, "Long transactions and concurrency": two runs never sync the same target table at
 * once. A second run exits at once with one clear line, or with --wait waits
 * for the first and then succeeds. A run locks all its tables before its
 * snapshot, so no other run can commit one of them from a newer snapshot
 * while it works on the others (it would then write older data over newer).
 */

describe("two runs on one table", () => {
  let source: TestDatabase;
  let target: TestDatabase;
  const blockers: pg.Client[] = [];
  const children: ReturnType<typeof spawnCli>[] = [];

  before(async () => {
    [source, target] = await Promise.all([testDatabase("17"), testDatabase("17")]);
    await source.sql(`
      CREATE TABLE public.accounts (id int PRIMARY KEY, owner text NOT NULL, balance numeric(12,2));
      INSERT INTO public.accounts SELECT i, 'owner ' || i, i FROM generate_series(1, 2000) i;
      CREATE TABLE public.audit (id int PRIMARY KEY, note text);
      INSERT INTO public.audit SELECT i, 'note ' || i FROM generate_series(1, 500) i;
    `);
  });
  after(async () => {
    await killChildren(children);
    await Promise.all(blockers.map((b) => b.end().catch(() => undefined)));
    await Promise.all([source?.stop(), target?.stop()]);
  });

  const args = (...tables: string[]) => [
    "sync",
    "--source",
    source.url(),
    "--target",
    target.url(),
    ...tables.flatMap((t) => ["--table", t]),
    "--json",
  ];
  const assertEqual = async (table: string) => {
    await assertSameRows(source, table, target, table, ["id"], {
      message: `${table}: target equals source`,
    });
  };
  /** Holds a lock on a target table that lets a run stage but stops its MERGE. */
  const block = async (table: string) => {
    const c = await target.client();
    blockers.push(c);
    await c.query("BEGIN");
    await c.query(`LOCK TABLE ${table} IN SHARE MODE`);
    return c;
  };
  const blockedRuns = async (waitEvent: string) =>
    (
      await target.sql<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity
          WHERE application_name = 'xmin-sync target' AND wait_event_type = 'Lock' AND wait_event = $1
            AND datname = current_database()`,
        [waitEvent],
      )
    ).map((r) => r.pid);

  test("the second run exits at once with one clear line; with --wait it waits, then succeeds", async () => {
    const initial = await runCli(args("public.accounts"));
    assert.equal(initial.code, 0, initial.stderr);

    await source.sql("UPDATE public.accounts SET balance = balance + 1 WHERE id <= 100");
    const blocker = await block("public.accounts");
    const first = spawnCli(args("public.accounts"));
    children.push(first);
    await waitFor("the first run to block in its merge", async () => {
      if (first.child.exitCode !== null) throw new Error((await first.done).stderr);
      return (await blockedRuns("relation")).length === 1;
    });

    const started = Date.now();
    const second = await runCli(args("public.accounts"));
    const elapsed = Date.now() - started;
    assert.equal(second.code, 1, "exit code 1: the table failed");
    assert.ok(elapsed < 10_000, `exits quickly (took ${elapsed} ms)`);
    const r = second.json[0];
    assert.ok(r, `one JSON result on stdout: ${second.stdout}`);
    assert.equal(r.status, "error");
    assert.equal(r.table, "public.accounts");
    assert.match(String(r.error), /another xmin-sync run is syncing public\.accounts/);
    const lines = second.stderr.split("\n").filter((l) => l.trim() !== "");
    assert.equal(lines.length, 1, `one line on stderr:\n${second.stderr}`);
    assert.match(lines[0]!, /another xmin-sync run is syncing public\.accounts/);
    assert.doesNotMatch(second.stderr, /\n\s+at /, "no stack trace");

    // More changes, then a run that waits for the first instead of failing.
    await source.sql(
      "INSERT INTO public.accounts SELECT i, 'late ' || i, 0 FROM generate_series(2001, 2050) i",
    );
    const waiting = spawnCli([...args("public.accounts"), "--wait"]);
    children.push(waiting);
    await waitFor("the --wait run to wait for the table's advisory lock", async () => {
      if (waiting.child.exitCode !== null) throw new Error((await waiting.done).stderr);
      return (await blockedRuns("advisory")).length === 1;
    });
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(waiting.child.exitCode, null, "the --wait run is still waiting");

    await blocker.query("ROLLBACK");
    const [firstDone, waitedDone] = await Promise.all([first.done, waiting.done]);
    assert.equal(firstDone.code, 0, firstDone.stderr);
    assert.equal(firstDone.json[0]?.status, "ok");
    assert.equal(firstDone.json[0]?.updated, 100);
    assert.equal(waitedDone.code, 0, waitedDone.stderr);
    assert.equal(waitedDone.json[0]?.status, "ok", String(waitedDone.json[0]?.error));
    await assertEqual("public.accounts");
  });

  test("a run holds its tables' locks from before its snapshot: a table it reaches late is not synced by another run meanwhile", async () => {
    // Both tables synced once, and in sync.
    const initial = await runCli(args("public.audit", "public.accounts"));
    assert.equal(initial.code, 0, initial.stderr);
    await assertEqual("public.accounts");

    // The slow run (one table at a time) locks both tables, takes its
    // snapshot, then stalls on its first table; accounts waits its turn.
    await source.sql("UPDATE public.audit SET note = note || '!' WHERE id <= 10");
    const blocker = await block("public.audit");
    const slow = spawnCli([...args("public.audit", "public.accounts"), "--workers", "1"]);
    children.push(slow);
    await waitFor("the slow run to block on its first table", async () => {
      if (slow.child.exitCode !== null) throw new Error((await slow.done).stderr);
      return (await blockedRuns("relation")).length === 1;
    });

    // Meanwhile accounts changes (in several transactions). A run of it
    // alone cannot commit a watermark newer than the slow run's snapshot
    // (which the slow run would then move back): it is refused, or waits.
    for (let i = 0; i < 5; i++) {
      await source.sql(`UPDATE public.accounts SET balance = balance + 1000 WHERE id % 5 = ${i}`);
    }
    await source.sql("INSERT INTO public.accounts VALUES (5000, 'newest', 1)");
    const quick = await runCli(args("public.accounts"));
    assert.equal(quick.code, 1, quick.stderr);
    assert.match(String(quick.json[0]?.error), /another xmin-sync run is syncing public\.accounts/);
    const waiting = spawnCli([...args("public.accounts"), "--wait"]);
    children.push(waiting);
    await waitFor("the --wait run to wait", async () => {
      if (waiting.child.exitCode !== null) throw new Error((await waiting.done).stderr);
      return (await blockedRuns("advisory")).length === 1;
    });

    await blocker.query("ROLLBACK");
    const slowDone = await slow.done;
    assert.equal(slowDone.code, 0, slowDone.stderr);
    for (const r of slowDone.json) assert.equal(r.status, "ok", String(r.error));
    assert.equal(slowDone.json.find((r) => r.table === "public.accounts")?.mode, "xmin");
    const waited = await waiting.done;
    assert.equal(waited.code, 0, waited.stderr);
    assert.equal(waited.json[0]?.mode, "xmin");
    const slowMark = BigInt(
      String(slowDone.json.find((r) => r.table === "public.accounts")!.watermark),
    );
    assert.ok(
      BigInt(String(waited.json[0]!.watermark)) >= slowMark,
      "a fresh snapshot after the wait",
    );
    await assertEqual("public.audit");
    await assertEqual("public.accounts");
  });
});
