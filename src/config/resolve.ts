import {
  displayName,
  parseQualifiedName,
  parseTableMapping,
  type QualifiedName,
} from "../db/quote.js";
import { InputError } from "../input-error.js";
import type { DroppedColumns, Mode, SchemaChanges, TableSpec } from "../sync/types.js";
import type { ConfigFile } from "./schema.js";

/** Turns config-file tables into TableSpecs, naming the entry at fault on error. */
export function tablesFromConfig(config: ConfigFile): TableSpec[] {
  return config.tables.map((t, i) => {
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

/** `--table SRC[:DST]` flags into TableSpecs. */
export function tablesFromFlags(
  flags: string[],
  common: { key?: string[]; mode?: Mode; cursor?: string },
): TableSpec[] {
  return flags.map((f) => {
    let parsed;
    try {
      parsed = parseTableMapping(f);
    } catch (err) {
      throw new InputError(`--table: ${(err as Error).message}`, { cause: err });
    }
    const { source, target } = parsed;
    return {
      source,
      ...(target ? { target } : {}),
      ...(common.key ? { key: common.key } : {}),
      ...(common.mode ? { mode: common.mode } : {}),
      ...(common.cursor ? { cursor: common.cursor } : {}),
    };
  });
}

/** `--table NAME` with `--config`: picks entries whose source or target is NAME. */
export function selectTables(all: TableSpec[], names: string[]): TableSpec[] {
  return names.map((n) => {
    let q: QualifiedName;
    try {
      q = parseQualifiedName(n);
    } catch (err) {
      throw new InputError(`--table: ${(err as Error).message}`, { cause: err });
    }
    const wanted = displayName(q);
    const found = all.find(
      (t) => displayName(t.source) === wanted || displayName(t.target ?? t.source) === wanted,
    );
    if (!found) throw new InputError(`table ${wanted} is not in the config`);
    return found;
  });
}
