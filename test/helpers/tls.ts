import { execFile } from "node:child_process";
import { chmod, chown, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { postgresIds } from "../../src/servers/cluster.js";
import type { Cluster } from "./cluster.js";

const exec = promisify(execFile);

async function openssl(args: string[], cwd: string): Promise<void> {
  await exec("openssl", args, { cwd });
}

/** A CA: ca.crt and ca.key under `dir`, named `name`. */
export async function makeCa(dir: string, name: string): Promise<string> {
  await openssl(
    [
      ...["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"],
      ...["-subj", `/CN=${name}`, "-keyout", `${name}.key`, "-out", `${name}.crt`],
      ...["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign"],
    ],
    dir,
  );
  return join(dir, `${name}.crt`);
}

/**
 * A certificate and key `name`.crt / `name`.key signed by CA `ca` (made by
 * makeCa in the same directory), or self-signed without `ca`. `san` are
 * subjectAltName entries such as DNS:localhost.
 */
export async function makeCert(
  dir: string,
  name: string,
  opts: { cn: string; ca?: string; san?: string[] },
): Promise<{ cert: string; key: string }> {
  const san = opts.san?.length ? ["-addext", `subjectAltName=${opts.san.join(",")}`] : [];
  if (!opts.ca) {
    await openssl(
      [
        ...["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"],
        ...["-subj", `/CN=${opts.cn}`, "-keyout", `${name}.key`, "-out", `${name}.crt`, ...san],
      ],
      dir,
    );
  } else {
    await openssl(
      [
        ...["req", "-new", "-newkey", "rsa:2048", "-nodes"],
        ...["-subj", `/CN=${opts.cn}`, "-keyout", `${name}.key`, "-out", `${name}.csr`, ...san],
      ],
      dir,
    );
    await openssl(
      [
        ...["x509", "-req", "-in", `${name}.csr`, "-days", "2", "-copy_extensions", "copy"],
        ...["-CA", `${opts.ca}.crt`, "-CAkey", `${opts.ca}.key`, "-CAcreateserial"],
        ...["-out", `${name}.crt`],
      ],
      dir,
    );
  }
  await chmod(join(dir, `${name}.key`), 0o600);
  return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
}

/** Gives the server's user a file it must read (its key must be its own, mode 0600). */
async function handToPostgres(path: string): Promise<void> {
  const ids = postgresIds();
  if (ids) await chown(path, ids.uid, ids.gid);
}

/**
 * Runs SQL through the server's Unix socket, which pg_hba.conf's `local`
 * line keeps open to the tests whatever it says about TCP.
 */
export async function socketSql<T extends pg.QueryResultRow = pg.QueryResultRow>(
  cluster: Cluster,
  text: string,
  params: unknown[] = [],
  database = "postgres",
): Promise<T[]> {
  const c = new pg.Client({ host: cluster.dir, port: cluster.port, user: "postgres", database });
  await c.connect();
  try {
    return (await c.query<T>(text, params)).rows;
  } finally {
    await c.end();
  }
}

/**
 * Turns TLS on with this certificate (and `clientCa` to verify client
 * certificates), replaces pg_hba.conf with `local all all trust` and `hba`,
 * and reloads.
 */
export async function configureServer(
  cluster: Cluster,
  opts: { cert: string; key: string; clientCa?: string; hba: string[] },
): Promise<void> {
  for (const f of [opts.cert, opts.key, opts.clientCa]) if (f) await handToPostgres(f);
  for (const [name, value] of [
    ["ssl_cert_file", opts.cert],
    ["ssl_key_file", opts.key],
    ["ssl_ca_file", opts.clientCa ?? ""],
    ["ssl", "on"],
  ] as const) {
    await socketSql(cluster, `ALTER SYSTEM SET ${name} = ${pg.escapeLiteral(value)}`);
  }
  await writeHba(cluster, opts.hba);
}

/** Replaces pg_hba.conf (keeping the tests' socket open) and reloads. */
export async function writeHba(cluster: Cluster, hba: string[]): Promise<void> {
  const path = join(cluster.dataDir, "pg_hba.conf");
  await writeFile(path, ["local all all trust", ...hba].join("\n") + "\n");
  await handToPostgres(path);
  await reload(cluster);
}

let reloads = 0;

/**
 * Reloads the configuration and waits until new sessions see it: the
 * postmaster rereads its files when it gets to the signal, and a session
 * started before that would still use the old pg_hba.conf.
 */
async function reload(cluster: Cluster): Promise<void> {
  const mark = String(++reloads);
  await socketSql(cluster, `ALTER SYSTEM SET xmin_sync_test.reload = '${mark}'`);
  await socketSql(cluster, "SELECT pg_reload_conf()");
  for (let i = 0; i < 500; i++) {
    const [row] = await socketSql<{ v: string | null }>(
      cluster,
      "SELECT current_setting('xmin_sync_test.reload', true) AS v",
    );
    if (row?.v === mark) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error("the server did not reload its configuration");
}
