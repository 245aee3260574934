import { Command, CommanderError, Option } from "commander";
import { describeError } from "../db/connect.js";
import { selectTables, tablesFromConfig, tablesFromFlags } from "../config/resolve.js";
import { createLogger } from "../log.js";
import { sync } from "../sync/run.js";
import type { DeletesMode, Mode, TableSpec } from "../sync/types.js";
import type { TuningInput } from "../sync/tuning.js";
import { resolveTuning } from "../sync/tuning.js";
import { InputError } from "../input-error.js";
import { formatReport, formatResult } from "./output.js";
import { registerFleetCommands } from "./fleet.js";
import type { HistoryOptions } from "../target/history.js";

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
  history: HistoryOptions;
}

async function resolveRequest(
  flags: CommonFlags & {
    key?: string;
    mode?: Mode;
    deletes?: DeletesMode;
    workers?: string;
    cursor?: string;
  },
): Promise<Resolved> {
  let source = flags.source;
  let target = flags.target;
  let tables: TableSpec[];
  let waitForLock = false;
  let tuning: TuningInput = {};
  const history: HistoryOptions = { process: "cli" };
  if (flags.config) {
    const config = await loadConfig(flags.config);
    history.retention = config.historyRetention;
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
  source ??= process.env.SOURCE_DATABASE_URL;
  target ??= process.env.TARGET_DATABASE_URL;
  if (!source) throw new InputError("no source database: pass --source or set SOURCE_DATABASE_URL");
  if (!target) throw new InputError("no target database: pass --target or set TARGET_DATABASE_URL");
  if (flags.deletes) tables = tables.map((t) => ({ ...t, deletes: flags.deletes! }));
  if (flags.workers !== undefined) tuning.workers = parsePositiveInt("--workers", flags.workers);
  return { source, target, tables, waitForLock, tuning, history };
}

function parsePositiveInt(flag: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new InputError(
      `${flag} takes a whole number of at least 1, not ${JSON.stringify(value)}`,
    );
  return n;
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
        },
      ) => {
        // Without --log-level, createLogger falls back to $LOG_LEVEL, then info.
        const logger = createLogger({ level: flags.debug ? "debug" : flags.logLevel });
        const req = await resolveRequest(flags);
        const { createProgress } = await import("./progress.js");
        const progress = createProgress(logger, {
          tty: process.stderr.isTTY === true && !flags.json,
        });
        let results;
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
            history: req.history,
          });
        } finally {
          progress.stop();
        }
        for (const r of results) {
          process.stdout.write((flags.json ? JSON.stringify(r) : formatResult(r)) + "\n");
        }
        state.exitCode = results.every((r) => r.status === "ok") ? EXIT.ok : EXIT.failed;
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
          history: req.history,
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
      .description("show each synced table's watermark and last run, from the target")
      .option("--history", "print the run history (newest first; --table picks one table)")
      .option("--limit <n>", "with --history: at most this many runs", "50"),
  ).action(async (flags: CommonFlags & { history?: boolean; limit: string }) => {
    let target = flags.target;
    if (!target && flags.config) target = (await loadConfig(flags.config)).target;
    target ??= process.env.TARGET_DATABASE_URL;
    if (!target)
      throw new InputError("no target database: pass --target or set TARGET_DATABASE_URL");
    if (flags.history) {
      const { printHistory } = await import("./history.js");
      const limit = parsePositiveInt("--limit", flags.limit);
      return printHistory(target, { table: flags.table, json: flags.json ?? false, limit });
    }
    const { status } = await import("./status.js");
    await status(target, { json: flags.json ?? false });
  });

  program
    .command("bench")
    .description(
      "measure full and incremental loads for 1..N workers, against a psql COPY pipe, pgcopydb and pg_comparator",
    )
    .option("--source <url>", "existing source server (default: start throwaway servers)")
    .option("--target <url>", "existing target server (needs CREATEDB)")
    .option("--scale <n>", "pgbench scale: 100,000 rows per unit", "20")
    .option("--workers <n>", "measure 1..n workers (default: one per core, up to 8)")
    .option(
      "--runs <n>",
      "alternating rounds of the comparisons with pgcopydb and pg_comparator",
      "3",
    )
    .option("--out <dir>", "where to write the Markdown and JSON results", "bench/results")
    .option("--no-deep", "skip the deep-validation comparison")
    .action(
      async (flags: {
        source?: string;
        target?: string;
        scale: string;
        workers?: string;
        runs: string;
        out: string;
        deep: boolean;
      }) => {
        if ((flags.source === undefined) !== (flags.target === undefined)) {
          throw new InputError("give both --source and --target, or neither");
        }
        const { runBench, writeResults } = await import("../bench/bench.js");
        const result = await runBench({
          ...(flags.source ? { source: flags.source } : {}),
          ...(flags.target ? { target: flags.target } : {}),
          scale: parsePositiveInt("--scale", flags.scale),
          workers: flags.workers
            ? parsePositiveInt("--workers", flags.workers)
            : resolveTuning().workers,
          runs: parsePositiveInt("--runs", flags.runs),
          out: flags.out,
          deep: flags.deep,
          say: (line) => process.stderr.write(`bench: ${line}\n`),
        });
        const stem = await writeResults(
          flags.out,
          parsePositiveInt("--scale", flags.scale),
          result,
        );
        process.stdout.write(result.markdown);
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

  registerFleetCommands(program, state);

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
