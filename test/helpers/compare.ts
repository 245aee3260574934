import type { Cluster } from "./cluster.js";

/**
 * Every row of a table as text, ordered by key: what "the target equals the
 * source" means, compared as a user would see it.
 */
export async function tableText(
  cluster: Cluster,
  database: string,
  table: string,
  columns: string[],
  orderBy: string[],
): Promise<string[]> {
  const rows = await cluster.sql<{ r: string }>(
    `SELECT ROW(${columns.join(", ")})::text AS r FROM ${table} ORDER BY ${orderBy.join(", ")}`,
    [],
    database,
  );
  return rows.map((r) => r.r);
}

/** Column list of a table, quoted, in order (for comparing a source with its copy). */
export async function columnList(
  cluster: Cluster,
  database: string,
  table: string,
): Promise<string[]> {
  const rows = await cluster.sql<{ c: string }>(
    `SELECT quote_ident(attname) AS c FROM pg_attribute
      WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [table],
    database,
  );
  return rows.map((r) => r.c);
}
