import cronParser from "cron-parser";
import { parseDuration } from "../config/duration.js";

/** `30s`, `5m`, `1h`, `1d` in milliseconds; undefined when it is not one. */
export function durationMs(text: string): number | undefined {
  const seconds = parseDuration(text);
  return seconds === null ? undefined : seconds * 1000;
}

/**
 * Why a cron expression cannot be used, or undefined when it can. pg-boss
 * evaluates schedules once a minute, so only the five-field form (minute
 * granularity) is accepted: a seconds field would promise what it cannot do.
 */
export function cronProblem(expression: string, timezone = "UTC"): string | undefined {
  const fields = expression.trim().split(/\s+/);
  if (fields.length !== 5) {
    return `expected a cron expression of 5 fields (minute hour day month weekday), got ${fields.length}; for intervals under a minute use every: 30s`;
  }
  try {
    cronParser.parseExpression(expression, { tz: timezone });
    return undefined;
  } catch (err) {
    return `invalid cron expression: ${(err as Error).message}`;
  }
}

/** Whether `name` is a time zone this runtime knows (IANA names such as Europe/Paris). */
export function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat("en", { timeZone: name });
    return true;
  } catch {
    return false;
  }
}
