// Runs the test suite on shared servers (one per PostgreSQL version; each
// test file makes its own databases on them, test/helpers/databases.ts),
// then makes sure no test server outlives it: any cluster a crashed test
// left under the temp dir is stopped and removed.
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

// The longest files start first, so that the run does not end waiting on
// one of them started last (about 100 s each on a 2-core machine; the rest
// take under a minute). Any file not named here runs after them.
const LONGEST = [
  "schema-evolution",
  "faults",
  "fixtures",
  "cli",
  "keys",
  "source-changes",
  "signals",
  "serve",
  "secrets",
  "scale",
  "live-load",
  "lock",
];
function suiteFiles() {
  const all = readdirSync("dist/test")
    .filter((f) => f.endsWith(".test.js"))
    .sort();
  const rank = (f) => {
    const i = LONGEST.indexOf(f.replace(/\.test\.js$/, ""));
    return i === -1 ? LONGEST.length : i;
  };
  return all.sort((a, b) => rank(a) - rank(b)).map((f) => join("dist/test", f));
}

const { startCluster } = await import("../dist/test/helpers/cluster.js");
const { SHARED_SERVER_SETTINGS, sharedVersions } =
  await import("../dist/test/helpers/databases.js");
const servers = await Promise.all(
  sharedVersions().map((version) => startCluster({ version, settings: SHARED_SERVER_SETTINGS })),
);
process.env.XMIN_SYNC_TEST_SERVERS = JSON.stringify(
  Object.fromEntries(servers.map((s) => [s.version, s.url()])),
);

const result = spawnSync(
  process.execPath,
  [
    "--test",
    `--test-concurrency=${concurrency}`,
    "--test-reporter=spec",
    ...(files.length ? files : suiteFiles()),
  ],
  { stdio: "inherit" },
);

await Promise.all(servers.map((s) => s.stop()));

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
