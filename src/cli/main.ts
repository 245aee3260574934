#!/usr/bin/env node
// First: evaluated before the imports that load pg.
import "./navigator.js";
import { main } from "./program.js";

// A reader that stops early (`xmin-sync --help | head`) closes the pipe:
// the rest of the output is dropped, and a run goes on to its own end and
// exit code, not to a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE" || err.code === "ERR_STREAM_DESTROYED") return;
    throw err;
  });
}

process.exitCode = await main(process.argv);

// For `xmin-sync bench`, which runs syncs as child processes and reports
// their peak memory: the kernel's high-water mark of this process.
if (process.env.XMIN_SYNC_REPORT_RSS === "1") {
  process.stderr.write(`xmin-sync-max-rss-kb ${process.resourceUsage().maxRSS}\n`);
}
