import type pg from "pg";

/**
 * The one place BEGIN, COMMIT and ROLLBACK are issued. `begin` is the
 * statement that opens the transaction (an isolation level, READ ONLY).
 */
export async function withTransaction<T>(
  client: pg.Client,
  fn: () => Promise<T>,
  begin = "BEGIN",
): Promise<T> {
  await client.query(begin);
  try {
    const out = await fn();
    await client.query("COMMIT");
    return out;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
}

/**
 * Runs one statement under planner or resource settings chosen for it, and
 * puts the previous values back after it, so the next statement of the same
 * transaction plans as it would have. (`SET LOCAL` alone would last to the
 * end of the transaction: a delete reconciliation once ran as a nested loop
 * over 2M x 2M keys because a small merge before it had turned hash joins
 * off.) Only after it succeeded: a statement that failed has aborted the
 * transaction, and a COPY cut off midway leaves a connection that would
 * never answer the restore (its caller ends it).
 */
export async function withSettings<T>(
  client: pg.Client,
  settings: Record<string, string>,
  fn: () => Promise<T>,
): Promise<T> {
  const names = Object.keys(settings);
  if (names.length === 0) return fn();
  // One round trip: each row reads its setting before it sets it.
  const { rows } = await client.query<{ old: string }>(
    `SELECT current_setting(name) AS old, set_config(name, value, true)
       FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS s(name, value, i) ORDER BY i`,
    [names, Object.values(settings)],
  );
  const out = await fn();
  await setAll(
    client,
    names,
    rows.map((r) => r.old),
  );
  return out;
}

/** Transaction-local settings, as bound values. */
function setAll(client: pg.Client, names: string[], values: string[]) {
  return client.query(
    "SELECT set_config(name, value, true) FROM unnest($1::text[], $2::text[]) AS s(name, value)",
    [names, values],
  );
}
