import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  displayName,
  parseQualifiedName,
  parseTableMapping,
  quoteIdent,
  quoteQualified,
} from "../src/db/quote.js";
import {
  countNewSql,
  deleteMissingSql,
  mergeSql,
  upsertSql,
  type MergeSpec,
} from "../src/target/merge.js";
import { copyOutSql } from "../src/source/read.js";
import { keyProblemsSql, type KeyColumn } from "../src/db/key.js";
import { createCollationSql } from "../src/target/collations.js";
import { bucketSql, leafSql } from "../src/validate/hash.js";
import { fullXid, isNewRow, needsFullRescan, nextFromAge, XID_SPACE } from "../src/source/xid.js";

/** No database here: names, SQL text and xid arithmetic, checked exactly. */

describe("parseQualifiedName", () => {
  const cases: [string, { schema: string; name: string }][] = [
    ["ticker", { schema: "public", name: "ticker" }],
    ["fds.ticker", { schema: "fds", name: "ticker" }],
    ["FDS.Ticker", { schema: "fds", name: "ticker" }],
    ["  fds . ticker  ", { schema: "fds", name: "ticker" }],
    ['"My Schema"."My Table"', { schema: "My Schema", name: "My Table" }],
    ['"MixedCase"', { schema: "public", name: "MixedCase" }],
    ['fds."Ticker"', { schema: "fds", name: "Ticker" }],
    ['"Fds".ticker', { schema: "Fds", name: "ticker" }],
    ['"Odd ""Table""-1"', { schema: "public", name: 'Odd "Table"-1' }],
    ['""""', { schema: "public", name: '"' }],
    ['"a.b"."c.d"', { schema: "a.b", name: "c.d" }],
    ['"a:b"', { schema: "public", name: "a:b" }],
    [' "x y" . "z" ', { schema: "x y", name: "z" }],
    // PostgreSQL folds only ASCII letters of unquoted names in a UTF8 database.
    ["Äpfel.Birnen", { schema: "Äpfel", name: "birnen" }],
    ["dollar$1", { schema: "public", name: "dollar$1" }],
  ];
  for (const [input, expected] of cases) {
    test(`${input} -> ${expected.schema} / ${expected.name}`, () => {
      assert.deepEqual(parseQualifiedName(input), expected);
    });
  }

  test("another default schema", () => {
    assert.deepEqual(parseQualifiedName("t", "raw_data"), { schema: "raw_data", name: "t" });
    assert.deepEqual(parseQualifiedName("s.t", "raw_data"), { schema: "s", name: "t" });
  });

  const errors: [string, RegExp][] = [
    ["", /empty name/],
    ["   ", /empty name/],
    ['""', /empty name/],
    [".t", /empty name/],
    ["s.", /empty name/],
    ['"s".""', /empty name/],
    ["a.b.c", /too many dots/],
    ['"a"."b"."c"', /too many dots/],
    ['"unterminated', /unterminated quote/],
    ['s."t', /unterminated quote/],
    ['"a""', /unterminated quote/],
    ['a"b"', /unexpected quote/],
    ['"a"b', /unexpected text after a quoted name/],
  ];
  for (const [input, message] of errors) {
    test(`rejects ${JSON.stringify(input)}`, () => {
      assert.throws(
        () => parseQualifiedName(input),
        (err: Error) => {
          assert.match(err.message, message);
          assert.ok(!err.message.includes("\n"), "one-line message");
          return true;
        },
      );
    });
  }
});

describe("parseTableMapping", () => {
  test("source only", () => {
    assert.deepEqual(parseTableMapping("fds.ticker"), {
      source: { schema: "fds", name: "ticker" },
      target: undefined,
    });
  });
  test("source and target, defaults and folding", () => {
    assert.deepEqual(parseTableMapping("fds.Ticker:raw_data.TICKER"), {
      source: { schema: "fds", name: "ticker" },
      target: { schema: "raw_data", name: "ticker" },
    });
    assert.deepEqual(parseTableMapping("a:b"), {
      source: { schema: "public", name: "a" },
      target: { schema: "public", name: "b" },
    });
  });
  test("quoted names with dots, colons, spaces and quotes", () => {
    assert.deepEqual(parseTableMapping('"My Schema"."Odd ""Table""-1":"raw:data"."a.b"'), {
      source: { schema: "My Schema", name: 'Odd "Table"-1' },
      target: { schema: "raw:data", name: "a.b" },
    });
    assert.deepEqual(parseTableMapping('"x:y"'), {
      source: { schema: "public", name: "x:y" },
      target: undefined,
    });
  });
  const errors: [string, RegExp][] = [
    ["a:b:c", /too many ':'/],
    ["a:", /empty name/],
    [":b", /empty name/],
    ["a.b.c:d", /too many dots/],
    ["a:b.c.d", /too many dots/],
    ['a:"b', /unterminated quote/],
    ['"a:b', /unterminated quote/],
  ];
  for (const [input, message] of errors) {
    test(`rejects ${JSON.stringify(input)}`, () => {
      assert.throws(() => parseTableMapping(input), message);
    });
  }
});

describe("quoting and display", () => {
  test("quoteIdent always quotes and doubles embedded quotes", () => {
    assert.equal(quoteIdent("t"), '"t"');
    assert.equal(quoteIdent("My Table"), '"My Table"');
    assert.equal(quoteIdent('Odd "Table"-1'), '"Odd ""Table""-1"');
    assert.equal(quoteIdent('"'), '""""');
    assert.equal(quoteIdent("a.b"), '"a.b"');
    assert.equal(quoteIdent("select"), '"select"');
    assert.equal(quoteIdent("x'; DROP TABLE t; --"), '"x\'; DROP TABLE t; --"');
  });
  test("quoteIdent refuses empty names and NUL bytes", () => {
    assert.throws(() => quoteIdent(""), /empty identifier/);
    assert.throws(() => quoteIdent("a\0b"), /NUL/);
  });
  test("quoteQualified", () => {
    assert.equal(
      quoteQualified({ schema: "My Schema", name: 'Odd "T"' }),
      '"My Schema"."Odd ""T"""',
    );
  });
  test("displayName quotes only where needed and round-trips through the parser", () => {
    const names = [
      { schema: "public", name: "ticker" },
      { schema: "My Schema", name: 'Odd "Table"-1' },
      { schema: "fds", name: "Ticker" },
      { schema: "a.b", name: "c:d" },
      { schema: "s", name: "_x$1" },
    ];
    assert.equal(displayName(names[0]!), "public.ticker");
    assert.equal(displayName(names[1]!), '"My Schema"."Odd ""Table""-1"');
    assert.equal(displayName(names[2]!), 'fds."Ticker"');
    for (const n of names) assert.deepEqual(parseQualifiedName(displayName(n)), n);
  });
});

/** A key column compared as its type does (db/key.ts). */
const keyCol = (name: string, over: Partial<KeyColumn> = {}): KeyColumn => ({
  name,
  type: "integer",
  equality: { schema: "pg_catalog", name: "=" },
  collation: null,
  hash: { schema: "pg_catalog", name: "hashint4extended" },
  ...over,
});
const EQ = 'OPERATOR("pg_catalog".=)';

describe("merge SQL builders", () => {
  const spec: MergeSpec = {
    target: { schema: "raw_data", name: 'Odd "T"' },
    stage: { schema: "xmin_sync", name: "stage_16384" },
    columns: ["id", "Name", "v"],
    key: [keyCol("id")],
    compareContent: false,
  };
  const T = '"raw_data"."Odd ""T"""';
  const S = '"xmin_sync"."stage_16384"';

  test("mergeSql skips rows whose source_xmin did not change", () => {
    assert.equal(
      mergeSql(spec).text,
      `MERGE INTO ${T} AS t USING ${S} AS s ON t."id" ${EQ} s."id"` +
        ` WHEN MATCHED AND t."source_xmin" IS DISTINCT FROM s."source_xmin"` +
        ` THEN UPDATE SET "id" = s."id", "Name" = s."Name", "v" = s."v", "source_xmin" = s."source_xmin"` +
        ` WHEN NOT MATCHED THEN INSERT ("id", "Name", "v", "source_xmin")` +
        ` VALUES (s."id", s."Name", s."v", s."source_xmin")`,
    );
  });

  test("mergeSql with a composite key, deciding by content (full resync)", () => {
    assert.equal(
      mergeSql({ ...spec, key: [keyCol("id"), keyCol("Name")], compareContent: true }).text,
      `MERGE INTO ${T} AS t USING ${S} AS s ON t."id" ${EQ} s."id" AND t."Name" ${EQ} s."Name"` +
        ` WHEN MATCHED AND ROW(t."id", t."Name", t."v")::text IS DISTINCT FROM ROW(s."id", s."Name", s."v")::text` +
        ` THEN UPDATE SET "id" = s."id", "Name" = s."Name", "v" = s."v", "source_xmin" = s."source_xmin"` +
        ` WHEN NOT MATCHED THEN INSERT ("id", "Name", "v", "source_xmin")` +
        ` VALUES (s."id", s."Name", s."v", s."source_xmin")`,
    );
  });

  test("mergeSql on 17 counts inserts and updates in the same statement", () => {
    const { text, values } = mergeSql({ ...spec, slice: ["(0,0)", "(10,0)"] }, { counted: true });
    assert.equal(
      text,
      `WITH m AS (MERGE INTO ${T} AS t USING (SELECT * FROM ${S} WHERE ctid >= $1::tid AND ctid < $2::tid) AS s` +
        ` ON t."id" ${EQ} s."id"` +
        ` WHEN MATCHED AND t."source_xmin" IS DISTINCT FROM s."source_xmin"` +
        ` THEN UPDATE SET "id" = s."id", "Name" = s."Name", "v" = s."v", "source_xmin" = s."source_xmin"` +
        ` WHEN NOT MATCHED THEN INSERT ("id", "Name", "v", "source_xmin")` +
        ` VALUES (s."id", s."Name", s."v", s."source_xmin") RETURNING merge_action() AS a)` +
        ` SELECT count(*) FILTER (WHERE a = 'INSERT')::bigint AS inserted,` +
        ` count(*) FILTER (WHERE a = 'UPDATE')::bigint AS updated FROM m`,
    );
    assert.deepEqual(values, ["(0,0)", "(10,0)"]);
  });

  test("upsertSql (PostgreSQL 13/14)", () => {
    assert.equal(
      upsertSql(spec).text,
      `WITH m AS (INSERT INTO ${T} AS t ("id", "Name", "v", "source_xmin")` +
        ` SELECT s."id", s."Name", s."v", s."source_xmin" FROM ${S} AS s` +
        ` ON CONFLICT ("id") DO UPDATE SET "id" = EXCLUDED."id", "Name" = EXCLUDED."Name", "v" = EXCLUDED."v",` +
        ` "source_xmin" = EXCLUDED."source_xmin"` +
        ` WHERE t."source_xmin" IS DISTINCT FROM EXCLUDED."source_xmin"` +
        ` RETURNING (t.xmax = 0) AS inserted)` +
        ` SELECT count(*) FILTER (WHERE inserted)::bigint AS inserted,` +
        ` count(*) FILTER (WHERE NOT inserted)::bigint AS updated FROM m`,
    );
  });

  test("upsertSql with content comparison", () => {
    assert.equal(
      upsertSql({ ...spec, compareContent: true }).text,
      `WITH m AS (INSERT INTO ${T} AS t ("id", "Name", "v", "source_xmin")` +
        ` SELECT s."id", s."Name", s."v", s."source_xmin" FROM ${S} AS s` +
        ` ON CONFLICT ("id") DO UPDATE SET "id" = EXCLUDED."id", "Name" = EXCLUDED."Name", "v" = EXCLUDED."v",` +
        ` "source_xmin" = EXCLUDED."source_xmin"` +
        ` WHERE ROW(t."id", t."Name", t."v")::text IS DISTINCT FROM` +
        ` ROW(EXCLUDED."id", EXCLUDED."Name", EXCLUDED."v")::text` +
        ` RETURNING (t.xmax = 0) AS inserted)` +
        ` SELECT count(*) FILTER (WHERE inserted)::bigint AS inserted,` +
        ` count(*) FILTER (WHERE NOT inserted)::bigint AS updated FROM m`,
    );
  });

  test("a table of key columns only updates its key's spelling and source_xmin", () => {
    const keyOnly = { ...spec, columns: ["id"] };
    assert.match(
      mergeSql(keyOnly).text,
      / THEN UPDATE SET "id" = s."id", "source_xmin" = s."source_xmin" WHEN /,
    );
    assert.match(
      upsertSql(keyOnly).text,
      / DO UPDATE SET "id" = EXCLUDED."id", "source_xmin" = EXCLUDED."source_xmin" WHERE /,
    );
  });

  test("keys are matched by their type's own equality and their column's collation", () => {
    const citext = keyCol("code", {
      type: "public.citext",
      equality: { schema: "public", name: "=" },
      hash: { schema: "public", name: "citext_hash_extended" },
    });
    const ci = keyCol("name", {
      type: "text",
      collation: { schema: "app", name: "case insensitive" },
    });
    const k = { ...spec, key: [citext, ci] };
    assert.match(
      mergeSql(k).text,
      / ON t."code" OPERATOR\("public".=\) s."code" AND t."name" OPERATOR\("pg_catalog".=\) s."name" COLLATE "app"."case insensitive" WHEN /,
    );
    assert.equal(
      deleteMissingSql(spec.target, spec.stage, [citext, ci]).text,
      `DELETE FROM ${T} AS t WHERE NOT EXISTS (SELECT 1 FROM ${S} AS s WHERE` +
        ` s."code" OPERATOR("public".=) t."code"` +
        ` AND s."name" ${EQ} t."name" COLLATE "app"."case insensitive")`,
    );
  });

  test("countNewSql", () => {
    assert.equal(
      countNewSql({ ...spec, key: [keyCol("id"), keyCol("Name")] }).text,
      `SELECT count(*)::bigint AS n FROM ${S} AS s WHERE NOT EXISTS` +
        ` (SELECT 1 FROM ${T} AS t WHERE t."id" ${EQ} s."id" AND t."Name" ${EQ} s."Name")`,
    );
  });

  test("deleteMissingSql", () => {
    assert.equal(
      deleteMissingSql(spec.target, spec.stage, spec.key).text,
      `DELETE FROM ${T} AS t WHERE NOT EXISTS (SELECT 1 FROM ${S} AS s WHERE s."id" ${EQ} t."id")`,
    );
  });
});

describe("key checks, collations and deep-validation hashes", () => {
  const table = { schema: "app", name: "t" };
  test("keyProblemsSql counts NULL keys and duplicated values in one grouping", () => {
    const { text, values } = keyProblemsSql(table, [keyCol("a"), keyCol("b")]);
    assert.equal(
      text,
      `SELECT coalesce(sum(g.n) FILTER (WHERE g.nulls), 0)::bigint AS nulls,` +
        ` count(*) FILTER (WHERE NOT g.nulls AND g.n > 1)::bigint AS duplicates,` +
        ` coalesce(sum(g.n) FILTER (WHERE NOT g.nulls AND g.n > 1), 0)::bigint AS duplicate_rows` +
        ` FROM (SELECT count(*) AS n, (t."a" IS NULL OR t."b" IS NULL) AS nulls` +
        ` FROM "app"."t" AS t GROUP BY t."a", t."b") AS g`,
    );
    assert.deepEqual(values, []);
  });
  test("keyProblemsSql among given keys matches them by the key's equality", () => {
    const { text, values } = keyProblemsSql(table, [keyCol("a")], [["1", "2"]]);
    assert.match(
      text,
      / FROM "app"."t" AS t WHERE EXISTS \(SELECT 1 FROM unnest\(\$1::text\[\]\) AS u\(k0\) WHERE t."a" OPERATOR\("pg_catalog".=\) u.k0::integer\) GROUP BY t."a"\) AS g$/,
    );
    assert.deepEqual(values, [["1", "2"]]);
  });
  test("createCollationSql from the source's definition", () => {
    assert.equal(
      createCollationSql({
        name: { schema: "app", name: "ci" },
        provider: "i",
        deterministic: false,
        collate: "und-u-ks-level2",
        ctype: "und-u-ks-level2",
        rules: null,
      }),
      `CREATE COLLATION "app"."ci" (provider = icu, locale = 'und-u-ks-level2', deterministic = false)`,
    );
    assert.equal(
      createCollationSql({
        name: { schema: "app", name: "c2" },
        provider: "c",
        deterministic: true,
        collate: "C",
        ctype: "C",
        rules: null,
      }),
      `CREATE COLLATION "app"."c2" (provider = libc, lc_collate = 'C', lc_ctype = 'C')`,
    );
  });
  test("the key hash is the type's own, chained across columns; text for types without a portable one", () => {
    const spec = {
      table,
      columns: ["a", "b", "v"],
      key: [keyCol("a"), keyCol("b", { type: "app.mood", hash: null })],
    };
    assert.match(
      leafSql(spec),
      / hashint8extended\(coalesce\(hashtextextended\(t."b"::text, 0\), 0\), coalesce\("pg_catalog"."hashint4extended"\(t."a", 0\), 0\)\) AS h, /,
    );
    assert.match(
      bucketSql({ ...spec, key: [keyCol("b", { hash: null })] }, false),
      / hashtextextended\(t."b"::text, 0\) AS h, /,
    );
  });
});

describe("copyOutSql", () => {
  const table = { schema: "My Schema", name: 'Odd "T"' };
  const whole = { relation: table, only: false };
  const columns = ["id", "A"];
  const raw = "t.xmin::text::bigint";
  const age = "age(t.xmin)";
  const n = "(SELECT current_setting('xmin_sync.next')::bigint)";
  const w = "(SELECT current_setting('xmin_sync.window')::int)";
  const c = "(SELECT current_setting('xmin_sync.reference')::bigint)";
  const sourceXmin =
    `CASE WHEN ${age} < 2147483647 THEN ${n} - (${age}::bigint & 4294967295)` +
    ` WHEN ${raw} <= 2 THEN ${raw} ELSE ${c} - ((${c} - ${raw}) & 4294967295) END AS source_xmin`;
  const since = { kind: "xmin", since: 100n } as const;
  const all = { kind: "all" } as const;

  test("incremental: only rows newer than the watermark, never raw xmin 1 or 2", () => {
    assert.equal(
      copyOutSql({ part: whole, columns, xmin: "full", filter: since }),
      `COPY (SELECT t."id", t."A", ${sourceXmin} FROM "My Schema"."Odd ""T""" AS t` +
        ` WHERE ${age} BETWEEN 0 AND ${w}) TO STDOUT`,
    );
  });
  test("full copy: every row, with its 64-bit xmin", () => {
    assert.equal(
      copyOutSql({ part: whole, columns, xmin: "full", filter: all }),
      `COPY (SELECT t."id", t."A", ${sourceXmin} FROM "My Schema"."Odd ""T""" AS t` + `) TO STDOUT`,
    );
  });
  test("one TID range of a leaf, in binary", () => {
    assert.equal(
      copyOutSql({
        part: { relation: table, only: true, range: { kind: "ctid", fromPage: 10, toPage: 20 } },
        columns,
        xmin: "full",
        filter: since,
        format: "binary",
      }),
      `COPY (SELECT t."id", t."A", ${sourceXmin} FROM ONLY "My Schema"."Odd ""T""" AS t` +
        ` WHERE ${age} BETWEEN 0 AND ${w}` +
        ` AND t.ctid >= current_setting('xmin_sync.range_from')::tid` +
        ` AND t.ctid < current_setting('xmin_sync.range_to')::tid) TO STDOUT (FORMAT binary)`,
    );
  });
  test("a leaf added since the last run is read whole in an incremental run", () => {
    assert.equal(
      copyOutSql({
        part: { ...whole, only: true, allRows: true },
        columns,
        xmin: "full",
        filter: since,
      }),
      `COPY (SELECT t."id", t."A", ${sourceXmin} FROM ONLY "My Schema"."Odd ""T""" AS t` +
        `) TO STDOUT`,
    );
  });
  test("the last integer-key range is open-ended; key-only reads carry no xmin", () => {
    assert.equal(
      copyOutSql({
        part: { ...whole, range: { kind: "key", column: "id", from: "100", to: null } },
        columns: ["id"],
        xmin: "none",
        filter: all,
      }),
      `COPY (SELECT t."id" FROM "My Schema"."Odd ""T""" AS t` +
        ` WHERE t."id" >= current_setting('xmin_sync.range_from')::bigint) TO STDOUT`,
    );
  });
  test("views and foreign tables: no xmin; timestamp mode reads from the cursor's bound", () => {
    assert.equal(
      copyOutSql({ part: whole, columns, xmin: "null", filter: all }),
      `COPY (SELECT t."id", t."A", NULL::bigint AS source_xmin FROM "My Schema"."Odd ""T""" AS t) TO STDOUT`,
    );
    assert.equal(
      copyOutSql({
        part: whole,
        columns,
        xmin: "null",
        filter: {
          kind: "cursor",
          column: "A",
          type: "timestamp with time zone",
          last: "x",
          lookback: "5 minutes",
        },
      }),
      `COPY (SELECT t."id", t."A", NULL::bigint AS source_xmin FROM "My Schema"."Odd ""T""" AS t` +
        ` WHERE t."A" >= (SELECT (current_setting('xmin_sync.cursor_last')::timestamp with time zone` +
        ` - current_setting('xmin_sync.lookback')::interval)::timestamp with time zone)) TO STDOUT`,
    );
  });
});

describe("xid arithmetic (docs/correctness.md, 64-bit watermarks)", () => {
  const E = XID_SPACE; // one epoch

  test("fullXid within one epoch", () => {
    assert.equal(fullXid(1000n, 5000n), 1000n);
    assert.equal(fullXid(4999n, 5000n), 4999n);
    assert.equal(fullXid(1000n, 5n * E + 5000n), 5n * E + 1000n);
  });

  test("fullXid across the 2^32 wrap", () => {
    const reference = E + 100n; // epoch 1, xid 100
    assert.equal(fullXid(E - 6n, reference), E - 6n, "epoch 0 row, before the wrap");
    assert.equal(fullXid(50n, reference), E + 50n, "epoch 1 row, after the wrap");
    assert.equal(fullXid(3n, reference), E + 3n, "first normal xid of epoch 1");
    assert.equal(fullXid(101n, reference), 101n, "ahead of the reference: the previous epoch");
  });

  test("raw xmin 1 and 2 keep their value and are never new", () => {
    for (const raw of [1n, 2n]) {
      assert.equal(fullXid(raw, E + 100n), raw);
      assert.equal(isNewRow(raw, E + 100n, E + 99n), false);
      assert.equal(isNewRow(raw, 3n * E, 0n), false, "not even on a full rescan");
    }
  });

  test("isNewRow: rows at or after the watermark, across the wrap", () => {
    const reference = E + 100n;
    const watermark = E - 50n; // window 150
    assert.equal(isNewRow(E - 50n, reference, watermark), true, "the watermark itself");
    assert.equal(isNewRow(E - 51n, reference, watermark), false, "just before the watermark");
    assert.equal(isNewRow(E - 6n, reference, watermark), true, "after it, before the wrap");
    assert.equal(isNewRow(E - 1n, reference, watermark), true, "last xid of epoch 0");
    assert.equal(isNewRow(3n, reference, watermark), true, "first normal xid of epoch 1");
    assert.equal(isNewRow(99n, reference, watermark), true, "just before the reference");
    assert.equal(isNewRow(1000n, reference, watermark), false, "old row from epoch 0");
    assert.equal(isNewRow(E - 60n, reference, watermark), false);
  });

  test("isNewRow agrees with comparing full ids whenever the window is below 2^32", () => {
    const reference = 7n * E + 12345n;
    for (const back of [0n, 1n, 1000n, 12345n, 12346n, E / 2n, E - 1n]) {
      const watermark = reference - back;
      for (const age of [1n, 2n, 500n, 12344n, 12345n, 12346n, E / 2n, E - 3n]) {
        const full = reference - age;
        const raw = full & (E - 1n);
        if (raw <= 2n) continue;
        assert.equal(fullXid(raw, reference), full, `fullXid age ${age}`);
        assert.equal(
          isNewRow(raw, reference, watermark),
          full >= watermark,
          `age ${age}, window ${back}`,
        );
      }
    }
  });

  test("a window of 2^32 or more selects every row", () => {
    const reference = 3n * E + 10n;
    for (const watermark of [reference - E, reference - E - 1n, 0n]) {
      for (const raw of [3n, 10n, 11n, E / 2n, E - 1n]) {
        assert.equal(isNewRow(raw, reference, watermark), true, `raw ${raw}`);
      }
    }
  });

  test("a watermark 2^30 or more behind gets a full rescan (age() is int32)", () => {
    const reference = 3n * E + 10n;
    assert.equal(needsFullRescan(reference, reference - E), true);
    assert.equal(needsFullRescan(reference, reference - (1n << 30n)), true);
    assert.equal(needsFullRescan(reference, reference - (1n << 30n) + 1n), false);
  });

  test("nextFromAge recovers N as a full id from age('3'), across the wrap", () => {
    // age('3') = (int32)(N - 3); N at or after the snapshot's xmax, within 2^31.
    const int32 = (v: bigint) => Number(BigInt.asIntN(32, v));
    for (const [n, xmax] of [
      [5000n, 4990n],
      [E + 7n, E - 20n],
      [5n * E + 3n, 5n * E + 3n],
      [2n * E + (1n << 31n) + 100n, 2n * E + (1n << 31n)],
    ] as [bigint, bigint][]) {
      assert.equal(nextFromAge(int32(n - 3n), xmax), n, `N ${n}`);
    }
  });
});
