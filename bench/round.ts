import { join } from "node:path";
import {
  ACCOUNTS,
  CURSOR_TABLE,
  deleteOnePermille,
  EMPTY_TABLES,
  injectDifferences,
  INJECTED,
  settle,
  TABLES,
  updateCursorTable,
  updateOnePercent,
} from "./data.js";
import type { OursRun, Sample } from "./ours.js";
import * as ref from "./reference.js";
import type { PathResult } from "./report.js";
import { sum, type Session } from "./session.js";
import { sql } from "./tools.js";

/** The timestamp path's target, loaded once by each side before the rounds. */
export interface CursorCopy {
  target: string;
  args: string[];
  /** The high mark the next read starts from (minus the lookback). */
  mark: string;
}

const rows = (r: OursRun) => `${sum(r, "rowsCopied")} rows`;

/**
 * One round of every path, each beside its reference. Ours writes to
 * database A, the references to B (pgcopydb's clone) and C (the psql pipe);
 * the source changes between paths as an application's would.
 */
export async function runRound(
  s: Session,
  round: number,
  cursor: CursorCopy,
  accountRows: number,
): Promise<void> {
  await sql(s.src, `VACUUM ANALYZE ${[...TABLES, CURSOR_TABLE].join(", ")}`);
  const targets = [await s.freshTarget(), await s.freshTarget(), await s.freshTarget()] as const;
  try {
    await measure(s, round, cursor, accountRows, ...targets);
  } finally {
    for (const t of targets) await s.dropTarget(t);
  }
}

async function measure(
  s: Session,
  round: number,
  cursor: CursorCopy,
  accountRows: number,
  A: string,
  B: string,
  C: string,
): Promise<void> {
  const P = s.paths;
  const src = s.src;
  const { programs } = s.o;
  const say = (what: string) => s.o.say(`round ${round}: ${what}`);

  say("full loads");
  let loaded = false;
  let cloned = false;
  await s.alternate(round, [
    async () => {
      const r = await s.ours(P.full, s.syncArgs(A, TABLES), A, { detail: rows });
      if (r) s.sawFullLoad(r.sample);
      loaded = r?.sample.status === "ok";
    },
    () =>
      s.reference(P.full, 0, async () => {
        if (!programs.pgcopydb)
          return { seconds: null, status: "skipped", detail: "pgcopydb not available" };
        const dir = join(s.o.workDir, `pgcopydb-${round}`);
        const r = await ref.pgcopydbClone(programs, src, B, s.o.workers, dir);
        cloned = r.status === "ok";
        return r;
      }),
    async () => {
      await sql(C, EMPTY_TABLES);
      await s.reference(P.full, 1, () => ref.psqlPipe(programs, src, C));
    },
  ]);
  await s.dropTarget(C);
  if (!cloned) await ref.loadWithKeys(programs, src, B);

  // Ours' later paths need its full load; without it they are skipped, not failed.
  const ours = async (
    p: PathResult,
    args: string[],
    opts: { detail?: (r: OursRun) => string | undefined; okCodes?: number[] } = {},
  ) => {
    if (loaded) return s.ours(p, args, A, opts);
    p.ours.push({ seconds: null, status: "skipped", detail: "skipped: the full load failed" });
    return null;
  };

  for (const [p, k] of [
    [P.first, 2 * round - 1],
    [P.steady, 2 * round],
  ] as const) {
    say(p.title);
    const watermark = await ref.snapshotXmin(src);
    await updateOnePercent(src, k);
    await settle(src, ACCOUNTS);
    await s.alternate(round, [
      () => ours(p, s.syncArgs(A, [ACCOUNTS]), { detail: rows }),
      () =>
        s.reference(p, 0, async () => {
          const bound = await ref.xminBound(src, watermark);
          return ref.incrementalByXmin(programs, src, B, bound);
        }),
    ]);
  }

  for (const [p, kind, d] of [
    [P.hard, "hard", 2 * round - 1],
    [P.soft, "soft", 2 * round],
  ] as const) {
    say(p.title);
    const deleted = await deleteOnePermille(src, d);
    if (kind === "soft") await sql(B, `ALTER TABLE ${ACCOUNTS} ADD COLUMN deleted_at timestamptz`);
    await s.alternate(round, [
      () =>
        ours(p, s.syncArgs(A, [ACCOUNTS], ["--deletes", kind]), {
          detail: (r) => `${sum(r, "deleted")} deleted`,
        }),
      () => s.reference(p, 0, () => ref.reconcileDeletes(programs, src, B, kind)),
    ]);
    if (round === 1) p.notes.push(`${deleted} rows deleted on the source per round`);
  }
  // The reference's copy equal to the source again, for the comparisons below (untimed).
  await sql(
    B,
    `DELETE FROM ${ACCOUNTS} WHERE deleted_at IS NOT NULL; ALTER TABLE ${ACCOUNTS} DROP COLUMN deleted_at`,
  );

  say("validate");
  const validate = ["validate", "--source", src, "--target", A, "--table", ACCOUNTS];
  await s.alternate(round, [
    () =>
      ours(P.validate, validate, {
        detail: (r) => (r.json[0]?.isSynchronized === true ? undefined : "reported a difference"),
        okCodes: [0, 1],
      }),
    () => s.reference(P.validate, 0, () => ref.countBoth(programs, src, B)),
  ]);

  if (s.o.deep) {
    for (const [p, from, to, repair] of [
      [P.deep, 0, 10, false],
      [P.repair, 10, INJECTED, true],
    ] as const) {
      say(p.title);
      for (const url of loaded ? [A, B] : [B]) await injectDifferences(url, accountRows, from, to);
      await s.alternate(round, [
        () =>
          ours(p, [...validate, "--deep", ...(repair ? ["--repair"] : [])], {
            detail: differences,
            okCodes: [1],
          }),
        () =>
          s.reference(p, 0, async (): Promise<Sample> => {
            if (!programs.comparator)
              return { seconds: null, status: "skipped", detail: "pg_comparator not available" };
            await sql(B, "CREATE EXTENSION IF NOT EXISTS pgcmp");
            return ref.comparator(programs, src, B, repair);
          }),
      ]);
    }
  }

  say(P.cursor.title);
  const previousMark = cursor.mark;
  cursor.mark = await updateCursorTable(src, round, accountRows);
  await settle(src, CURSOR_TABLE);
  await s.alternate(round, [
    () => s.ours(P.cursor, cursor.args, cursor.target, { detail: rows }),
    () =>
      s.reference(P.cursor, 0, () =>
        ref.incrementalByCursor(programs, src, cursor.target, previousMark),
      ),
  ]);
}

/** What validate --deep found and --repair did, from its report. */
function differences(r: OursRun): string {
  const deep = r.json[0]?.deep as { missing: number; extra: number; different: number } | undefined;
  const repaired = r.json[0]?.repaired as { copied: number; deleted: number } | undefined;
  return (
    (deep ? `${deep.missing} missing, ${deep.extra} extra, ${deep.different} different` : "") +
    (repaired ? `; ${repaired.copied} copied, ${repaired.deleted} deleted` : "")
  );
}
