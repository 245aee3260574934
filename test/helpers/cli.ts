import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { join, dirname } from "node:path";

/** The built CLI, run as a user would run it. */
export const CLI = join(
  dirname(fileURLToPath(import.meta.url)),
  "..",
  "..",
  "src",
  "cli",
  "main.js",
);

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON lines, when it is. */
  json: Record<string, unknown>[];
}

export function runCli(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<CliResult> {
  const child = spawnCli(args, opts);
  return child.done;
}

export function spawnCli(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: {
      ...process.env,
      SOURCE_DATABASE_URL: "",
      TARGET_DATABASE_URL: "",
      LOG_LEVEL: "warn",
      ...opts.env,
    },
    cwd: opts.cwd,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  const done = new Promise<CliResult>((resolve) => {
    child.on("close", (code) => {
      const json: Record<string, unknown>[] = [];
      for (const line of stdout.split("\n")) {
        if (line.startsWith("{")) {
          try {
            json.push(JSON.parse(line));
          } catch {
            /* not JSON */
          }
        }
      }
      resolve({ code, stdout, stderr, json });
    });
  });
  /** What the process wrote on stderr so far (for long-running commands). */
  const stderrSoFar = () => stderr;
  return { child, done, stderr: stderrSoFar };
}

/** Kills (SIGKILL) the runs a test started that are still running, and waits for them. */
export async function killChildren(children: ReturnType<typeof spawnCli>[]): Promise<void> {
  for (const c of children) {
    if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill("SIGKILL");
    await c.done;
  }
}
