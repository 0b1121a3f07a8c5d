// The lockless bitmap (llbitmap.md): one state byte per chunk, held in 4 KiB pages read once at
// load, changed by the state machine (states.ts) on the array's I/O and sync events, written
// back one io_size block at a time. Implements WriteIntentBitmap for the array (md/array/).
// Its parts: chunk-map.ts (the bytes and the state machine on them), write-out.ts (writing them
// back), daemon.ts (cleaning), cross-check.ts (loading from every member), options.ts.

import type {
  BitmapCounts,
  BitmapLoadReport,
  BitmapHost,
  StartSyncResult,
  WriteIntentBitmap,
} from '../write-intent-bitmap.js';
import type { SyncMode } from '../types.js';
import { MdError } from '../errors.js';
import { BITMAP_DATA_OFFSET, BITMAP_SUPER_SIZE, BitmapFlag, hasFlag, withFlag } from './bitmap-superblock.js';
import {
  checkSpace, checkSyncSize, chooseChunkSize, chunkCount, firstChunkOfPage, fits, isPowerOfTwo, makeGeometry, offsetInPage, PAGE_SIZE, pageOf,
  SECTOR, usableSpace, type Geometry,
} from './geometry.js';
import { BitmapPage } from './page.js';
import { ChunkMap, type ChunkMapSetup } from './chunk-map.js';
import { BitmapDaemon } from './daemon.js';
import { WriteOut } from './write-out.js';
import { crossCheck, describeBitmapLoad, readAreas, readBitmapSupers, sameGeometry } from './cross-check.js';
import {
  checkBarrierIdle, checkCommon, checkDaemonSleep, checkMemberBase, checkMembers, DEFAULT_BARRIER_IDLE, DEFAULT_DAEMON_SLEEP,
  DEFAULT_OFFSET_SECTORS, MAX_TIMER_SECONDS, type LlBitmapCreateOptions, type LlBitmapLoadOptions,
} from './options.js';
import { trace } from '../../common/trace.js';
import { Action, isSynced, isUnwrittenState, mergeStates, State } from './states.js';
import * as text from './status-text.js';

export { DEFAULT_BARRIER_IDLE, DEFAULT_DAEMON_SLEEP, DEFAULT_OFFSET_SECTORS, type LlBitmapCreateOptions, type LlBitmapLoadOptions } from './options.js';

interface Setup extends ChunkMapSetup {
  events: bigint;
}

export class LlBitmap implements WriteIntentBitmap {
  readonly kind = 'llbitmap' as const;
  /** What load() found about the members' copies (cross-check.ts); undefined for a new bitmap. */
  loadReport: BitmapLoadReport | undefined;
  private readonly host: BitmapHost;
  private readonly map: ChunkMap;
  private readonly writer: WriteOut;
  private readonly daemon: BitmapDaemon;
  /** Set once close() is done: nothing runs any more. */
  private closed = false;

  private constructor(host: BitmapHost, s: Setup) {
    this.host = host;
    this.map = new ChunkMap(host, s);
    this.writer = new WriteOut(this.map);
    this.daemon = new BitmapDaemon(this.map, () => this.writer.request());
    this.map.onDirty = () => this.daemon.arm();
    this.map.writeSuper(s.events);
  }

  // geometry, chunkSize and chunks change only in resize(), with no I/O in flight.
  get geometry(): Geometry {
    return this.map.geometry;
  }

  get chunkSize(): number {
    return this.map.chunkSize;
  }

  get chunks(): number {
    return this.map.chunks;
  }

  /** Whether infect raises Unwritten neighbours too (ChunkMap.infectUnwritten says why it may not). */
  get infectUnwritten(): boolean | undefined {
    return this.map.infectUnwritten;
  }

  set infectUnwritten(on: boolean | undefined) {
    this.map.infectUnwritten = on;
  }

  /** Whether infect runs at all; undefined: on parity levels only (ChunkMap.infect says why). */
  get infect(): boolean | undefined {
    return this.map.infect;
  }

  set infect(on: boolean | undefined) {
    this.map.infect = on;
  }

  /** Bitmap write-outs so far (each a write to every bitmap member): what infect saves. */
  get writeOuts(): number {
    return this.writer.count;
  }

  get daemonSleep(): number {
    return this.map.daemonSleepSeconds;
  }

  /** B-m: refused unless a whole number of seconds ≥ 1, so it never persists what load rejects. */
  set daemonSleep(seconds: number) {
    checkDaemonSleep(seconds);
    this.map.daemonSleepSeconds = seconds;
  }

  get barrierIdle(): number {
    return this.map.barrierIdleSeconds;
  }

  set barrierIdle(seconds: number) {
    checkBarrierIdle(seconds);
    this.map.barrierIdleSeconds = seconds;
  }

  /**
   * One daemon pass now, as the timer runs it (A7). If a pass is running, it runs once more
   * after the current one (DAEMON_BUSY) and this resolves when that is done.
   */
  runDaemon(): Promise<void> {
    return this.daemon.run();
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
    for (let i = 0; i < bm.map.pages.length; i++) {
      const page = bm.map.pages[i]!;
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
    if (disagreeing > 0 || copies.rejected.length > 0) bm.map.markAll();
    // With WRITE_ERROR recorded on disk the state machine stays off: the bitmap is disabled.
    bm.map.apply(0, bm.map.chunks - 1, stale ? Action.Stale : Action.Reload);
    return bm;
  }

  private static async initialise(host: BitmapHost, s: Setup, assumeClean: boolean): Promise<LlBitmap> {
    const bm = new LlBitmap(host, s);
    if (assumeClean) {
      for (let c = 0; c < bm.map.chunks; c++) bm.map.pages[pageOf(c)]!.data[offsetInPage(c)] = State.Clean;
    }
    bm.map.markAll();
    await bm.writer.request();
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
    // B-a: the chunks count this write in flight BEFORE their state changes, in the same turn,
    // so the daemon cannot clean them between the change and the data write. Nothing waits for
    // the daemon: it never holds a chunk, it only passes over those in flight.
    this.map.hold(first, last);
    // Most writes land on chunks a write leaves as they are (Dirty already): no apply needed.
    if (!this.map.still(first, last, Action.Startwrite)) this.map.apply(first, last, Action.Startwrite, true);
    return undefined;
  }

  endWrite(offset: number, length: number): void {
    this.checkRange('endWrite', offset, length);
    if (length === 0) return;
    const first = Math.floor(offset / this.chunkSize);
    const last = Math.floor((offset + length - 1) / this.chunkSize);
    this.map.release('endWrite', first, last);
    // The sync request a write's own chunks owe is made here, not at startWrite: on raid4/5/6 a
    // write that computes parity from every data block leaves them Dirty (paritySynced), and a
    // pass started meanwhile would only wait for the write and then find nothing to do.
    if (this.writeError || this.host.isDegraded()) return;
    for (let c = first; c <= last; c++) {
      if (this.map.byte(c) === State.NeedSync) {
        this.host.requestSync();
        return;
      }
    }
  }

  async startDiscard(offset: number, length: number): Promise<void> {
    this.checkOpen('startDiscard');
    const r = this.discardChunks('startDiscard', offset, length);
    if (!r) return;
    this.map.hold(r[0], r[1]);
    this.map.apply(r[0], r[1], Action.Discard);
  }

  endDiscard(offset: number, length: number): void {
    const r = this.discardChunks('endDiscard', offset, length);
    if (r) this.map.release('endDiscard', r[0], r[1]);
  }

  unplug(offset?: number, length?: number): Promise<void> | undefined {
    if (this.closed) return Promise.reject(closedError('unplug'));
    return this.writer.unplug(offset, length);
  }

  unplugNow(offset: number, length: number): boolean {
    return !this.closed && this.writer.unplugNow(offset, length);
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
    if (skippable[this.map.byte(c)] !== 1) return 0;
    // The whole run of skippable chunks from here, not just this one: on a big array where little
    // is marked, the sync thread would otherwise pay one call per chunk it passes over.
    let end = c + 1;
    this.map.eachPage(end, this.chunks, (page, _idx, first, stop) => {
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
    // Syncing + Startsync stays Syncing with no side effect (¶), degraded or not: asked again for
    // every window and chunk of a pass, it need not go through the state machine.
    if (this.map.byte(c) === State.Syncing) return { sync: true, length };
    const next = this.map.apply(c, c, Action.Startsync);
    return { sync: next === State.Syncing || next === State.SyncingUnwritten, length };
  }

  endSync(offset: number): void {
    this.checkSyncPosition('endSync', offset);
    if (offset >= this.geometry.syncSize) return;
    this.map.apply(Math.floor(offset / this.chunkSize), this.chunks - 1, Action.Abortsync);
  }

  closeSync(): void {
    this.map.apply(0, this.chunks - 1, Action.Endsync);
    // Let the daemon clean what the sync leaves Dirty without waiting for barrier_idle.
    this.map.activity.expire(0, this.chunks - 1);
  }

  async condEndSync(offset: number): Promise<void> {
    this.checkOpen('condEndSync');
    this.checkSyncPosition('condEndSync', offset);
    // B-c: only chunks ENTIRELY below the checkpoint; the chunk holding `offset` is half synced.
    // At the end of the space the last (possibly short) chunk is entirely below it.
    const below = offset >= this.geometry.syncSize ? this.chunks : Math.floor(offset / this.chunkSize);
    if (below > 0) this.map.apply(0, below - 1, Action.Endsync);
    if (this.writeError) return;
    this.map.markAll();
    await this.writer.request();
  }

  blocksSynced(offset: number): boolean {
    const c = this.chunkAt('blocksSynced', offset);
    return this.writeError || isSynced(this.map.byte(c));
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
    this.map.eachPage(first, end, (page, idx, from, stop) => {
      for (let off = from; off < stop; off++) {
        const byte = page.data[off];
        if (byte !== State.NeedSync && byte !== State.Syncing) continue;
        page.data[off] = State.Dirty;
        dirtied = true;
        this.map.activity.touch(firstChunkOfPage(idx) + off - (idx === 0 ? BITMAP_DATA_OFFSET : 0));
      }
    });
    if (dirtied) this.daemon.arm();
  }

  isUnwritten(offset: number): boolean {
    const c = this.chunkAt('isUnwritten', offset);
    return !this.writeError && isUnwrittenState(this.map.byte(c));
  }

  startRecovery(): void {
    this.map.apply(0, this.chunks - 1, Action.ClearUnwritten);
  }

  proactiveSync(): void {
    if (!this.host.parity) {
      throw new MdError('ENOTSUP', 'llbitmap: proactive sync builds parity: expected a raid4/5/6 array, found a level without parity');
    }
    this.map.apply(0, this.chunks - 1, Action.ProactiveSync);
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
    const geometry = makeGeometry(syncSize, chunkSize, old.ioSize, this.map.spaceBytes);
    checkMembers(this.host, geometry);
    // A daemon pass or a write-out in flight walks the pages of the old geometry.
    for (let busy = this.daemon.running ?? this.writer.pending(); busy; busy = this.daemon.running ?? this.writer.pending()) await busy;

    const oldStates = Uint8Array.from({ length: old.chunks }, (_, c) => this.map.byte(c));
    // A short last chunk now reaches into the grown space, which was never written.
    if (old.syncSize % old.chunkSize !== 0) oldStates[old.chunks - 1] = mergeStates([oldStates[old.chunks - 1]!, State.Unwritten]);
    const pages = Array.from({ length: geometry.pages }, () => new BitmapPage(this.map.blocksPerPage));
    this.map.pages[0]!.data.copy(pages[0]!.data, 0, 0, BITMAP_DATA_OFFSET);
    const factor = chunkSize / old.chunkSize;
    let owed = false;
    let dirty = false;
    for (let c = 0; c < geometry.chunks; c++) {
      // The old chunks this one spans; past the old end, grown space (Unwritten).
      const span = oldStates.subarray(c * factor, (c + 1) * factor);
      const next = span.length === 0 ? State.Unwritten : mergeStates(span.length < factor ? [...span, State.Unwritten] : span);
      const page = pages[pageOf(c)]!;
      page.data[offsetInPage(c)] = next;
      if (next === State.NeedSync) owed = true;
      if (next === State.Dirty) dirty = true;
    }
    this.map.pages = pages;
    this.map.geometry = geometry;
    this.map.chunkSize = chunkSize;
    this.map.chunks = geometry.chunks;
    // Nothing is in flight (the caller holds all I/O); a merged Dirty chunk waits barrier_idle.
    this.map.activity.resize(geometry.chunks);
    for (let c = 0; c < geometry.chunks; c++) if (this.map.byte(c) === State.Dirty) this.map.activity.touch(c);
    this.map.dirtyPages.clear();
    if (this.writeError) return;
    this.map.writeSuper(this.host.events());
    this.map.markAll();
    await this.writer.request();
    if (dirty) this.daemon.arm();
    if (owed && !this.host.isDegraded()) this.host.requestSync();
  }

  // ---------------------------------------------------------------- persistence

  async updateSb(): Promise<void> {
    this.checkOpen('updateSb');
    if (this.writeError) return;
    const events = this.host.events();
    // B-n: events_cleared rises in the daemon when bits are cleared; here it only follows the
    // array's events down (a rollback), so it never stays above them.
    if (events < this.map.eventsCleared) this.map.eventsCleared = events;
    this.map.writeSuper(events);
    this.map.markBlocks(0, 0, Math.ceil(BITMAP_DATA_OFFSET / this.geometry.ioSize));
    await this.writer.request();
  }

  wholeAgain(): void {
    if (this.closed || this.writeError) return;
    if (this.map.pages.some((_, idx) => this.map.pageHasDirty(idx))) this.daemon.arm();
  }

  async flush(): Promise<void> {
    this.checkOpen('flush');
    // A8: flag every page, stop the timer, run the daemon once, then write every block.
    for (const p of this.map.pages) p.flush = true;
    this.daemon.clear();
    await this.daemon.run();
    if (this.writeError) return;
    this.map.markAll();
    await this.writer.request();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // B-j: from here no timer is armed and no daemon pass starts; a pass in progress stops
    // waiting for writes and ends; write-outs in flight complete before close resolves.
    this.daemon.closing = true;
    this.daemon.clear();
    this.map.activity.cancelWaits();
    // Loop until nothing is in flight: an unplug may start a write-out while we wait, and
    // `closed` must be set in the same turn as the last check.
    for (;;) {
      const busy = this.daemon.running ?? this.writer.pending();
      if (!busy) break;
      await busy;
    }
    this.closed = true;
  }

  // ---------------------------------------------------------------- status

  /** Bitmap writes failed on every member: the bitmap is disabled (WRITE_ERROR). */
  get writeError(): boolean {
    return this.map.writeError;
  }

  /** Events up to which the bitmap is known clean: a member re-added with events below this needs full recovery. */
  get eventsCleared(): bigint {
    return this.map.eventsCleared;
  }

  counts(): BitmapCounts {
    return this.map.counts();
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
      offset: this.map.offsetSectors,
      daemonSleep: this.map.daemonSleepSeconds,
    });
  }

  /** The state byte of chunk `chunk` as held in memory (for tests and status tools). */
  stateOf(chunk: number): number {
    if (!Number.isSafeInteger(chunk) || chunk < 0 || chunk >= this.chunks) {
      throw new MdError('EINVAL', `llbitmap: expected a chunk index from 0 to ${this.chunks - 1}, found ${chunk}`);
    }
    return this.map.byte(chunk);
  }

  // ---------------------------------------------------------------- argument checks

  private checkOpen(what: string): void {
    if (this.daemon.closing) throw closedError(what);
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
