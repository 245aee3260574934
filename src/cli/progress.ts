import type cliProgress from "cli-progress";
import { terminal, type Logger } from "../log.js";
import type { ProgressEvent } from "../sync/types.js";

/** A table shows on screen once its run has taken this long: small tables come and go unseen. */
const SHOW_AFTER_MS = 500;
/** Lines of progress on screen at most; the table heard from least recently gives way. */
const MAX_LINES = 8;
const LOG_EVERY_MS = 10_000;
const SPINNER = ["|", "/", "-", "\\"];
const BAR_WIDTH = 20;
const NAME_WIDTH = 32;

const mb = (bytes: number) => (bytes / 1048576).toFixed(0);

interface Seen {
  event: ProgressEvent;
  firstAt: number;
  phaseAt: number;
  lastAt: number;
  lastLog: number;
  bar?: cliProgress.SingleBar;
}

/**
 * Progress of every long phase of a table's run. On a terminal, a line per
 * table on stderr: a bar where a total is known (a full copy against the
 * table's size on disk; index builds and merge slices by step), otherwise
 * what is happening with a spinner, MB so far and the time in the phase.
 * Log lines print above the bars while they show. In logs, a line per
 * table every 10 seconds.
 */
export async function createProgress(logger: Logger, opts: { tty: boolean }) {
  // The bars' library loads only for a terminal: a scheduled run starts sooner.
  const library = opts.tty ? (await import("cli-progress")).default : undefined;
  const tables = new Map<string, Seen>();
  let bars: cliProgress.MultiBar | undefined;
  const write = terminal.write;
  // Names padded to the longest on screen, so a line fits an 80-column terminal.
  let nameWidth = 0;

  /** A table's run ended (its last log line says so): its line goes. */
  const finished = (table: string) => {
    const seen = tables.get(table);
    if (seen?.bar) bars?.remove(seen.bar);
    tables.delete(table);
  };
  terminal.onRecord = (r) => {
    if (typeof r.table === "string" && (r.msg === "committed" || Number(r.level) >= 50))
      finished(r.table);
  };

  const screen = (): cliProgress.MultiBar => {
    if (bars) return bars;
    bars = new library!.MultiBar({
      stream: process.stderr,
      // A line wider than the terminal would wrap and break the redraw.
      format: (_options, params, payload: { table: string }) =>
        render(tables.get(payload.table), nameWidth).slice(0, Math.max(20, params.maxWidth - 1)),
      hideCursor: true,
      clearOnComplete: true,
      fps: 5,
    });
    // Log lines go above the bars while they show (multibar.log redraws them below).
    terminal.write = (line) => bars!.log(line.endsWith("\n") ? line : `${line}\n`);
    return bars;
  };

  const onProgress = (e: ProgressEvent) => {
    const now = Date.now();
    let seen = tables.get(e.table);
    if (!seen) {
      seen = { event: e, firstAt: now, phaseAt: now, lastAt: now, lastLog: now };
      tables.set(e.table, seen);
    }
    if (seen.event.phase !== e.phase) seen.phaseAt = now;
    seen.event = e;
    seen.lastAt = now;
    if (opts.tty) {
      if (!seen.bar && now - seen.firstAt >= SHOW_AFTER_MS) {
        const shown = [...tables.values()].filter((t) => t.bar);
        if (shown.length >= MAX_LINES) {
          const stale = shown.reduce((a, b) => (a.lastAt <= b.lastAt ? a : b));
          screen().remove(stale.bar!);
          delete stale.bar;
        }
        nameWidth = Math.min(NAME_WIDTH, Math.max(nameWidth, e.table.length));
        seen.bar = screen().create(1, 0, { table: e.table });
      }
      seen.bar?.update(0, { table: e.table });
    } else if (now - seen.lastLog >= LOG_EVERY_MS) {
      seen.lastLog = now;
      logger.info({ table: e.table, ...logFields(seen, now) }, e.phase);
    }
  };

  return {
    onProgress,
    stop() {
      bars?.stop();
      terminal.write = write;
      terminal.onRecord = undefined;
    },
  };
}

/** A full copy's bytes against the table's size: the one phase whose total is known in bytes. */
const byteBar = (e: ProgressEvent) =>
  e.phase === "copy" && e.mode === "full" && e.estimatedBytes > 0;

const rate = (s: Seen, now: number) => s.event.bytes / Math.max(0.001, (now - s.phaseAt) / 1000);

/** One line for a table. */
function render(s: Seen | undefined, width: number): string {
  if (!s) return "";
  const now = Date.now();
  const e = s.event;
  const name = e.table.length > width ? `${e.table.slice(0, width - 1)}…` : e.table.padEnd(width);
  const phase = e.phase.padEnd(7);
  const secs = `${Math.round((now - s.phaseAt) / 1000)}s`;
  if (byteBar(e)) {
    const total = Math.max(e.estimatedBytes, e.bytes);
    const r = rate(s, now);
    const eta = r > 0 ? `ETA ${Math.max(0, Math.round((total - e.bytes) / r))}s` : "";
    return `${name} ${phase} ${bar(e.bytes / total)} ${mb(e.bytes)}/${mb(total)} MB ${mb(r)} MB/s ${eta}`.trimEnd();
  }
  const spin = SPINNER[Math.floor(now / 250) % SPINNER.length];
  if (e.step && e.step.total > 1) {
    return `${name} ${phase} ${bar(e.step.done / e.step.total)} ${e.step.done}/${e.step.total} ${spin} ${secs}`;
  }
  const bytes = e.bytes > 0 ? `${mb(e.bytes)} MB ${mb(rate(s, now))} MB/s ` : "";
  return `${name} ${phase} ${spin} ${bytes}${secs}`;
}

function bar(fraction: number): string {
  const f = Math.min(1, Math.max(0, fraction));
  const full = Math.round(f * BAR_WIDTH);
  return `|${"█".repeat(full)}${"░".repeat(BAR_WIDTH - full)}| ${String(Math.floor(f * 100)).padStart(3)}%`;
}

function logFields(s: Seen, now: number): Record<string, unknown> {
  const e = s.event;
  return {
    mode: e.mode,
    seconds: Math.round((now - s.phaseAt) / 1000),
    ...(e.bytes > 0
      ? { mb: Number(mb(e.bytes)), mbPerSecond: Number((rate(s, now) / 1048576).toFixed(1)) }
      : {}),
    ...(byteBar(e) ? { percentOfTableSize: Math.round((100 * e.bytes) / e.estimatedBytes) } : {}),
    ...(e.step ? { done: e.step.done, of: e.step.total } : {}),
  };
}
