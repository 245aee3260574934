import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "./helpers/cli.js";
import { startCluster, type Cluster } from "./helpers/cluster.js";
import { assertOneLineError } from "./helpers/one-line.js";
import {
  createVendorAndWarehouse,
  socketSql,
  syncAndCount,
  writeHba,
} from "./helpers/conn-server.js";

/**
 * The forms of connection a psql user brings, run through the built CLI
 * against a server that wants a SCRAM password over TCP: keyword/value
 * strings, the PG* variables, a .pgpass file (PGPASSFILE, passfile),
 * Airflow's connection variables (URI and JSON), application_name and
 * connect_timeout. Source and target are two databases of the one server.
 */

const PASSWORD = "Conn pa$$ 'quoted' \\ w:rd@x";

describe("connections as psql makes them", () => {
  let server: Cluster;
  let dir: string;
  let base: NodeJS.ProcessEnv;
  const keyword = (value: string) => `'${value.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;

  const sync = (source: string, target: string, env: NodeJS.ProcessEnv = {}) =>
    syncAndCount(server, "wh", { source, target, table: "fds.ticker", env });

  before(async () => {
    server = await startCluster({ version: "17", settings: { log_connections: "on" } });
    dir = await mkdtemp(join(tmpdir(), "xmin-sync-conn-"));
    await createVendorAndWarehouse(server, PASSWORD, 50);
    await writeHba(server, ["host all all 127.0.0.1/32 scram-sha-256"]);
    // What a user's shell would not have: no stray PG* settings of the machine.
    base = { HOME: dir, PGPASSFILE: join(dir, "none") };
  });
  after(async () => {
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("keyword/value strings, with a quoted password", async () => {
    const kw = (db: string) =>
      `host=127.0.0.1 port=${server.port} dbname=${db} user=loader password=${keyword(PASSWORD)}`;
    const r = await sync(kw("vendor"), kw("wh"), base);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.rows, 50);
  });

  test("PG* variables fill what the string leaves out", async () => {
    const env = {
      ...base,
      PGHOST: "127.0.0.1",
      PGPORT: String(server.port),
      PGUSER: "loader",
      PGPASSWORD: PASSWORD,
      PGDATABASE: "vendor",
    };
    // A keyword string that names only its sslmode, and a URL naming only its database.
    const r = await sync("sslmode=prefer", "postgres:///wh", env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.rows, 50);
  });

  test("a .pgpass file (PGPASSFILE, passfile) gives the password; none: one clear line", async () => {
    const pgpass = join(dir, "pgpass");
    const escaped = PASSWORD.replace(/\\/g, "\\\\").replace(/:/g, "\\:");
    await writeFile(pgpass, `# ours\n127.0.0.1:${server.port}:*:loader:${escaped}\n`, {
      mode: 0o600,
    });
    const env = { ...base, PGHOST: "127.0.0.1", PGPORT: String(server.port), PGUSER: "loader" };
    const r = await sync("dbname=vendor", "dbname=wh", { ...env, PGPASSFILE: pgpass });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.rows, 50);
    const kw = await sync(`dbname=vendor passfile=${pgpass}`, `dbname=wh passfile=${pgpass}`, env);
    assert.equal(kw.code, 0, kw.stderr);

    const none = await runCli(["status", "--target", "dbname=wh"], { env });
    assertOneLineError(
      none,
      1,
      new RegExp(
        `^xmin-sync: cannot connect to target postgres://loader@127\\.0\\.0\\.1:${server.port}/wh: the server asks for a password and none was given \\(in the connection string, PGPASSWORD, or a line of ${dir}/none\\)$`,
      ),
    );
  });

  test("a Unix socket directory as host, in a keyword string and as a URL's encoded host", async () => {
    const r = await sync(
      `host=${server.dir} port=${server.port} user=postgres dbname=vendor sslmode=require`,
      `postgres://postgres@${encodeURIComponent(server.dir)}:${server.port}/wh`,
      base,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.rows, 50);
  });

  test("a wrong password: the server's message, the side, no password", async () => {
    const r = await runCli([
      "status",
      "--target",
      `postgres://loader:${encodeURIComponent("wrong-" + PASSWORD)}@127.0.0.1:${server.port}/wh?sslmode=disable`,
    ]);
    assertOneLineError(
      r,
      1,
      /^xmin-sync: cannot connect to target postgres:\/\/loader:\*\*\*@127\.0\.0\.1:\d+\/wh: password authentication failed for user "loader"$/,
    );
  });

  test("Airflow: *_POSTGRES_CONN_ID names AIRFLOW_CONN_<ID>, as a URI or as JSON", async () => {
    const env = {
      ...base,
      SOURCE_POSTGRES_CONN_ID: "vendor_db",
      AIRFLOW_CONN_VENDOR_DB: `postgresql://loader:${encodeURIComponent(PASSWORD)}@127.0.0.1:${server.port}/vendor?sslmode=prefer&cursor=realdictcursor`,
      TARGET_POSTGRES_CONN_ID: "warehouse",
      AIRFLOW_CONN_WAREHOUSE: JSON.stringify({
        conn_type: "postgres",
        host: "127.0.0.1",
        port: server.port,
        login: "loader",
        password: PASSWORD,
        schema: "wh",
        extra: { application_name: "airflow-task" },
      }),
    };
    const r = await runCli(["sync", "--table", "fds.ticker:conn.airflow", "--json"], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json[0]?.status, "ok");
    const [row] = await socketSql<{ n: number }>(
      server,
      "SELECT count(*)::int AS n FROM conn.airflow",
      [],
      "wh",
    );
    assert.equal(row?.n, 50);
    const log = await readFile(join(server.dir, "server.log"), "utf8");
    assert.match(log, /database=wh application_name=airflow-task/);

    const missing = await runCli(["status"], { env: { ...env, AIRFLOW_CONN_WAREHOUSE: "" } });
    assertOneLineError(
      missing,
      2,
      /^xmin-sync: TARGET_POSTGRES_CONN_ID is warehouse, but AIRFLOW_CONN_WAREHOUSE is not set$/,
    );
  });

  test("application_name: xmin-sync <side> unless the string or PGAPPNAME says otherwise", async () => {
    const url = (db: string, q = "") =>
      `postgres://loader:${encodeURIComponent(PASSWORD)}@127.0.0.1:${server.port}/${db}${q}`;
    const r = await sync(url("vendor", "?application_name=nightly%20load"), url("wh"), base);
    assert.equal(r.code, 0, r.stderr);
    const s = await runCli(["status", "--target", url("wh")], {
      env: { ...base, PGAPPNAME: "from-env" },
    });
    assert.equal(s.code, 0, s.stderr);
    const log = await readFile(join(server.dir, "server.log"), "utf8");
    assert.match(log, /database=vendor application_name=nightly load/);
    assert.match(log, /database=wh application_name=xmin-sync target/);
    assert.match(log, /database=wh application_name=from-env/);
  });

  test("connect_timeout: a server that never answers fails after that long", async () => {
    const sockets = new Set<Socket>();
    const silent: Server = createServer((s) => sockets.add(s));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const port = (silent.address() as { port: number }).port;
    try {
      const started = Date.now();
      const r = await runCli([
        "status",
        "--target",
        `host=127.0.0.1 port=${port} user=u connect_timeout=2`,
      ]);
      assertOneLineError(
        r,
        1,
        /cannot connect to target postgres:\/\/u@127\.0\.0\.1:\d+\/u: no answer within 2 s \(connect_timeout\)$/,
      );
      assert.ok(Date.now() - started < 20_000);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  test("not a connection string: exit 2, one line naming the side", async () => {
    assertOneLineError(
      await runCli(["sync", "--source", "notaurl", "--target", "host=h", "--table", "t"]),
      2,
      /^xmin-sync: source connection string is neither a postgres:\/\/ URL nor keyword=value pairs \(host=… dbname=…\)$/,
    );
    assertOneLineError(
      await runCli(["status", "--target", "host=h sslmode=sometimes"]),
      2,
      /^xmin-sync: target connection: sslmode must be one of disable, allow, prefer, require, verify-ca, verify-full, not "sometimes"$/,
    );
  });
});
