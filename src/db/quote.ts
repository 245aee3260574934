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

/** PostgreSQL keeps at most this many bytes of a name (NAMEDATALEN - 1). */
export const MAX_NAME_BYTES = 63;
/** Longer input is refused before it is parsed or echoed: no table mapping needs more. */
const MAX_INPUT_CHARS = 4 * (2 * MAX_NAME_BYTES + 8);

/** One identifier of a dotted name, and whether it was written in double quotes. */
export interface NamePart {
  text: string;
  quoted: boolean;
}

/** At most 60 characters of user input, escaped onto one line, for messages. */
export function excerpt(input: string): string {
  const s = JSON.stringify(input);
  return s.length <= 60 ? s : `${s.slice(0, 57)}..."`;
}

/**
 * Splits SQL-style dotted/colon-separated text into identifiers, honouring
 * double quotes ("" inside quotes is a literal quote). Unquoted parts fold to
 * lower case, as PostgreSQL folds them.
 */
export function splitNameParts(input: string, separator: string): NamePart[][] {
  if (input.length > MAX_INPUT_CHARS) {
    throw new Error(
      `name of ${input.length} characters: PostgreSQL names are at most ${MAX_NAME_BYTES} bytes`,
    );
  }
  const groups: NamePart[][] = [[]];
  let current = "";
  let quoted = false;
  let sawQuote = false;
  let i = 0;
  const pushPart = () => {
    // PostgreSQL folds only ASCII letters of unquoted names (UTF8 databases).
    const text = sawQuote ? current : current.trim().replace(/[A-Z]+/g, (m) => m.toLowerCase());
    groups[groups.length - 1]!.push({ text, quoted: sawQuote });
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
      if (current.trim() !== "") throw new Error(`unexpected quote in ${excerpt(input)}`);
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
        throw new Error(`unexpected text after a quoted name in ${excerpt(input)}`);
      }
      if (!sawQuote) current += ch;
    }
    i++;
  }
  if (quoted) throw new Error(`unterminated quote in ${excerpt(input)}`);
  pushPart();
  for (const part of groups.flat()) checkName(part.text);
  return groups;
}

/**
 * Refuses a name PostgreSQL would not match as given: over 63 bytes, it
 * truncates it. (Control characters are legal in quoted names; messages
 * show them escaped, on one line.)
 */
export function checkName(name: string): void {
  const bytes = Buffer.byteLength(name);
  if (bytes > MAX_NAME_BYTES) {
    throw new Error(
      `name ${excerpt(name)} is ${bytes} bytes: PostgreSQL names are at most ${MAX_NAME_BYTES} bytes`,
    );
  }
}

function toQualified(parts: NamePart[], input: string, defaultSchema: string): QualifiedName {
  if (parts.some((p) => p.text === "")) throw new Error(`empty name in ${excerpt(input)}`);
  if (parts.length === 1) return { schema: defaultSchema, name: parts[0]!.text };
  if (parts.length === 2) return { schema: parts[0]!.text, name: parts[1]!.text };
  throw new Error(`too many dots in ${excerpt(input)}: expected schema.table`);
}

/** `schema.table`, `table` (schema public) or `"My Schema"."My Table"`. */
export function parseQualifiedName(input: string, defaultSchema = "public"): QualifiedName {
  const groups = splitNameParts(input, "\0");
  return toQualified(groups[0]!, input, defaultSchema);
}

/** `SRC` or `SRC:DST`, each a table name as `parseQualifiedName` takes it. */
export function parseTableMapping(input: string): {
  source: QualifiedName;
  target: QualifiedName | undefined;
} {
  const groups = splitNameParts(input, ":");
  if (groups.length > 2) throw new Error(`too many ':' in table ${excerpt(input)}`);
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
