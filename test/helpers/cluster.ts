import { rm } from "node:fs/promises";
import { join } from "node:path";
import {
  appendSettings,
  clusterDir,
  hasSystemPostgres,
  openCluster,
  runAsPostgres,
  startCluster as startAnyCluster,
  SYSTEM_PG_BIN,
  type Cluster,
  type ClusterOptions,
} from "../../src/servers/cluster.js";

export { runAsPostgres, hasSystemPostgres, SYSTEM_PG_BIN };
export type { Cluster, Version } from "../../src/servers/cluster.js";

/**
 * The test runner (scripts/test.mjs) stops and removes whatever is left
 * under this prefix, which names its run: another run's servers are not its.
 */
export const CLUSTER_DIR_PREFIX = `xmin-sync-test-${process.env.XMIN_SYNC_TEST_RUN ?? "direct"}-`;

export function startCluster(opts: Omit<ClusterOptions, "prefix"> = {}): Promise<Cluster> {
  return startAnyCluster({ ...opts, prefix: CLUSTER_DIR_PREFIX });
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
  const dir = await clusterDir(CLUSTER_DIR_PREFIX);
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
