// The stripe cache of the raid5/6 write path: the latest contents of recently touched stripe rows,
// per member, so a write that continues a row (sequential I/O cut into pieces smaller than a row)
// computes parity from memory instead of reading the members back. md's stripe cache, per row.
//
// Invariant: a valid cached range holds what the array last wrote to (or, under the row's stripe
// lock, read from) that member range, i.e. its logical contents; every member write of the
// personality goes through put() or invalidate(), so the cache is never older than the members.
//
// Memory: contents live in 4 KiB pages drawn from a fixed budget (md's stripe_cache_size, see
// stripeCacheBytes). Pages of an evicted row go back to a free list and are used again, so once
// the budget is reached the cache allocates nothing more: a sequential write no longer leaves a
// chunk-sized slab per member and row for the collector to find.

import { SECTOR } from '../../block/block-device.js';

/**
 * Contents are kept in pages of this size, taken as they are first written: a 4 KiB random write
 * must not take a whole 512 KiB chunk per member. It is md's STRIPE_SIZE: a column of pages, one
 * per member, is one md stripe head.
 */
export const PAGE = 4096;
const SECTORS_PER_PAGE = PAGE / SECTOR;
const FULL_PAGE = (1 << SECTORS_PER_PAGE) - 1;
/**
 * Pages are carved from arenas of this size: a buffer of its own per 4 KiB page costs an
 * ArrayBuffer allocation each. Arenas are never freed while the cache lives: their pages cycle
 * through the free list.
 */
const ARENA = 64 * 1024;

/**
 * md's stripe_cache_size: how many stripe heads (a 4 KiB page of every member at one column) the
 * cache may hold. md's default is 256; this one is larger because a page here serves a whole
 * 512 KiB chunk column of a sequential write, not a 4 KiB unit that md recycles within the
 * request: 1 MiB writes at queue depth 8 over 512 KiB chunks have about six rows in flight, and
 * the row a write ends in must still be cached when the next write, queued behind it on the row's
 * lock, continues it (else that write reads two chunks back from the members). bench:nbd measured
 * the byte budget below against larger ones (see docs/architecture.md, "The stripe cache").
 */
export const DEFAULT_STRIPE_CACHE_SIZE = 1024;

/** The byte budget of `stripeCacheSize` stripe heads over `raidDisks` members (md: pages × disks). */
export function stripeCacheBytes(raidDisks: number, stripeCacheSize = DEFAULT_STRIPE_CACHE_SIZE): number {
  return stripeCacheSize * raidDisks * PAGE;
}

interface CachedRow {
  /** Per member: that member's pages of the row, each taken when first written. */
  data: ((Buffer | undefined)[] | undefined)[];
  /**
   * Per member, per page: a mask with bit i set when sector i of the page holds valid contents.
   * Plain small integers: a typed array per member and row was an allocation per random write.
   */
  valid: (number[] | undefined)[];
}

export class StripeCache {
  readonly #rows = new Map<number, CachedRow>();
  readonly #raidDisks: number;
  readonly #chunkSize: number;
  /** Pages the cache may own in all (the budget). */
  readonly #maxPages: number;
  /** Pages carved so far (at most #maxPages); those not in a row are in #free. */
  #pagesMade = 0;
  readonly #free: Buffer[] = [];
  /** Hits and misses in bytes, for the benchmark and tests. */
  readonly stats = { hitBytes: 0, missBytes: 0 };
  #arena = Buffer.allocUnsafe(0);
  #arenaUsed = 0;

  /**
   * At most `capacityBytes` of contents (rounded down to pages) are kept; the least recently used
   * row gives its pages up first. 0 caches nothing.
   */
  constructor(raidDisks: number, chunkSize: number, capacityBytes: number) {
    this.#raidDisks = raidDisks;
    this.#chunkSize = chunkSize;
    this.#maxPages = Math.max(0, Math.floor(capacityBytes / PAGE));
  }

  /** The byte budget. */
  get capacity(): number {
    return this.#maxPages * PAGE;
  }

  /** Bytes of page memory the cache holds now, in rows or free (never above the budget). */
  get allocatedBytes(): number {
    return this.#pagesMade * PAGE;
  }

  /**
   * Copies the cached bytes of `member` at columns [lo, lo+out.length) into `out`: true, or false
   * (out untouched) if any of them is not cached.
   */
  copyInto(row: number, member: number, lo: number, out: Uint8Array): boolean {
    const length = out.length;
    const entry = this.#rows.get(row);
    const valid = entry?.valid[member];
    const data = entry?.data[member];
    if (entry === undefined || valid === undefined || data === undefined || !this.#covered(valid, lo, length)) {
      this.stats.missBytes += length;
      return false;
    }
    this.#touch(row, entry);
    this.stats.hitBytes += length;
    for (let pos = lo; pos < lo + length; ) {
      const page = Math.floor(pos / PAGE);
      const end = Math.min(lo + length, (page + 1) * PAGE);
      // Covered sectors lie in pages that were written: every page here exists.
      data[page]!.copy(out, pos - lo, pos - page * PAGE, end - page * PAGE);
      pos = end;
    }
    return true;
  }

  /** A copy of the cached bytes of `member` at columns [lo, lo+length), or undefined if any is missing. */
  get(row: number, member: number, lo: number, length: number): Buffer | undefined {
    const out = Buffer.allocUnsafe(length);
    return this.copyInto(row, member, lo, out) ? out : undefined;
  }

  /** Whether the whole range is cached (no statistics, no copy). */
  has(row: number, member: number, lo: number, length: number): boolean {
    const valid = this.#rows.get(row)?.valid[member];
    return valid !== undefined && this.#covered(valid, lo, length);
  }

  /**
   * Records the contents of `member` at columns [lo, lo+data.length). Partial sectors are not
   * cached. With `insert` false a row not cached yet stays uncached (full-stripe writes: the next
   * request is for another row, so copying this one would only cost). When the budget cannot
   * give the pages (every other row already gave its up), the range is forgotten instead.
   */
  put(row: number, member: number, lo: number, data: Uint8Array, insert = true): void {
    if (this.#maxPages === 0) return;
    let entry = this.#rows.get(row);
    if (entry === undefined && !insert) return;
    if (entry === undefined) {
      entry = { data: new Array(this.#raidDisks).fill(undefined), valid: new Array(this.#raidDisks).fill(undefined) };
      this.#rows.set(row, entry);
    } else {
      this.#touch(row, entry);
    }
    const pageCount = Math.ceil(this.#chunkSize / PAGE);
    const pages = (entry.data[member] ??= new Array<Buffer | undefined>(pageCount));
    const valid = (entry.valid[member] ??= new Array<number>(pageCount).fill(0));
    const end = lo + data.length;
    const firstPage = Math.floor(lo / PAGE);
    const lastPage = Math.floor((end - 1) / PAGE);
    for (let page = firstPage; page <= lastPage; page++) {
      if (pages[page] !== undefined) continue;
      const got = this.#takePage(row);
      if (got === undefined) {
        // Out of pages: what the range held before is stale now, and the new bytes do not fit.
        markSectors(valid, Math.floor(lo / SECTOR), Math.ceil(end / SECTOR), false);
        return;
      }
      pages[page] = got;
    }
    for (let pos = lo; pos < end; ) {
      const page = Math.floor(pos / PAGE);
      const stop = Math.min(end, (page + 1) * PAGE);
      pages[page]!.set(data.subarray(pos - lo, stop - lo), pos - page * PAGE);
      pos = stop;
    }
    // Whole sectors written become valid; sectors only partly written now hold a mix of old and
    // new bytes and are no longer trustworthy.
    markSectors(valid, Math.ceil(lo / SECTOR), Math.floor(end / SECTOR), true);
    if (lo % SECTOR !== 0) markSectors(valid, Math.floor(lo / SECTOR), Math.floor(lo / SECTOR) + 1, false);
    if (end % SECTOR !== 0) markSectors(valid, Math.floor(end / SECTOR), Math.floor(end / SECTOR) + 1, false);
  }

  /** Forgets one member's range (its contents on disk are no longer known). */
  forget(row: number, member: number, lo: number, length: number): void {
    const valid = this.#rows.get(row)?.valid[member];
    if (valid !== undefined) markSectors(valid, Math.floor(lo / SECTOR), Math.ceil((lo + length) / SECTOR), false);
  }

  invalidate(row: number): void {
    const entry = this.#rows.get(row);
    if (entry !== undefined) this.#drop(row, entry);
  }

  /** Forgets every row and lets the page memory go. */
  clear(): void {
    this.#rows.clear();
    this.#free.length = 0;
    this.#pagesMade = 0;
    this.#arena = Buffer.allocUnsafe(0);
    this.#arenaUsed = 0;
  }

  #covered(valid: readonly number[], lo: number, length: number): boolean {
    if (lo % SECTOR !== 0 || length % SECTOR !== 0) return false;
    const end = (lo + length) / SECTOR;
    for (let s = lo / SECTOR; s < end; ) {
      const page = Math.floor(s / SECTORS_PER_PAGE);
      const stop = Math.min(end, (page + 1) * SECTORS_PER_PAGE);
      const want = sectorMask(s - page * SECTORS_PER_PAGE, stop - page * SECTORS_PER_PAGE);
      if ((valid[page]! & want) !== want) return false;
      s = stop;
    }
    return true;
  }

  /**
   * A page for `row`: a free one, else a new one while under budget, else the pages of the least
   * recently used other rows, dropped until one is free. Undefined when `row` alone holds them all.
   */
  #takePage(row: number): Buffer | undefined {
    const free = this.#free.pop();
    if (free !== undefined) return free;
    if (this.#pagesMade < this.#maxPages) {
      if (this.#arenaUsed === this.#arena.length) {
        this.#arena = Buffer.allocUnsafeSlow(Math.min(ARENA, (this.#maxPages - this.#pagesMade) * PAGE));
        this.#arenaUsed = 0;
      }
      this.#pagesMade++;
      this.#arenaUsed += PAGE;
      return this.#arena.subarray(this.#arenaUsed - PAGE, this.#arenaUsed);
    }
    // Map order is least recently used first (#touch moves a row to the end).
    for (const [other, entry] of this.#rows) {
      if (other === row) continue;
      this.#drop(other, entry);
      const page = this.#free.pop();
      if (page !== undefined) return page;
    }
    return undefined;
  }

  /** Removes a row, its pages back to the free list. */
  #drop(row: number, entry: CachedRow): void {
    this.#rows.delete(row);
    for (const pages of entry.data) {
      if (pages === undefined) continue;
      for (const page of pages) if (page !== undefined) this.#free.push(page);
    }
  }

  #touch(row: number, entry: CachedRow): void {
    this.#rows.delete(row);
    this.#rows.set(row, entry);
  }
}

/** Bits [from, to) of a page's sector mask. */
function sectorMask(from: number, to: number): number {
  return ((1 << to) - 1) & ~((1 << from) - 1) & FULL_PAGE;
}

/** Sets or clears the valid bits of sectors [first, last) (sector numbers within the row). */
function markSectors(valid: number[], first: number, last: number, on: boolean): void {
  for (let s = first; s < last; ) {
    const page = Math.floor(s / SECTORS_PER_PAGE);
    const stop = Math.min(last, (page + 1) * SECTORS_PER_PAGE);
    const mask = sectorMask(s - page * SECTORS_PER_PAGE, stop - page * SECTORS_PER_PAGE);
    valid[page] = on ? valid[page]! | mask : valid[page]! & ~mask;
    s = stop;
  }
}
