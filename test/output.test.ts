import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLI, runCli, spawnCli, type CliResult } from "./helpers/cli.js";
import { testDatabase, type TestDatabase } from "./helpers/databases.js";

/**
 * Output a person reads and bad input, as a user meets them: on a terminal
 * (a pseudo-terminal from util-linux `script`) one line per log event and
 * progress bars that never share a line with a log line; --wait saying
 * whom it waits for, and --wait-timeout; help with examples and only the
 * flags a command takes; every bad input one line, exit 2, also with
 * --json. Source 17 -> target 17.
 */

const STACK = /\n\s+at .+:\d+/;
const lines = (text: string) => text.split("\n").filter((l) => l.trim() !== "");
// eslint-disable-next-line no-control-regex
const COLOR = /\u001b\[[0-9;]*m/g;
/** Where a terminal starts drawing afresh: a line break, or a cursor move or clear. */
// eslint-disable-next-line no-control-regex
const BREAK = /\r\n|\r|\n|\u001b\[[0-9;?]*[A-Za-z]/;

/** Exit 2 and one line on stderr, no stack. */
function badInput(r: CliResult, pattern: RegExp): string {
  assert.equal(r.code, 2, `exit 2; stdout: ${r.stdout} stderr: ${r.stderr}`);
  const err = lines(r.stderr);
  assert.equal(err.length, 1, `one line on stderr: ${JSON.stringify(r.stderr)}`);
  assert.doesNotMatch(r.stderr, STACK);
  assert.match(err[0]!, pattern);
  return err[0]!;
}

/** The CLI on a pseudo-terminal: what a person sees (stdout and stderr together). */
function onTerminal(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; screen: string }> {
  const command = [process.execPath, CLI, ...args]
    .map((a) => `'${a.replaceAll("'", "'\\''")}'`)
    .join(" ");
  const child = spawn("script", ["-qefc", command, "/dev/null"], {
    env: {
      ...process.env,
      SOURCE_DATABASE_URL: "",
      TARGET_DATABASE_URL: "",
      COLUMNS: "160",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let screen = "";
  child.stdout.on("data", (d) => (screen += d));
  child.stderr.on("data", (d) => (screen += d));
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, screen })));
}

describe("output and bad input (source 17 -> target 17)", () => {
  let source: TestDatabase;
  let target: TestDatabase;
  let dir: string;

  before(async () => {
    [source, target] = await Promise.all([testDatabase("17"), testDatabase("17")]);
    dir = await mkdtemp(join(tmpdir(), "xmin-sync-output-"));
    await source.sql(`
      CREATE TABLE public.big (id int PRIMARY KEY, pad text NOT NULL);
      INSERT INTO public.big SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, 600000) i;
      CREATE TABLE public.small (id int PRIMARY KEY, v text);
      INSERT INTO public.small SELECT i, 'v' || i FROM generate_series(1, 100) i;
      CREATE VIEW public.vw AS SELECT id, v FROM public.small;
    `);
  });
  after(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const conn = () => ["--source", source.url(), "--target", target.url()];

  test("on a terminal: one line per log event, progress bars on lines of their own", async () => {
    const { code, screen } = await onTerminal(
      ["sync", ...conn(), "--table", "public.big", "--table", "public.small"],
      {
        LOG_LEVEL: "info",
      },
    );
    const text = screen.replace(COLOR, "");
    assert.equal(code, 0, text);
    // A log line written while a bar is drawn, without the cursor moving in
    // between, would land on the bar's line: the bug this guards against.
    const segments = text.split(BREAK).filter((s) => s.trim() !== "");
    const logs = segments.filter((s) => /^\[\d\d:\d\d:\d\d\.?\d*\] (INFO|WARN)/.test(s));
    assert.ok(logs.length >= 6, `log lines:\n${text}`);
    assert.ok(
      logs.some((l) => /^\[[\d:.]+\] INFO: public\.big: planned \{"mode":"full"/.test(l)),
      `the table, then the message, then its fields on one line:\n${logs.join("\n")}`,
    );
    // No pino-pretty block lines (`    mode: "full"`), and nothing glued to a bar.
    assert.ok(!segments.some((s) => /^\s+\w+: /.test(s)), `no multi-line blocks:\n${text}`);
    for (const s of segments) {
      assert.doesNotMatch(
        s,
        /(MB\/s|%|ETA \d+s).*\[\d\d:\d\d:\d\d/,
        `a log line glued to a bar: ${s}`,
      );
    }
    assert.ok(
      segments.some((s) => /^public\.big\s+copy\s+\|[█░]+\|\s+\d+% \d+\/\d+ MB/.test(s)),
      `a progress bar for the big table's copy:\n${text}`,
    );
    assert.ok(
      segments.some((s) =>
        /^ok {3}public\.big -> public\.big: full \(first run\), 600000 rows copied/.test(s),
      ),
      text,
    );
  });

  test("--wait says whom it waits for, and --wait-timeout gives up", async () => {
    await runCli(["sync", ...conn(), "--table", "public.small"]);
    // Another session holds the table's lock as a run would.
    const holder = await target.client();
    await holder.query("SET application_name = 'the-other-run'");
    await holder.query("SELECT pg_advisory_lock($1::int, hashtext($2) & 2147483647)", [
      0x786d696e,
      '"public"."small"',
    ]);
    const pid = (await holder.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!
      .pid;
    try {
      const started = Date.now();
      const r = await runCli(
        ["sync", ...conn(), "--table", "public.small", "--wait", "--wait-timeout", "2s"],
        {
          env: { LOG_LEVEL: "info" },
        },
      );
      assert.ok(Date.now() - started < 30_000);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(
        r.stdout,
        new RegExp(
          `^FAIL public\\.small -> public\\.small: gave up after 2s waiting for another xmin-sync run syncing public\\.small \\(target backend pid ${pid}\\)`,
        ),
      );
      assert.match(
        r.stderr,
        new RegExp(
          `"heldByPid":${pid},"heldSince":"[^"]+","heldByApplication":"the-other-run","giveUpAfterMs":2000,"msg":"waiting for another xmin-sync run to finish with public\\.small \\(target backend pid ${pid}\\)`,
        ),
      );

      const noWait = await runCli(["sync", ...conn(), "--table", "public.small"]);
      assert.equal(noWait.code, 1);
      assert.match(
        noWait.stdout,
        new RegExp(
          `another xmin-sync run is syncing public\\.small \\(target backend pid ${pid}\\); try again when it finishes`,
        ),
      );

      // A run that waits, queued behind the lock: released, it goes ahead.
      const waiting = spawnCli(["sync", ...conn(), "--table", "public.small", "--wait", "--json"], {
        env: { LOG_LEVEL: "info" },
      });
      for (let i = 0; ; i++) {
        const queued = await target.sql(
          "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory' AND datname = current_database()",
        );
        if (queued.length > 0) break;
        if (waiting.child.exitCode !== null || i > 600) assert.fail((await waiting.done).stderr);
        await new Promise((r) => setTimeout(r, 50));
      }
      await holder.query("SELECT pg_advisory_unlock_all()");
      const waited = await waiting.done;
      assert.equal(waited.code, 0, waited.stdout + waited.stderr);
    } finally {
      await holder.end();
    }
  });

  test("help: examples, no (default: []), only the flags a command takes; global --debug", async () => {
    for (const cmd of ["sync", "check", "validate", "status", "list", "init"]) {
      const r = await runCli([cmd, "--help"]);
      assert.equal(r.code, 0);
      assert.match(r.stdout, /\nExamples:\n {2}\$ xmin-sync /, cmd);
      assert.ok(!r.stdout.includes("(default: [])"), `${cmd}: ${r.stdout}`);
    }
    const status = await runCli(["status", "--help"]);
    // (--table there picks the tables of --history.)
    for (const flag of ["--source", "--full", "--key", "--wait"]) {
      assert.ok(!status.stdout.includes(flag), `status --help lists ${flag}`);
    }
    const debug = await runCli(["--debug", "sync", "--table", "a.b.c"]);
    assert.equal(debug.code, 2);
    assert.match(debug.stderr, STACK);
  });

  test("a reader that closes the pipe early (--help | head) ends the output, not in a stack trace", async () => {
    const child = spawn(process.execPath, [CLI, "sync", "--help"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout.destroy();
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise((resolve) => child.on("close", resolve));
    assert.equal(code, 0, stderr);
    assert.equal(stderr, "");
  });

  test("every bad input: one line, exit 2, naming the thing (and the side)", async () => {
    const sync = (...args: string[]) => runCli(["sync", ...conn(), ...args]);
    const view = await sync("--table", "public.vw", "--mode", "xmin");
    assert.equal(view.code, 2);
    assert.match(
      view.stdout,
      /^FAIL public\.vw -> public\.vw: source: is a view: its rows have no xmin; use mode timestamp with a cursor column, or mode full \(--mode, --cursor; mode:, cursor: in the config\)/,
    );
    const cursor = await sync("--table", "public.small", "--mode", "timestamp", "--cursor", "nope");
    assert.equal(cursor.code, 2);
    assert.match(
      cursor.stdout,
      /^FAIL public\.small -> public\.small: source: cursor column "nope" is not a column \(0\.0s\)$/m,
    );
    const noCursor = await sync("--table", "public.small", "--mode", "timestamp");
    assert.equal(noCursor.code, 2);
    assert.match(
      noCursor.stdout,
      /mode timestamp needs a cursor column \(--cursor COLUMN after its --table/,
    );

    // A newline in a name (legal, quoted, in PostgreSQL): every line of output stays one line.
    const newline = await sync("--table", 'public."a\nb"');
    assert.equal(newline.code, 2);
    assert.equal(
      newline.stdout,
      'FAIL public."a\\nb" -> public."a\\nb": source: no such table (0.0s)\n',
    );
    assert.equal(lines(newline.stderr).length, 1, newline.stderr);
    // (A command-line argument is at most 128 kB on Linux: the config below takes megabytes.)
    badInput(
      await sync("--table", `public.${"x".repeat(100_000)}`),
      /^xmin-sync: --table: name of \d+ characters: PostgreSQL names are at most 63 bytes$/,
    );
    badInput(
      await runCli(["sync", ...conn(), "--table", "t"], { env: { LOG_LEVEL: "verbose" } }),
      /^xmin-sync: LOG_LEVEL "verbose" is not a log level: use debug, info, warn, error, silent$/,
    );

    const bomb = join(dir, "bomb.yaml");
    await writeFile(
      bomb,
      [
        "a: &a [x, x, x, x, x, x, x, x, x, x]",
        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]",
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]",
        "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]",
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]",
        "tables: [{source: t}]",
      ].join("\n"),
    );
    badInput(
      await runCli(["sync", "--config", bomb]),
      /^xmin-sync: .*bomb\.yaml:2: YAML aliases expand to too much/,
    );
    const huge = join(dir, "huge.yaml");
    await writeFile(huge, `tables:\n  - source: public.${"y".repeat(3 * 1048576)}\n`);
    const started = Date.now();
    const hugeRun = await runCli(["sync", "--config", huge]);
    badInput(
      hugeRun,
      /^xmin-sync: .*huge\.yaml:2: tables\.0\.source: name of \d+ characters: PostgreSQL names are at most 63 bytes$/,
    );
    assert.ok(Date.now() - started < 10_000, `quick (${Date.now() - started} ms)`);
    assert.ok(hugeRun.stderr.length < 300);
    const batches = join(dir, "batches.yaml");
    await writeFile(batches, "minBatchSize: 5000000\ntables: [{source: public.small}]\n");
    badInput(
      await runCli(["sync", ...conn(), "--config", batches]),
      /^xmin-sync: .*batches\.yaml: minBatchSize \(5000000\) is more than maxBatchSize \(1000000, the default for maxBatchSize\)$/,
    );

    // --json: a failure before any table still gives stdout one JSON object.
    for (const args of [
      ["sync", "--config", bomb, "--json"],
      ["sync", "--tabel", "x", "--json"],
      ["validate", ...conn(), "--table", "public.vw", "--table", "x.y.z", "--json"],
      ["check", "--json"],
    ]) {
      const r = await runCli(args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(lines(r.stdout).length, 1, r.stdout);
      assert.equal(r.json[0]!.status, "error");
      assert.equal(typeof r.json[0]!.error, "string");
    }
  });

  test("status: rows, last run in local time with its offset", async () => {
    const r = await runCli(["status", "--target", target.url()], { env: { TZ: "Asia/Kolkata" } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /^public\.small <- public\.small: (full|xmin), ~100 rows, watermark \d+, last run \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+05:30 \((\d+s|\d+ min) ago: \d+ copied, \d+ inserted, \d+ updated, 0 deleted\), \d+ runs(; FAILED since, last at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+05:30: source: mode timestamp needs a cursor column .*)?$/m,
    );
    const json = await runCli(["status", "--target", target.url(), "--json"]);
    const small = json.json.find((j) => j.target === "public.small")!;
    assert.equal(small.rowsEstimate, 100);
    assert.equal(typeof small.secondsSinceLastRun, "number");
    assert.deepEqual(Object.keys(small.lastRun as object), [
      "rowsCopied",
      "inserted",
      "updated",
      "deleted",
    ]);
  });
});
