// Writing the bitmap back (llbitmap.md A1 "I/O", B-l): dirty blocks are snapshotted and written
// to every bitmap member as contiguous runs, durable before the writers waiting on them go on;
// every writer that arrives while one write-out is in flight shares the next (coalesced-flush.ts).
// A writer on the array's fast path may do the write-out itself, synchronously, where the members
// make that durable at once (unplugNow). A write-out no member took sets WRITE_ERROR: the bitmap
// is disabled, the array runs without.

import { BitmapFlag, BITMAP_DATA_OFFSET, withFlag } from './bitmap-superblock.js';
import { writeToAllMembers, writeToAllMembersNow, type BitmapRun } from './bitmap-io.js';
import type { ChunkMap } from './chunk-map.js';
import { CoalescedFlush } from './coalesced-flush.js';
import { offsetInPage, pageOf } from './geometry.js';

/**
 * Clean bitmap bytes a write-out may rewrite to join two dirty blocks into one run: on a disk
 * a 16 KiB write costs about what a 512-byte one does, a second write and a cache flush do not.
 */
const MERGE_GAP = 16 * 1024;

/**
 * The longest run a write-out writes at once: what a member device answers inline from the
 * page cache (positional-io.ts MAX_INLINE_BYTES); a longer one goes through the thread pool and
 * its writers wait a round trip there. A bitmap of a 4 GiB array with 64 KiB chunks is 65 KiB.
 */
const MAX_RUN = 64 * 1024;

export class WriteOut {
  private readonly flusher: CoalescedFlush;
  /**
   * Where write-outs snapshot their runs, reused (write-outs run one at a time): a fresh buffer
   * per write-out of a 4 GiB array's 65 KiB bitmap cost an allocation and its page faults. Let go
   * after a write-out a member did not take: a write still hanging on it may read it later.
   */
  private image: Buffer | undefined;
  /** Write-outs started (each takes the next number) and the last one durable on the members. */
  private started = 0;
  private durable = 0;
  /**
   * A write-out was done now in this task (the microtask queue has not run since): the next
   * writer that needs one declines, and the write-out it asks for gathers the rest of the turn's.
   */
  private wroteNow = false;
  private readonly nextTask = (): void => {
    this.wroteNow = false;
  };

  constructor(private readonly map: ChunkMap) {
    this.flusher = new CoalescedFlush(() => this.run());
  }

  /** A write-out of everything marked now (or the next one, if one is in flight). */
  request(): Promise<void> {
    return this.flusher.request();
  }

  /** Write-outs started so far (each writes its blocks to every bitmap member). */
  get count(): number {
    return this.started;
  }

  /** The write-out in flight, if any. */
  pending(): Promise<void> | null {
    return this.flusher.pending();
  }

  /**
   * What a writer of [offset, +length) must wait for before its data writes (DESIGN.md §4 step
   * 2): undefined when nothing. Without a range, whatever is dirty or in flight.
   */
  unplug(offset?: number, length?: number): Promise<void> | undefined {
    const m = this.map;
    if (m.writeError) return undefined;
    if (offset === undefined || length === undefined || length === 0) {
      // No range: whatever is dirty or in flight may matter.
      if (m.dirtyPages.size === 0) return this.flusher.pending() ?? undefined;
      return this.flusher.request();
    }
    switch (this.rangeState(offset, length)) {
      case 'durable': return undefined;
      case 'dirty': return this.flusher.request();
      case 'writing': return this.flusher.pending() ?? undefined;
    }
  }

  /**
   * unplug() done now, on this thread: true when the blocks of [offset, +length) are durable as
   * this returns, by a write-out done now where they were dirty (writeNow below). False when
   * that would mean waiting: nothing is asked then, and the writer's unplug() asks.
   */
  unplugNow(offset: number, length: number): boolean {
    if (this.map.writeError || length === 0) return true;
    switch (this.rangeState(offset, length)) {
      case 'durable': return true;
      case 'dirty': return this.writeNow();
      case 'writing': return false;
    }
  }

  /**
   * Where the bitmap blocks holding [offset, +length)'s chunks stand: one still dirty needs a
   * write-out; one taken by a write-out that is not durable yet (its chunk changed before, by
   * another writer) needs that one to finish. Writers elsewhere in the bitmap do not hold this
   * one up.
   */
  private rangeState(offset: number, length: number): 'durable' | 'dirty' | 'writing' {
    const m = this.map;
    const first = Math.floor(offset / m.chunkSize);
    const last = Math.floor((offset + length - 1) / m.chunkSize);
    const io = m.geometry.ioSize;
    let writing = false;
    for (let c = first; c <= last; ) {
      const page = m.pages[pageOf(c)]!;
      const off = offsetInPage(c);
      const block = Math.floor(off / io);
      if (page.dirty[block] === 1) return 'dirty';
      if (page.written[block]! > this.durable) writing = true;
      c += (block + 1) * io - off; // the first chunk of the next block
    }
    return writing ? 'writing' : 'durable';
  }

  /**
   * A write-out done now, when it needs no waiting: no other one scheduled or in flight (they
   * run one at a time, in order), no preflush owed (`cleaned`: a flush is asynchronous), and
   * every bitmap member takes every run durably at once (writeNow with FUA: a member file on
   * tmpfs). One per task (what the NBD server parses from one socket read runs in one): a
   * write-out costs a write per member, and the event loop's write-out shares that among every
   * writer of the turn, where done now each writer pays it alone. Measured on a new 4 GiB raid1
   * on tmpfs, 30,000 random 4 KiB writes by writeNow (else write()), most of them a chunk's first:
   * at depth 1, 101-107k writes a second through the event loop's write-out against 135-145k
   * with every write-out done now; at depth 32, 136-161k against 135-142k; one per task, 135k
   * at depth 1 and 144k at 32.
   *
   * Declined (false), the blocks stay dirty and the write-out that the writer's unplug() asks
   * writes them: a member that took some runs already takes the same bytes again. A member whose
   * write fails is failed first (bitmap-io.ts does the same), and that write-out goes to the
   * members left. On a disk a decline costs the dirty block's snapshot: its first member's FUA
   * writeNow declines before any I/O.
   */
  private writeNow(): boolean {
    const m = this.map;
    if (m.cleaned || this.flusher.pending() !== null || this.wroteNow) return false;
    // Snapshotted, written, then taken, all in this one synchronous call: no mark changes
    // between, and a write-out declined half way leaves its blocks dirty for the next one.
    const dirty = this.dirtyBlocks();
    if (!writeToAllMembersNow(m.host, this.runsOf(dirty))) return false;
    this.durable = this.take(dirty);
    this.wroteNow = true;
    queueMicrotask(this.nextTask);
    return true;
  }

  /**
   * One write-out: snapshots every dirty block (clearing its mark), writes them as contiguous runs
   * to every bitmap member and waits until durable. No member took it → WRITE_ERROR: the bitmap
   * is disabled and the array runs as if it had none. Never rejects.
   */
  private async run(): Promise<void> {
    const m = this.map;
    if (m.dirtyPages.size === 0 || m.writeError) return;
    const preflush = m.cleaned;
    const dirty = this.dirtyBlocks();
    const writeOut = this.take(dirty);
    const runs = this.runsOf(dirty);
    // Invariant: every run lies inside [0, usableSpace): marks never pass the last chunk's block.
    const members = m.host.bitmapMembers().length;
    const ok = await writeToAllMembers(m.host, runs, preflush);
    if (ok < members) this.image = undefined;
    if (ok === 0) m.flags = withFlag(m.flags, BitmapFlag.WriteError, true);
    // Write-outs run one at a time, in order: everything taken up to this one is durable now.
    this.durable = writeOut;
  }

  /** Global block numbers of the dirty blocks, ascending. */
  private dirtyBlocks(): number[] {
    const m = this.map;
    const dirty: number[] = [];
    for (const idx of [...m.dirtyPages].sort((a, b) => a - b)) {
      const page = m.pages[idx]!;
      for (let b = 0; b < m.blocksPerPage; b++) if (page.dirty[b] === 1) dirty.push(idx * m.blocksPerPage + b);
    }
    return dirty;
  }

  /**
   * Takes the marks of `dirty` (every dirty block) for the next write-out, whose number this
   * returns, with `cleaned` (the preflush its caller owes).
   */
  private take(dirty: readonly number[]): number {
    const m = this.map;
    const writeOut = ++this.started;
    for (const blk of dirty) {
      const page = m.pages[Math.floor(blk / m.blocksPerPage)]!;
      page.dirty[blk % m.blocksPerPage] = 0;
      page.written[blk % m.blocksPerPage] = writeOut;
    }
    m.dirtyPages.clear();
    m.cleaned = false;
    return writeOut;
  }

  /** The blocks of `dirty` (ascending) as the runs a write-out writes, snapshotted into `image`. */
  private runsOf(dirty: readonly number[]): BitmapRun[] {
    const m = this.map;
    const io = m.geometry.ioSize;
    // Dirty blocks up to MERGE_GAP apart go out as one run, the clean blocks between included:
    // one write per member (with FUA) instead of a write per run and a cache flush. Rewriting a
    // clean block is harmless: it holds what the members hold, or a change A3 keeps in memory
    // only (Clean, Syncing, a discard's Unwritten), which may reach the disk at any time — a
    // Clean only after `cleaned`'s preflush has made its chunk's data durable, which this
    // write-out or an earlier one did.
    // The superblock's blocks are only ever written marked (updateSb, markAll), never as a gap.
    const gapBlocks = Math.max(1, Math.floor(MERGE_GAP / io));
    const maxBlocks = Math.max(1, Math.floor(MAX_RUN / io));
    const firstDataBlock = Math.ceil(BITMAP_DATA_OFFSET / io);
    if (this.image === undefined || this.image.length < m.imageBytes) this.image = Buffer.allocUnsafe(m.imageBytes);
    const image = this.image;
    const runs: BitmapRun[] = [];
    for (let i = 0; i < dirty.length; ) {
      let j = i;
      while (j + 1 < dirty.length && dirty[j + 1]! - dirty[i]! < maxBlocks && joins(dirty[j]!, dirty[j + 1]!, gapBlocks, firstDataBlock)) j++;
      runs.push(m.snapshot(dirty[i]!, dirty[j]! + 1, image));
      i = j + 1;
    }
    return runs;
  }
}

/** Dirty blocks a and b (a < b) go out in one run: adjacent, or a gap of clean data blocks. */
function joins(a: number, b: number, gapBlocks: number, firstDataBlock: number): boolean {
  return b - a === 1 || (b - a <= gapBlocks && a + 1 >= firstDataBlock);
}
