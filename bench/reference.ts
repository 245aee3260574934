import { writeFile } from "node:fs/promises";
import {
  ACCOUNT_COLUMNS,
  ACCOUNTS,
  CURSOR_TABLE,
  EMPTY_CURSOR_TABLE,
  EMPTY_TABLES,
  TABLES,
} from "./data.js";
import type { Sample } from "./ours.js";
import { lastLines, sql, timed, timedTogether, type Timed } from "./tools.js";

/**
 * The references: what a careful person would run by hand for each path,
 * timed as the same commands would be from a shell. psql sessions run with
 * JIT off, as ours do (compiling a scan's expressions costs about a second
 * per statement and saves nothing here).
 */
export interface Programs {
  psql: string;
  pgcopydb?: string;
  comparator?: string;
  /** The target's major version: MERGE from 15 on, INSERT … ON CONFLICT before. */
  targetMajor: number;
}

const ENV = { PGOPTIONS: "-c jit=off" };

/**
 * psql running each command in turn in one session (autocommit), stopping
 * at the first error; quiet where its stdout carries COPY data, else
 * printing each command's tag (`MERGE 2000`) for the sample's detail.
 */
function psql(p: Programs, url: string, commands: string[], quiet = true): string[] {
  return [
    ...[p.psql, "-X", ...(quiet ? ["-q"] : []), "-v", "ON_ERROR_STOP=1", "-d", url],
    ...commands.flatMap((c) => ["-c", c]),
  ];
}

/** A reference's run as a sample, with what its output says it did. */
function sample(t: Timed, detail?: (stdout: string) => string | undefined): Sample {
  if (t.code !== 0)
    return { seconds: null, status: "error", detail: `exit ${t.code}: ${lastLines(t, 2)}` };
  const d = detail?.(t.stdout);
  return { seconds: t.seconds, status: "ok", ...(d ? { detail: d } : {}) };
}

/** The row count of the last command tag of a kind (`DELETE 200`, `INSERT 0 200`). */
const tag = (stdout: string, kind: string) =>
  [...stdout.matchAll(new RegExp(`^${kind} (?:0 )?(\\d+)$`, "gm"))].at(-1)?.[1];

const copyOut = (query: string) => `COPY (${query}) TO STDOUT (FORMAT binary)`;
const copyIn = (table: string) => `COPY ${table} FROM STDIN (FORMAT binary)`;

/** One binary COPY pipe per table into tables without keys or indexes: a floor, not a peer. */
export async function psqlPipe(p: Programs, source: string, target: string): Promise<Sample> {
  const started = process.hrtime.bigint();
  let rows = 0;
  for (const t of TABLES) {
    const r = await timed(psql(p, source, [copyOut(`SELECT * FROM ${t}`)]), {
      env: ENV,
      pipeTo: psql(p, target, [copyIn(t)], false),
    });
    if (r.code !== 0) return sample(r);
    rows += Number(tag(r.stdout, "COPY") ?? 0);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { seconds, status: "ok", detail: `${rows} rows` };
}

/** Without pgcopydb, the references' copy is a pipe plus the keys (untimed). */
export async function loadWithKeys(p: Programs, source: string, target: string): Promise<void> {
  await sql(target, EMPTY_TABLES);
  const r = await psqlPipe(p, source, target);
  if (r.status !== "ok") throw new Error(`loading the references' copy failed: ${r.detail}`);
  await sql(
    target,
    `ALTER TABLE public.pgbench_accounts ADD PRIMARY KEY (aid);
     ALTER TABLE public.pgbench_branches ADD PRIMARY KEY (bid);
     ALTER TABLE public.pgbench_tellers ADD PRIMARY KEY (tid);
     ANALYZE`,
  );
}

/** pgcopydb clone of the pgbench tables (the cursor table, for timestamp mode, stays out). */
export async function pgcopydbClone(
  p: Programs,
  source: string,
  target: string,
  workers: number,
  dir: string,
): Promise<Sample> {
  const filters = `${dir}.filters`;
  await writeFile(filters, `[exclude-table]\n${CURSOR_TABLE}\n`);
  return sample(
    await timed([
      ...[p.pgcopydb!, "clone", "--source", source, "--target", target],
      ...["--table-jobs", String(workers), "--index-jobs", String(workers)],
      ...["--dir", dir, "--filters", filters, "--no-owner", "--no-acl", "--skip-extensions"],
    ]),
  );
}

/**
 * Stage the rows `query` selects on the source into an unlogged table
 * shaped like `table`, analyze it, and apply `apply` (statements that read
 * `stage`), in one pipe: the hand-written incremental and delete paths.
 */
async function stageAndApply(
  p: Programs,
  source: string,
  target: string,
  query: string,
  stageShape: string,
  apply: string,
): Promise<Sample> {
  const t = await timed(psql(p, source, [copyOut(query)]), {
    env: ENV,
    pipeTo: psql(
      p,
      target,
      [
        "DROP TABLE IF EXISTS stage",
        `CREATE UNLOGGED TABLE stage (${stageShape})`,
        copyIn("stage"),
        "ANALYZE stage",
        apply,
        "DROP TABLE stage",
      ],
      false,
    ),
  });
  const verb = apply.split(" ")[0]!;
  return sample(t, (out) => `${tag(out, "COPY")} staged, ${tag(out, verb)} ${verb.toLowerCase()}d`);
}

/** The MERGE by key of staged rows (INSERT … ON CONFLICT before PostgreSQL 15). */
function mergeStaged(table: string, columns: string[], targetMajor: number): string {
  const [key, ...rest] = columns;
  const set = rest.map((c) => `${c} = s.${c}`).join(", ");
  if (targetMajor >= 15)
    return (
      `MERGE INTO ${table} AS t USING stage AS s ON t.${key} = s.${key} ` +
      `WHEN MATCHED THEN UPDATE SET ${set} ` +
      `WHEN NOT MATCHED THEN INSERT (${columns.join(", ")}) VALUES (${columns.map((c) => `s.${c}`).join(", ")})`
    );
  return (
    `INSERT INTO ${table} (${columns.join(", ")}) SELECT ${columns.join(", ")} FROM stage ` +
    `ON CONFLICT (${key}) DO UPDATE SET ${rest.map((c) => `${c} = excluded.${c}`).join(", ")}`
  );
}

const ACCOUNT_LIST = ACCOUNT_COLUMNS.split(", ");

/**
 * age(xmin) <= age(watermark): rows written at or after the watermark,
 * the cheapest test of it (integer arithmetic per row). The bound is read
 * just before (untimed); nothing else writes to the source meanwhile.
 */
export async function xminBound(source: string, watermark: bigint): Promise<number> {
  const low = (watermark & 0xffffffffn).toString();
  return (await sql<{ n: number }>(source, "SELECT age($1::text::xid) AS n", [low]))[0]!.n;
}

/** Hand-written incremental: COPY the changed rows by xmin, stage, one MERGE. */
export function incrementalByXmin(
  p: Programs,
  source: string,
  target: string,
  bound: number,
): Promise<Sample> {
  return stageAndApply(
    p,
    source,
    target,
    `SELECT ${ACCOUNT_COLUMNS} FROM ${ACCOUNTS} WHERE age(xmin) <= ${bound}`,
    `LIKE ${ACCOUNTS}`,
    mergeStaged(ACCOUNTS, ACCOUNT_LIST, p.targetMajor),
  );
}

/** The reference's copy of the cursor table, in the target database ours also writes to. */
export const REF_CURSOR_TABLE = CURSOR_TABLE.replace("public.", "ref.");

/** The reference's first copy of the cursor table, with its key (untimed). */
export async function loadCursorCopy(p: Programs, source: string, target: string): Promise<void> {
  await sql(target, `CREATE SCHEMA ref; ${EMPTY_CURSOR_TABLE}`);
  const t = await timed(psql(p, source, [copyOut(`SELECT * FROM ${CURSOR_TABLE}`)]), {
    pipeTo: psql(p, target, [copyIn(REF_CURSOR_TABLE)]),
  });
  if (t.code !== 0) throw new Error(`loading the references' cursor table failed: ${lastLines(t)}`);
  await sql(
    target,
    `ALTER TABLE ${REF_CURSOR_TABLE} ADD PRIMARY KEY (aid); ANALYZE ${REF_CURSOR_TABLE}`,
  );
}

/** The source's snapshot xmin now: the watermark a run starting now would store. */
export async function snapshotXmin(source: string): Promise<bigint> {
  const rows = await sql<{ x: string }>(
    source,
    "SELECT txid_snapshot_xmin(txid_current_snapshot())::text AS x",
  );
  return BigInt(rows[0]!.x);
}

/** Hand-written timestamp incremental: COPY rows at or after the mark minus the same 5-minute lookback, stage, MERGE. */
export function incrementalByCursor(
  p: Programs,
  source: string,
  target: string,
  mark: string,
): Promise<Sample> {
  const columns = [...ACCOUNT_LIST, "updated_at"];
  return stageAndApply(
    p,
    source,
    target,
    `SELECT ${columns.join(", ")} FROM ${CURSOR_TABLE} WHERE updated_at >= timestamptz '${mark}' - interval '5 minutes'`,
    `LIKE ${REF_CURSOR_TABLE}`,
    mergeStaged(REF_CURSOR_TABLE, columns, p.targetMajor),
  );
}

/** Hand-written delete reconciliation: COPY the key set, analyze, one anti-join DELETE (or UPDATE for soft deletes). */
export function reconcileDeletes(
  p: Programs,
  source: string,
  target: string,
  kind: "hard" | "soft",
): Promise<Sample> {
  const missing = "NOT EXISTS (SELECT 1 FROM stage k WHERE k.aid = t.aid)";
  const apply =
    kind === "hard"
      ? `DELETE FROM ${ACCOUNTS} AS t WHERE ${missing}`
      : `UPDATE ${ACCOUNTS} AS t SET deleted_at = now() WHERE t.deleted_at IS NULL AND ${missing}`;
  return stageAndApply(p, source, target, `SELECT aid FROM ${ACCOUNTS}`, "aid int", apply);
}

/** count(*) on both sides at once. */
export async function countBoth(p: Programs, source: string, target: string): Promise<Sample> {
  const count = [`SELECT count(*) FROM ${ACCOUNTS}`];
  const t = await timedTogether(
    [psql(p, source, count).concat("-At"), psql(p, target, count).concat("-At")],
    { env: ENV },
  );
  return sample(t, (out) => out.trim().split("\n").join(" and ") + " rows");
}

/** pg_comparator's URL for pgbench_accounts: key aid, the other columns compared. */
function comparatorUrl(url: string): string {
  const u = new URL(url);
  const auth = u.username + (u.password ? `:${u.password}` : "");
  return `pgsql://${auth}@${u.hostname}:${u.port || 5432}${u.pathname}/${ACCOUNTS}?aid:bid,abalance,filler`;
}

/**
 * pg_comparator: compare, or with `sync` also fix the target (its
 * --synchronize --do-it). It prints one line per differing key and exits 1
 * when there are differences.
 */
export async function comparator(
  p: Programs,
  source: string,
  target: string,
  sync: boolean,
): Promise<Sample> {
  const t = await timed([
    p.comparator!,
    ...(sync ? ["--synchronize", "--do-it"] : []),
    comparatorUrl(source),
    comparatorUrl(target),
  ]);
  return sample(t.code === 1 ? { ...t, code: 0 } : t, (out) => {
    const n = (kind: string) => out.split("\n").filter((l) => l.startsWith(kind)).length;
    return `${n("INSERT")} insert, ${n("UPDATE")} update, ${n("DELETE")} delete`;
  });
}
