import type pg from "pg";
import { displayName, quoteLiteral, quoteQualified } from "../db/quote.js";
import type { CollationDef } from "../source/catalog.js";
import { createSchemaIfMissing } from "./project.js";

/** Schemas whose collations come with the server (initdb, ICU, the OS's locales): not ours to create. */
const SYSTEM_SCHEMAS = new Set(["pg_catalog", "information_schema"]);

/**
 * Creates on the target the collations the table's columns and domains use,
 * as the source defines them (provider, locale, deterministic), the way
 * enums are brought over. A collation decides which keys are equal (a
 * nondeterministic one makes 'Abc' equal 'ABC'), so one that exists on
 * the target under the same name must agree on that. Runs inside the
 * caller's transaction, before the types that may use it.
 */
export async function ensureCollations(client: pg.Client, defs: CollationDef[]): Promise<void> {
  for (const c of defs) {
    const { rows } = await client.query<{ deterministic: boolean }>(
      `SELECT co.collisdeterministic AS deterministic
         FROM pg_collation co JOIN pg_namespace n ON n.oid = co.collnamespace
        WHERE n.nspname = $1 AND co.collname = $2
          AND co.collencoding IN (-1, (SELECT encoding FROM pg_database WHERE datname = current_database()))`,
      [c.name.schema, c.name.name],
    );
    const found = rows[0];
    if (found) {
      if (found.deterministic !== c.deterministic) {
        throw new Error(
          `collation ${displayName(c.name)} is ${c.deterministic ? "" : "non"}deterministic on the source but ${found.deterministic ? "" : "non"}deterministic on the target: keys equal on one side would differ on the other`,
        );
      }
      continue;
    }
    if (SYSTEM_SCHEMAS.has(c.name.schema) || c.provider === "d") {
      throw new Error(
        `collation ${displayName(c.name)} (${describeCollation(c)}) is missing on the target; it comes with the server (ICU or the system's locales): install it there, or use another collation`,
      );
    }
    await createSchemaIfMissing(client, c.name.schema);
    try {
      await client.query("SAVEPOINT xmin_sync_collation");
      await client.query(createCollationSql(c));
      await client.query("RELEASE SAVEPOINT xmin_sync_collation");
    } catch (err) {
      await client.query("ROLLBACK TO SAVEPOINT xmin_sync_collation");
      throw new Error(
        `collation ${displayName(c.name)} (${describeCollation(c)}) is missing on the target and cannot be created there: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }
}

const PROVIDERS: Record<string, string> = { c: "libc", i: "icu", b: "builtin", d: "default" };

function describeCollation(c: CollationDef): string {
  const locale = c.collate === c.ctype ? c.collate : `${c.collate}/${c.ctype}`;
  return `${PROVIDERS[c.provider] ?? c.provider} ${locale ?? ""}${c.deterministic ? "" : ", nondeterministic"}`.trim();
}

/** CREATE COLLATION from the source's definition; literals, as DDL takes no parameters. */
export function createCollationSql(c: CollationDef): string {
  const opts = [`provider = ${PROVIDERS[c.provider] ?? "libc"}`];
  if (c.provider === "c") {
    opts.push(`lc_collate = ${quoteLiteral(c.collate ?? "C")}`);
    opts.push(`lc_ctype = ${quoteLiteral(c.ctype ?? "C")}`);
  } else {
    opts.push(`locale = ${quoteLiteral(c.collate ?? "")}`);
  }
  if (!c.deterministic) opts.push("deterministic = false");
  if (c.rules) opts.push(`rules = ${quoteLiteral(c.rules)}`);
  return `CREATE COLLATION ${quoteQualified(c.name)} (${opts.join(", ")})`;
}
