import { z } from "zod";

const identifierList = z.array(z.string().min(1)).min(1);

export const tableSchema = z.strictObject({
  source: z.string().min(1),
  target: z.string().min(1).optional(),
  key: identifierList.optional(),
  mode: z.enum(["auto", "xmin", "timestamp", "full"]).optional(),
  cursor: z.string().min(1).optional(),
  deletes: z.enum(["ignore", "hard", "soft"]).optional(),
  schedule: z.string().min(1).optional(),
});

export const configSchema = z.strictObject({
  source: z.string().min(1).optional(),
  target: z.string().min(1).optional(),
  workers: z.number().int().min(1).max(64).optional(),
  waitForLock: z.boolean().optional(),
  tables: z.array(tableSchema).min(1),
});

export type ConfigFile = z.infer<typeof configSchema>;
export type ConfigTable = z.infer<typeof tableSchema>;
