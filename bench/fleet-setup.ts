import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  hasSystemPostgres,
  startCluster,
  SYSTEM_PG_BIN,
  type Cluster,
} from "../test/helpers/servers.js";

/**
 * What the fleet's measurements (freshness.ts, backoff.ts) share: two
 * throwaway servers of Debian's PostgreSQL 15 (for pgbench), the built CLI
 * as a child process, pgbench load, and percentiles.
 */

const exec = promisify(execFile);

export const CLI = join(dirname(fileURLToPath(import.meta.url)), "..", "src", "cli", "main.js");

export function say(line: string): void {
  process.stderr.write(`${line}\n`);
}

export async function startServers(): Promise<{ source: Cluster; target: Cluster }> {
  if (!hasSystemPostgres()) throw new Error(`needs pgbench and PostgreSQL 15 in ${SYSTEM_PG_BIN}`);
  const settings = { max_connections: "120", shared_buffers: "256MB" };
  const [source, target] = await Promise.all([
    startCluster({ version: "system", settings }),
    startCluster({ version: "system", settings }),
  ]);
  // Stop both servers however the measurement ends.
  const stop = () => void Promise.all([source.stop(), target.stop()]).then(() => process.exit(1));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  return { source, target };
}

function pgbenchArgs(c: Cluster): string[] {
  return ["-h", "127.0.0.1", "-p", String(c.port), "-U", "postgres"];
}

export async function pgbenchInit(c: Cluster, scale: number): Promise<void> {
  await exec(join(SYSTEM_PG_BIN, "pgbench"), [
    "-i",
    "-q",
    "-s",
    String(scale),
    ...pgbenchArgs(c),
    "postgres",
  ]);
}

/**
 * pgbench's TPC-B-like load until stopped (SIGINT); resolves with its mean
 * transactions per second, from its progress lines (a stopped pgbench
 * prints no final report).
 */
export function pgbenchLoad(
  c: Cluster,
  clients: number,
  seconds = 3600,
): { child: ChildProcess; tps: Promise<number> } {
  const child = spawn(
    join(SYSTEM_PG_BIN, "pgbench"),
    [
      ...["-n", "-c", String(clients), "-j", "2", "-T", String(seconds), "-P", "5"],
      ...pgbenchArgs(c),
      "postgres",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const tps = new Promise<number>((resolve) =>
    child.on("close", () => {
      const each = [...out.matchAll(/progress: [\d.]+ s, ([\d.]+) tps/g)].map((m) => Number(m[1]));
      resolve(each.reduce((a, b) => a + b, 0) / Math.max(1, each.length));
    }),
  );
  return { child, tps };
}

/** The built CLI, waited for. */
export async function cli(args: string[]): Promise<string> {
  const { stdout } = await exec(process.execPath, [CLI, ...args], {
    env: { ...process.env, LOG_LEVEL: "warn" },
    maxBuffer: 64 * 1024 * 1024,
  });
  return stdout;
}

/** A worker process; its stderr (JSON log lines) is kept for reading. */
export function startWorker(config: string, args: string[] = [], logLevel = "info") {
  const child = spawn(process.execPath, [CLI, "worker", "--config", config, ...args], {
    env: { ...process.env, LOG_LEVEL: logLevel },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  return {
    child,
    logs(): Record<string, unknown>[] {
      return err
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    async stop(): Promise<number | null> {
      child.kill("SIGTERM");
      return exited;
    },
  };
}

export async function writeConfig(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, text);
}

/** The p-th percentile (0..100) of sorted values, nearest rank. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export async function writeResults(
  dir: string,
  stem: string,
  markdown: string,
  json: unknown,
): Promise<string> {
  await mkdir(dir, { recursive: true });
  const base = join(dir, stem);
  await writeFile(`${base}.md`, markdown);
  await writeFile(`${base}.json`, JSON.stringify(json, null, 2) + "\n");
  return base;
}
