import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { SYSTEM_PG_BIN } from "../servers/cluster.js";

/** A finished child process: wall time, output, exit code. */
export interface Timed {
  seconds: number;
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command (optionally `a | b`, as two commands piped) and times it. */
export async function timed(
  cmd: string[],
  opts: { env?: NodeJS.ProcessEnv; pipeTo?: string[] } = {},
): Promise<Timed> {
  const started = process.hrtime.bigint();
  const env = { ...process.env, ...opts.env };
  const first = spawn(cmd[0]!, cmd.slice(1), { env, stdio: ["ignore", "pipe", "pipe"] });
  const second = opts.pipeTo
    ? spawn(opts.pipeTo[0]!, opts.pipeTo.slice(1), { env, stdio: ["pipe", "pipe", "pipe"] })
    : undefined;
  let stdout = "";
  let stderr = "";
  if (second) {
    first.stdout.pipe(second.stdin);
    second.stdout.on("data", (d) => (stdout += d));
    second.stderr.on("data", (d) => (stderr += d));
  } else {
    first.stdout.on("data", (d) => (stdout += d));
  }
  first.stderr.on("data", (d) => (stderr += d));
  const exit = (p: ReturnType<typeof spawn>) =>
    new Promise<number | null>((resolve, reject) => {
      p.on("error", reject);
      p.on("close", resolve);
    });
  const codes = await Promise.all([exit(first), ...(second ? [exit(second)] : [])]);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { seconds, code: codes.find((c) => c !== 0) ?? 0, stdout, stderr };
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
