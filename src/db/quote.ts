import pg from "pg";

/**
 * The one place identifiers become SQL. Every schema, table, column and type
 * name goes through `quoteIdent`, whether it came from a user or a catalog.
 */

export interface QualifiedName {
  schema: string;
  name: string;
}

export function quoteIdent(name: string): string {
  if (name.length === 0) throw new Error("empty identifier");
  if (name.includes("\0"))
    throw new Error(`identifier contains a NUL byte: ${JSON.stringify(name)}`);
  return `"${name.replaceAll('"', '""')}"`;
}

export function quoteQualified(q: QualifiedName): string {
  return `${quoteIdent(q.schema)}.${quoteIdent(q.name)}`;
}

/** The name as a user would type it: quotes only where PostgreSQL needs them. */
export function displayName(q: QualifiedName): string {
  return `${displayIdent(q.schema)}.${displayIdent(q.name)}`;
}

/** One name as a user would type it: quoted only where PostgreSQL needs it. */
export function displayIdent(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : quoteIdent(name);
}

/**
 * Splits SQL-style dotted/colon-separated text into identifiers, honouring
 * double quotes ("" inside quotes is a literal quote). Unquoted parts fold to
 * lower case, as PostgreSQL folds them.
 */
function splitIdentifiers(input: string, separator: string): string[][] {
  const groups: string[][] = [[]];
  let current = "";
  let quoted = false;
  let sawQuote = false;
  let i = 0;
  const pushPart = () => {
    // PostgreSQL folds only ASCII letters of unquoted names (UTF8 databases).
    const part = sawQuote ? current : current.trim().replace(/[A-Z]+/g, (m) => m.toLowerCase());
    groups[groups.length - 1]!.push(part);
    current = "";
    sawQuote = false;
  };
  while (i < input.length) {
    const ch = input[i]!;
    if (quoted) {
      if (ch === '"') {
        if (input[i + 1] === '"') {
          current += '"';
          i += 2;
          continue;
        }
        quoted = false;
      } else {
        current += ch;
      }
    } else if (ch === '"') {
      if (current.trim() !== "") throw new Error(`unexpected quote in ${JSON.stringify(input)}`);
      current = "";
      quoted = true;
      sawQuote = true;
    } else if (ch === ".") {
      pushPart();
    } else if (ch === separator) {
      pushPart();
      groups.push([]);
    } else {
      if (sawQuote && ch.trim() !== "") {
        throw new Error(`unexpected text after a quoted name in ${JSON.stringify(input)}`);
      }
      if (!sawQuote) current += ch;
    }
    i++;
  }
  if (quoted) throw new Error(`unterminated quote in ${JSON.stringify(input)}`);
  pushPart();
  return groups;
}

function toQualified(parts: string[], input: string, defaultSchema: string): QualifiedName {
  if (parts.some((p) => p === "")) throw new Error(`empty name in ${JSON.stringify(input)}`);
  if (parts.length === 1) return { schema: defaultSchema, name: parts[0]! };
  if (parts.length === 2) return { schema: parts[0]!, name: parts[1]! };
  throw new Error(`too many dots in ${JSON.stringify(input)}: expected schema.table`);
}

/** `schema.table`, `table` (schema public) or `"My Schema"."My Table"`. */
export function parseQualifiedName(input: string, defaultSchema = "public"): QualifiedName {
  const groups = splitIdentifiers(input, "\0");
  return toQualified(groups[0]!, input, defaultSchema);
}

/** `SRC` or `SRC:DST`, each a table name as `parseQualifiedName` takes it. */
export function parseTableMapping(input: string): {
  source: QualifiedName;
  target: QualifiedName | undefined;
} {
  const groups = splitIdentifiers(input, ":");
  if (groups.length > 2) throw new Error(`too many ':' in table ${JSON.stringify(input)}`);
  const source = toQualified(groups[0]!, input, "public");
  const target = groups[1] ? toQualified(groups[1], input, "public") : undefined;
  return { source, target };
}

/**
 * A string literal, only for DDL, which takes no bind parameters (enum
 * labels). Everything else is a bound parameter.
 */
export function quoteLiteral(value: string): string {
  return pg.escapeLiteral(value);
}
