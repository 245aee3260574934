import pino from "pino";

export type Logger = pino.Logger;

/** Library default: say nothing. The CLI passes a real logger. */
export const silentLogger: Logger = pino({ level: "silent" });

/**
 * Logs go to stderr (stdout carries results): human-readable on a terminal,
 * JSON lines otherwise (cron, Airflow, Kubernetes).
 */
export function createLogger(opts: { level?: string; pretty?: boolean } = {}): Logger {
  const level = opts.level ?? process.env.LOG_LEVEL ?? "info";
  const pretty = opts.pretty ?? process.stderr.isTTY === true;
  if (pretty) {
    return pino({
      level,
      transport: {
        target: "pino-pretty",
        options: {
          destination: 2,
          colorize: true,
          ignore: "pid,hostname",
          translateTime: "HH:MM:ss",
        },
      },
    });
  }
  return pino({ level, base: undefined }, pino.destination({ dest: 2, sync: true }));
}
