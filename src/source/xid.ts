/**
 * 64-bit watermark arithmetic. Rows carry a 32-bit xmin that wraps every 2^32
 * transactions; watermarks are full (epoch-aware) ids. A row's full id is
 * reconstructed relative to the snapshot's xmax `c`, which is newer than
 * every visible row and less than 2^31 ids ahead of any unfrozen one.
 */

export const XID_MASK = 4294967295n; // 2^32 - 1
export const XID_SPACE = 4294967296n; // 2^32

/**
 * Bound values the row predicate and source_xmin expression use; set per
 * read transaction with set_config (COPY takes no bind parameters).
 */
export interface XidWindow {
  /** Snapshot xmax, full 64-bit id. */
  reference: bigint;
  /** reference - watermark: rows at most this far behind `reference` are new. */
  window: bigint;
}

export function xidWindow(reference: bigint, watermark: bigint): XidWindow {
  return { reference, window: reference - watermark };
}

/** When the watermark is 2^32 or more behind, every raw xmin may be new: rescan all. */
export function needsFullRescan(reference: bigint, watermark: bigint): boolean {
  return reference - watermark >= XID_SPACE;
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
