import { parse as parseUrlBody } from "pg-connection-string";
import { formatConnString, isKeyword, type ConnParams } from "./conninfo.js";

/**
 * An Airflow connection, as Airflow puts it in AIRFLOW_CONN_<ID>, turned into
 * a libpq keyword/value string. Two forms: the URI
 * (postgres://login:password@host:port/schema?extra=…, parts URL-encoded,
 * extras as query parameters or as JSON in __extra__) and, since Airflow 2.3,
 * JSON ({"conn_type": "postgres", "host", "login", "password", "schema",
 * "port", "extra"}). Extras that are libpq keywords (sslmode, sslrootcert, …)
 * are kept; the PostgresHook's own (cursor, aws_conn_id, …) mean nothing here.
 * Throws messages naming `variable`, never its value.
 */
export function airflowConnString(value: string, variable: string): string {
  const text = value.trim();
  const conn = text.startsWith("{") ? fromJson(text, variable) : fromUri(text, variable);
  if (conn.conn_type !== undefined && !/^postgres(ql)?$/.test(conn.conn_type))
    throw new Error(`${variable} is a ${conn.conn_type} connection, not postgres`);
  const params: ConnParams = {};
  const set = (k: keyof ConnParams, v: unknown) => {
    if (v !== undefined && v !== null && v !== "") params[k] = String(v);
  };
  set("host", conn.host);
  set("port", conn.port);
  set("dbname", conn.schema);
  set("user", conn.login);
  set("password", conn.password);
  for (const [k, v] of Object.entries(conn.extra)) {
    if (k === "iam" && v !== false && v !== "false")
      throw new Error(`${variable}: IAM authentication (extra "iam") is not supported`);
    if (isKeyword(k)) set(k, v);
  }
  return formatConnString(params);
}

interface AirflowConn {
  conn_type?: string;
  host?: unknown;
  port?: unknown;
  schema?: unknown;
  login?: unknown;
  password?: unknown;
  extra: Record<string, unknown>;
}

function fromJson(text: string, variable: string): AirflowConn {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new Error(`${variable} is neither an Airflow connection URI nor valid JSON`);
  }
  return {
    ...(typeof raw.conn_type === "string" ? { conn_type: raw.conn_type } : {}),
    host: raw.host,
    port: raw.port,
    schema: raw.schema,
    login: raw.login,
    password: raw.password,
    // Airflow accepts extra as an object or as a JSON string.
    extra: parseExtra(raw.extra, variable),
  };
}

function fromUri(text: string, variable: string): AirflowConn {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text)?.[1];
  if (!scheme) throw new Error(`${variable} is neither an Airflow connection URI nor JSON`);
  const q = text.indexOf("?");
  let body;
  try {
    body = parseUrlBody(`postgres${text.slice(scheme.length, q < 0 ? undefined : q)}`);
  } catch {
    throw new Error(`${variable} is not a valid connection URI`);
  }
  // Airflow writes extras with urlencode and reads them with parse_qsl: "+" is a space.
  const query = new URLSearchParams(q < 0 ? "" : text.slice(q + 1));
  const extra: Record<string, unknown> = {};
  for (const [k, v] of query) {
    if (k === "__extra__") Object.assign(extra, parseExtra(v, variable));
    else extra[k] = v;
  }
  return {
    conn_type: scheme.replace(/-/g, "_"),
    host: body.host,
    port: body.port,
    schema: body.database,
    login: body.user,
    password: body.password,
    extra,
  };
}

function parseExtra(extra: unknown, variable: string): Record<string, unknown> {
  if (extra === undefined || extra === null || extra === "") return {};
  if (typeof extra === "object") return extra as Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(String(extra));
    if (parsed && typeof parsed === "object") return parsed as Record<string, unknown>;
  } catch {
    /* reported below */
  }
  throw new Error(`${variable}: its extra is not a JSON object`);
}
