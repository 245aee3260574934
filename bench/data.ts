import { sql } from "./tools.js";

/** The pgbench tables, as pgcopydb and our full load copy them. */
export const TABLES = [
  "public.pgbench_accounts",
  "public.pgbench_branches",
  "public.pgbench_tellers",
];
export const ACCOUNTS = "public.pgbench_accounts";
/** pgbench_accounts with a cursor column, in a database of its own (so that pgcopydb leaves it). */
export const CURSOR_TABLE = "public.accounts_ts";
export const ACCOUNT_COLUMNS = "aid, bid, abalance, filler";

const DDL = {
  branches:
    "CREATE TABLE public.pgbench_branches (bid int NOT NULL, bbalance int, filler char(88))",
  tellers:
    "CREATE TABLE public.pgbench_tellers (tid int NOT NULL, bid int, tbalance int, filler char(84))",
  accounts:
    "CREATE TABLE public.pgbench_accounts (aid int NOT NULL, bid int, abalance int, filler char(84))",
  cursor:
    "CREATE TABLE public.accounts_ts (aid int NOT NULL, bid int, abalance int, filler char(84), updated_at timestamptz NOT NULL)",
};

/** The pgbench tables without keys or indexes, for the psql pipe to fill. */
export const EMPTY_TABLES = [DDL.branches, DDL.tellers, DDL.accounts].join(";\n");
export const EMPTY_CURSOR_TABLE = DDL.cursor.replace("public.", "ref.");

/** Where a cursor-table row's updated_at starts; each round's changes move it a day later. */
const CURSOR_BASE = "2026-01-01";

/** pgbench -i's tables at a scale, made with SQL (no pgbench needed), then vacuumed. */
export async function generate(url: string, scale: number): Promise<void> {
  const n = Number(scale);
  await sql(
    url,
    `
    DROP TABLE IF EXISTS public.pgbench_accounts, public.pgbench_branches, public.pgbench_tellers;
    ${DDL.branches}; ${DDL.tellers}; ${DDL.accounts};
    INSERT INTO public.pgbench_branches SELECT b, 0, NULL FROM generate_series(1, ${n}) b;
    INSERT INTO public.pgbench_tellers SELECT t, (t - 1) / 10 + 1, 0, NULL FROM generate_series(1, ${n * 10}) t;
    INSERT INTO public.pgbench_accounts SELECT a, (a - 1) / 100000 + 1, 0, '' FROM generate_series(1, ${n * 100000}) a;
    ALTER TABLE public.pgbench_branches ADD PRIMARY KEY (bid);
    ALTER TABLE public.pgbench_tellers ADD PRIMARY KEY (tid);
    ALTER TABLE public.pgbench_accounts ADD PRIMARY KEY (aid);`,
  );
  await sql(url, `VACUUM ANALYZE ${TABLES.join(", ")}`);
}

/**
 * The cursor table: pgbench_accounts' rows with an updated_at that grows as
 * rows change, indexed as a table read by a cursor usually is.
 */
export async function generateCursorTable(url: string, scale: number): Promise<void> {
  await sql(
    url,
    `
    DROP TABLE IF EXISTS ${CURSOR_TABLE};
    ${DDL.cursor};
    INSERT INTO ${CURSOR_TABLE}
      SELECT a, (a - 1) / 100000 + 1, 0, '', timestamptz '${CURSOR_BASE}' + a * interval '1 second'
        FROM generate_series(1, ${Number(scale) * 100000}) a;
    ALTER TABLE ${CURSOR_TABLE} ADD PRIMARY KEY (aid);
    CREATE INDEX ON ${CURSOR_TABLE} (updated_at);`,
  );
  await sql(url, `VACUUM ANALYZE ${CURSOR_TABLE}`);
}

/** A scan that sets the hint bits of rows just written, so that neither side's first read pays for it. */
export async function settle(url: string, table: string): Promise<void> {
  await sql(url, `SELECT count(*) FROM ${table}`);
}

/** Updates 1% of the accounts (aid % 100 = k), as an application would. */
export async function updateOnePercent(url: string, k: number): Promise<number> {
  const rows = await sql<{ n: string }>(
    url,
    `WITH u AS (UPDATE ${ACCOUNTS} SET abalance = abalance + 1 WHERE aid % 100 = $1 RETURNING 1) SELECT count(*) AS n FROM u`,
    [k % 100],
  );
  return Number(rows[0]!.n);
}

/** Deletes 0.1% of the accounts: aid % 1000 = d, d a multiple of 10 (injected differences use aid % 10 = 5). */
export async function deleteOnePermille(url: string, d: number): Promise<number> {
  const rows = await sql<{ n: string }>(
    url,
    `WITH x AS (DELETE FROM ${ACCOUNTS} WHERE aid % 1000 = $1 RETURNING 1) SELECT count(*) AS n FROM x`,
    [(d * 10) % 1000],
  );
  return Number(rows[0]!.n);
}

/**
 * Round r's change to the cursor table: 1% of its rows, their updated_at
 * spread over a day of their own (two days per round), so that the next
 * read's lookback re-reads only the last minutes' few rows, as in a steady
 * stream of changes. Returns the new high mark.
 */
export async function updateCursorTable(url: string, round: number, rows: number): Promise<string> {
  const changed = await sql<{ at: string }>(
    url,
    `WITH u AS (
       UPDATE ${CURSOR_TABLE} SET abalance = abalance + 1,
              updated_at = timestamptz '${CURSOR_BASE}' + interval '1 year' + $2 * interval '2 days'
                           + make_interval(secs => aid::float8 * 86400 / $3)
        WHERE aid % 100 = $1 RETURNING updated_at)
     SELECT max(updated_at)::text AS at FROM u`,
    [round % 100, round, rows],
  );
  return changed[0]!.at;
}

export const INJECTED = 10_000;

/**
 * Differences made in a copy of pgbench_accounts, the same in every copy:
 * item i of 0..INJECTED-1 is a changed row (i % 10 < 4), a missing one
 * (4..6) or an extra one (7..9). Changed and missing rows have aid % 10 = 5,
 * spread over the table, so none is among the rows the source deleted.
 */
export async function injectDifferences(
  url: string,
  accountRows: number,
  from: number,
  to: number,
): Promise<{ different: number; missing: number; extra: number }> {
  const stride = Math.max(1, Math.floor(accountRows / 10 / INJECTED));
  const items = (where: string) =>
    `SELECT 10 * (i * ${stride}) + 5 FROM generate_series(${from}, ${to - 1}) i WHERE ${where}`;
  const count = async (text: string) =>
    Number(
      (
        await sql<{ n: string }>(url, `WITH x AS (${text} RETURNING 1) SELECT count(*) AS n FROM x`)
      )[0]!.n,
    );
  return {
    different: await count(
      `UPDATE ${ACCOUNTS} SET abalance = abalance + 7 WHERE aid IN (${items("i % 10 < 4")})`,
    ),
    missing: await count(
      `DELETE FROM ${ACCOUNTS} WHERE aid IN (${items("i % 10 BETWEEN 4 AND 6")})`,
    ),
    extra: await count(
      `INSERT INTO ${ACCOUNTS} (${ACCOUNT_COLUMNS})
       SELECT ${accountRows} + 1 + i, 1, 0, 'extra' FROM generate_series(${from}, ${to - 1}) i WHERE i % 10 >= 7`,
    ),
  };
}
