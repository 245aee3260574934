import pg from "pg";
import { hasSystemPostgres, startCluster, type Cluster, type Version } from "./cluster.js";

/**
 * A database of its own for one test file (or test), on a server shared by
 * the whole run: one server per PostgreSQL version, started once by the test
 * runner (scripts/test.mjs, which passes their URLs in
 * XMIN_SYNC_TEST_SERVERS), instead of two new clusters per file. A sync
 * between two databases of one server is a sync between two databases like
 * any other. Files run alone (node --test dist/test/x.test.js) start the
 * servers they need themselves, stopped when the process exits.
 *
 * Server-wide things are not a file's own: roles (name them after the test),
 * pg_stat_activity (filter by datname), settings (only tests with their own
 * cluster change them).
 */
export interface TestDatabase {
  version: Version;
  /** The database's name on its server. */
  database: string;
  url(): string;
  client(): Promise<pg.Client>;
  sql<T extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    params?: unknown[],
  ): Promise<T[]>;
  /** Drops the database (and any connection left to it). */
  stop(): Promise<void>;
}

export const SHARED_SERVER_SETTINGS = {
  max_connections: "400",
  shared_buffers: "128MB",
};

const started = new Map<Version, Promise<Cluster>>();

async function serverUrl(version: Version): Promise<string> {
  const shared = process.env.XMIN_SYNC_TEST_SERVERS;
  if (shared) {
    const url = (JSON.parse(shared) as Partial<Record<Version, string>>)[version];
    if (url) return url;
  }
  if (!started.has(version)) {
    started.set(version, startCluster({ version, settings: SHARED_SERVER_SETTINGS }));
  }
  return (await started.get(version)!).url();
}

/** The versions scripts/test.mjs starts for a run. */
export function sharedVersions(): Version[] {
  return hasSystemPostgres() ? ["17", "14", "system"] : ["17", "14"];
}

let seq = 0;

export async function testDatabase(version: Version = "17"): Promise<TestDatabase> {
  const server = await serverUrl(version);
  const database = `t_${process.pid}_${++seq}`;
  const admin = async <T>(fn: (c: pg.Client) => Promise<T>) => {
    const c = new pg.Client({ connectionString: server });
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.end();
    }
  };
  await admin((c) => c.query(`CREATE DATABASE ${pg.escapeIdentifier(database)}`));
  const u = new URL(server);
  u.pathname = `/${database}`;
  const url = u.toString();
  const clients = new Set<pg.Client>();
  return {
    version,
    database,
    url: () => url,
    async client() {
      const c = new pg.Client({ connectionString: url });
      c.on("error", () => undefined);
      await c.connect();
      clients.add(c);
      return c;
    },
    async sql(text, params) {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        return (await c.query(text, params as unknown[])).rows;
      } finally {
        await c.end();
      }
    },
    async stop() {
      await Promise.all([...clients].map((c) => c.end().catch(() => undefined)));
      await admin((c) =>
        c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(database)} WITH (FORCE)`),
      ).catch(() => undefined);
    },
  };
}
