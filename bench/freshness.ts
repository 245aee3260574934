import { performance } from "node:perf_hooks";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import pg from "pg";
import {
  cli,
  percentile,
  pgbenchInit,
  pgbenchLoad,
  say,
  startServers,
  startWorker,
  writeConfig,
  writeResults,
} from "./fleet-setup.js";

/**
 * Freshness: how long after a source commit the row can be read in the
 * target, with a worker syncing the table `every: 1s` while pgbench loads
 * the source. The table is pgbench_accounts at scale 10 (1M rows); a probe
 * sets one row's filler to a unique value, and the time from its COMMIT
 * returning to the value being read in the target (polled every 25 ms) is
 * its lag. Probes start every half second, so they fall at every phase of
 * the worker's cycle.
 *
 *   npm run build && node dist/bench/freshness.js [--scale 10] [--probes 120]
 *     [--clients 4] [--every 1s] [--out bench/results]
 */

const { values } = parseArgs({
  options: {
    scale: { type: "string", default: "10" },
    probes: { type: "string", default: "120" },
    clients: { type: "string", default: "4" },
    every: { type: "string", default: "1s" },
    out: { type: "string", default: "bench/results" },
  },
});
const scale = Number(values.scale);
const probes = Number(values.probes);
const clients = Number(values.clients);
const PROBE_EVERY_MS = 500;
const POLL_MS = 25;
const PROBE_TIMEOUT_MS = 60_000;

const { source, target } = await startServers();
try {
  say(`freshness: pgbench -i -s ${scale} (${scale * 100_000} accounts)`);
  await pgbenchInit(source, scale);
  const config = join(tmpdir(), `xmin-sync-freshness-${process.pid}.yaml`);
  await writeConfig(
    config,
    `source: ${source.url()}
target: ${target.url()}
workers: 2
tables:
  - source: public.pgbench_accounts
    every: ${values.every}
`,
  );
  const t = performance.now();
  await cli(["sync", "--config", config]);
  const fullLoadSeconds = (performance.now() - t) / 1000;
  say(
    `freshness: first copy ${fullLoadSeconds.toFixed(1)} s; starting a worker and pgbench -c ${clients}`,
  );

  const worker = startWorker(config, ["--poll", "0.2"]);
  const load = pgbenchLoad(source, clients);
  await new Promise((r) => setTimeout(r, 5000));

  const writer = new pg.Client({ connectionString: source.url() });
  const reader = new pg.Client({ connectionString: target.url() });
  await Promise.all([writer.connect(), reader.connect()]);
  const outstanding = new Map<number, { aid: number; committedAt: number }>();
  const lags: number[] = [];
  let lost = 0;
  const rows = scale * 100_000;
  const windowStart = new Date();

  let sent = 0;
  const sender = (async () => {
    while (sent < probes) {
      const n = ++sent;
      // Distinct rows: a later probe must not overwrite an earlier one's value.
      const aid = 1 + ((n * 7919) % rows);
      await writer.query("UPDATE pgbench_accounts SET filler = $1 WHERE aid = $2", [
        `probe ${n}`,
        aid,
      ]);
      outstanding.set(n, { aid, committedAt: performance.now() });
      await new Promise((r) => setTimeout(r, PROBE_EVERY_MS));
    }
  })();
  while (sent < probes || outstanding.size > 0) {
    if (outstanding.size > 0) {
      const { rows: seen } = await reader.query<{ f: string }>(
        "SELECT rtrim(filler) AS f FROM pgbench_accounts WHERE aid = ANY($1::int[])",
        [[...outstanding.values()].map((o) => o.aid)],
      );
      const now = performance.now();
      for (const r of seen) {
        const n = Number(/^probe (\d+)$/.exec(r.f)?.[1]);
        const o = outstanding.get(n);
        if (!o) continue;
        lags.push((now - o.committedAt) / 1000);
        outstanding.delete(n);
      }
      for (const [n, o] of outstanding) {
        if (now - o.committedAt > PROBE_TIMEOUT_MS) {
          lost++;
          outstanding.delete(n);
        }
      }
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  await sender;
  const windowEnd = new Date();

  load.child.kill("SIGINT");
  const tps = (await load.tps).toFixed(0);
  const code = await worker.stop();
  if (process.env.FRESHNESS_LOGS) for (const l of worker.logs().slice(-40)) say(JSON.stringify(l));
  const { rows: runs } = await reader.query<{ n: number; p50: number; p99: number }>(
    `SELECT count(*)::int AS n,
            percentile_disc(0.5) WITHIN GROUP (ORDER BY duration_ms)::float8 / 1000 AS p50,
            percentile_disc(0.99) WITHIN GROUP (ORDER BY duration_ms)::float8 / 1000 AS p99
       FROM xmin_sync.history
      WHERE kind = 'sync' AND status = 'ok' AND finished_at BETWEEN $1 AND $2`,
    [windowStart, windowEnd],
  );
  await Promise.all([writer.end(), reader.end()]);

  const sorted = [...lags].sort((a, b) => a - b);
  const stat = (p: number) => percentile(sorted, p).toFixed(2);
  const mean = (sorted.reduce((a, b) => a + b, 0) / sorted.length).toFixed(2);
  const run = runs[0]!;
  const windowSeconds = (windowEnd.getTime() - windowStart.getTime()) / 1000;
  const markdown = `# Freshness: source commit to visible in the target

\`node dist/bench/freshness.js --scale ${scale} --probes ${probes} --clients ${clients} --every ${values.every}\`,
${new Date().toISOString().slice(0, 10)}, both servers (Debian's PostgreSQL 15) and the worker on this machine (load average ${loadavg()[0]!.toFixed(1)} at the end: the machine is shared).

- table: pgbench_accounts, ${rows.toLocaleString("en-US")} rows; first copy ${fullLoadSeconds.toFixed(1)} s
- one worker, \`every: ${values.every}\`, \`--poll 0.2\`; pgbench -c ${clients} on the source meanwhile (${tps} tps)
- ${lags.length} probes (${lost} not seen within ${PROBE_TIMEOUT_MS / 1000} s), one every ${PROBE_EVERY_MS} ms, target polled every ${POLL_MS} ms

| lag (s) | p50 | p90 | p99 | max | mean |
| ------- | --- | --- | --- | --- | ---- |
| commit → visible | ${stat(50)} | ${stat(90)} | ${stat(99)} | ${sorted.at(-1)!.toFixed(2)} | ${mean} |

Worker runs in the window: ${run.n} in ${windowSeconds.toFixed(0)} s; duration p50 ${run.p50?.toFixed(2)} s, p99 ${run.p99?.toFixed(2)} s (each reads the 1M-row table once). Worker exit code after SIGTERM: ${code}.
`;
  process.stdout.write(markdown);
  const base = await writeResults(
    values.out!,
    `${new Date().toISOString().slice(0, 10)}-freshness`,
    markdown,
    { scale, probes, clients, every: values.every, tps, lost, lags, runs: run, fullLoadSeconds },
  );
  say(`freshness: results in ${base}.md`);
} finally {
  await Promise.all([source.stop(), target.stop()]);
}
