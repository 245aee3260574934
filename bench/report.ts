import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Sample } from "./ours.js";
import { median } from "./tools.js";

/** One path of the product, our runs and its references' runs, round by round. */
export interface PathResult {
  id: string;
  title: string;
  ours: Sample[];
  references: { name: string; samples: Sample[] }[];
  /** Show the median as a share of ours' full load (incremental and delete paths). */
  vsFullLoad?: boolean;
  notes: string[];
}

export interface BenchResult {
  date: string;
  machine: { cores: number; cpu: string; memoryGiB: number };
  server: { version: string; setup: string };
  data: { scale: number; rows: number; accountRows: number; tableMB: number };
  settings: { workers: number; runs: number; timeoutSeconds: number };
  paths: PathResult[];
  /** Full loads with fewer workers, one run each. */
  workers: { workers: number; sample: Sample }[];
}

const okSeconds = (xs: Sample[]) =>
  xs.filter((s) => s.status === "ok" && s.seconds !== null).map((s) => s.seconds!);

/** Median of the runs that finished; null when none did. */
export function medianOf(xs: Sample[]): number | null {
  const ok = okSeconds(xs);
  return ok.length ? median(ok) : null;
}

const f = (n: number | null, d = 2) => (n === null ? "–" : n.toFixed(d));

/** A median, or what stopped the runs (timeout, error) when none finished. */
function cell(xs: Sample[]): string {
  const m = medianOf(xs);
  if (m !== null) return `${f(m)} s`;
  return xs.find((s) => s.status !== "ok")?.detail ?? "not run";
}

function run(s: Sample): string {
  if (s.status === "ok") return f(s.seconds) + (s.detail ? ` (${s.detail})` : "");
  return s.detail ?? s.status;
}

function peakRss(xs: Sample[]): string {
  const r = xs.map((s) => s.peakRssMb).filter((x): x is number => x !== undefined);
  return r.length ? `${Math.max(...r)} MB` : "";
}

/** The summary table, one row per path and reference: the README's Performance section takes it whole. */
export function summaryTable(r: BenchResult): string {
  const full = r.paths.find((p) => p.id === "full");
  const fullMedian = full ? medianOf(full.ours) : null;
  const lines = [
    "| path | xmin-sync | reference | reference time | ratio | share of full load | peak RSS |",
    "|---|---|---|---|---|---|---|",
  ];
  for (const p of r.paths) {
    const ours = medianOf(p.ours);
    const share =
      p.vsFullLoad && ours !== null && fullMedian
        ? `${Math.round((100 * ours) / fullMedian)}%`
        : "";
    const refs = p.references.length ? p.references : [{ name: "–", samples: [] }];
    refs.forEach((ref, i) => {
      const theirs = medianOf(ref.samples);
      const ratio = ours !== null && theirs ? `**${f(ours / theirs)}×**` : "";
      lines.push(
        `| ${i === 0 ? p.title : ""} | ${i === 0 ? cell(p.ours) : ""} | ${ref.name} | ${ref.samples.length ? cell(ref.samples) : "not available"} | ${ratio} | ${i === 0 ? share : ""} | ${i === 0 ? peakRss(p.ours) : ""} |`,
      );
    });
  }
  return lines.join("\n");
}

/** What each reference is, for readers of the summary. */
const REFERENCES = `References, each timed as the same commands run from a shell (psql with JIT off, as ours):

- **pgcopydb clone**: the same three tables, with their keys, table and index jobs as many as our workers.
- **psql binary COPY pipe**: \`psql -c "COPY … TO STDOUT (FORMAT binary)" | psql -c "COPY … FROM STDIN (FORMAT binary)"\`, table after table, into tables without keys or indexes: a floor, not a peer.
- **by hand: COPY by xmin, staging, MERGE**: one pipe that COPYs the rows with \`age(xmin) <= age(watermark)\` out of the source into an unlogged staging table, ANALYZE, one MERGE by key into the copy pgcopydb made (a psql pipe plus keys without pgcopydb). The watermark is read before the change, as ours is.
- **by hand: COPY by updated_at, staging, MERGE**: the same, for rows whose \`updated_at\` is at or after the last high mark minus ours' 5-minute lookback, into a table beside ours.
- **by hand: COPY of keys, anti-join**: one pipe that COPYs the source's key set into an unlogged table, ANALYZE, and one \`DELETE … WHERE NOT EXISTS\` (hard) or \`UPDATE … SET deleted_at\` (soft).
- **count(*) on both sides**: the two counts at once.
- **pg_comparator**: Debian's postgresql-comparator with its pgcmp extension; \`--synchronize --do-it\` also applies the differences to the target.

Each round changes the source before its incremental and delete paths, then scans the changed table once (untimed), so that neither side pays for setting hint bits on rows just written. xmin-sync's runs sync \`pgbench_accounts\` alone (the references touch only that table too), and its delete runs are whole syncs (an incremental scan that finds no change, then the reconciliation).`;

export function toMarkdown(r: BenchResult): string {
  const lines = [
    `# xmin-sync bench, ${r.date.slice(0, 10)}, scale ${r.data.scale}`,
    "",
    `Data: pgbench shape at scale ${r.data.scale}: ${r.data.accountRows.toLocaleString("en")} account rows, three tables with keys, ${r.data.tableMB} MB on disk; ` +
      `for timestamp mode, a copy of pgbench_accounts with an indexed updated_at column.`,
    `Machine: ${r.machine.cores} cores (${r.machine.cpu}), ${r.machine.memoryGiB} GiB. Servers: PostgreSQL ${r.server.version}, ${r.server.setup}.`,
    "",
    `Each path runs xmin-sync (${r.settings.workers} worker${r.settings.workers === 1 ? "" : "s"}) and its reference one after the other, in alternating order, ` +
      `${r.settings.runs} round(s); times are medians of the rounds, the ratio is xmin-sync's time over the reference's ` +
      `(under 1: xmin-sync is faster). These machines are noisy: compare ratios measured in one session, not seconds across sessions. ` +
      `Each xmin-sync run is stopped after ${r.settings.timeoutSeconds} s and reported as timed out. ` +
      `Peak RSS is the xmin-sync process's high-water mark, the largest over the rounds.`,
    "",
    "## Summary",
    "",
    summaryTable(r),
    "",
    REFERENCES,
    "",
    "## Every run",
    "",
  ];
  for (const p of r.paths) {
    lines.push(`- **${p.title}**: xmin-sync ${p.ours.map(run).join(", ") || "not run"}`);
    for (const ref of p.references)
      lines.push(`  - ${ref.name}: ${ref.samples.map(run).join(", ") || "not available"}`);
    for (const note of p.notes) lines.push(`  - ${note}`);
  }
  if (r.workers.length > 0) {
    const full = r.paths.find((p) => p.id === "full");
    const rows = [
      ...r.workers.map((w) => ({ workers: w.workers, samples: [w.sample] })),
      ...(full ? [{ workers: r.settings.workers, samples: full.ours }] : []),
    ].map((x) => ({ ...x, seconds: medianOf(x.samples) }));
    const one = rows.find((x) => x.workers === 1)?.seconds ?? null;
    lines.push(
      "",
      "## Workers",
      "",
      "Full load of the three tables: one run for each count below the rounds' workers, the median of the rounds for theirs.",
      "",
      "| workers | time | speedup over 1 worker |",
      "|---|---|---|",
      ...rows.map(
        (x) =>
          `| ${x.workers} | ${cell(x.samples)} | ${one !== null && x.seconds !== null ? f(one / x.seconds) : ""} |`,
      ),
    );
  }
  return lines.join("\n") + "\n";
}

/** Formats Markdown as the repository's prettier does, so a table pasted into the README stays as it is. */
async function pretty(markdown: string): Promise<string> {
  try {
    const prettier = await import("prettier");
    return await prettier.format(markdown, { parser: "markdown", printWidth: 100 });
  } catch {
    return markdown;
  }
}

export async function writeResults(
  out: string,
  r: BenchResult,
): Promise<{ stem: string; markdown: string }> {
  await mkdir(out, { recursive: true });
  const stem = join(out, `${r.date.slice(0, 10)}-scale${r.data.scale}`);
  const markdown = await pretty(toMarkdown(r));
  await writeFile(`${stem}.md`, markdown);
  await writeFile(`${stem}.json`, JSON.stringify(r, null, 2) + "\n");
  return { stem, markdown };
}
