import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startCluster, type Cluster } from "./helpers/cluster.js";
import { assertOneLineError } from "./helpers/one-line.js";
import {
  createVendorAndWarehouse,
  socketSql,
  syncAndCount,
  writeHba,
} from "./helpers/conn-server.js";
import { configureServer, makeCa, makeCert } from "./helpers/tls.js";

/**
 * TLS as libpq does it, against a server that accepts only TLS (hostssl):
 * sslmode prefer (the default), require, verify-ca and verify-full, with the
 * CA from the string or PGSSLROOTCERT, a client certificate, a wrong CA, a
 * self-signed server certificate, and a server without TLS. Source and
 * target are two databases of the one server. The server certificate names
 * localhost but not 127.0.0.1: verify-ca accepts it at 127.0.0.1,
 * verify-full only at localhost.
 */

const PASSWORD = "tls-Pa55:word@/?";

describe("TLS connections (libpq sslmode)", () => {
  let server: Cluster;
  let dir: string;
  let ca: string;
  let otherCa: string;
  let client: { cert: string; key: string };
  let serverCert: { cert: string; key: string };

  const url = (db: string, query = "", host = "127.0.0.1") =>
    `postgres://loader:${encodeURIComponent(PASSWORD)}@${host}:${server.port}/${db}${query}`;
  const keywords = (db: string, extra = "") =>
    `host=127.0.0.1 port=${server.port} dbname=${db} user=loader password='${PASSWORD}' ${extra}`;

  async function sync(source: string, target: string, env: NodeJS.ProcessEnv = {}) {
    const r = await syncAndCount(server, "wh", { source, target, table: "fds.ticker", env });
    assert.doesNotMatch(r.stdout + r.stderr, /Pa55/, "no password in any output");
    return r;
  }

  before(async () => {
    server = await startCluster({ version: "17" });
    dir = await mkdtemp(join(tmpdir(), "xmin-sync-tls-"));
    await chmod(dir, 0o755);
    ca = await makeCa(dir, "ca");
    otherCa = await makeCa(dir, "otherca");
    serverCert = await makeCert(dir, "server", {
      cn: "localhost",
      ca: "ca",
      san: ["DNS:localhost"],
    });
    client = await makeCert(dir, "client", { cn: "certuser", ca: "ca" });
    await createVendorAndWarehouse(server, PASSWORD, 100);
    await socketSql(server, "CREATE ROLE certuser LOGIN SUPERUSER");
    await configureServer(server, {
      ...serverCert,
      clientCa: ca,
      hba: ["hostssl all certuser 127.0.0.1/32 cert", "hostssl all all 127.0.0.1/32 scram-sha-256"],
    });
  });
  after(async () => {
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("no sslmode (prefer) tries TLS first; sslmode=require encrypts without verifying, as psql", async () => {
    const r = await sync(url("vendor"), keywords("wh", "sslmode=require"));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.rows, 100);
  });

  test("verify-ca checks the chain but not the name; verify-full (PGSSLMODE, PGSSLROOTCERT) both", async () => {
    const env = { PGSSLMODE: "verify-full", PGSSLROOTCERT: ca };
    // The string's sslmode and sslrootcert win over the environment's.
    const r = await sync(
      keywords("vendor", `sslmode=verify-ca sslrootcert='${ca}'`),
      url("wh", "", "localhost"),
      env,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.rows, 100);

    const byAddress = await sync(url("vendor"), url("wh", "", "localhost"), env);
    assertOneLineError(
      byAddress,
      1,
      /cannot connect to source postgres:\/\/loader:\*\*\*@127\.0\.0\.1:\d+\/vendor: server certificate not accepted \(sslmode=verify-full, sslrootcert .*ca\.crt\): .*127\.0\.0\.1/,
    );
  });

  test("a wrong CA fails clearly; so does one that is missing", async () => {
    const wrong = await sync(
      url("vendor"),
      keywords("wh", `sslmode=verify-ca sslrootcert=${otherCa}`),
    );
    assertOneLineError(
      wrong,
      1,
      /cannot connect to target postgres:\/\/loader:\*\*\*@127\.0\.0\.1:\d+\/wh: server certificate not accepted \(sslmode=verify-ca, sslrootcert .*otherca\.crt\): /,
    );
    // A root certificate at hand makes require check the chain too, as libpq.
    const requireWrong = await sync(
      url("vendor", `?sslmode=require&sslrootcert=${otherCa}`),
      url("wh"),
    );
    assertOneLineError(requireWrong, 1, /cannot connect to source .*certificate not accepted/);

    const missing = await sync(url("vendor", "?sslrootcert=/nonexistent/ca.crt"), url("wh"));
    assertOneLineError(
      missing,
      2,
      /^xmin-sync: source connection: sslrootcert file "\/nonexistent\/ca\.crt" does not exist$/,
    );
    const missingEnv = await sync(url("vendor"), url("wh"), { PGSSLCERT: "/nonexistent/c.crt" });
    assertOneLineError(
      missingEnv,
      2,
      /source connection: sslcert file "\/nonexistent\/c\.crt" does not exist/,
    );
    const noCa = await sync(url("vendor"), url("wh", "?sslmode=verify-full"), { HOME: dir });
    assertOneLineError(
      noCa,
      2,
      /^xmin-sync: target connection: sslmode=verify-full needs the server's root certificate/,
    );
  });

  test("sslmode=disable against a hostssl-only server: the server's refusal", async () => {
    const r = await sync(url("vendor", "?sslmode=disable"), url("wh"));
    assertOneLineError(r, 1, /cannot connect to source .*no pg_hba\.conf entry .*no encryption/);
  });

  test("a client certificate (sslcert, sslkey) authenticates a cert-only role", async () => {
    const cert = `host=127.0.0.1 port=${server.port} user=certuser sslmode=verify-ca sslrootcert=${ca} sslcert=${client.cert} sslkey=${client.key}`;
    const r = await sync(`${cert} dbname=vendor`, `${cert} dbname=wh`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.rows, 100);
  });

  test("a self-signed server certificate: require connects, verify-ca refuses it", async () => {
    const self = await makeCert(dir, "self", { cn: "localhost", san: ["DNS:localhost"] });
    await configureServer(server, {
      ...self,
      hba: ["hostssl all all 127.0.0.1/32 scram-sha-256"],
    });
    try {
      const r = await sync(url("vendor", "?sslmode=require"), url("wh"));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.rows, 100);
      const strict = await sync(url("vendor", `?sslmode=verify-ca&sslrootcert=${ca}`), url("wh"));
      assertOneLineError(
        strict,
        1,
        /certificate not accepted \(sslmode=verify-ca.*\): self-signed certificate/,
      );
    } finally {
      await configureServer(server, {
        ...serverCert,
        clientCa: ca,
        hba: ["hostssl all all 127.0.0.1/32 scram-sha-256"],
      });
    }
  });

  test("a server without TLS: prefer falls back to plain, require says why it cannot", async () => {
    await socketSql(server, "ALTER SYSTEM SET ssl = off");
    await writeHba(server, ["host all all 127.0.0.1/32 scram-sha-256"]);
    // allow tries plain first; prefer falls back to it.
    const r = await sync(url("vendor"), url("wh", "?sslmode=allow"));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.rows, 100);
    const required = await sync(url("vendor", "?sslmode=require"), url("wh"));
    assertOneLineError(
      required,
      1,
      /cannot connect to source postgres:\/\/loader:\*\*\*@127\.0\.0\.1:\d+\/vendor: the server does not accept TLS \(sslmode=require\)$/,
    );
  });
});
