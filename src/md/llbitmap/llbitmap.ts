// The lockless bitmap (llbitmap.md): one state byte per chunk, held in 4 KiB pages read once at
// load, changed by the state machine (states.ts) on the array's I/O and sync events, written
// back one io_size block at a time. Implements WriteIntentBitmap for src/md/array.ts.

import type {
  BitmapCounts,
  BitmapLoadReport,
  BitmapHost,
  BitmapMember,
  StartSyncResult,
  WriteIntentBitmap,
} from '../write-intent-bitmap.js';
import type { SyncMode } from '../types.js';
import { MdError } from '../errors.js';
import { DEFAULT_TUNING } from '../tuning.js';
import {
  BITMAP_DATA_OFFSET,
  BITMAP_MAGIC,
  BITMAP_MAJOR_LOCKLESS,
  BITMAP_SUPER_SIZE,
  BitmapFlag,
  encodeBitmapSuper,
  hasFlag,
  withFlag,
  type BitmapSuper,
} from './bitmap-superblock.js';
import {
  checkIoSize,
  checkSpace,
  checkSyncSize,
  chooseChunkSize,
  chunkCount,
  fits,
  firstChunkOfPage,
  isPowerOfTwo,
  makeGeometry,
  offsetInPage,
  PAGE_SIZE,
  pageOf,
  SECTOR,
  usableSpace,
  usedBytesOfPage,
  type Geometry,
} from './geometry.js';
import { BitmapPage } from './page.js';
import { CoalescedFlush } from './coalesced-flush.js';
import { writeToAllMembers, type BitmapRun } from './bitmap-io.js';
import { crossCheck, describeBitmapLoad, readAreas, readBitmapSupers, sameGeometry } from './cross-check.js';
import { trace } from '../../common/trace.js';
import { Action, INFECTABLE, infectTable, isSynced, isUnwrittenState, mergeStates, NONE, State, STILL, transition, type Next } from './states.js';
import * as text from './status-text.js';

export const DEFAULT_DAEMON_SLEEP = DEFAULT_TUNING.bitmapDaemonSleepSeconds;
export const DEFAULT_BARRIER_IDLE = 5;
/** mdadm's default for metadata 1.2: the bitmap starts 8 sectors after the md superblock. */
export const DEFAULT_OFFSET_SECTORS = 8;
/** setTimeout's limit (2^31-1 ms), in whole seconds. */
const MAX_TIMER_SECONDS = Math.floor(0x7fffffff / 1000);
/**
 * Clean bitmap bytes a write-out may rewrite to join two dirty blocks into one run: on a disk
 * a 16 KiB write costs about what a 512-byte one does, a second write and a cache flush do not.
 */
const MERGE_GAP = 16 * 1024;

interface CommonOptions {
  /** Bytes per bitmap write: the array's logical block size (512 or 4096). */
  ioSize: number;
  /** Bytes of sync space the bitmap covers (md's resync_max_sectors × 512). */
  syncSize: number;
  /** Seconds a page must be idle before the daemon may clean it. Default 5. */
  barrierIdle?: number;
  /** The md superblock's bitmap_offset in sectors, shown by `metadata`. Default 8. */
  offsetSectors?: number;
}

export interface LlBitmapCreateOptions extends CommonOptions {
  /** Bytes reserved for the bitmap area on every member (superblock included); recorded as sectors_reserved. */
  spaceBytes: number;
  /** Bytes per chunk; default: the smallest power of two from 64 KiB whose chunks fit (A2). */
  chunkSize?: number;
  /** Seconds between daemon passes, at least 1. Default 30. */
  daemonSleep?: number;
  /** Start every chunk Clean instead of Unwritten (the array was created assume-clean). */
  assumeClean?: boolean;
}

export interface LlBitmapLoadOptions extends CommonOptions {
  /** Bytes reserved for the bitmap area; default the superblock's sectors_reserved. */
  spaceBytes?: number;
  /**
   * The caller knows the bitmap may not cover every difference between the members (a member
   * missed the clean stop the others recorded): load as STALE, so every written chunk is resynced.
   */
  stale?: boolean;
}

interface Setup {
  geometry: Geometry;
  spaceBytes: number;
  flags: number;
  events: bigint;
  eventsCleared: bigint;
  daemonSleep: number;
  barrierIdle: number;
  offsetSectors: number;
}

export class LlBitmap implements WriteIntentBitmap {
  readonly kind = 'llbitmap' as const;
  /** What load() found about the members' copies (cross-check.ts); undefined for a new bitmap. */
  loadReport: BitmapLoadReport | undefined;
  // geometry, chunkSize, chunks and pages change only in resize(), with no I/O in flight.
  chunkSize: number;
  chunks: number;
  geometry: Geometry;

  private readonly host: BitmapHost;
  private pages: BitmapPage[];
  private readonly blocksPerPage: number;
  /** Pages with at least one dirty block. */
  private readonly dirtyPages = new Set<number>();
  private readonly flusher: CoalescedFlush;
  private readonly spaceBytes: number;
  private readonly offsetSectors: number;
  /** Superblock `state` bits kept in memory (STALE, FIRST_USE, CLEAN are consumed at load). */
  private flags: number;
  /**
   * Some chunk became Clean or CleanUnwritten since the last write-out began. Such a state may
   * reach disk only after the data writes it vouches for: those completed, but may still sit in
   * a member's volatile cache, so the next write-out flushes every member first.
   */
  private cleaned = false;
  /** Write-outs started (each takes the next number) and the last one durable on the members. */
  private writeOuts = 0;
  private durableWriteOut = 0;
  private eventsClearedAt: bigint;
  private daemonSleepSeconds: number;
  private barrierIdleSeconds: number;
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

  private timer: NodeJS.Timeout | null = null;
  private daemonRun: Promise<void> | null = null;
  /** The timer fired while a daemon pass was running (DAEMON_BUSY): run it again. */
  private daemonBusy = false;
  /** Set by close(): no timer, daemon pass or write-out starts after this. */
  private closing = false;
  private closed = false;

  private constructor(host: BitmapHost, s: Setup) {
    this.host = host;
    this.geometry = s.geometry;
    this.chunkSize = s.geometry.chunkSize;
    this.chunks = s.geometry.chunks;
    this.blocksPerPage = PAGE_SIZE / s.geometry.ioSize;
    this.pages = Array.from({ length: s.geometry.pages }, () => new BitmapPage(this.blocksPerPage));
    this.spaceBytes = s.spaceBytes;
    this.flags = s.flags;
    this.eventsClearedAt = s.eventsCleared;
    this.daemonSleepSeconds = s.daemonSleep;
    this.barrierIdleSeconds = s.barrierIdle;
    this.offsetSectors = s.offsetSectors;
    this.flusher = new CoalescedFlush(() => this.writeOut());
    this.writeSuper(s.events);
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * A new bitmap on every bitmap member: chunk size chosen within the reserved space, every chunk
   * Unwritten (Clean with assumeClean), written and durable before this resolves (B-l).
   */
  static async create(host: BitmapHost, options: LlBitmapCreateOptions): Promise<LlBitmap> {
    checkCommon(options);
    checkSpace(options.spaceBytes);
    const daemonSleep = options.daemonSleep ?? DEFAULT_DAEMON_SLEEP;
    checkDaemonSleep(daemonSleep);
    const usable = usableSpace(options.spaceBytes, options.ioSize);
    const chunkSize = options.chunkSize ?? chooseChunkSize(options.syncSize, usable);
    const geometry = makeGeometry(options.syncSize, chunkSize, options.ioSize, options.spaceBytes);
    checkMembers(host, geometry);
    const events = host.events();
    return LlBitmap.initialise(host, {
      geometry,
      spaceBytes: options.spaceBytes,
      flags: 0,
      events,
      eventsCleared: events,
      daemonSleep,
      barrierIdle: options.barrierIdle ?? DEFAULT_BARRIER_IDLE,
      offsetSectors: options.offsetSectors ?? DEFAULT_OFFSET_SECTORS,
    }, options.assumeClean ?? false);
  }

  /**
   * Assembles the bitmap from the members (A2 read_sb): magic, version, uuid; FIRST_USE
   * initialises; otherwise chunksize and daemon_sleep are checked, STALE is set when the bitmap's
   * events lag the array's, every page is read, and Stale or Reload is applied to every chunk.
   */
  static async load(host: BitmapHost, options: LlBitmapLoadOptions): Promise<LlBitmap> {
    checkCommon(options);
    if (options.spaceBytes !== undefined) checkSpace(options.spaceBytes);
    // Read one io block (not 256 bytes) so a 4 KiB-sector member is never sent a short read.
    for (const m of host.bitmapMembers()) checkMemberBase(m, options.ioSize, options.ioSize);
    const copies = await readBitmapSupers(host, options.ioSize);
    const reference = copies.valid[0]!;
    const where = reference.member.name;
    const sb = reference.sb;
    const spaceBytes = options.spaceBytes ?? sb.sectorsReserved * SECTOR;
    if (spaceBytes === 0) {
      throw new MdError('ENOSPC', `${where}: bitmap superblock: expected sectors_reserved > 0, found 0 and no space configured`);
    }
    const usable = usableSpace(spaceBytes, options.ioSize);
    const barrierIdle = options.barrierIdle ?? DEFAULT_BARRIER_IDLE;
    const offsetSectors = options.offsetSectors ?? DEFAULT_OFFSET_SECTORS;
    let flags = sb.state;

    if (hasFlag(flags, BitmapFlag.FirstUse)) {
      // mdadm wrote only the superblock (000:L236-240): initialise here, and (B-l) persist it
      // all before the array issues any I/O: initialise() resolves only once it is durable.
      const assumeClean = hasFlag(flags, BitmapFlag.Clean);
      flags = withFlag(withFlag(flags, BitmapFlag.FirstUse, false), BitmapFlag.Clean, false);
      const geometry = makeGeometry(options.syncSize, chooseChunkSize(options.syncSize, usable), options.ioSize, spaceBytes);
      checkMembers(host, geometry);
      const events = host.events();
      return LlBitmap.initialise(host, {
        geometry,
        spaceBytes,
        flags: withFlag(flags, BitmapFlag.DaemonBusy, false),
        events,
        eventsCleared: events,
        // As the kernel's llbitmap_init: a first use starts from the default daemon_sleep.
        daemonSleep: DEFAULT_DAEMON_SLEEP,
        barrierIdle,
        offsetSectors,
      }, assumeClean);
    }

    const chunkSize = sb.chunksize * SECTOR;
    if (!isPowerOfTwo(sb.chunksize)) {
      throw new MdError('EBADMETA', `${where}: bitmap superblock: expected chunksize a power of two, found ${sb.chunksize} sectors`);
    }
    const chunks = Math.ceil(options.syncSize / chunkSize);
    if (BITMAP_DATA_OFFSET + chunks > usable) {
      // B-f: the 1024-byte data offset counts against the reserved space.
      throw new MdError(
        'EBADMETA',
        `${where}: bitmap superblock: chunksize ${sb.chunksize} sectors too small: ${chunks} chunks need ` +
          `${BITMAP_DATA_OFFSET + chunks} bytes, found ${usable} reserved`,
      );
    }
    if (sb.daemonSleep < 1 || sb.daemonSleep > MAX_TIMER_SECONDS) {
      throw new MdError(
        'EBADMETA',
        `${where}: bitmap superblock: expected daemon_sleep from 1 to ${MAX_TIMER_SECONDS} seconds, found ${sb.daemonSleep}`,
      );
    }
    const stale = (options.stale ?? false) || hasFlag(flags, BitmapFlag.Stale) || sb.events < host.events();
    const geometry = makeGeometry(options.syncSize, chunkSize, options.ioSize, spaceBytes);
    checkMembers(host, geometry);

    const areaBytes = Math.min(geometry.pages * PAGE_SIZE, usable);
    const agreeing = copies.valid.filter((c) => sameGeometry(c.sb, sb));
    for (const c of copies.valid) {
      if (!agreeing.includes(c)) copies.rejected.push({ name: c.member.name, reason: `bitmap geometry (chunksize ${c.sb.chunksize}, reserved ${c.sb.sectorsReserved} sectors) differs from ${where}'s` });
    }
    const areas = await readAreas(host, agreeing.map((c) => c.member), areaBytes);
    const { area, disagreeing } = crossCheck(areas, geometry.chunks);
    const bm = new LlBitmap(host, {
      geometry,
      spaceBytes,
      flags: withFlag(withFlag(flags, BitmapFlag.Stale, false), BitmapFlag.DaemonBusy, false),
      events: sb.events,
      eventsCleared: sb.eventsCleared,
      daemonSleep: sb.daemonSleep,
      barrierIdle,
      offsetSectors,
    });
    for (let i = 0; i < bm.pages.length; i++) {
      const page = bm.pages[i]!;
      const from = i * PAGE_SIZE;
      // Page 0 keeps the superblock the constructor encoded (today's sync_size, STALE consumed);
      // everything after it is taken as read.
      const skip = i === 0 ? BITMAP_SUPER_SIZE : 0;
      area.copy(page.data, skip, from + skip, Math.min(from + PAGE_SIZE, area.length));
    }
    bm.loadReport = { members: areas.map((a) => a.member.name), rejected: copies.rejected, disagreeing };
    trace('md', disagreeing > 0 || copies.rejected.length > 0 ? 'info' : 'debug', () =>
      `bitmap cross-check of ${areas.map((a) => a.member.name).join(', ')}: ${describeBitmapLoad(bm.loadReport).join('; ') || 'the copies agree'}`);
    // Members whose copy was damaged or disagreed get the merged bitmap at the first write-out
    // (run() writes the superblocks, which writes out every marked block).
    if (disagreeing > 0 || copies.rejected.length > 0) bm.markAll();
    // With WRITE_ERROR recorded on disk the state machine stays off: the bitmap is disabled.
    bm.apply(0, bm.chunks - 1, stale ? Action.Stale : Action.Reload);
    return bm;
  }

  private static async initialise(host: BitmapHost, s: Setup, assumeClean: boolean): Promise<LlBitmap> {
    const bm = new LlBitmap(host, s);
    if (assumeClean) {
      for (let c = 0; c < bm.chunks; c++) bm.pages[pageOf(c)]!.data[offsetInPage(c)] = State.Clean;
    }
    bm.markAll();
    await bm.flusher.request();
    if (bm.writeError) {
      // B-i: a failed create leaves nothing behind (no timer, no bitmap handed out).
      await bm.close();
      throw new MdError('EIO', 'llbitmap: create: the new bitmap could not be written to any bitmap member');
    }
    return bm;
  }

  // ---------------------------------------------------------------- write path

  startWrite(offset: number, length: number): Promise<void> | undefined {
    this.checkOpen('startWrite');
    this.checkRange('startWrite', offset, length);
    if (length === 0) return undefined;
    const first = Math.floor(offset / this.chunkSize);
    const last = Math.floor((offset + length - 1) / this.chunkSize);
    // B-a: the page references are taken BEFORE the state changes, so the daemon cannot clean
    // these chunks between the change and the data write. No page suspended: all at once.
    if (this.tryRaiseBarriers(first, last)) {
      // Most writes land on chunks a write leaves as they are (Dirty already): no apply needed.
      if (!this.still(first, last, Action.Startwrite)) this.apply(first, last, Action.Startwrite, true);
      return undefined;
    }
    return this.raiseBarriers(first, last).then(() => {
      this.apply(first, last, Action.Startwrite, true);
    });
  }

  endWrite(offset: number, length: number): void {
    this.checkRange('endWrite', offset, length);
    if (length === 0) return;
    const first = Math.floor(offset / this.chunkSize);
    const last = Math.floor((offset + length - 1) / this.chunkSize);
    this.releaseBarriers('endWrite', first, last);
    // The sync request a write's own chunks owe is made here, not at startWrite: on raid4/5/6 a
    // write that computes parity from every data block leaves them Dirty (paritySynced), and a
    // pass started meanwhile would only wait for the write and then find nothing to do.
    if (this.writeError || this.host.isDegraded()) return;
    for (let c = first; c <= last; c++) {
      if (this.byte(c) === State.NeedSync) {
        this.host.requestSync();
        return;
      }
    }
  }

  async startDiscard(offset: number, length: number): Promise<void> {
    this.checkOpen('startDiscard');
    const r = this.discardChunks('startDiscard', offset, length);
    if (!r) return;
    await this.raiseBarriers(r[0], r[1]);
    this.apply(r[0], r[1], Action.Discard);
  }

  endDiscard(offset: number, length: number): void {
    const r = this.discardChunks('endDiscard', offset, length);
    if (r) this.releaseBarriers('endDiscard', r[0], r[1]);
  }

  unplug(offset?: number, length?: number): Promise<void> | undefined {
    if (this.closed) return Promise.reject(closedError('unplug'));
    if (this.writeError) return undefined;
    if (offset === undefined || length === undefined || length === 0) {
      // No range: whatever is dirty or in flight may matter.
      if (this.dirtyPages.size === 0) return this.flusher.pending() ?? undefined;
      return this.flusher.request();
    }
    // Only the blocks of this range matter: one still dirty needs a write-out; one taken by a
    // write-out that is not durable yet (its chunk changed before, by another writer) needs that
    // one to finish. Writers elsewhere in the bitmap do not hold this one up.
    const first = Math.floor(offset / this.chunkSize);
    const last = Math.floor((offset + length - 1) / this.chunkSize);
    const io = this.geometry.ioSize;
    let inFlight = false;
    for (let c = first; c <= last; ) {
      const page = this.pages[pageOf(c)]!;
      const off = offsetInPage(c);
      const block = Math.floor(off / io);
      if (page.dirty[block] === 1) return this.flusher.request();
      if (page.written[block]! > this.durableWriteOut) inFlight = true;
      c += (block + 1) * io - off; // the first chunk of the next block
    }
    return inFlight ? (this.flusher.pending() ?? undefined) : undefined;
  }

  // ---------------------------------------------------------------- sync thread

  /**
   * Bytes from `offset` the sync thread may skip. `mode` is the pass being run; Clean and Dirty
   * chunks are skipped only in a plain 'resync' (A5). Without `mode` only never-written chunks
   * are skipped, the choice that is safe for every pass.
   */
  skipSyncBlocks(offset: number, mode?: SyncMode): number {
    const c = this.chunkAt('skipSyncBlocks', offset);
    if (this.writeError) return 0;
    const skippable = !this.host.isDegraded() && mode === 'resync' ? SKIP_IN_RESYNC : SKIP_ALWAYS;
    if (skippable[this.byte(c)] !== 1) return 0;
    // The whole run of skippable chunks from here, not just this one: on a big array where little
    // is marked, the sync thread would otherwise pay one call per chunk it passes over.
    let end = c + 1;
    this.eachPage(end, this.chunks, (page, _idx, first, stop) => {
      let off = first;
      while (off < stop && skippable[page.data[off]!] === 1) off++;
      end += off - first;
      return off === stop;
    });
    return Math.min(end * this.chunkSize, this.geometry.syncSize) - offset;
  }

  startSync(offset: number): StartSyncResult {
    const c = this.chunkAt('startSync', offset);
    const length = this.restOfChunk(c, offset);
    if (this.writeError) return { sync: true, length };
    const next = this.apply(c, c, Action.Startsync);
    return { sync: next === State.Syncing || next === State.SyncingUnwritten, length };
  }

  endSync(offset: number): void {
    this.checkSyncPosition('endSync', offset);
    if (offset >= this.geometry.syncSize) return;
    this.apply(Math.floor(offset / this.chunkSize), this.chunks - 1, Action.Abortsync);
  }

  closeSync(): void {
    const now = performance.now();
    // Let the daemon clean what the sync leaves Dirty without waiting for barrier_idle.
    for (const p of this.pages) p.expire = now;
    this.apply(0, this.chunks - 1, Action.Endsync);
  }

  async condEndSync(offset: number): Promise<void> {
    this.checkOpen('condEndSync');
    this.checkSyncPosition('condEndSync', offset);
    // B-c: only chunks ENTIRELY below the checkpoint; the chunk holding `offset` is half synced.
    // At the end of the space the last (possibly short) chunk is entirely below it.
    const below = offset >= this.geometry.syncSize ? this.chunks : Math.floor(offset / this.chunkSize);
    if (below > 0) this.apply(0, below - 1, Action.Endsync);
    if (this.writeError) return;
    this.markAll();
    await this.flusher.request();
  }

  blocksSynced(offset: number): boolean {
    const c = this.chunkAt('blocksSynced', offset);
    return this.writeError || isSynced(this.byte(c));
  }

  /**
   * NeedSync or Syncing → Dirty for the chunks [offset, +length) covers wholly (not in A3: see
   * README, "Where llraid departs from Linux md"). The lazy recovery then skips them: a Dirty
   * chunk answers startSync with false, so a pass that has not reached one passes over it, and
   * one syncing it stops after the window it holds (Abortsync and Endsync leave Dirty as it is).
   * Dirty is what a write leaves anyway, and the change is kept in memory only: on disk the chunk
   * stays NeedSync until its block is written for another reason, and both are resynced after a
   * crash. A degraded array keeps NeedSync: there it means data a missing member lacks.
   */
  paritySynced(offset: number, length: number): void {
    this.checkRange('paritySynced', offset, length);
    if (this.writeError || !this.host.parity || this.host.isDegraded()) return;
    const first = Math.ceil(offset / this.chunkSize);
    // The last chunk may be short: a range reaching the end of the space covers it wholly.
    const end = offset + length >= this.geometry.syncSize ? this.chunks : Math.floor((offset + length) / this.chunkSize);
    let dirtied = false;
    this.eachPage(first, end, (page, _idx, from, stop) => {
      for (let off = from; off < stop; off++) {
        const byte = page.data[off];
        if (byte !== State.NeedSync && byte !== State.Syncing) continue;
        page.data[off] = State.Dirty;
        dirtied = true;
        if (page.expire === Infinity) page.expire = performance.now() + this.barrierIdleSeconds * 1000;
      }
    });
    if (dirtied) this.armTimer();
  }

  isUnwritten(offset: number): boolean {
    const c = this.chunkAt('isUnwritten', offset);
    return !this.writeError && isUnwrittenState(this.byte(c));
  }

  startRecovery(): void {
    this.apply(0, this.chunks - 1, Action.ClearUnwritten);
  }

  proactiveSync(): void {
    if (!this.host.parity) {
      throw new MdError('ENOTSUP', 'llbitmap: proactive sync builds parity: expected a raid4/5/6 array, found a level without parity');
    }
    this.apply(0, this.chunks - 1, Action.ProactiveSync);
  }

  // ---------------------------------------------------------------- growing

  /**
   * The array grew (mdadm --grow --size): from now on the bitmap covers `syncSize` bytes. The
   * chunk size stays when the new chunk count fits the reserved space, and the new chunks start
   * Unwritten (nothing was ever written there); otherwise it doubles until they fit and each new
   * chunk takes the merge of the chunks it spans (mergeStates). The caller holds all I/O and has
   * stopped the sync thread; this resolves once the new bitmap is durable on every member.
   */
  async resize(syncSize: number): Promise<void> {
    this.checkOpen('resize');
    checkSyncSize(syncSize);
    const old = this.geometry;
    if (syncSize < old.syncSize) {
      throw new MdError('EINVAL', `llbitmap: resize: expected at least the current ${old.syncSize} bytes (shrinking is not supported), found ${syncSize}`);
    }
    if (syncSize === old.syncSize) return;
    let chunkSize = old.chunkSize;
    while (!fits(chunkCount(syncSize, chunkSize), old.usableSpace)) chunkSize *= 2;
    const geometry = makeGeometry(syncSize, chunkSize, old.ioSize, this.spaceBytes);
    checkMembers(this.host, geometry);
    // A daemon pass or a write-out in flight walks the pages of the old geometry.
    for (let busy = this.daemonRun ?? this.flusher.pending(); busy; busy = this.daemonRun ?? this.flusher.pending()) await busy;

    const oldStates = Uint8Array.from({ length: old.chunks }, (_, c) => this.byte(c));
    // A short last chunk now reaches into the grown space, which was never written.
    if (old.syncSize % old.chunkSize !== 0) oldStates[old.chunks - 1] = mergeStates([oldStates[old.chunks - 1]!, State.Unwritten]);
    const pages = Array.from({ length: geometry.pages }, () => new BitmapPage(this.blocksPerPage));
    this.pages[0]!.data.copy(pages[0]!.data, 0, 0, BITMAP_DATA_OFFSET);
    const factor = chunkSize / old.chunkSize;
    let owed = false;
    let dirty = false;
    const now = performance.now();
    for (let c = 0; c < geometry.chunks; c++) {
      // The old chunks this one spans; past the old end, grown space (Unwritten).
      const span = oldStates.subarray(c * factor, (c + 1) * factor);
      const next = span.length === 0 ? State.Unwritten : mergeStates(span.length < factor ? [...span, State.Unwritten] : span);
      const page = pages[pageOf(c)]!;
      page.data[offsetInPage(c)] = next;
      if (next === State.NeedSync) owed = true;
      if (next === State.Dirty) {
        dirty = true;
        page.expire = now + this.barrierIdleSeconds * 1000;
      }
    }
    this.pages = pages;
    this.geometry = geometry;
    this.chunkSize = chunkSize;
    this.chunks = geometry.chunks;
    this.dirtyPages.clear();
    if (this.writeError) return;
    this.writeSuper(this.host.events());
    this.markAll();
    await this.flusher.request();
    if (dirty) this.armTimer();
    if (owed && !this.host.isDegraded()) this.host.requestSync();
  }

  // ---------------------------------------------------------------- persistence

  async updateSb(): Promise<void> {
    this.checkOpen('updateSb');
    if (this.writeError) return;
    const events = this.host.events();
    // B-n: events_cleared rises in the daemon when bits are cleared; here it only follows the
    // array's events down (a rollback), so it never stays above them.
    if (events < this.eventsClearedAt) this.eventsClearedAt = events;
    this.writeSuper(events);
    this.markBlocks(0, 0, Math.ceil(BITMAP_DATA_OFFSET / this.geometry.ioSize));
    await this.flusher.request();
  }

  async flush(): Promise<void> {
    this.checkOpen('flush');
    // A8: flag every page, stop the timer, run the daemon once, then write every block.
    for (const p of this.pages) p.flush = true;
    this.clearTimer();
    await this.runDaemon();
    if (this.writeError) return;
    this.markAll();
    await this.flusher.request();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // B-j: from here no timer is armed and no daemon pass starts; a pass in progress stops
    // waiting for writes and ends; write-outs in flight complete before close resolves.
    this.closing = true;
    this.clearTimer();
    for (const p of this.pages) p.cancelSuspend();
    // Loop until nothing is in flight: an unplug may start a write-out while we wait, and
    // `closed` must be set in the same turn as the last check.
    for (;;) {
      const busy = this.daemonRun ?? this.flusher.pending();
      if (!busy) break;
      await busy;
    }
    this.closed = true;
  }

  // ---------------------------------------------------------------- status

  /** Bitmap writes failed on every member: the bitmap is disabled (WRITE_ERROR). */
  get writeError(): boolean {
    return hasFlag(this.flags, BitmapFlag.WriteError);
  }

  /** Events up to which the bitmap is known clean: a member re-added with events below this needs full recovery. */
  get eventsCleared(): bigint {
    return this.eventsClearedAt;
  }

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

  bitsText(): string {
    return this.writeError ? text.BITMAP_IO_ERROR_TEXT : text.bitsText(this.counts());
  }

  metadataText(): string {
    const sectors = this.chunkSize / SECTOR;
    return text.metadataText({
      chunksize: sectors,
      chunkshift: Math.log2(sectors),
      chunks: this.chunks,
      offset: this.offsetSectors,
      daemonSleep: this.daemonSleepSeconds,
    });
  }

  /** The state byte of chunk `chunk` as held in memory (for tests and status tools). */
  stateOf(chunk: number): number {
    if (!Number.isSafeInteger(chunk) || chunk < 0 || chunk >= this.chunks) {
      throw new MdError('EINVAL', `llbitmap: expected a chunk index from 0 to ${this.chunks - 1}, found ${chunk}`);
    }
    return this.byte(chunk);
  }

  get daemonSleep(): number {
    return this.daemonSleepSeconds;
  }

  /** B-m: refused unless a whole number of seconds ≥ 1, so it never persists what load rejects. */
  set daemonSleep(seconds: number) {
    checkDaemonSleep(seconds);
    this.daemonSleepSeconds = seconds;
  }

  get barrierIdle(): number {
    return this.barrierIdleSeconds;
  }

  set barrierIdle(seconds: number) {
    checkBarrierIdle(seconds);
    this.barrierIdleSeconds = seconds;
  }

  // ---------------------------------------------------------------- daemon

  /**
   * One daemon pass now, as the timer runs it (A7). If a pass is running, it runs once more
   * after the current one (DAEMON_BUSY) and this resolves when that is done.
   */
  runDaemon(): Promise<void> {
    if (this.daemonRun) {
      this.daemonBusy = true;
      return this.daemonRun;
    }
    const run = this.daemonLoop().finally(() => {
      if (this.daemonRun === run) this.daemonRun = null;
    });
    this.daemonRun = run;
    return run;
  }

  private async daemonLoop(): Promise<void> {
    let restart: boolean;
    do {
      this.daemonBusy = false;
      restart = false;
      // ‡ A degraded array keeps its Dirty bits: they say what a re-added member missed.
      if (this.host.isDegraded() || this.writeError) return;
      for (let idx = 0; idx < this.pages.length && !this.closing; idx++) {
        const page = this.pages[idx]!;
        if (!page.flush && performance.now() < page.expire) {
          // B-h: re-arm only for pages that still hold Dirty chunks.
          if (this.pageHasDirty(idx)) restart = true;
          continue;
        }
        // B-g: the flush flag is consumed by this pass.
        page.flush = false;
        // Nothing to clean: writers on this page are not held up for nothing.
        if (!this.pageHasDirty(idx)) continue;
        const drained = await page.suspend(this.daemonSleepSeconds * 1000);
        if (!drained) {
          // B-j: writes did not drain within daemon_sleep: skip this page, retry next pass.
          page.resume(performance.now());
          if (this.pageHasDirty(idx)) restart = true;
          continue;
        }
        const first = firstChunkOfPage(idx);
        const last = Math.min(this.chunks, first + (idx === 0 ? PAGE_SIZE - BITMAP_DATA_OFFSET : PAGE_SIZE)) - 1;
        this.apply(first, last, Action.Daemon);
        page.resume(Infinity);
        // B-n: bits were cleared on a whole array: the bitmap is clean up to these events. (If the
        // array went degraded during the wait, Daemon changed nothing: ‡ in states.ts.)
        if (!this.host.isDegraded()) {
          const events = this.host.events();
          if (events > this.eventsClearedAt) this.eventsClearedAt = events;
        }
      }
    } while (this.daemonBusy && !this.closing);
    if (restart) this.armTimer();
  }

  private armTimer(): void {
    // B-j: never armed during or after shutdown.
    if (this.timer || this.closing) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.closing) return;
      void this.runDaemon();
    }, this.daemonSleepSeconds * 1000);
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  // ---------------------------------------------------------------- state machine

  /**
   * Applies `action` to chunks [start, end] and carries out the side effects (A3). Returns the
   * last chunk's new state (NONE for no change): start_sync's answer for a single chunk.
   * With WRITE_ERROR set the whole state machine does nothing. `writeSyncAtEnd`: the sync
   * request of the chunks in range waits for endWrite (startWrite's own chunks).
   */
  private apply(start: number, end: number, action: Action, writeSyncAtEnd = false): Next {
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
          if (page.expire === Infinity) page.expire = performance.now() + this.barrierIdleSeconds * 1000;
        }
        if (t.mark !== 'none') {
          const spread = this.markChunk(idx, off, t.mark === 'dirty-infect', ctx.parity);
          if (spread.needSync) requestSync = true;
          if (spread.dirty) arm = true;
        }
      }
    });
    if (requestSync && !ctx.degraded) this.host.requestSync();
    if (arm) this.armTimer();
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
          if (page.expire === Infinity) page.expire = performance.now() + this.barrierIdleSeconds * 1000;
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
  private eachPage(start: number, end: number, visit: (page: BitmapPage, idx: number, first: number, stop: number) => boolean | void): void {
    for (let c = start; c < end; ) {
      const idx = pageOf(c);
      const first = offsetInPage(c);
      const stop = Math.min(PAGE_SIZE, first + (end - c));
      if (visit(this.pages[idx]!, idx, first, stop) === false) return;
      c += stop - first;
    }
  }

  /** Whether `action` leaves every chunk of [first, last] as it is, with no side effect (STILL). */
  private still(first: number, last: number, action: Action): boolean {
    const still = STILL[action]!;
    for (let c = first; c <= last; c++) if (still[this.byte(c)] !== 1) return false;
    return true;
  }

  private byte(chunk: number): number {
    return this.pages[pageOf(chunk)]!.data[offsetInPage(chunk)]!;
  }

  private pageHasDirty(idx: number): boolean {
    const data = this.pages[idx]!.data;
    const from = idx === 0 ? BITMAP_DATA_OFFSET : 0;
    return data.subarray(from, usedBytesOfPage(this.geometry, idx)).includes(State.Dirty);
  }

  // ---------------------------------------------------------------- barriers

  /** Takes every page reference at once, or none (then raiseBarriers waits its turn). */
  private tryRaiseBarriers(startChunk: number, endChunk: number): boolean {
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

  private async raiseBarriers(startChunk: number, endChunk: number): Promise<void> {
    const last = pageOf(endChunk);
    // Ascending page order; the daemon holds at most one page, so this cannot deadlock.
    for (let idx = pageOf(startChunk); idx <= last; idx++) {
      const page = this.pages[idx]!;
      while (!page.tryGet()) await page.waitResume();
      page.expire = performance.now() + this.barrierIdleSeconds * 1000;
    }
  }

  private releaseBarriers(what: string, startChunk: number, endChunk: number): void {
    const last = pageOf(endChunk);
    for (let idx = pageOf(startChunk); idx <= last; idx++) {
      if (!this.pages[idx]!.put()) {
        throw new MdError('EINVAL', `llbitmap: ${what}: expected a matching start on page ${idx}, found none in flight`);
      }
    }
  }

  // ---------------------------------------------------------------- write-out

  private markBlocks(idx: number, fromBlock: number, toBlock: number): void {
    const page = this.pages[idx]!;
    page.dirty.fill(1, fromBlock, toBlock);
    this.dirtyPages.add(idx);
  }

  /** Every block in use (superblock area and chunk bytes): write_all. */
  private markAll(): void {
    const io = this.geometry.ioSize;
    for (let idx = 0; idx < this.pages.length; idx++) {
      this.markBlocks(idx, 0, Math.ceil(usedBytesOfPage(this.geometry, idx) / io));
    }
  }

  /**
   * One write-out: snapshots every dirty block (clearing its mark), writes them as contiguous runs
   * to every bitmap member and waits until durable. No member took it → WRITE_ERROR: the bitmap
   * is disabled and the array runs as if it had none. Never rejects.
   */
  private async writeOut(): Promise<void> {
    if (this.dirtyPages.size === 0 || this.writeError) return;
    const io = this.geometry.ioSize;
    const writeOut = ++this.writeOuts;
    // Global block numbers of the dirty blocks, ascending; their marks are taken now.
    const dirty: number[] = [];
    for (const idx of [...this.dirtyPages].sort((a, b) => a - b)) {
      const page = this.pages[idx]!;
      for (let b = 0; b < this.blocksPerPage; b++) {
        if (page.dirty[b] !== 1) continue;
        page.dirty[b] = 0;
        page.written[b] = writeOut;
        dirty.push(idx * this.blocksPerPage + b);
      }
    }
    this.dirtyPages.clear();
    const preflush = this.cleaned;
    this.cleaned = false;
    // Dirty blocks up to MERGE_GAP apart go out as one run, the clean blocks between included:
    // one write per member (with FUA) instead of a write per run and a cache flush. Rewriting a
    // clean block is harmless: it holds what the members hold, or a change A3 keeps in memory
    // only (Clean, Syncing, a discard's Unwritten), which may reach the disk at any time — a
    // Clean only after `cleaned`'s preflush has made its chunk's data durable, which this
    // write-out or an earlier one did.
    // The superblock's blocks are only ever written marked (updateSb, markAll), never as a gap.
    const gapBlocks = Math.max(1, Math.floor(MERGE_GAP / io));
    const firstDataBlock = Math.ceil(BITMAP_DATA_OFFSET / io);
    const joins = (a: number, b: number): boolean => b - a === 1 || (b - a <= gapBlocks && a + 1 >= firstDataBlock);
    const runs: BitmapRun[] = [];
    for (let i = 0; i < dirty.length; ) {
      let j = i;
      while (j + 1 < dirty.length && joins(dirty[j]!, dirty[j + 1]!)) j++;
      runs.push(this.snapshot(dirty[i]!, dirty[j]! + 1));
      i = j + 1;
    }
    // Invariant: every run lies inside [0, usableSpace): marks never pass the last chunk's block.
    const ok = await writeToAllMembers(this.host, runs, preflush);
    if (ok === 0) this.flags = withFlag(this.flags, BitmapFlag.WriteError, true);
    // Write-outs run one at a time, in order: everything taken up to this one is durable now.
    this.durableWriteOut = writeOut;
  }

  /** A copy of bitmap blocks [from, to) (global block numbers), as one run. */
  private snapshot(from: number, to: number): BitmapRun {
    const io = this.geometry.ioSize;
    const data = Buffer.allocUnsafe((to - from) * io);
    for (let blk = from; blk < to; blk++) {
      const b = blk % this.blocksPerPage;
      data.set(this.pages[(blk - b) / this.blocksPerPage]!.data.subarray(b * io, (b + 1) * io), (blk - from) * io);
    }
    return { offset: from * io, data };
  }

  /** Rewrites the update_sb fields into page 0 (A1): the next write-out of block 0 carries them. */
  private writeSuper(events: bigint): void {
    const sb: BitmapSuper = {
      magic: BITMAP_MAGIC,
      version: BITMAP_MAJOR_LOCKLESS,
      uuid: this.host.uuid,
      events,
      eventsCleared: this.eventsClearedAt,
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

  // ---------------------------------------------------------------- argument checks

  private checkOpen(what: string): void {
    if (this.closing) throw closedError(what);
  }

  private checkRange(what: string, offset: number, length: number): void {
    const size = this.geometry.syncSize;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
      throw new MdError(
        'EINVAL',
        `llbitmap: ${what}: expected a range inside the sync space [0, ${size}), found offset ${offset} length ${length}`,
      );
    }
  }

  /**
   * B-b: chunks a discard covers FULLY, [ceil(off/cs), floor(end/cs) - 1], or null when none.
   * A range reaching the end of the sync space covers the short last chunk fully too.
   */
  private discardChunks(what: string, offset: number, length: number): [number, number] | null {
    this.checkRange(what, offset, length);
    const end = offset + length;
    const first = Math.ceil(offset / this.chunkSize);
    const last = end === this.geometry.syncSize ? this.chunks - 1 : Math.floor(end / this.chunkSize) - 1;
    return length > 0 && first <= last ? [first, last] : null;
  }

  /** B-k: the chunk of a byte offset inside the sync space, never past `chunks`. */
  private chunkAt(what: string, offset: number): number {
    const size = this.geometry.syncSize;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset >= size) {
      throw new MdError('EINVAL', `llbitmap: ${what}: expected an offset in [0, ${size}), found ${offset}`);
    }
    return Math.floor(offset / this.chunkSize);
  }

  private checkSyncPosition(what: string, offset: number): void {
    const size = this.geometry.syncSize;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > size) {
      throw new MdError('EINVAL', `llbitmap: ${what}: expected a position in [0, ${size}], found ${offset}`);
    }
  }

  /** Bytes from `offset` to the end of chunk `c`, never past the end of the sync space. */
  private restOfChunk(c: number, offset: number): number {
    return Math.min((c + 1) * this.chunkSize, this.geometry.syncSize) - offset;
  }
}

/** The states that make a block's other chunks infected (A6). */
const SPREADERS: readonly State[] = [State.Dirty, State.NeedSync];

/** Whether `block` holds `value` anywhere but at index `except`. */
function holdsOtherThan(block: Uint8Array, value: number, except: number): boolean {
  const i = block.indexOf(value);
  return i !== -1 && (i !== except || block.indexOf(value, i + 1) !== -1);
}

/** Bytes a sync pass never visits: nothing was ever written there (lookup by byte). */
const SKIP_ALWAYS = byteSet([State.Unwritten, State.CleanUnwritten]);
/** A resync of an array that is not degraded also passes over Clean and Dirty (skip_sync_blocks). */
const SKIP_IN_RESYNC = byteSet([State.Unwritten, State.CleanUnwritten, State.Clean, State.Dirty]);

function byteSet(states: readonly State[]): Uint8Array {
  const set = new Uint8Array(256);
  for (const s of states) set[s] = 1;
  return set;
}

function closedError(what: string): MdError {
  return new MdError('EINVAL', `llbitmap: ${what}: expected an open bitmap, found it closed`);
}

function checkCommon(o: CommonOptions): void {
  checkIoSize(o.ioSize);
  checkSyncSize(o.syncSize);
  if (o.barrierIdle !== undefined) checkBarrierIdle(o.barrierIdle);
  if (o.offsetSectors !== undefined && !Number.isSafeInteger(o.offsetSectors)) {
    throw new MdError('EINVAL', `llbitmap: expected a whole number of sectors as offset, found ${o.offsetSectors}`);
  }
}

function checkDaemonSleep(seconds: number): void {
  if (!Number.isSafeInteger(seconds) || seconds < 1 || seconds > MAX_TIMER_SECONDS) {
    throw new MdError('EINVAL', `llbitmap: expected daemon_sleep a whole number of seconds from 1 to ${MAX_TIMER_SECONDS}, found ${seconds}`);
  }
}

function checkBarrierIdle(seconds: number): void {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0 || seconds > MAX_TIMER_SECONDS) {
    throw new MdError('EINVAL', `llbitmap: expected barrier_idle from 0 to ${MAX_TIMER_SECONDS} seconds, found ${seconds}`);
  }
}

/** Every bitmap member must hold the whole usable area, aligned, before any bitmap I/O. */
function checkMembers(host: BitmapHost, g: Geometry): void {
  for (const m of host.bitmapMembers()) checkMember(m, g);
}

function checkMember(m: BitmapMember, g: Geometry): void {
  checkMemberBase(m, g.ioSize, g.usableSpace);
}

function checkMemberBase(m: BitmapMember, ioSize: number, areaBytes: number): void {
  const bs = m.device.blockSize;
  if (!Number.isSafeInteger(m.bitmapOffset) || m.bitmapOffset < 0 || m.bitmapOffset % SECTOR !== 0 || m.bitmapOffset % bs !== 0) {
    throw new MdError('EINVAL', `${m.name}: expected a bitmap offset aligned to ${Math.max(bs, SECTOR)} bytes, found ${m.bitmapOffset}`);
  }
  if (ioSize % bs !== 0) {
    throw new MdError('EINVAL', `${m.name}: expected a logical block size dividing the bitmap io size ${ioSize}, found ${bs}`);
  }
  if (m.bitmapOffset + areaBytes > m.device.size) {
    throw new MdError(
      'ENOSPC',
      `${m.name}: bitmap area [${m.bitmapOffset}, ${m.bitmapOffset + areaBytes}) reaches past the end of the device (${m.device.size} bytes)`,
    );
  }
}
