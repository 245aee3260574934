import { createHash } from "node:crypto";
import type pg from "pg";
import { quoteQualified, type QualifiedName } from "../db/quote.js";
import { PROJECT_SCHEMA } from "./project.js";

/**
 * A run's work tables live in the project schema under names tied to the
 * target table: `load_` (a first load, before it is moved into place),
 * `stage_` (changed rows), `keys_` (the source's key set), `repair_`.
 * Only the run holding the table's lock uses them, so any found at the start
 * of a run are a crashed run's, and are dropped.
 */
export type WorkKind = "load" | "stage" | "keys" | "repair";
const KINDS: WorkKind[] = ["load", "stage", "keys", "repair"];

export function workTable(kind: WorkKind, target: QualifiedName): QualifiedName {
  const hash = createHash("sha256").update(quoteQualified(target)).digest("hex").slice(0, 16);
  return { schema: PROJECT_SCHEMA, name: `${kind}_${hash}` };
}

export async function dropWorkTables(
  client: pg.Client,
  target: QualifiedName,
  kinds: WorkKind[] = KINDS,
): Promise<void> {
  await client.query(
    `DROP TABLE IF EXISTS ${kinds.map((k) => quoteQualified(workTable(k, target))).join(", ")}`,
  );
}
