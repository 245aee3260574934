import cliProgress from "cli-progress";
import type { Logger } from "../log.js";
import type { ProgressEvent } from "../sync/types.js";

/** Copies smaller than this finish too fast for a progress display to help. */
const MIN_BYTES = 32 * 1024 * 1024;
const LOG_EVERY_MS = 10_000;

const mb = (bytes: number) => (bytes / 1048576).toFixed(0);

/**
 * Progress of long full copies: on a terminal, a bar per table on stderr
 * (MB, %, rate, ETA against the table's size on disk, a rough total); in
 * logs, a line per table every 10 seconds. Incremental runs scan with a
 * filter, so bytes copied say nothing about how far along they are: those
 * are shown by the run's log lines only.
 */
export function createProgress(logger: Logger, opts: { tty: boolean }) {
  const started = new Map<string, number>();
  const lastLog = new Map<string, number>();
  let bars: cliProgress.MultiBar | undefined;
  const barOf = new Map<string, cliProgress.SingleBar>();

  const onProgress = (e: ProgressEvent) => {
    if (e.mode !== "full" || e.estimatedBytes < MIN_BYTES) return;
    const now = Date.now();
    if (!started.has(e.table)) started.set(e.table, now);
    const seconds = Math.max(0.001, (now - started.get(e.table)!) / 1000);
    const rate = e.bytes / seconds;
    if (opts.tty) {
      bars ??= new cliProgress.MultiBar(
        {
          stream: process.stderr,
          format:
            "{table} |{bar}| {percentage}% {mb}/{total_mb} MB {rate} MB/s ETA {eta_formatted}",
          hideCursor: true,
          clearOnComplete: false,
          fps: 5,
        },
        cliProgress.Presets.shades_classic,
      );
      let bar = barOf.get(e.table);
      if (!bar) {
        bar = bars.create(e.estimatedBytes, 0, { table: e.table, total_mb: mb(e.estimatedBytes) });
        barOf.set(e.table, bar);
      }
      bar.setTotal(Math.max(e.estimatedBytes, e.bytes));
      bar.update(e.bytes, { mb: mb(e.bytes), rate: mb(rate) });
    } else if (now - (lastLog.get(e.table) ?? started.get(e.table)!) >= LOG_EVERY_MS) {
      lastLog.set(e.table, now);
      logger.info(
        {
          table: e.table,
          mb: Number(mb(e.bytes)),
          mbPerSecond: Number((rate / 1048576).toFixed(1)),
          percentOfTableSize: Math.round((100 * e.bytes) / e.estimatedBytes),
        },
        "copying",
      );
    }
  };

  return {
    onProgress,
    stop() {
      bars?.stop();
    },
  };
}
