import type { TableResult } from "../sync/types.js";
import type { ValidationReport } from "../validate/run.js";

/**
 * Text for one line of output: control characters (a newline in a name,
 * in a server's message) shown escaped, so one event is one line.
 */
export function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f]/g, (ch) => JSON.stringify(ch).slice(1, -1));
}

/**
 * An error's text without the table's name, which the line already gives:
 * a leading `table: `, or the engine's `source table NAME …`.
 */
const withoutTable = (error: string, table: string) =>
  error.startsWith(`${table}: `)
    ? error.slice(table.length + 2)
    : error.replace(`source table ${table} `, "source: ");

/** One human line per table, for a terminal. */
export function formatResult(r: TableResult): string {
  const secs = (r.durationMs / 1000).toFixed(1);
  if (r.status === "error")
    return oneLine(
      `FAIL ${r.table} -> ${r.target}: ${withoutTable(r.error ?? "failed", r.table)} (${secs}s)`,
    );
  const unchanged = r.rowsCopied - r.inserted - r.updated;
  const why = r.reason ? ` (${r.reason})` : "";
  const held = r.heldBackBy
    ? `; watermark held back by pid ${r.heldBackBy.pid}` +
      (r.heldBackBy.ageSeconds !== null ? `, running ${r.heldBackBy.ageSeconds}s` : "")
    : "";
  const resumed = r.resumed
    ? `, resumed: ${r.resumed.partsSkipped} of ${r.resumed.partsTotal} parts (${r.resumed.rowsSkipped} rows) not read again`
    : "";
  return oneLine(
    `ok   ${r.table} -> ${r.target}: ${r.mode}${why}${resumed}, ${r.rowsCopied} rows copied, ` +
      `${r.inserted} inserted, ${r.updated} updated, ${r.deleted} deleted` +
      (r.mode === "xmin" && unchanged > 0 ? ` (${unchanged} re-read unchanged)` : "") +
      ", " +
      `watermark ${r.watermark ?? "-"} (${secs}s)${held}` +
      (r.schemaChanges ? `; schema: ${r.schemaChanges.join("; ")}` : ""),
  );
}

/**
 * A validation report for a terminal: a headline (ok, DIFF for differences
 * among rows the last sync saw, LAG for lag over --max-lag, FAIL when the
 * table could not be validated), then the details that matter.
 */
export function formatReport(r: ValidationReport): string {
  if (r.status === "error")
    return oneLine(`FAIL ${r.table} -> ${r.target}: ${withoutTable(r.error ?? "failed", r.table)}`);
  const head = r.passed ? "ok  " : r.failures.length === 1 && r.lag.exceeded ? "LAG " : "DIFF";
  const lag = r.lag;
  const lagText =
    `lag ${lag.rows ?? "-"} rows written since the last sync, ` +
    `${lag.transactions ?? "-"} transactions, ${lag.seconds ?? "-"} s`;
  const lines = [
    `${head} ${r.table} -> ${r.target}: ` +
      (r.passed ? "no difference among the rows the last sync saw" : r.failures.join("; ")),
    `     source ${r.sourceCount} rows, target ${r.targetCount} rows, integrity ${r.integrityScore}; ${lagText}`,
  ];
  if (r.deep) {
    const d = r.deep;
    const ofLag = d.lag
      ? ` (of which lag: ${d.lag.missing} missing, ${d.lag.extra} extra, ${d.lag.different} different)`
      : "";
    lines.push(
      `     deep: ${d.missing} missing, ${d.extra} extra, ${d.different} different${ofLag}`,
    );
    for (const kind of ["missing", "extra", "different"] as const) {
      if (d.samples[kind].length > 0) {
        lines.push(`       ${kind}: ${d.samples[kind].map((k) => JSON.stringify(k)).join(" ")}`);
      }
    }
  }
  if (r.repaired)
    lines.push(`     repaired: ${r.repaired.copied} rows copied, ${r.repaired.deleted} removed`);
  return lines.map(oneLine).join("\n");
}
