import type pg from "pg";
import { displayName, quoteQualified, type QualifiedName } from "../db/quote.js";
import { describeError } from "../db/connect.js";
import { SQLSTATE, sqlState } from "../db/errors.js";
import { withSettings, withTransaction } from "../db/tx.js";
import { recordSchema, type StoredColumn } from "./state.js";

/** One statement of a schema change; `fallback` runs instead when it fails. */
export interface SchemaStep {
  sql: string;
  fallback?: string[];
}

/**
 * How long a schema change waits for the target table. An ALTER TABLE
 * queued behind a long report on the copy would hold every later reader
 * of the table behind it: better to fail this run and say so.
 */
const LOCK_TIMEOUT = "60s";

/**
 * Alters the target table in one transaction, with the source columns it
 * now matches (and the resync the change needs) recorded in the same one:
 * a run that stops later finds the target and its state agreeing. A step
 * with a fallback runs it in a savepoint and, if it fails, the fallback.
 */
export async function alterTargetTable(
  client: pg.Client,
  target: QualifiedName,
  steps: SchemaStep[],
  record: { columns: StoredColumn[]; resyncReason: string | null },
): Promise<void> {
  try {
    await withTransaction(client, () =>
      withSettings(client, { lock_timeout: LOCK_TIMEOUT }, async () => {
        // The lock every step needs, taken once: a step that fails back to another does not wait twice.
        if (steps.length > 0)
          await client.query(`LOCK TABLE ${quoteQualified(target)} IN ACCESS EXCLUSIVE MODE`);
        for (const step of steps) {
          if (!step.fallback) {
            await run(client, target, step.sql);
            continue;
          }
          await client.query("SAVEPOINT xmin_sync_step");
          try {
            await client.query(step.sql);
            await client.query("RELEASE SAVEPOINT xmin_sync_step");
          } catch {
            await client.query("ROLLBACK TO SAVEPOINT xmin_sync_step");
            for (const sql of step.fallback) await run(client, target, sql);
          }
        }
        await recordSchema(client, target, record.columns, record.resyncReason);
      }),
    );
  } catch (err) {
    if (sqlState(err) !== SQLSTATE.lockNotAvailable) throw err;
    throw new Error(
      `target table ${displayName(target)} is in use: its schema change waited ${LOCK_TIMEOUT} for a lock; nothing was changed, try again`,
      { cause: err },
    );
  }
}

/**
 * One statement, its failure naming the table and the statement: the
 * target refusing a change (a view of the user's depends on the column) is
 * for the user to resolve, and the server's detail says where.
 */
async function run(client: pg.Client, target: QualifiedName, sql: string): Promise<void> {
  try {
    await client.query(sql);
  } catch (err) {
    if (sqlState(err) === SQLSTATE.lockNotAvailable) throw err;
    const detail = (err as { detail?: string }).detail;
    throw new Error(
      `cannot change target table ${displayName(target)} to match the source: ${sql}: ${describeError(err)}` +
        (detail ? ` (${detail})` : ""),
      { cause: err },
    );
  }
}
