import { test } from "node:test";
import assert from "node:assert/strict";
import { formatFaultReport, runFaults } from "./helpers/faults.js";
import { systemPostgresSkip } from "./helpers/cluster.js";

/**
 * The fault harness (test/helpers/faults.ts), short: one SIGKILL aimed at
 * each phase of a run under a live pgbench load, terminated sessions on
 * each side, an immediate restart of the target and a SIGTERM; then
 * two clean runs, and the copy equals the source row for row, with no work
 * table left. The long version, with both servers restarted and a standby
 * promoted mid-run, is `node scripts/faults.mjs --kills N`.
 */
test(
  "killed and faulted anywhere under load, two clean runs leave the copy exact",
  { skip: systemPostgresSkip(), timeout: 600_000 },
  async () => {
    const report = await runFaults({
      seed: Number(process.env.FAULTS_SEED ?? 20261127),
      kills: 7,
      rows: 60_000,
      faults: ["terminate-target-merge", "terminate-source-copy", "restart-target", "sigterm"],
      log: process.env.FAULTS_LOG ? (l) => process.stderr.write(`faults: ${l}\n`) : undefined,
    });
    const summary = formatFaultReport(report);
    assert.ok(report.kills.length >= 6, `at least 6 kills landed:\n${summary}`);
    for (const t of report.tables) {
      assert.deepEqual(
        { lost: t.lost, extra: t.extra, duplicated: t.duplicated, different: t.different },
        { lost: 0, extra: 0, duplicated: 0, different: 0 },
        `${t.table} (samples ${t.samples.join(", ")}):\n${summary}`,
      );
      assert.equal(t.targetRows, t.sourceRows);
    }
    assert.equal(report.workTablesLeft, 0, summary);
    assert.ok(report.faults.filter((f) => f.hit).length >= 3, `faults hit:\n${summary}`);
    const sigterm = report.faults.find((f) => f.fault === "sigterm");
    if (sigterm?.hit) assert.equal(sigterm.exitCode, 143, summary);
  },
);
