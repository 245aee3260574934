import { listTables, type ListedTable } from "../check/discover.js";
import { formatBytes } from "../check/source.js";
import { excluded, matches, type TablePattern } from "../config/patterns.js";
import { connect } from "../db/connect.js";
import { displayIdent, displayName } from "../db/quote.js";
import { oneLine } from "./output.js";

export interface ListOptions {
  schemas: string[];
  /** Only tables matching one of these (none: all). */
  tables: TablePattern[];
  exclude: TablePattern[];
}

/** The source's tables that the options pick, from its catalog. */
export async function findTables(sourceUrl: string, opts: ListOptions): Promise<ListedTable[]> {
  const client = await connect(sourceUrl, "source");
  try {
    const all = await listTables(client, { schemas: opts.schemas });
    return all.filter(
      (t) =>
        (opts.tables.length === 0 || opts.tables.some((p) => matches(p, t.name))) &&
        !excluded(opts.exclude, t.name),
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Whether xmin-sync can sync the table as it stands, and how; or what it needs first. */
export function readiness(t: ListedTable): { ready: boolean; how: string } {
  if (!t.readable) return { ready: false, how: "no SELECT (or schema USAGE) for this role" };
  if (!t.key) {
    return {
      ready: false,
      how: t.hasXmin
        ? "no primary key or unique index: give key columns"
        : "no key, no xmin: give key and cursor",
    };
  }
  return t.hasXmin
    ? { ready: true, how: "xmin" }
    : { ready: true, how: "no xmin: timestamp mode with a cursor, or full copies" };
}

/** Prints the tables: a table for a terminal, or one JSON object per table. */
export function printTables(tables: ListedTable[], json: boolean): void {
  if (json) {
    for (const t of tables) {
      const r = readiness(t);
      process.stdout.write(
        JSON.stringify({
          table: displayName(t.name),
          kind: t.kind,
          estimatedRows: t.estimatedRows,
          bytes: t.bytes,
          key: t.key,
          readable: t.readable,
          xmin: t.hasXmin,
          ready: r.ready,
          note: r.how,
        }) + "\n",
      );
    }
    return;
  }
  const rows = tables.map((t) => [
    oneLine(displayName(t.name)),
    t.kind,
    t.estimatedRows === null ? "?" : String(t.estimatedRows),
    t.hasXmin ? formatBytes(t.bytes) : "-",
    t.key ? oneLine(t.key.map(displayIdent).join(",")) : "-",
    readiness(t).how,
  ]);
  const head = ["table", "kind", "~rows", "size", "key", "sync"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === 2 || i === 3 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  process.stdout.write([line(head), ...rows.map(line)].join("\n") + "\n");
}
