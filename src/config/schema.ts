import { z } from "zod";
import { parseQualifiedName } from "../db/quote.js";
import { cronProblem, durationMs, isTimeZone } from "../schedule/timing.js";

const identifierList = z.array(z.string().min(1)).min(1);

/** `schema.table` as parseQualifiedName takes it; checked here so errors carry the line. */
const tableName = z
  .string()
  .min(1)
  .superRefine((value, ctx) => {
    try {
      parseQualifiedName(value);
    } catch (err) {
      ctx.addIssue({ code: "custom", message: (err as Error).message });
    }
  });

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
    cursor: z.string().min(1).optional(),
    lookback: z
      .union([
        z.number().min(0),
        z.string().regex(/^\d+[smhd]$/, "expected a duration like 30s, 5m, 1h"),
      ])
      .optional(),
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
      .optional(),
    tables: z.array(tableSchema).min(1),
  })
  .superRefine((config, ctx) => {
    // Cron expressions are checked in the config's time zone.
    config.tables.forEach((t, i) => {
      const problem = t.schedule && cronProblem(t.schedule, config.timezone);
      if (problem)
        ctx.addIssue({ code: "custom", message: problem, path: ["tables", i, "schedule"] });
    });
  });

export type ConfigFile = z.infer<typeof configSchema>;
export type ConfigTable = z.infer<typeof tableSchema>;
