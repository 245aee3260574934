import { writeFile } from "node:fs/promises";
import { stringify } from "yaml";
import type { ListedTable } from "../check/discover.js";
import { formatBytes } from "../check/source.js";
import { displayName } from "../db/quote.js";
import { InputError } from "../input-error.js";
import { readiness } from "./list.js";
import { oneLine } from "./output.js";

/** A YAML scalar on one line, quoted where YAML needs it. */
const scalar = (value: unknown) => stringify(value, { lineWidth: 0 }).trimEnd();
const flow = (values: string[]) => `[${values.map(scalar).join(", ")}]`;

/**
 * A commented config for the tables found: the ones xmin-sync can sync as
 * they stand as entries, the others commented out with what they need.
 * Connection strings are not written (they may hold passwords): the
 * config takes them from --source/--target or the environment.
 */
export function configText(
  tables: ListedTable[],
  opts: { targetSchema?: string; described: string },
): string {
  const out = [
    `# xmin-sync config for ${oneLine(opts.described)}, written by \`xmin-sync init\`.`,
    "# Check it:  xmin-sync check --config THIS_FILE",
    "# Run it:    xmin-sync sync --config THIS_FILE",
    "",
    "# Connections: --source/--target, else these (${NAME} is read from the environment).",
    "# source: ${SOURCE_DATABASE_URL}",
    "# target: ${TARGET_DATABASE_URL}",
    "# workers: 4               # parallel COPY streams (default: one per core, at most 8)",
    "# exclude: [fds.tmp_*]     # leave tables out by pattern",
    "",
    "tables:",
  ];
  for (const t of tables) {
    const r = readiness(t);
    const size =
      (t.estimatedRows !== null ? `~${t.estimatedRows} rows` : "rows unknown") +
      (t.hasXmin ? `, ${formatBytes(t.bytes)}` : "");
    const entry = [`- source: ${scalar(displayName(t.name))}`];
    if (opts.targetSchema !== undefined) {
      entry.push(
        `  target: ${scalar(displayName({ schema: opts.targetSchema, name: t.name.name }))}`,
      );
    }
    if (r.ready) {
      out.push(`  # ${oneLine(t.kind)}, ${size}, key ${oneLine(t.key!.join(", "))}`);
      out.push(...entry.map((l) => `  ${l}`));
      if (!t.hasXmin) {
        out.push("    # no xmin: copied whole each run, unless you name a cursor column:");
        out.push("    # mode: timestamp");
        out.push("    # cursor: updated_at");
      }
      out.push("    # deletes: hard          # ignore (default) | hard | soft");
    } else {
      out.push(`  # ${oneLine(t.kind)}, ${size}: ${r.how}; uncomment and complete to sync it`);
      out.push(...entry.map((l) => `  # ${l}`));
      if (!t.key) out.push(`  #   key: ${flow(["id"])}`);
      if (!t.hasXmin) out.push("  #   cursor: updated_at");
    }
  }
  return out.join("\n") + "\n";
}

/** Writes the config to `path`, never over an existing file unless `force`. */
export async function writeConfig(path: string, text: string, force: boolean): Promise<void> {
  try {
    await writeFile(path, text, { flag: force ? "w" : "wx" });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST")
      throw new InputError(`${path} exists: pass --force to overwrite it`);
    throw new InputError(
      `cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
}
