import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parseConfig } from "../src/config/load.js";
import { InputError } from "../src/input-error.js";
import { ParallelismController, type LoadSample } from "../src/schedule/adaptive.js";
import { parseListen } from "../src/serve/server.js";
import { runCli } from "./helpers/cli.js";

/**
 * The fleet's config keys (control, timezone, historyRetention, per table
 * schedule or every) are validated with one clear line naming file, line
 * and key; and the worker's parallelism controller backs off when the
 * source is busy and grows only while throughput grows with it.
 */

const head = "source: postgres://s/db\ntarget: postgres://t/db\n";

function rejects(text: string, expected: RegExp): void {
  assert.throws(
    () => parseConfig(text, "sync.yaml", {}),
    (err: unknown) => {
      assert.ok(err instanceof InputError, String(err));
      assert.ok(!err.message.includes("\n"), err.message);
      assert.match(err.message, expected);
      return true;
    },
  );
}

describe("fleet config keys", () => {
  test("are accepted", () => {
    const c = parseConfig(
      `${head}control: postgres://c/queue\ntimezone: Europe/Paris\nhistoryRetention: 7d\ntables:
  - source: a.b
    schedule: "30 2 * * 1-5"
  - source: a.c
    every: 1s
  - source: a.d
`,
      "sync.yaml",
      {},
    );
    assert.equal(c.control, "postgres://c/queue");
    assert.equal(c.timezone, "Europe/Paris");
    assert.equal(c.historyRetention, "7d");
    assert.equal(c.tables![0]!.schedule, "30 2 * * 1-5");
    assert.equal(c.tables![1]!.every, "1s");
  });

  test("schedule and every are exclusive", () => {
    rejects(
      `${head}tables:\n  - source: a.b\n    schedule: "* * * * *"\n    every: 30s\n`,
      /^sync\.yaml:6: tables\.0\.every: give schedule or every, not both$/,
    );
  });

  test("cron expressions are checked, with five fields", () => {
    rejects(
      `${head}tables:\n  - source: a.b\n    schedule: "61 * * * *"\n`,
      /^sync\.yaml:5: tables\.0\.schedule: invalid cron expression: /,
    );
    rejects(
      `${head}tables:\n  - source: a.b\n    schedule: "*/10 * * * * *"\n`,
      /^sync\.yaml:5: tables\.0\.schedule: expected a cron expression of 5 fields .*every: 30s$/,
    );
  });

  test("every is an interval of at least a second", () => {
    rejects(
      `${head}tables:\n  - source: a.b\n    every: 500ms\n`,
      /tables\.0\.every: expected an interval like 30s, 5m, 1h/,
    );
    rejects(
      `${head}tables:\n  - source: a.b\n    every: 0s\n`,
      /tables\.0\.every: must be at least 1s/,
    );
  });

  test("timezone and historyRetention are checked", () => {
    rejects(
      `${head}timezone: Mars/Olympus\ntables:\n  - source: a.b\n`,
      /^sync\.yaml:3: timezone: unknown time zone/,
    );
    rejects(
      `${head}historyRetention: forever\ntables:\n  - source: a.b\n`,
      /^sync\.yaml:3: historyRetention: expected a duration like 12h, 30d/,
    );
  });

  test("--http takes HOST:PORT", () => {
    assert.deepEqual(parseListen("0.0.0.0:9187"), { host: "0.0.0.0", port: 9187 });
    assert.deepEqual(parseListen("9187"), { host: "127.0.0.1", port: 9187 });
    assert.deepEqual(parseListen("[::1]:0"), { host: "::1", port: 0 });
    assert.throws(() => parseListen("localhost"), /--http takes HOST:PORT/);
  });

  test("the worker refuses bad input in one line, exit 2", async () => {
    const r = await runCli(["worker"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr.trim(), /^xmin-sync: required option '--config <file>' not specified$/);
    const s = await runCli(["serve", "--http", "nowhere", "--target", "postgres://t/db"]);
    assert.equal(s.code, 2);
    assert.match(s.stderr.trim(), /^xmin-sync: --http takes HOST:PORT/);
  });
});

describe("parallelism controller", () => {
  const quiet = (at: number, extra: Partial<LoadSample> = {}): LoadSample => ({
    at,
    latencyMs: 2,
    activeBackends: 0,
    bytes: 1_000_000,
    demand: true,
    ...extra,
  });

  test("halves when the source is busy, and climbs back once it is quiet", () => {
    const c = new ParallelismController({ min: 1, max: 8, initial: 4, busyBackends: 8 });
    let t = 0;
    for (let i = 0; i < 5; i++) c.observe(quiet((t += 2000), { demand: false }));
    assert.equal(c.limit, 4);
    const d = c.observe(quiet((t += 2000), { activeBackends: 10 }));
    assert.equal(d.limit, 2);
    assert.match(d.reason!, /source busy \(10 other sessions in a transaction\): 4 -> 2/);
    c.observe(quiet((t += 2000), { latencyMs: 30 }));
    c.observe(quiet((t += 2000)));
    assert.equal(c.limit, 2, "one slow probe is a hiccup");
    c.observe(quiet((t += 2000), { latencyMs: 30 }));
    c.observe(quiet((t += 2000), { latencyMs: 30 }));
    assert.equal(c.limit, 1, "a probe statement slow twice in a row counts as busy");
    const limits = [];
    for (let i = 0; i < 9; i++) limits.push(c.observe(quiet((t += 2000))).limit);
    // Quiet for 10 s, then one stream more per sample up to what worked
    // before, without trials; no step above it for a minute after the busy spell.
    assert.deepEqual(limits, [1, 1, 1, 1, 2, 3, 4, 4, 4]);
  });

  test("grows only while throughput grows with it", () => {
    const c = new ParallelismController({ min: 1, max: 8, initial: 2, busyBackends: 8 });
    const reasons: string[] = [];
    let t = 0;
    const feed = (n: number, bytes: number) => {
      for (let i = 0; i < n; i++) {
        const d = c.observe(quiet((t += 2000), { bytes }));
        if (d.reason) reasons.push(d.reason);
      }
    };
    feed(6, 1_000_000); // 0.5 MB/s at 2 streams
    feed(5, 2_000_000); // 1 MB/s with 3: keep
    feed(6, 2_000_000); // still 1 MB/s with 4: undo
    assert.deepEqual(
      reasons.map((r) => r.replace(/\(.*\)|[\d.]+ MB\/s/g, "…")),
      [
        "trying 3 …",
        "throughput grew … -> …: keeping 3",
        "trying 4 …",
        "throughput did not grow …: back to 3",
      ],
    );
    assert.equal(c.limit, 3);
    feed(20, 2_000_000);
    assert.equal(c.limit, 3, "and waits a minute before trying again");
  });

  test("does not grow without work waiting", () => {
    const c = new ParallelismController({ min: 1, max: 8, initial: 2, busyBackends: 8 });
    for (let t = 2000; t < 60_000; t += 2000) c.observe(quiet(t, { demand: false }));
    assert.equal(c.limit, 2);
  });
});
