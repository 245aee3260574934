/** The library API; the CLI is a thin layer over it. */
export { sync } from "./sync/run.js";
export type {
  SyncOptions,
  TableResult,
  TableSpec,
  Mode,
  DeletesMode,
  ProgressEvent,
  ResumeReport,
  ProgressPhase,
  SchemaChanges,
  DroppedColumns,
} from "./sync/types.js";
export type { Tuning } from "./sync/tuning.js";
export { SchemaChangedError } from "./sync/evolve.js";
export { loadConfig, parseConfig } from "./config/load.js";
export { tablesFromConfig } from "./config/resolve.js";
export type { ConfigFile } from "./config/schema.js";
export {
  parseQualifiedName,
  parseTableMapping,
  quoteIdent,
  quoteQualified,
  displayName,
} from "./db/quote.js";
export type { QualifiedName } from "./db/quote.js";
export { InputError } from "./input-error.js";
export { createLogger } from "./log.js";
export { validate } from "./validate/run.js";
export type { ValidateOptions, ValidationReport } from "./validate/run.js";
export { check } from "./check/run.js";
export type { CheckOptions } from "./check/run.js";
export type { Finding } from "./check/findings.js";
