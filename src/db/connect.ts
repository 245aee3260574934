import pg from "pg";

export type Role = "source" | "target";

/**
 * Session settings that make COPY text round-trip exactly between two
 * servers whatever their defaults: the same date, interval, float, money and
 * xml formats on both sides, and a search_path that forces catalog functions
 * to qualify every non-built-in name.
 */
const SESSION_SETTINGS: ReadonlyArray<readonly [string, string]> = [
  ["DateStyle", "ISO, YMD"],
  ["IntervalStyle", "postgres"],
  ["TimeZone", "UTC"],
  ["extra_float_digits", "3"],
  ["bytea_output", "hex"],
  ["lc_monetary", "C"],
  ["xmloption", "content"],
  ["search_path", "pg_catalog"],
  // Our statements are long scans of simple expressions: JIT compiling them
  // cost a second per statement in measurements and saved nothing.
  ["jit", "off"],
  // A run holds its snapshot open while it copies, and a COPY of a big table
  // is one long statement: server-side timeouts meant for applications would
  // kill them midway.
  ["statement_timeout", "0"],
  ["idle_in_transaction_session_timeout", "0"],
  // PostgreSQL 17+; skipped where the server does not know it.
  ["transaction_timeout", "0"],
  // PostgreSQL 14+: a backend whose client died (a killed process, an
  // evicted pod) stops its statement within a second, rolling back and
  // releasing the table's lock, instead of running a long MERGE or DELETE
  // to its end for no one.
  ["client_connection_check_interval", "1000"],
];

/** The URL with its password hidden, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    if (u.searchParams.has("password")) u.searchParams.set("password", "***");
    return u.toString();
  } catch {
    return url.replace(/:[^:@/]*@/, ":***@");
  }
}

export interface ConnectOptions {
  applicationName?: string;
}

export async function connect(
  url: string,
  role: Role,
  opts: ConnectOptions = {},
): Promise<pg.Client> {
  if (!url) {
    const env = role === "source" ? "SOURCE_DATABASE_URL" : "TARGET_DATABASE_URL";
    throw new Error(`no ${role} database given: pass --${role} or set ${env}`);
  }
  const client = new pg.Client({
    connectionString: url,
    application_name: opts.applicationName ?? `xmin-sync ${role}`,
    connectionTimeoutMillis: 30_000,
    keepAlive: true,
  });
  // An idle client whose server goes away emits 'error'; without a listener
  // that would crash the process instead of failing the query that uses it.
  client.on("error", () => undefined);
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    throw new Error(`cannot connect to ${role} ${redactUrl(url)}: ${describeError(err)}`, {
      cause: err,
    });
  }
  const names = SESSION_SETTINGS.map(([n]) => n);
  const values = SESSION_SETTINGS.map(([, v]) => v);
  await client.query(
    `SELECT set_config(s.name, s.value, false) FROM unnest($1::text[], $2::text[]) AS s(name, value)
      WHERE s.name IN (SELECT name FROM pg_settings)`,
    [names, values],
  );
  return client;
}

/** One line describing any error, including AggregateError from multi-address connects. */
export function describeError(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) {
    return describeError(err.errors[0]);
  }
  if (err instanceof Error) {
    const code = (err as { code?: string }).code;
    const msg = err.message || code || err.name;
    return msg;
  }
  return String(err);
}
