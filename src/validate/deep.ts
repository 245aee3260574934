import type pg from "pg";
import Cursor from "pg-cursor";
import { bucketSql, leafSql, type HashSpec } from "./hash.js";

export type DifferenceKind = "missing" | "extra" | "different";

export interface Difference {
  kind: DifferenceKind;
  /** Each key column's value as text (null for NULL). */
  key: (string | null)[];
}

export interface DeepResult {
  missing: number;
  extra: number;
  different: number;
  /** Up to `sampleSize` keys of each kind. */
  samples: Record<DifferenceKind, (string | null)[][]>;
  /** Bucket levels scanned, and buckets that differed at the last. */
  levels: number;
  differingBuckets: number;
}

export interface DeepOptions {
  /** Rows per bucket at the first level (the table is split into rows/this buckets). */
  rowsPerBucket?: number;
  /** Stop splitting once the differing buckets hold at most this many rows. */
  leafRows?: number;
  sampleSize?: number;
  /** Called with differences in order, a batch at a time (for repair); memory stays bounded. */
  onDifferences?: (batch: Difference[]) => Promise<void>;
  batchSize?: number;
  /** Gets the first level's raw rows of both sides (counts; xmin statistics when asked). */
  onFirstLevel?: (source: Record<string, unknown>[], target: Record<string, unknown>[]) => void;
  /** Timings of each level, for the logs. */
  log?: (fields: Record<string, unknown>, msg: string) => void;
}

interface Bucket {
  n: number;
  s: string;
}

async function buckets(
  client: pg.Client,
  spec: HashSpec,
  mask: bigint,
  parent?: { mask: bigint; buckets: string[] },
): Promise<{ map: Map<string, Bucket>; rows: Record<string, unknown>[] }> {
  const params: unknown[] = [mask.toString()];
  if (parent) params.push(parent.mask.toString(), parent.buckets);
  else if (spec.xminStats) params.push(...spec.xminStats.values);
  // The planner cannot tell that `h & mask` has few values, expects a group
  // per row and sorts the whole table to disk; hashing is what fits (at most
  // 2^16 groups).
  await client.query("SELECT set_config('enable_sort', 'off', true)");
  const { rows } = await client.query<{ b: string; n: string; s: string }>(
    bucketSql(spec, !!parent),
    params,
  );
  await client.query("SELECT set_config('enable_sort', 'on', true)");
  return { map: new Map(rows.map((r) => [r.b, { n: Number(r.n), s: r.s }])), rows };
}

/**
 * Compares a source table with its copy without moving the data: checksums
 * of hash ranges of the key on both servers at once, splitting only the
 * ranges that differ, then the rows of those ranges streamed in the same
 * order from both sides and merged. Memory is bounded by the bucket list
 * and a cursor batch, not by the table.
 */
export async function deepCompare(
  source: pg.Client,
  target: pg.Client,
  sourceSpec: HashSpec,
  targetSpec: HashSpec,
  estimatedRows: number,
  opts: DeepOptions = {},
): Promise<DeepResult> {
  const rowsPerBucket = opts.rowsPerBucket ?? 512;
  const leafRows = opts.leafRows ?? 200_000;
  const sampleSize = opts.sampleSize ?? 10;
  let bits = Math.min(
    16,
    Math.max(4, Math.ceil(Math.log2(Math.max(1, estimatedRows) / rowsPerBucket))),
  );
  let mask = (1n << BigInt(bits)) - 1n;

  const log = opts.log ?? (() => undefined);
  let t0 = Date.now();
  const [s1, t1] = await Promise.all([
    buckets(source, sourceSpec, mask),
    buckets(target, targetSpec, mask),
  ]);
  opts.onFirstLevel?.(s1.rows, t1.rows);
  let differing = differingBuckets(s1.map, t1.map);
  let levels = 1;
  log(
    { level: 1, buckets: s1.map.size, differing: differing.keys.length, ms: Date.now() - t0 },
    "bucket level compared",
  );
  while (differing.keys.length > 0 && differing.rows > leafRows && bits < 48) {
    const parent = { mask, buckets: differing.keys };
    bits = Math.min(48, bits + 8);
    mask = (1n << BigInt(bits)) - 1n;
    const [s, t] = await Promise.all([
      buckets(source, sourceSpec, mask, parent),
      buckets(target, targetSpec, mask, parent),
    ]);
    differing = differingBuckets(s.map, t.map);
    levels++;
    log(
      { level: levels, differing: differing.keys.length, ms: Date.now() - t0 },
      "bucket level compared",
    );
  }

  const result: DeepResult = {
    missing: 0,
    extra: 0,
    different: 0,
    samples: { missing: [], extra: [], different: [] },
    levels,
    differingBuckets: differing.keys.length,
  };
  if (differing.keys.length === 0) return result;

  const batch: Difference[] = [];
  const batchSize = opts.batchSize ?? 1000;
  const emit = async (kind: DifferenceKind, k: string) => {
    const key = sourceSpec.key.length === 1 ? [k] : (JSON.parse(k) as (string | null)[]);
    result[kind]++;
    if (result.samples[kind].length < sampleSize) result.samples[kind].push(key);
    if (opts.onDifferences) {
      batch.push({ kind, key });
      if (batch.length >= batchSize) await opts.onDifferences(batch.splice(0));
    }
  };

  t0 = Date.now();
  const params = [mask.toString(), differing.keys];
  const src = rowStream(source, leafSql(sourceSpec), params);
  const dst = rowStream(target, leafSql(targetSpec), params);
  try {
    let a = await src.next();
    let b = await dst.next();
    while (a || b) {
      const order = !a ? 1 : !b ? -1 : compareRows(a, b);
      if (order < 0) {
        await emit("missing", a!.k);
        a = await src.next();
      } else if (order > 0) {
        await emit("extra", b!.k);
        b = await dst.next();
      } else {
        if (a!.rh !== b!.rh) await emit("different", a!.k);
        a = await src.next();
        b = await dst.next();
      }
    }
  } finally {
    await Promise.all([src.close(), dst.close()]);
  }
  if (opts.onDifferences && batch.length > 0) await opts.onDifferences(batch.splice(0));
  log({ rows: differing.rows, ms: Date.now() - t0 }, "differing rows compared");
  return result;
}

function differingBuckets(
  s: Map<string, Bucket>,
  t: Map<string, Bucket>,
): { keys: string[]; rows: number } {
  const keys: string[] = [];
  let rows = 0;
  for (const b of new Set([...s.keys(), ...t.keys()])) {
    const x = s.get(b);
    const y = t.get(b);
    if (x?.n !== y?.n || x?.s !== y?.s) {
      keys.push(b);
      rows += Math.max(x?.n ?? 0, y?.n ?? 0);
    }
  }
  return { keys, rows };
}

interface LeafRow {
  h: string;
  rh: string;
  k: string;
}

/** The order of leafSql: signed 64-bit hash, then the key's bytes (COLLATE "C"). */
function compareRows(a: LeafRow, b: LeafRow): number {
  const ha = BigInt(a.h);
  const hb = BigInt(b.h);
  if (ha !== hb) return ha < hb ? -1 : 1;
  const ka = Buffer.from(a.k, "utf8");
  const kb = Buffer.from(b.k, "utf8");
  return Buffer.compare(ka, kb);
}

/** Rows of a query one at a time, fetched in batches through a cursor. */
function rowStream(client: pg.Client, sql: string, params: unknown[], batch = 5000) {
  const cursor = client.query(new Cursor<LeafRow>(sql, params));
  let buffer: LeafRow[] = [];
  let done = false;
  return {
    async next(): Promise<LeafRow | undefined> {
      if (buffer.length === 0 && !done) {
        buffer = await cursor.read(batch);
        if (buffer.length < batch) done = true;
        buffer.reverse();
      }
      return buffer.pop();
    },
    close: () => cursor.close(),
  };
}
