import type pg from "pg";
import { connect } from "../db/connect.js";
import { columnEqualsSql, type KeyColumn } from "../db/key.js";
import { quoteIdent, quoteQualified, type QualifiedName } from "../db/quote.js";
import { readServerInfo, type ServerInfo } from "../db/server.js";
import type { SourceTable } from "../source/catalog.js";
import { bindRead, SOURCE_XMIN_SQL } from "../source/read.js";
import { beginSnapshot } from "../source/snapshot.js";
import { SOURCE_DELETED_AT } from "../target/ddl.js";
import { copyInSql, createStageSql, type MergeSpec } from "../target/merge.js";
import { mergeRows } from "../target/merge-rows.js";
import { workTable } from "../target/work.js";
import { withTransaction } from "../db/tx.js";
import { streamCopy } from "../sync/copy.js";
import type { Difference } from "./deep.js";

/**
 * The key of row `t` is one of a list of keys given as JSON arrays of each
 * column's text (`json`, a SQL expression yielding jsonb), each value cast
 * back to its column's type and compared by that type's equality and the
 * column's collation: a key respelled on the other side still matches.
 */
export function keyMatchSql(key: KeyColumn[], json: string): string {
  return `EXISTS (SELECT 1 FROM jsonb_array_elements(${json}) AS e(v) WHERE ${sameKeySql(key)})`;
}

/** Row `t` has the key of list element `e.v`. */
const sameKeySql = (key: KeyColumn[]) =>
  key
    .map((k, i) => columnEqualsSql(k, `t.${quoteIdent(k.name)}`, `(e.v->>${i})::${k.type}`))
    .join(" AND ");

/** Which of a list of keys ($1, JSON as above) the source has, as their 0-based positions. */
function keysOnSourceSql(table: QualifiedName, key: KeyColumn[]): string {
  return (
    `SELECT (e.i - 1)::int AS i FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e(v, i)` +
    ` WHERE EXISTS (SELECT 1 FROM ${quoteQualified(table)} AS t WHERE ${sameKeySql(key)})`
  );
}

export interface RepairTarget {
  sourceUrl: string;
  source: SourceTable;
  hasXmin: boolean;
  target: pg.Client;
  targetServer: ServerInfo;
  targetName: QualifiedName;
  targetOid: string;
  key: KeyColumn[];
  softDeletes: boolean;
}

/**
 * Re-copies exactly the rows a deep validation found missing or different,
 * and deletes (or, with soft deletes, marks) the extra ones: one transaction
 * per slice of differences, each slice staged and merged like a sync. A
 * repair never deletes a row the source has: an "extra" key is first looked
 * up on the source by its type's equality, and a row found there (its key
 * spelled differently, or written since the comparison) is re-copied instead.
 */
export async function createRepairer(r: RepairTarget) {
  const columns = r.source.columns.map((c) => c.name);
  const stage = workTable("repair", r.targetName);
  const spec: MergeSpec = {
    target: r.targetName,
    stage,
    columns,
    key: r.key,
    compareContent: true,
    softDeletes: r.softDeletes,
  };
  const counts = { copied: 0, deleted: 0 };
  const source = await connect(r.sourceUrl, "source");
  let sourceServer: ServerInfo;
  try {
    sourceServer = await readServerInfo(source);
    await r.target.query(`DROP TABLE IF EXISTS ${quoteQualified(stage)}`);
    await r.target.query(createStageSql(spec));
  } catch (err) {
    await source.end().catch(() => undefined);
    throw err;
  }

  const sourceXmin = r.hasXmin ? SOURCE_XMIN_SQL : "NULL::bigint";
  const readSql =
    `COPY (SELECT ${columns.map((c) => `t.${quoteIdent(c)}`).join(", ")}, ${sourceXmin} AS source_xmin` +
    ` FROM ${quoteQualified(r.source.name)} AS t` +
    ` WHERE ${keyMatchSql(r.key, "current_setting('xmin_sync.keys')::jsonb")}) TO STDOUT`;

  const apply = async (batch: Difference[]) => {
    const recopy = batch.filter((d) => d.kind !== "extra").map((d) => d.key);
    let extra = batch.filter((d) => d.kind === "extra").map((d) => d.key);
    await withTransaction(r.target, async () => {
      const { snapshot } = await beginSnapshot(source, sourceServer, { exportSnapshot: false });
      try {
        if (extra.length > 0) {
          const { rows } = await source.query<{ i: number }>(
            keysOnSourceSql(r.source.name, r.key),
            [JSON.stringify(extra)],
          );
          const onSource = new Set(rows.map((x) => x.i));
          recopy.push(...extra.filter((_, i) => onSource.has(i)));
          extra = extra.filter((_, i) => !onSource.has(i));
        }
        if (recopy.length > 0) {
          if (r.hasXmin) {
            const part = { relation: r.source.name, only: false };
            await bindRead(source, snapshot, { part, filter: { kind: "all" } });
          }
          await source.query("SELECT set_config('xmin_sync.keys', $1, true)", [
            JSON.stringify(recopy),
          ]);
          await r.target.query(`TRUNCATE ${quoteQualified(stage)}`);
          await streamCopy(source, readSql, r.target, copyInSql(stage, columns));
        }
      } finally {
        await source.query("COMMIT");
      }
      if (recopy.length > 0) {
        const merged = await mergeRows(r.target, r.targetServer, spec);
        counts.copied += merged.inserted + merged.updated;
      }
      if (extra.length > 0) {
        const match = keyMatchSql(r.key, "$1::jsonb");
        const sql = r.softDeletes
          ? `UPDATE ${quoteQualified(r.targetName)} AS t SET ${quoteIdent(SOURCE_DELETED_AT)} = now() WHERE t.${quoteIdent(SOURCE_DELETED_AT)} IS NULL AND ${match}`
          : `DELETE FROM ${quoteQualified(r.targetName)} AS t WHERE ${match}`;
        const res = await r.target.query(sql, [JSON.stringify(extra)]);
        counts.deleted += res.rowCount ?? 0;
      }
    });
  };

  return {
    apply,
    counts,
    async close() {
      await r.target.query(`DROP TABLE IF EXISTS ${quoteQualified(stage)}`).catch(() => undefined);
      await source.end().catch(() => undefined);
    },
  };
}
