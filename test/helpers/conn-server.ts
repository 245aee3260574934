import assert from "node:assert/strict";
import { chown, writeFile } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import { serverUser } from "../../src/demo/servers.js";
import { runCli, type CliResult } from "./cli.js";
import type { Cluster } from "./cluster.js";

/**
 * For tests of how the CLI connects: a server's pg_hba.conf rewritten and
 * reloaded, SQL through its Unix socket (open whatever TCP requires), and a
 * sync whose rows are counted on the target.
 */

/** Gives the server's user a file it must read (its key must be its own, mode 0600). */
export async function handToPostgres(path: string): Promise<void> {
  const ids = serverUser();
  if (ids) await chown(path, ids.uid, ids.gid);
}

/**
 * Runs SQL through the server's Unix socket, which pg_hba.conf's `local`
 * line keeps open to the tests whatever it says about TCP.
 */
export async function socketSql<T extends pg.QueryResultRow = pg.QueryResultRow>(
  cluster: Cluster,
  text: string,
  params: unknown[] = [],
  database = "postgres",
): Promise<T[]> {
  const c = new pg.Client({ host: cluster.dir, port: cluster.port, user: "postgres", database });
  await c.connect();
  try {
    return (await c.query<T>(text, params)).rows;
  } finally {
    await c.end();
  }
}

/** Replaces pg_hba.conf (keeping the tests' socket open) and reloads. */
export async function writeHba(cluster: Cluster, hba: string[]): Promise<void> {
  const path = join(cluster.dataDir, "pg_hba.conf");
  await writeFile(path, ["local all all trust", ...hba].join("\n") + "\n");
  await handToPostgres(path);
  await reload(cluster);
}

let reloads = 0;

/**
 * Reloads the configuration and waits until new sessions see it: the
 * postmaster rereads its files when it gets to the signal, and a session
 * started before that would still use the old pg_hba.conf.
 */
async function reload(cluster: Cluster): Promise<void> {
  const mark = String(++reloads);
  await socketSql(cluster, `ALTER SYSTEM SET xmin_sync_test.reload = '${mark}'`);
  await socketSql(cluster, "SELECT pg_reload_conf()");
  for (let i = 0; i < 500; i++) {
    const [row] = await socketSql<{ v: string | null }>(
      cluster,
      "SELECT current_setting('xmin_sync_test.reload', true) AS v",
    );
    if (row?.v === mark) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error("the server did not reload its configuration");
}

let syncs = 0;

/**
 * Runs `xmin-sync sync` of `table` from `source` into a new table of schema
 * conn in database `targetDb` of `server`: the CLI's result and the rows
 * the target table got (-1 when the run failed).
 */
export async function syncAndCount(
  server: Cluster,
  targetDb: string,
  args: { source: string; target: string; table: string; env?: NodeJS.ProcessEnv },
): Promise<CliResult & { rows: number }> {
  const into = `conn.t${++syncs}`;
  const r = await runCli(
    ["sync", "--source", args.source, "--target", args.target, "--table", `${args.table}:${into}`],
    { env: args.env ?? {} },
  );
  if (r.code !== 0) return { ...r, rows: -1 };
  const [row] = await socketSql<{ n: number }>(
    server,
    `SELECT count(*)::int AS n FROM ${into}`,
    [],
    targetDb,
  );
  assert.ok(row);
  return { ...r, rows: row.n };
}

/**
 * The layout these tests share on one server: a superuser `loader` with
 * `password`, a source database vendor with fds.ticker (`rows` rows) and an
 * empty target database wh.
 */
export async function createVendorAndWarehouse(
  server: Cluster,
  password: string,
  rows: number,
): Promise<void> {
  await socketSql(
    server,
    `CREATE ROLE loader LOGIN SUPERUSER PASSWORD ${pg.escapeLiteral(password)}`,
  );
  for (const db of ["vendor", "wh"]) await socketSql(server, `CREATE DATABASE ${db}`);
  await socketSql(
    server,
    "CREATE SCHEMA fds; CREATE TABLE fds.ticker (id int PRIMARY KEY, v text)",
    [],
    "vendor",
  );
  await socketSql(
    server,
    "INSERT INTO fds.ticker SELECT i, repeat('v', 100) FROM generate_series(1, $1::int) i",
    [rows],
    "vendor",
  );
}
