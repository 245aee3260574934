import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { describeError } from "../db/connect.js";
import { parseQualifiedName } from "../db/quote.js";
import { InputError } from "../input-error.js";
import type { Logger } from "../log.js";
import type { FleetMetrics } from "./metrics.js";
import { STATUS_PAGE } from "./page.js";
import type { Check, FleetStatus } from "./tables.js";

export interface Listen {
  host: string;
  port: number;
}

/** `HOST:PORT`, `:PORT` or `PORT` (then 127.0.0.1); `[::1]:PORT` for IPv6. */
export function parseListen(value: string): Listen {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(value) ?? /^()()(\d+)$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !Number.isInteger(port) || port > 65535) {
    throw new InputError(
      `--http takes HOST:PORT (for example 127.0.0.1:9187 or 0.0.0.0:9187), not ${JSON.stringify(value)}`,
    );
  }
  return { host: m[1] || m[2] || "127.0.0.1", port };
}

export interface ServerOptions {
  listen: Listen;
  status: FleetStatus;
  metrics: FleetMetrics;
  logger: Logger;
  /** More databases /healthz checks (the worker's control database). */
  extraHealth?: () => Promise<Record<string, Check>>;
}

export interface RunningServer {
  url: string;
  close(): Promise<void>;
}

/** The HTTP endpoint: /, /api/tables, /api/history, /metrics, /healthz. */
export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const server = createServer((req, res) => {
    handle(opts, req, res).catch((err) => {
      opts.logger.warn({ url: req.url, err: describeError(err) }, "http request failed");
      if (!res.headersSent) send(res, 500, "text/plain", `${describeError(err)}\n`);
      else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) =>
      reject(new Error(`cannot listen on ${opts.listen.host}:${opts.listen.port}: ${err.message}`)),
    );
    server.listen(opts.listen.port, opts.listen.host, resolve);
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  const url = `http://${host}:${addr.port}`;
  opts.logger.info({ url }, `serving the status page and metrics on ${url}`);
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function handle(opts: ServerOptions, req: IncomingMessage, res: ServerResponse) {
  const url = new URL(req.url ?? "/", "http://localhost");
  if (req.method !== "GET" && req.method !== "HEAD") {
    return send(res, 405, "text/plain", "only GET\n");
  }
  switch (url.pathname) {
    case "/":
      return send(res, 200, "text/html; charset=utf-8", STATUS_PAGE);
    case "/api/tables":
      return json(res, 200, await opts.status.view());
    case "/api/history": {
      const table = url.searchParams.get("table");
      if (!table) return json(res, 400, { error: "give ?table=schema.table" });
      let name;
      try {
        name = parseQualifiedName(table);
      } catch (err) {
        return json(res, 400, { error: describeError(err) });
      }
      const limit = Math.min(1000, Math.max(1, Number(url.searchParams.get("limit") ?? 50) || 50));
      return json(res, 200, await opts.status.history(name, limit));
    }
    case "/metrics":
      return send(res, 200, opts.metrics.contentType, await opts.metrics.text());
    case "/healthz": {
      const [own, extra] = await Promise.all([
        opts.status.health(),
        opts.extraHealth?.() ?? Promise.resolve({}),
      ]);
      const checks: Record<string, Check> = { ...own, ...extra };
      const ok = Object.values(checks).every((c) => c.ok);
      return json(res, ok ? 200 : 503, { ok, ...checks });
    }
    default:
      return send(res, 404, "text/plain", "not found\n");
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, "application/json", JSON.stringify(body));
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, {
    "content-type": type,
    "cache-control": "no-store",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}
