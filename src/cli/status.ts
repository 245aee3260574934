import { connect } from "../db/connect.js";
import { displayName } from "../db/quote.js";

interface Row {
  target_schema: string;
  target_table: string;
  source_schema: string;
  source_table: string;
  mode: string;
  watermark: string | null;
  cursor_value: string | null;
  runs: number;
  last_run_at: Date;
  age: number;
  rows_copied: string;
  inserted: string;
  updated: string;
  deleted: string;
  rows: number | null;
  failed_at: Date | null;
  error: string | null;
}

/**
 * Prints what the target knows about each synced table: its rows (the
 * planner's estimate: no table is counted), watermark, last run with its
 * counts, how long ago that was, and the last failure when the run history
 * holds one. Read-only: nothing is created.
 */
export async function status(targetUrl: string, opts: { json: boolean }): Promise<void> {
  const client = await connect(targetUrl, "target");
  try {
    const { rows: has } = await client.query<{ state: boolean; history: boolean }>(
      `SELECT to_regclass('xmin_sync.state') IS NOT NULL AS state,
              to_regclass('xmin_sync.history') IS NOT NULL AS history`,
    );
    const rows = has[0]!.state ? await readStatus(client, has[0]!.history) : [];
    for (const r of rows) {
      process.stdout.write((opts.json ? JSON.stringify(toJson(r)) : formatStatus(r)) + "\n");
    }
    if (rows.length === 0 && !opts.json)
      process.stdout.write("no tables synced to this target yet\n");
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function readStatus(
  client: Awaited<ReturnType<typeof connect>>,
  history: boolean,
): Promise<Row[]> {
  // The run history (when there is one) holds failures, which the state does not.
  const failures = history
    ? `LEFT JOIN LATERAL (SELECT h.finished_at AS failed_at, h.error FROM xmin_sync.history h
                            WHERE h.target_schema = s.target_schema AND h.target_table = s.target_table
                              AND h.status <> 'ok' ORDER BY h.id DESC LIMIT 1) f ON true`
    : "CROSS JOIN (SELECT NULL::timestamptz AS failed_at, NULL::text AS error) f";
  const { rows } = await client.query<Row>(
    `SELECT s.target_schema, s.target_table, s.source_schema, s.source_table, s.mode,
            s.watermark::text AS watermark, s.cursor_value, s.runs::int AS runs, s.last_run_at,
            extract(epoch FROM now() - s.last_run_at)::int AS age,
            s.rows_copied::text, s.inserted::text, s.updated::text, s.deleted::text,
            (SELECT CASE WHEN c.reltuples >= 0 THEN c.reltuples END::float8
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = s.target_schema AND c.relname = s.target_table) AS rows,
            f.failed_at, f.error
       FROM xmin_sync.state s ${failures}
      ORDER BY s.target_schema, s.target_table`,
  );
  return rows;
}

function toJson(r: Row) {
  return {
    target: displayName({ schema: r.target_schema, name: r.target_table }),
    source: displayName({ schema: r.source_schema, name: r.source_table }),
    mode: r.mode,
    watermark: r.watermark ?? r.cursor_value,
    runs: r.runs,
    rowsEstimate: r.rows === null ? null : Math.round(r.rows),
    lastRunAt: r.last_run_at.toISOString(),
    secondsSinceLastRun: r.age,
    lastRun: {
      rowsCopied: Number(r.rows_copied),
      inserted: Number(r.inserted),
      updated: Number(r.updated),
      deleted: Number(r.deleted),
    },
    lastFailure: r.failed_at ? { at: r.failed_at.toISOString(), error: r.error } : null,
  };
}

function formatStatus(r: Row): string {
  const j = toJson(r);
  const rows = j.rowsEstimate === null ? "" : `~${j.rowsEstimate} rows, `;
  const last = j.lastRun;
  let line =
    `${j.target} <- ${j.source}: ${j.mode}, ${rows}watermark ${j.watermark ?? "-"}, ` +
    `last run ${localTime(r.last_run_at)} (${ago(r.age)} ago: ${last.rowsCopied} copied, ` +
    `${last.inserted} inserted, ${last.updated} updated, ${last.deleted} deleted), ` +
    `${j.runs} run${j.runs === 1 ? "" : "s"}`;
  if (r.failed_at && r.failed_at > r.last_run_at) {
    line += `; FAILED since, last at ${localTime(r.failed_at)}: ${oneLine(r.error ?? "")}`;
  }
  return line;
}

/** `2026-11-26 14:03:05 +01:00`: this machine's time zone, with its offset. */
export function localTime(d: Date): string {
  const pad = (n: number) => String(Math.abs(n)).padStart(2, "0");
  const off = -d.getTimezoneOffset();
  const sign = off < 0 ? "-" : "+";
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ` +
    `${sign}${pad(Math.trunc(off / 60))}:${pad(off % 60)}`
  );
}

function ago(seconds: number): string {
  const s = Math.max(0, seconds);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} days`;
}

const oneLine = (s: string) => s.replace(/\s*\n\s*/g, " ");
