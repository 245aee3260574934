import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { sync } from "../src/index.js";
import { runCli } from "./helpers/cli.js";
import { startCluster, type Cluster } from "./helpers/cluster.js";

/**
 * The run history (DESIGN §3, "every run, from any entry point, appends to
 * the run history"): runs of the CLI and of the library, validations,
 * failures, retention, `status --history`; a history that cannot be
 * written does not fail the sync; a target that never had a table synced is
 * left as it was. Source 17, target 14.
 */

interface Row {
  kind: string;
  table: string;
  mode: string | null;
  status: string;
  error: string | null;
  rowsCopied: number | null;
  inserted: number | null;
  watermarkBefore: string | null;
  watermarkAfter: string | null;
  integrityScore: number | null;
  process: string;
  host: string;
  pid: number;
  startedAt: string;
  finishedAt: string;
}

describe("run history", () => {
  let source: Cluster;
  let target: Cluster;
  let dir: string;
  let config: string;

  before(async () => {
    [source, target] = await Promise.all([
      startCluster({ version: "17" }),
      startCluster({ version: "14" }),
    ]);
    await source.sql(`
      CREATE TABLE public.items (id int PRIMARY KEY, v text);
      INSERT INTO public.items SELECT i, 'v' || i FROM generate_series(1, 500) i;
      CREATE TABLE public.gone (id int PRIMARY KEY);
    `);
    dir = await mkdtemp(join(tmpdir(), "xmin-sync-history-"));
    config = join(dir, "sync.yaml");
    await writeFile(
      config,
      `source: ${source.url()}
target: ${target.url()}
historyRetention: 30d
tables:
  - source: public.items
  - source: public.gone
`,
    );
  });
  after(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
    await rm(dir, { recursive: true, force: true });
  });

  const history = async (...args: string[]) => {
    const r = await runCli(["status", "--history", "--json", "--target", target.url(), ...args]);
    assert.equal(r.code, 0, r.stderr);
    return r.json as unknown as Row[];
  };

  test("a failed first run leaves a target that never had a sync as it was", async () => {
    await source.sql("DROP TABLE public.gone");
    const r = await runCli(["sync", "--config", config, "--table", "public.gone", "--json"]);
    assert.equal(r.code, 2, "a missing table is bad input");
    const schemas = await target.sql("SELECT 1 FROM pg_namespace WHERE nspname = 'xmin_sync'");
    assert.deepEqual(schemas, [], "no xmin_sync schema on the target");
    await source.sql("CREATE TABLE public.gone (id int PRIMARY KEY)");
  });

  test("every CLI run is recorded: table, mode, rows, watermarks, status, host and process", async () => {
    let r = await runCli(["sync", "--config", config, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    await source.sql("UPDATE public.items SET v = 'changed' WHERE id <= 10");
    r = await runCli(["sync", "--config", config, "--table", "public.items", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const result = r.json[0]!;

    const rows = await history("--table", "public.items");
    assert.equal(rows.length, 2, "two runs of items");
    const [last, first] = rows;
    assert.equal(first!.mode, "full");
    assert.equal(first!.rowsCopied, 500);
    assert.equal(first!.watermarkBefore, null);
    assert.equal(last!.mode, "xmin");
    assert.equal(last!.rowsCopied, 10);
    assert.equal(last!.watermarkBefore, first!.watermarkAfter, "watermark before = previous after");
    assert.equal(last!.watermarkAfter, result.watermark);
    assert.equal(last!.status, "ok");
    assert.equal(last!.process, "cli");
    assert.equal(last!.host, hostname());
    assert.ok(last!.pid > 0);
    assert.ok(Date.parse(last!.startedAt) <= Date.parse(last!.finishedAt));
    assert.ok(Date.parse(first!.finishedAt) <= Date.parse(last!.startedAt), "newest first");
  });

  test("failures and validations are recorded; status --history prints them", async () => {
    await source.sql("DROP TABLE public.gone");
    const r = await runCli(["sync", "--config", config, "--json"]);
    assert.equal(r.code, 2, "a missing table is bad input");
    const v = await runCli(["validate", "--config", config, "--table", "public.items", "--json"]);
    assert.equal(v.code, 0, v.stderr);

    const gone = await history("--table", "public.gone");
    assert.equal(gone[0]!.status, "error");
    assert.match(gone[0]!.error!, /^source: no such table/);
    const items = await history("--table", "public.items", "--limit", "1");
    assert.equal(items.length, 1);
    assert.equal(items[0]!.kind, "validate");
    assert.equal(items[0]!.integrityScore, 1);

    const text = await runCli(["status", "--history", "--target", target.url(), "--limit", "3"]);
    assert.equal(text.code, 0, text.stderr);
    const lines = text.stdout.trim().split("\n");
    assert.match(lines[0]!, / ok +public\.items +validate counts: integrity 1 \(synchronized\)/);
    assert.ok(
      lines.some((l) => / FAIL +public\.gone +sync/.test(l)),
      text.stdout,
    );
    assert.ok(lines.some((l) => /^ +source: no such table/.test(l)));
  });

  test("the library records its runs as the library, with the caller's label", async () => {
    await sync({
      source: source.url(),
      target: target.url(),
      tables: [{ source: { schema: "public", name: "items" } }],
    });
    await sync({
      source: source.url(),
      target: target.url(),
      tables: [{ source: { schema: "public", name: "items" } }],
      history: { process: "nightly job" },
    });
    const [labelled, plain] = await history("--table", "public.items", "--limit", "2");
    assert.equal(plain!.process, "library");
    assert.equal(labelled!.process, "nightly job");
  });

  test("retention: a run removes runs older than historyRetention", async () => {
    const before = (await history()).length;
    assert.ok(before >= 5);
    await writeFile(
      join(dir, "short.yaml"),
      `source: ${source.url()}\ntarget: ${target.url()}\nhistoryRetention: 1s\ntables:\n  - source: public.items\n`,
    );
    await new Promise((r) => setTimeout(r, 1100));
    const r = await runCli(["sync", "--config", join(dir, "short.yaml"), "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const rows = await history();
    assert.equal(rows.length, 1, "only the run just made is left");
  });

  test("a history that cannot be written does not fail the sync", async () => {
    await target.sql("ALTER TABLE xmin_sync.history RENAME TO history_away");
    try {
      const r = await runCli(["sync", "--config", config, "--table", "public.items", "--json"], {
        env: { LOG_LEVEL: "warn" },
      });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.json[0]!.status, "ok");
      assert.match(r.stderr, /could not record the run in the history/);
    } finally {
      await target.sql("ALTER TABLE xmin_sync.history_away RENAME TO history");
    }
  });
});
