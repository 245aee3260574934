import type pg from "pg";
import { displayIdent, displayName, type QualifiedName } from "../db/quote.js";
import type { TableSpec } from "../sync/types.js";
import { SOURCE_DELETED_AT, SOURCE_XMIN } from "../target/ddl.js";
import { PROJECT_SCHEMA, readProjectSchema, type ProjectSchemaStatus } from "../target/project.js";
import { error, ok, type At, type Finding } from "./findings.js";
import type { ServerFacts } from "./server.js";
import type { SourceFacts } from "./source.js";

/** The privileges a run uses on an existing target table: MERGE reads, inserts and updates; resyncs and deletes delete. */
const TABLE_PRIVILEGES = ["SELECT", "INSERT", "UPDATE", "DELETE"];

interface Row {
  i: number;
  schema_exists: boolean;
  usage: boolean | null;
  can_create: boolean | null;
  oid: string | null;
  relkind: string | null;
  owner: boolean | null;
  missing: string[] | null;
  columns: Record<string, string> | null;
}

/** What the target's catalog says about the project schema and each target table. */
export interface TargetRead {
  project: ProjectSchemaStatus;
  rows: Row[];
}

/** The target's side of the checks, read with catalog queries only (nothing is created). */
export async function readTarget(client: pg.Client, specs: TableSpec[]): Promise<TargetRead> {
  const project = await readProjectSchema(client);
  const targets = specs.map((s) => s.target ?? s.source);
  const { rows } = await client.query<Row>(
    `SELECT s.i::int AS i, n.oid IS NOT NULL AS schema_exists,
            has_schema_privilege(n.oid, 'USAGE') AS usage,
            has_schema_privilege(n.oid, 'CREATE') AS can_create,
            c.oid::text AS oid, c.relkind::text AS relkind,
            pg_has_role(c.relowner, 'USAGE') AS owner,
            CASE WHEN c.oid IS NOT NULL THEN
              ARRAY(SELECT p FROM unnest($3::text[]) AS p WHERE NOT has_table_privilege(c.oid, p)) END AS missing,
            (SELECT json_object_agg(a.attname, format_type(a.atttypid, a.atttypmod))
               FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns
       FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS s(schema, name, i)
       LEFT JOIN pg_namespace n ON n.nspname = s.schema
       LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.name
      ORDER BY s.i`,
    [targets.map((t) => t.schema), targets.map((t) => t.name), TABLE_PRIVILEGES],
  );
  return { project, rows };
}

/**
 * Whether the target role can do what a run needs: the project schema (or
 * its existing tables), each target schema, each table or its ownership
 * for the DDL a run adds, and the types the tables use.
 */
export async function checkTarget(
  client: pg.Client,
  read: TargetRead,
  server: ServerFacts,
  specs: TableSpec[],
  sources: Map<number, SourceFacts>,
): Promise<Finding[]> {
  const who: Who = {
    grantee: displayIdent(server.role),
    database: displayIdent(server.database),
    mayCreateSchemas: server.mayCreateSchemas,
  };
  const findings = projectFindings(read.project, server);
  const targets = specs.map((s) => s.target ?? s.source);
  const types = await existingTypes(client, [...sources.values()]);
  for (const r of read.rows) {
    const index = r.i - 1;
    const name = targets[index]!;
    const at: At = { table: displayName(name), index };
    const problem =
      tableProblem(r, name, specs[index]!, sources.get(index), who) ??
      typeProblem(sources.get(index), types, who);
    if (problem) findings.push(error("target", problem, at));
    else
      findings.push(
        ok(
          "target",
          r.oid
            ? "exists, writable"
            : `will be created${r.schema_exists ? "" : ` with schema ${displayIdent(name.schema)}`}`,
          at,
        ),
      );
  }
  return findings;
}

function projectFindings(p: ProjectSchemaStatus, server: ServerFacts): Finding[] {
  const grantee = displayIdent(server.role);
  const schema = PROJECT_SCHEMA;
  if (!p.exists) {
    if (server.mayCreateSchemas) return [ok("target", `schema ${schema} will be created`)];
    return [
      error(
        "target",
        `schema ${schema} does not exist and role ${grantee} may not create it: no CREATE privilege on database ` +
          `${displayIdent(server.database)} (GRANT CREATE ON DATABASE ${displayIdent(server.database)} TO ${grantee}, ` +
          `or have it made: CREATE SCHEMA ${schema} AUTHORIZATION ${grantee})`,
      ),
    ];
  }
  if (!p.canCreateIn) {
    return [
      error(
        "target",
        `no USAGE and CREATE privilege on schema ${schema} for role ${grantee}, which a run's work tables need ` +
          `(GRANT USAGE, CREATE ON SCHEMA ${schema} TO ${grantee})`,
      ),
    ];
  }
  const out: Finding[] = [];
  for (const m of p.missingTablePrivileges) {
    out.push(
      error(
        "target",
        `no ${m.privileges.join(", ")} privilege on ${schema}.${m.table} for role ${grantee} ` +
          `(GRANT ${m.privileges.join(", ")} ON ${schema}.${m.table} TO ${grantee})`,
      ),
    );
  }
  if (p.notOwned.length > 0) {
    out.push(
      error(
        "target",
        `${schema} needs upgrading (version ${p.version} of ${p.latest}) and role ${grantee} does not own ` +
          `${p.notOwned.map((t) => `${schema}.${t}`).join(", ")}: run one sync as their owner, or ALTER TABLE … OWNER TO ${grantee}`,
      ),
    );
  }
  if (out.length === 0) {
    out.push(
      ok(
        "target",
        p.version >= p.latest
          ? `schema ${schema} ready`
          : `schema ${schema} will be ${p.version === 0 ? "set up" : "upgraded"}`,
      ),
    );
  }
  return out;
}

/** Our role on the target, for the GRANTs a message suggests. */
interface Who {
  grantee: string;
  database: string;
  mayCreateSchemas: boolean;
}

function tableProblem(
  r: Row,
  name: QualifiedName,
  spec: TableSpec,
  source: SourceFacts | undefined,
  { grantee, database, mayCreateSchemas }: Who,
): string | null {
  const schema = displayIdent(name.schema);
  if (!r.schema_exists) {
    if (mayCreateSchemas) return null;
    return (
      `schema ${schema} does not exist and role ${grantee} may not create it ` +
      `(GRANT CREATE ON DATABASE ${database} TO ${grantee}, or CREATE SCHEMA ${schema} AUTHORIZATION ${grantee})`
    );
  }
  if (!r.usage || (r.oid === null && !r.can_create)) {
    const needed = r.usage ? "CREATE" : r.oid === null ? "USAGE, CREATE" : "USAGE";
    return (
      `no ${needed} privilege on schema ${schema} for role ${grantee}` +
      (r.oid === null ? ", to create the table" : "") +
      ` (GRANT ${needed} ON SCHEMA ${schema} TO ${grantee})`
    );
  }
  if (r.oid === null) return null;
  if (r.relkind !== "r" && r.relkind !== "p") return "exists and is not a table";
  if (r.missing && r.missing.length > 0) {
    const p = r.missing.join(", ");
    return `no ${p} privilege for role ${grantee} (GRANT ${p} ON ${displayName(name)} TO ${grantee})`;
  }
  if (r.owner) return null;
  // What a run alters on a table it does not own fails there: say so now.
  // (Type changes the engine makes when the source's schema changes are
  // not foreseen here; they need ownership too.)
  const has = (c: string) => r.columns !== null && c in r.columns;
  const added = (source?.columns ?? []).find((c) => !has(c.name));
  const column = !has(SOURCE_XMIN)
    ? SOURCE_XMIN
    : spec.deletes === "soft" && !has(SOURCE_DELETED_AT)
      ? SOURCE_DELETED_AT
      : added?.name;
  if (column === undefined) return null;
  return (
    `adding its ${displayIdent(column)} column needs ownership, which role ${grantee} lacks ` +
    `(ALTER TABLE ${displayName(name)} OWNER TO ${grantee}, or add the column as its owner)`
  );
}

/** Which of the user types the source tables use exist on the target, and whether their schema is writable. */
async function existingTypes(
  client: pg.Client,
  sources: SourceFacts[],
): Promise<Map<string, { exists: boolean; schemaWritable: boolean | null }>> {
  const names = new Map<string, QualifiedName>();
  for (const s of sources) for (const t of s.userTypes) names.set(displayName(t.name), t.name);
  if (names.size === 0) return new Map();
  const list = [...names.values()];
  const { rows } = await client.query<{ i: number; exists: boolean; writable: boolean | null }>(
    `SELECT s.i::int AS i, t.oid IS NOT NULL AS exists,
            has_schema_privilege(n.oid, 'USAGE') AND has_schema_privilege(n.oid, 'CREATE') AS writable
       FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS s(schema, name, i)
       LEFT JOIN pg_namespace n ON n.nspname = s.schema
       LEFT JOIN pg_type t ON t.typnamespace = n.oid AND t.typname = s.name`,
    [list.map((t) => t.schema), list.map((t) => t.name)],
  );
  return new Map(
    rows.map((r) => [
      displayName(list[r.i - 1]!),
      { exists: r.exists, schemaWritable: r.writable },
    ]),
  );
}

function typeProblem(
  source: SourceFacts | undefined,
  types: Map<string, { exists: boolean; schemaWritable: boolean | null }>,
  { grantee, mayCreateSchemas }: Who,
): string | null {
  for (const t of source?.userTypes ?? []) {
    const name = displayName(t.name);
    const found = types.get(name);
    if (!found || found.exists) continue;
    if (!t.creatable) {
      return `type ${name} does not exist on the target; create it (or install the extension that provides it) first`;
    }
    const schema = displayIdent(t.name.schema);
    if (found.schemaWritable === false) {
      return `type ${name} does not exist and role ${grantee} may not create it: no CREATE privilege on schema ${schema} (GRANT USAGE, CREATE ON SCHEMA ${schema} TO ${grantee})`;
    }
    if (found.schemaWritable === null && !mayCreateSchemas) {
      return `type ${name} needs schema ${schema}, which does not exist and role ${grantee} may not create (CREATE SCHEMA ${schema} AUTHORIZATION ${grantee})`;
    }
  }
  return null;
}
