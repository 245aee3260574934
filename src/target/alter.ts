import type pg from "pg";
import { displayName, type QualifiedName } from "../db/quote.js";
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
        for (const step of steps) {
          if (!step.fallback) {
            await client.query(step.sql);
            continue;
          }
          await client.query("SAVEPOINT xmin_sync_step");
          try {
            await client.query(step.sql);
            await client.query("RELEASE SAVEPOINT xmin_sync_step");
          } catch {
            await client.query("ROLLBACK TO SAVEPOINT xmin_sync_step");
            for (const sql of step.fallback) await client.query(sql);
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
