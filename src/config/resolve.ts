import {
  displayName,
  parseQualifiedName,
  parseTableMapping,
  type QualifiedName,
} from "../db/quote.js";
import { InputError } from "../input-error.js";
import { resolveTuning, type TuningInput } from "../sync/tuning.js";
import type { DroppedColumns, Mode, SchemaChanges, SyncOptions, TableSpec } from "../sync/types.js";
import { parseDuration } from "./duration.js";
import {
  byName,
  excluded,
  isPattern,
  matches,
  parseTablePattern,
  targetOf,
  type TablePattern,
} from "./patterns.js";
import type { ConfigFile } from "./schema.js";

/** Turns config-file tables into TableSpecs, naming the entry at fault on error. */
export function tablesFromConfig(config: ConfigFile): TableSpec[] {
  return (config.tables ?? []).map((t, i) => {
    try {
      return {
        source: parseQualifiedName(t.source),
        ...(t.target ? { target: parseQualifiedName(t.target) } : {}),
        ...(t.key ? { key: t.key } : {}),
        ...(t.mode ? { mode: t.mode } : {}),
        ...(t.cursor ? { cursor: t.cursor } : {}),
        ...(t.lookback !== undefined ? { lookback: t.lookback } : {}),
        ...(t.deletes ? { deletes: t.deletes } : {}),
        ...(t.deleteCheckEvery !== undefined ? { deleteCheckEvery: t.deleteCheckEvery } : {}),
        ...schemaPolicy(
          t.schemaChanges ?? config.schemaChanges,
          t.droppedColumns ?? config.droppedColumns,
        ),
      };
    } catch (err) {
      throw new InputError(`tables.${i}: ${(err as Error).message}`, { cause: err });
    }
  });
}

/** A table's schema policy, only the keys given (the engine has the defaults). */
export function schemaPolicy(
  schemaChanges: SchemaChanges | undefined,
  droppedColumns: DroppedColumns | undefined,
): Pick<TableSpec, "schemaChanges" | "droppedColumns"> {
  return {
    ...(schemaChanges ? { schemaChanges } : {}),
    ...(droppedColumns ? { droppedColumns } : {}),
  };
}

/** Settings a `--table` flag carries: its own `--key`, `--mode`, `--cursor`. */
export interface TableSettings {
  key?: string[];
  mode?: Mode;
  cursor?: string;
}

/** One `--table` flag, with the settings given after it. */
export interface TableFlag extends TableSettings {
  table: string;
}

/** A named table, or a pattern to match against the source's catalog, with where it came from. */
type Entry =
  | { spec: TableSpec; origin: string }
  | { pattern: TablePattern; settings: Omit<TableSpec, "source" | "target">; origin: string };

/** The tables of a request before its patterns are matched against the source. */
export interface TableRequest {
  entries: Entry[];
  exclude: TablePattern[];
  /** With a config: `--table` names or patterns picking some of its tables. */
  picks: TablePattern[];
}

/** Whether resolving the request needs the source's list of tables. */
export const hasPatterns = (r: TableRequest) => r.entries.some((e) => "pattern" in e);

function pattern(text: string, origin: string): TablePattern {
  try {
    return parseTablePattern(text);
  } catch (err) {
    throw new InputError(`${origin}: ${(err as Error).message}`, { cause: err });
  }
}

function excludes(texts: string[], origin: string): TablePattern[] {
  return texts.map((t) => {
    const p = pattern(t, origin);
    if (p.targetSchema !== undefined)
      throw new InputError(`${origin}: ${JSON.stringify(t)}: give source tables only, no :target`);
    return p;
  });
}

/**
 * A config's `tables:` entries, less those its `exclude:` names, with their
 * positions in `tables:` (the worker and serve read the list; sync
 * resolves it with requestFromConfig, which leaves out the same ones).
 */
export function includedTablesFromConfig(config: ConfigFile): { spec: TableSpec; index: number }[] {
  const exclude = excludes(config.exclude ?? [], "exclude");
  return tablesFromConfig(config)
    .map((spec, index) => ({ spec, index }))
    .filter(({ spec }) => !excluded(exclude, spec.source));
}

/** `--table SRC[:DST]` flags (names or patterns), each with its own settings. */
export function requestFromFlags(flags: TableFlag[], exclude: string[] = []): TableRequest {
  const entries = flags.map(({ table, ...settings }): Entry => {
    if (isPattern(table))
      return { pattern: pattern(table, "--table"), settings, origin: "--table" };
    let parsed;
    try {
      parsed = parseTableMapping(table);
    } catch (err) {
      throw new InputError(`--table: ${(err as Error).message}`, { cause: err });
    }
    const { source, target } = parsed;
    return { spec: { source, ...(target ? { target } : {}), ...settings }, origin: "--table" };
  });
  return { entries, exclude: excludes(exclude, "--exclude"), picks: [] };
}

/** A config's `tables:` and `include:`, less its `exclude:` and `--exclude`, picked by `--table`. */
export function requestFromConfig(
  config: ConfigFile,
  picks: string[] = [],
  exclude: string[] = [],
): TableRequest {
  return {
    entries: [
      ...tablesFromConfig(config).map((spec, i) => ({ spec, origin: `tables.${i}` })),
      ...(config.include ?? []).map((text, i) => ({
        pattern: pattern(text, `include.${i}`),
        settings: schemaPolicy(config.schemaChanges, config.droppedColumns),
        origin: `include.${i}`,
      })),
    ],
    exclude: [...excludes(config.exclude ?? [], "exclude"), ...excludes(exclude, "--exclude")],
    picks: picks.map((p) => pattern(p, "--table")),
  };
}

/**
 * The request's tables: named ones as given, each pattern's matches among
 * `sourceTables` (sorted by name) where it stands, less the excluded ones.
 * A table named and matched keeps its named entry's settings (and a table
 * two patterns match is taken once, from the first); a pattern
 * that matches nothing is an error (a typo should not sync nothing).
 */
export function resolveTables(
  request: TableRequest,
  sourceTables: QualifiedName[] = [],
): TableSpec[] {
  const named = new Set(
    request.entries.flatMap((e) => ("spec" in e ? [displayName(e.spec.source)] : [])),
  );
  const seen = new Set<string>();
  const out: TableSpec[] = [];
  const sorted = [...sourceTables].sort(byName);
  for (const e of request.entries) {
    const specs =
      "spec" in e
        ? [e.spec]
        : sorted
            .filter((t) => matches(e.pattern, t) && !named.has(displayName(t)))
            .map((t) => {
              const target = targetOf(e.pattern, t);
              return { source: t, ...(target ? { target } : {}), ...e.settings };
            });
    if (specs.length === 0 && "pattern" in e) {
      throw new InputError(
        `${e.origin}: no source table matches ${JSON.stringify(e.pattern.text)}`,
      );
    }
    for (const s of specs) {
      // A table matched by two patterns is synced once; a table named twice
      // (to two targets) twice, as asked.
      const name = displayName(s.source);
      if (("pattern" in e && seen.has(name)) || excluded(request.exclude, s.source)) continue;
      seen.add(name);
      out.push(s);
    }
  }
  return pick(out, request.picks);
}

/** `--table NAME` with `--config`: the config's tables whose source or target NAME names or matches. */
function pick(all: TableSpec[], picks: TablePattern[]): TableSpec[] {
  if (picks.length === 0) return all;
  const out: TableSpec[] = [];
  for (const p of picks) {
    const found = all.filter(
      (t) => (matches(p, t.source) || matches(p, t.target ?? t.source)) && !out.includes(t),
    );
    if (found.length === 0) {
      throw new InputError(
        isPattern(p.text)
          ? `--table ${JSON.stringify(p.text)}: no table of the config matches`
          : `table ${displayName(parseQualifiedName(p.text))} is not in the config`,
      );
    }
    out.push(...found);
  }
  return out;
}

/**
 * The config's worker and batch settings. A batch bound the config sets is
 * checked against the other one wherever that comes from (the config, the
 * environment, the default), and the config's key is named when they
 * clash: the environment is not to blame for a value in the file.
 */
export function tuningFromConfig(
  config: ConfigFile,
  path: string,
  env: NodeJS.ProcessEnv = process.env,
): TuningInput {
  const { minBatchSize: lo, maxBatchSize: hi } = config;
  if (lo !== undefined || hi !== undefined) {
    const other = resolveTuning({}, env);
    const from = (key: string, envName: string) =>
      env[envName] ? `${envName} in the environment` : `the default for ${key}`;
    if (lo !== undefined && hi === undefined && lo > other.maxBatchSize) {
      throw new InputError(
        `${path}: minBatchSize (${lo}) is more than maxBatchSize (${other.maxBatchSize}, ${from("maxBatchSize", "MAX_BATCH_SIZE")})`,
      );
    }
    if (hi !== undefined && lo === undefined && hi < other.minBatchSize) {
      throw new InputError(
        `${path}: maxBatchSize (${hi}) is less than minBatchSize (${other.minBatchSize}, ${from("minBatchSize", "MIN_BATCH_SIZE")})`,
      );
    }
  }
  return {
    workers: config.workers,
    minWorkers: config.minWorkers,
    maxWorkers: config.maxWorkers,
    minBatchSize: lo,
    maxBatchSize: hi,
  };
}

/** The config's safety settings, as sync() takes them (only those it sets). */
export function guardsFromConfig(
  config: ConfigFile,
): Pick<SyncOptions, "sourceLockTimeoutMs" | "massDeleteShare"> {
  const lockSeconds =
    config.sourceLockTimeout !== undefined ? parseDuration(config.sourceLockTimeout) : null;
  return {
    ...(lockSeconds !== null ? { sourceLockTimeoutMs: lockSeconds * 1000 } : {}),
    ...(config.maxDeleteShare !== undefined ? { massDeleteShare: config.maxDeleteShare } : {}),
  };
}
