import { displayName, type QualifiedName } from "../db/quote.js";
import type { SourceRun } from "../source/run.js";
import { parseSnapshot, type Snapshot } from "../source/snapshot.js";
import type { TableState } from "../target/state.js";

/**
 * Thrown when another run committed this table from a newer snapshot than
 * this run's, or the table's storage changed after the snapshot; `sync`
 * retries the table on a fresh snapshot.
 */
export class StaleSnapshotError extends Error {
  override name = "StaleSnapshotError";
}

/**
 * A run whose snapshot predates the one another run already committed for
 * this table (it waited for the table's lock, or reached the table late in a
 * long multi-table run) would MERGE older row versions over newer ones and
 * move the watermark back; planning would even take the newer watermark
 * for a restore and resync the whole table from the old snapshot, deleting
 * rows inserted since. Found by test/lock.test.ts. A source whose ids really
 * went backwards (its current xmax is behind the stored one) is left to the
 * plan.
 */
export async function checkSnapshotNotStale(
  run: SourceRun,
  state: TableState | null,
  name: QualifiedName,
): Promise<void> {
  if (!state || state.watermark === null) return;
  const id = run.identity;
  if (
    state.sourceSystemId !== id.systemIdentifier ||
    state.sourceTimeline !== id.timeline ||
    state.sourceDatabaseOid !== id.databaseOid
  ) {
    return;
  }
  let stored: Snapshot;
  try {
    stored = parseSnapshot(state.snapshot);
  } catch {
    return;
  }
  const ours = run.snapshot;
  // Ours is at least as new if it sees as completed every transaction the
  // stored one did: its xmax is not behind, and nothing it sees running had
  // completed for the stored one (same xmax, fewer running, is newer too).
  const storedRunning = new Set(stored.xip);
  const oursSeesLess = ours.xip.some((x) => x < stored.xmax && !storedRunning.has(x));
  if (stored.xmax <= ours.xmax && state.watermark <= ours.xmin && !oursSeesLess) return;
  const now = await run.currentSnapshot();
  if (now.xmax < stored.xmax) return;
  throw new StaleSnapshotError(
    `${displayName(name)} was synced by another run from a newer snapshot (${stored.text}) than this run's (${ours.text})`,
  );
}
