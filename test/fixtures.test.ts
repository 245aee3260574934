import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { displayName, sync, type QualifiedName, type TableSpec } from "../src/index.js";
import { runCli } from "./helpers/cli.js";
import type { Cluster } from "./helpers/cluster.js";
import { startBothVersions } from "./helpers/versions.js";
import { assertSameRows } from "./helpers/compare.js";

/**
 * Issue 7, item 7: schemas like users' (test/fixtures/*.sql, written for
 * this project): enums, domains (one with a non-ASCII name), arrays, a
 * tsvector kept by a trigger, bytea, a range-partitioned table with several
 * leaves, composite keys and numerics at their edges, 63-byte and
 * multi-line names, identity and generated columns, collations, inheritance
 * with parent rows, and a zero-column table. Every table is synced (first
 * load), changed (each fixture's `-- changes` part), synced twice with
 * deletes hard, and compared row for row; then `validate --deep` exits 0.
 * Sources and targets on 17 and 14, both ways.
 */

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "test", "fixtures");
const SRC = "src";
const DST = "dst";

interface Fixture {
  name: string;
  setup: string;
  /** Statements run one at a time (an enum label added is usable only once committed). */
  changes: string[];
}

function readFixtures(): Fixture[] {
  return readdirSync(FIXTURES)
    .filter((f) => f.endsWith(".sql"))
    .sort()
    .map((f) => {
      const [setup, changes] = readFileSync(join(FIXTURES, f), "utf8").split(/^-- changes$/m);
      return {
        name: f,
        setup: setup!,
        changes: (changes ?? "")
          .split(/;\s*\n/)
          .map((s) => s.trim())
          .filter((s) => s !== ""),
      };
    });
}

/** SQL-style `schema.table`, as --table takes it. */
const quoted = (n: QualifiedName) =>
  [n.schema, n.name].map((p) => `"${p.replaceAll('"', '""')}"`).join(".");

describe("fixtures shaped like users' schemas", () => {
  const fixtures = readFixtures();
  let v17: Cluster;
  let v14: Cluster;

  before(async () => {
    ({ v17, v14 } = await startBothVersions([SRC, DST]));
    for (const c of [v17, v14]) {
      for (const f of fixtures) {
        await c.sql(f.setup, [], SRC).catch((err: Error) => {
          throw new Error(`${f.name} on ${c.version}: ${err.message}`);
        });
      }
    }
  });
  after(async () => {
    await Promise.all([v17?.stop(), v14?.stop()]);
  });

  /** Tables of the fixtures' schemas as a user would name them: partitions and children of partitioned tables are read through their root. */
  async function fixtureTables(c: Cluster): Promise<{ name: QualifiedName; key: string[] }[]> {
    const rows = await c.sql<{ schema: string; name: string; key: string[] | null }>(
      `SELECT n.nspname AS schema, c.relname AS name,
              (SELECT array_agg(quote_ident(a.attname) ORDER BY k.ord)
                 FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                WHERE i.indrelid = c.oid AND i.indisprimary) AS key
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'public')
          AND n.nspname NOT LIKE 'pg_toast%'
        ORDER BY 1, 2`,
      [],
      SRC,
    );
    return rows.map((r) => ({ name: { schema: r.schema, name: r.name }, key: r.key ?? [] }));
  }

  for (const [from, to] of [
    ["17", "14"],
    ["14", "17"],
  ] as const) {
    test(`${from} to ${to}: every table syncs, changes arrive, the copy equals the source`, async () => {
      const source = from === "17" ? v17 : v14;
      const target = to === "17" ? v17 : v14;
      const tables = await fixtureTables(source);
      const keyed = tables.filter((t) => t.key.length > 0);
      const zeroColumns = tables.filter((t) => t.name.name === "nothing");
      assert.ok(keyed.length >= 12, `fixture tables found: ${tables.length}`);
      const specs: TableSpec[] = keyed.map((t) => ({ source: t.name, deletes: "hard" }));
      const runAll = () =>
        sync({
          source: source.url(SRC),
          target: target.url(DST),
          tables: [...specs, ...zeroColumns.map((t) => ({ source: t.name }))],
          tuning: { workers: 2, minBatchSize: 200 },
        });

      const first = await runAll();
      for (const r of first) {
        if (r.table.endsWith(".nothing")) {
          // Decided: refused, one line; a table without columns has no key
          // to merge by or find deletes with.
          assert.equal(r.status, "error");
          assert.equal(r.badInput, true);
          assert.match(r.error!, /has no columns: there is nothing to key or to copy$/);
        } else {
          assert.equal(r.status, "ok", `${r.table}: ${r.error}`);
          assert.equal(r.mode, "full", r.table);
        }
      }

      for (const f of fixtures) {
        for (const sql of f.changes) {
          await source.sql(sql, [], SRC).catch((err: Error) => {
            throw new Error(`${f.name} change ${JSON.stringify(sql)}: ${err.message}`);
          });
        }
      }
      const changed = (await runAll()).filter((r) => !r.table.endsWith(".nothing"));
      for (const r of changed) assert.equal(r.status, "ok", `${r.table}: ${r.error}`);
      const moved = changed.reduce((a, r) => a + r.inserted + r.updated + r.deleted, 0);
      assert.ok(moved > 50, `the changes arrived incrementally (${moved} rows)`);
      for (const r of changed) {
        // A table first synced empty is reloaded once rows arrive ("target table is empty").
        const expected = r.table.endsWith(".no_rows") ? "full" : "xmin";
        assert.equal(r.mode, expected, `${r.table}: ${r.reason ?? ""}`);
      }
      const again = (await runAll()).filter((r) => !r.table.endsWith(".nothing"));
      for (const r of again) {
        assert.equal(r.status, "ok", `${r.table}: ${r.error}`);
        assert.equal(
          r.inserted + r.updated + r.deleted,
          0,
          `${r.table}: a second run finds nothing`,
        );
      }

      for (const t of keyed) {
        const name = quoted(t.name);
        await assertSameRows(source, name, target, name, t.key, {
          sourceDb: SRC,
          targetDb: DST,
          message: displayName(t.name),
        });
      }

      const v = await runCli([
        "validate",
        "--deep",
        "--json",
        ...["--source", source.url(SRC), "--target", target.url(DST)],
        ...keyed.flatMap((t) => ["--table", quoted(t.name)]),
      ]);
      assert.equal(v.code, 0, v.stdout + v.stderr);
      assert.equal(v.json.length, keyed.length);
      for (const report of v.json) {
        assert.deepEqual(
          report.deep && [
            (report.deep as { missing: number }).missing,
            (report.deep as { extra: number }).extra,
            (report.deep as { different: number }).different,
          ],
          [0, 0, 0],
          String(report.table),
        );
      }
    });
  }
});
