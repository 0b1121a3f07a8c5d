// MdArray: a running md array, itself a BlockDevice (what the NBD server serves). Its parts share
// one member set (member-set.ts: members by role, superblocks, state); membership.ts changes the
// members (fail, remove, re-add, add, hot spares); sync-control.ts runs the one sync pass;
// io-path.ts is the BlockDevice side, the write path of DESIGN.md §4. This file puts them
// together and holds the array's life: run, grow, stop, abandon, status.

import type { BlockDevice, Extent, WriteOptions, ZeroOptions } from '../../block/block-device.js';
import { checkRange } from '../../block/block-device.js';
import { describeError, trace } from '../../common/trace.js';
import type { ArrayEventListener } from '../array-events.js';
import { levelName, type ArrayStatus, type MemberRecovery } from '../array-status.js';
import { MdError } from '../errors.js';
import { createPersonality, usedMemberBytes } from '../levels.js';
import type { Member } from '../member.js';
import type { MemberSpec } from '../member-source.js';
import { checkMemberGrowth } from '../member-space.js';
import type { MemberSet, Personality } from '../personality.js';
import { SECTOR, formatUuid } from '../superblock.js';
import type { SyncProgress, SyncSummary } from '../sync-thread.js';
import type { SyncMode } from '../types.js';
import type { BitmapHost, BitmapMember, WriteIntentBitmap } from '../write-intent-bitmap.js';
import type { ArrayIdentity } from '../member-superblock.js';
import { ArrayIo } from './io-path.js';
import { ArrayMembers, ROLE_HISTORY_UNKNOWN, type ArraySetup } from './member-set.js';

export type { ArraySetup, ArrayTuning } from './member-set.js';
export type { ArrayState, ArrayStatus, MemberStatus } from '../array-status.js';
export type { ArrayIdentity } from '../member-superblock.js';
import { Membership, fitMember } from './membership.js';
import { SyncControl } from './sync-control.js';

export class MdArray implements BlockDevice {
  readonly readOnly = false;
  readonly bitmapHost: BitmapHost;
  private readonly set: ArrayMembers;
  private readonly sync: SyncControl;
  private readonly membership: Membership;
  private readonly ioPath: ArrayIo;
  private label: string | undefined;

  constructor(setup: ArraySetup) {
    this.set = new ArrayMembers(setup);
    // The sync pass reaches members through the I/O path's MemberSet view, made just below.
    this.sync = new SyncControl(this.set, () => this.ioPath.memberSet);
    this.membership = new Membership(this.set, this.sync);
    this.ioPath = new ArrayIo(this.set, this.membership);
    this.bitmapHost = this.makeBitmapHost();
    this.set.onFenced = () => {
      this.membership.stop();
      this.sync.abandon();
    };
  }

  /**
   * Hears what the array does as it happens (array-events.ts: fenced, a member failed, a remote
   * member back, a sync pass ended). Returns the way to stop listening.
   */
  onEvent(listener: ArrayEventListener): () => void {
    this.set.listeners.add(listener);
    return () => this.set.listeners.delete(listener);
  }

  /** Why the array is fenced, or null (state 'fenced' iff non-null). */
  get fenced(): string | null {
    return this.set.fencedBy;
  }

  // ------------------------------------------------------------------ identity and state

  get identity(): ArrayIdentity {
    return this.set.identity;
  }

  /** Replaced only by grow(), while every I/O is held. */
  get personality(): Personality {
    return this.set.personality;
  }

  get bitmap(): WriteIntentBitmap {
    return this.set.bitmap;
  }

  /** The personality's view of the members (the sync thread's and tests' way in). */
  get memberSet(): MemberSet {
    return this.ioPath.memberSet;
  }

  get blockSize(): number {
    return this.set.blockSize;
  }

  get events(): bigint {
    return this.set.events;
  }

  get size(): number {
    return this.set.personality.arraySize;
  }

  /** Bytes a write in flight holds per byte written (Personality.writeWeight). */
  get writeWeight(): number {
    return this.set.personality.writeWeight ?? 1;
  }

  /** `array NAME`: what range errors name (made once, not per request). */
  private get rangeLabel(): string {
    this.label ??= `array ${this.name}`;
    return this.label;
  }

  get name(): string {
    return this.set.name;
  }

  get uuid(): Buffer {
    return this.set.identity.uuid;
  }

  isDegraded(): boolean {
    return this.set.degraded;
  }

  /** The member called `name` (its path), if attached. */
  member(name: string): Member | undefined {
    return this.set.member(name);
  }

  /** Members (for lifecycle modules): a copy. */
  memberList(): readonly Member[] {
    return [...this.set.members];
  }

  attachBitmap(bitmap: WriteIntentBitmap): void {
    this.set.bitmap = bitmap;
    this.set.personality.attachBitmap?.(bitmap);
  }

  /** At create: every role was filled at events 0. */
  markRolesFilled(): void {
    this.set.roleFilledAt = new Array<bigint>(this.set.identity.raidDisks).fill(0n);
  }

  /**
   * At assemble: a vacant role whose departed member is unambiguous (as many faulty slots as
   * vacant roles, so no replacement cycled through it) can take that member back by bitmap.
   */
  setRoleHistory(filledAt: number[]): void {
    this.set.roleFilledAt = filledAt.map((e) => (Number.isSafeInteger(e) ? BigInt(e) : ROLE_HISTORY_UNKNOWN));
  }

  private makeBitmapHost(): BitmapHost {
    const s = this.set;
    return {
      uuid: s.identity.uuid,
      events: () => s.events,
      parity: s.personality.parity,
      isDegraded: () => s.degraded,
      // Fenced: the bitmap writes to nobody (a write-out then finds no member and disables it).
      bitmapMembers: (): readonly BitmapMember[] => (s.state === 'fenced' ? [] : s.members.filter((m) => m.state === 'in_sync')),
      requestSync: () => this.sync.onSyncRequested(),
      failMember: (member: BitmapMember, err: Error) => {
        const m = s.members.find((x) => x === member);
        // A failure no superblock could record leaves the array failed; nobody awaits this one.
        if (m !== undefined) this.membership.failInBackground(m, err);
      },
    };
  }

  // ------------------------------------------------------------------ BlockDevice

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this.rangeLabel, this.size, offset, length, 'read');
    return this.ioPath.read(offset, length);
  }

  async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    checkRange(this.rangeLabel, this.size, offset, data.length, 'write');
    return this.ioPath.write(offset, data, options);
  }

  /** read() into `out` (a caller's reused buffer), each member part read straight into its place. */
  readInto(offset: number, out: Buffer): Promise<void> {
    checkRange(this.rangeLabel, this.size, offset, out.length, 'read');
    return this.ioPath.readInto(offset, out);
  }

  /** A small read done now when the personality and the members can (ArrayIo.readNow). */
  readNow(offset: number, out: Buffer): boolean {
    checkRange(this.rangeLabel, this.size, offset, out.length, 'read');
    return this.ioPath.readNow(offset, out);
  }

  /** A small write done now when the array is whole and nothing makes it wait (ArrayIo.writeNow). */
  writeNow(offset: number, parts: readonly Uint8Array[]): boolean {
    let length = 0;
    for (const p of parts) length += p.length;
    checkRange(this.rangeLabel, this.size, offset, length, 'write');
    return this.ioPath.writeNow(offset, parts, length);
  }

  async writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    checkRange(this.rangeLabel, this.size, offset, length, 'write zeroes');
    return this.ioPath.writeZeroes(offset, length, options);
  }

  async discard(offset: number, length: number): Promise<void> {
    checkRange(this.rangeLabel, this.size, offset, length, 'discard');
    return this.ioPath.discard(offset, length);
  }

  /** Flushes every member that takes writes; succeeds while one in-sync member flushed. */
  flush(): Promise<void> {
    return this.ioPath.flush();
  }

  /** Chunks the bitmap has never seen written (Unwritten) are holes; everything else is data. */
  async extents(offset: number, length: number): Promise<Extent[]> {
    checkRange(this.rangeLabel, this.size, offset, length, 'extents');
    return this.ioPath.extents(offset, length, this.size);
  }

  /** BlockDevice close: a clean stop. */
  close(): Promise<void> {
    return this.stop();
  }

  // ------------------------------------------------------------------ membership and sync

  writeSuperblocks(clean = false): Promise<void> {
    return this.set.writeSuperblocks(clean);
  }

  /** Throws EOVERFLOW when the superblocks could not record one more change (member-superblock.ts). */
  checkChangeRecordable(): void {
    this.set.checkChangeRecordable();
  }

  failMember(m: Member, cause?: unknown): Promise<void> {
    return this.membership.failMember(m, cause);
  }

  fail(name: string): Promise<void> {
    return this.membership.fail(name);
  }

  remove(name: string): Promise<void> {
    return this.membership.remove(name);
  }

  attach(m: Member, bitmapGuided: boolean): Promise<void> {
    return this.membership.attach(m, bitmapGuided);
  }

  reAdd(spec: MemberSpec): Promise<'bitmap' | 'full'> {
    return this.membership.reAdd(spec);
  }

  add(spec: MemberSpec, options: { force?: boolean } = {}): Promise<void> {
    return this.membership.add(spec, options);
  }

  /**
   * At assembly, before run(): `name` (a remote member) could not be opened and the array starts
   * without it; it is watched from run() on, and re-added when it opens (the return check).
   */
  awaitUnopened(name: string, reason: string): void {
    this.membership.awaitUnopened(name, reason);
  }

  proactiveSync(): void {
    this.sync.proactiveSync();
  }

  startSync(mode: SyncMode): SyncProgress {
    return this.sync.startSync(mode);
  }

  waitSync(): Promise<SyncSummary | undefined> {
    return this.sync.waitSync();
  }

  stopSync(): Promise<void> {
    return this.sync.stopSync();
  }

  // ------------------------------------------------------------------ lifecycle

  /** First superblock write of a running array: events up, marked active (dirty). */
  async run(): Promise<void> {
    this.set.running = true;
    this.set.refreshState();
    await this.set.writeSuperblocks(false);
    this.membership.start();
    this.sync.maybeStart();
  }

  /**
   * Grows the array (mdadm --grow --size): every member's used data size becomes `memberBytes`,
   * rounded down to the level's unit, so the array gets bigger at its end and nothing stored
   * moves (every layout maps its rows in order). Member devices grow first (a file is extended,
   * a block device must already be big enough); then, with all I/O held, the bitmap (the new
   * space starts Unwritten, nothing was written there) and last the superblocks, so a crash in
   * between reassembles the old size with everything where it was. Without a bitmap the new
   * space is resynced, as md does. Shrinking is refused. 'max' takes all the space every member
   * has (mdadm --size=max), after reading their sizes again.
   */
  async grow(size: number | 'max'): Promise<void> {
    const s = this.set;
    if (s.state === 'stopped' || s.stopping) throw new MdError('EBUSY', `array ${this.name}: stopped`);
    if (s.state === 'failed') throw new MdError('EIO', `array ${this.name}: cannot grow a failed array`);
    s.checkNotFenced('grow');
    if (s.members.some((m) => m.state === 'rebuilding')) {
      throw new MdError('EBUSY', `array ${this.name}: cannot grow while a member is being rebuilt`);
    }
    const targets = s.members.filter((m) => m.state !== 'faulty');
    let memberBytes = size;
    if (memberBytes === 'max') {
      for (const m of targets) await m.device.grow?.(m.device.size);
      memberBytes = Math.min(...targets.map((m) => m.device.size - m.dataOffset));
    }
    if (!Number.isSafeInteger(memberBytes) || memberBytes <= 0) {
      throw new MdError('EINVAL', `array ${this.name}: grow: expected a positive member size in bytes, found ${memberBytes}`);
    }
    const geometry = { level: s.identity.level, raidDisks: s.identity.raidDisks, layout: s.identity.layout, chunkSize: s.personality.chunkSize };
    const current = s.identity.usedSectors * SECTOR;
    const used = usedMemberBytes({ ...geometry, memberSize: memberBytes });
    if (used < current) {
      throw new MdError('EINVAL', `array ${this.name}: grow: expected at least the current ${current} bytes per member (shrinking is not supported), found ${memberBytes}${used === memberBytes ? '' : ` (rounded down to ${used})`}`);
    }
    if (used === current) return;
    await checkMemberGrowth(this.name, targets, memberBytes, used);
    for (const m of targets) await fitMember(m, m.dataOffset + used);

    await this.sync.stopSync();
    const release = await this.ioPath.holdIo();
    try {
      const personality = createPersonality({ ...geometry, memberSize: used });
      const oldSyncSize = s.personality.syncSize;
      await s.bitmap.resize(personality.syncSize);
      for (const m of targets) m.sb = { ...m.sb, dataSize: Math.floor((m.device.size - m.dataOffset) / SECTOR) };
      s.identity.usedSectors = used / SECTOR;
      s.personality = personality;
      personality.attachBitmap?.(s.bitmap);
      if (s.bitmap.kind === 'none' && personality.syncSize > oldSyncSize) {
        s.resyncFrom = Math.min(s.resyncFrom ?? oldSyncSize, oldSyncSize);
      }
      await s.writeSuperblocks(false);
    } finally {
      release();
    }
    this.sync.maybeStart();
  }

  /**
   * Quiesces the array for a snapshot of its member files: new I/O is held at the door (as grow
   * holds it), every request in flight completes and a sync pass stops at a checkpoint. Then:
   * - `clean`: the bitmap is flushed (Dirty → Clean where allowed, every block written) and the
   *   superblocks record a clean state after a flush of every member. Until `resume` the members
   *   on disk are exactly what a clean stop would have left, so copies of them taken now assemble
   *   without a resync (md does the same when it marks an idle array clean, safe_mode). `resume`
   *   marks the array active again before any held request goes on. Four rounds of durable
   *   writes, all inside the pause.
   * - `crash`: nothing more is written. The members hold what a crash at this instant would leave
   *   (superblocks active, the bitmap Dirty wherever a write went since its last flush), except
   *   that no write is half done: every acknowledged write is in every member it went to. Copies
   *   taken now assemble as after a crash: the bitmap's Dirty chunks are resynced, which finds the
   *   members already agree. No write of ours is in the pause; `resume` only lets I/O go on.
   * Either way `resume` restarts the sync pass.
   */
  async quiesce(consistency: 'clean' | 'crash' = 'clean'): Promise<{ resume: () => Promise<void> }> {
    const s = this.set;
    if (s.state === 'stopped' || s.stopping) throw new MdError('EBUSY', `array ${this.name}: stopped`);
    if (s.state === 'failed') throw new MdError('EIO', `array ${this.name}: cannot quiesce a failed array`);
    s.checkNotFenced('quiesce');
    await this.sync.stopSync();
    const release = await this.ioPath.holdIo();
    let resumed = false;
    const resume = async (): Promise<void> => {
      if (resumed) return;
      resumed = true;
      try {
        // Active before the first held write reaches a member: a crash then owes a resync.
        if (consistency === 'clean' && s.state !== 'failed' && s.state !== 'fenced' && !s.stopping) await s.writeSuperblocks(false);
      } finally {
        release();
        this.sync.maybeStart();
      }
    };
    if (consistency === 'crash') return { resume };
    try {
      await s.bitmap.flush();
      await s.writeSuperblocks(true);
    } catch (err) {
      await resume();
      throw err;
    }
    return { resume };
  }

  /**
   * Clean stop (md's do_md_stop): the sync pass stops at a checkpoint, in-flight I/O drains, the
   * bitmap is flushed (Dirty → Clean, everything written), superblocks are written clean (resync
   * position kept only if a resync is unfinished), then the devices the array opened are closed.
   * A fenced array writes nothing on the way out (its members are another engine's): it only
   * lets its requests drain and releases the devices.
   */
  async stop(): Promise<void> {
    const s = this.set;
    if (s.state === 'stopped') return;
    s.stopping = true;
    this.membership.stop();
    await this.sync.stopSync();
    await this.ioPath.waitIdle();
    await Promise.allSettled([...s.background]);
    await this.membership.returnsSettled();
    try {
      if (s.state !== 'failed' && s.state !== 'fenced') {
        await s.bitmap.flush();
        await s.writeSuperblocks(true);
      }
    } finally {
      // Stopped either way: a stop whose superblocks reached no member still releases everything.
      await s.bitmap.close();
      s.state = 'stopped';
      await Promise.allSettled(s.members.filter((m) => m.owned).map((m) => m.device.close()));
    }
  }

  /**
   * Abandons the array as a crash or kill would: timers stop, devices are released, nothing is
   * written (superblocks stay active/dirty, bitmap Dirty bits stay). For tests of recovery paths
   * and for a supervisor tearing down a wedged engine.
   */
  async abandon(): Promise<void> {
    const s = this.set;
    if (s.state === 'stopped') return;
    s.stopping = true;
    this.membership.stop();
    this.sync.abandon();
    await this.membership.returnsSettled();
    await s.bitmap.close().catch((err: unknown) => trace('md', 'debug', () => `array ${this.name}: abandon: bitmap close: ${describeError(err)}`));
    s.state = 'stopped';
    await Promise.allSettled(s.members.filter((m) => m.owned).map((m) => m.device.close()));
  }

  // ------------------------------------------------------------------ status

  status(): ArrayStatus {
    const s = this.set;
    const counts = s.bitmap.counts();
    const running = this.sync.running;
    const progress = running?.progress();
    const speed = { minKiBs: s.tuning.syncSpeedMin, maxKiBs: s.tuning.syncSpeedMax };
    const recovery: MemberRecovery | null = progress?.mode === 'recovery'
      ? {
        kind: progress.bitmapGuided ? 'bitmap' : 'full',
        bytesDone: progress.bytesSynced,
        bytesToCopy: progress.targetBytes,
        bytesWritten: progress.bytesWritten,
        speedMinKiBs: speed.minKiBs,
        speedMaxKiBs: speed.maxKiBs,
      }
      : null;
    const awaited = this.membership.awaitedMembers();
    return {
      name: this.name,
      uuid: formatUuid(s.identity.uuid),
      level: levelName(s.identity.level),
      raidDisks: s.identity.raidDisks,
      size: this.size,
      chunkSize: s.personality.chunkSize,
      layout: s.identity.layout,
      state: s.state,
      fenced: s.fencedBy,
      degraded: s.state !== 'stopped' && s.degraded,
      events: s.events.toString(),
      working: s.working().filter((w) => w).length,
      members: [...s.members.map((m) => ({
        name: m.name,
        role: m.role ?? null,
        state: m.state,
        devNumber: m.sb.devNumber,
        recoveryOffset: m.state === 'rebuilding' ? m.recoveryOffset : 0,
        failure: m.state === 'faulty' ? (m.failure ?? 'failed') : null,
        errors: m.errors,
        writeMostly: m.writeMostly,
        remote: m.remote,
        awaited: awaited.has(m),
        recovery: m.state === 'rebuilding' ? recovery : null,
      })),
      // Members never opened (unreachable at assembly): no record but their name, and watched.
      ...this.membership.unopenedMembers().map((u) => ({
        name: u.name, role: null, state: 'faulty' as const, devNumber: null, recoveryOffset: 0,
        failure: `unreachable since the array was assembled: ${u.why}`, errors: 0, writeMostly: false, remote: true,
        awaited: true, recovery: null,
      }))],
      missingRoles: s.byRole.flatMap((m, r) => (m === undefined ? [r] : [])),
      resyncPending: s.resyncFrom,
      bitmap: { kind: s.bitmap.kind, chunkSize: s.bitmap.chunkSize, counts },
      sync: progress ?? null,
      lastSync: this.sync.lastSync,
      bytesSyncedTotal: this.sync.syncedBefore + (progress?.bytesSynced ?? 0),
      mismatchCount: this.sync.mismatchCount,
      syncSize: s.personality.syncSize,
      syncSpeed: speed,
    };
  }
}
