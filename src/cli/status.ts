import { connect } from "../db/connect.js";
import { displayName } from "../db/quote.js";
import { listStates } from "../target/state.js";

/** Prints what the target knows about each synced table. */
export async function status(targetUrl: string, opts: { json: boolean }): Promise<void> {
  const client = await connect(targetUrl, "target");
  try {
    const states = await listStates(client);
    for (const s of states) {
      const row = {
        target: displayName(s.target),
        source: displayName({ schema: s.sourceSchema, name: s.sourceTable }),
        mode: s.mode,
        watermark: s.watermark?.toString() ?? null,
        runs: s.runs,
        lastRunAt: s.lastRunAt.toISOString(),
      };
      process.stdout.write(
        (opts.json
          ? JSON.stringify(row)
          : `${row.target} <- ${row.source}: ${row.mode}, watermark ${row.watermark ?? "-"}, ${row.runs} runs, last ${row.lastRunAt}`) +
          "\n",
      );
    }
    if (states.length === 0 && !opts.json)
      process.stdout.write("no tables synced to this target yet\n");
  } finally {
    await client.end().catch(() => undefined);
  }
}
