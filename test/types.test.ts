import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { type Version } from "./helpers/cluster.js";
import { testDatabase, type TestDatabase } from "./helpers/databases.js";
import { columnList, syncOk, tableText } from "./helpers/compare.js";

/**
 * Type fidelity (the target row carries the source columns with the same
 * types, created from the source's catalog): a table using
 * every common type family, under a quoted mixed-case schema, table and
 * columns, arrives identical, compared by the rows' text, after a full copy
 * and after an incremental one that touches most types and uses an enum
 * label added on the source in between. Both merge paths: target 14
 * (INSERT … ON CONFLICT) and target 17 (MERGE).
 */

const SCHEMA = "Mixed Schema";
const TABLE = "Types Table";
const SOURCE_TABLE = `"Mixed Schema"."Types Table"`;
/** A different target name, with a double quote in it, to exercise quoting on the target side. */
const TARGET = { schema: 'Raw "Data"', name: "Types Table" };
const TARGET_TABLE = `"Raw ""Data"""."Types Table"`;
const KEY = [`"Id"`];

const SETUP = `
  CREATE SCHEMA "Mixed Schema";
  CREATE TYPE "Mixed Schema"."Mood" AS ENUM ('sad', 'ok', 'happy', 'it''s "quoted"');
  -- A domain over an enum, with a CHECK (the data passed it on the source).
  CREATE DOMAIN "Mixed Schema"."Good Mood" AS "Mixed Schema"."Mood" CHECK (VALUE <> 'sad');
  -- A NOT NULL domain with a type modifier, in public.
  CREATE DOMAIN public.code AS varchar(12) NOT NULL CHECK (VALUE <> '');
  CREATE TYPE "Mixed Schema"."Pair ""2""" AS (label text, "Amount" numeric(10,2), mood "Mixed Schema"."Mood");
  CREATE DOMAIN "Mixed Schema".c_text AS text COLLATE "C";

  CREATE TABLE "Mixed Schema"."Types Table" (
    "Id" int PRIMARY KEY,
    "Text Col" text,
    "we""ird" varchar(20),
    ch char(8),
    doomed int,
    num numeric,
    num_p numeric(12,4),
    f4 real,
    f8 double precision,
    i2 smallint,
    i8 bigint,
    b boolean,
    by bytea,
    j json,
    jb jsonb,
    int_arr int[],
    text_2d text[],
    mood "Mixed Schema"."Mood",
    moods "Mixed Schema"."Mood"[],
    good "Mixed Schema"."Good Mood",
    code public.code,
    pair "Mixed Schema"."Pair ""2""",
    c_sorted text COLLATE "C",
    c_dom "Mixed Schema".c_text,
    u uuid,
    ip inet,
    net cidr,
    mac macaddr,
    pt point,
    r4 int4range,
    rts tstzrange,
    rn numrange,
    iv interval,
    d date,
    ts timestamp(3),
    tstz timestamptz,
    tm time,
    ttz time with time zone,
    m money,
    x xml,
    tsv tsvector,
    bt bit(4),
    vb bit varying(16),
    long_text text,
    "Gen" text GENERATED ALWAYS AS (upper("Text Col") || '!') STORED
  );

  INSERT INTO "Mixed Schema"."Types Table" VALUES
  (1, E'tab\\there\\nnew line\\\\ back\\\\slash ''single'' "double" \\r cr', 'vc "q"  ', 'ab  ', 1,
   123456789.123456789, -0.0001, 3.14159, 2.718281828459045, -32768, 9223372036854775807, true,
   '\\x00ff5c0a0d09'::bytea, '{"b": 1,  "a": [1, "x\\ty"], "u": "\\u00e9"}', '{"b": 1, "a": {"n": null}}',
   ARRAY[1, NULL, 3], ARRAY[['a', NULL], ['b c', 'd"e\\\\f']],
   'happy', ARRAY['sad', NULL, 'it''s "quoted"']::"Mixed Schema"."Mood"[], 'ok', 'C-1',
   ROW('pair, "one"', 12.5, 'ok'), 'B', 'b',
   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03',
   '(1.5,-2.25)', '[1,10)', '[2024-01-01 10:00+02, 2024-06-01)', '(0.5,1.5]',
   '1 year 2 mons 3 days 04:05:06.789', '2024-02-29', '2024-02-29 23:59:59.999', '2024-03-01 12:00:00+05:30',
   '23:59:59.999999', '12:34:56+05:30', 1234567.89,
   '<a href="x">text &amp; <b>bold</b></a><!-- c -->', to_tsvector('simple', 'the quick brown fox'),
   B'1010', B'110011', NULL),
  (2, '', '', '', 2,
   'NaN', 'NaN', '-Infinity', 'Infinity', 0, -9223372036854775808, false,
   '\\x'::bytea, 'null', '[]', '{}', '{}',
   'sad', '{}', 'happy', 'C-2', ROW(NULL, NULL, NULL), 'a', 'A',
   '00000000-0000-0000-0000-000000000000', '::1', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff',
   '(0,0)', 'empty', '(,)', '[-1.5,)',
   '-1 days +02:00:00', '-infinity', 'infinity', '-infinity',
   '00:00:00', '00:00:00-12', -0.01,
   '<!DOCTYPE root><root>plain text</root>', ''::tsvector,
   B'0000', B'', NULL),
  (3, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, 'C-3', NULL, NULL, NULL,
   NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL,
   NULL, NULL, NULL,
   NULL, NULL,
   NULL, NULL, NULL),
  (4, 'héllo wörld — 日本語 ✓ 🎉 e' || U&'\\0301' || ' zero' || U&'\\200B' || 'width', 'ünïcödé 🎉', 'ß', 4,
   -1e-20, 99999999.9999, 1e-37, -1e308, 1, 1, NULL,
   decode(repeat('ab', 1000), 'hex'), '"just a string"', '"ünïcödé"', ARRAY[2147483647], ARRAY['🎉'],
   'it''s "quoted"', ARRAY['happy']::"Mixed Schema"."Mood"[], NULL, 'C-4', ROW('', 0, NULL), '', '',
   NULL, '10.1.2.3', '192.168.100.128/25', '00:00:00:00:00:00',
   '(-1e+300,1e-300)', '[-2147483648,2147483647)', '[2000-01-01,infinity)', 'empty',
   '-178000000 years', '4713-01-01 BC', '294276-12-31 23:59:59.999', '1999-12-31 23:59:59.999999+14',
   '24:00:00', '24:00:00-15:59', '-92233720368547758.08',
   '<?xml version="1.0"?><root attr="ü">ü</root>', 'a:1A b:2B ''quote''''s'':3',
   B'1111', B'1111111111111111',
   (SELECT string_agg(md5(i::text), E'\\n') FROM generate_series(1, 5000) i));
  ALTER TABLE "Mixed Schema"."Types Table" DROP COLUMN doomed;
`;

/** Updates touching several types, an insert, and a label added to the enum in between. */
const CHANGES_BEFORE_NEW_LABEL = `
  UPDATE "Mixed Schema"."Types Table" SET
    "Text Col" = E'changed\\ttab\\\\n', jb = jb || '{"new": [true, null]}', int_arr = int_arr || 4,
    m = m + 1::money, x = '<changed/>', iv = iv * 2, tsv = tsv || 'jumps'::tsvector,
    pair = ROW('changed', -1, 'happy'), rts = '[2025-01-01,2025-01-02]', f4 = 'NaN'
  WHERE "Id" = 1;
  UPDATE "Mixed Schema"."Types Table" SET
    "Text Col" = 'was null', num = 'NaN', f8 = '-Infinity', mood = 'ok', moods = '{NULL}',
    ts = 'infinity', tstz = '-infinity', by = '\\x5c', j = '{"k": "v"}', vb = B'1'
  WHERE "Id" = 3;
  UPDATE "Mixed Schema"."Types Table" SET
    "Text Col" = NULL, j = NULL, pair = NULL, ip = NULL, long_text = long_text || 'tail'
  WHERE "Id" = 4;
`;

/** A source with its own type definitions: enum labels as the server orders them. */
async function enumLabels(c: TestDatabase): Promise<string[]> {
  const rows = await c.sql<{ l: string }>(
    `SELECT enumlabel AS l FROM pg_enum WHERE enumtypid = '"Mixed Schema"."Mood"'::regtype ORDER BY enumsortorder`,
  );
  return rows.map((r) => r.l);
}

/** Each column's format_type, collation and whether it is generated. */
async function columnTypes(
  c: TestDatabase,
  table: string,
): Promise<{ name: string; type: string; collation: string | null; generated: boolean }[]> {
  return c.sql(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, co.collname AS collation,
            a.attgenerated <> '' AS generated
       FROM pg_attribute a LEFT JOIN pg_collation co ON co.oid = a.attcollation
      WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [table],
  );
}

/**
 * The enums', domains' and composites' definitions the table uses: kind,
 * domain base type, NOT NULL and collation, composite attributes. (Domain
 * CHECKs stay on the source by design, see ensureUserTypes.)
 */
async function userTypes(c: TestDatabase): Promise<Record<string, unknown>[]> {
  return c.sql(
    `SELECT format_type(t.oid, NULL) AS name, t.typtype::text AS kind,
            format_type(NULLIF(t.typbasetype, 0), t.typtypmod) AS base, t.typnotnull AS not_null,
            co.collname AS collation,
            (SELECT string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod), ', '
                               ORDER BY a.attnum)
               FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
            ) AS attributes
       FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
       LEFT JOIN pg_collation co ON co.oid = t.typcollation
      WHERE (n.nspname = 'Mixed Schema' OR t.oid = 'public.code'::regtype)
        AND t.typtype IN ('e', 'd', 'c')
        AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
      ORDER BY 1`,
  );
}

for (const [sourceVersion, targetVersion] of [
  ["17", "14"],
  ["14", "17"],
] as [Version, Version][]) {
  describe(`type fidelity, source ${sourceVersion} -> target ${targetVersion}`, () => {
    let source: TestDatabase;
    let target: TestDatabase;

    before(async () => {
      [source, target] = await Promise.all([
        testDatabase(sourceVersion),
        testDatabase(targetVersion),
      ]);
      await source.sql(SETUP);
    });
    after(async () => {
      await Promise.all([source?.stop(), target?.stop()]);
    });

    const run = () =>
      syncOk(source, target, { source: { schema: SCHEMA, name: TABLE }, target: TARGET });
    const assertSameRows = async () => {
      const cols = await columnList(source, "postgres", SOURCE_TABLE);
      const want = await tableText(source, "postgres", SOURCE_TABLE, cols, KEY);
      const got = await tableText(target, "postgres", TARGET_TABLE, cols, KEY);
      assert.equal(got.length, want.length, "row count");
      for (let i = 0; i < want.length; i++) assert.equal(got[i], want[i], `row ${i + 1}`);
    };

    test("full then incremental sync keep every type identical", async () => {
      const first = await run();
      assert.equal(first.mode, "full");
      assert.equal(first.rowsCopied, 4);
      await assertSameRows();
      for (const [c, table] of [
        [source, SOURCE_TABLE],
        [target, TARGET_TABLE],
      ] as const) {
        const [long] = await c.sql<{ n: number; toasted: boolean }>(
          `SELECT length(long_text) AS n,
                  (SELECT pg_relation_size(reltoastrelid) > 0 FROM pg_class WHERE oid = $1::regclass) AS toasted
             FROM ${table} WHERE "Id" = 4`,
          [table],
        );
        assert.ok(
          long!.n > 100_000 && long!.toasted,
          `long text over 100 kB, toasted, ${c.version}`,
        );
      }

      // Column types: the same format_type text; the generated column is a
      // plain column on the target, which also has source_xmin.
      const srcTypes = await columnTypes(source, SOURCE_TABLE);
      const tgtTypes = await columnTypes(target, TARGET_TABLE);
      assert.deepEqual(
        tgtTypes,
        [
          ...srcTypes.map((c) => ({ ...c, generated: false })),
          { name: "source_xmin", type: "bigint", collation: null, generated: false },
        ],
        "target column types",
      );
      assert.ok(srcTypes.some((c) => c.name === "Gen" && c.generated));
      assert.ok(!srcTypes.some((c) => c.name === "doomed"));
      assert.deepEqual(await enumLabels(target), await enumLabels(source), "enum labels");
      const types = await userTypes(source);
      assert.equal(types.length, 5, "enum, 3 domains, composite");
      assert.deepEqual(await userTypes(target), types, "enum, domain and composite definitions");

      await source.sql(CHANGES_BEFORE_NEW_LABEL);
      // New labels: one at the end, one in the middle (sort order matters to
      // ORDER BY and comparisons on the target). Committed before use.
      await source.sql(`ALTER TYPE "Mixed Schema"."Mood" ADD VALUE 'ecstatic'`);
      await source.sql(`ALTER TYPE "Mixed Schema"."Mood" ADD VALUE 'meh' BEFORE 'ok'`);
      await source.sql(`
        INSERT INTO ${SOURCE_TABLE} ("Id", "Text Col", mood, moods, good, code, pair, m, x, tstz, ttz)
        VALUES (5, E'new\\trow', 'ecstatic', ARRAY['meh', 'ecstatic', NULL]::"Mixed Schema"."Mood"[],
                'ecstatic', 'C-5', ROW('new', 1, 'meh'), '0.01', '<n/>', 'infinity', '00:00:01+00');
        UPDATE ${SOURCE_TABLE} SET good = 'meh', moods = moods || 'ecstatic'::"Mixed Schema"."Mood"
         WHERE "Id" = 2;
      `);

      const second = await run();
      assert.equal(second.mode, "xmin");
      assert.equal(second.inserted, 1);
      assert.equal(second.updated, 4);
      await assertSameRows();
      assert.deepEqual(await enumLabels(target), await enumLabels(source), "enum labels and order");
      assert.deepEqual(await columnTypes(target, TARGET_TABLE), tgtTypes, "target types unchanged");

      // Nothing changed since: nothing is rewritten.
      const third = await run();
      assert.equal(third.mode, "xmin");
      assert.equal(third.inserted + third.updated, 0);
      await assertSameRows();
    });
  });
}
