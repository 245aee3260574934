import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext } from "playwright-core";
import { runCli, spawnCli } from "./helpers/cli.js";
import { startCluster, type Cluster } from "./helpers/cluster.js";
import { waitFor } from "./helpers/wait.js";

/**
 * `xmin-sync serve`, as a team that runs its syncs from Airflow would run
 * it: a real process over a target whose history has good runs, a
 * validation and a failing table. /metrics is valid Prometheus text with
 * the documented names and table labels; /healthz says whether the
 * databases answer; the status page, in a real Chromium, shows the tables,
 * the failed one as failed, and lag figures.
 */

const CHROMIUM = process.env.XMIN_SYNC_CHROMIUM ?? "/usr/bin/chromium";
const chromiumSkip =
  !existsSync(CHROMIUM) && process.env.XMIN_SYNC_REQUIRE_CHROMIUM !== "1"
    ? `needs Chromium at ${CHROMIUM} (Debian's chromium package; .ci/run installs it)`
    : false;

/** The flags a root, headless, offline Chromium needs. */
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text format; throws on a line that is not valid. */
function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("# HELP ") || line.startsWith("# TYPE ")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `a valid sample line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    const body = m[2] ?? "";
    const pair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/gy;
    let p: RegExpExecArray | null;
    let consumed = 0;
    while ((p = pair.exec(body))) {
      labels[p[1]!] = p[2]!;
      consumed = pair.lastIndex;
    }
    assert.equal(consumed, body.length, `labels parse: ${line}`);
    const value = Number(m[3] === "+Inf" ? Infinity : m[3]);
    assert.ok(!Number.isNaN(value), `a number: ${line}`);
    samples.push({ name: m[1]!, labels, value });
  }
  return samples;
}

describe("xmin-sync serve", () => {
  let source: Cluster;
  let target: Cluster;
  let dir: string;
  let config: string;
  let url: string;
  let server: ReturnType<typeof spawnCli>;
  let browser: BrowserContext | undefined;

  before(async () => {
    [source, target] = await Promise.all([
      startCluster({ version: "17" }),
      startCluster({ version: "17" }),
    ]);
    await source.sql(`
      CREATE SCHEMA shop;
      CREATE TABLE shop.orders (id int PRIMARY KEY, amount numeric(10,2), note text);
      INSERT INTO shop.orders SELECT i, i * 1.5, 'order ' || i FROM generate_series(1, 2000) i;
      CREATE TABLE shop.customers (id int PRIMARY KEY, name text);
      INSERT INTO shop.customers SELECT i, 'customer ' || i FROM generate_series(1, 300) i;
      CREATE TABLE shop.returns (id int PRIMARY KEY, order_id int);
      INSERT INTO shop.returns SELECT i, i FROM generate_series(1, 50) i;
    `);
    dir = await mkdtemp(join(tmpdir(), "xmin-sync-serve-"));
    config = join(dir, "sync.yaml");
    await writeFile(
      config,
      `source: ${source.url()}
target: ${target.url()}
tables:
  - source: shop.orders
    every: 30s
  - source: shop.customers
    schedule: "0 * * * *"
  - source: shop.returns
    schedule: "*/15 * * * *"
`,
    );
    const ok = (r: { code: number | null; stderr: string }, code = 0) =>
      assert.equal(r.code, code, r.stderr);
    ok(await runCli(["sync", "--config", config, "--json"]));
    await source.sql("UPDATE shop.orders SET note = 'shipped' WHERE id <= 40");
    ok(await runCli(["sync", "--config", config, "--table", "shop.orders", "--json"]));
    for (let i = 1; i <= 4; i++) {
      await source.sql(`UPDATE shop.orders SET amount = amount + 1 WHERE id <= ${i * 30}`);
      ok(await runCli(["sync", "--config", config, "--table", "shop.orders", "--json"]));
    }
    ok(await runCli(["validate", "--config", config, "--table", "shop.orders", "--json"]));
    // A vendor dropped a table: its runs fail from now on.
    await source.sql("DROP TABLE shop.returns");
    ok(await runCli(["sync", "--config", config, "--json"]), 2);
    // Source transactions after the last run: a lag in transactions to show.
    await source.sql("INSERT INTO shop.orders VALUES (5001, 1, 'late')");
    await source.sql("INSERT INTO shop.orders VALUES (5002, 1, 'later')");

    server = spawnCli(["serve", "--config", config, "--http", "127.0.0.1:0"], {
      env: { LOG_LEVEL: "info" },
    });
    url = await waitFor("serve to listen", async () => {
      const m = /"url":"(http:\/\/[^"]+)"/.exec(server.stderr());
      if (!m && server.child.exitCode !== null) throw new Error(server.stderr());
      return m?.[1];
    });
  });

  after(async () => {
    await browser?.close();
    if (server && server.child.exitCode === null) server.child.kill("SIGTERM");
    await server?.done;
    await Promise.all([source?.stop(), target?.stop()]);
    await rm(dir, { recursive: true, force: true });
  });

  test("/metrics is Prometheus text with the fleet's metrics, labelled by table", async () => {
    // A run after serve started: counters count from then on.
    const r = await runCli(["sync", "--config", config, "--table", "shop.customers", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const res = await fetch(`${url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const samples = parseMetrics(await res.text());
    const find = (name: string, labels: Record<string, string>) =>
      samples.find(
        (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
      );
    for (const table of ["shop.orders", "shop.customers", "shop.returns"]) {
      for (const name of [
        "xmin_sync_runs_total",
        "xmin_sync_rows_total",
        "xmin_sync_run_duration_seconds_count",
        "xmin_sync_run_duration_seconds_bucket",
      ]) {
        assert.ok(find(name, { table }), `${name}{table="${table}"}`);
      }
    }
    for (const name of [
      "xmin_sync_last_success_timestamp_seconds",
      "xmin_sync_lag_transactions",
      "xmin_sync_lag_seconds",
      "xmin_sync_integrity_score",
    ]) {
      assert.ok(find(name, { table: "shop.orders" }), `${name}{table="shop.orders"}`);
    }
    assert.equal(find("xmin_sync_runs_total", { table: "shop.customers", status: "ok" })?.value, 1);
    for (const op of ["copied", "inserted", "updated", "deleted"])
      assert.ok(find("xmin_sync_rows_total", { table: "shop.customers", op }), op);
    assert.equal(find("xmin_sync_integrity_score", { table: "shop.orders" })?.value, 1);
    assert.ok(find("xmin_sync_lag_transactions", { table: "shop.orders" })!.value >= 2);
    const lastSuccess = find("xmin_sync_last_success_timestamp_seconds", { table: "shop.orders" });
    assert.ok(Math.abs(lastSuccess!.value - Date.now() / 1000) < 300, "a recent Unix time");
  });

  test("/api/tables and /healthz", async () => {
    const view = (await (await fetch(`${url}/api/tables`)).json()) as {
      tables: { table: string; state: string; lastError: { error: string } | null }[];
    };
    assert.deepEqual(
      view.tables.map((t) => [t.table, t.state]),
      [
        ["shop.customers", "idle"],
        ["shop.orders", "idle"],
        ["shop.returns", "failed"],
      ],
    );
    assert.match(view.tables[2]!.lastError!.error, /^source: no such table/);
    const health = await fetch(`${url}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { ok: true, target: { ok: true }, source: { ok: true } });
  });

  test(
    "the status page in Chromium: tables, the failed one as failed, lag figures, history",
    { skip: chromiumSkip },
    async () => {
      // A fresh profile of its own, in the test's directory.
      browser = await chromium.launchPersistentContext(join(dir, "chromium"), {
        executablePath: CHROMIUM,
        headless: true,
        args: CHROMIUM_ARGS,
        viewport: { width: 1440, height: 560 },
      });
      const page = await browser.newPage();
      await page.goto(url);
      const rows = page.locator("tr.table");
      await waitFor("three rows", async () => (await rows.count()) === 3, 15_000);
      assert.deepEqual(await page.locator("tr.table .name").allInnerTexts(), [
        "shop.customers",
        "shop.orders",
        "shop.returns",
      ]);
      const row = (t: string) => page.locator(`tr.table[data-table="${t}"]`);
      assert.equal(await row("shop.returns").locator(".state").innerText(), "failed");
      assert.equal(await row("shop.orders").locator(".state").innerText(), "idle");
      assert.match(
        await row("shop.returns").locator("pre.error").innerText(),
        /source: no such table/,
      );
      assert.match(await page.locator("#summary").innerText(), /^3 tables · 0 running · 1 failed$/);
      // Lag: transactions since the watermark (two inserts), and time.
      assert.match(await row("shop.orders").locator(".lag-tx").innerText(), /^[1-9][\d,]* tx$/);
      assert.match(await row("shop.orders").locator(".lag-s").innerText(), /^\d+ (s|min \d+ s)$/);
      assert.match(await row("shop.orders").innerText(), /integrity 1/);
      assert.match(await row("shop.orders").innerText(), /every 30s/);

      await row("shop.orders").click();
      const detail = page.locator("tr.detail table.runs tbody tr");
      await waitFor("the table's history", async () => (await detail.count()) >= 3, 10_000);
      const history = await page.locator("tr.detail").innerText();
      assert.match(history, /validate counts/);
      assert.match(history, /sync full/);
      assert.match(history, /sync xmin/);

      if (process.env.XMIN_SYNC_SCREENSHOT) {
        await page.screenshot({ path: process.env.XMIN_SYNC_SCREENSHOT, fullPage: true });
      }
    },
  );

  test("/healthz is 503 when the target does not answer", async () => {
    await target.halt("immediate");
    const health = await fetch(`${url}/healthz`);
    assert.equal(health.status, 503);
    const body = (await health.json()) as { ok: boolean; target: { ok: boolean; error: string } };
    assert.equal(body.ok, false);
    assert.equal(body.target.ok, false);
    server.child.kill("SIGTERM");
    const r = await server.done;
    assert.equal(r.code, 0, "serve exits 0 on SIGTERM");
  });
});
