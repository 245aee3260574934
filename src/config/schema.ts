import { z } from "zod";
import { parseQualifiedName } from "../db/quote.js";

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

export const tableSchema = z.strictObject({
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
  schedule: z.string().min(1).optional(),
  schemaChanges: z.enum(["evolve", "fail"]).optional(),
  droppedColumns: z.enum(["keep", "drop"]).optional(),
});

export const configSchema = z.strictObject({
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
  tables: z.array(tableSchema).min(1),
});

export type ConfigFile = z.infer<typeof configSchema>;
export type ConfigTable = z.infer<typeof tableSchema>;
