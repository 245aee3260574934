import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type pg from "pg";
import { ourBackends, runningStatement, waitFor } from "./helpers/activity.js";
import { killChildren, runCli, spawnCli, type CliResult } from "./helpers/cli.js";
import { startCluster, type Cluster } from "./helpers/cluster.js";
import { assertSameRows } from "./helpers/compare.js";

/**
 * Ctrl-C and SIGTERM (a pod stopped, a scheduler's timeout) stop a run
 * cleanly: the statements it runs on either server are cancelled (a
 * backend left running its DELETE would hold the table's lock, and the next
 * run would fail with "another xmin-sync run is syncing"), transactions roll
 * back, and the process exits with the shell's code (130, 143) after one
 * line saying what was interrupted. The next run, started at once, succeeds
 * and leaves the copy equal to the source. A second Ctrl-C exits at once.
 */
describe("interrupted by a signal", () => {
  let source: Cluster;
  let target: Cluster;
  const blockers: pg.Client[] = [];
  const children: ReturnType<typeof spawnCli>[] = [];

  before(async () => {
    [source, target] = await Promise.all([
      startCluster({ version: "17" }),
      startCluster({ version: "17" }),
    ]);
    await source.sql(`
      CREATE TABLE public.items (id bigint PRIMARY KEY, grp int NOT NULL, note text, pad text);
      INSERT INTO public.items SELECT i, i % 100, 'note ' || i, repeat(md5(i::text), 2)
        FROM generate_series(1, 120000) i;
    `);
    await source.sql("VACUUM ANALYZE public.items");
  });
  after(async () => {
    await killChildren(children);
    await Promise.all(blockers.map((b) => b.end().catch(() => undefined)));
    await Promise.all([source?.stop(), target?.stop()]);
  });

  const args = (...more: string[]) => [
    "sync",
    ...["--source", source.url(), "--target", target.url()],
    ...["--table", "public.items", "--workers", "2", "--json"],
    ...more,
  ];
  // Small batches: several parts to copy, several slices to merge.
  const env = { MIN_BATCH_SIZE: "20000", MAX_BATCH_SIZE: "20000" };

  /** Starts a run, sends `signal` once `pattern` runs on `on`, and returns the run's end. */
  async function interrupt(
    on: () => Cluster,
    pattern: RegExp,
    signals: NodeJS.Signals[],
    more: string[] = [],
  ): Promise<{ result: CliResult; exitMs: number }> {
    const run = spawnCli(args(...more), { env });
    children.push(run);
    await waitFor(`a statement matching ${pattern}`, async () => {
      if (run.child.exitCode !== null)
        throw new Error(`the run ended first: ${(await run.done).stderr}`);
      return runningStatement(on(), pattern);
    });
    const sent = Date.now();
    for (const s of signals) run.child.kill(s);
    const result = await run.done;
    return { result, exitMs: Date.now() - sent };
  }

  /** Holds a row lock on the target: a statement that must write the row runs, waiting, until cancelled. */
  async function lockRow(id: number): Promise<pg.Client> {
    const blocker = await target.client();
    blockers.push(blocker);
    await blocker.query("BEGIN");
    await blocker.query("SELECT 1 FROM public.items WHERE id = $1 FOR UPDATE", [id]);
    return blocker;
  }

  /** Within two seconds of the exit, no session of ours is left on either server. */
  async function assertNoBackendsLeft() {
    await waitFor(
      "no xmin-sync session on either server",
      async () => (await ourBackends(source)).length + (await ourBackends(target)).length === 0,
      2_000,
    ).catch(async (err: Error) => {
      const left = [...(await ourBackends(source)), ...(await ourBackends(target))];
      throw new Error(`${err.message}: ${JSON.stringify(left)}`);
    });
  }

  function assertOneLine(r: CliResult, code: number, sig: string, phase: RegExp) {
    assert.equal(r.code, code, r.stderr);
    const lines = r.stderr.split("\n").filter((l) => l.trim() !== "");
    assert.equal(lines.length, 1, `one line on stderr:\n${r.stderr}`);
    assert.match(
      lines[0]!,
      new RegExp(`^xmin-sync: interrupted by ${sig} \\(public\\.items while `),
    );
    assert.match(lines[0]!, phase);
    assert.match(lines[0]!, /rolled back, locks released; the next run resumes safely$/);
    assert.equal(r.json[0]?.status, "error");
    assert.match(String(r.json[0]?.interrupted), phase);
  }

  async function rerunConverges() {
    const rerun = await runCli(args("--deletes", "hard"), { env });
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.equal(rerun.json[0]?.status, "ok", String(rerun.json[0]?.error));
    await assertSameRows(source, "public.items", target, "public.items", ["id"]);
    return rerun.json[0]!;
  }

  test("SIGINT during a first load's COPY: exit 130, nothing left running, the rerun resumes", async () => {
    const { result, exitMs } = await interrupt(() => target, /^COPY "xmin_sync"\."load_/, [
      "SIGINT",
    ]);
    assertOneLine(result, 130, "SIGINT", /copying rows/);
    assert.ok(exitMs < 5_000, `stopped in ${exitMs} ms`);
    await assertNoBackendsLeft();
    const rerun = await rerunConverges();
    assert.equal(rerun.mode, "full");
  });

  test("SIGTERM during a merge: exit 143, the merge cancelled, not run to its end", async () => {
    await source.sql("UPDATE public.items SET note = note || '+' WHERE id % 2 = 0");
    const blocker = await lockRow(60000);
    const { result, exitMs } = await interrupt(() => target, /MERGE INTO "public"\."items"/, [
      "SIGTERM",
    ]);
    assertOneLine(result, 143, "SIGTERM", /merging/);
    assert.ok(exitMs < 5_000, `stopped in ${exitMs} ms`);
    await assertNoBackendsLeft();
    await blocker.query("ROLLBACK");
    const rerun = await rerunConverges();
    assert.equal(rerun.mode, "xmin");
  });

  test("SIGINT during the delete reconciliation: its DELETE is cancelled and the table unlocked", async () => {
    await source.sql("DELETE FROM public.items WHERE id % 5 = 0");
    const blocker = await lockRow(50000);
    const { result } = await interrupt(
      () => target,
      /^DELETE FROM "public"\."items" AS t WHERE NOT EXISTS/,
      ["SIGINT"],
      ["--deletes", "hard"],
    );
    assertOneLine(result, 130, "SIGINT", /reconciling deletes/);
    await assertNoBackendsLeft();
    await blocker.query("ROLLBACK");
    const rerun = await rerunConverges();
    assert.equal(rerun.deleted, 24000);
  });

  test("a second SIGINT exits at once; the servers drop what the run left", async () => {
    await source.sql("UPDATE public.items SET note = note || '!' WHERE id % 3 = 0");
    const blocker = await lockRow(59999);
    const { result, exitMs } = await interrupt(() => target, /MERGE INTO "public"\."items"/, [
      "SIGINT",
      "SIGINT",
    ]);
    assert.equal(result.code, 130, result.stderr);
    assert.ok(exitMs < 2_000, `exited in ${exitMs} ms`);
    // The backends notice their client is gone (client_connection_check_interval).
    await assertNoBackendsLeft();
    await blocker.query("ROLLBACK");
    await rerunConverges();
  });
});
