import { existsSync, readFileSync } from "node:fs";
import { homedir, userInfo } from "node:os";
import { join } from "node:path";
import { parse as parseUrlBody } from "pg-connection-string";
import { InputError } from "../input-error.js";

export type Role = "source" | "target";

/**
 * Connection strings as libpq (psql, pg_dump, psycopg) reads them: URLs and
 * keyword/value strings, the PG* environment variables for what the string
 * leaves out, then libpq's defaults. Parsed here, once, so that the driver
 * never sees (and never echoes) the string itself.
 */

export const SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];
export type SslMode = "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full";

/** The libpq keywords we honour, each with the environment variable libpq reads for it. */
const KEYWORDS = {
  host: "PGHOST",
  port: "PGPORT",
  dbname: "PGDATABASE",
  user: "PGUSER",
  password: "PGPASSWORD",
  passfile: "PGPASSFILE",
  options: "PGOPTIONS",
  application_name: "PGAPPNAME",
  fallback_application_name: undefined,
  connect_timeout: "PGCONNECT_TIMEOUT",
  keepalives: undefined,
  keepalives_idle: undefined,
  sslmode: "PGSSLMODE",
  sslrootcert: "PGSSLROOTCERT",
  sslcert: "PGSSLCERT",
  sslkey: "PGSSLKEY",
  sslpassword: undefined,
} as const;

export type Keyword = keyof typeof KEYWORDS;
export type ConnParams = Partial<Record<Keyword, string>>;

/** libpq keywords we do not implement: named as such rather than called unknown. */
const UNSUPPORTED = new Set([
  "hostaddr",
  "require_auth",
  "channel_binding",
  "client_encoding",
  "keepalives_interval",
  "keepalives_count",
  "tcp_user_timeout",
  "replication",
  "gssencmode",
  "requiressl",
  "sslnegotiation",
  "sslcompression",
  "sslcertmode",
  "sslcrl",
  "sslcrldir",
  "sslsni",
  "requirepeer",
  "ssl_min_protocol_version",
  "ssl_max_protocol_version",
  "krbsrvname",
  "gsslib",
  "gssdelegation",
  "service",
  "target_session_attrs",
  "load_balance_hosts",
]);

export function isKeyword(name: string): name is Keyword {
  return Object.hasOwn(KEYWORDS, name);
}

/**
 * A word of the user's string, shown in a message only when it has the shape
 * of a keyword: a misplaced password must not be echoed back.
 */
function shown(word: string): string {
  return /^[a-z_]{1,40}$/.test(word) ? `"${word}"` : "(not shown)";
}

function checkKeyword(name: string): Keyword {
  if (isKeyword(name)) return name;
  if (UNSUPPORTED.has(name)) throw new Error(`has ${name}, which xmin-sync does not support`);
  throw new Error(`has an invalid connection option ${shown(name)}`);
}

/**
 * The parameters a connection string gives, by libpq keyword. Throws a
 * message that never repeats the string: it may hold a password.
 */
export function parseConnString(text: string): ConnParams {
  const s = text.trim();
  if (/^postgres(?:ql)?:\/\//.test(s)) return parseUri(s);
  const scheme = /^([a-z][a-z0-9+.:-]{0,30}):\/\//i.exec(s)?.[1];
  if (scheme) throw new Error(`is a ${scheme}:// URL: use postgres:// or postgresql://`);
  if (!/^\s*[A-Za-z_]+\s*=/.test(s)) {
    // libpq would say `missing "=" after "<the string>"`, which may hold the password.
    throw new Error(
      "is neither a postgres:// URL nor keyword=value pairs (host=… dbname=…)" +
        (s.includes("@") ? "; put postgres:// in front of a user@host/db string" : ""),
    );
  }
  return parseKeywords(s);
}

/** postgres://[user[:password]@][host][:port][/dbname][?keyword=value&…] */
function parseUri(s: string): ConnParams {
  const q = s.indexOf("?");
  let body;
  try {
    body = parseUrlBody(q < 0 ? s : s.slice(0, q));
  } catch {
    throw new Error(
      "is not a valid URL (check the port, and percent-encode @ : / ? # in the user name and password)",
    );
  }
  const params: ConnParams = {};
  if (body.host) params.host = body.host;
  if (body.port) params.port = body.port;
  if (body.database) params.dbname = body.database;
  if (body.user) params.user = body.user;
  if (body.password) params.password = body.password;
  if (q < 0) return params;
  for (const pair of s.slice(q + 1).split("&")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    if (eq < 0) throw new Error(`has a URL query parameter ${shown(pair)} without "="`);
    let name, value;
    try {
      // Not URLSearchParams: libpq does not read "+" as a space.
      name = decodeURIComponent(pair.slice(0, eq));
      value = decodeURIComponent(pair.slice(eq + 1));
    } catch {
      throw new Error("has a malformed %-escape in its URL query");
    }
    // libpq reads JDBC's ssl=true as sslmode=require.
    if (name === "ssl" && value === "true") params.sslmode = "require";
    else params[checkKeyword(name)] = value;
  }
  return params;
}

/**
 * libpq's keyword/value syntax: `keyword = value` pairs separated by white
 * space; a value in single quotes may hold spaces; a backslash escapes the
 * next character, quoted or not; a later keyword replaces an earlier one.
 */
export function parseKeywords(s: string): ConnParams {
  const params: ConnParams = {};
  let i = 0;
  const space = (c: string | undefined) => c !== undefined && /\s/.test(c);
  while (i < s.length) {
    while (space(s[i])) i++;
    if (i >= s.length) break;
    let name = "";
    while (i < s.length && !space(s[i]) && s[i] !== "=") name += s[i++];
    while (space(s[i])) i++;
    if (s[i] !== "=") {
      throw new Error(
        isKeyword(name) ? `has no "=" after ${shown(name)}` : `has a word without "=" after it`,
      );
    }
    i++;
    while (space(s[i])) i++;
    let value = "";
    if (s[i] === "'") {
      i++;
      for (;;) {
        if (i >= s.length) throw new Error("has an unterminated quoted value");
        const c = s[i++]!;
        if (c === "'") break;
        if (c === "\\" && i < s.length) value += s[i++];
        else value += c;
      }
    } else {
      while (i < s.length && !space(s[i])) {
        const c = s[i++]!;
        if (c === "\\" && i < s.length) value += s[i++];
        else value += c;
      }
    }
    params[checkKeyword(name)] = value;
  }
  return params;
}

/** A keyword/value string libpq reads back as `params` (every value quoted). */
export function formatConnString(params: ConnParams): string {
  return Object.entries(params)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}='${v!.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`)
    .join(" ");
}

// --- Secrets -----------------------------------------------------------------

const secrets = new Set<string>();

/**
 * Passwords this process has read, from any source, so that output can be
 * scrubbed of them whatever form they took. Very short ones are left out:
 * hiding every "ab" in the output would garble it.
 */
export function rememberSecret(secret: string | undefined): void {
  if (!secret || secret.length < 4) return;
  secrets.add(secret);
  secrets.add(encodeURIComponent(secret));
}

/**
 * Text with every password hidden: those this process has read, the
 * password of anything shaped like user:password@host (with or without a
 * scheme), and password=… in URL queries and keyword strings.
 */
export function redactSecrets(text: string): string {
  let out = text;
  for (const s of secrets) out = out.split(s).join("***");
  return out
    .replace(/\S*@\S*/g, hideUserInfoPassword)
    .replace(/([?&](?:ssl)?password=)[^&#\s"']*/gi, "$1***")
    .replace(/(^|[^\w?&])((?:ssl)?password\s*=\s*)(?:'(?:[^'\\]|\\.)*'?|[^\s"]*)/gi, "$1$2***");
}

/**
 * In one word, what lies between the first ":" of the user info and the last
 * "@" (URL parsers take the last "@" to end the user info), with or without
 * a scheme: postgres://u:p@h, //u:p@h, u:p@h.
 */
function hideUserInfoPassword(word: string): string {
  const at = word.lastIndexOf("@");
  const scheme = word.indexOf("://");
  const start = scheme >= 0 && scheme < at ? scheme + 3 : 0;
  const colon = word.indexOf(":", start);
  if (colon < 0 || colon > at) return word;
  return `${word.slice(0, colon)}:***${word.slice(at)}`;
}

// --- Resolution --------------------------------------------------------------

export interface TlsFiles {
  /** Trusted roots (PEM); absent: Node's bundled CAs (sslrootcert=system) or none needed. */
  ca?: string;
  cert?: string;
  key?: string;
  passphrase?: string;
}

export interface ResolvedConn {
  role: Role;
  host: string;
  port: number;
  database: string;
  user: string;
  /** From the string or PGPASSWORD; otherwise looked up in `passfile` when the server asks. */
  password?: string;
  passfile: string;
  /** A Unix-domain socket directory: libpq never uses TLS there. */
  socket: boolean;
  sslmode: SslMode;
  /** What a TLS connection checks: nothing, the chain up to a trusted root, or the chain and the host name. */
  verify: "none" | "chain" | "full";
  rootcert?: string;
  tls: TlsFiles;
  applicationName: string;
  /** 0: wait as long as the operating system does. */
  connectTimeoutMs: number;
  options?: string;
  keepAlive: boolean;
  keepAliveIdleMs?: number;
}

/** Our connect timeout when neither the string nor PGCONNECT_TIMEOUT sets one (libpq waits forever). */
const DEFAULT_CONNECT_TIMEOUT_S = 30;

/** Where Debian's and upstream's builds of libpq look for the server's socket. */
const SOCKET_DIRS = ["/var/run/postgresql", "/tmp"];

/**
 * Everything needed to connect `role` with `text`, libpq's way: the string,
 * then the PG* variables of `env`, then the defaults. Reads the TLS files
 * now, so that a missing one is bad input (exit 2) before anything starts.
 */
export function resolveConnection(
  text: string,
  role: Role,
  env: NodeJS.ProcessEnv = process.env,
  fallbackApplicationName = `xmin-sync ${role}`,
): ResolvedConn {
  const fail: Fail = (what) => new InputError(`${role} connection: ${what}`);
  let params: ConnParams;
  try {
    params = parseConnString(text);
  } catch (err) {
    throw new InputError(`${role} connection string ${(err as Error).message}`);
  }
  const get: Get = (k) => {
    if (params[k]) return params[k];
    const v = KEYWORDS[k];
    return v && env[v] ? env[v] : undefined;
  };

  const port = Number(get("port") ?? 5432);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw fail(`port must be a number from 1 to 65535, not ${JSON.stringify(get("port"))}`);
  const givenHost = get("host");
  if (givenHost?.includes(","))
    throw fail(`several hosts (${givenHost}) are not supported: give one host`);
  const host = givenHost ?? defaultHost(port);
  const socket = host.startsWith("/");
  const user = get("user") ?? userInfo().username;
  const database = get("dbname") ?? user;
  const password = get("password");
  rememberSecret(password);

  const sslmodeText = get("sslmode");
  if (sslmodeText !== undefined && !SSL_MODES.includes(sslmodeText))
    throw fail(
      `sslmode must be one of ${SSL_MODES.join(", ")}, not ${JSON.stringify(sslmodeText)}`,
    );
  const sslmode = (sslmodeText ?? "prefer") as SslMode;

  const home = env.HOME || homedir();
  const tlsSettings =
    socket || sslmode === "disable"
      ? { sslmode, verify: "none" as const, tls: {} }
      : resolveTls(get, sslmode, sslmodeText !== undefined, join(home, ".postgresql"), fail);
  const connectTimeoutS = seconds(get, "connect_timeout", fail) ?? DEFAULT_CONNECT_TIMEOUT_S;
  const keepalives = get("keepalives");
  if (keepalives !== undefined && keepalives !== "0" && keepalives !== "1")
    throw fail(`keepalives must be 0 or 1, not ${JSON.stringify(keepalives)}`);
  const idle = seconds(get, "keepalives_idle", fail);
  const options = get("options");

  const conn: ResolvedConn = {
    role,
    host,
    port,
    database,
    user,
    passfile: get("passfile") ?? join(home, ".pgpass"),
    socket,
    ...tlsSettings,
    applicationName:
      get("application_name") ?? params.fallback_application_name ?? fallbackApplicationName,
    // libpq: "a value of 1 is interpreted as 2".
    connectTimeoutMs: (connectTimeoutS === 1 ? 2 : connectTimeoutS) * 1000,
    ...(options ? { options } : {}),
    keepAlive: keepalives !== "0",
    ...(idle !== undefined ? { keepAliveIdleMs: idle * 1000 } : {}),
  };
  // Kept out of JSON.stringify, console.log and pino, as pg does with its own.
  Object.defineProperty(conn, "password", { value: password, enumerable: false });
  return conn;
}

type Get = (k: Keyword) => string | undefined;
type Fail = (what: string) => InputError;

function seconds(get: Get, keyword: Keyword, fail: Fail): number | undefined {
  const text = get(keyword);
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0)
    throw fail(`${keyword} must be a whole number of seconds, not ${JSON.stringify(text)}`);
  return n;
}

/**
 * What a TLS connection trusts and presents. A file named in the string or
 * the environment must be there; libpq's default files (`pgDir`/root.crt,
 * postgresql.crt, postgresql.key) are used when they are.
 */
function resolveTls(
  get: Get,
  given: SslMode,
  sslmodeGiven: boolean,
  pgDir: string,
  fail: Fail,
): Pick<ResolvedConn, "sslmode" | "verify" | "rootcert" | "tls"> {
  const fileOf = (keyword: Keyword, fallback: string) => {
    const path = get(keyword) ?? join(pgDir, fallback);
    if (!get(keyword) && !existsSync(path)) return undefined;
    return { path, content: readTlsFile(keyword, path, fail) };
  };
  let sslmode = given;
  const tls: TlsFiles = {};
  let rootcert: string | undefined;
  if (get("sslrootcert") === "system") {
    // libpq 16+: the system's trusted roots, and then nothing short of
    // verify-full (a public CA vouches for names, not for servers).
    if (sslmodeGiven && sslmode !== "verify-full")
      throw fail(`sslrootcert=system needs sslmode=verify-full, not ${sslmode}`);
    sslmode = "verify-full";
    rootcert = "system";
  } else {
    const root = fileOf("sslrootcert", "root.crt");
    if (root) {
      rootcert = root.path;
      tls.ca = root.content;
    } else if (sslmode === "verify-ca" || sslmode === "verify-full") {
      throw fail(
        `sslmode=${sslmode} needs the server's root certificate: set sslrootcert (or PGSSLROOTCERT), or put it in ${join(pgDir, "root.crt")}`,
      );
    }
  }
  const cert = fileOf("sslcert", "postgresql.crt");
  const key = cert || get("sslkey") ? fileOf("sslkey", "postgresql.key") : undefined;
  if (cert && !key)
    throw fail(`sslcert "${cert.path}" has no private key: set sslkey (or PGSSLKEY)`);
  if (cert && key) {
    tls.cert = cert.content;
    tls.key = key.content;
  }
  const passphrase = get("sslpassword");
  if (passphrase) {
    rememberSecret(passphrase);
    tls.passphrase = passphrase;
  }
  return {
    sslmode,
    // As libpq: with a root certificate at hand, even prefer and require
    // check the chain (but not the host name).
    verify: sslmode === "verify-full" ? "full" : rootcert ? "chain" : "none",
    ...(rootcert ? { rootcert } : {}),
    tls,
  };
}

function readTlsFile(keyword: string, path: string, fail: Fail): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as { code?: string }).code;
    const why =
      code === "ENOENT"
        ? "does not exist"
        : code === "EACCES"
          ? "cannot be read (permission denied)"
          : code === "EISDIR"
            ? "is a directory"
            : `cannot be read (${code ?? (err as Error).message})`;
    throw fail(`${keyword} file "${path}" ${why}`);
  }
}

/**
 * libpq's default is the server's Unix socket; which directory depends on
 * how libpq was built, so take the one where a server listens on `port`,
 * and TCP to localhost where none does.
 */
function defaultHost(port: number): string {
  return SOCKET_DIRS.find((d) => existsSync(join(d, `.s.PGSQL.${port}`))) ?? "localhost";
}

/** The connection as a URL without its password, for messages: postgres://user:***@host:port/db */
export function describeConnection(c: ResolvedConn): string {
  const host = c.socket
    ? encodeURIComponent(c.host)
    : c.host.includes(":")
      ? `[${c.host}]`
      : c.host;
  const user = encodeURIComponent(c.user) + (c.password ? ":***" : "");
  return `postgres://${user}@${host}:${c.port}/${encodeURIComponent(c.database)}`;
}
