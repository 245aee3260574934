import type { KeyColumn } from "../db/key.js";
import { displayIdent, displayName, quoteIdent } from "../db/quote.js";
import { InputError } from "../input-error.js";
import { RESERVED_COLUMNS } from "../target/ddl.js";
import type { TableSpec } from "../sync/types.js";
import type { SourceTable, UniqueIndex } from "./catalog.js";

/** The key a table is merged, deleted and compared by, and where it came from. */
export interface TableKey {
  columns: KeyColumn[];
  /** Where the key came from; for a unique index, its name. */
  from: "given" | "primary key" | "unique index";
  index: string | null;
  /**
   * The source itself keeps the key unique and NOT NULL (a primary key or a
   * usable unique index on its columns, over every row of the table): no
   * need to look for duplicates or NULLs. A key given by the user, or the
   * primary key of an inheritance parent (which does not cover its
   * children's rows), is checked on the rows each run reads.
   */
  enforced: boolean;
}

const GIVE_KEY = "give its key columns (--key, or key: [...] in the config)";

/**
 * The key: the one given, else the primary key, else a unique index whose
 * columns are all NOT NULL (and which has no predicate or expression): the
 * one with the fewest columns, then the first by name, so every run and
 * every validation picks the same. Without one, a refusal that names each
 * unique index and why it cannot serve.
 */
export function resolveKey(table: SourceTable, spec: TableSpec): TableKey {
  for (const r of RESERVED_COLUMNS) {
    if (table.columns.some((c) => c.name === r)) {
      throw new InputError(
        `source table ${displayName(table.name)} has a column named ${r}, which xmin-sync reserves`,
      );
    }
  }
  const usable = table.uniqueIndexes
    .filter((i) => i.unusable === null)
    .sort(
      (a, b) =>
        Number(b.primary) - Number(a.primary) ||
        a.columns.length - b.columns.length ||
        (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
    );
  let names: string[];
  let from: TableKey["from"];
  let index: string | null = null;
  if (spec.key) {
    names = spec.key;
    from = "given";
  } else if (usable[0]) {
    names = usable[0].columns as string[];
    from = usable[0].primary ? "primary key" : "unique index";
    if (!usable[0].primary) index = usable[0].name;
  } else {
    throw new InputError(noKeyMessage(table));
  }
  const columns = names.map((n) => keyColumn(table, n));
  // One tree of rows under one index: a plain table (or materialized view)
  // alone, or a partitioned table, whose unique indexes span its partitions.
  // An inheritance parent's indexes cover its own rows only.
  const oneIndexCoversAll =
    table.relkind === "p" || (table.leaves.length === 1 && table.leaves[0]!.oid === table.oid);
  const notNull = columns.every((k) => table.columns.find((c) => c.name === k.name)!.notNull);
  const enforced =
    oneIndexCoversAll &&
    notNull &&
    usable.some((i) => i.columns.every((c) => c !== null && names.includes(c)));
  return { columns, from, index, enforced };
}

function keyColumn(table: SourceTable, name: string): KeyColumn {
  const c = table.columns.find((x) => x.name === name);
  if (!c) {
    throw new InputError(
      `key column ${quoteIdent(name)} is not a column of ${displayName(table.name)}`,
    );
  }
  if (!c.equality) {
    throw new InputError(
      `key column ${quoteIdent(name)} of ${displayName(table.name)} is ${c.type}, which has no equality operator: it cannot be a key; choose other key columns`,
    );
  }
  return {
    name: c.name,
    type: c.type,
    equality: c.equality,
    collation: c.collation,
    hash: c.hash,
  };
}

function noKeyMessage(table: SourceTable): string {
  const name = displayName(table.name);
  if (table.uniqueIndexes.length === 0) {
    return `source table ${name} has no primary key and no unique index; ${GIVE_KEY}`;
  }
  const why = table.uniqueIndexes.map((i) => `${describeIndex(i)} ${i.unusable}`).join("; ");
  return `source table ${name} has no primary key, and no unique index can serve as its key (${why}); ${GIVE_KEY}`;
}

function describeIndex(i: UniqueIndex): string {
  return `${displayIdent(i.name)} (${i.shown.join(", ")})`;
}
