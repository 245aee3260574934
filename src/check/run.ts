import type pg from "pg";
import { closeSoon, connect, endClient, openBoth } from "../db/connect.js";
import { isRetryable } from "../db/errors.js";
import { displayName } from "../db/quote.js";
import { InputError } from "../input-error.js";
import { failedResult } from "../sync/failed.js";
import { silentLogger, type Logger } from "../log.js";
import type { TableResult, TableSpec } from "../sync/types.js";
import { warning, type Finding } from "./findings.js";
import { readServerFacts, serverFindings } from "./server.js";
import { checkSourceTables } from "./source.js";
import { checkTarget, readTarget } from "./target.js";

export interface CheckOptions {
  source: string;
  target: string;
  tables: TableSpec[];
}

const ATTEMPTS = 3;

/**
 * Everything a run needs, checked on both servers without writing or
 * scanning anything: a few catalog queries per side. Findings come
 * run-wide first, then per table (source, then target), in the run's order.
 * A read a standby's recovery conflict cancels (40001), or a dropped
 * connection, is tried again, as the sync's own reads are.
 */
export async function check(opts: CheckOptions): Promise<Finding[]> {
  return (await checkKeeping(opts, false)).findings;
}

/**
 * The preflight's connections and what it read of the servers, handed to
 * the run: a connection costs a start-up round, and these have the
 * catalogs the run reads first in their caches.
 */
export interface Handoff {
  source: pg.Client;
  target: pg.Client;
  /** Connections left for us on the tighter of the two servers. */
  freeConnections: number;
}

/** The handoff's connections, for one taker: the handoff holds none after. */
export function takeHandoff(h: Partial<Handoff>): { source?: pg.Client; target?: pg.Client } {
  const { source, target } = h;
  h.source = h.target = undefined;
  return { ...(source ? { source } : {}), ...(target ? { target } : {}) };
}

/** Closes what a handoff holds that the run did not take. */
export function closeHandoff(h: Partial<Handoff>): void {
  const { source, target } = takeHandoff(h);
  if (source) closeSoon(source);
  if (target) closeSoon(target);
}

async function checkKeeping(
  opts: CheckOptions,
  keep: boolean,
): Promise<{ findings: Finding[]; kept?: Handoff }> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await checkOnce(opts, keep);
    } catch (err) {
      if (attempt >= ATTEMPTS || !isRetryable(err)) throw err;
      await new Promise((r) => setTimeout(r, 100 * 2 ** attempt * (0.5 + Math.random())));
    }
  }
}

async function checkOnce(
  opts: CheckOptions,
  keep: boolean,
): Promise<{ findings: Finding[]; kept?: Handoff }> {
  const [source, target] = await connectBoth(opts);
  let kept: Handoff | undefined;
  try {
    // Each side's reads on its own connection, at once: the round trips of a
    // busy server add up, and every sync pays them.
    const [[sf, src], [tf, read]] = await Promise.all([
      readServerFacts(source).then(
        async (f) => [f, await checkSourceTables(source, f.role, opts.tables)] as const,
      ),
      readServerFacts(target).then(
        async (f) => [f, await readTarget(target, opts.tables)] as const,
      ),
    ]);
    const findings = [...serverFindings("source", sf), ...serverFindings("target", tf)];
    if (sf.encoding !== tf.encoding) {
      findings.push(
        warning(
          "target",
          `encoding ${tf.encoding} differs from the source's ${sf.encoding}: rows it cannot represent fail to copy, and validate --deep needs one encoding`,
        ),
      );
    }
    findings.push(
      ...src.findings,
      ...(await checkTarget(target, read, tf, opts.tables, src.facts)),
    );
    // Stable: run-wide findings keep their order; a table's source findings
    // come before its target's. (Not localeCompare: its first call loads
    // ICU's collator, 10 ms of every sync's start.)
    const bySide = (a: Finding, b: Finding) =>
      a.server === b.server ? 0 : a.server === "source" ? -1 : 1;
    findings.sort(
      (a, b) => (a.index ?? -1) - (b.index ?? -1) || (a.index === undefined ? 0 : bySide(a, b)),
    );
    if (keep) {
      const freeConnections = Math.min(sf.freeConnections, tf.freeConnections);
      kept = { source, target, freeConnections };
    }
    return { findings, ...(kept ? { kept } : {}) };
  } finally {
    if (!kept) closeHandoff({ source, target });
  }
}

function connectBoth(opts: CheckOptions): Promise<[pg.Client, pg.Client]> {
  return openBoth(connect(opts.source, "source"), connect(opts.target, "target"), [
    endClient,
    endClient,
  ]);
}

/** A problem that stops the whole run (a privilege on the project schema, a read-only target). */
export class PreflightError extends InputError {}

/**
 * The checks at the start of every sync, before anything is written. A
 * problem with the run as a whole throws; a table that cannot be synced as
 * asked gets its error result (bad input, exit 2) and the others go ahead:
 * `runnable` are those, and `results` puts their results and the refused
 * tables' back in the order asked.
 */
export async function preflight(opts: CheckOptions & { logger?: Logger }): Promise<{
  runnable: TableSpec[];
  /** The tables refused, with their results. */
  refused: { spec: TableSpec; result: TableResult }[];
  results: (ran: TableResult[]) => TableResult[];
  /** The preflight's connections, for the run to take (it closes what it leaves). */
  handoff: Handoff;
}> {
  const logger = opts.logger ?? silentLogger;
  const { findings, kept } = await checkKeeping(opts, true);
  const handoff = kept!;
  const errors = findings.filter((f) => f.level === "error");
  for (const f of findings.filter((x) => x.level === "warning")) {
    logger.warn({ server: f.server, ...(f.table ? { table: f.table } : {}) }, f.message);
  }
  const runWide = errors.filter((f) => f.index === undefined);
  if (runWide.length > 0) {
    closeHandoff(handoff);
    const more = runWide.length > 1 ? ` (and ${runWide.length - 1} more: see xmin-sync check)` : "";
    throw new PreflightError(`${runWide[0]!.server}: ${runWide[0]!.message}${more}`);
  }
  const byTable = new Map<number, Finding[]>();
  for (const f of errors) byTable.set(f.index!, [...(byTable.get(f.index!) ?? []), f]);
  const refused = opts.tables.map((spec, i) => {
    const problems = byTable.get(i);
    return problems ? refusal(spec, problems, logger) : undefined;
  });
  return {
    runnable: opts.tables.filter((_, i) => !refused[i]),
    refused: opts.tables.flatMap((spec, i) => {
      const result = refused[i];
      return result ? [{ spec, result }] : [];
    }),
    results(ran) {
      const next = ran[Symbol.iterator]();
      return refused.map((r) => r ?? (next.next().value as TableResult));
    },
    handoff,
  };
}

/** The result of a table refused before the run: bad input, nothing copied. */
function refusal(spec: TableSpec, problems: Finding[], logger: Logger): TableResult {
  const error = problems.map((f) => f.result ?? `${f.server}: ${f.message}`).join("; ");
  logger.error({ table: displayName(spec.source), err: error }, "table refused");
  return { ...failedResult(spec, error, 0), badInput: true };
}
