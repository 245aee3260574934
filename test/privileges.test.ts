import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { runCli, type CliResult } from "./helpers/cli.js";
import { testDatabase, type TestDatabase } from "./helpers/databases.js";
import { assertSameRows } from "./helpers/compare.js";

/**
 * Least privilege (README, Required privileges), as a user runs it: a
 * source role with only CONNECT, USAGE on the schema and SELECT on the
 * tables (no superuser, no pg_read_all_*, pg_control_* revoked) runs full,
 * incremental and delete-checking syncs and validate --deep --repair; a
 * target role that owns only its schemas (no CREATE on the database) works
 * with a pre-created xmin_sync schema. A role that lacks something fails
 * before copying, with one line naming the privilege and the server, and
 * leaves the target as it was. Source 14 -> target 17 (MERGE).
 */

const STACK = /\n\s+at .+:\d+/;
const lines = (text: string) => text.split("\n").filter((l) => l.trim() !== "");

/** The database's URL for a role (trust authentication: no password). */
const as = (d: TestDatabase, role: string) =>
  d.url().replace("postgres://postgres@", `postgres://${role}@`);

// Roles are server-wide, and the servers are shared by the run's test files.
const READER = "priv_reader";
const LOADER = "priv_loader";
const LIMITED = "priv_limited";
const OTHER = "priv_other";

describe("least privilege (source 14 -> target 17)", () => {
  let source: TestDatabase;
  const warehouses: TestDatabase[] = [];

  before(async () => {
    source = await testDatabase("14");
    const db = source.database;
    await source.sql(`
      CREATE SCHEMA fds;
      CREATE TABLE fds.t (id int PRIMARY KEY, v text NOT NULL);
      INSERT INTO fds.t SELECT i, 'v' || i FROM generate_series(1, 1000) i;
      CREATE TABLE fds.secret (id int PRIMARY KEY);
      INSERT INTO fds.secret VALUES (1);
      REVOKE ALL ON DATABASE ${db} FROM PUBLIC;
      REVOKE EXECUTE ON FUNCTION pg_control_system(), pg_control_checkpoint() FROM PUBLIC;
      DROP ROLE IF EXISTS ${READER}; DROP ROLE IF EXISTS ${LIMITED};
      CREATE ROLE ${READER} LOGIN;
      GRANT CONNECT ON DATABASE ${db} TO ${READER};
      GRANT USAGE ON SCHEMA fds TO ${READER};
      GRANT SELECT ON fds.t TO ${READER};
      CREATE ROLE ${LIMITED} LOGIN CONNECTION LIMIT 2;
      GRANT CONNECT ON DATABASE ${db} TO ${LIMITED};
      GRANT USAGE ON SCHEMA fds TO ${LIMITED};
      GRANT SELECT ON fds.t TO ${LIMITED};
    `);
    const roles = await source.sql<{ r: string }>(
      `SELECT string_agg(b.rolname, ',') AS r FROM pg_auth_members m
         JOIN pg_roles b ON b.oid = m.roleid JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = $1`,
      [READER],
    );
    assert.equal(roles[0]!.r, null, "reader is in no role (no pg_read_all_data)");
    const first = await testDatabase("17");
    warehouses.push(first);
    await first.sql(`
      DROP ROLE IF EXISTS ${LOADER}; DROP ROLE IF EXISTS ${OTHER};
      CREATE ROLE ${LOADER} LOGIN;
      CREATE ROLE ${OTHER};
    `);
  });
  after(async () => {
    await Promise.all([source, ...warehouses].map((d) => d?.stop()));
    await source
      ?.sql(`DROP ROLE IF EXISTS ${READER}; DROP ROLE IF EXISTS ${LIMITED}`)
      .catch(() => undefined);
  });

  /** A target database where the loader owns xmin_sync and raw, and may create nothing else. */
  const warehouse = async (opts: { projectSchema?: boolean } = {}) => {
    const db = await testDatabase("17");
    warehouses.push(db);
    await db.sql(
      `REVOKE CREATE ON SCHEMA public FROM PUBLIC;
       CREATE SCHEMA raw AUTHORIZATION ${LOADER};
       CREATE SCHEMA other_owned AUTHORIZATION ${OTHER};
       ${opts.projectSchema === false ? "" : `CREATE SCHEMA xmin_sync AUTHORIZATION ${LOADER};`}`,
    );
    return db;
  };
  /** Every relation in a target database outside the system's schemas. */
  const relations = async (db: TestDatabase) =>
    (
      await db.sql<{ r: string }>(
        `SELECT n.nspname || '.' || c.relname AS r FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
          ORDER BY 1`,
      )
    ).map((x) => x.r);

  const run = (args: string[], db: TestDatabase, roles = { source: READER, target: LOADER }) =>
    runCli([
      args[0]!,
      "--source",
      as(source, roles.source),
      "--target",
      as(db, roles.target),
      ...args.slice(1),
    ]);

  /** Exit 2, and exactly one line that matches on stderr or stdout. */
  function refused(r: CliResult, where: "stderr" | "stdout", pattern: RegExp): string {
    assert.equal(r.code, 2, `exit 2; stdout: ${r.stdout} stderr: ${r.stderr}`);
    assert.doesNotMatch(r.stdout + r.stderr, STACK);
    const out = lines(where === "stderr" ? r.stderr : r.stdout);
    assert.equal(out.length, 1, `one line on ${where}: ${r[where]}`);
    assert.match(out[0]!, pattern);
    return out[0]!;
  }

  test("the least-privileged roles run full, incremental and delete syncs, and validate --deep --repair", async () => {
    const db = await warehouse();
    const check = await run(["check", "--table", "fds.t:raw.t"], db);
    assert.equal(check.code, 0, check.stdout + check.stderr);
    assert.match(check.stdout, /^ok {4}source fds\.t: readable, key \(id\), xmin mode/m);
    assert.match(check.stdout, /^ok {4}target raw\.t: will be created$/m);
    assert.match(check.stdout, /^ok {4}target: schema xmin_sync will be set up$/m);

    const args = ["sync", "--table", "fds.t:raw.t", "--deletes", "hard", "--json"];
    const full = await run(args, db);
    assert.equal(full.code, 0, full.stdout + full.stderr);
    assert.equal(full.json[0]!.mode, "full");
    assert.equal(full.json[0]!.rowsCopied, 1000);
    const same = () => assertSameRows(source, "fds.t", db, "raw.t", ["id"]);
    await same();

    await source.sql(`UPDATE fds.t SET v = 'changed' WHERE id <= 10;
                      INSERT INTO fds.t VALUES (1001, 'new');
                      DELETE FROM fds.t WHERE id BETWEEN 500 AND 504;`);
    const incremental = await run(args, db);
    assert.equal(incremental.code, 0, incremental.stdout + incremental.stderr);
    assert.deepEqual(
      [incremental.json[0]!.mode, incremental.json[0]!.updated, incremental.json[0]!.inserted],
      ["xmin", 10, 1],
    );
    assert.equal(incremental.json[0]!.deleted, 5);
    await same();

    // A difference behind the sync's back, found and repaired by the same roles.
    await db.sql("UPDATE raw.t SET v = 'tampered' WHERE id = 7");
    const deep = await run(
      ["validate", "--table", "fds.t:raw.t", "--deep", "--repair", "--json"],
      db,
    );
    assert.equal(deep.code, 1, deep.stdout + deep.stderr);
    assert.equal((deep.json[0]!.deep as { different: number }).different, 1);
    await same();
    const clean = await run(["validate", "--table", "fds.t:raw.t", "--deep"], db);
    assert.equal(clean.code, 0, clean.stdout + clean.stderr);
  });

  test("a target role that may not create the xmin_sync schema: one line, before anything is written", async () => {
    const db = await warehouse({ projectSchema: false });
    const before = await relations(db);
    const r = await run(["sync", "--table", "fds.t:raw.t"], db);
    const line = refused(
      r,
      "stderr",
      /^xmin-sync: target: schema xmin_sync does not exist and role priv_loader may not create it: no CREATE privilege on database t_\d+_\d+ \(GRANT CREATE ON DATABASE t_\d+_\d+ TO priv_loader, or have it made: CREATE SCHEMA xmin_sync AUTHORIZATION priv_loader\)$/,
    );
    assert.ok(line.length < 300, line);
    assert.deepEqual(await relations(db), before, "the target is as it was");

    // --json still gives stdout one object.
    const json = await run(["sync", "--table", "fds.t:raw.t", "--json"], db);
    assert.equal(json.code, 2);
    assert.equal(json.json.length, 1, json.stdout);
    assert.equal(json.json[0]!.status, "error");
    assert.match(String(json.json[0]!.error), /^target: schema xmin_sync does not exist/);

    const check = await run(["check", "--table", "fds.t:raw.t"], db);
    assert.equal(check.code, 2);
    assert.match(check.stdout, /^ERROR target: schema xmin_sync does not exist/m);
    assert.match(check.stdout, /^ok {4}source fds\.t: /m);
  });

  test("per table: a source table without SELECT, a target schema without CREATE, a table it does not own; the others sync", async () => {
    const db = await warehouse();
    await db.sql(
      `CREATE TABLE other_owned.owned (id int PRIMARY KEY, v text NOT NULL);
       ALTER TABLE other_owned.owned OWNER TO ${OTHER};
       GRANT USAGE ON SCHEMA other_owned TO ${LOADER};
       GRANT SELECT, INSERT, UPDATE, DELETE ON other_owned.owned TO ${LOADER};`,
    );
    const before = await relations(db);
    const r = await run(
      [
        "sync",
        ...["--table", "fds.secret:raw.secret"],
        ...["--table", "fds.t:public.t"],
        ...["--table", "fds.t:other_owned.owned"],
        ...["--table", "fds.t:raw.t"],
      ],
      db,
    );
    assert.equal(r.code, 2, r.stdout + r.stderr);
    const out = lines(r.stdout);
    assert.equal(out.length, 4, r.stdout + r.stderr);
    assert.match(
      out[0]!,
      /^FAIL fds\.secret -> raw\.secret: source: no SELECT privilege for role priv_reader \(GRANT SELECT ON fds\.secret TO priv_reader\) \(0\.0s\)$/,
    );
    assert.match(
      out[1]!,
      /^FAIL fds\.t -> public\.t: target: no CREATE privilege on schema public for role priv_loader, to create the table \(GRANT CREATE ON SCHEMA public TO priv_loader\)/,
    );
    assert.match(
      out[2]!,
      /^FAIL fds\.t -> other_owned\.owned: target: adding its source_xmin column needs ownership, which role priv_loader lacks \(ALTER TABLE other_owned\.owned OWNER TO priv_loader/,
    );
    assert.match(out[3]!, /^ok {3}fds\.t -> raw\.t: full/);
    const after = await relations(db);
    assert.deepEqual(
      after.filter((x) => !before.includes(x) && !x.startsWith("xmin_sync.")),
      ["raw.t", "raw.t_pkey", "raw.t_source_xmin_idx"],
      "only the table that could be synced was created",
    );
    assert.equal((await db.sql("SELECT count(*)::int AS n FROM other_owned.owned"))[0]!.n, 0);
  });

  test("connections: a role's CONNECTION LIMIT below what a run needs", async () => {
    const db = await warehouse();
    const r = await run(["check", "--table", "fds.t:raw.t"], db, {
      source: LIMITED,
      target: LOADER,
    });
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(
      r.stdout,
      /^ERROR source: only 1 free connections for role priv_limited \(max_connections or the role's CONNECTION LIMIT\): a run needs at least 3$/m,
    );
  });
});
