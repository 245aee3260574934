import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Column, UserType } from "../src/source/catalog.js";
import type { TargetColumn, TargetTable } from "../src/target/ddl.js";
import { planTypeChanges, type TargetType } from "../src/target/types.js";
import { matchColumns, MIXED, planSchema, widens, type SchemaInput } from "../src/sync/schema.js";

/** Schema changes are plain values computed from the catalogs: tested by exact statements. */
const column = (
  attnum: number,
  name: string,
  type: string,
  over: Partial<Column> = {},
): Column => ({
  name,
  attnum,
  hasMissing: false,
  type,
  notNull: false,
  generated: false,
  collation: null,
  binarySafe: true,
  integer: false,
  equality: null,
  hash: null,
  ...over,
});
const targetColumn = (name: string, type: string, over: Partial<TargetColumn> = {}) => ({
  name,
  type,
  notNull: false,
  collation: null,
  baseType: null,
  ...over,
});
const targetTable = (columns: TargetColumn[], key = ["id"]): TargetTable => ({
  oid: "1",
  columns: new Map(columns.map((c) => [c.name, c.type])),
  columnList: columns,
  uniqueKeys: [key],
  primaryKey: { name: "t_pkey", columns: key },
});
const T = `"app"."t"`;

function plan(
  source: Column[],
  stored: { attnum: number; name: string; type: string }[] | null,
  target: TargetTable,
  over: Partial<SchemaInput> = {},
) {
  return planSchema({
    target: { schema: "app", name: "t" },
    source,
    sourceHasStorage: true,
    domains: new Map(),
    match: matchColumns(source, stored, target),
    existing: target,
    key: ["id"],
    missing: new Map(),
    targetEmpty: false,
    droppedColumns: "keep",
    ...over,
  });
}

describe("schema changes, planned", () => {
  test("an added column with a fast default: old rows get it, the default goes", () => {
    const source = [
      column(1, "id", "integer", { notNull: true }),
      column(2, "status", "text", { notNull: true }),
    ];
    const target = targetTable([targetColumn("id", "integer", { notNull: true })]);
    const p = plan(source, [{ attnum: 1, name: "id", type: "integer" }], target, {
      missing: new Map([["status", "it's new"]]),
    });
    assert.deepEqual(
      p.steps.map((s) => s.sql),
      [
        `ALTER TABLE ${T} ADD COLUMN "status" text NOT NULL DEFAULT 'it''s new'::text`,
        `ALTER TABLE ${T} ALTER COLUMN "status" DROP DEFAULT`,
      ],
    );
    assert.deepEqual(p.changes, [
      `column "status" added (text), existing rows given its default "it's new"`,
    ]);
    assert.equal(p.resync, null);
  });

  test("NOT NULL only where every row has a value; defaults the leaves disagree on resync", () => {
    const source = [column(1, "id", "integer"), column(2, "n", "integer", { notNull: true })];
    const target = targetTable([targetColumn("id", "integer")]);
    const p = plan(source, [{ attnum: 1, name: "id", type: "integer" }], target, {
      missing: new Map([["n", MIXED]]),
    });
    assert.deepEqual(
      p.steps.map((s) => s.sql),
      [`ALTER TABLE ${T} ADD COLUMN "n" integer`],
    );
    assert.equal(p.resync, `column "n" added with a default the partitions hold differently`);
  });

  test("renames by attribute number, swaps through temporary names", () => {
    const source = [column(1, "id", "integer"), column(2, "b", "text"), column(3, "a", "text")];
    const stored = [
      { attnum: 1, name: "id", type: "integer" },
      { attnum: 2, name: "a", type: "text" },
      { attnum: 3, name: "b", type: "text" },
    ];
    const target = targetTable([
      targetColumn("id", "integer"),
      targetColumn("a", "text"),
      targetColumn("b", "text"),
    ]);
    const p = plan(source, stored, target);
    assert.deepEqual(
      p.steps.map((s) => s.sql),
      [
        `ALTER TABLE ${T} RENAME COLUMN "a" TO "xmin_sync_rename_0"`,
        `ALTER TABLE ${T} RENAME COLUMN "b" TO "xmin_sync_rename_1"`,
        `ALTER TABLE ${T} RENAME COLUMN "xmin_sync_rename_0" TO "b"`,
        `ALTER TABLE ${T} RENAME COLUMN "xmin_sync_rename_1" TO "a"`,
      ],
    );
  });

  test("a dropped column is kept nullable, and moves aside for a new one of its name", () => {
    const stored = [
      { attnum: 1, name: "id", type: "integer" },
      { attnum: 2, name: "x", type: "text" },
    ];
    const target = targetTable([
      targetColumn("id", "integer"),
      targetColumn("x", "text", { notNull: true }),
    ]);
    const dropped = plan([column(1, "id", "integer")], stored, target);
    assert.deepEqual(
      dropped.steps.map((s) => s.sql),
      [`ALTER TABLE ${T} ALTER COLUMN "x" DROP NOT NULL`],
    );
    const readded = plan(
      [column(1, "id", "integer"), column(3, "x", "integer")],
      [{ attnum: 1, name: "id", type: "integer" }],
      target,
    );
    assert.deepEqual(
      readded.steps.map((s) => s.sql),
      [
        `ALTER TABLE ${T} RENAME COLUMN "x" TO "x_dropped"`,
        `ALTER TABLE ${T} ADD COLUMN "x" integer`,
      ],
    );
    const gone = plan([column(1, "id", "integer")], stored, target, { droppedColumns: "drop" });
    assert.deepEqual(
      gone.steps.map((s) => s.sql),
      [`ALTER TABLE ${T} DROP COLUMN "x"`],
    );
  });

  test("a type the target cannot widen is converted or rebuilt, and resyncs; a key changed too", () => {
    const source = [
      column(1, "id", "integer"),
      column(2, "region", "text", { notNull: true }),
      column(3, "d", "integer"),
    ];
    const stored = source.map((c) => ({ attnum: c.attnum, name: c.name, type: c.type }));
    const target = targetTable([
      targetColumn("id", "integer"),
      targetColumn("region", "text"),
      targetColumn("d", "text"),
      targetColumn("source_xmin", "bigint"),
    ]);
    const p = plan(source, stored, target, { key: ["region", "id"] });
    assert.deepEqual(p.steps, [
      { sql: `ALTER TABLE ${T} DROP CONSTRAINT "t_pkey"` },
      {
        sql: `ALTER TABLE ${T} ALTER COLUMN "d" TYPE integer USING "d"::integer`,
        fallback: [`ALTER TABLE ${T} DROP COLUMN "d"`, `ALTER TABLE ${T} ADD COLUMN "d" integer`],
      },
      {
        sql:
          `DELETE FROM ${T} WHERE "region" IS NULL OR "id" IS NULL OR ctid IN (SELECT ctid FROM ` +
          `(SELECT ctid, row_number() OVER (PARTITION BY "region", "id" ORDER BY "source_xmin" DESC NULLS LAST) AS n ` +
          `FROM ${T}) AS d WHERE d.n > 1)`,
      },
      { sql: `ALTER TABLE ${T} ADD PRIMARY KEY ("region", "id")` },
    ]);
    assert.equal(
      p.resync,
      `column "d" changed type from text to integer; key changed from ("id") to ("region", "id")`,
    );
  });

  test("what widens in place", () => {
    const yes: [string, string][] = [
      ["integer", "bigint"],
      ["smallint", "numeric"],
      ["character varying(10)", "character varying(40)"],
      ["character varying(10)", "text"],
      ["text", "character varying"],
      ["numeric(6,2)", "numeric(12,2)"],
      ["numeric(6,2)", "numeric"],
      ["character varying(5)[]", "text[]"],
      ["timestamp(3) without time zone", "timestamp without time zone"],
    ];
    const no: [string, string][] = [
      ["bigint", "integer"],
      ["text", "integer"],
      ["text", "character varying(10)"],
      ["numeric(6,2)", "numeric(12,4)"],
      ["numeric", "numeric(12,2)"],
      ["timestamp without time zone", "timestamp with time zone"],
    ];
    for (const [from, to] of yes) assert.equal(widens(from, to), true, `${from} -> ${to}`);
    for (const [from, to] of no) assert.equal(widens(from, to), false, `${from} -> ${to}`);
  });

  test("enum labels: renamed by oid (swaps through temporary names), added in the source's order", () => {
    const mood: UserType = {
      kind: "enum",
      name: { schema: "app", name: "mood" },
      sql: "app.mood",
      labels: ["happy", "calm", "glad", "sad"],
      labelOids: ["1", "4", "2", "3"],
    };
    const stored = [
      {
        kind: "enum" as const,
        schema: "app",
        name: "mood",
        labels: [
          { oid: "1", label: "happy" },
          { oid: "2", label: "sad" },
          { oid: "3", label: "glad" },
        ],
      },
    ];
    const existing = new Map<string, TargetType>([
      [
        "app\0mood",
        { typtype: "e", labels: ["happy", "sad", "glad"], notNull: false, attributes: [] },
      ],
    ]);
    const q = `ALTER TYPE "app"."mood"`;
    assert.deepEqual(planTypeChanges([mood], stored, existing), {
      changes: [
        'enum app.mood: label "sad" renamed to "glad"',
        'enum app.mood: label "glad" renamed to "sad"',
        'enum app.mood: label "calm" added',
      ],
      sql: [
        `${q} RENAME VALUE 'sad' TO 'xmin_sync_rename_0'`,
        `${q} RENAME VALUE 'glad' TO 'xmin_sync_rename_1'`,
        `${q} RENAME VALUE 'xmin_sync_rename_0' TO 'glad'`,
        `${q} RENAME VALUE 'xmin_sync_rename_1' TO 'sad'`,
        `${q} ADD VALUE IF NOT EXISTS 'calm' AFTER 'happy'`,
      ],
    });
  });

  test("composite attributes: a re-added one goes to the end, as on the source", () => {
    const addr: UserType = {
      kind: "composite",
      name: { schema: "app", name: "addr" },
      sql: "app.addr",
      attributes: [
        { attnum: 2, name: "town", type: "text" },
        { attnum: 4, name: "street", type: "text" },
      ],
    };
    const stored = [
      {
        kind: "composite" as const,
        schema: "app",
        name: "addr",
        attributes: [
          { attnum: 1, name: "street", type: "text" },
          { attnum: 2, name: "city", type: "text" },
        ],
      },
    ];
    const existing = new Map<string, TargetType>([
      [
        "app\0addr",
        {
          typtype: "c",
          labels: [],
          notNull: false,
          attributes: [
            { name: "street", type: "text" },
            { name: "city", type: "text" },
          ],
        },
      ],
    ]);
    const q = `ALTER TYPE "app"."addr"`;
    assert.deepEqual(planTypeChanges([addr], stored, existing).sql, [
      `${q} DROP ATTRIBUTE "street"`,
      `${q} RENAME ATTRIBUTE "city" TO "town"`,
      `${q} ADD ATTRIBUTE "street" text`,
    ]);
  });
});
