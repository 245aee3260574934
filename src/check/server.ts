import type pg from "pg";
import { displayIdent } from "../db/quote.js";
import { error, ok, warning, type Finding } from "./findings.js";

/** Settings of one server that decide whether a run can go ahead there. */
export interface ServerFacts {
  versionNum: number;
  version: string;
  standby: boolean;
  hotStandbyFeedback: boolean;
  /** max_standby_streaming_delay in ms (-1: a standby waits for our reads forever). */
  standbyDelayMs: number;
  readOnly: boolean;
  encoding: string;
  role: string;
  database: string;
  /** CREATE on the database: the role may create schemas. */
  mayCreateSchemas: boolean;
  /** Connections left for us: under max_connections, and under the role's own limit. */
  freeConnections: number;
}

/** A run holds at least a coordinator, a table's own connection and one copy stream on a side. */
export const MIN_CONNECTIONS = 3;

export async function readServerFacts(client: pg.Client): Promise<ServerFacts> {
  const { rows } = await client.query<{
    v: number;
    version: string;
    standby: boolean;
    feedback: string;
    delay: string;
    read_only: string;
    encoding: string;
    role: string;
    db: string;
    create_schemas: boolean;
    free: number;
    role_free: number | null;
  }>(
    `SELECT current_setting('server_version_num')::int AS v,
            current_setting('server_version') AS version,
            pg_is_in_recovery() AS standby,
            current_setting('hot_standby_feedback') AS feedback,
            current_setting('max_standby_streaming_delay') AS delay,
            current_setting('default_transaction_read_only') AS read_only,
            current_setting('server_encoding') AS encoding,
            current_user AS role, current_database() AS db,
            has_database_privilege(current_database(), 'CREATE') AS create_schemas,
            current_setting('max_connections')::int
              - current_setting('superuser_reserved_connections')::int
              - coalesce(current_setting('reserved_connections', true)::int, 0)
              - (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend') AS free,
            (SELECT CASE WHEN r.rolconnlimit >= 0 THEN r.rolconnlimit
                       - (SELECT count(*)::int FROM pg_stat_activity a WHERE a.usename = r.rolname) END
               FROM pg_roles r WHERE r.rolname = current_user) AS role_free`,
  );
  const r = rows[0]!;
  return {
    versionNum: r.v,
    version: r.version.split(" ")[0]!,
    standby: r.standby,
    hotStandbyFeedback: r.feedback === "on",
    standbyDelayMs: parseDelay(r.delay),
    readOnly: r.read_only === "on",
    encoding: r.encoding,
    role: r.role,
    database: r.db,
    mayCreateSchemas: r.create_schemas,
    freeConnections: r.role_free === null ? r.free : Math.min(r.free, r.role_free),
  };
}

/** "30s", "-1", "500ms", "5min" as current_setting() shows them, in ms. */
function parseDelay(text: string): number {
  const m = /^(-?\d+)\s*(ms|s|min|h|d)?$/.exec(text.trim());
  if (!m) return 0;
  const unit = { ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? "ms"]!;
  return Number(m[1]) < 0 ? -1 : Number(m[1]) * unit;
}

/** Findings about a server as a whole: version, standby, read-only, connections. */
export function serverFindings(server: "source" | "target", f: ServerFacts): Finding[] {
  const out: Finding[] = [];
  if (f.versionNum < 120000) {
    out.push(
      error(server, `PostgreSQL ${f.version} is not supported: xmin-sync needs 12 or later`),
    );
    return out;
  }
  if (server === "target" && (f.standby || f.readOnly)) {
    out.push(
      error(
        server,
        f.standby
          ? "is a standby (read-only): the target must be a primary"
          : "default_transaction_read_only is on for this role or database: the target must be writable",
      ),
    );
  }
  if (server === "source" && f.standby && !f.hotStandbyFeedback && f.standbyDelayMs !== -1) {
    out.push(
      warning(
        server,
        `a standby without hot_standby_feedback (max_standby_streaming_delay ${f.standbyDelayMs / 1000}s): ` +
          "replay cancels reads that take longer (they are retried, but a big table may never finish); " +
          "set hot_standby_feedback = on, or sync from the primary",
      ),
    );
  }
  if (f.freeConnections < MIN_CONNECTIONS) {
    out.push(
      error(
        server,
        `only ${Math.max(0, f.freeConnections)} free connections for role ${displayIdent(f.role)} ` +
          `(max_connections or the role's CONNECTION LIMIT): a run needs at least ${MIN_CONNECTIONS}`,
      ),
    );
  }
  if (!out.some((x) => x.level === "error")) {
    out.push(
      ok(
        server,
        `PostgreSQL ${f.version}${f.standby ? " (standby)" : ""}, database ${displayIdent(f.database)} as ${displayIdent(f.role)}, ${f.freeConnections} free connections`,
      ),
    );
  }
  return out;
}
