import { fileURLToPath } from "node:url";
import { lastLines, sql, timed, type Timed } from "./tools.js";

const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));

/** One run of ours: its time and peak memory, or why there is none. */
export interface Sample {
  seconds: number | null;
  status: "ok" | "timeout" | "error" | "skipped";
  peakRssMb?: number;
  /** What the run reported (rows, differences), or its error. */
  detail?: string;
}

export interface OursRun {
  sample: Sample;
  /** Parsed --json lines of a finished run. */
  json: Record<string, unknown>[];
}

function peakRss(t: Timed): number | undefined {
  const m = /xmin-sync-max-rss-kb (\d+)/.exec(t.stderr);
  return m ? Math.round(Number(m[1]) / 1024) : undefined;
}

/**
 * Ends what a killed run left on the servers: its backends go on with their
 * statement until they next talk to the client, and would hold locks and
 * CPU into the next measurement.
 */
async function terminateOurBackends(urls: string[]) {
  for (const url of urls) {
    await sql(
      url,
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE application_name LIKE 'xmin-sync%' AND datname = current_database() AND pid <> pg_backend_pid()`,
    ).catch(() => undefined);
  }
}

/**
 * Runs the CLI (`xmin-sync <args> --json`) with a time limit. Exit codes in
 * `okCodes` count as success (validate exits 1 when it finds differences).
 */
export async function runOurs(
  args: string[],
  opts: { source: string; target: string; timeoutSeconds: number; okCodes?: number[] },
): Promise<OursRun> {
  const t = await timed([process.execPath, CLI, ...args, "--json"], {
    env: { XMIN_SYNC_REPORT_RSS: "1", LOG_LEVEL: "warn" },
    timeoutSeconds: opts.timeoutSeconds,
  });
  const peakRssMb = peakRss(t);
  if (t.timedOut) {
    await terminateOurBackends([opts.source, opts.target]);
    return {
      sample: {
        seconds: null,
        status: "timeout",
        detail: `timed out after ${opts.timeoutSeconds} s`,
      },
      json: [],
    };
  }
  const json = t.stdout
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  if (!(opts.okCodes ?? [0]).includes(t.code ?? -1)) {
    const error = json.find((j) => j.error)?.error;
    return {
      sample: {
        seconds: t.seconds,
        status: "error",
        detail: `exit ${t.code}: ${typeof error === "string" ? error : lastLines(t)}`,
        ...(peakRssMb !== undefined ? { peakRssMb } : {}),
      },
      json,
    };
  }
  return {
    sample: { seconds: t.seconds, status: "ok", ...(peakRssMb !== undefined ? { peakRssMb } : {}) },
    json,
  };
}
