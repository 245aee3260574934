import pino from "pino";
import { createRequire } from "node:module";
import type PinoPretty from "pino-pretty";
import { InputError } from "./input-error.js";

export type Logger = pino.Logger;

/** Library default: say nothing. The CLI passes a real logger. */
export const silentLogger: Logger = pino({ level: "silent" });

export const LOG_LEVELS = ["debug", "info", "warn", "error", "silent"] as const;

/**
 * Where a terminal's log lines go: stderr, or, while progress bars are on
 * screen, above them (cli-progress redraws the bars under each line), so
 * a line never lands glued to a bar.
 */
export const terminal: {
  write: (line: string) => void;
  /** Sees each record before it is written (progress drops the line of a table that ended). */
  onRecord?: ((record: Record<string, unknown>) => void) | undefined;
} = {
  write: (line: string): void => void process.stderr.write(line),
};

/**
 * Logs go to stderr (stdout carries results): one line per event on a
 * terminal (time, level, table, message, fields), JSON lines otherwise
 * (cron, Airflow, Kubernetes).
 */
export function createLogger(opts: { level?: string; pretty?: boolean } = {}): Logger {
  const level = opts.level ?? process.env.LOG_LEVEL ?? "info";
  if (!(LOG_LEVELS as readonly string[]).includes(level) && level !== "trace") {
    throw new InputError(
      `${opts.level ? "--log-level" : "LOG_LEVEL"} ${JSON.stringify(level)} is not a log level: use ${LOG_LEVELS.join(", ")}`,
    );
  }
  const pretty = opts.pretty ?? process.stderr.isTTY === true;
  if (pretty) {
    // Formatted in this thread, synchronously: a worker-thread transport
    // could not write above the progress bars, and may lose the last lines
    // of a process that exits.
    // Loaded only for a terminal: runs from cron or Airflow start faster without it.
    const { prettyFactory } = createRequire(import.meta.url)("pino-pretty") as typeof PinoPretty;
    const format = prettyFactory({
      colorize: true,
      singleLine: true,
      ignore: "pid,hostname,table",
      translateTime: "SYS:HH:MM:ss",
      messageFormat: "{if table}{table}: {end}{msg}",
    });
    return pino(
      { level },
      {
        write: (line: string) => {
          const record = JSON.parse(line) as Record<string, unknown>;
          terminal.onRecord?.(record);
          // One event, one line, whatever a name or a server's message holds.
          terminal.write(format(record).replace(/\n(?=.)/g, "\\n"));
        },
      },
    );
  }
  return pino({ level, base: undefined }, pino.destination({ dest: 2, sync: true }));
}
