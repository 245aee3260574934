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

/** The most buckets one level of the comparison holds in memory. */
const MAX_BUCKETS = 65_536;

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
  let scanned = Math.max(s1.map.size, t1.map.size);
  // Split further only while it narrows things down: when differences are
  // spread over most buckets (thousands of scattered differences), a finer
  // level would hold about a row per bucket, millions of them in memory,
  // and still leave every row to compare; the ordered row streams that
  // follow cost the same and keep memory to a cursor batch. A level never
  // holds more than MAX_BUCKETS buckets.
  while (
    differing.keys.length > 0 &&
    differing.rows > leafRows &&
    bits < 48 &&
    differing.keys.length * 4 <= scanned
  ) {
    const parent = { mask, buckets: differing.keys };
    const grow = Math.max(
      1,
      Math.min(8, Math.floor(Math.log2(MAX_BUCKETS / differing.keys.length))),
    );
    bits = Math.min(48, bits + grow);
    mask = (1n << BigInt(bits)) - 1n;
    const [s, t] = await Promise.all([
      buckets(source, sourceSpec, mask, parent),
      buckets(target, targetSpec, mask, parent),
    ]);
    differing = differingBuckets(s.map, t.map);
    scanned = Math.max(s.map.size, t.map.size);
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
      // The rows of one key hash on each side: almost always one row each.
      const h = !a ? BigInt(b!.h) : !b ? BigInt(a.h) : minBig(BigInt(a.h), BigInt(b.h));
      const here: LeafRow[] = [];
      const there: LeafRow[] = [];
      while (a && BigInt(a.h) === h) {
        here.push(a);
        a = await src.next();
      }
      while (b && BigInt(b.h) === h) {
        there.push(b);
        b = await dst.next();
      }
      for (const [kind, k] of matchKeys(here, there)) await emit(kind, k);
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

const minBig = (x: bigint, y: bigint) => (x < y ? x : y);

/**
 * The differences among source rows (`here`) and target rows (`there`)
 * whose keys have one hash. The key hash is consistent with the key type's
 * equality, so rows that share it hold equal keys (a 64-bit collision
 * aside): a key spelled alike on both sides is one row, different if its
 * content is; a key spelled differently (1.0 and 1.00, 'Abc' and 'ABC') is
 * the same row too, different (the copy shows another spelling), not one
 * missing and one extra. What is left over is missing, or extra.
 */
function matchKeys(here: LeafRow[], there: LeafRow[]): [DifferenceKind, string][] {
  const out: [DifferenceKind, string][] = [];
  const left = [...there];
  const unmatched: LeafRow[] = [];
  for (const s of here) {
    const i = left.findIndex((t) => t.k === s.k);
    if (i < 0) {
      unmatched.push(s);
      continue;
    }
    if (left[i]!.rh !== s.rh) out.push(["different", s.k]);
    left.splice(i, 1);
  }
  for (const s of unmatched) out.push([left.shift() ? "different" : "missing", s.k]);
  for (const t of left) out.push(["extra", t.k]);
  return out;
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
