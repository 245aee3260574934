import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { SYSTEM_PG_BIN } from "../test/helpers/servers.js";

/** A finished command: wall time, output, exit code; timedOut when it was killed for taking too long. */
export interface Timed {
  seconds: number;
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface TimedOptions {
  env?: NodeJS.ProcessEnv;
  /** A second command reading the first's stdout (`cmd | pipeTo`). */
  pipeTo?: string[];
  /** Kill the command (its whole process group) after this many seconds. */
  timeoutSeconds?: number;
}

function exited(p: ChildProcess): Promise<number | null> {
  return new Promise((resolve, reject) => {
    p.on("error", reject);
    p.on("close", resolve);
  });
}

/** Ends a process group: TERM, then KILL if it lingers. */
function killGroup(p: ChildProcess) {
  const signal = (s: NodeJS.Signals) => {
    try {
      if (p.pid) process.kill(-p.pid, s);
    } catch {
      /* already gone */
    }
  };
  signal("SIGTERM");
  setTimeout(() => signal("SIGKILL"), 5000).unref();
}

/** Runs a command (optionally `a | b`) and times it, with an optional time limit. */
export async function timed(cmd: string[], opts: TimedOptions = {}): Promise<Timed> {
  const started = process.hrtime.bigint();
  const env = { ...process.env, ...opts.env };
  // Each in its own process group, so that a timeout ends it with its children.
  const first = spawn(cmd[0]!, cmd.slice(1), {
    env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const second = opts.pipeTo
    ? spawn(opts.pipeTo[0]!, opts.pipeTo.slice(1), {
        env,
        stdio: ["pipe", "pipe", "pipe"],
        detached: true,
      })
    : undefined;
  let stdout = "";
  let stderr = "";
  if (second) {
    first.stdout!.pipe(second.stdin!);
    second.stdout!.on("data", (d) => (stdout += d));
    second.stderr!.on("data", (d) => (stderr += d));
  } else {
    first.stdout!.on("data", (d) => (stdout += d));
  }
  first.stderr!.on("data", (d) => (stderr += d));
  let timedOut = false;
  const timer =
    opts.timeoutSeconds !== undefined
      ? setTimeout(() => {
          timedOut = true;
          for (const p of [first, second]) if (p) killGroup(p);
        }, opts.timeoutSeconds * 1000)
      : undefined;
  try {
    const codes = await Promise.all([exited(first), ...(second ? [exited(second)] : [])]);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    return { seconds, code: codes.find((c) => c !== 0) ?? 0, stdout, stderr, timedOut };
  } finally {
    clearTimeout(timer);
  }
}

/** Runs commands at once and times them together (wall time until the last ends). */
export async function timedTogether(cmds: string[][], opts: TimedOptions = {}): Promise<Timed> {
  const started = process.hrtime.bigint();
  const all = await Promise.all(cmds.map((c) => timed(c, opts)));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return {
    seconds,
    code: all.find((t) => t.code !== 0)?.code ?? 0,
    stdout: all.map((t) => t.stdout).join(""),
    stderr: all.map((t) => t.stderr).join(""),
    timedOut: all.some((t) => t.timedOut),
  };
}

/** The last lines of a failed command's stderr, on one line. */
export function lastLines(t: Timed, n = 3): string {
  return t.stderr.trim().split("\n").slice(-n).join(" | ");
}

/** A program from PATH or the system PostgreSQL's bin directory, if present. */
export function findProgram(name: string): string | undefined {
  const inPgBin = join(SYSTEM_PG_BIN, name);
  if (existsSync(inPgBin)) return inPgBin;
  for (const dir of (process.env.PATH ?? "").split(":")) {
    const p = join(dir, name);
    if (dir && existsSync(p)) return p;
  }
  return undefined;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Swaps the database of a connection URL. */
export function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

export function databaseOf(url: string): string {
  return decodeURIComponent(new URL(url).pathname.slice(1));
}

/** Runs SQL in a short-lived connection. */
export async function sql<T extends pg.QueryResultRow = pg.QueryResultRow>(
  url: string,
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(text, params)).rows;
  } finally {
    await c.end();
  }
}
