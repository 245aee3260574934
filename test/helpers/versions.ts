import { startCluster, type Cluster } from "./cluster.js";

/**
 * A PostgreSQL 17 and a 14 server, each with the given databases: for tests
 * that sync both ways between a server with MERGE and one without.
 */
export async function startBothVersions(
  databases: string[],
): Promise<{ v17: Cluster; v14: Cluster }> {
  const [v17, v14] = await Promise.all([
    startCluster({ version: "17" }),
    startCluster({ version: "14" }),
  ]);
  for (const c of [v17, v14]) {
    for (const db of databases) await c.createDatabase(db);
  }
  return { v17, v14 };
}
