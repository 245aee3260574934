import { z } from "zod";
import { checkName, parseQualifiedName } from "../db/quote.js";
import { parseDuration } from "./duration.js";
import { cronProblem, durationMs, isTimeZone } from "../schedule/timing.js";
import { parseTablePattern } from "./patterns.js";

/** A string that `parse` accepts; its error, on the key's line, when not. */
const parsedBy = (parse: (value: string) => unknown) =>
  z
    .string()
    .min(1)
    .superRefine((value, ctx) => {
      try {
        parse(value);
      } catch (err) {
        ctx.addIssue({ code: "custom", message: (err as Error).message });
      }
    });

/** A column name: at most 63 bytes, as PostgreSQL would match it. */
const identifier = parsedBy(checkName);

const identifierList = z.array(identifier).min(1);

/** `SRC[:DST]` where SRC may hold * and ?, as --table takes it. */
const tablePattern = parsedBy(parseTablePattern);

const duration = z.string().regex(/^\d+[smhd]$/, "expected a duration like 30s, 5m, 1h");

/** `schema.table` as parseQualifiedName takes it; checked here so errors carry the line. */
const tableName = parsedBy(parseQualifiedName);

/** An interval for `every:`: at least a second (the worker ticks per second). */
const every = z
  .string()
  .regex(/^\d+[smhd]$/, "expected an interval like 30s, 5m, 1h")
  .refine((v) => (durationMs(v) ?? 0) >= 1000, "must be at least 1s");

export const tableSchema = z
  .strictObject({
    source: tableName,
    target: tableName.optional(),
    key: identifierList.optional(),
    mode: z.enum(["auto", "xmin", "timestamp", "full"]).optional(),
    cursor: identifier.optional(),
    lookback: z.union([z.number().min(0), duration]).optional(),
    deletes: z.enum(["ignore", "hard", "soft"]).optional(),
    /** Look for deletes every run (default), every N runs, or once per duration. */
    deleteCheckEvery: z
      .union([
        z.number().int().min(1),
        z.string().regex(/^\d+[smhd]$/, "expected a number of runs or a duration like 15m, 6h, 1d"),
      ])
      .optional(),
    /** Worker: a cron expression (in the config's timezone), or `every`, not both. */
    schedule: z.string().min(1).optional(),
    every: every.optional(),
    schemaChanges: z.enum(["evolve", "fail"]).optional(),
    droppedColumns: z.enum(["keep", "drop"]).optional(),
  })
  .refine((t) => t.schedule === undefined || t.every === undefined, {
    message: "give schedule or every, not both",
    path: ["every"],
  });

export const configSchema = z
  .strictObject({
    source: z.string().min(1).optional(),
    target: z.string().min(1).optional(),
    workers: z.number().int().min(1).max(64).optional(),
    minWorkers: z.number().int().min(1).max(64).optional(),
    maxWorkers: z.number().int().min(1).max(64).optional(),
    minBatchSize: z.number().int().min(1).optional(),
    maxBatchSize: z.number().int().min(1).optional(),
    waitForLock: z.boolean().optional(),
    /** Defaults for every table; a table's own key wins. */
    schemaChanges: z.enum(["evolve", "fail"]).optional(),
    droppedColumns: z.enum(["keep", "drop"]).optional(),
    /** With waitForLock: give up after this long. */
    waitTimeout: duration.optional(),
    /** How long a run waits for its ACCESS SHARE lock on a source table (default 60s). */
    sourceLockTimeout: duration
      .refine((v) => (parseDuration(v) ?? 0) >= 1, "must be at least 1s")
      .optional(),
    /** Share of a target's rows above which deletes need the source's confirmation (default 0.5). */
    maxDeleteShare: z.number().gt(0).max(1).optional(),
    tables: z.array(tableSchema).min(1).optional(),
    /** Source tables by pattern (`fds.*`, `fds.*:raw_data.*`), with default settings. */
    include: z.array(tablePattern).min(1).optional(),
    /** Patterns of source tables to leave out of `include:` and `tables:`. */
    exclude: z.array(tablePattern).optional(),
    /** Where the worker's queue lives (pg-boss); default: the target. */
    control: z.string().min(1).optional(),
    /** Time zone of the tables' cron schedules; default UTC. */
    timezone: z
      .string()
      .refine(isTimeZone, "unknown time zone (expected an IANA name such as Europe/Paris)")
      .optional(),
    /** How long the run history keeps a run; default 30d. */
    historyRetention: z
      .string()
      .regex(/^\d+[smhd]$/, "expected a duration like 12h, 30d")
      .refine((v) => {
        const seconds = parseDuration(v) ?? 0;
        return seconds >= 1 && seconds <= 36_500 * 86_400;
      }, "must be from 1s to 36500d")
      .optional(),
  })
  .superRefine((c, ctx) => {
    if (c.tables === undefined && c.include === undefined) {
      ctx.addIssue({
        code: "custom",
        message: "required key is missing (or give include: patterns)",
        path: ["tables"],
      });
    }
    for (const [lo, hi] of [
      ["minBatchSize", "maxBatchSize"],
      ["minWorkers", "maxWorkers"],
    ] as const) {
      const [a, b] = [c[lo], c[hi]];
      if (a !== undefined && b !== undefined && a > b) {
        ctx.addIssue({ code: "custom", message: `${a} is more than ${hi} (${b})`, path: [lo] });
      }
    }
    // Cron expressions are checked in the config's time zone.
    c.tables?.forEach((t, i) => {
      const problem = t.schedule && cronProblem(t.schedule, c.timezone);
      if (problem)
        ctx.addIssue({ code: "custom", message: problem, path: ["tables", i, "schedule"] });
    });
  });

export type ConfigFile = z.infer<typeof configSchema>;
export type ConfigTable = z.infer<typeof tableSchema>;
