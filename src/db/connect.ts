import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import pg from "pg";
import pgpass from "pgpass/lib/helper.js";
import { InputError } from "../input-error.js";
import {
  describeConnection,
  redactSecrets,
  rememberSecret,
  resolveConnection,
  type ResolvedConn,
  type Role,
} from "./conninfo.js";

export type { Role };

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
  // PostgreSQL 14+: the connection that holds a run's table locks is idle
  // while the tables copy.
  ["idle_session_timeout", "0"],
  // PostgreSQL 17+; skipped where the server does not know it.
  ["transaction_timeout", "0"],
  // PostgreSQL 14+: a backend whose client died (a killed process, an
  // evicted pod) stops its statement within a second, rolling back and
  // releasing the table's lock, instead of running a long MERGE or DELETE
  // to its end for no one.
  ["client_connection_check_interval", "1000"],
];

export interface ConnectOptions {
  /** The application_name when neither the string nor PGAPPNAME gives one (default "xmin-sync <role>"). */
  applicationName?: string;
}

/**
 * A session on `role`'s server, from a libpq connection string (see
 * conninfo.ts), with our session settings. Every connection of a run comes
 * from here. Its errors name the side and never carry a password.
 */
const closing = new Set<Promise<void>>();

/**
 * Ends a connection without waiting for the socket to close: a run's next
 * step need not wait on it (30-70 ms per connection measured here, on the
 * path between staging and the merge). The Terminate message goes out at
 * once, so the server ends the session and its locks right away.
 * `allClosed` waits for every connection ended this way.
 */
export function closeSoon(client: pg.Client): void {
  const ended: Promise<void> = client
    .end()
    .catch(() => undefined)
    .finally(() => closing.delete(ended));
  closing.add(ended);
}

/**
 * Two connections opened at once (each costs a start-up round on the
 * critical path). If either fails, the other is closed with its `close`
 * and the first failure is thrown.
 */
export async function openBoth<A, B>(
  a: Promise<A>,
  b: Promise<B>,
  close: [(x: A) => Promise<unknown>, (y: B) => Promise<unknown>],
): Promise<[A, B]> {
  const [x, y] = await Promise.allSettled([a, b]);
  if (x.status === "fulfilled" && y.status === "fulfilled") return [x.value, y.value];
  if (x.status === "fulfilled") await close[0](x.value).catch(() => undefined);
  if (y.status === "fulfilled") await close[1](y.value).catch(() => undefined);
  throw x.status === "rejected" ? x.reason : (y as PromiseRejectedResult).reason;
}

/** Ends a connection, for openBoth. */
export const endClient = (c: pg.Client) => c.end();

/** Resolves once every connection given to `closeSoon` has closed. */
export async function allClosed(): Promise<void> {
  await Promise.all([...closing]);
}

export async function connect(
  conninfo: string,
  role: Role,
  opts: ConnectOptions = {},
): Promise<pg.Client> {
  if (!conninfo) {
    const env = role === "source" ? "SOURCE_DATABASE_URL" : "TARGET_DATABASE_URL";
    throw new InputError(`no ${role} database given: pass --${role} or set ${env}`);
  }
  const conn = resolveConnection(conninfo, role, process.env, opts.applicationName);
  const failures: Array<{ tls: boolean; err: unknown }> = [];
  for (const tls of tlsAttempts(conn)) {
    const client = new pg.Client(clientConfig(conn, tls));
    // An idle client whose server goes away emits 'error'; without a listener
    // that would crash the process instead of failing the query that uses it.
    client.on("error", () => undefined);
    try {
      await client.connect();
    } catch (err) {
      await client.end().catch(() => undefined);
      if (describeError(err) === NO_TLS) withoutTls.add(serverKey(conn));
      failures.push({ tls, err: scrub(err) });
      // libpq tries the other way only when the server answered: a host that
      // cannot be reached cannot be reached either way.
      if (isNetworkError(err)) break;
      continue;
    }
    try {
      await applySessionSettings(client);
    } catch (err) {
      await client.end().catch(() => undefined);
      throw scrub(err);
    }
    return client;
  }
  throw new Error(
    `cannot connect to ${role} ${describeConnection(conn)}: ${explain(conn, failures)}`,
    {
      cause: failures.at(-1)?.err,
    },
  );
}

async function applySessionSettings(client: pg.Client): Promise<void> {
  const names = SESSION_SETTINGS.map(([n]) => n);
  const values = SESSION_SETTINGS.map(([, v]) => v);
  await client.query(
    `SELECT set_config(s.name, s.value, false) FROM unnest($1::text[], $2::text[]) AS s(name, value)
      WHERE s.name IN (SELECT name FROM pg_settings)`,
    [names, values],
  );
}

/**
 * Servers that answered "no TLS" to this process: a run opens many
 * connections, and prefer need not ask each time (libpq asks on the same
 * socket; pg needs a new one).
 */
const withoutTls = new Set<string>();
const serverKey = (conn: ResolvedConn) => `${conn.host}:${conn.port}`;

/**
 * The attempts libpq makes for an sslmode, in order: prefer tries TLS, then
 * plain if the server refused; allow the other way round. libpq never uses
 * TLS over a Unix socket.
 */
function tlsAttempts(conn: ResolvedConn): boolean[] {
  if (conn.socket) return [false];
  switch (conn.sslmode) {
    case "disable":
      return [false];
    case "allow":
      return [false, true];
    case "prefer":
      return withoutTls.has(serverKey(conn)) ? [false] : [true, false];
    default:
      return [true];
  }
}

function clientConfig(conn: ResolvedConn, tls: boolean): pg.ClientConfig {
  return {
    host: conn.host,
    port: conn.port,
    database: conn.database,
    user: conn.user,
    // Looked up only when the server asks, as libpq does.
    password: conn.password ?? (() => passwordFromFile(conn)),
    ssl: tls ? tlsOptions(conn) : false,
    application_name: conn.applicationName,
    ...(conn.options ? { options: conn.options } : {}),
    connectionTimeoutMillis: conn.connectTimeoutMs,
    keepAlive: conn.keepAlive,
    ...(conn.keepAliveIdleMs !== undefined
      ? { keepAliveInitialDelayMillis: conn.keepAliveIdleMs }
      : {}),
  };
}

function tlsOptions(conn: ResolvedConn): pg.ClientConfig["ssl"] {
  return {
    ...conn.tls,
    // require (and prefer) encrypt without checking whom they talk to, as in
    // psql; verify-ca checks the chain but not the name.
    rejectUnauthorized: conn.verify !== "none",
    ...(conn.verify === "chain" ? { checkServerIdentity: () => undefined } : {}),
  };
}

async function passwordFromFile(conn: ResolvedConn): Promise<string> {
  const found = await stat(conn.passfile).then(
    (st) =>
      pgpass.usePgPass(st, conn.passfile)
        ? new Promise<string | undefined>((resolve) =>
            pgpass.getPassword(
              {
                // libpq matches a Unix socket connection against "localhost".
                host: conn.socket ? "localhost" : conn.host,
                port: conn.port,
                database: conn.database,
                user: conn.user,
              },
              createReadStream(conn.passfile),
              resolve,
            ),
          )
        : undefined,
    () => undefined,
  );
  if (found === undefined) throw new Error(NO_PASSWORD);
  rememberSecret(found);
  return found;
}

const NO_PASSWORD = "no password supplied";

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ETIMEDOUT",
  "ECONNRESET",
]);

function isNetworkError(err: unknown): boolean {
  if (err instanceof AggregateError) return err.errors.every(isNetworkError);
  const code = (err as { code?: string }).code;
  return (
    (code !== undefined && NETWORK_CODES.has(code)) ||
    /timeout/i.test(err instanceof Error ? err.message : "")
  );
}

/** Why the attempts failed, in one line; both ways when prefer or allow tried both and they differ. */
function explain(conn: ResolvedConn, all: Array<{ tls: boolean; err: unknown }>): string {
  // A server without TLS is no failure where plain was the other way to try.
  const failures = all.length > 1 ? all.filter((f) => describeError(f.err) !== NO_TLS) : all;
  const reasons = failures.map((f) => explainOne(conn, f.tls, f.err));
  if (reasons.length < 2 || reasons[0] === reasons[1]) return reasons[0] ?? "no attempt made";
  return failures.map((f, i) => `${f.tls ? "with" : "without"} TLS: ${reasons[i]}`).join("; ");
}

/** pg's message when the server answers "N" to its TLS request. */
const NO_TLS = "The server does not support SSL connections";

function explainOne(conn: ResolvedConn, tls: boolean, err: unknown): string {
  const msg = describeError(err);
  const code = (err as { code?: string }).code ?? "";
  if (msg.includes(NO_PASSWORD) || msg.includes("client password must be a string"))
    return `the server asks for a password and none was given (in the connection string, PGPASSWORD, or a line of ${conn.passfile})`;
  if (msg === NO_TLS) return `the server does not accept TLS (sslmode=${conn.sslmode})`;
  if (/timeout/i.test(msg))
    return `no answer within ${conn.connectTimeoutMs / 1000} s (connect_timeout)`;
  if (tls && (/CERT|SELF_SIGNED|UNABLE_TO|ERR_TLS/.test(code) || msg.includes("altnames")))
    return `server certificate not accepted (sslmode=${conn.sslmode}${conn.rootcert ? `, sslrootcert ${conn.rootcert}` : ""}): ${msg}`;
  return msg;
}

/**
 * The error with the passwords this process knows taken out of its message
 * and stack, and those of its causes: a driver message may quote what it was
 * given, and --debug prints stacks and causes.
 */
function scrub(err: unknown, depth = 0): unknown {
  if (!(err instanceof Error) || depth > 5) return err;
  err.message = redactSecrets(err.message);
  if (err.stack) err.stack = redactSecrets(err.stack);
  if (err instanceof AggregateError) err.errors.forEach((e) => scrub(e, depth + 1));
  scrub(err.cause, depth + 1);
  return err;
}

/** One line describing any error, including AggregateError from multi-address connects; never a password. */
export function describeError(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) {
    return describeError(err.errors[0]);
  }
  if (err instanceof Error) {
    const code = (err as { code?: string }).code;
    return redactSecrets(err.message || code || err.name);
  }
  return redactSecrets(String(err));
}
