// The bitmap in memory: one state byte per chunk in 4 KiB pages (read once at load), the
// superblock fields kept with them, and the state machine applied to chunk ranges (states.ts
// decides a chunk's next state; this carries out the side effects: marking blocks for write-out,
// infect, asking for a sync, arming the daemon). Also the per-chunk count of writes in flight
// that keeps the daemon from cleaning a chunk under them (B-a, chunk-activity.ts). llbitmap.ts,
// write-out.ts and daemon.ts share it.

import type { BitmapCounts, BitmapHost } from '../write-intent-bitmap.js';
import { BITMAP_DATA_OFFSET, BITMAP_MAGIC, BITMAP_MAJOR_LOCKLESS, BitmapFlag, encodeBitmapSuper, hasFlag, withFlag, type BitmapSuper } from './bitmap-superblock.js';
import type { BitmapRun } from './bitmap-io.js';
import { firstChunkOfPage, offsetInPage, PAGE_SIZE, pageOf, SECTOR, usedBytesOfPage, type Geometry } from './geometry.js';
import { BitmapPage } from './page.js';
import { ChunkActivity, unmatchedEnd } from './chunk-activity.js';
import { Action, INFECTABLE, infectTable, NONE, State, STILL, transition, type Next } from './states.js';

/** Each state's byte as a one-character Latin-1 string (counts()). */
const STATE_CHARS = Array.from({ length: 8 }, (_, state) => String.fromCharCode(state));

/** apply() over at least this many chunks visits only the bytes that change (changing()). */
const SKIP_SCAN_CHUNKS = 256;

/** Per action, a global expression matching any byte (as a Latin-1 character) not still under it. */
const changingByAction = new Map<Action, RegExp>();

function changing(action: Action, still: Uint8Array): RegExp {
  let re = changingByAction.get(action);
  if (re === undefined) {
    const kept = [...still.keys()].filter((b) => still[b] === 1).map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('');
    re = new RegExp(kept === '' ? '[\\s\\S]' : `[^${kept}]`, 'g');
    changingByAction.set(action, re);
  }
  return re;
}

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
  /** Writes in flight and last activity per chunk: what the daemon consults before cleaning. */
  readonly activity: ChunkActivity;
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
   * Whether infect (A6) raises Unwritten neighbours too; undefined: never on parity levels (see
   * below); on mirrors it follows `infect`. On raid4/5/6 an Unwritten neighbour becomes NeedSync,
   * so every block a new array's writes touch twice gets its parity built at once, whole: 1% of a
   * raid5 written in 1 MiB pieces spread over the array made the lazy build resync 94% of it
   * (bench:parity 2). Left Unwritten, a later write to such a chunk pays one more bitmap write.
   */
  infectUnwritten: boolean | undefined;
  /**
   * Whether infect (A6) runs at all; undefined: on parity levels only. On raid1/10 resyncing a
   * chunk nobody wrote costs as much as any, and infect marked every chunk of a block a second
   * write touched: 20000 random 4 KiB writes marked 65,536 chunks where 17,215 were written (3.8x),
   * and a database's writes spread over a volume marked all of it. What infect saves there, a
   * bitmap write per first touch of a chunk, costs under 5% of random-write throughput (bench:md
   * tables 1 and 2b). On parity levels a Clean neighbour becomes Dirty, which a crash resyncs as
   * cheaply as the written chunk beside it costs anyway, and their writes are dearer than a bitmap write.
   */
  infect: boolean | undefined;
  /** Called when a chunk became Dirty: the daemon must come by to clean it (daemon.ts arms). */
  onDirty: () => void = () => undefined;

  constructor(readonly host: BitmapHost, s: ChunkMapSetup) {
    this.geometry = s.geometry;
    this.chunkSize = s.geometry.chunkSize;
    this.chunks = s.geometry.chunks;
    this.blocksPerPage = PAGE_SIZE / s.geometry.ioSize;
    this.pages = Array.from({ length: s.geometry.pages }, () => new BitmapPage(this.blocksPerPage));
    this.activity = new ChunkActivity(s.geometry.chunks);
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
    // The common byte that does not change costs one table lookup. Over a long range (every
    // chunk: Reload at assembly, Endsync, ...) the bytes that change are found by a regular
    // expression over the page's bytes as Latin-1 text instead, and only they are visited: a loop
    // over every chunk at start has V8's optimizing compiler compile it, paging about 4 MiB of
    // the compiler's code into every idle engine (see counts()).
    const skipper = end - start + 1 >= SKIP_SCAN_CHUNKS && !degradedStartsync ? changing(action, still) : undefined;
    this.eachPage(start, end + 1, (page, idx, first, stop) => {
      const data = page.data;
      let text: string | undefined;
      if (skipper !== undefined) {
        text = data.toString('latin1', 0, stop);
        skipper.lastIndex = first;
      }
      for (let off = first; off < stop; off++) {
        if (text !== undefined) {
          // The next byte that is not still, or past the page: the bytes skipped are still.
          const found = skipper!.exec(text);
          const next = found === null ? stop : found.index;
          if (next !== off) last = NONE;
          if (next >= stop) break;
          off = next;
          skipper!.lastIndex = next + 1;
        }
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
          // Its idle time, which the daemon waits out before cleaning it, counts from now.
          this.activity.touch(firstChunkOfPage(idx) + off - (idx === 0 ? BITMAP_DATA_OFFSET : 0));
        }
        if (t.mark !== 'none') {
          const spread = this.markChunk(idx, off, t.mark === 'dirty-infect' && (this.infect ?? ctx.parity), ctx.parity);
          if (spread.needSync) requestSync = true;
          if (spread.dirty) arm = true;
          // Infect may have raised bytes further on in this page: the text must show them.
          if (text !== undefined) text = data.toString('latin1', 0, stop);
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
          this.activity.touch(firstChunkOfPage(idx) + from + i - (idx === 0 ? BITMAP_DATA_OFFSET : 0));
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

  // ---------------------------------------------------------------- writes in flight and cleaning

  /** A write or discard on chunks [first, last] starts: the daemon leaves them alone until it ends (B-a). */
  hold(first: number, last: number): void {
    this.activity.begin(first, last);
  }

  release(what: string, first: number, last: number): void {
    if (!this.activity.end(first, last)) throw unmatchedEnd(what, first, last);
  }

  /**
   * The daemon on page `idx` (A7, per chunk): every Dirty chunk with no write in flight that has
   * been idle for barrier_idle (any idle time with `force`, a flush) becomes Clean, in memory;
   * the Clean reaches disk with the next write-out, after a cache flush of every member
   * (`cleaned`). Nothing while degraded (‡) or disabled. One synchronous turn: no write can start
   * between a chunk's check and its change (chunk-activity.ts says why that is the whole proof).
   * Returns the chunks cleaned, those left Dirty, and those left Dirty with a write in flight.
   */
  cleanIdle(idx: number, force: boolean): { cleaned: number; left: number; busy: number } {
    const result = { cleaned: 0, left: 0, busy: 0 };
    if (this.writeError) return result;
    const page = this.pages[idx]!;
    const from = idx === 0 ? BITMAP_DATA_OFFSET : 0;
    const stop = usedBytesOfPage(this.geometry, idx);
    const base = firstChunkOfPage(idx) - from;
    const degraded = this.host.isDegraded();
    const idleMs = force ? 0 : Math.ceil(this.barrierIdleSeconds * 1000);
    const a = this.activity;
    const now = a.now();
    const data = page.data;
    for (let off = data.indexOf(State.Dirty, from); off !== -1 && off < stop; off = data.indexOf(State.Dirty, off + 1)) {
      const c = base + off;
      if (!degraded && a.cleanable(c, idleMs, now)) {
        data[off] = State.Clean;
        result.cleaned++;
      } else {
        result.left++;
        if (a.inFlight(c)) result.busy++;
      }
    }
    if (result.cleaned > 0) this.cleaned = true;
    return result;
  }

  // ---------------------------------------------------------------- marks and snapshots

  markBlocks(idx: number, fromBlock: number, toBlock: number): void {
    const page = this.pages[idx]!;
    page.dirty.fill(1, fromBlock, toBlock);
    this.dirtyPages.add(idx);
  }

  /** Every block in use of page `idx`. */
  markPage(idx: number): void {
    this.markBlocks(idx, 0, Math.ceil(usedBytesOfPage(this.geometry, idx) / this.geometry.ioSize));
  }

  /** Every block in use (superblock area and chunk bytes): write_all. */
  markAll(): void {
    const io = this.geometry.ioSize;
    for (let idx = 0; idx < this.pages.length; idx++) {
      this.markBlocks(idx, 0, Math.ceil(usedBytesOfPage(this.geometry, idx) / io));
    }
  }

  /**
   * A copy of bitmap blocks [from, to) (global block numbers), as one run: in `image` at the
   * blocks' own offsets when given (a buffer of at least imageBytes, reused by write-outs), else
   * in a buffer of its own.
   */
  snapshot(from: number, to: number, image?: Buffer): BitmapRun {
    const io = this.geometry.ioSize;
    const data = image === undefined ? Buffer.allocUnsafe((to - from) * io) : image.subarray(from * io, to * io);
    // One copy per page the run spans (a write-out's run is most of the bitmap: a copy, or a view,
    // per block cost more than the copying); a whole page without a view of it.
    for (let blk = from; blk < to; ) {
      const b = blk % this.blocksPerPage;
      const n = Math.min(to - blk, this.blocksPerPage - b);
      const page = this.pages[(blk - b) / this.blocksPerPage]!.data;
      if (n === this.blocksPerPage) data.set(page, (blk - from) * io);
      else page.copy(data, (blk - from) * io, b * io, (b + n) * io);
      blk += n;
    }
    return { offset: from * io, data };
  }

  /** Bytes of the whole bitmap in memory (every page): what a snapshot image must hold. */
  get imageBytes(): number {
    return this.pages.length * PAGE_SIZE;
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

  /**
   * Chunks per state. Counted by the string built-ins (a page's bytes as Latin-1 text, each state's
   * character taken out), not a loop over every byte: an engine counts once as it starts, and a
   * loop that long has V8's optimizing compiler compile it, paging about 4 MiB of the compiler's
   * code (the node binary's) into an idle engine (a 300 MiB raid1: 53 -> 49 MiB RSS). Up to 3 ms for
   * 65,536 chunks of mixed states; counts are taken per status and per sync pass, not per request.
   */
  counts(): BitmapCounts {
    const n = [0, 0, 0, 0, 0, 0, 0, 0];
    this.eachPage(0, this.chunks, (page, _idx, first, stop) => {
      const text = page.data.toString('latin1', first, stop);
      let left = text.length;
      for (let state = 0; state < n.length && left > 0; state++) {
        const found = text.length - text.replaceAll(STATE_CHARS[state]!, '').length;
        n[state]! += found;
        left -= found;
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
