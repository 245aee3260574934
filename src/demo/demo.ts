import pg from "pg";
import { sync } from "../sync/run.js";
import type { TableResult } from "../sync/types.js";
import { formatResult } from "../cli/output.js";
import { InputError } from "../input-error.js";
import {
  findServerPrograms,
  NO_SERVER_PROGRAMS,
  serverUser,
  startServer,
  type LocalServer,
} from "./servers.js";

const SOURCE_TABLE = { schema: "fds", name: "sym_v1_sym_ticker_exchange" };
const TARGET_TABLE = { schema: "raw_data", name: "sym_v1_sym_ticker_exchange" };

const say = (line: string) => process.stdout.write(line + "\n");

/**
 * A tour of the product on two throwaway servers: a first full copy, changes
 * (one of them in a transaction left open across a sync), incremental syncs,
 * and a check that the copy equals the source.
 */
export async function runDemo(opts: { rows: number }): Promise<void> {
  const programs = findServerPrograms();
  if (!programs) throw new InputError(`the demo ${NO_SERVER_PROGRAMS}`);
  try {
    serverUser();
  } catch (err) {
    // As root without a postgres user: say so now, in one line.
    throw new InputError(`the demo cannot start its servers: ${(err as Error).message}`);
  }
  const servers: LocalServer[] = [];
  const clients: pg.Client[] = [];
  try {
    say(`Starting two throwaway PostgreSQL servers (${programs.from})...`);
    const [source, target] = await Promise.all([
      startServer({ bin: programs.bin, prefix: "xmin-sync-demo-" }),
      startServer({ bin: programs.bin, prefix: "xmin-sync-demo-" }),
    ]);
    servers.push(source, target);
    const src = new pg.Client({ connectionString: source.url() });
    const other = new pg.Client({ connectionString: source.url() });
    const dst = new pg.Client({ connectionString: target.url() });
    clients.push(src, other, dst);
    await Promise.all(clients.map((c) => c.connect()));

    say(`Filling fds.sym_v1_sym_ticker_exchange with ${opts.rows} rows...`);
    await src.query(`CREATE SCHEMA fds;
      CREATE TABLE fds.sym_v1_sym_ticker_exchange (
        fsym_id text PRIMARY KEY,
        ticker_exchange text NOT NULL,
        exchange char(3) NOT NULL,
        currency char(3),
        is_primary boolean NOT NULL DEFAULT false,
        listed_on date,
        last_price numeric(18,6)
      )`);
    await src.query(
      `INSERT INTO fds.sym_v1_sym_ticker_exchange
       SELECT 'S' || lpad(to_hex(i), 7, '0') || '-R', 'TICK' || i || '-' || (ARRAY['NYS','NAS','LON','TKS'])[1 + i % 4],
              (ARRAY['NYS','NAS','LON','TKS'])[1 + i % 4], (ARRAY['USD','USD','GBP','JPY'])[1 + i % 4],
              i % 3 = 0, date '2000-01-01' + (i % 9000), round((i % 10000) / 7.0, 6)
         FROM generate_series(1, $1::int) AS i`,
      [opts.rows],
    );

    const run = async (title: string): Promise<TableResult> => {
      say(`\n${title}`);
      const [r] = await sync({
        source: source.url(),
        target: target.url(),
        tables: [{ source: SOURCE_TABLE, target: TARGET_TABLE }],
      });
      say("  " + formatResult(r!));
      if (r!.status !== "ok") throw new Error(r!.error);
      return r!;
    };

    await run("Sync 1: the first run copies the whole table.");

    say("\nChanges on the source:");
    await other.query("BEGIN");
    await other.query(
      "INSERT INTO fds.sym_v1_sym_ticker_exchange VALUES ('SLATE000-R', 'LATE-NYS', 'NYS', 'USD', true, '2026-11-26', 1)",
    );
    await other.query(
      "UPDATE fds.sym_v1_sym_ticker_exchange SET last_price = -1 WHERE fsym_id = 'S0000001-R'",
    );
    say("  a transaction (older) inserts SLATE000-R and updates S0000001-R, and stays open");
    await src.query(
      `INSERT INTO fds.sym_v1_sym_ticker_exchange
       SELECT 'SNEW' || lpad(i::text, 4, '0') || '-R', 'NEW' || i, 'LON', 'GBP', false, current_date, i
         FROM generate_series(1, 500) AS i`,
    );
    const upd = await src.query(
      "UPDATE fds.sym_v1_sym_ticker_exchange SET last_price = last_price + 1 WHERE fsym_id LIKE 'S00001%'",
    );
    say(`  newer transactions insert 500 rows and update ${upd.rowCount} rows, and commit`);

    const second = await run(
      "Sync 2: only the committed changes; the open transaction holds the watermark back.",
    );
    say(
      `  watermark stays at the open transaction's id (${second.watermark}), so its rows are not lost.`,
    );

    await other.query("COMMIT");
    say("\nThe open transaction commits.");
    await run("Sync 3: the late transaction's insert and update arrive.");

    const digest = async (c: pg.Client, table: string) =>
      (
        await c.query<{ d: string; n: string }>(
          `SELECT md5(string_agg(t::text, E'\\n' ORDER BY fsym_id)) AS d, count(*) AS n
             FROM (SELECT fsym_id, ticker_exchange, exchange, currency, is_primary, listed_on, last_price FROM ${table}) t`,
        )
      ).rows[0]!;
    const a = await digest(src, "fds.sym_v1_sym_ticker_exchange");
    const b = await digest(dst, "raw_data.sym_v1_sym_ticker_exchange");
    say(
      `\nSource and target: ${a.n} and ${b.n} rows, ` +
        (a.d === b.d ? "identical content (md5 of every row)." : "DIFFERENT content!"),
    );
    if (a.d !== b.d) throw new Error("demo: target differs from source");
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
    say("\nServers stopped and removed.");
  }
}
