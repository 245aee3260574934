import type pg from "pg";
import { connect } from "../db/connect.js";
import { quoteIdent, quoteQualified, type QualifiedName } from "../db/quote.js";
import { readServerInfo, type ServerInfo } from "../db/server.js";
import type { SourceTable } from "../source/catalog.js";
import { bindRead, SOURCE_XMIN_SQL, XID_PARAMS_SQL } from "../source/read.js";
import { beginSnapshot } from "../source/snapshot.js";
import { SOURCE_DELETED_AT } from "../target/ddl.js";
import { copyInSql, createStageSql, type MergeSpec } from "../target/merge.js";
import { mergeRows } from "../target/merge-rows.js";
import { workTable } from "../target/work.js";
import { withTransaction } from "../db/tx.js";
import { streamCopy } from "../sync/copy.js";
import type { Difference } from "./deep.js";

/**
 * `(t.k1, t.k2) IN (…)` for a list of keys given as JSON text arrays; each
 * value cast back to its column's type. `json` is a SQL expression yielding jsonb.
 */
export function keyMatchSql(key: string[], keyTypes: string[], json: string): string {
  const cols = key.map((k) => `t.${quoteIdent(k)}`).join(", ");
  const values = keyTypes.map((type, i) => `(e.v->>${i})::${type}`).join(", ");
  return `(${cols}) IN (SELECT ${values} FROM jsonb_array_elements(${json}) AS e(v))`;
}

export interface RepairTarget {
  sourceUrl: string;
  source: SourceTable;
  hasXmin: boolean;
  target: pg.Client;
  targetServer: ServerInfo;
  targetName: QualifiedName;
  targetOid: string;
  key: string[];
  softDeletes: boolean;
}

/**
 * Re-copies exactly the rows a deep validation found missing or different,
 * and deletes (or, with soft deletes, marks) the extra ones: one transaction
 * per slice of differences, each slice staged and merged like a sync.
 */
export async function createRepairer(r: RepairTarget) {
  const typeOf = new Map(r.source.columns.map((c) => [c.name, c.type]));
  const keyTypes = r.key.map((k) => typeOf.get(k)!);
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
  const params = r.hasXmin ? ` CROSS JOIN ${XID_PARAMS_SQL}` : "";
  const readSql =
    `COPY (SELECT ${columns.map((c) => `t.${quoteIdent(c)}`).join(", ")}, ${sourceXmin} AS source_xmin` +
    ` FROM ${quoteQualified(r.source.name)} AS t${params}` +
    ` WHERE ${keyMatchSql(r.key, keyTypes, "current_setting('xmin_sync.keys')::jsonb")}) TO STDOUT`;

  const apply = async (batch: Difference[]) => {
    const recopy = batch.filter((d) => d.kind !== "extra").map((d) => d.key);
    const extra = batch.filter((d) => d.kind === "extra").map((d) => d.key);
    await withTransaction(r.target, async () => {
      if (recopy.length > 0) {
        const { snapshot } = await beginSnapshot(source, sourceServer, { exportSnapshot: false });
        try {
          if (r.hasXmin) {
            const part = { relation: r.source.name, only: false };
            await bindRead(source, snapshot, { part, filter: { kind: "all" } });
          }
          await source.query("SELECT set_config('xmin_sync.keys', $1, true)", [
            JSON.stringify(recopy),
          ]);
          await r.target.query(`TRUNCATE ${quoteQualified(stage)}`);
          await streamCopy(source, readSql, r.target, copyInSql(stage, columns));
        } finally {
          await source.query("COMMIT");
        }
        const merged = await mergeRows(r.target, r.targetServer, spec);
        counts.copied += merged.inserted + merged.updated;
      }
      if (extra.length > 0) {
        const match = keyMatchSql(r.key, keyTypes, "$1::jsonb");
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
