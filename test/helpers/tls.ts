import { execFile } from "node:child_process";
import { chmod } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import type { Cluster } from "./cluster.js";
import { handToPostgres, socketSql, writeHba } from "./conn-server.js";

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
