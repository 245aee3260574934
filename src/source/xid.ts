/**
 * 64-bit watermark arithmetic. Rows carry a 32-bit xmin that wraps every 2^32
 * transactions; watermarks are full (epoch-aware) ids. A row's full id is
 * reconstructed from its distance behind a reference id newer than every
 * visible row: d = (reference - xmin) mod 2^32, full = reference - d.
 *
 * In SQL the distance comes from age(xmin), which is (int32)(N - xmin) for
 * N the transaction's next xid: integer arithmetic per row instead of
 * xmin::text::bigint, about a third cheaper on a full scan. N is fixed at the
 * transaction's first age() call; `nextFromAge` recovers it as a full id.
 */

export const XID_MASK = 4294967295n; // 2^32 - 1
export const XID_SPACE = 4294967296n; // 2^32

/**
 * A watermark further behind than this gets a full rescan. The design allows
 * up to 2^32; age() is int32, so rows more than 2^31 behind cannot be told
 * apart from frozen ones: stay well inside that. (A table not synced for a
 * billion transactions is cheaper to rescan anyway.)
 */
export const MAX_INCREMENTAL_WINDOW = 1n << 30n;

export function needsFullRescan(reference: bigint, watermark: bigint): boolean {
  return reference - watermark >= MAX_INCREMENTAL_WINDOW;
}

/**
 * The full id of N, the next xid age() measures from, given age('3'::xid)
 * read in the same transaction and a full id `reference` not after N and
 * less than 2^31 before it (the snapshot's xmax).
 */
export function nextFromAge(ageOfThree: number, reference: bigint): bigint {
  const n32 = (BigInt(ageOfThree) + 3n) & XID_MASK;
  return reference + ((n32 - reference) & XID_MASK);
}

/** Full id of a raw 32-bit xmin relative to `reference`; 1 and 2 (bootstrap, frozen) stay as they are. */
export function fullXid(raw: bigint, reference: bigint): bigint {
  if (raw <= 2n) return raw;
  return reference - ((reference - raw) & XID_MASK);
}

/** The predicate in JS, for tests of the SQL it mirrors. */
export function isNewRow(raw: bigint, reference: bigint, watermark: bigint): boolean {
  if (raw <= 2n) return false;
  return ((reference - raw) & XID_MASK) <= reference - watermark;
}
