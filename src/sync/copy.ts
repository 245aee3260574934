import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type pg from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";

/**
 * Streams one COPY out of the source into one COPY into the target. The
 * pipeline gives backpressure end to end: the source's socket is read only
 * as fast as the target takes the data, so memory stays at a few stream
 * buffers whatever the table's size. Returns the rows the target took.
 */
export async function streamCopy(
  reader: pg.Client,
  readSql: string,
  writer: pg.Client,
  writeSql: string,
  onBytes?: (bytes: number) => void,
  signal?: AbortSignal,
): Promise<number> {
  const out = reader.query(copyTo(readSql));
  const into = writer.query(copyFrom(writeSql));
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      onBytes?.(chunk.length);
      done(null, chunk);
    },
  });
  await pipeline(out, counter, into, ...(signal ? [{ signal }] : []));
  return Number(into.rowCount ?? 0);
}
