import type { TableResult } from "../sync/types.js";

/** One human line per table, for a terminal. */
export function formatResult(r: TableResult): string {
  const secs = (r.durationMs / 1000).toFixed(1);
  if (r.status === "error")
    return `FAIL ${r.table} -> ${r.target}: ${r.error ?? "failed"} (${secs}s)`;
  const unchanged = r.rowsCopied - r.inserted - r.updated;
  const why = r.reason ? ` (${r.reason})` : "";
  const held = r.heldBackBy
    ? `; watermark held back by pid ${r.heldBackBy.pid}` +
      (r.heldBackBy.ageSeconds !== null ? `, running ${r.heldBackBy.ageSeconds}s` : "")
    : "";
  return (
    `ok   ${r.table} -> ${r.target}: ${r.mode}${why}, ${r.rowsCopied} rows copied, ` +
    `${r.inserted} inserted, ${r.updated} updated, ${r.deleted} deleted` +
    (r.mode === "xmin" && unchanged > 0 ? ` (${unchanged} re-read unchanged)` : "") +
    ", " +
    `watermark ${r.watermark ?? "-"} (${secs}s)${held}`
  );
}
