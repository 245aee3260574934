import type pg from "pg";
import { quoteIdent } from "../db/quote.js";

/** The project's own schema in the target: state, and staging tables while a run lasts. */
export const PROJECT_SCHEMA = "xmin_sync";

/**
 * Advisory lock class for xmin-sync ('xmin' in ASCII). objid 0 guards the
 * project schema's setup, 1 shared DDL (schemas, types) that tables synced
 * at once may both create; others are tables.
 */
export const LOCK_CLASS = 0x786d696e;
const DDL_LOCK = 1;

/**
 * Takes the shared-DDL lock for the rest of the current transaction: two
 * tables of one run creating the same schema or enum at once would otherwise
 * fail on a unique violation (IF NOT EXISTS does not prevent that race).
 */
export async function lockSharedDdl(client: pg.Client): Promise<void> {
  await client.query("SELECT pg_advisory_xact_lock($1::int, $2::int)", [LOCK_CLASS, DDL_LOCK]);
}

/**
 * Ordered migrations of the project schema. Append only: a deployed target
 * has run the earlier ones.
 */
const MIGRATIONS: string[] = [
  `CREATE TABLE xmin_sync.state (
     target_schema text NOT NULL,
     target_table text NOT NULL,
     source_schema text NOT NULL,
     source_table text NOT NULL,
     source_system_id text,
     source_timeline int,
     source_database_oid bigint NOT NULL,
     source_table_oid bigint NOT NULL,
     mode text NOT NULL,
     watermark bigint,
     cursor_value text,
     snapshot text NOT NULL,
     rows_copied bigint NOT NULL,
     inserted bigint NOT NULL,
     updated bigint NOT NULL,
     deleted bigint NOT NULL,
     runs bigint NOT NULL DEFAULT 1,
     last_run_at timestamptz NOT NULL DEFAULT now(),
     PRIMARY KEY (target_schema, target_table)
   )`,
  // Delete detection runs every run or every N runs / T time (deleteCheckEvery).
  `ALTER TABLE xmin_sync.state
     ADD COLUMN last_delete_check_at timestamptz,
     ADD COLUMN runs_since_delete_check int NOT NULL DEFAULT 0`,
  // The source's leaves (partitions, inheritance children) with their
  // storage, and its columns by attribute number: what changed since. And
  // the xid below which rows may carry xmins that prove nothing (a rewrite,
  // a resync from another cluster): re-read, they are compared by content.
  `ALTER TABLE xmin_sync.state
     ADD COLUMN source_leaves jsonb,
     ADD COLUMN source_columns jsonb,
     ADD COLUMN content_until bigint`,
  // Enum labels and composite attributes by oid and attnum (renames), and a
  // resync a schema change needs, kept until a run commits it.
  `ALTER TABLE xmin_sync.state
     ADD COLUMN source_types jsonb,
     ADD COLUMN resync_reason text`,
  // A first load's plan and its parts, so that an interrupted load resumes
  // (target/load-plan.ts). A part's row commits with its rows.
  `CREATE TABLE xmin_sync.first_load (
     target_schema text NOT NULL,
     target_table text NOT NULL,
     source jsonb NOT NULL,
     parts jsonb NOT NULL,
     started_at timestamptz NOT NULL DEFAULT now(),
     PRIMARY KEY (target_schema, target_table)
   );
   CREATE TABLE xmin_sync.first_load_part (
     target_schema text NOT NULL,
     target_table text NOT NULL,
     part int NOT NULL,
     snapshot text NOT NULL,
     snapshot_xmin bigint NOT NULL,
     rows bigint NOT NULL,
     done_at timestamptz NOT NULL DEFAULT now(),
     PRIMARY KEY (target_schema, target_table, part),
     FOREIGN KEY (target_schema, target_table)
       REFERENCES xmin_sync.first_load ON DELETE CASCADE
   )`,
  // Run history: one row per sync or validation of a table, from any entry
  // point (CLI, library, worker), kept for a bounded time (history.ts); and
  // the worker's runs in progress with their bytes so far, for the status page.
  `CREATE TABLE xmin_sync.history (
     id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
     kind text NOT NULL,
     target_schema text NOT NULL,
     target_table text NOT NULL,
     source_table text NOT NULL,
     started_at timestamptz NOT NULL,
     finished_at timestamptz NOT NULL,
     duration_ms bigint NOT NULL,
     mode text,
     reason text,
     rows_copied bigint,
     inserted bigint,
     updated bigint,
     deleted bigint,
     watermark_before text,
     watermark_after text,
     status text NOT NULL,
     error text,
     integrity_score double precision,
     report jsonb,
     host text NOT NULL,
     pid int NOT NULL,
     process text NOT NULL
   );
   -- A table's last runs of a kind, its last error, and retention: each an
   -- index probe, however many runs a table has (every: 1s is 86,400 a day).
   CREATE INDEX history_table_idx ON xmin_sync.history (target_schema, target_table, kind, id);
   CREATE INDEX history_errors_idx ON xmin_sync.history (target_schema, target_table, id)
     WHERE status <> 'ok';
   CREATE INDEX history_finished_idx ON xmin_sync.history (finished_at);
   CREATE TABLE xmin_sync.activity (
     target_schema text NOT NULL,
     target_table text NOT NULL,
     host text NOT NULL,
     pid int NOT NULL,
     process text NOT NULL,
     started_at timestamptz NOT NULL DEFAULT now(),
     bytes bigint NOT NULL DEFAULT 0,
     estimated_bytes bigint,
     updated_at timestamptz NOT NULL DEFAULT now(),
     PRIMARY KEY (target_schema, target_table)
   )`,
];

/**
 * CREATE SCHEMA unless the schema exists. Not `CREATE SCHEMA IF NOT
 * EXISTS`: PostgreSQL checks CREATE on the database before it looks for the
 * schema, so that fails for a role that owns the schema but may not create
 * schemas (least privilege).
 */
export async function createSchemaIfMissing(client: pg.Client, schema: string): Promise<void> {
  const { rows } = await client.query<{ e: boolean }>(
    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS e",
    [schema],
  );
  if (!rows[0]!.e) await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
}

/** What the target's project schema holds, and what our role may do there. */
export interface ProjectSchemaStatus {
  exists: boolean;
  canCreateIn: boolean;
  /** Migrations applied (0: none, or no schema_version table yet). */
  version: number;
  latest: number;
  /** Tables of the schema our role lacks a privilege on (name and privileges missing). */
  missingTablePrivileges: { table: string; privileges: string[] }[];
  /** Tables a pending migration alters that our role does not own. */
  notOwned: string[];
}

/** Read-only look at the project schema, for the checks before a run. */
export async function readProjectSchema(client: pg.Client): Promise<ProjectSchemaStatus> {
  const { rows } = await client.query<{
    exists: boolean;
    can_create: boolean | null;
    has_version: boolean;
  }>(
    `SELECT n.oid IS NOT NULL AS exists,
            has_schema_privilege(n.oid, 'USAGE') AND has_schema_privilege(n.oid, 'CREATE') AS can_create,
            to_regclass('xmin_sync.schema_version') IS NOT NULL AS has_version
       FROM (SELECT 1) AS one LEFT JOIN pg_namespace n ON n.nspname = $1`,
    [PROJECT_SCHEMA],
  );
  const r = rows[0]!;
  const status: ProjectSchemaStatus = {
    exists: r.exists,
    canCreateIn: r.can_create ?? false,
    version: 0,
    latest: MIGRATIONS.length,
    missingTablePrivileges: [],
    notOwned: [],
  };
  if (!r.exists || !r.can_create) return status;
  const tables = await client.query<{ name: string; owner: boolean; missing: string[] }>(
    `SELECT c.relname AS name, pg_has_role(c.relowner, 'USAGE') AS owner,
            ARRAY(SELECT p FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) AS p
                   WHERE NOT has_table_privilege(c.oid, p)) AS missing
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname IN ('schema_version', 'state')`,
    [PROJECT_SCHEMA],
  );
  for (const t of tables.rows) {
    if (t.missing.length > 0)
      status.missingTablePrivileges.push({ table: t.name, privileges: t.missing });
  }
  if (
    r.has_version &&
    !tables.rows.some((t) => t.name === "schema_version" && t.missing.includes("SELECT"))
  ) {
    const v = await client.query<{ v: number | null }>(
      "SELECT max(version) AS v FROM xmin_sync.schema_version",
    );
    status.version = v.rows[0]?.v ?? 0;
  }
  if (status.version < status.latest) {
    status.notOwned = tables.rows.filter((t) => !t.owner).map((t) => t.name);
  }
  return status;
}

/**
 * Creates or upgrades the project schema; safe when several runs start at
 * once. A schema (and tables) made beforehand by an administrator are used
 * as they are: the role needs CREATE on the database only when the schema
 * does not exist.
 */
export async function ensureProjectSchema(client: pg.Client): Promise<void> {
  const exists = await client.query<{ e: boolean }>(
    "SELECT to_regclass('xmin_sync.schema_version') IS NOT NULL AS e",
  );
  if (exists.rows[0]!.e) {
    const { rows } = await client.query<{ v: number | null }>(
      "SELECT max(version) AS v FROM xmin_sync.schema_version",
    );
    if ((rows[0]?.v ?? 0) >= MIGRATIONS.length) return;
  }

  await client.query("BEGIN");
  try {
    await client.query("SELECT pg_advisory_xact_lock($1::int, 0)", [LOCK_CLASS]);
    await createSchemaIfMissing(client, PROJECT_SCHEMA);
    await client.query(
      "CREATE TABLE IF NOT EXISTS xmin_sync.schema_version (version int PRIMARY KEY)",
    );
    const { rows } = await client.query<{ v: number | null }>(
      "SELECT max(version) AS v FROM xmin_sync.schema_version",
    );
    for (let v = (rows[0]?.v ?? 0) + 1; v <= MIGRATIONS.length; v++) {
      await client.query(MIGRATIONS[v - 1]!);
      await client.query("INSERT INTO xmin_sync.schema_version (version) VALUES ($1)", [v]);
    }
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw new Error(
      `cannot create the ${PROJECT_SCHEMA} schema on the target: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}
