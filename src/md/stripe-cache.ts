// The stripe cache of the raid5/6 write path: the latest contents of recently touched stripe rows,
// per member, so a write that continues a row (sequential I/O cut into pieces smaller than a row)
// computes parity from memory instead of reading the members back. md's stripe cache, per row.
//
// Invariant: a valid cached range holds what the array last wrote to (or read from) that member
// range, i.e. its logical contents; every member write of the personality goes through put() or
// invalidate(), so the cache is never older than the members.

const SECTOR = 512;
/**
 * Contents are kept in pages of this size, allocated as they are first written: a 4 KiB random
 * write must not allocate (and leave the collector to free) a whole 512 KiB chunk per member.
 */
const PAGE = 4096;

interface CachedRow {
  /** Per member: that member's pages of the row, each allocated when first written. */
  data: ((Buffer | undefined)[] | undefined)[];
  /** Per member: one byte per sector, 1 when the sector's cached contents are valid. */
  valid: (Uint8Array | undefined)[];
}

export class StripeCache {
  readonly #rows = new Map<number, CachedRow>();
  readonly #raidDisks: number;
  readonly #chunkSize: number;
  readonly #capacity: number;
  /** Hits and misses in bytes, for the benchmark and tests. */
  readonly stats = { hitBytes: 0, missBytes: 0 };

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
    const pages = (entry.data[member] ??= new Array<Buffer | undefined>(Math.ceil(this.#chunkSize / PAGE)));
    const valid = (entry.valid[member] ??= new Uint8Array(this.#chunkSize / SECTOR));
    const firstPage = Math.floor(lo / PAGE);
    const lastPage = Math.floor((lo + data.length - 1) / PAGE);
    // The pages this put brings come out of one allocation (a 1 MiB write is one, not 256).
    let missing = 0;
    for (let page = firstPage; page <= lastPage; page++) if (pages[page] === undefined) missing++;
    if (missing > 0) {
      const slab = Buffer.allocUnsafe(missing * PAGE);
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
    const first = Math.ceil(lo / SECTOR);
    const last = Math.floor((lo + data.length) / SECTOR);
    valid.fill(1, first, last);
    // Sectors only partly written now hold a mix of old and new bytes: no longer trustworthy.
    if (lo % SECTOR !== 0) valid[Math.floor(lo / SECTOR)] = 0;
    if ((lo + data.length) % SECTOR !== 0) valid[last] = 0;
  }

  /** Forgets one member's range (its contents on disk are no longer known). */
  forget(row: number, member: number, lo: number, length: number): void {
    const valid = this.#rows.get(row)?.valid[member];
    if (valid !== undefined) valid.fill(0, Math.floor(lo / SECTOR), Math.ceil((lo + length) / SECTOR));
  }

  invalidate(row: number): void {
    this.#rows.delete(row);
  }

  clear(): void {
    this.#rows.clear();
  }

  #covered(valid: Uint8Array, lo: number, length: number): boolean {
    if (lo % SECTOR !== 0 || length % SECTOR !== 0) return false;
    const end = (lo + length) / SECTOR;
    for (let s = lo / SECTOR; s < end; s++) if (valid[s] === 0) return false;
    return true;
  }

  #touch(row: number, entry: CachedRow): void {
    this.#rows.delete(row);
    this.#rows.set(row, entry);
  }
}
