import { Option, type Command } from "commander";
import { resolveDatabaseUrl } from "../db/database-url.js";
import { InputError } from "../input-error.js";
import type { ConfigFile } from "../config/schema.js";

/**
 * `worker` and `serve`: the fleet's commands. Only their flags are defined
 * here; what they run is loaded when they run.
 */
export function registerFleetCommands(program: Command, state: { exitCode: number }): void {
  const logLevel = new Option("--log-level <level>", "log level on stderr").choices([
    "debug",
    "info",
    "warn",
    "error",
    "silent",
  ]);
  program
    .command("worker")
    .description(
      "run the config's scheduled tables (schedule: cron, or every: interval), sharing the queue with any number of workers",
    )
    .requiredOption("--config <file>", "YAML config file")
    .option(
      "--source <url>",
      "source database URL (default: the config's, or $SOURCE_DATABASE_URL)",
    )
    .option(
      "--target <url>",
      "target database URL (default: the config's, or $TARGET_DATABASE_URL)",
    )
    .option("--http <host:port>", "serve the status page, /metrics and /healthz there")
    .option("--poll <seconds>", "how often to look for due tables", "1")
    .option(
      "--shutdown-timeout <seconds>",
      "on SIGTERM, how long running tables may take to finish before they are cancelled",
      "30",
    )
    .option(
      "--busy-backends <n>",
      "the source is busy when this many other backends are active on it",
      "8",
    )
    .addOption(
      new Option("--cron-check <seconds>", "how often pg-boss looks at cron schedules (1..45)")
        .default("30")
        .hideHelp(),
    )
    .option("--debug", "show stack traces and debug logs")
    .addOption(logLevel)
    .action(async (flags: WorkerFlags) => {
      const { runWorkerCommand } = await import("./worker.js");
      state.exitCode = await runWorkerCommand(flags);
    });

  program
    .command("serve")
    .description(
      "serve the status page, /api/tables, /metrics and /healthz for a target (for syncs run from Airflow or cron)",
    )
    .requiredOption("--http <host:port>", "where to listen, e.g. 127.0.0.1:9187")
    .option(
      "--target <url>",
      "target database URL (default: the config's, or $TARGET_DATABASE_URL)",
    )
    .option(
      "--source <url>",
      "source database URL, for lag in transactions (default: the config's, or $SOURCE_DATABASE_URL)",
    )
    .option("--config <file>", "YAML config file: its tables and schedules are shown too")
    .option("--debug", "show stack traces and debug logs")
    .addOption(logLevel)
    .action(async (flags: ServeFlags) => {
      const { runServeCommand } = await import("./worker.js");
      state.exitCode = await runServeCommand(flags);
    });
}

export interface WorkerFlags {
  config: string;
  source?: string;
  target?: string;
  http?: string;
  poll: string;
  shutdownTimeout: string;
  busyBackends: string;
  cronCheck: string;
  debug?: boolean;
  logLevel?: string;
}

export interface ServeFlags {
  http: string;
  target?: string;
  source?: string;
  config?: string;
  debug?: boolean;
  logLevel?: string;
}

/** A number of seconds from a flag: `1`, `0.5`; at least `min`. */
export function parseSeconds(flag: string, value: string, min: number, max = Infinity): number {
  const n = Number(value.replace(/s$/, ""));
  if (!Number.isFinite(n) || n < min || n > max)
    throw new InputError(
      `${flag} takes a number of seconds${max < Infinity ? ` from ${min} to ${max}` : ` of at least ${min}`}, not ${JSON.stringify(value)}`,
    );
  return n;
}

/**
 * The databases of a command: flags, then the config, then the environment
 * (the URL variables, or Airflow's connection ids), read as `sync` reads
 * them. A side nothing names is undefined; the caller says if it is needed.
 */
export function databases(
  flags: { source?: string | undefined; target?: string | undefined },
  config: ConfigFile | undefined,
  env: NodeJS.ProcessEnv = process.env,
): { source: string | undefined; target: string | undefined } {
  const side = (role: "source" | "target", explicit: string | undefined) => {
    const named =
      explicit ||
      env[`${role.toUpperCase()}_DATABASE_URL`] ||
      env[`${role.toUpperCase()}_POSTGRES_CONN_ID`];
    return named ? resolveDatabaseUrl(role, explicit, env) : undefined;
  };
  return {
    source: side("source", flags.source ?? config?.source),
    target: side("target", flags.target ?? config?.target),
  };
}
