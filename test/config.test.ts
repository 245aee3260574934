import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig, MAX_CONFIG_BYTES, parseConfig } from "../src/config/load.js";
import {
  includedTablesFromConfig,
  requestFromConfig,
  requestFromFlags,
  resolveTables,
  tablesFromConfig,
  tuningFromConfig,
} from "../src/config/resolve.js";
import { InputError } from "../src/input-error.js";

/** The config file (README "Config file") is validated with a schema; errors name the key and line. */

const env = {
  SOURCE_DATABASE_URL: "postgres://reader:pw@vendor-db:5432/fds",
  TARGET_DATABASE_URL: "postgres://loader@warehouse/dw",
};

// The README's config example, as the design notes give it.
const DESIGN_EXAMPLE = `source: \${SOURCE_DATABASE_URL}
target: \${TARGET_DATABASE_URL}
workers: 4
tables:
  - source: fds.sym_v1_sym_ticker_exchange
    target: raw_data.sym_v1_sym_ticker_exchange
    key: [fsym_id]            # default: source primary key
    mode: auto                # auto | xmin | timestamp | full
    cursor: updated_at        # for timestamp mode
    deletes: hard             # ignore | hard | soft
    schedule: "*/15 * * * *"  # for worker mode
`;

/** Asserts parseConfig fails with an InputError whose one-line message matches. */
function rejects(text: string, expected: RegExp, e: NodeJS.ProcessEnv = env): string {
  let message = "";
  assert.throws(
    () => parseConfig(text, "sync.yaml", e),
    (err: unknown) => {
      assert.ok(err instanceof InputError, `an InputError, got ${String(err)}`);
      message = err.message;
      assert.ok(!message.includes("\n"), `one line: ${JSON.stringify(message)}`);
      assert.match(message, expected);
      return true;
    },
  );
  return message;
}

describe("parseConfig accepts", () => {
  test("the README's example, with ${VAR} interpolation", () => {
    const config = parseConfig(DESIGN_EXAMPLE, "sync.yaml", env);
    assert.deepEqual(config, {
      source: env.SOURCE_DATABASE_URL,
      target: env.TARGET_DATABASE_URL,
      workers: 4,
      tables: [
        {
          source: "fds.sym_v1_sym_ticker_exchange",
          target: "raw_data.sym_v1_sym_ticker_exchange",
          key: ["fsym_id"],
          mode: "auto",
          cursor: "updated_at",
          deletes: "hard",
          schedule: "*/15 * * * *",
        },
      ],
    });
    assert.deepEqual(tablesFromConfig(config), [
      {
        source: { schema: "fds", name: "sym_v1_sym_ticker_exchange" },
        target: { schema: "raw_data", name: "sym_v1_sym_ticker_exchange" },
        key: ["fsym_id"],
        mode: "auto",
        cursor: "updated_at",
        deletes: "hard",
      },
    ]);
  });

  test("interpolation inside a longer string, and in table entries", () => {
    const config = parseConfig(
      "source: postgres://u:${PW}@h/${DB}\ntables:\n  - source: ${SCHEMA}.t\n",
      "sync.yaml",
      { PW: "p", DB: "d", SCHEMA: "fds" },
    );
    assert.equal(config.source, "postgres://u:p@h/d");
    assert.equal(config.tables?.[0]!.source, "fds.t");
  });

  test("a minimal config; quoted names; every mode and deletes value", () => {
    const config = parseConfig(
      `tables:
  - source: t
  - source: '"My Schema"."Odd ""Table""-1"'
    target: raw."odd"
  - {source: a, mode: xmin, deletes: ignore}
  - {source: b, mode: timestamp, cursor: updated_at, deletes: soft}
  - {source: c, mode: full}
`,
      "sync.yaml",
      {},
    );
    assert.equal(config.source, undefined);
    const specs = tablesFromConfig(config);
    assert.deepEqual(specs[0], { source: { schema: "public", name: "t" } });
    assert.deepEqual(specs[1]!.source, { schema: "My Schema", name: 'Odd "Table"-1' });
    assert.deepEqual(specs[1]!.target, { schema: "raw", name: "odd" });
    assert.deepEqual(
      specs.slice(2).map((s) => [s.mode, s.deletes ?? null]),
      [
        ["xmin", "ignore"],
        ["timestamp", "soft"],
        ["full", null],
      ],
    );
    // --table with --config picks entries by source or target name.
    const pick = (names: string[]) => resolveTables(requestFromConfig(config, names));
    assert.deepEqual(pick(["raw.odd", "public.c"]), [specs[1], specs[4]]);
    assert.deepEqual(pick(["public.?"]), [specs[0], specs[2], specs[3], specs[4]]);
    assert.throws(() => pick(["nope"]), /table public\.nope is not in the config/);
  });

  test("an environment variable's value is not re-interpolated", () => {
    const config = parseConfig("source: ${A}\ntables: [{source: t}]\n", "sync.yaml", {
      A: "${B}",
    });
    assert.equal(config.source, "${B}");
  });
});

describe("parseConfig errors name the line and the key path", () => {
  test("unknown top-level key", () => {
    rejects("source: x\nbogus: 1\ntables:\n  - source: a\n", /^sync\.yaml:2: bogus: unknown key$/);
  });

  test("unknown key in a table entry (a typo)", () => {
    rejects(
      "tables:\n  - source: a\n  - source: b\n    tagret: c\n",
      /^sync\.yaml:4: tables\.1\.tagret: unknown key$/,
    );
  });

  test('wrong type: workers: "four"', () => {
    rejects(
      'source: x\nworkers: "four"\ntables:\n  - source: a\n',
      /^sync\.yaml:2: workers: .*expected number.*string/,
    );
  });

  test("wrong type: workers out of range and not an integer", () => {
    rejects("workers: 0\ntables:\n  - source: a\n", /^sync\.yaml:1: workers: /);
    rejects("workers: 2.5\ntables:\n  - source: a\n", /^sync\.yaml:1: workers: .*int/);
  });

  test("wrong type: key is a string instead of a list", () => {
    rejects(
      "tables:\n  - source: a\n    key: id\n",
      /^sync\.yaml:3: tables\.0\.key: .*expected array/,
    );
  });

  test("bad mode value", () => {
    const message = rejects(
      "tables:\n  - source: a\n  - source: b\n    mode: fast\n",
      /^sync\.yaml:4: tables\.1\.mode: /,
    );
    for (const mode of ["auto", "xmin", "timestamp", "full"]) assert.ok(message.includes(mode));
  });

  test("bad deletes value", () => {
    rejects("tables:\n  - source: a\n    deletes: maybe\n", /^sync\.yaml:3: tables\.0\.deletes: /);
  });

  test("missing tables", () => {
    rejects(
      "source: x\nworkers: 2\n",
      /^sync\.yaml:1: tables: required key is missing \(or give include: patterns\)$/,
    );
  });

  test("empty tables list", () => {
    rejects("source: x\ntables: []\n", /^sync\.yaml:2: tables: /);
  });

  test("a table entry without source", () => {
    rejects(
      "tables:\n  - source: a\n  - target: b\n",
      /^sync\.yaml:3: tables\.1\.source: required key is missing$/,
    );
  });

  test("a table entry that is not a mapping", () => {
    rejects("tables:\n  - a.b\n", /^sync\.yaml:2: tables\.0: .*expected object/);
  });

  test("a bad table name", () => {
    rejects(
      "tables:\n  - source: a\n  - source: a.b.c\n",
      /^sync\.yaml:3: tables\.1\.source: too many dots/,
    );
    rejects(
      "tables:\n  - source: a\n    target: '\"raw.x'\n",
      /^sync\.yaml:3: tables\.0\.target: unterminated quote/,
    );
  });

  test("missing environment variable", () => {
    rejects(
      "source: ${SOURCE_DATABASE_URL}\ntarget: ${NOPE_URL}\ntables:\n  - source: a\n",
      /^sync\.yaml:2: target: environment variable NOPE_URL is not set$/,
    );
    rejects(
      "tables:\n  - source: a\n  - source: ${SRC_TABLE}\n",
      /^sync\.yaml:3: tables\.1\.source: environment variable SRC_TABLE is not set$/,
      {},
    );
  });

  test("invalid YAML", () => {
    rejects("source: x\ntables:\n  - source: a\n   target: [b\n", /^sync\.yaml:4: invalid YAML: /);
    rejects("tables:\n\t- source: a\n", /^sync\.yaml:2: invalid YAML: .*[Tt]ab/);
    rejects("source: a\nsource: b\ntables: [{source: t}]\n", /^sync\.yaml:2: invalid YAML: /);
  });

  test("not a mapping at all", () => {
    rejects("- a\n- b\n", /^sync\.yaml:1: \(top level\): /);
    rejects("", /^sync\.yaml: \(top level\): /);
  });
});

describe("loadConfig", () => {
  test("reads a file, naming it in errors", async () => {
    const dir = await mkdtemp(join(tmpdir(), "xmin-sync-config-"));
    try {
      const good = join(dir, "good.yaml");
      await writeFile(good, DESIGN_EXAMPLE);
      const config = await loadConfig(good, env);
      assert.equal(config.tables?.length, 1);

      const bad = join(dir, "bad.yaml");
      await writeFile(bad, "tables:\n  - source: a\n    mode: sometimes\n");
      await assert.rejects(loadConfig(bad, env), (err: Error) => {
        assert.ok(err instanceof InputError);
        assert.ok(err.message.startsWith(`${bad}:3: tables.0.mode: `), err.message);
        return true;
      });

      await assert.rejects(loadConfig(join(dir, "missing.yaml"), env), (err: Error) => {
        assert.ok(err instanceof InputError);
        assert.match(err.message, /cannot read config .*missing\.yaml: ENOENT/);
        return true;
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("--table flags", () => {
  const flags = (list: Parameters<typeof requestFromFlags>[0], exclude: string[] = []) =>
    resolveTables(requestFromFlags(list, exclude), SOURCE_TABLES);

  test("SRC[:DST] mappings, each with its own settings", () => {
    assert.deepEqual(
      flags([
        { table: 'fds.t:raw."T"', key: ["id", "Name"], mode: "full" },
        { table: "u", cursor: "at" },
      ]),
      [
        {
          source: { schema: "fds", name: "t" },
          target: { schema: "raw", name: "T" },
          key: ["id", "Name"],
          mode: "full",
        },
        { source: { schema: "public", name: "u" }, cursor: "at" },
      ],
    );
  });

  test("bad names are InputErrors naming --table", () => {
    assert.throws(
      () => requestFromFlags([{ table: "a.b.c" }]),
      (err: Error) => err instanceof InputError && /^--table: too many dots/.test(err.message),
    );
  });

  test("patterns match schema and table names with * and ?, sorted; quoted parts are literal", () => {
    const names = (list: string[], exclude: string[] = []) =>
      flags(
        list.map((table) => ({ table })),
        exclude,
      ).map(
        (s) =>
          `${s.source.schema}.${s.source.name}${s.target ? ` -> ${s.target.schema}.${s.target.name}` : ""}`,
      );
    assert.deepEqual(names(["fds.*"]), ["fds.a1", "fds.a2", "fds.b", "fds.star*"]);
    assert.deepEqual(names(["fds.a?"]), ["fds.a1", "fds.a2"]);
    assert.deepEqual(names(['fds."star*"']), ["fds.star*"]);
    assert.deepEqual(names(["*.b"]), ["fds.b", "public.b"]);
    assert.deepEqual(names(["b"]), ["public.b"]);
    assert.deepEqual(
      names(["FDS.A*"]),
      ["fds.a1", "fds.a2"],
      "unquoted patterns fold to lower case",
    );
    assert.deepEqual(names(["fds.*:raw.*"]), [
      "fds.a1 -> raw.a1",
      "fds.a2 -> raw.a2",
      "fds.b -> raw.b",
      "fds.star* -> raw.star*",
    ]);
    assert.deepEqual(names(["fds.*"], ["fds.a*", "*.star?"]), ["fds.b"]);
    // A named table keeps its own settings; a pattern does not repeat it.
    assert.deepEqual(
      flags([{ table: "fds.*" }, { table: "fds.b", key: ["k"] }]).map((s) => [
        s.source.name,
        s.key,
      ]),
      [
        ["a1", undefined],
        ["a2", undefined],
        ["star*", undefined],
        ["b", ["k"]],
      ],
    );
    assert.throws(
      () => names(["fds.zz*"]),
      /^Error: --table: no source table matches "fds\.zz\*"$/,
    );
    assert.throws(() => names(["fds.*:raw.x"]), /the target of a pattern is SCHEMA\.\*/);
  });

  test("config include: and exclude:", () => {
    const config = parseConfig(
      "include: ['fds.*:raw.*', 'public.b']\nexclude: [fds.star?]\ntables:\n  - {source: fds.a1, key: [k]}\n",
      "sync.yaml",
      {},
    );
    const specs = resolveTables(requestFromConfig(config, [], ["fds.a2"]), SOURCE_TABLES);
    assert.deepEqual(
      specs.map((s) => [
        `${s.source.schema}.${s.source.name}`,
        s.target?.schema ?? null,
        s.key ?? null,
      ]),
      [
        ["fds.a1", null, ["k"]],
        ["fds.b", "raw", null],
        ["public.b", null, null],
      ],
    );
  });

  test("the worker and serve leave out the tables: entries exclude: names, as sync does", () => {
    const config = parseConfig(
      "exclude: [fds.tmp_*]\ntables:\n  - {source: fds.a, every: 1m}\n  - {source: fds.tmp_1, every: 1m}\n  - {source: fds.b}\n",
      "sync.yaml",
      {},
    );
    assert.deepEqual(
      includedTablesFromConfig(config).map(({ spec, index }) => [spec.source.name, index]),
      [
        ["a", 0],
        ["b", 2],
      ],
    );
    assert.deepEqual(
      resolveTables(requestFromConfig(config)).map((s) => s.source.name),
      ["a", "b"],
    );
  });
});

const SOURCE_TABLES = [
  { schema: "fds", name: "b" },
  { schema: "fds", name: "a2" },
  { schema: "fds", name: "a1" },
  { schema: "fds", name: "star*" },
  { schema: "public", name: "b" },
];

describe("bad input in a config: one line, the file and the key", () => {
  test("a YAML alias bomb", () => {
    const bomb = [
      "a: &a [x, x, x, x, x, x, x, x, x, x]",
      ...Array.from({ length: 8 }, (_, i) => {
        const p = String.fromCharCode(97 + i);
        const n = String.fromCharCode(98 + i);
        return `${n}: &${n} [*${p}, *${p}, *${p}, *${p}, *${p}, *${p}, *${p}, *${p}, *${p}, *${p}]`;
      }),
      "tables: [{source: t}]",
    ].join("\n");
    const started = Date.now();
    rejects(bomb, /^sync\.yaml:2: YAML aliases expand to too much/);
    assert.ok(Date.now() - started < 2000, "refused at once");
  });

  test("a multi-megabyte table name, a long column name", () => {
    const started = Date.now();
    const msg = rejects(
      `tables:\n  - source: fds.${"x".repeat(3 * 1048576)}\n`,
      /^sync\.yaml:2: tables\.0\.source: name of \d+ characters: PostgreSQL names are at most 63 bytes$/,
    );
    assert.ok(msg.length < 200, msg);
    assert.ok(Date.now() - started < 3000, `refused quickly (${Date.now() - started} ms)`);
    rejects(
      `tables:\n  - source: fds.${"y".repeat(64)}\n`,
      /^sync\.yaml:2: tables\.0\.source: name "y{50,}\.\.\." is 64 bytes: PostgreSQL names are at most 63 bytes$/,
    );
    rejects(
      `tables:\n  - source: t\n    key: [${"k".repeat(70)}]\n`,
      /tables\.0\.key\.0: name .* is 70 bytes/,
    );
  });

  test("minBatchSize above maxBatchSize names the config keys, not the environment", () => {
    rejects(
      "minBatchSize: 500\nmaxBatchSize: 100\ntables: [{source: t}]\n",
      /^sync\.yaml:1: minBatchSize: 500 is more than maxBatchSize \(100\)$/,
    );
    rejects(
      "minWorkers: 5\nmaxWorkers: 2\ntables: [{source: t}]\n",
      /^sync\.yaml:1: minWorkers: 5 is more than maxWorkers \(2\)$/,
    );
    const config = parseConfig("minBatchSize: 2000000\ntables: [{source: t}]\n", "sync.yaml", {});
    assert.throws(
      () => tuningFromConfig(config, "sync.yaml", {}),
      /^Error: sync\.yaml: minBatchSize \(2000000\) is more than maxBatchSize \(1000000, the default for maxBatchSize\)$/,
    );
    assert.throws(
      () => tuningFromConfig(config, "sync.yaml", { MAX_BATCH_SIZE: "1500000" }),
      /maxBatchSize \(1500000, MAX_BATCH_SIZE in the environment\)/,
    );
  });

  test("a config file over the size limit is not read", async () => {
    const dir = await mkdtemp(join(tmpdir(), "xmin-sync-config-"));
    try {
      const big = join(dir, "big.yaml");
      await writeFile(big, "#".repeat(MAX_CONFIG_BYTES + 1));
      await assert.rejects(loadConfig(big, env), (err: Error) => {
        assert.ok(err instanceof InputError);
        assert.match(err.message, /big\.yaml is 4\.0 MB: the limit is 4 MB/);
        return true;
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
