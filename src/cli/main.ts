#!/usr/bin/env node
import { main } from "./program.js";

process.exitCode = await main(process.argv);

// For `xmin-sync bench`, which runs syncs as child processes and reports
// their peak memory: the kernel's high-water mark of this process.
if (process.env.XMIN_SYNC_REPORT_RSS === "1") {
  process.stderr.write(`xmin-sync-max-rss-kb ${process.resourceUsage().maxRSS}\n`);
}
