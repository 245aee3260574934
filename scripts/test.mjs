// Runs the test suite, then makes sure no test server outlives it: any
// cluster a crashed test left under the temp dir is stopped and removed.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

// Clusters of this run only (test/helpers/cluster.ts names their directories
// after it): other test runs on the same machine keep theirs.
process.env.XMIN_SYNC_TEST_RUN ??= String(process.pid);
const PREFIX = `xmin-sync-test-${process.env.XMIN_SYNC_TEST_RUN}-`;
const concurrency = process.env.TEST_CONCURRENCY ?? "3";
const files = process.argv.slice(2);

const result = spawnSync(
  process.execPath,
  [
    "--test",
    `--test-concurrency=${concurrency}`,
    "--test-reporter=spec",
    ...(files.length ? files : ["dist/test/"]),
  ],
  { stdio: "inherit" },
);

let swept = 0;
for (const name of readdirSync(tmpdir())) {
  if (!name.startsWith(PREFIX)) continue;
  const dir = join(tmpdir(), name);
  for (const sub of ["data", "standby"]) {
    const pidFile = join(dir, sub, "postmaster.pid");
    if (!existsSync(pidFile)) continue;
    const pid = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
    try {
      process.kill(pid, "SIGQUIT");
      swept++;
    } catch {
      /* already gone */
    }
  }
  rmSync(dir, { recursive: true, force: true });
}
if (swept > 0) console.error(`test.mjs: stopped ${swept} PostgreSQL server(s) a test left running`);

process.exit(result.status ?? 1);
