import { quoteIdent, quoteQualified, type QualifiedName } from "./quote.js";
import { statement, type Statement } from "./statement.js";

/**
 * A key column with what it takes to compare its values as its type does.
 * Our sessions run with search_path = pg_catalog, so a bare `a = b` finds
 * only pg_catalog's operators: on a citext key it would be text equality
 * (case-sensitive) while the target's unique index is case-insensitive.
 * Keys are therefore matched with the operator of the type's own default
 * btree operator class, named with its schema, under the column's own
 * collation (a nondeterministic ICU collation makes 'Abc' equal 'ABC').
 */
export interface KeyColumn {
  name: string;
  /** format_type() of the column: what key text is cast back to. */
  type: string;
  /** The type's equality operator, `{ schema, name: "=" }`. */
  equality: QualifiedName;
  /** The column's own COLLATE, when it is not its type's default. */
  collation: QualifiedName | null;
  /**
   * A hash function consistent with that equality (equal keys hash alike)
   * whose values are the same on any server; null when there is none (its
   * text is hashed instead: enums hash their OIDs, which differ between
   * servers).
   */
  hash: QualifiedName | null;
}

export const keyNames = (key: KeyColumn[]): string[] => key.map((k) => k.name);

/** `OPERATOR("schema".=)`: an operator name is not an identifier, so it is checked, not quoted. */
export function quoteOperator(op: QualifiedName): string {
  if (!/^[+\-*/<>=~!@#%^&|`?]{1,63}$/.test(op.name)) {
    throw new Error(`unexpected operator name ${JSON.stringify(op.name)}`);
  }
  return `OPERATOR(${quoteIdent(op.schema)}.${op.name})`;
}

const collate = (k: KeyColumn) => (k.collation ? ` COLLATE ${quoteQualified(k.collation)}` : "");

/** `left = right` for one key column, by its type's equality and its collation. */
export function columnEqualsSql(k: KeyColumn, left: string, right: string): string {
  return `${left} ${quoteOperator(k.equality)} ${right}${collate(k)}`;
}

/** Rows `a` and `b` have the same key: every column equal by its type's equality. */
export function keyEqualsSql(key: KeyColumn[], a: string, b: string): string {
  return key
    .map((k) => columnEqualsSql(k, `${a}.${quoteIdent(k.name)}`, `${b}.${quoteIdent(k.name)}`))
    .join(" AND ");
}

/** Some key column of row `a` is NULL. */
export function keyHasNullSql(key: KeyColumn[], a: string): string {
  return key.map((k) => `${a}.${quoteIdent(k.name)} IS NULL`).join(" OR ");
}

/**
 * Counts what makes a key unfit in `relation`: rows with a NULL in a key
 * column, and key values held by more than one row (grouped by the type's
 * own equality and the column's collation, as GROUP BY does whatever the
 * search_path). With `among`, only rows whose key is one of the given keys,
 * bound as one text array per key column ($1, $2, …).
 */
export function keyProblemsSql(
  relation: QualifiedName,
  key: KeyColumn[],
  among?: (string | null)[][],
): Statement {
  const cols = key.map((k) => `t.${quoteIdent(k.name)}`).join(", ");
  let where = "";
  if (among) {
    const arrays = key.map((_, i) => `$${i + 1}::text[]`).join(", ");
    const names = key.map((_, i) => `k${i}`).join(", ");
    const match = key
      .map((k, i) => columnEqualsSql(k, `t.${quoteIdent(k.name)}`, `u.k${i}::${k.type}`))
      .join(" AND ");
    where = ` WHERE EXISTS (SELECT 1 FROM unnest(${arrays}) AS u(${names}) WHERE ${match})`;
  }
  return statement(
    `SELECT coalesce(sum(g.n) FILTER (WHERE g.nulls), 0)::bigint AS nulls,` +
      ` count(*) FILTER (WHERE NOT g.nulls AND g.n > 1)::bigint AS duplicates,` +
      ` coalesce(sum(g.n) FILTER (WHERE NOT g.nulls AND g.n > 1), 0)::bigint AS duplicate_rows` +
      ` FROM (SELECT count(*) AS n, (${keyHasNullSql(key, "t")}) AS nulls` +
      ` FROM ${quoteQualified(relation)} AS t${where} GROUP BY ${cols}) AS g`,
    among ?? [],
  );
}
