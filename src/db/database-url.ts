import { InputError } from "../input-error.js";
import { airflowConnString } from "./airflow.js";
import { resolveConnection, type Role } from "./conninfo.js";

const VARIABLES = {
  source: { url: "SOURCE_DATABASE_URL", connId: "SOURCE_POSTGRES_CONN_ID" },
  target: { url: "TARGET_DATABASE_URL", connId: "TARGET_POSTGRES_CONN_ID" },
} as const;

/**
 * The connection string for one side: the flag or config value given, else
 * $SOURCE_DATABASE_URL / $TARGET_DATABASE_URL, else the Airflow connection
 * that $SOURCE_POSTGRES_CONN_ID / $TARGET_POSTGRES_CONN_ID names (read from
 * AIRFLOW_CONN_<ID>, as Airflow exposes it). Checked now (syntax, TLS files),
 * so bad input exits 2 before either server is touched.
 */
export function resolveDatabaseUrl(
  role: Role,
  explicit: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): string {
  const names = VARIABLES[role];
  let conninfo = explicit || env[names.url] || undefined;
  const connId = env[names.connId];
  if (!conninfo && connId) {
    const variable = `AIRFLOW_CONN_${connId.toUpperCase()}`;
    const value = env[variable];
    if (!value) throw new InputError(`${names.connId} is ${connId}, but ${variable} is not set`);
    try {
      conninfo = airflowConnString(value, variable);
    } catch (err) {
      throw new InputError(`${role} connection: ${(err as Error).message}`);
    }
  }
  if (!conninfo)
    throw new InputError(
      `no ${role} database: pass --${role} or set ${names.url} (or ${names.connId} under Airflow)`,
    );
  resolveConnection(conninfo, role, env);
  return conninfo;
}
