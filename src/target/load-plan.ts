import type pg from "pg";
import type { QualifiedName } from "../db/quote.js";
import type { ReadPart } from "../source/read.js";

/**
 * The plan of a first load, kept in the target while it runs so that an
 * interrupted load resumes: the parts (TID or key ranges per leaf) it reads,
 * what the source looked like when they were planned, and each part that
 * has been copied, with the snapshot it was read on. A part's row is written
 * in the transaction of its COPY: the rows and the progress commit together.
 */
export interface LoadPlan {
  parts: ReadPart[];
  /** Parts already in the load table, by index. */
  done: Map<number, DonePart>;
  /** The plan was made for the source as it is now (same table, storage, columns, key). */
  matches: boolean;
}

export interface DonePart {
  /** The snapshot's xmin: rows written since may have been missed by the part. */
  snapshotXmin: bigint;
  rows: number;
}

/**
 * What must not have changed for a stored plan to go on: the source
 * cluster, timeline and database; the table; each leaf's storage (VACUUM
 * FULL, CLUSTER and TRUNCATE move rows between pages, so TID ranges would
 * no longer hold the same rows); the columns; the key; the shape of the
 * load table.
 */
export type LoadSource = Record<string, unknown>;

export async function readLoadPlan(
  client: pg.Client,
  target: QualifiedName,
  source: LoadSource,
): Promise<LoadPlan | null> {
  const { rows } = await client.query<{ parts: ReadPart[]; matches: boolean }>(
    `SELECT parts, source = $3::jsonb AS matches FROM xmin_sync.first_load
      WHERE target_schema = $1 AND target_table = $2`,
    [target.schema, target.name, JSON.stringify(source)],
  );
  const plan = rows[0];
  if (!plan) return null;
  const done = await client.query<{ part: number; xmin: string; rows: string }>(
    `SELECT part, snapshot_xmin::text AS xmin, rows::text AS rows FROM xmin_sync.first_load_part
      WHERE target_schema = $1 AND target_table = $2`,
    [target.schema, target.name],
  );
  return {
    parts: plan.parts,
    matches: plan.matches,
    done: new Map(
      done.rows.map((r) => [r.part, { snapshotXmin: BigInt(r.xmin), rows: Number(r.rows) }]),
    ),
  };
}

export async function writeLoadPlan(
  client: pg.Client,
  target: QualifiedName,
  source: LoadSource,
  parts: ReadPart[],
): Promise<void> {
  await client.query(
    `INSERT INTO xmin_sync.first_load (target_schema, target_table, source, parts)
     VALUES ($1, $2, $3::jsonb, $4::jsonb)`,
    [target.schema, target.name, JSON.stringify(source), JSON.stringify(parts)],
  );
}

/** Must run in the transaction of the part's COPY. */
export async function recordLoadPart(
  client: pg.Client,
  target: QualifiedName,
  part: number,
  snapshot: { text: string; xmin: bigint },
  rows: number,
): Promise<void> {
  await client.query(
    `INSERT INTO xmin_sync.first_load_part (target_schema, target_table, part, snapshot, snapshot_xmin, rows)
     VALUES ($1, $2, $3, $4, $5::bigint, $6)`,
    [target.schema, target.name, part, snapshot.text, snapshot.xmin.toString(), rows],
  );
}

/**
 * Every part now holds the source's rows as of `snapshot` (parts read on
 * older snapshots were brought up to it): a load interrupted after this
 * resumes from it.
 */
export async function markLoadCurrent(
  client: pg.Client,
  target: QualifiedName,
  snapshot: { text: string; xmin: bigint },
): Promise<void> {
  await client.query(
    `UPDATE xmin_sync.first_load_part SET snapshot = $3, snapshot_xmin = $4::bigint
      WHERE target_schema = $1 AND target_table = $2`,
    [target.schema, target.name, snapshot.text, snapshot.xmin.toString()],
  );
}

/** Forgets the load's plan and progress (its parts go with it). */
export async function dropLoadPlan(client: pg.Client, target: QualifiedName): Promise<void> {
  await client.query(
    "DELETE FROM xmin_sync.first_load WHERE target_schema = $1 AND target_table = $2",
    [target.schema, target.name],
  );
}
