import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli, spawnCli, type CliResult } from "./helpers/cli.js";
import { startCluster, type Cluster } from "./helpers/cluster.js";
import { createVendorAndWarehouse, socketSql } from "./helpers/conn-server.js";
import { configureServer, makeCa, makeCert } from "./helpers/tls.js";

/**
 * No password in any output, whatever fails: a series of failing runs of the
 * built CLI (wrong password, unreachable and unknown hosts, TLS refused,
 * malformed strings, killed connections), each also with --debug and --json,
 * through sync, validate and status, with passwords in URLs, keyword strings,
 * PGPASSWORD and .pgpass. Every output is searched for the marker all the
 * passwords share; then the target's state tables.
 */

const MARK = "s3cr3t";
/** The role's real password. */
const SECRET = `Zebra-${MARK}-Q7`;
/** Spaces, quotes and URL delimiters, for the forms that must quote or encode them. */
const ODD = `Kiwi ${MARK}'Q8/@:?`;

describe("no secret in any output", () => {
  let server: Cluster;
  let dir: string;
  let otherCa: string;
  const outputs: Array<{ what: string; text: string }> = [];

  const url = (password: string, db: string, rest = "", port?: number) =>
    `postgres://loader:${encodeURIComponent(password)}@127.0.0.1:${port ?? server.port}/${db}${rest}`;
  const kw = (password: string, db: string, rest = "", port?: number) =>
    `host=127.0.0.1 port=${port ?? server.port} dbname=${db} user=loader password='${password.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}' ${rest}`;

  /** Runs the CLI (also with --debug and with --json when `variants`); keeps every output. */
  async function fail(what: string, args: string[], env: NodeJS.ProcessEnv = {}, variants = false) {
    const results: CliResult[] = [];
    for (const extra of variants ? [[], ["--debug"], ["--json"]] : [[]]) {
      const r = await runCli([...args, ...extra], { env });
      outputs.push({ what: `${what} ${extra.join(" ")}`, text: r.stdout + r.stderr });
      assert.notEqual(r.code, 0, `${what} ${extra.join(" ")} should fail: ${r.stdout}${r.stderr}`);
      results.push(r);
    }
    return results;
  }
  const syncArgs = (source: string, target: string) => [
    "sync",
    "--source",
    source,
    "--target",
    target,
    "--table",
    "fds.ticker",
  ];

  before(async () => {
    server = await startCluster({ version: "17" });
    dir = await mkdtemp(join(tmpdir(), "xmin-sync-secrets-"));
    await chmod(dir, 0o755);
    await makeCa(dir, "ca");
    otherCa = await makeCa(dir, "otherca");
    const cert = await makeCert(dir, "server", {
      cn: "localhost",
      ca: "ca",
      san: ["DNS:localhost"],
    });
    await createVendorAndWarehouse(server, SECRET, 100_000);
    await socketSql(
      server,
      "CREATE TABLE fds.small AS SELECT i AS id FROM generate_series(1, 10) i; ALTER TABLE fds.small ADD PRIMARY KEY (id)",
      [],
      "vendor",
    );
    await configureServer(server, { ...cert, hba: ["host all all 127.0.0.1/32 scram-sha-256"] });
  });
  after(async () => {
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("wrong passwords, from a URL, a keyword string, PGPASSWORD and .pgpass", async () => {
    await fail("wrong URL password", syncArgs(url(ODD, "vendor"), url(SECRET, "wh")), {}, true);
    await fail("wrong keyword password", syncArgs(url(SECRET, "vendor"), kw(ODD, "wh")));
    const env = { PGHOST: "127.0.0.1", PGPORT: String(server.port), PGUSER: "loader" };
    await fail("wrong PGPASSWORD", ["status", "--target", "dbname=wh"], {
      ...env,
      PGPASSWORD: ODD,
    });
    const pgpass = join(dir, "pgpass");
    await writeFile(pgpass, `*:*:*:loader:${ODD.replace(/:/g, "\\:")}\n`, { mode: 0o600 });
    await fail(
      "wrong .pgpass",
      ["validate", "--source", "dbname=vendor", "--target", "dbname=wh", "--table", "fds.ticker"],
      { ...env, PGPASSFILE: pgpass },
      true,
    );
  });

  test("unreachable and unknown hosts, through sync, validate and status", async () => {
    await fail("closed port", syncArgs(url(SECRET, "vendor", "", 1), url(SECRET, "wh")), {}, true);
    await fail("closed port keyword", ["status", "--target", kw(ODD, "wh", "", 1)]);
    await fail("unknown host", [
      "validate",
      "--source",
      `postgres://loader:${encodeURIComponent(ODD)}@nonexistent.invalid/vendor?connect_timeout=3`,
      "--target",
      url(SECRET, "wh"),
      "--table",
      "fds.ticker",
    ]);
  });

  test("TLS: a wrong CA, a missing CA file", async () => {
    await fail(
      "wrong CA",
      syncArgs(
        url(SECRET, "vendor", `?sslmode=verify-ca&sslrootcert=${otherCa}`),
        url(SECRET, "wh"),
      ),
      {},
      true,
    );
    await fail("missing CA file", [
      "status",
      "--target",
      kw(ODD, "wh", "sslmode=verify-full sslrootcert=/nonexistent/ca.crt"),
    ]);
  });

  test("malformed strings", async () => {
    const bad = [
      `loader:${SECRET}@127.0.0.1:${server.port}/wh`,
      `//reader:${SECRET}@127.0.0.1/db`,
      `loader:${ODD}@127.0.0.1:${server.port}/wh`,
      `host=127.0.0.1 password='${SECRET}`,
      `host=127.0.0.1 password=${SECRET} ${SECRET}`,
      `host=127.0.0.1 ${SECRET}=x`,
      `postgres://loader:${SECRET}@127.0.0.1:port/wh`,
      `postgres://loader:${ODD}@127.0.0.1/wh`,
      `mysql://loader:${SECRET}@127.0.0.1/wh`,
      `jdbc:postgresql://127.0.0.1/wh?user=loader&password=${SECRET}`,
      `postgres://127.0.0.1/wh?password=${SECRET}&sslmode=sometimes`,
    ];
    // No server is involved: the runs go in parallel. Each once; the first
    // three with --debug and --json, and through status, too.
    await Promise.all(
      bad.map(async (text, i) => {
        const variants = i < 3;
        const [plain] = await fail(
          `malformed ${text}`,
          syncArgs(url(SECRET, "vendor"), text),
          {},
          variants,
        );
        assert.equal(plain!.code, 2, `${text}: ${plain!.stderr}`);
        assert.match(plain!.stderr, /^xmin-sync: target connection/, text);
        if (variants) await fail(`malformed status ${text}`, ["status", "--target", text]);
      }),
    );
  });

  test("connections killed mid-run, with --debug", async () => {
    const run = spawnCli(
      [
        ...syncArgs(kw(SECRET, "vendor"), url(SECRET, "wh", "?sslmode=require")),
        "--debug",
        "--json",
      ],
      { env: { LOG_LEVEL: "debug" } },
    );
    let killed = 0;
    let exited = false;
    void run.done.then(() => (exited = true));
    while (!exited) {
      const rows = await socketSql<{ t: boolean }>(
        server,
        `SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity
          WHERE application_name LIKE 'xmin-sync%' AND backend_type = 'client backend'`,
      );
      killed += rows.filter((r) => r.t).length;
      await new Promise((r) => setTimeout(r, 150));
    }
    const r = await run.done;
    outputs.push({ what: "killed", text: r.stdout + r.stderr });
    assert.ok(killed > 0, "some connection was killed");
    // A run that does not fail shows its --debug logs; both must be clean.
    const ok = await runCli(
      [
        "sync",
        "--source",
        url(SECRET, "vendor"),
        "--target",
        kw(SECRET, "wh"),
        "--table",
        "fds.small",
        "--debug",
      ],
      { env: { LOG_LEVEL: "debug" } },
    );
    outputs.push({ what: "debug run", text: ok.stdout + ok.stderr });
    assert.equal(ok.code, 0, ok.stderr);
  });

  test("every output, and the target's state tables, are free of the passwords", async () => {
    assert.ok(outputs.length > 30, `${outputs.length} outputs`);
    if (process.env.SHOW_OUTPUTS) for (const o of outputs) console.log(`--- ${o.what}\n${o.text}`);
    for (const o of outputs) {
      assert.ok(!o.text.includes(MARK), `${o.what}:\n${o.text}`);
      assert.ok(!o.text.includes(encodeURIComponent(ODD)), o.what);
    }
    const tables = await socketSql<{ t: string }>(
      server,
      `SELECT format('%I.%I', table_schema, table_name) AS t FROM information_schema.tables
        WHERE table_schema = 'xmin_sync'`,
      [],
      "wh",
    );
    assert.ok(tables.length > 0, "the runs left state behind");
    for (const { t } of tables) {
      const [row] = await socketSql<{ text: string | null }>(
        server,
        `SELECT string_agg(x::text, ' ') AS text FROM ${t} x`,
        [],
        "wh",
      );
      assert.ok(!(row?.text ?? "").includes(MARK), `${t}: ${row?.text}`);
    }
  });
});
