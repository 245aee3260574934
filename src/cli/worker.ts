import { availableParallelism } from "node:os";
import { loadConfig } from "../config/load.js";
import { guardsFromConfig, includedTablesFromConfig } from "../config/resolve.js";
import type { ConfigFile } from "../config/schema.js";
import { describeError } from "../db/connect.js";
import { InputError } from "../input-error.js";
import { createLogger, type Logger } from "../log.js";
import { Reconnecting } from "../schedule/connection.js";
import { durationMs } from "../schedule/timing.js";
import { Worker, workerTable, type WorkerTable } from "../schedule/worker.js";
import { FleetMetrics, type WorkerGauges } from "../serve/metrics.js";
import { parseListen, startServer, type RunningServer } from "../serve/server.js";
import { FleetStatus, type Check, type ConfiguredTable } from "../serve/tables.js";
import { resolveTuning } from "../sync/tuning.js";
import { databases, parseSeconds, type ServeFlags, type WorkerFlags } from "./fleet.js";

const EXIT_OK = 0;

function envInt(name: string): number | undefined {
  const v = process.env[name];
  return v ? Number(v) : undefined;
}

export async function runWorkerCommand(flags: WorkerFlags): Promise<number> {
  const logger = createLogger({ level: flags.debug ? "debug" : flags.logLevel });
  const config = await loadConfig(flags.config);
  const { source, target } = databases(flags, config);
  if (!source) throw new InputError("no source database: pass --source or set it in the config");
  if (!target) throw new InputError("no target database: pass --target or set it in the config");
  const listen = flags.http ? parseListen(flags.http) : undefined;
  const pollMs = parseSeconds("--poll", flags.poll, 0.05) * 1000;
  const shutdownMs = parseSeconds("--shutdown-timeout", flags.shutdownTimeout, 0) * 1000;
  const cronSeconds = parseSeconds("--cron-check", flags.cronCheck, 1, 45);
  const busyBackends = Number(flags.busyBackends);
  if (!Number.isInteger(busyBackends) || busyBackends < 1)
    throw new InputError(
      `--busy-backends takes a whole number of at least 1, not ${JSON.stringify(flags.busyBackends)}`,
    );

  const specs = includedTablesFromConfig(config);
  const left = (config.tables ?? []).length - specs.length;
  if (left > 0)
    logger.warn({ tables: left }, "tables left out by exclude: are not run by the worker");
  const tables: WorkerTable[] = [];
  for (const { spec, index } of specs) {
    const t = config.tables![index]!;
    if (t.schedule || t.every)
      tables.push(workerTable(target, spec, t.every ? durationMs(t.every) : undefined, t.schedule));
  }
  const unscheduled = specs.length - tables.length;
  if (unscheduled > 0)
    logger.warn(
      { tables: unscheduled },
      "tables without schedule or every are not run by the worker",
    );
  if (tables.length === 0)
    throw new InputError(`${flags.config}: no table has a schedule or every; nothing to run`);

  const initial = resolveTuning({
    workers: config.workers,
    minWorkers: config.minWorkers,
    maxWorkers: config.maxWorkers,
  }).workers;
  const min = config.minWorkers ?? envInt("MIN_WORKERS") ?? 1;
  const max = Math.max(
    min,
    initial,
    config.maxWorkers ?? envInt("MAX_WORKERS") ?? Math.min(2 * initial, 2 * availableParallelism()),
  );
  const control = config.control ?? target;

  const worker = await Worker.start({
    source,
    target,
    control,
    tables,
    timezone: config.timezone ?? "UTC",
    parallelism: { initial, min, max },
    batches: { minBatchSize: config.minBatchSize, maxBatchSize: config.maxBatchSize },
    busyBackends,
    history: { process: "worker", retention: config.historyRetention },
    guards: guardsFromConfig(config),
    logger,
    pollMs,
    shutdownMs,
    cronSeconds,
  });

  let server: RunningServer | undefined;
  let status: FleetStatus | undefined;
  let controlCheck: Reconnecting | undefined;
  try {
    if (listen) {
      status = new FleetStatus(target, source, configuredTables(config));
      const gauges: WorkerGauges = {
        parallelism: () => worker.controller.limit,
        runningTables: () => worker.runningTables().length,
        lastSample: () => worker.lastSample,
      };
      controlCheck =
        control === target ? undefined : new Reconnecting(control, "target", "xmin-sync health");
      const metrics = new FleetMetrics(status, gauges);
      await metrics.start();
      server = await startServer({
        listen,
        status,
        metrics,
        logger,
        ...(controlCheck ? { extraHealth: () => ping("control", controlCheck!) } : {}),
      });
    }
  } catch (err) {
    await worker.stop({ now: true });
    throw err;
  }

  await untilSignalled(logger, (now) => worker.stop({ now }));
  await server?.close();
  await status?.close();
  await controlCheck?.close();
  exitSoon();
  return EXIT_OK;
}

export async function runServeCommand(flags: ServeFlags): Promise<number> {
  const logger = createLogger({ level: flags.debug ? "debug" : flags.logLevel });
  const config = flags.config ? await loadConfig(flags.config) : undefined;
  const { source, target } = databases(flags, config);
  if (!target) throw new InputError("no target database: pass --target or set TARGET_DATABASE_URL");
  const listen = parseListen(flags.http);
  const status = new FleetStatus(target, source, config ? configuredTables(config) : []);
  const metrics = new FleetMetrics(status);
  await metrics.start();
  const server = await startServer({ listen, status, metrics, logger });
  if (!source)
    logger.info("no source given: lag in transactions is not shown (--source or --config)");
  await untilSignalled(logger, async () => undefined);
  await server.close();
  await status.close();
  exitSoon();
  return EXIT_OK;
}

function configuredTables(config: ConfigFile): ConfiguredTable[] {
  return includedTablesFromConfig(config).map(({ spec, index }) => {
    const t = config.tables![index]!;
    return {
      source: spec.source,
      target: spec.target ?? spec.source,
      schedule: t.every ? `every ${t.every}` : (t.schedule ?? null),
    };
  });
}

async function ping(name: string, c: Reconnecting): Promise<Record<string, Check>> {
  try {
    await c.query("SELECT 1", [], { timeoutMs: 3000 });
    return { [name]: { ok: true } };
  } catch (err) {
    return { [name]: { ok: false, error: describeError(err) } };
  }
}

/**
 * Resolves once the process was told to stop (SIGTERM, SIGINT) and `stop`
 * finished. A second signal asks `stop` to hurry (cancel at once).
 */
function untilSignalled(logger: Logger, stop: (now: boolean) => Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => {
    let stopping: Promise<void> | undefined;
    const onSignal = (signal: NodeJS.Signals) => {
      logger.info({ signal }, stopping ? "second signal: cancelling now" : "stopping");
      const p = stop(stopping !== undefined);
      stopping ??= p;
      p.then(resolve, reject);
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
}

/**
 * After a clean stop, leave even if a connection we could not cancel (a
 * statement stuck on a lock) still holds the event loop; the server rolls
 * back what that connection had not committed.
 */
function exitSoon(): void {
  setTimeout(() => process.exit(process.exitCode ?? 0), 2000).unref();
}
