import { setMaxListeners } from "node:events";
import { connect as netConnect } from "node:net";
import type pg from "pg";

/** The backend's identity for cancel requests, set by the server at login (not in pg's types). */
interface BackendKey {
  processID: number | null;
  secretKey: number | null;
}

const CANCEL_REQUEST_CODE = 80877102;

/**
 * Asks the server to cancel the statement `client`'s backend is running, as
 * libpq's PQcancel does: a CancelRequest on a new socket, which needs no
 * login, no privilege and no connection slot. A backend that is idle
 * ignores it. Never throws: cancelling is best effort, and the caller ends
 * the connection afterwards anyway.
 */
export function sendCancel(client: pg.Client, timeoutMs = 5_000): Promise<void> {
  const { processID, secretKey } = client as unknown as BackendKey;
  if (processID === null || secretKey === null) return Promise.resolve();
  const packet = Buffer.alloc(16);
  packet.writeInt32BE(16, 0);
  packet.writeInt32BE(CANCEL_REQUEST_CODE, 4);
  packet.writeInt32BE(processID, 8);
  packet.writeInt32BE(secretKey, 12);
  return new Promise((resolve) => {
    const socket = client.host.startsWith("/")
      ? netConnect(`${client.host}/.s.PGSQL.${client.port}`)
      : netConnect(client.port, client.host);
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    socket.on("connect", () => socket.end(packet));
    socket.on("close", done);
    socket.on("error", done);
  });
}

/**
 * Cancels what `client` runs on the server when `signal` aborts, so that an
 * interrupted run does not leave a backend running its COPY, MERGE or
 * DELETE (and holding its locks) after we gave up on it. Steps check the
 * signal before each long statement; this covers the one already running.
 * Stops watching when the connection ends.
 */
export function cancelOnAbort(client: pg.Client, signal: AbortSignal | undefined): void {
  if (!signal) return;
  const cancel = () => void sendCancel(client);
  if (signal.aborted) return;
  // One listener per open connection of the run: a run of a few tables on
  // a few workers has more than the 10 after which Node warns of a leak.
  setMaxListeners(0, signal);
  signal.addEventListener("abort", cancel, { once: true });
  client.once("end", () => signal.removeEventListener("abort", cancel));
}
