import { quoteIdent } from "../src/db/quote.js";
import { INJECTED } from "./data.js";
import { runOurs, type OursRun, type Sample } from "./ours.js";
import type { Programs } from "./reference.js";
import type { PathResult } from "./report.js";
import { databaseOf, sql, withDatabase } from "./tools.js";

export interface SessionOptions {
  source: string;
  /** A database URL of the target server; the bench makes its own databases there. */
  targetServer: string;
  programs: Programs;
  workers: number;
  deep: boolean;
  /** Fixed time limit of our runs; by default ten full loads, at least two minutes. */
  timeoutSeconds?: number;
  scale: number;
  /** Scratch space (pgcopydb's work directories). */
  workDir: string;
  say: (line: string) => void;
}

function path(id: string, title: string, refs: string[], vsFullLoad = false): PathResult {
  return {
    id,
    title,
    ours: [],
    references: refs.map((name) => ({ name, samples: [] })),
    ...(vsFullLoad ? { vsFullLoad } : {}),
    notes: [],
  };
}

/** Every path the bench measures, with its references. */
function allPaths(workers: number) {
  const byXmin = "by hand: COPY by xmin, staging, MERGE";
  return {
    full: path("full", "full load, 3 tables", [
      `pgcopydb clone --table-jobs ${workers} --index-jobs ${workers}`,
      "psql binary COPY pipe, no indexes",
    ]),
    first: path("first", "incremental, 1% updated, first after a full load", [byXmin], true),
    steady: path("steady", "incremental, 1% updated, steady", [byXmin], true),
    hard: path(
      "hard",
      "hard deletes, 0.1% deleted",
      ["by hand: COPY of keys, anti-join DELETE"],
      true,
    ),
    soft: path(
      "soft",
      "soft deletes, 0.1% deleted",
      ["by hand: COPY of keys, anti-join UPDATE"],
      true,
    ),
    cursor: path(
      "cursor",
      "timestamp mode, 1% updated",
      ["by hand: COPY by updated_at, staging, MERGE"],
      true,
    ),
    validate: path("validate", "validate", ["count(*) on both sides"]),
    deep: path("deep", "validate --deep, 10 differences", ["pg_comparator"]),
    repair: path(
      "repair",
      `validate --deep --repair, ${INJECTED.toLocaleString("en")} differences`,
      ["pg_comparator --synchronize --do-it"],
    ),
  };
}

export type Paths = ReturnType<typeof allPaths>;

/**
 * What the rounds share: the servers, the programs, the paths' results so
 * far, and the rules of measuring: time limits, skipping a path that timed
 * out, alternating ours and the reference.
 */
export class Session {
  readonly paths: Paths;
  private firstFullLoad: number | null = null;
  private readonly timedOut = new Set<string>();
  private dbSeq = 0;

  constructor(readonly o: SessionOptions) {
    this.paths = allPaths(o.workers);
  }

  get src() {
    return this.o.source;
  }

  /** The paths measured, in the order the report lists them. */
  measured(): PathResult[] {
    const p = this.paths;
    return [p.full, p.first, p.steady, p.hard, p.soft, p.cursor, p.validate].concat(
      this.o.deep ? [p.deep, p.repair] : [],
    );
  }

  /** A run that hangs (a quadratic plan) is reported, not waited for. */
  timeout(): number {
    if (this.o.timeoutSeconds) return this.o.timeoutSeconds;
    if (this.firstFullLoad === null) return 120 + 20 * this.o.scale;
    return Math.max(120, Math.ceil(10 * this.firstFullLoad));
  }

  /** Ours' first full load sets the default time limit. */
  sawFullLoad(s: Sample) {
    if (s.status === "ok") this.firstFullLoad ??= s.seconds;
  }

  timedOutPaths(): string[] {
    return [...this.timedOut];
  }

  async freshTarget(stem = "bench_t"): Promise<string> {
    const name = `${stem}${++this.dbSeq}`;
    await sql(this.o.targetServer, `DROP DATABASE IF EXISTS ${quoteIdent(name)}`);
    await sql(this.o.targetServer, `CREATE DATABASE ${quoteIdent(name)}`);
    return withDatabase(this.o.targetServer, name);
  }

  async dropTarget(url: string): Promise<void> {
    await sql(
      this.o.targetServer,
      `DROP DATABASE IF EXISTS ${quoteIdent(databaseOf(url))} WITH (FORCE)`,
    );
  }

  /** Our CLI, timed, with its time limit; skipped when it timed out in an earlier round. */
  async ours(
    p: PathResult,
    args: string[],
    target: string,
    opts: { detail?: (r: OursRun) => string | undefined; okCodes?: number[] } = {},
  ): Promise<OursRun | null> {
    if (this.timedOut.has(p.id)) {
      p.ours.push({ seconds: null, status: "skipped", detail: "skipped: timed out earlier" });
      return null;
    }
    const r = await runOurs(args, {
      source: this.src,
      target,
      timeoutSeconds: this.timeout(),
      ...(opts.okCodes ? { okCodes: opts.okCodes } : {}),
    });
    if (r.sample.status === "timeout") this.timedOut.add(p.id);
    const d = r.sample.status === "ok" ? opts.detail?.(r) : undefined;
    if (d) r.sample.detail = d;
    p.ours.push(r.sample);
    return r;
  }

  async reference(p: PathResult, i: number, run: () => Promise<Sample>): Promise<void> {
    p.references[i]!.samples.push(await run());
  }

  /** Ours and the references in turn: in the given order in odd rounds, reversed in even ones. */
  async alternate(round: number, steps: (() => Promise<unknown>)[]): Promise<void> {
    for (const step of round % 2 === 1 ? steps : [...steps].reverse()) await step();
  }

  syncArgs(target: string, tables: string[], extra: string[] = [], workers = this.o.workers) {
    return [
      ...["sync", "--source", this.src, "--target", target],
      ...tables.flatMap((t) => ["--table", t]),
      ...["--workers", String(workers), ...extra],
    ];
  }
}

/** Sums a numeric field over a run's --json lines (one per table). */
export function sum(r: OursRun, field: string): number {
  return r.json.reduce((a, j) => a + (typeof j[field] === "number" ? (j[field] as number) : 0), 0);
}
