// The bitmap in memory: one state byte per chunk in 4 KiB pages (read once at load), the
// superblock fields kept with them, and the state machine applied to chunk ranges (states.ts
// decides a chunk's next state; this carries out the side effects: marking blocks for write-out,
// infect, asking for a sync, arming the daemon). Also the page barriers writes take so the
// daemon never cleans a chunk under them (B-a). llbitmap.ts, write-out.ts and daemon.ts share it.

import { MdError } from '../errors.js';
import type { BitmapCounts, BitmapHost } from '../write-intent-bitmap.js';
import { BITMAP_DATA_OFFSET, BITMAP_MAGIC, BITMAP_MAJOR_LOCKLESS, BitmapFlag, encodeBitmapSuper, hasFlag, withFlag, type BitmapSuper } from './bitmap-superblock.js';
import type { BitmapRun } from './bitmap-io.js';
import { offsetInPage, PAGE_SIZE, pageOf, SECTOR, usedBytesOfPage, type Geometry } from './geometry.js';
import { BitmapPage } from './page.js';
import { Action, INFECTABLE, infectTable, NONE, State, STILL, transition, type Next } from './states.js';

export interface ChunkMapSetup {
  geometry: Geometry;
  spaceBytes: number;
  flags: number;
  eventsCleared: bigint;
  daemonSleep: number;
  barrierIdle: number;
  offsetSectors: number;
}

export class ChunkMap {
  // geometry, chunkSize, chunks and pages change only in a resize, with no I/O in flight.
  geometry: Geometry;
  chunkSize: number;
  chunks: number;
  pages: BitmapPage[];
  readonly blocksPerPage: number;
  /** Pages with at least one dirty block. */
  readonly dirtyPages = new Set<number>();
  readonly spaceBytes: number;
  readonly offsetSectors: number;
  /** Superblock `state` bits kept in memory (STALE, FIRST_USE, CLEAN are consumed at load). */
  flags: number;
  /**
   * Some chunk became Clean or CleanUnwritten since the last write-out began. Such a state may
   * reach disk only after the data writes it vouches for: those completed, but may still sit in
   * a member's volatile cache, so the next write-out flushes every member first.
   */
  cleaned = false;
  eventsCleared: bigint;
  daemonSleepSeconds: number;
  barrierIdleSeconds: number;
  /**
   * Whether infect (A6) raises Unwritten neighbours too; undefined: only on levels without
   * parity. The kernel raises them everywhere. On raid1/10 that costs nothing until a crash (the
   * daemon cleans Dirty), and leaving them out would cost a bitmap write per first touch of a
   * chunk (25-45% of a fresh array's write throughput, bench table 1). On raid4/5/6 an Unwritten
   * neighbour becomes NeedSync, so every block a new array's writes touch twice gets its parity
   * built at once, whole: 1% of a raid5 written in 1 MiB pieces spread over the array made the
   * lazy build resync 94% of it (bench:parity 2). Left Unwritten, a later write to such a chunk
   * pays one more bitmap write, nothing else.
   */
  infectUnwritten: boolean | undefined;
  /** Called when a chunk became Dirty: the daemon must come by to clean it (daemon.ts arms). */
  onDirty: () => void = () => undefined;

  constructor(readonly host: BitmapHost, s: ChunkMapSetup) {
    this.geometry = s.geometry;
    this.chunkSize = s.geometry.chunkSize;
    this.chunks = s.geometry.chunks;
    this.blocksPerPage = PAGE_SIZE / s.geometry.ioSize;
    this.pages = Array.from({ length: s.geometry.pages }, () => new BitmapPage(this.blocksPerPage));
    this.spaceBytes = s.spaceBytes;
    this.flags = s.flags;
    this.eventsCleared = s.eventsCleared;
    this.daemonSleepSeconds = s.daemonSleep;
    this.barrierIdleSeconds = s.barrierIdle;
    this.offsetSectors = s.offsetSectors;
  }

  /** Bitmap writes failed on every member: the bitmap is disabled (WRITE_ERROR). */
  get writeError(): boolean {
    return hasFlag(this.flags, BitmapFlag.WriteError);
  }

  byte(chunk: number): number {
    return this.pages[pageOf(chunk)]!.data[offsetInPage(chunk)]!;
  }

  /** When a page holding a chunk just made Dirty may be cleaned (its expiry, if it has none). */
  private expireLater(page: BitmapPage): void {
    if (page.expire === Infinity) page.expire = performance.now() + this.barrierIdleSeconds * 1000;
  }

  /**
   * Applies `action` to chunks [start, end] and carries out the side effects (A3). Returns the
   * last chunk's new state (NONE for no change): start_sync's answer for a single chunk.
   * With WRITE_ERROR set the whole state machine does nothing. `writeSyncAtEnd`: the sync
   * request of the chunks in range waits for endWrite (startWrite's own chunks).
   */
  apply(start: number, end: number, action: Action, writeSyncAtEnd = false): Next {
    if (this.writeError) return NONE;
    const ctx = { parity: this.host.parity, degraded: this.host.isDegraded() };
    const still = STILL[action]!;
    const degradedStartsync = ctx.degraded && action === Action.Startsync;
    let last: Next = NONE;
    let requestSync = false;
    let arm = false;
    // The common byte that does not change costs one table lookup.
    this.eachPage(start, end + 1, (page, idx, first, stop) => {
      const data = page.data;
      for (let off = first; off < stop; off++) {
        const byte = data[off]!;
        if (still[byte] === 1 && !(degradedStartsync && byte === State.Dirty)) {
          last = NONE;
          continue;
        }
        const t = transition(byte, action, ctx);
        last = t.next;
        // A write's own chunks ask at endWrite (writeSyncAtEnd); neighbours it infects, here.
        if (t.requestSync && !writeSyncAtEnd) requestSync = true;
        if (t.next === NONE) continue;
        data[off] = t.next;
        if (t.next === State.Clean || t.next === State.CleanUnwritten) this.cleaned = true;
        if (t.next === State.Dirty) {
          arm = true;
          // A page holding Dirty always has a finite expiry (see BitmapPage.expire).
          this.expireLater(page);
        }
        if (t.mark !== 'none') {
          const spread = this.markChunk(idx, off, t.mark === 'dirty-infect', ctx.parity);
          if (spread.needSync) requestSync = true;
          if (spread.dirty) arm = true;
        }
      }
    });
    if (requestSync && !ctx.degraded) this.host.requestSync();
    if (arm) this.onDirty();
    return last;
  }

  /**
   * Marks the io_size block holding byte `off` of page `idx` for write-out, with infect (A6):
   * if the block was already dirty, or another chunk in it is Dirty/NeedSync, every other chunk
   * in the block that is Unwritten/Clean/CleanUnwritten is raised too, since the block is being
   * written anyway. Infect touches chunk bytes only: with io_size 4096, block 0 of page 0 also
   * holds the superblock, and bytes past the last chunk are not chunks (B-k).
   */
  private markChunk(idx: number, off: number, infect: boolean, parity: boolean): { needSync: boolean; dirty: boolean } {
    const page = this.pages[idx]!;
    const io = this.geometry.ioSize;
    const block = Math.floor(off / io);
    const wasDirty = page.dirty[block] === 1;
    page.dirty[block] = 1;
    this.dirtyPages.add(idx);
    const result = { needSync: false, dirty: false };
    if (!infect) return result;
    const from = Math.max(block * io, idx === 0 ? BITMAP_DATA_OFFSET : 0);
    const to = Math.min((block + 1) * io, usedBytesOfPage(this.geometry, idx));
    // Native byte searches, not a loop per byte: on a parity array nearly every first write to a
    // chunk lands here, and a block holds up to 4096 chunk bytes.
    const bytes = page.data.subarray(from, to);
    const at = off - from;
    const spread = wasDirty || SPREADERS.some((s) => holdsOtherThan(bytes, s, at));
    if (!spread) return result;
    const table = infectTable(parity, this.infectUnwritten ?? !parity);
    // Invariant: infect never produces an INFECTABLE state, so one pass per state sees each
    // byte at most once.
    for (const before of INFECTABLE) {
      const next = table[before]!;
      if (next === NONE) continue;
      for (let i = bytes.indexOf(before); i !== -1; i = bytes.indexOf(before, i + 1)) {
        if (i === at) continue;
        bytes[i] = next;
        if (next === State.NeedSync) result.needSync = true;
        if (next === State.Dirty) {
          result.dirty = true;
          this.expireLater(page);
        }
      }
    }
    return result;
  }

  /**
   * Walks chunks [start, end) page by page: `visit` gets each page with the offsets of its first
   * and past-the-last chunk byte in range (whole-bitmap loops then run over one byte array at a
   * time). A visit that returns false ends the walk.
   */
  eachPage(start: number, end: number, visit: (page: BitmapPage, idx: number, first: number, stop: number) => boolean | void): void {
    for (let c = start; c < end; ) {
      const idx = pageOf(c);
      const first = offsetInPage(c);
      const stop = Math.min(PAGE_SIZE, first + (end - c));
      if (visit(this.pages[idx]!, idx, first, stop) === false) return;
      c += stop - first;
    }
  }

  /** Whether `action` leaves every chunk of [first, last] as it is, with no side effect (STILL). */
  still(first: number, last: number, action: Action): boolean {
    const still = STILL[action]!;
    for (let c = first; c <= last; c++) if (still[this.byte(c)] !== 1) return false;
    return true;
  }

  pageHasDirty(idx: number): boolean {
    const data = this.pages[idx]!.data;
    const from = idx === 0 ? BITMAP_DATA_OFFSET : 0;
    return data.subarray(from, usedBytesOfPage(this.geometry, idx)).includes(State.Dirty);
  }

  // ---------------------------------------------------------------- barriers

  /** Takes every page reference at once, or none (then raiseBarriers waits its turn). */
  tryRaiseBarriers(startChunk: number, endChunk: number): boolean {
    const first = pageOf(startChunk);
    const last = pageOf(endChunk);
    for (let idx = first; idx <= last; idx++) {
      if (this.pages[idx]!.tryGet()) continue;
      for (let taken = first; taken < idx; taken++) this.pages[taken]!.put();
      return false;
    }
    const expire = performance.now() + this.barrierIdleSeconds * 1000;
    for (let idx = first; idx <= last; idx++) this.pages[idx]!.expire = expire;
    return true;
  }

  async raiseBarriers(startChunk: number, endChunk: number): Promise<void> {
    const last = pageOf(endChunk);
    // Ascending page order; the daemon holds at most one page, so this cannot deadlock.
    for (let idx = pageOf(startChunk); idx <= last; idx++) {
      const page = this.pages[idx]!;
      while (!page.tryGet()) await page.waitResume();
      page.expire = performance.now() + this.barrierIdleSeconds * 1000;
    }
  }

  releaseBarriers(what: string, startChunk: number, endChunk: number): void {
    const last = pageOf(endChunk);
    for (let idx = pageOf(startChunk); idx <= last; idx++) {
      if (!this.pages[idx]!.put()) {
        throw new MdError('EINVAL', `llbitmap: ${what}: expected a matching start on page ${idx}, found none in flight`);
      }
    }
  }

  // ---------------------------------------------------------------- marks and snapshots

  markBlocks(idx: number, fromBlock: number, toBlock: number): void {
    const page = this.pages[idx]!;
    page.dirty.fill(1, fromBlock, toBlock);
    this.dirtyPages.add(idx);
  }

  /** Every block in use (superblock area and chunk bytes): write_all. */
  markAll(): void {
    const io = this.geometry.ioSize;
    for (let idx = 0; idx < this.pages.length; idx++) {
      this.markBlocks(idx, 0, Math.ceil(usedBytesOfPage(this.geometry, idx) / io));
    }
  }

  /** A copy of bitmap blocks [from, to) (global block numbers), as one run. */
  snapshot(from: number, to: number): BitmapRun {
    const io = this.geometry.ioSize;
    const data = Buffer.allocUnsafe((to - from) * io);
    for (let blk = from; blk < to; blk++) {
      const b = blk % this.blocksPerPage;
      data.set(this.pages[(blk - b) / this.blocksPerPage]!.data.subarray(b * io, (b + 1) * io), (blk - from) * io);
    }
    return { offset: from * io, data };
  }

  /** Rewrites the update_sb fields into page 0 (A1): the next write-out of block 0 carries them. */
  writeSuper(events: bigint): void {
    const sb: BitmapSuper = {
      magic: BITMAP_MAGIC,
      version: BITMAP_MAJOR_LOCKLESS,
      uuid: this.host.uuid,
      events,
      eventsCleared: this.eventsCleared,
      syncSize: BigInt(this.geometry.syncSize / SECTOR),
      state: withFlag(this.flags, BitmapFlag.DaemonBusy, false),
      chunksize: this.chunkSize / SECTOR,
      daemonSleep: this.daemonSleepSeconds,
      writeBehind: 0,
      sectorsReserved: this.spaceBytes / SECTOR,
      nodes: 0,
      clusterName: '',
    };
    encodeBitmapSuper(sb).copy(this.pages[0]!.data, 0);
  }

  /** Chunks per state. */
  counts(): BitmapCounts {
    const n = [0, 0, 0, 0, 0, 0, 0, 0];
    this.eachPage(0, this.chunks, (page, _idx, first, stop) => {
      for (let off = first; off < stop; off++) {
        const b = page.data[off]!;
        if (b < n.length) n[b]!++;
      }
    });
    return {
      unwritten: n[0]!,
      clean: n[1]!,
      dirty: n[2]!,
      needSync: n[3]!,
      syncing: n[4]!,
      needSyncUnwritten: n[5]!,
      syncingUnwritten: n[6]!,
      cleanUnwritten: n[7]!,
    };
  }
}

/** The states that make a block's other chunks infected (A6). */
const SPREADERS: readonly State[] = [State.Dirty, State.NeedSync];

/** Whether `block` holds `value` anywhere but at index `except`. */
function holdsOtherThan(block: Uint8Array, value: number, except: number): boolean {
  const i = block.indexOf(value);
  return i !== -1 && (i !== except || block.indexOf(value, i + 1) !== -1);
}
