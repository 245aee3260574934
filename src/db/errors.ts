/** SQLSTATE codes the engine branches on. */
export const SQLSTATE = {
  serializationFailure: "40001",
  deadlockDetected: "40P01",
  cannotConnectNow: "57P03",
  adminShutdown: "57P01",
  undefinedTable: "42P01",
  undefinedColumn: "42703",
  insufficientPrivilege: "42501",
  queryCanceled: "57014",
  lockNotAvailable: "55P03",
  uniqueViolation: "23505",
  notNullViolation: "23502",
} as const;

/**
 * Errors worth retrying the whole table run for: recovery conflicts on a
 * standby (40001), deadlocks, a server that is starting or restarting, and
 * dropped connections (class 08).
 */
const RETRYABLE = new Set<string>([
  SQLSTATE.serializationFailure,
  SQLSTATE.deadlockDetected,
  SQLSTATE.cannotConnectNow,
  SQLSTATE.adminShutdown,
]);

export function sqlState(err: unknown): string | undefined {
  let e: unknown = err;
  for (let depth = 0; e && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

export function isRetryable(err: unknown): boolean {
  const code = sqlState(err);
  if (code) return RETRYABLE.has(code) || code.startsWith("08");
  const msg = err instanceof Error ? err.message : "";
  return /Connection terminated|ECONNRESET|EPIPE|not queryable/.test(msg);
}
