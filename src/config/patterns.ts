import { excerpt, splitNameParts, type NamePart, type QualifiedName } from "../db/quote.js";

/**
 * A table name that may hold wildcards: `fds.*`, `fds.sym_v?_*`, `*.orders`.
 * `*` matches any run of characters and `?` one character, in unquoted
 * parts only: `"odd*name"` is the literal name odd*name.
 */
export interface TablePattern {
  /** As the user wrote it, for messages. */
  text: string;
  schema: RegExp;
  name: RegExp;
  /** Where matched tables go: a schema (each keeps its name), or none (same name as the source). */
  targetSchema?: string;
}

const hasWildcard = (p: NamePart) => !p.quoted && /[*?]/.test(p.text);

/** Whether `SRC[:DST]` names tables by pattern rather than one table. */
export function isPattern(input: string): boolean {
  try {
    return splitNameParts(input, ":")[0]!.some(hasWildcard);
  } catch {
    return false;
  }
}

function partRegex(p: NamePart): RegExp {
  if (!hasWildcard(p)) return new RegExp(`^${escapeRegex(p.text)}$`);
  const body = [...p.text]
    .map((ch) => (ch === "*" ? ".*" : ch === "?" ? "." : escapeRegex(ch)))
    .join("");
  return new RegExp(`^${body}$`, "s");
}

const escapeRegex = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/**
 * `SRC` or `SRC:SCHEMA.*`, the source a pattern over `schema.table` (a bare
 * pattern is over the tables of schema public). The target of a pattern
 * can only name a schema: each table matched keeps its own name there.
 */
export function parseTablePattern(input: string): TablePattern {
  const groups = splitNameParts(input, ":");
  if (groups.length > 2) throw new Error(`too many ':' in ${excerpt(input)}`);
  const src = groups[0]!;
  if (src.some((p) => p.text === "")) throw new Error(`empty name in ${excerpt(input)}`);
  if (src.length > 2) throw new Error(`too many dots in ${excerpt(input)}: expected schema.table`);
  const [schema, name] =
    src.length === 1 ? [{ text: "public", quoted: true }, src[0]!] : [src[0]!, src[1]!];
  const pattern: TablePattern = { text: input, schema: partRegex(schema), name: partRegex(name) };
  const dst = groups[1];
  if (dst) {
    const star = dst[1];
    if (dst.length !== 2 || !star || star.quoted || star.text !== "*" || hasWildcard(dst[0]!)) {
      throw new Error(
        `the target of a pattern is SCHEMA.* (each table keeps its name), not ${excerpt(input.slice(input.lastIndexOf(":") + 1))}`,
      );
    }
    pattern.targetSchema = dst[0]!.text;
  }
  return pattern;
}

export function matches(pattern: TablePattern, name: QualifiedName): boolean {
  return pattern.schema.test(name.schema) && pattern.name.test(name.name);
}

/** Where a table matched by a pattern goes; undefined when to the same name. */
export function targetOf(pattern: TablePattern, name: QualifiedName): QualifiedName | undefined {
  return pattern.targetSchema !== undefined
    ? { schema: pattern.targetSchema, name: name.name }
    : undefined;
}

/** Whether any of `patterns` matches `name`, for --exclude and `exclude:`. */
export function excluded(patterns: TablePattern[], name: QualifiedName): boolean {
  return patterns.some((p) => matches(p, name));
}

/** Sorted by schema, then name, as a user reads a list of tables. */
export function byName(a: QualifiedName, b: QualifiedName): number {
  const cmp = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);
  return cmp(a.schema, b.schema) || cmp(a.name, b.name);
}
