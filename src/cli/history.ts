import { oneLine } from "./output.js";
import { connect } from "../db/connect.js";
import { parseQualifiedName, type QualifiedName } from "../db/quote.js";
import { InputError } from "../input-error.js";
import { readHistory, type HistoryRow } from "../target/history.js";

/** `status --history`: the target's run history, newest first. */
export async function printHistory(
  targetUrl: string,
  opts: { table: string[]; json: boolean; limit: number },
): Promise<void> {
  const tables: (QualifiedName | undefined)[] =
    opts.table.length === 0 ? [undefined] : opts.table.map(parseTable);
  const client = await connect(targetUrl, "target");
  let rows: HistoryRow[] = [];
  try {
    for (const table of tables)
      rows.push(...(await readHistory(client, { table, limit: opts.limit })));
  } finally {
    await client.end().catch(() => undefined);
  }
  rows = rows.sort((a, b) => Number(BigInt(b.id) - BigInt(a.id))).slice(0, opts.limit);
  for (const r of rows) {
    process.stdout.write((opts.json ? JSON.stringify(r) : formatHistoryRow(r)) + "\n");
  }
  if (rows.length === 0 && !opts.json) process.stdout.write("no runs recorded on this target\n");
}

function parseTable(name: string): QualifiedName {
  try {
    return parseQualifiedName(name);
  } catch (err) {
    throw new InputError(`--table: ${(err as Error).message}`, { cause: err });
  }
}

/** One line per run for a terminal. */
export function formatHistoryRow(r: HistoryRow): string {
  const head = `${r.finishedAt}  ${r.status === "ok" ? "ok  " : "FAIL"}  ${r.table}`;
  const secs = `${(r.durationMs / 1000).toFixed(1)}s`;
  const by = `${r.process} ${r.host}:${r.pid}`;
  if (r.status !== "ok")
    return `${head}  ${r.kind} ${r.mode ?? ""}  ${secs}  ${by}\n      ${oneLine(r.error ?? "")}`;
  if (r.kind === "validate") {
    const synced = r.report?.isSynchronized ? "synchronized" : "DIFFERENT";
    return `${head}  validate ${r.mode}: integrity ${r.integrityScore} (${synced})  ${secs}  ${by}`;
  }
  return (
    `${head}  ${r.mode}${r.reason ? ` (${r.reason})` : ""}: ${r.rowsCopied} copied, ` +
    `${r.inserted} inserted, ${r.updated} updated, ${r.deleted} deleted, ` +
    `watermark ${r.watermarkBefore ?? "-"} -> ${r.watermarkAfter ?? "-"}  ${secs}  ${by}`
  );
}
