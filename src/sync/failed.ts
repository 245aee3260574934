import { displayName } from "../db/quote.js";
import type { TableResult, TableSpec } from "./types.js";

/** The result of a table that copied nothing: refused before its run, or failed in it. */
export function failedResult(spec: TableSpec, error: string, durationMs: number): TableResult {
  return {
    table: displayName(spec.source),
    target: displayName(spec.target ?? spec.source),
    mode: spec.mode ?? "auto",
    rowsCopied: 0,
    inserted: 0,
    updated: 0,
    deleted: 0,
    watermark: null,
    previousWatermark: null,
    durationMs,
    status: "error",
    error,
  };
}
