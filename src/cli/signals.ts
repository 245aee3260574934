import type { TableResult } from "../sync/types.js";

/** The shell's convention: 128 + the signal's number. */
export const SIGNAL_EXIT_CODE = { SIGINT: 130, SIGTERM: 143 } as const;
type StopSignal = keyof typeof SIGNAL_EXIT_CODE;

/** A run should have wound down well before this after a signal; if not, exit anyway. */
const FORCE_EXIT_MS = 15_000;

export interface Interrupt {
  /** Aborts on the first SIGINT or SIGTERM. */
  signal: AbortSignal;
  /** The signal received, if any. */
  received(): StopSignal | null;
  /** Stops listening (the default handlers come back). */
  dispose(): void;
}

/**
 * SIGINT and SIGTERM stop a run: the first aborts it (its statements are
 * cancelled on both servers, its transactions rolled back, its locks
 * released, and the caller says so in one line); a second one, or a run
 * that has not stopped after 15 s, exits at once.
 */
export function interruptOnSignals(): Interrupt {
  const controller = new AbortController();
  let received: StopSignal | null = null;
  const onSignal = (sig: StopSignal) => {
    if (received) process.exit(SIGNAL_EXIT_CODE[received]);
    received = sig;
    controller.abort(new Error(`interrupted by ${sig}`));
    setTimeout(() => {
      process.stderr.write(
        `xmin-sync: interrupted by ${sig}, and the run did not stop within ${FORCE_EXIT_MS / 1000}s: exiting; the next run resumes safely\n`,
      );
      process.exit(SIGNAL_EXIT_CODE[sig]);
    }, FORCE_EXIT_MS).unref();
  };
  const onInt = () => onSignal("SIGINT");
  const onTerm = () => onSignal("SIGTERM");
  process.on("SIGINT", onInt);
  process.on("SIGTERM", onTerm);
  return {
    signal: controller.signal,
    received: () => received,
    dispose() {
      process.off("SIGINT", onInt);
      process.off("SIGTERM", onTerm);
    },
  };
}

/** The one line an interrupted run prints: what it was doing, and that nothing is left half-done. */
export function interruptedLine(sig: StopSignal, results: TableResult[] = []): string {
  const at = results.filter((r) => r.interrupted).map((r) => `${r.table} while ${r.interrupted}`);
  return (
    `xmin-sync: interrupted by ${sig}` +
    (at.length > 0 ? ` (${at.join("; ")})` : "") +
    ": statements cancelled, transactions rolled back, locks released; the next run resumes safely"
  );
}
