import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  cli,
  pgbenchInit,
  pgbenchLoad,
  say,
  startServers,
  startWorker,
  writeConfig,
  writeResults,
} from "./fleet-setup.js";

/**
 * The worker's adaptive parallelism, measured: a worker with more work
 * than it can do (six tables copied whole every second) on a quiet source,
 * then under a pgbench load, then quiet again. Its parallelism should grow
 * while throughput grows with it, halve when the source gets busy, and come
 * back once the load is gone. The timeline is the worker's own samples
 * (every 2 s: probe latency, other active backends, bytes copied).
 *
 *   npm run build && node dist/bench/backoff.js [--quiet 60] [--load 40] [--clients 8]
 *     [--workers 2] [--max 4] [--out bench/results]
 */

const { values } = parseArgs({
  options: {
    quiet: { type: "string", default: "60" },
    load: { type: "string", default: "40" },
    clients: { type: "string", default: "8" },
    workers: { type: "string", default: "2" },
    max: { type: "string", default: "4" },
    out: { type: "string", default: "bench/results" },
  },
});
const quietSeconds = Number(values.quiet);
const loadSeconds = Number(values.load);
const clients = Number(values.clients);
const TABLES = 6;

interface Sample {
  t: number;
  phase: string;
  parallelism: number;
  latencyMs: number;
  activeBackends: number;
  mbPerSecond: number;
  reason?: string;
}

const { source, target } = await startServers();
try {
  await pgbenchInit(source, 5);
  await source.sql(
    Array.from(
      { length: TABLES },
      (
        _,
        i,
      ) => `CREATE TABLE public.copy${i + 1} (id int PRIMARY KEY, a text, b numeric, c timestamptz);
       INSERT INTO public.copy${i + 1}
         SELECT g, md5(g::text) || md5((g * 7)::text), g * 1.5, now() FROM generate_series(1, 100000) g;`,
    ).join("\n"),
  );
  const config = join(tmpdir(), `xmin-sync-backoff-${process.pid}.yaml`);
  await writeConfig(
    config,
    `source: ${source.url()}
target: ${target.url()}
workers: ${values.workers}
minWorkers: 1
maxWorkers: ${values.max}
tables:
${Array.from({ length: TABLES }, (_, i) => `  - source: public.copy${i + 1}\n    mode: full\n    every: 1s\n`).join("")}`,
  );
  await cli(["sync", "--config", config]);

  say(`backoff: worker started; quiet ${quietSeconds} s`);
  const started = Date.now();
  const worker = startWorker(config, ["--poll", "0.2"], "debug");
  const phases: { name: string; from: number }[] = [{ name: "quiet", from: 0 }];
  await new Promise((r) => setTimeout(r, quietSeconds * 1000));
  say(`backoff: pgbench -c ${clients} for ${loadSeconds} s`);
  phases.push({ name: `pgbench -c ${clients}`, from: (Date.now() - started) / 1000 });
  const load = pgbenchLoad(source, clients, loadSeconds);
  const tps = await load.tps;
  phases.push({ name: "quiet again", from: (Date.now() - started) / 1000 });
  say(`backoff: load over (${tps.toFixed(0)} tps); quiet ${quietSeconds} s`);
  await new Promise((r) => setTimeout(r, quietSeconds * 1000));
  await worker.stop();

  const phaseAt = (t: number) => phases.filter((p) => p.from <= t).at(-1)!.name;
  const samples: Sample[] = worker
    .logs()
    .filter((l) => typeof l.parallelism === "number" && typeof l.latencyMs === "number")
    .map((l) => {
      const t = ((l.time as number) - started) / 1000;
      const msg = String(l.msg);
      return {
        t,
        phase: phaseAt(t),
        parallelism: l.parallelism as number,
        latencyMs: l.latencyMs as number,
        activeBackends: l.activeBackends as number,
        mbPerSecond: (l.bytes as number) / 2 / 1e6,
        ...(msg.startsWith("parallelism: ") ? { reason: msg.slice(13) } : {}),
      };
    });

  const byPhase = phases.map((p) => {
    const s = samples.filter((x) => x.phase === p.name);
    const avg = (f: (x: Sample) => number) =>
      s.reduce((a, x) => a + f(x), 0) / Math.max(1, s.length);
    return `| ${p.name} | ${p.from.toFixed(0)} s | ${Math.min(...s.map((x) => x.parallelism))}–${Math.max(...s.map((x) => x.parallelism))} | ${avg((x) => x.latencyMs).toFixed(1)} | ${avg((x) => x.activeBackends).toFixed(1)} | ${avg((x) => x.mbPerSecond).toFixed(1)} |`;
  });
  const timeline = samples
    .filter((s, i) => i % 2 === 0 || s.reason)
    .map(
      (s) =>
        `| ${s.t.toFixed(0)} | ${s.phase} | ${s.parallelism} | ${s.latencyMs.toFixed(1)} | ${s.activeBackends} | ${s.mbPerSecond.toFixed(1)} | ${s.reason ?? ""} |`,
    );
  const markdown = `# Adaptive parallelism: backing off under load

\`node dist/bench/backoff.js --quiet ${quietSeconds} --load ${loadSeconds} --clients ${clients} --workers ${values.workers} --max ${values.max}\`,
${new Date().toISOString().slice(0, 10)}, both servers (Debian's PostgreSQL 15) and the worker on this 2-core machine (load average ${loadavg()[0]!.toFixed(1)} at the end: the machine is shared).

One worker, \`workers: ${values.workers}\`, \`minWorkers: 1\`, \`maxWorkers: ${values.max}\`, six tables of 100,000 rows
copied whole (\`mode: full\`) \`every: 1s\`: always more work than streams. pgbench -c ${clients}
ran ${tps.toFixed(0)} tps on the source during its phase.

| phase | from | parallelism | probe ms (mean) | other active backends (mean) | MB/s copied (mean) |
| ----- | ---- | ----------- | --------------- | ---------------------------- | ------------------ |
${byPhase.join("\n")}

Timeline (the worker's samples, every other one, and every decision):

| t (s) | phase | parallelism | probe ms | other active | MB/s | decision |
| ----- | ----- | ----------- | -------- | ------------ | ---- | -------- |
${timeline.join("\n")}
`;
  process.stdout.write(markdown);
  const base = await writeResults(
    values.out!,
    `${new Date().toISOString().slice(0, 10)}-backoff`,
    markdown,
    { quietSeconds, loadSeconds, clients, tps, phases, samples },
  );
  say(`backoff: results in ${base}.md`);
} finally {
  await Promise.all([source.stop(), target.stop()]);
}
