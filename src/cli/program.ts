import { fileURLToPath } from "node:url";
import { Command, CommanderError, Option } from "commander";
import { describeError } from "../db/connect.js";
import { resolveDatabaseUrl } from "../db/database-url.js";
import {
  schemaPolicy,
  selectTables,
  tablesFromConfig,
  tablesFromFlags,
} from "../config/resolve.js";
import { createLogger } from "../log.js";
import { sync } from "../sync/run.js";
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
import { InputError } from "../input-error.js";
import { formatReport, formatResult } from "./output.js";
import { interruptedLine, interruptOnSignals, SIGNAL_EXIT_CODE } from "./signals.js";

/** Exit codes: 0 every table ok, 1 a table failed, 2 bad input (usage, config). */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

interface CommonFlags {
  source?: string;
  target?: string;
  table: string[];
  config?: string;
  json?: boolean;
  debug?: boolean;
  logLevel?: string;
}

const collect = (value: string, previous: string[]) => [...previous, value];

// Commands load what only they need (config parsing, validation, the bench,
// the demo) when they run: a scheduled sync starts a tenth of a second sooner.
const loadConfig = async (path: string) => (await import("../config/load.js")).loadConfig(path);

function addConnectionFlags(cmd: Command): Command {
  return cmd
    .option("--source <url>", "source database URL (default: $SOURCE_DATABASE_URL)")
    .option("--target <url>", "target database URL (default: $TARGET_DATABASE_URL)")
    .option("--config <file>", "YAML config file")
    .option(
      "--table <SRC[:DST]>",
      "table to sync, schema.table (repeatable); with --config, picks tables from it",
      collect,
      [],
    )
    .option("--json", "print one JSON object per table on stdout")
    .option("--debug", "show stack traces and debug logs")
    .addOption(
      new Option("--log-level <level>", "log level on stderr").choices([
        "debug",
        "info",
        "warn",
        "error",
        "silent",
      ]),
    );
}

interface Resolved {
  source: string;
  target: string;
  tables: TableSpec[];
  waitForLock: boolean;
  tuning: TuningInput;
}

async function resolveRequest(
  flags: CommonFlags & {
    key?: string;
    mode?: Mode;
    deletes?: DeletesMode;
    workers?: string;
    cursor?: string;
    schemaChanges?: SchemaChanges;
    droppedColumns?: DroppedColumns;
  },
): Promise<Resolved> {
  let source = flags.source;
  let target = flags.target;
  let tables: TableSpec[];
  let waitForLock = false;
  let tuning: TuningInput = {};
  if (flags.config) {
    const config = await loadConfig(flags.config);
    source ??= config.source;
    target ??= config.target;
    waitForLock = config.waitForLock ?? false;
    tuning = {
      workers: config.workers,
      minWorkers: config.minWorkers,
      maxWorkers: config.maxWorkers,
      minBatchSize: config.minBatchSize,
      maxBatchSize: config.maxBatchSize,
    };
    tables = tablesFromConfig(config);
    if (flags.table.length > 0) tables = selectTables(tables, flags.table);
  } else {
    if (flags.table.length === 0)
      throw new InputError("no tables given: pass --table schema.table or --config file");
    const key = flags.key?.split(",").map((k) => k.trim());
    tables = tablesFromFlags(flags.table, {
      ...(key ? { key } : {}),
      ...(flags.mode ? { mode: flags.mode } : {}),
      ...(flags.cursor ? { cursor: flags.cursor } : {}),
    });
  }
  source = resolveDatabaseUrl("source", source);
  target = resolveDatabaseUrl("target", target);
  if (flags.deletes) tables = tables.map((t) => ({ ...t, deletes: flags.deletes! }));
  const policy = schemaPolicy(flags.schemaChanges, flags.droppedColumns);
  tables = tables.map((t) => ({ ...t, ...policy }));
  if (flags.workers !== undefined) tuning.workers = parsePositiveInt("--workers", flags.workers);
  return { source, target, tables, waitForLock, tuning };
}

function parsePositiveInt(flag: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new InputError(
      `${flag} takes a whole number of at least 1, not ${JSON.stringify(value)}`,
    );
  return n;
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

export function buildProgram(state: { exitCode: number }): Command {
  const program = new Command("xmin-sync")
    .description(
      "Keep copies of PostgreSQL tables up to date in another PostgreSQL database, by xmin.",
    )
    .version("0.1.0")
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({
      // One line: commander puts "(Did you mean …?)" on a line of its own.
      outputError: (str, write) => {
        const message = str
          .replace(/^error: /, "")
          .trim()
          .replace(/\s*\n\s*/g, " ");
        write(`xmin-sync: ${message}\n`);
      },
    });

  addConnectionFlags(
    program
      .command("sync")
      .description("copy tables: whole the first time, then rows changed since the last run"),
  )
    .option("--full", "copy every row, ignoring the stored watermark")
    .option(
      "--key <columns>",
      "key columns (comma-separated) for --table tables without a primary key",
    )
    .addOption(
      new Option("--mode <mode>", "sync mode for --table tables").choices([
        "auto",
        "xmin",
        "timestamp",
        "full",
      ]),
    )
    .option("--cursor <column>", "timestamp-mode cursor column for --table tables")
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
    )
    .option(
      "--workers <n>",
      "parallel COPY streams (default: $DEFAULT_WORKERS, or one per core up to 8)",
    )
    .option("--wait", "wait for another run on the same table instead of failing")
    .action(
      async (
        flags: CommonFlags & {
          full?: boolean;
          key?: string;
          mode?: Mode;
          wait?: boolean;
          deletes?: DeletesMode;
          workers?: string;
          schemaChanges?: SchemaChanges;
          droppedColumns?: DroppedColumns;
        },
      ) => {
        // Without --log-level, createLogger falls back to $LOG_LEVEL, then info.
        const logger = createLogger({ level: flags.debug ? "debug" : flags.logLevel });
        const req = await resolveRequest(flags);
        const { createProgress } = await import("./progress.js");
        const progress = createProgress(logger, {
          tty: process.stderr.isTTY === true && !flags.json,
        });
        const interrupt = interruptOnSignals();
        let results: TableResult[];
        try {
          results = await sync({
            source: req.source,
            target: req.target,
            tables: req.tables,
            full: flags.full ?? false,
            waitForLock: flags.wait ?? req.waitForLock,
            tuning: req.tuning,
            onProgress: progress.onProgress,
            logger,
            signal: interrupt.signal,
          });
        } catch (err) {
          const sig = interrupt.received();
          if (!sig) throw err;
          results = [];
        } finally {
          progress.stop();
          interrupt.dispose();
        }
        for (const r of results) {
          process.stdout.write((flags.json ? JSON.stringify(r) : formatResult(r)) + "\n");
        }
        state.exitCode = results.every((r) => r.status === "ok") ? EXIT.ok : EXIT.failed;
        const sig = interrupt.received();
        if (sig) {
          process.stderr.write(interruptedLine(sig, results) + "\n");
          state.exitCode = SIGNAL_EXIT_CODE[sig];
        }
      },
    );

  addConnectionFlags(
    program
      .command("validate")
      .description(
        "check that each copy equals its source: counts, sync gap, xmin spread, integrity score; --deep compares content",
      ),
  )
    .option(
      "--key <columns>",
      "key columns (comma-separated) for --table tables without a primary key",
    )
    .option(
      "--deep",
      "compare row content (hash ranges of the key on both servers), down to the rows",
    )
    .option("--repair", "with --deep: re-copy differing rows and remove extra ones")
    .option("--sample <n>", "keys to list per kind of difference", "10")
    .action(
      async (
        flags: CommonFlags & { key?: string; deep?: boolean; repair?: boolean; sample: string },
      ) => {
        if (flags.repair && !flags.deep) throw new InputError("--repair needs --deep");
        const logger = createLogger({ level: flags.debug ? "debug" : flags.logLevel });
        const req = await resolveRequest(flags);
        const { validate } = await import("../validate/run.js");
        const reports = await validate({
          source: req.source,
          target: req.target,
          tables: req.tables,
          deep: flags.deep ?? false,
          repair: flags.repair ?? false,
          sampleSize: parsePositiveInt("--sample", flags.sample),
          logger,
        });
        for (const r of reports) {
          process.stdout.write((flags.json ? JSON.stringify(r) : formatReport(r)) + "\n");
        }
        // 0: every copy equal; 1: differences found; 2: a table could not be validated.
        state.exitCode = reports.some((r) => r.status === "error")
          ? EXIT.usage
          : reports.every((r) => r.isSynchronized)
            ? EXIT.ok
            : EXIT.failed;
      },
    );

  addConnectionFlags(
    program
      .command("status")
      .description("show each synced table's watermark and last run, from the target"),
  ).action(async (flags: CommonFlags) => {
    let target = flags.target;
    if (!target && flags.config) target = (await loadConfig(flags.config)).target;
    target = resolveDatabaseUrl("target", target);
    const { status } = await import("./status.js");
    await status(target, { json: flags.json ?? false });
  });

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

  return program;
}

export async function main(argv: string[]): Promise<number> {
  const state = { exitCode: EXIT.ok as number };
  const program = buildProgram(state);
  const debug = argv.includes("--debug");
  try {
    await program.parseAsync(argv);
    return state.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version exit 0; usage mistakes were already printed in one line.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (debug) process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    else process.stderr.write(`xmin-sync: ${describeError(err)}\n`);
    return err instanceof InputError ? EXIT.usage : EXIT.failed;
  }
}
