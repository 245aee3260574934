import { fileURLToPath } from "node:url";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { parseDuration } from "../config/duration.js";
import {
  hasPatterns,
  requestFromConfig,
  requestFromFlags,
  resolveTables,
  guardsFromConfig,
  schemaPolicy,
  tuningFromConfig,
  type TableFlag,
  type TableSettings,
} from "../config/resolve.js";
import { describeError } from "../db/connect.js";
import { resolveDatabaseUrl } from "../db/database-url.js";
import { checkName } from "../db/quote.js";
import { InputError } from "../input-error.js";
import { createLogger, LOG_LEVELS } from "../log.js";
import type {
  DeletesMode,
  DroppedColumns,
  Mode,
  SchemaChanges,
  TableResult,
  TableSpec,
} from "../sync/types.js";
import type { TuningInput } from "../sync/tuning.js";
import { resolveTuning } from "../sync/tuning.js";
import { oneLine } from "./output.js";
import { registerFleetCommands } from "./fleet.js";
import type { HistoryOptions } from "../target/history.js";

/**
 * Exit codes: 0 every table ok; 1 a table failed while it ran; 2 bad input
 * (usage, config, a table refused before anything was copied), and for
 * check and validate, a run that could not go ahead.
 */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/** What an action hands back to main: its exit code, and the code for an error it throws. */
interface State {
  exitCode: number;
  /** Exit code for an error thrown by the action that is not bad input (default 1). */
  errorExit: number;
}

/** A repeatable flag's values, in order. */
const collect = (value: string, previous: string[] = []) => [...previous, value];

interface GlobalFlags {
  debug?: boolean;
  logLevel?: string;
}

// Commands load what only they need (config parsing, validation, the bench,
// the demo) when they run: a scheduled sync starts a tenth of a second sooner.
const loadConfig = async (path: string) => (await import("../config/load.js")).loadConfig(path);

const MODES: Mode[] = ["auto", "xmin", "timestamp", "full"];

// ---------------------------------------------------------------------------
// Flags shared by commands

interface ConnectionFlags {
  source?: string;
  target?: string;
  config?: string;
  json?: boolean;
}

function connectionFlags(cmd: Command, sides: ("source" | "target")[] = ["source", "target"]) {
  for (const side of sides) {
    const env = side === "source" ? "SOURCE_DATABASE_URL" : "TARGET_DATABASE_URL";
    cmd.option(`--${side} <url>`, `${side} database URL (default: the config's, else $${env})`);
  }
  return cmd.option("--config <file>", "YAML config file (see README, Config file)");
}

/**
 * `--table` (repeatable; a name or a pattern) with `--key`, `--mode` and
 * `--cursor` that bind to the `--table` before them, or, given before any
 * `--table`, to every table; and `--exclude`. Commander calls the parsers
 * in command-line order, so a flag's place decides what it binds to.
 */
function tableFlags(cmd: Command, opts: { settings: boolean }) {
  const tables: TableFlag[] = [];
  const common: TableSettings = {};
  const bind = <K extends keyof TableSettings>(flag: string, k: K, v: TableSettings[K]) => {
    const last = tables.at(-1);
    const into = last ?? common;
    if (into[k] !== undefined) {
      throw new InvalidArgumentError(
        last ? `given twice for --table ${last.table}` : `given twice before any --table`,
      );
    }
    into[k] = v;
  };
  cmd.option(
    "--table <SRC[:DST]>",
    "table, schema.table, or a pattern (fds.*, fds.sym_?); repeatable",
    (value: string) => {
      tables.push({ table: value });
      return tables.map((t) => t.table);
    },
  );
  cmd.option(
    "--exclude <pattern>",
    "leave out source tables matching a pattern (repeatable)",
    collect,
  );
  if (opts.settings) {
    cmd
      .option(
        "--key <columns>",
        "key columns (a,b) of the --table before it (before any --table: of all)",
        (v: string) => {
          const key = v.split(",").map((k) => k.trim());
          for (const k of key) validColumn(k);
          bind("--key", "key", key);
          return v;
        },
      )
      .option(
        "--mode <mode>",
        `sync mode of the --table before it: ${MODES.join(", ")} (default auto)`,
        (v: string) => {
          if (!MODES.includes(v as Mode))
            throw new InvalidArgumentError(`Allowed choices are ${MODES.join(", ")}.`);
          bind("--mode", "mode", v as Mode);
          return v;
        },
      )
      .option(
        "--cursor <column>",
        "timestamp-mode cursor column of the --table before it",
        (v: string) => {
          bind("--cursor", "cursor", validColumn(v));
          return v;
        },
      );
  }
  return { tables, common };
}

type TableArgs = ReturnType<typeof tableFlags>;

/** A column name from a flag, or commander's one-line usage error. */
function validColumn(name: string): string {
  if (name === "") throw new InvalidArgumentError("empty column name");
  try {
    checkName(name);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  return name;
}

/** How a table's run treats deletes and schema changes, overriding the config. */
function policyFlags(cmd: Command) {
  return cmd
    .addOption(
      new Option("--deletes <mode>", "propagate deletes (overrides the config)").choices([
        "ignore",
        "hard",
        "soft",
      ]),
    )
    .addOption(
      new Option(
        "--schema-changes <policy>",
        "when a source table's schema changed: change the target to match, or fail the table (default evolve; overrides the config)",
      ).choices(["evolve", "fail"]),
    )
    .addOption(
      new Option(
        "--dropped-columns <what>",
        "a column dropped on the source: keep it on the target (no longer written) or drop it (default keep; overrides the config)",
      ).choices(["keep", "drop"]),
    );
}

interface PolicyFlags {
  deletes?: DeletesMode;
  schemaChanges?: SchemaChanges;
  droppedColumns?: DroppedColumns;
}

const jsonFlag = (cmd: Command, what: string) => cmd.option("--json", what);

function examples(cmd: Command, lines: string[]) {
  return cmd.addHelpText("after", `\nExamples:\n${lines.map((l) => `  $ ${l}`).join("\n")}\n`);
}

function parsePositiveInt(flag: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new InputError(
      `${flag} takes a whole number of at least 1, not ${JSON.stringify(value)}`,
    );
  return n;
}

function parseWaitTimeout(text: string, where: string): number {
  const seconds = parseDuration(text);
  if (seconds === null)
    throw new InputError(
      `${where} takes a duration like 30s, 10m, 1h, not ${JSON.stringify(text)}`,
    );
  return seconds * 1000;
}

// ---------------------------------------------------------------------------
// From flags and config to a request

interface Resolved {
  source: string;
  target: string;
  tables: TableSpec[];
  waitForLock: boolean;
  waitTimeoutMs?: number;
  tuning: TuningInput;
  /** Run history retention; runs from the command line are recorded as "cli". */
  history: HistoryOptions;
  /** The config's sourceLockTimeout and maxDeleteShare. */
  guards: ReturnType<typeof guardsFromConfig>;
}

/** Connections, tables (patterns matched against the source's catalog) and settings of a command. */
async function resolveRequest(
  flags: ConnectionFlags & PolicyFlags & { exclude?: string[]; workers?: string },
  t: TableArgs,
): Promise<Resolved> {
  let source = flags.source;
  let target = flags.target;
  let request;
  let waitForLock = false;
  let waitTimeoutMs: number | undefined;
  let tuning: TuningInput = {};
  const history: HistoryOptions = { process: "cli" };
  let guards: Resolved["guards"] = {};
  const flagSettings = [t.common, ...t.tables].some(
    (s) => s.key !== undefined || s.mode !== undefined || s.cursor !== undefined,
  );
  if (flags.config) {
    const config = await loadConfig(flags.config);
    if (flagSettings) {
      throw new InputError(
        "--key, --mode and --cursor go with --table tables given on the command line; for a config's tables set key:, mode:, cursor: in it",
      );
    }
    source ??= config.source;
    target ??= config.target;
    history.retention = config.historyRetention;
    guards = guardsFromConfig(config);
    waitForLock = config.waitForLock ?? false;
    if (config.waitTimeout) waitTimeoutMs = parseWaitTimeout(config.waitTimeout, "waitTimeout");
    tuning = tuningFromConfig(config, flags.config);
    request = requestFromConfig(
      config,
      t.tables.map((f) => f.table),
      flags.exclude,
    );
  } else {
    if (t.tables.length === 0)
      throw new InputError("no tables given: pass --table schema.table or --config file");
    request = requestFromFlags(
      t.tables.map((f) => ({ ...t.common, ...f })),
      flags.exclude,
    );
  }
  source = resolveDatabaseUrl("source", source);
  target = resolveDatabaseUrl("target", target);
  let names;
  if (hasPatterns(request)) {
    const { findTables } = await import("./list.js");
    names = (await findTables(source, { schemas: [], tables: [], exclude: [] })).map((x) => x.name);
  }
  let tables = resolveTables(request, names);
  if (tables.length === 0) throw new InputError("no tables left: --exclude leaves out every one");
  if (flags.deletes) tables = tables.map((x) => ({ ...x, deletes: flags.deletes! }));
  const policy = schemaPolicy(flags.schemaChanges, flags.droppedColumns);
  tables = tables.map((x) => ({ ...x, ...policy }));
  if (flags.workers !== undefined) tuning.workers = parsePositiveInt("--workers", flags.workers);
  return {
    source,
    target,
    tables,
    waitForLock,
    ...(waitTimeoutMs !== undefined ? { waitTimeoutMs } : {}),
    tuning,
    history,
    guards,
  };
}

const loggerFor = (cmd: Command) => {
  const g = cmd.optsWithGlobals<GlobalFlags>();
  return createLogger({ level: g.debug ? "debug" : g.logLevel });
};

const write = (line: string) => process.stdout.write(line + "\n");

// ---------------------------------------------------------------------------
// Commands

function syncCommand(program: Command, state: State) {
  const cmd = program
    .command("sync")
    .description("copy tables: whole the first time, then rows changed since the last run");
  connectionFlags(cmd);
  const t = tableFlags(cmd, { settings: true });
  cmd
    .option("--full", "copy every row, ignoring the stored watermark")
    .option(
      "--workers <n>",
      "parallel COPY streams (default: $DEFAULT_WORKERS, or one per core up to 8)",
    )
    .option("--wait", "wait for another run on the same table instead of failing")
    .option("--wait-timeout <duration>", "with --wait: give up after this long (30s, 10m, 1h)")
    .option(
      "--allow-mass-delete",
      "commit deletes of more than maxDeleteShare of a target's rows even when the source does not confirm them",
    );
  policyFlags(cmd);
  jsonFlag(cmd, "print one JSON object per table on stdout");
  examples(cmd, [
    "xmin-sync sync --source postgres://reader@vendor/fds --target postgres://loader@dw/wh --table fds.ticker:raw_data.ticker",
    "xmin-sync sync --table 'fds.*:raw_data.*' --exclude 'fds.tmp_*' --json",
    "xmin-sync sync --table fds.prices --key fsym_id,date --table fds.ticker",
    "xmin-sync sync --config sync.yaml --table fds.ticker --wait --wait-timeout 10m",
  ]);
  cmd.action(
    async (
      flags: ConnectionFlags &
        PolicyFlags & {
          full?: boolean;
          wait?: boolean;
          waitTimeout?: string;
          allowMassDelete?: boolean;
          workers?: string;
          exclude?: string[];
        },
    ) => {
      const logger = loggerFor(cmd);
      const req = await resolveRequest(flags, t);
      const waitTimeoutMs =
        flags.waitTimeout !== undefined
          ? parseWaitTimeout(flags.waitTimeout, "--wait-timeout")
          : req.waitTimeoutMs;
      const { sync } = await import("../sync/run.js");
      const { createProgress } = await import("./progress.js");
      const { formatResult } = await import("./output.js");
      const progress = await createProgress(logger, {
        tty: process.stderr.isTTY === true && !flags.json,
      });
      const { interruptedLine, interruptOnSignals, SIGNAL_EXIT_CODE } =
        await import("./signals.js");
      const interrupt = interruptOnSignals();
      let results: TableResult[];
      try {
        results = await sync({
          source: req.source,
          target: req.target,
          tables: req.tables,
          full: flags.full ?? false,
          waitForLock: flags.wait ?? req.waitForLock,
          ...(waitTimeoutMs !== undefined ? { waitTimeoutMs } : {}),
          tuning: req.tuning,
          onProgress: progress.onProgress,
          logger,
          signal: interrupt.signal,
          history: req.history,
          ...req.guards,
          allowMassDelete: flags.allowMassDelete ?? false,
        });
      } catch (err) {
        if (!interrupt.received()) throw err;
        results = [];
      } finally {
        progress.stop();
        interrupt.dispose();
      }
      for (const r of results) write(flags.json ? JSON.stringify(r) : formatResult(r));
      // Bad input a human must fix (2) outranks a failure a retry may fix (1).
      state.exitCode = results.some((r) => r.badInput)
        ? EXIT.usage
        : results.every((r) => r.status === "ok")
          ? EXIT.ok
          : EXIT.failed;
      const sig = interrupt.received();
      if (sig) {
        process.stderr.write(interruptedLine(sig, results) + "\n");
        state.exitCode = SIGNAL_EXIT_CODE[sig];
      }
    },
  );
}

function checkCommand(program: Command, state: State) {
  const cmd = program
    .command("check")
    .description(
      "check, without writing anything, that a sync could run: tables, keys, privileges and settings on both servers",
    );
  connectionFlags(cmd);
  const t = tableFlags(cmd, { settings: true });
  policyFlags(cmd);
  jsonFlag(cmd, "print one JSON object per finding on stdout");
  examples(cmd, [
    "xmin-sync check --config sync.yaml",
    "xmin-sync check --source postgres://reader@vendor/fds --target postgres://loader@dw/wh --table 'fds.*:raw_data.*'",
  ]);
  cmd.action(async (flags: ConnectionFlags & PolicyFlags & { exclude?: string[] }) => {
    // A check that cannot reach a server says a sync could not run: 2.
    state.errorExit = EXIT.usage;
    const req = await resolveRequest(flags, t);
    const { check } = await import("../check/run.js");
    const { formatFinding } = await import("../check/findings.js");
    const findings = await check(req);
    for (const f of findings) {
      const { index: _index, result: _result, ...shown } = f;
      write(flags.json ? JSON.stringify(shown) : oneLine(formatFinding(f)));
    }
    state.exitCode = findings.some((f) => f.level === "error") ? EXIT.usage : EXIT.ok;
  });
}

function validateCommand(program: Command, state: State) {
  const cmd = program
    .command("validate")
    .description(
      "check that each copy holds what the last sync saw: counts, lag, xmin spread, integrity; --deep compares content",
    );
  connectionFlags(cmd);
  const t = tableFlags(cmd, { settings: true });
  cmd
    .option(
      "--deep",
      "compare row content (hash ranges of the key on both servers), down to the rows",
    )
    .option("--repair", "with --deep: re-copy differing rows and remove extra ones")
    .option("--sample <n>", "keys to list per kind of difference", "10")
    .option(
      "--max-lag <lag>",
      "fail when the copy trails by more than this: transactions (10000) or time since the last sync (15m)",
    );
  jsonFlag(cmd, "print one JSON report per table on stdout");
  examples(cmd, [
    "xmin-sync validate --config sync.yaml --max-lag 15m",
    "xmin-sync validate --config sync.yaml --table fds.ticker --deep --repair",
  ]);
  cmd.action(
    async (
      flags: ConnectionFlags & {
        deep?: boolean;
        repair?: boolean;
        sample: string;
        maxLag?: string;
        exclude?: string[];
      },
    ) => {
      // A validation that cannot reach a server proves nothing: 2, as for a table it cannot validate.
      state.errorExit = EXIT.usage;
      if (flags.repair && !flags.deep) throw new InputError("--repair needs --deep");
      const logger = loggerFor(cmd);
      const { parseMaxLag } = await import("../validate/stats.js");
      const maxLag = flags.maxLag !== undefined ? parseMaxLag(flags.maxLag) : undefined;
      const sampleSize = parsePositiveInt("--sample", flags.sample);
      const req = await resolveRequest(flags, t);
      const { validate } = await import("../validate/run.js");
      const { formatReport } = await import("./output.js");
      const reports = await validate({
        source: req.source,
        target: req.target,
        tables: req.tables,
        deep: flags.deep ?? false,
        repair: flags.repair ?? false,
        sampleSize,
        ...(maxLag ? { maxLag } : {}),
        logger,
        history: req.history,
      });
      for (const r of reports) write(flags.json ? JSON.stringify(r) : formatReport(r));
      // 0: every copy holds what its last sync saw (lag within --max-lag);
      // 1: a difference, or lag beyond --max-lag; 2: a table could not be validated.
      state.exitCode = reports.some((r) => r.status === "error")
        ? EXIT.usage
        : reports.every((r) => r.passed)
          ? EXIT.ok
          : EXIT.failed;
    },
  );
}

function statusCommand(program: Command) {
  const cmd = program
    .command("status")
    .description(
      "show each synced table's rows, watermark, last run and last failure, from the target",
    )
    .option(
      "--target <url>",
      "target database URL (default: the config's, else $TARGET_DATABASE_URL)",
    )
    .option("--config <file>", "YAML config file (for its target)")
    .option("--history", "print the run history, newest first")
    .option(
      "--table <schema.table>",
      "with --history: this target table only (repeatable)",
      collect,
    )
    .option("--limit <n>", "with --history: at most this many runs", "50");
  jsonFlag(cmd, "print one JSON object per table on stdout");
  examples(cmd, [
    "xmin-sync status --target postgres://loader@dw/wh",
    "xmin-sync status --config sync.yaml --json",
  ]);
  cmd.action(
    async (flags: {
      target?: string;
      config?: string;
      json?: boolean;
      history?: boolean;
      table?: string[];
      limit: string;
    }) => {
      let target = flags.target;
      if (!target && flags.config) target = (await loadConfig(flags.config)).target;
      target = resolveDatabaseUrl("target", target);
      if (flags.history) {
        const { printHistory } = await import("./history.js");
        const limit = parsePositiveInt("--limit", flags.limit);
        return printHistory(target, { table: flags.table ?? [], json: flags.json ?? false, limit });
      }
      const { status } = await import("./status.js");
      await status(target, { json: flags.json ?? false });
    },
  );
}

interface DiscoverFlags {
  source?: string;
  config?: string;
  schema?: string[];
  table?: string[];
  exclude?: string[];
}

/** --source, --schema, --table patterns and --exclude, for list and init. */
function discoverFlags(cmd: Command) {
  return cmd
    .option(
      "--source <url>",
      "source database URL (default: the config's, else $SOURCE_DATABASE_URL)",
    )
    .option("--config <file>", "YAML config file (for its source)")
    .option("--schema <name>", "only tables of this schema (repeatable)", collect)
    .option(
      "--table <pattern>",
      "only tables matching this pattern (repeatable): fds.sym_*",
      collect,
    )
    .option("--exclude <pattern>", "leave out tables matching this pattern (repeatable)", collect);
}

async function discover(flags: DiscoverFlags) {
  let source = flags.source;
  if (!source && flags.config) source = (await loadConfig(flags.config)).source;
  source = resolveDatabaseUrl("source", source);
  const { parseTablePattern } = await import("../config/patterns.js");
  const patterns = (flag: string, texts: string[] = []) =>
    texts.map((x) => {
      try {
        return parseTablePattern(x);
      } catch (err) {
        throw new InputError(`${flag}: ${(err as Error).message}`, { cause: err });
      }
    });
  for (const s of flags.schema ?? []) {
    try {
      checkName(s);
    } catch (err) {
      throw new InputError(`--schema: ${(err as Error).message}`, { cause: err });
    }
  }
  const { findTables } = await import("./list.js");
  return findTables(source, {
    schemas: flags.schema ?? [],
    tables: patterns("--table", flags.table),
    exclude: patterns("--exclude", flags.exclude),
  });
}

function listCommand(program: Command) {
  const cmd = discoverFlags(
    program
      .command("list")
      .description(
        "list the source's tables: estimated rows, size, key, and whether xmin-sync can sync them as they stand",
      ),
  );
  jsonFlag(cmd, "print one JSON object per table on stdout");
  examples(cmd, [
    "xmin-sync list --source postgres://reader@vendor/fds --schema fds",
    "xmin-sync list --table 'fds.sym_*' --json",
  ]);
  cmd.action(async (flags: DiscoverFlags & { json?: boolean }) => {
    const { printTables } = await import("./list.js");
    printTables(await discover(flags), flags.json ?? false);
  });
}

function initCommand(program: Command) {
  const cmd = discoverFlags(
    program
      .command("init")
      .description("write a commented config for the source's tables (to stdout, or --out FILE)"),
  )
    .option("--target-schema <name>", "copy the tables into this schema (default: the source's)")
    .option("--out <file>", "write the config here instead of stdout")
    .option("--force", "with --out: overwrite an existing file");
  examples(cmd, [
    "xmin-sync init --source postgres://reader@vendor/fds --schema fds --target-schema raw_data --out sync.yaml",
    "xmin-sync init --schema fds --exclude 'fds.tmp_*' > sync.yaml",
  ]);
  cmd.action(
    async (flags: DiscoverFlags & { targetSchema?: string; out?: string; force?: boolean }) => {
      if (flags.targetSchema !== undefined) {
        try {
          checkName(flags.targetSchema);
        } catch (err) {
          throw new InputError(`--target-schema: ${(err as Error).message}`, { cause: err });
        }
      }
      const tables = await discover(flags);
      if (tables.length === 0)
        throw new InputError("no tables found on the source for these options");
      const { configText, writeConfig } = await import("./init.js");
      const described =
        flags.schema && flags.schema.length > 0
          ? `schema${flags.schema.length > 1 ? "s" : ""} ${flags.schema.join(", ")}`
          : "the source's tables";
      const text = configText(tables, {
        described,
        ...(flags.targetSchema !== undefined ? { targetSchema: flags.targetSchema } : {}),
      });
      if (!flags.out) {
        process.stdout.write(text);
        return;
      }
      await writeConfig(flags.out, text, flags.force ?? false);
      process.stderr.write(`xmin-sync: wrote ${flags.out} (${tables.length} tables)\n`);
    },
  );
}

/**
 * The bench's harness (bench/) lives in the repository, not in the
 * published package: an installed xmin-sync says where to run it.
 */
async function loadBench() {
  try {
    return await import("../../bench/bench.js");
  } catch (err) {
    const harness = fileURLToPath(new URL("../../bench/bench.js", import.meta.url));
    if ((err as { code?: string }).code === "ERR_MODULE_NOT_FOUND" && String(err).includes(harness))
      throw new InputError(
        "the bench runs from a clone of the repository, which holds its harness: clone it, run npm ci there, then npx xmin-sync bench",
      );
    throw err;
  }
}

function benchCommand(program: Command) {
  program
    .command("bench")
    .description(
      "measure every path (full load, incremental, deletes, timestamp mode, validate, --deep, --repair) against a reference, in a clone of the repository",
    )
    .option("--source <url>", "existing source server (default: start throwaway servers)")
    .option("--target <url>", "existing target server (needs CREATEDB)")
    .option("--scale <n>", "pgbench scale: 100,000 rows per unit", "20")
    .option(
      "--workers <n>",
      "workers of each run; full loads also with 1..n-1 (default: one per core, up to 8)",
    )
    .option("--runs <n>", "rounds: each path alternates with its reference this many times", "3")
    .option("--out <dir>", "where to write the Markdown and JSON results", "bench/results")
    .option("--no-deep", "skip validate --deep and --repair")
    .option(
      "--timeout <seconds>",
      "stop each xmin-sync run after this long and report it as timed out (default: ten full loads, at least 120)",
    )
    .action(
      async (flags: {
        source?: string;
        target?: string;
        scale: string;
        workers?: string;
        runs: string;
        out: string;
        deep: boolean;
        timeout?: string;
      }) => {
        if ((flags.source === undefined) !== (flags.target === undefined)) {
          throw new InputError("give both --source and --target, or neither");
        }
        const { runBench, writeResults } = await loadBench();
        const result = await runBench({
          ...(flags.source ? { source: flags.source } : {}),
          ...(flags.target ? { target: flags.target } : {}),
          scale: parsePositiveInt("--scale", flags.scale),
          workers: flags.workers
            ? parsePositiveInt("--workers", flags.workers)
            : resolveTuning().workers,
          runs: parsePositiveInt("--runs", flags.runs),
          deep: flags.deep,
          ...(flags.timeout
            ? { timeoutSeconds: parsePositiveInt("--timeout", flags.timeout) }
            : {}),
          say: (line) => process.stderr.write(`bench: ${line}\n`),
        });
        const { stem, markdown } = await writeResults(flags.out, result);
        process.stdout.write(markdown);
        process.stderr.write(`bench: results written to ${stem}.md and ${stem}.json\n`);
      },
    );
}

function demoCommand(program: Command) {
  program
    .command("demo")
    .description(
      "start two throwaway servers, sync a vendor-like table while it changes, and clean up",
    )
    .option("--rows <n>", "rows in the demo table", "100000")
    .action(async (flags: { rows: string }) => {
      const { runDemo } = await import("../demo/demo.js");
      await runDemo({ rows: Number(flags.rows) });
    });
}

// ---------------------------------------------------------------------------

export function buildProgram(state: State, lastError: { message?: string } = {}): Command {
  const program = new Command("xmin-sync")
    .description(
      "Keep copies of PostgreSQL tables up to date in another PostgreSQL database, by xmin.",
    )
    .version("0.1.0")
    .option("--debug", "show stack traces and debug logs")
    .addOption(
      new Option(
        "--log-level <level>",
        "log level on stderr (default: $LOG_LEVEL, else info)",
      ).choices(LOG_LEVELS),
    )
    .showHelpAfterError(false)
    .configureHelp({ showGlobalOptions: true })
    .exitOverride()
    .configureOutput({
      // One line: commander puts "(Did you mean …?)" on a line of its own.
      outputError: (str, write) => {
        const message = str
          .replace(/^error: /, "")
          .trim()
          .replace(/\s*\n\s*/g, " ");
        lastError.message = message;
        write(`xmin-sync: ${message}\n`);
      },
    });
  examples(program, [
    "xmin-sync list --source postgres://reader@vendor/fds --schema fds",
    "xmin-sync init --schema fds --target-schema raw_data --out sync.yaml",
    "xmin-sync check --config sync.yaml",
    "xmin-sync sync --config sync.yaml",
    "xmin-sync validate --config sync.yaml --max-lag 15m",
    "xmin-sync --debug sync --config sync.yaml",
  ]);

  syncCommand(program, state);
  checkCommand(program, state);
  validateCommand(program, state);
  statusCommand(program);
  listCommand(program);
  initCommand(program);
  benchCommand(program);
  demoCommand(program);
  registerFleetCommands(program, state);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const state: State = { exitCode: EXIT.ok, errorExit: EXIT.failed };
  const lastError: { message?: string } = {};
  const program = buildProgram(state, lastError);
  const debug = argv.includes("--debug");
  // With --json, a failure before any table's result still gives stdout one JSON object.
  const json = argv.includes("--json");
  const fail = (message: string) => {
    if (json) write(JSON.stringify({ status: "error", error: message }));
  };
  try {
    await program.parseAsync(argv);
    return state.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version exit 0; usage mistakes were already printed in one line.
      if (err.exitCode === 0) return EXIT.ok;
      fail(lastError.message ?? err.message);
      return EXIT.usage;
    }
    const message = oneLine(describeError(err));
    fail(message);
    if (debug) process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    else process.stderr.write(`xmin-sync: ${message}\n`);
    return err instanceof InputError ? EXIT.usage : state.errorExit;
  }
}
