import type { TableResult } from "../sync/types.js";
import type { ValidationReport } from "../validate/run.js";

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
  const resumed = r.resumed
    ? `, resumed: ${r.resumed.partsSkipped} of ${r.resumed.partsTotal} parts (${r.resumed.rowsSkipped} rows) not read again`
    : "";
  return (
    `ok   ${r.table} -> ${r.target}: ${r.mode}${why}${resumed}, ${r.rowsCopied} rows copied, ` +
    `${r.inserted} inserted, ${r.updated} updated, ${r.deleted} deleted` +
    (r.mode === "xmin" && unchanged > 0 ? ` (${unchanged} re-read unchanged)` : "") +
    ", " +
    `watermark ${r.watermark ?? "-"} (${secs}s)${held}` +
    (r.schemaChanges ? `; schema: ${r.schemaChanges.join("; ")}` : "")
  );
}

/** A validation report for a terminal: one headline, then the details that matter. */
export function formatReport(r: ValidationReport): string {
  if (r.status === "error") return `FAIL ${r.table} -> ${r.target}: ${r.error ?? "failed"}`;
  const lines = [
    `${r.isSynchronized ? "ok  " : "DIFF"} ${r.table} -> ${r.target}: integrity ${r.integrityScore}, ` +
      `source ${r.sourceCount} rows, target ${r.targetCount} rows` +
      (r.pendingRows !== null ? `, ${r.pendingRows} changed since the last run` : ""),
    `     watermark ${r.watermark ?? "-"}, gap ${r.syncGap.transactions ?? "-"} transactions, ` +
      `${r.syncGap.seconds ?? "-"} s since the last run`,
  ];
  if (r.deep) {
    const d = r.deep;
    lines.push(`     deep: ${d.missing} missing, ${d.extra} extra, ${d.different} different`);
    for (const kind of ["missing", "extra", "different"] as const) {
      if (d.samples[kind].length > 0) {
        lines.push(`       ${kind}: ${d.samples[kind].map((k) => JSON.stringify(k)).join(" ")}`);
      }
    }
  }
  if (r.repaired)
    lines.push(`     repaired: ${r.repaired.copied} rows copied, ${r.repaired.deleted} removed`);
  return lines.join("\n");
}
