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
 * cache may hold, 1 MiB per member. md's default, and enough here because a row leaves the cache
 * as soon as a write runs to its end (StripeEngine.write): only the rows a sequential writer is
 * still filling stay. Measured (1 MiB writes at queue depth 8, 4 members, 512 KiB chunks, member
 * files on tmpfs): with 256 heads the writes read 398 KiB back from the members per column
 * segment, with 1024 heads 394 KiB, with no cache 787 KiB; the larger budget was also 15% slower,
 * its copies spread over four times the memory. Random 4 KiB writes fill the budget and gain
 * little from it, so it is also what they hold.
 */
export const DEFAULT_STRIPE_CACHE_SIZE = 256;

/** The byte budget of `stripeCacheSize` stripe heads over `raidDisks` members (md: pages × disks). */
export function stripeCacheBytes(raidDisks: number, stripeCacheSize = DEFAULT_STRIPE_CACHE_SIZE): number {
  return stripeCacheSize * raidDisks * PAGE;
}

/**
 * One column page of a row across the members: md's stripe head. Small on purpose (two arrays of
 * raidDisks entries): a random write makes one or two, and anything bigger per write is garbage
 * for the collector once the head is evicted.
 */
interface StripeHead {
  /** Per member: the page holding its contents at this column, taken when first written. */
  pages: (Buffer | undefined)[];
  /** Per member: a mask with bit i set when sector i of its page holds valid contents. */
  valid: number[];
}

export class StripeCache {
  /** Keyed by row * pagesPerChunk + page; Map order is least recently used first (#touch). */
  readonly #heads = new Map<number, StripeHead>();
  readonly #raidDisks: number;
  readonly #pagesPerChunk: number;
  /** Pages the cache may own in all (the budget). */
  readonly #maxPages: number;
  /** Pages carved so far (at most #maxPages); those in no head are in #free. */
  #pagesMade = 0;
  readonly #free: Buffer[] = [];
  /** Hits and misses in bytes, for the benchmark and tests. */
  readonly stats = { hitBytes: 0, missBytes: 0 };
  #arena = Buffer.allocUnsafe(0);
  #arenaUsed = 0;

  /**
   * At most `capacityBytes` of contents (rounded down to pages) are kept; the least recently used
   * stripe head gives its pages up first. 0 caches nothing.
   */
  constructor(raidDisks: number, chunkSize: number, capacityBytes: number) {
    this.#raidDisks = raidDisks;
    this.#pagesPerChunk = Math.ceil(chunkSize / PAGE);
    this.#maxPages = Math.max(0, Math.floor(capacityBytes / PAGE));
  }

  /** The byte budget. */
  get capacity(): number {
    return this.#maxPages * PAGE;
  }

  /** Bytes of page memory the cache holds now, in heads or free (never above the budget). */
  get allocatedBytes(): number {
    return this.#pagesMade * PAGE;
  }

  /**
   * Copies the cached bytes of `member` at columns [lo, lo+out.length) into `out`: true, or false
   * (out untouched) if any of them is not cached.
   */
  copyInto(row: number, member: number, lo: number, out: Uint8Array): boolean {
    const length = out.length;
    if (!this.has(row, member, lo, length)) {
      this.stats.missBytes += length;
      return false;
    }
    this.stats.hitBytes += length;
    const base = row * this.#pagesPerChunk;
    for (let pos = lo; pos < lo + length; ) {
      const page = Math.floor(pos / PAGE);
      const end = Math.min(lo + length, (page + 1) * PAGE);
      // Covered sectors lie in pages that were written: every head and page here exists.
      const head = this.#heads.get(base + page)!;
      this.#touch(base + page, head);
      head.pages[member]!.copy(out, pos - lo, pos - page * PAGE, end - page * PAGE);
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
    if (lo % SECTOR !== 0 || length % SECTOR !== 0) return false;
    const base = row * this.#pagesPerChunk;
    for (let pos = lo; pos < lo + length; ) {
      const page = Math.floor(pos / PAGE);
      const end = Math.min(lo + length, (page + 1) * PAGE);
      const want = sectorMask((pos - page * PAGE) / SECTOR, (end - page * PAGE) / SECTOR);
      const valid = this.#heads.get(base + page)?.valid[member] ?? 0;
      if ((valid & want) !== want) return false;
      pos = end;
    }
    return true;
  }

  /**
   * Records the contents of `member` at columns [lo, lo+data.length). Partial sectors are not
   * cached. With `insert` false, columns not cached yet stay uncached (full-stripe writes: the
   * next request is for another row, so copying this one would only cost). When the budget
   * cannot give the pages (every other head already gave its up), the range is forgotten instead.
   */
  put(row: number, member: number, lo: number, data: Uint8Array, insert = true): void {
    if (this.#maxPages === 0 || data.length === 0) return;
    const base = row * this.#pagesPerChunk;
    const end = lo + data.length;
    const firstPage = Math.floor(lo / PAGE);
    const lastPage = Math.floor((end - 1) / PAGE);
    for (let page = firstPage; page <= lastPage; page++) {
      const from = Math.max(lo, page * PAGE);
      const to = Math.min(end, (page + 1) * PAGE);
      let head = this.#heads.get(base + page);
      if (head === undefined) {
        if (!insert) continue;
        head = { pages: new Array<Buffer | undefined>(this.#raidDisks), valid: new Array<number>(this.#raidDisks).fill(0) };
        this.#heads.set(base + page, head);
      } else {
        this.#touch(base + page, head);
      }
      let buf = head.pages[member];
      if (buf === undefined) {
        buf = this.#takePage(base + firstPage, base + page);
        if (buf === undefined) {
          // Out of pages: what the range held before is stale now, and the new bytes do not fit.
          this.forget(row, member, lo, data.length);
          return;
        }
        head.pages[member] = buf;
      }
      buf.set(data.subarray(from - lo, to - lo), from - page * PAGE);
      // Whole sectors written become valid; a sector only partly written now holds a mix of old
      // and new bytes and is no longer trustworthy.
      const first = (from - page * PAGE) / SECTOR;
      const last = (to - page * PAGE) / SECTOR;
      head.valid[member] = (head.valid[member]! & ~sectorMask(Math.floor(first), Math.ceil(last))) | sectorMask(Math.ceil(first), Math.floor(last));
    }
  }

  /** Forgets one member's range (its contents on disk are no longer known). */
  forget(row: number, member: number, lo: number, length: number): void {
    const base = row * this.#pagesPerChunk;
    for (let pos = lo; pos < lo + length; ) {
      const page = Math.floor(pos / PAGE);
      const end = Math.min(lo + length, (page + 1) * PAGE);
      const head = this.#heads.get(base + page);
      if (head !== undefined) head.valid[member]! &= ~sectorMask(Math.floor((pos - page * PAGE) / SECTOR), Math.ceil((end - page * PAGE) / SECTOR));
      pos = end;
    }
  }

  /** Forgets a whole row, its pages back to the free list. */
  invalidate(row: number): void {
    const base = row * this.#pagesPerChunk;
    for (let page = 0; page < this.#pagesPerChunk; page++) {
      const head = this.#heads.get(base + page);
      if (head !== undefined) this.#drop(base + page, head);
    }
  }

  /** Forgets every row and lets the page memory go. */
  clear(): void {
    this.#heads.clear();
    this.#free.length = 0;
    this.#pagesMade = 0;
    this.#arena = Buffer.allocUnsafe(0);
    this.#arenaUsed = 0;
  }

  /**
   * A page: a free one, else a new one while under budget, else the pages of the least recently
   * used heads outside [from, to] (the heads the current put has filled), dropped until one is
   * free. Undefined when those heads alone hold every page.
   */
  #takePage(from: number, to: number): Buffer | undefined {
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
    for (const [key, head] of this.#heads) {
      if (key >= from && key <= to) continue;
      this.#drop(key, head);
      const page = this.#free.pop();
      if (page !== undefined) return page;
    }
    return undefined;
  }

  /** Removes a head, its pages back to the free list. */
  #drop(key: number, head: StripeHead): void {
    this.#heads.delete(key);
    for (const page of head.pages) if (page !== undefined) this.#free.push(page);
  }

  #touch(key: number, head: StripeHead): void {
    this.#heads.delete(key);
    this.#heads.set(key, head);
  }
}

/** Bits [from, to) of a page's sector mask. */
function sectorMask(from: number, to: number): number {
  return ((1 << to) - 1) & ~((1 << from) - 1) & FULL_PAGE;
}
