// The stripe cache of the raid5/6 write path: the latest contents of recently touched stripe rows,
// per member, so a write that continues a row (sequential I/O cut into pieces smaller than a row)
// computes parity from memory instead of reading the members back. md's stripe cache, per row.
//
// Invariant: a valid cached range holds what the array last wrote to (or read from) that member
// range, i.e. its logical contents; every member write of the personality goes through put() or
// invalidate(), so the cache is never older than the members.

import { SECTOR } from '../../block/block-device.js';

/**
 * Contents are kept in pages of this size, allocated as they are first written: a 4 KiB random
 * write must not allocate (and leave the collector to free) a whole 512 KiB chunk per member.
 */
const PAGE = 4096;
const SECTORS_PER_PAGE = PAGE / SECTOR;
const FULL_PAGE = (1 << SECTORS_PER_PAGE) - 1;
/**
 * Pages are carved from arenas of this size: a buffer of its own per 4 KiB page costs an
 * ArrayBuffer allocation (and its finalisation) per put of a random write.
 */
const ARENA = 64 * 1024;

interface CachedRow {
  /** Per member: that member's pages of the row, each allocated when first written. */
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
  readonly #capacity: number;
  /** Hits and misses in bytes, for the benchmark and tests. */
  readonly stats = { hitBytes: 0, missBytes: 0 };
  #arena = Buffer.allocUnsafe(0);
  #arenaUsed = 0;

  /** `capacity` rows are kept; the least recently used row is dropped first. */
  constructor(raidDisks: number, chunkSize: number, capacity: number) {
    this.#raidDisks = raidDisks;
    this.#chunkSize = chunkSize;
    this.#capacity = Math.max(0, Math.floor(capacity));
  }

  get capacity(): number {
    return this.#capacity;
  }

  /** A copy of the cached bytes of `member` at columns [lo, lo+length), or undefined if any is missing. */
  get(row: number, member: number, lo: number, length: number): Buffer | undefined {
    const entry = this.#rows.get(row);
    const valid = entry?.valid[member];
    const data = entry?.data[member];
    if (entry === undefined || valid === undefined || data === undefined || !this.#covered(valid, lo, length)) {
      this.stats.missBytes += length;
      return undefined;
    }
    this.#touch(row, entry);
    this.stats.hitBytes += length;
    const out = Buffer.allocUnsafe(length);
    for (let pos = lo; pos < lo + length; ) {
      const page = Math.floor(pos / PAGE);
      const end = Math.min(lo + length, (page + 1) * PAGE);
      // Covered sectors lie in pages that were written: every page here exists.
      data[page]!.copy(out, pos - lo, pos - page * PAGE, end - page * PAGE);
      pos = end;
    }
    return out;
  }

  /** Whether the whole range is cached (no statistics, no copy). */
  has(row: number, member: number, lo: number, length: number): boolean {
    const valid = this.#rows.get(row)?.valid[member];
    return valid !== undefined && this.#covered(valid, lo, length);
  }

  /**
   * Records the contents of `member` at columns [lo, lo+data.length). Partial sectors are not
   * cached. With `insert` false a row not cached yet stays uncached (full-stripe writes: the next
   * request is for another row, so copying this one would only cost).
   */
  put(row: number, member: number, lo: number, data: Uint8Array, insert = true): void {
    if (this.#capacity === 0) return;
    let entry = this.#rows.get(row);
    if (entry === undefined && !insert) return;
    if (entry === undefined) {
      entry = { data: new Array(this.#raidDisks).fill(undefined), valid: new Array(this.#raidDisks).fill(undefined) };
      while (this.#rows.size >= this.#capacity) {
        const oldest = this.#rows.keys().next().value as number;
        this.#rows.delete(oldest);
      }
      this.#rows.set(row, entry);
    } else {
      this.#touch(row, entry);
    }
    const pageCount = Math.ceil(this.#chunkSize / PAGE);
    const pages = (entry.data[member] ??= new Array<Buffer | undefined>(pageCount));
    const valid = (entry.valid[member] ??= new Array<number>(pageCount).fill(0));
    const firstPage = Math.floor(lo / PAGE);
    const lastPage = Math.floor((lo + data.length - 1) / PAGE);
    // The pages this put brings come out of one allocation (a 1 MiB write is one, not 256).
    let missing = 0;
    for (let page = firstPage; page <= lastPage; page++) if (pages[page] === undefined) missing++;
    if (missing > 0) {
      const slab = this.#pages(missing);
      let k = 0;
      for (let page = firstPage; page <= lastPage; page++) {
        if (pages[page] === undefined) pages[page] = slab.subarray(k++ * PAGE, k * PAGE);
      }
    }
    for (let pos = lo; pos < lo + data.length; ) {
      const page = Math.floor(pos / PAGE);
      const end = Math.min(lo + data.length, (page + 1) * PAGE);
      pages[page]!.set(data.subarray(pos - lo, end - lo), pos - page * PAGE);
      pos = end;
    }
    // Whole sectors written become valid; sectors only partly written now hold a mix of old and
    // new bytes and are no longer trustworthy.
    markSectors(valid, Math.ceil(lo / SECTOR), Math.floor((lo + data.length) / SECTOR), true);
    if (lo % SECTOR !== 0) markSectors(valid, Math.floor(lo / SECTOR), Math.floor(lo / SECTOR) + 1, false);
    const end = lo + data.length;
    if (end % SECTOR !== 0) markSectors(valid, Math.floor(end / SECTOR), Math.floor(end / SECTOR) + 1, false);
  }

  /** Forgets one member's range (its contents on disk are no longer known). */
  forget(row: number, member: number, lo: number, length: number): void {
    const valid = this.#rows.get(row)?.valid[member];
    if (valid !== undefined) markSectors(valid, Math.floor(lo / SECTOR), Math.ceil((lo + length) / SECTOR), false);
  }

  invalidate(row: number): void {
    this.#rows.delete(row);
  }

  clear(): void {
    this.#rows.clear();
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

  /** `count` pages of fresh memory, carved from the current arena (or a buffer of their own when larger). */
  #pages(count: number): Buffer {
    const n = count * PAGE;
    if (n > ARENA) return Buffer.allocUnsafe(n);
    if (this.#arenaUsed + n > this.#arena.length) {
      this.#arena = Buffer.allocUnsafe(ARENA);
      this.#arenaUsed = 0;
    }
    const out = this.#arena.subarray(this.#arenaUsed, this.#arenaUsed + n);
    this.#arenaUsed += n;
    return out;
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
