// The fault-injection harness, long: `npm run build`, then
//   node scripts/faults.mjs [--kills 30] [--seed 1] [--rows 300000] [--rate 100] [--json FILE]
// SIGKILLs at seeded moments of every phase of a run under a pgbench load,
// every other fault once (terminated sessions on either side, immediate
// restarts of either server, SIGINT/SIGTERM, a standby promoted mid-run),
// two clean runs, then source and target compared row by row. Prints a
// Markdown summary; exits 1 if any row was lost, extra, duplicated or
// different, or a work table was left. Needs Debian's PostgreSQL 15 tools
// (pgbench, pg_basebackup) in /usr/lib/postgresql/15/bin.
import { writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { FAULTS, formatFaultReport, runFaults } from "../dist/test/helpers/faults.js";

const { values } = parseArgs({
  options: {
    kills: { type: "string", default: "30" },
    seed: { type: "string", default: String(Date.now() % 100000) },
    rows: { type: "string", default: "300000" },
    rate: { type: "string", default: "100" },
    json: { type: "string" },
    quiet: { type: "boolean", default: false },
  },
});
const number = (name) => {
  const n = Number(values[name]);
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write(`faults: --${name} takes a whole number of at least 1\n`);
    process.exit(2);
  }
  return n;
};

const report = await runFaults({
  kills: number("kills"),
  seed: number("seed"),
  rows: number("rows"),
  loadRate: number("rate"),
  faults: FAULTS,
  log: values.quiet ? undefined : (line) => process.stderr.write(`faults: ${line}\n`),
});
process.stdout.write(formatFaultReport(report));
if (values.json) await writeFile(values.json, JSON.stringify(report, null, 2) + "\n");
const wrong = report.tables.some((t) => t.lost + t.extra + t.duplicated + t.different > 0);
process.exit(wrong || report.workTablesLeft > 0 ? 1 : 0);
