import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { userInfo } from "node:os";
import { airflowConnString } from "../src/db/airflow.js";
import {
  describeConnection,
  formatConnString,
  parseConnString,
  redactSecrets,
  rememberSecret,
  resolveConnection,
} from "../src/db/conninfo.js";
import { resolveDatabaseUrl } from "../src/db/database-url.js";
import { InputError } from "../src/input-error.js";

/**
 * Connection strings read as libpq reads them, by exact result: the parts
 * of URLs and keyword/value strings, the PG* variables and defaults, the
 * errors (which never repeat the string), redaction, and Airflow's forms.
 * Connecting with them is tested against real servers in tls.test.ts and
 * connections.test.ts.
 */

/** The message of what `fn` throws, checked to be bad input (exit 2). */
function inputError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof InputError, `an InputError, not ${String(err)}`);
    return err.message;
  }
  assert.fail("did not throw");
}

describe("connection strings", () => {
  test("URLs: user info, host, port and database percent-decoded; query keywords", () => {
    assert.deepEqual(
      parseConnString(
        "postgresql://lo%40der:p%40ss%2Fw@db.example:5433/my%20db?sslmode=verify-ca&application_name=a+b",
      ),
      {
        host: "db.example",
        port: "5433",
        dbname: "my db",
        user: "lo@der",
        password: "p@ss/w",
        sslmode: "verify-ca",
        // libpq does not read "+" as a space.
        application_name: "a+b",
      },
    );
    assert.deepEqual(parseConnString("postgres://[::1]:5432/db"), {
      host: "::1",
      port: "5432",
      dbname: "db",
    });
    assert.deepEqual(parseConnString("postgres://%2Fvar%2Frun%2Fpostgresql/db"), {
      host: "/var/run/postgresql",
      dbname: "db",
    });
    assert.deepEqual(parseConnString("postgres://"), {});
    assert.deepEqual(parseConnString("postgres:///wh?host=h2&port=6000"), {
      host: "h2",
      port: "6000",
      dbname: "wh",
    });
    // JDBC's ssl=true, as libpq reads it.
    assert.deepEqual(parseConnString("postgres://h/db?ssl=true"), {
      host: "h",
      dbname: "db",
      sslmode: "require",
    });
  });

  test("keyword/value strings with libpq's quoting", () => {
    assert.deepEqual(
      parseConnString(
        `host=h port = 5433 dbname='my db' user=u password='it\\'s \\\\ me' options='-c work_mem=64MB'`,
      ),
      {
        host: "h",
        port: "5433",
        dbname: "my db",
        user: "u",
        password: "it's \\ me",
        options: "-c work_mem=64MB",
      },
    );
    // An escape outside quotes, an empty quoted value, a later keyword winning.
    assert.deepEqual(parseConnString("  password=a\\ b  user='' host=a host=b "), {
      password: "a b",
      user: "",
      host: "b",
    });
    const round = { host: "h", password: `a'b\\c d =x`, dbname: "" };
    assert.equal(formatConnString(round), `host='h' password='a\\'b\\\\c d =x' dbname=''`);
    assert.deepEqual(parseConnString(formatConnString(round)), round);
  });

  test("malformed strings: a message that never repeats the string", () => {
    const cases: Array<[string, string]> = [
      ["notaurl", "is neither a postgres:// URL nor keyword=value pairs (host=… dbname=…)"],
      [
        "loader:Secret@127.0.0.1:5432/wh",
        "is neither a postgres:// URL nor keyword=value pairs (host=… dbname=…); put postgres:// in front of a user@host/db string",
      ],
      [
        "//reader:Secret@host/db",
        "is neither a postgres:// URL nor keyword=value pairs (host=… dbname=…); put postgres:// in front of a user@host/db string",
      ],
      [
        "postgres://u:Secret@h:port/db",
        "is not a valid URL (check the port, and percent-encode @ : / ? # in the user name and password)",
      ],
      ["mysql://u:Secret@h/db", "is a mysql:// URL: use postgres:// or postgresql://"],
      ["host=h Secret", `has a word without "=" after it`],
      ["host=h user", `has no "=" after "user"`],
      ["host=h password='Secret", "has an unterminated quoted value"],
      ["host=h pasword=Secret", `has an invalid connection option "pasword"`],
      ["host=h Se:cret=x", "has an invalid connection option (not shown)"],
      [
        "host=h target_session_attrs=any",
        "has target_session_attrs, which xmin-sync does not support",
      ],
      ["postgres://h/db?Secret", `has a URL query parameter (not shown) without "="`],
      ["postgres://h/db?password=%zz", "has a malformed %-escape in its URL query"],
    ];
    for (const [text, message] of cases) {
      assert.equal(
        inputError(() => resolveConnection(text, "source", {})),
        `source connection string ${message}`,
        text,
      );
    }
  });

  test("the PG* variables fill what the string leaves out; then libpq's defaults", () => {
    const env = {
      PGHOST: "envhost",
      PGPORT: "6001",
      PGDATABASE: "envdb",
      PGUSER: "envuser",
      PGPASSWORD: "envpw",
      PGAPPNAME: "envapp",
      PGCONNECT_TIMEOUT: "7",
      PGPASSFILE: "/etc/pgpass",
      PGOPTIONS: "-c work_mem=1MB",
    };
    const c = resolveConnection("dbname=wh user=u", "target", env);
    assert.deepEqual(
      { ...c, password: c.password },
      {
        role: "target",
        host: "envhost",
        port: 6001,
        database: "wh",
        user: "u",
        password: "envpw",
        passfile: "/etc/pgpass",
        socket: false,
        sslmode: "prefer",
        verify: "none",
        tls: {},
        applicationName: "envapp",
        connectTimeoutMs: 7000,
        options: "-c work_mem=1MB",
        keepAlive: true,
      },
    );
    // The password stays out of JSON and logs.
    assert.doesNotMatch(JSON.stringify(c), /envpw/);

    const d = resolveConnection("host=h", "source", {});
    assert.equal(d.port, 5432);
    assert.equal(d.user, userInfo().username);
    assert.equal(d.database, userInfo().username);
    assert.equal(d.password, undefined);
    assert.equal(d.applicationName, "xmin-sync source");
    assert.equal(d.connectTimeoutMs, 30_000);
    assert.equal(resolveConnection("host=h connect_timeout=0", "source", {}).connectTimeoutMs, 0);
    assert.equal(
      resolveConnection("host=h connect_timeout=1", "source", {}).connectTimeoutMs,
      2000,
    );
    assert.equal(
      resolveConnection("host=h fallback_application_name=f", "source", {}).applicationName,
      "f",
    );
    const sock = resolveConnection("host=/tmp/x sslmode=require", "source", {});
    assert.equal(sock.socket, true);
    assert.equal(
      describeConnection(resolveConnection("postgres://u:pw@[::1]:5/d%20b", "source", {})),
      "postgres://u:***@[::1]:5/d%20b",
    );
    assert.equal(
      describeConnection(sock),
      `postgres://${userInfo().username}@%2Ftmp%2Fx:5432/${userInfo().username}`,
    );
  });

  test("bad values name the side and the keyword", () => {
    const cases: Array<[string, NodeJS.ProcessEnv, string]> = [
      [
        "host=h sslmode=verify",
        {},
        `sslmode must be one of disable, allow, prefer, require, verify-ca, verify-full, not "verify"`,
      ],
      [
        "host=h",
        { PGSSLMODE: "on" },
        `sslmode must be one of disable, allow, prefer, require, verify-ca, verify-full, not "on"`,
      ],
      ["host=h port=x", {}, `port must be a number from 1 to 65535, not "x"`],
      ["host=a,b", {}, "several hosts (a,b) are not supported: give one host"],
      [
        "host=h connect_timeout=soon",
        {},
        `connect_timeout must be a whole number of seconds, not "soon"`,
      ],
      [
        "host=h sslrootcert=/nonexistent/ca.crt sslmode=require",
        {},
        `sslrootcert file "/nonexistent/ca.crt" does not exist`,
      ],
      ["host=h", { PGSSLKEY: "/nonexistent/k" }, `sslkey file "/nonexistent/k" does not exist`],
      ["host=h sslrootcert=/ sslmode=require", {}, `sslrootcert file "/" is a directory`],
      [
        "host=h sslrootcert=system sslmode=require",
        {},
        "sslrootcert=system needs sslmode=verify-full, not require",
      ],
      [
        "host=h sslmode=verify-ca",
        { HOME: "/nonexistent" },
        "sslmode=verify-ca needs the server's root certificate: set sslrootcert (or PGSSLROOTCERT), or put it in /nonexistent/.postgresql/root.crt",
      ],
    ];
    for (const [text, env, message] of cases) {
      assert.equal(
        inputError(() => resolveConnection(text, "target", env)),
        `target connection: ${message}`,
        text,
      );
    }
    // sslmode=disable reads no TLS file; a Unix socket neither.
    assert.equal(
      resolveConnection("host=h sslmode=disable sslrootcert=/nonexistent", "source", {}).sslmode,
      "disable",
    );
    const system = resolveConnection("host=h sslrootcert=system", "source", {});
    assert.deepEqual(
      [system.sslmode, system.verify, system.tls.ca],
      ["verify-full", "full", undefined],
    );
  });
});

describe("redaction", () => {
  test("passwords in every form are hidden", () => {
    const cases: Array<[string, string]> = [
      ["postgres://u:secret@h:5432/db", "postgres://u:***@h:5432/db"],
      [
        "postgres://u@h/db?password=secret&sslmode=disable",
        "postgres://u@h/db?password=***&sslmode=disable",
      ],
      ["postgres://u@h/db", "postgres://u@h/db"],
      [
        "cannot connect to target loader:Secret@127.0.0.1:5432/wh: refused",
        "cannot connect to target loader:***@127.0.0.1:5432/wh: refused",
      ],
      ["echo //reader:Se@cret@host/db here", "echo //reader:***@host/db here"],
      ["host=h password=Secret user=u", "host=h password=*** user=u"],
      ["host=h password = 'Se cret\\' x' user=u", "host=h password = *** user=u"],
      ["sslpassword=abc PASSWORD=x", "sslpassword=*** PASSWORD=***"],
      [`{"url":"jdbc:postgresql://u:p@h/db"}`, `{"url":"jdbc:postgresql://u:***@h/db"}`],
      [
        `password authentication failed for user "u"`,
        `password authentication failed for user "u"`,
      ],
    ];
    for (const [text, out] of cases) assert.equal(redactSecrets(text), out, text);
    // A password read anywhere is hidden wherever it shows up, encoded or not.
    rememberSecret("re member/me");
    assert.equal(redactSecrets("a re member/me b re%20member%2Fme"), "a *** b ***");
  });
});

describe("Airflow connections", () => {
  test("the URI form: URL-encoded parts, extras as query parameters or __extra__", () => {
    assert.equal(
      airflowConnString(
        "postgres://lo%40gin:p%2Fw%20x@db.example:5432/wh?sslmode=require&cursor=dictcursor&application_name=my+dag&__extra__=%7B%22connect_timeout%22%3A+5%7D",
        "AIRFLOW_CONN_WH",
      ),
      "host='db.example' port='5432' dbname='wh' user='lo@gin' password='p/w x' sslmode='require' application_name='my dag' connect_timeout='5'",
    );
    assert.equal(
      airflowConnString("postgresql://u@h/db", "AIRFLOW_CONN_WH"),
      "host='h' dbname='db' user='u'",
    );
  });

  test("the JSON form (Airflow 2.3+), extra as an object or a string", () => {
    assert.equal(
      airflowConnString(
        JSON.stringify({
          conn_type: "postgres",
          host: "h",
          login: "l",
          password: "p'w",
          schema: "s",
          port: 5433,
          extra: JSON.stringify({ sslmode: "verify-full", sslrootcert: "/ca.crt", cursor: "x" }),
        }),
        "AIRFLOW_CONN_WH",
      ),
      "host='h' port='5433' dbname='s' user='l' password='p\\'w' sslmode='verify-full' sslrootcert='/ca.crt'",
    );
    assert.equal(
      airflowConnString(`{"conn_type":"postgres","host":"h","extra":{"keepalives":1}}`, "X"),
      "host='h' keepalives='1'",
    );
  });

  test("errors name the variable, never its value", () => {
    const cases: Array<[string, string]> = [
      ["mysql://u:Secret@h/db", "AIRFLOW_CONN_WH is a mysql connection, not postgres"],
      [
        `{"conn_type":"postgres","password":"Secret"`,
        "AIRFLOW_CONN_WH is neither an Airflow connection URI nor valid JSON",
      ],
      ["u:Secret@h", "AIRFLOW_CONN_WH is neither an Airflow connection URI nor JSON"],
      [
        `{"conn_type":"postgres","extra":"{Secret"}`,
        "AIRFLOW_CONN_WH: its extra is not a JSON object",
      ],
      [
        "postgres://u@h/db?iam=true",
        `AIRFLOW_CONN_WH: IAM authentication (extra "iam") is not supported`,
      ],
    ];
    for (const [value, message] of cases) {
      assert.throws(() => airflowConnString(value, "AIRFLOW_CONN_WH"), { message }, value);
    }
  });
});

describe("resolveDatabaseUrl", () => {
  const airflow = "postgres://u:pw@h:5432/db";
  test("the flag, then *_DATABASE_URL, then the Airflow connection *_POSTGRES_CONN_ID names", () => {
    const env = {
      SOURCE_DATABASE_URL: "host=fromenv",
      SOURCE_POSTGRES_CONN_ID: "vendor_db",
      AIRFLOW_CONN_VENDOR_DB: airflow,
    };
    assert.equal(resolveDatabaseUrl("source", "host=flag", env), "host=flag");
    assert.equal(resolveDatabaseUrl("source", undefined, env), "host=fromenv");
    assert.equal(
      resolveDatabaseUrl("source", "", { ...env, SOURCE_DATABASE_URL: "" }),
      "host='h' port='5432' dbname='db' user='u' password='pw'",
    );
  });

  test("a missing or bad value: one line naming the variable or the side", () => {
    assert.equal(
      inputError(() => resolveDatabaseUrl("target", undefined, { TARGET_POSTGRES_CONN_ID: "wh" })),
      "TARGET_POSTGRES_CONN_ID is wh, but AIRFLOW_CONN_WH is not set",
    );
    assert.equal(
      inputError(() => resolveDatabaseUrl("target", undefined, {})),
      "no target database: pass --target or set TARGET_DATABASE_URL (or TARGET_POSTGRES_CONN_ID under Airflow)",
    );
    assert.equal(
      inputError(() =>
        resolveDatabaseUrl("source", undefined, {
          SOURCE_POSTGRES_CONN_ID: "x",
          AIRFLOW_CONN_X: "{",
        }),
      ),
      "source connection: AIRFLOW_CONN_X is neither an Airflow connection URI nor valid JSON",
    );
    assert.equal(
      inputError(() => resolveDatabaseUrl("source", "notaurl", {})),
      "source connection string is neither a postgres:// URL nor keyword=value pairs (host=… dbname=…)",
    );
  });
});
