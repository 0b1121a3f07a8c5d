// MdArray: a running md array, itself a BlockDevice (what the NBD server serves). It owns the
// members by role, the personality that maps array I/O onto them, the write-intent bitmap, the
// member superblocks (events, roles, clean/dirty) and the one sync thread.
//
// Write path (DESIGN.md §4): sync barrier → bitmap.startWrite (page barriers + Startwrite) →
// bitmap.unplug (dirty bitmap blocks durable on every in-sync member) → personality write to the
// members in parallel → bitmap.endWrite → acknowledge. A member EIO fails that member first
// (others' superblocks record it, events up) and the write succeeds while a complete copy exists.

import { randomBytes } from 'node:crypto';
import type { BlockDevice, Extent, WriteOptions, ZeroOptions } from '../block/block-device.js';
import { checkRange, readInto } from '../block/block-device.js';
import { BlockError, IoError, ShutdownError, isBlockError } from '../block/errors.js';
import { describeError, trace } from '../common/trace.js';
import { MdError, asBlockError } from './errors.js';
import { DEFAULT_TUNING } from './tuning.js';
import { Member } from './member.js';
import { levelName, type ArrayState, type ArrayStatus } from './array-status.js';
import { composeSuperblock, devRolesFor, nextEvents, type ArrayIdentity } from './member-superblock.js';
import { checkMemberGrowth } from './member-space.js';
import type { MemberSet, Personality, RoleState } from './personality.js';
import type { SyncMode } from './types.js';
import { createPersonality, usedMemberBytes } from './levels.js';
import { namesDevice, openMember, probeSuperblock, type MemberSpec } from './member-source.js';
import {
  FEATURE_RECOVERY_OFFSET, MAX_DEV_LIMIT, RESYNC_NONE, ROLE_FAULTY, SECTOR,
  formatUuid, readSuperblock, writeSuperblock, type Superblock,
} from './superblock.js';
import { SyncBarrier } from './sync-barrier.js';
import { SyncThread, type SyncProgress, type SyncSpeed, type SyncSummary } from './sync-thread.js';
import type { BitmapHost, BitmapMember, WriteIntentBitmap } from './write-intent-bitmap.js';

export type { ArrayState, ArrayStatus, MemberStatus } from './array-status.js';
export type { ArrayIdentity } from './member-superblock.js';

/** roleFilledAt for a role whose history is unknown: above any events a member can carry. */
const ROLE_HISTORY_UNKNOWN = 1n << 64n;

export interface ArrayTuning {
  /** KiB/s the sync thread keeps even under application I/O (md sync_speed_min). Default: tuning.ts. */
  syncSpeedMin?: number;
  /** KiB/s the sync thread never exceeds (md sync_speed_max). Default: tuning.ts. */
  syncSpeedMax?: number;
  /** Start resync/recovery by itself when needed (default true). */
  autoSync?: boolean;
}

/** How the array came up; create.ts and assemble.ts build it, then call `run`. */
export interface ArraySetup {
  identity: ArrayIdentity;
  personality: Personality;
  members: Member[];
  /** dev_roles of the freshest superblock (index = dev_number). */
  devRoles: number[];
  events: bigint;
  /** Sync-space byte a resync must start from, or null when the array was clean. */
  resyncFrom: number | null;
  tuning: ArrayTuning;
}

/** How often members are asked whether they can still be used (checkHealth). */
const HEALTH_INTERVAL_MS = 2000;

export class MdArray implements BlockDevice {
  readonly blockSize: number;
  readonly readOnly = false;
  /** The same on every member; usedSectors changes only in grow(). */
  readonly identity: ArrayIdentity;
  /** Replaced only by grow(), while every I/O is held. */
  personality: Personality;
  /** Set once by `attachBitmap` before `run`; NoBitmap for `bitmap: none`. */
  bitmap!: WriteIntentBitmap;

  /** Every member attached (in_sync, rebuilding, spare, faulty until removed). */
  private readonly members: Member[];
  /** byRole[r] = the in_sync or rebuilding member in role r, if any. */
  private readonly byRole: (Member | undefined)[];
  private devRoles: number[];
  private eventsCounter: bigint;
  private state: ArrayState = 'active';
  /**
   * The personality's verdict on the roles in sync, asked on every write (the bitmap's
   * transitions depend on it), so kept rather than recomputed: it changes only where a member
   * changes role or state, and each of those places calls refreshState().
   */
  private degraded: boolean;
  /**
   * False until run(): during assembly nothing is written to any member (md writes nothing
   * before do_md_run), so a member failed then is recorded in memory and run() writes it.
   */
  private running = false;
  /** Roles a member left by failing before run(): run() offers them to spares. */
  private vacatedBeforeRun: number[] = [];
  private resyncFrom: number | null;
  private readonly tuning: Required<ArrayTuning>;
  private readonly barrier = new SyncBarrier();
  private sbWrite: Promise<void> = Promise.resolve();
  private inflight = 0;
  private idleWaiters: (() => void)[] = [];
  /** Non-null while grow() holds I/O: new requests wait for it before they count as in flight. */
  private held: Promise<void> | null = null;
  private lastAppIo = 0;
  private syncThread: SyncThread | undefined;
  private syncDone: Promise<SyncSummary | undefined> = Promise.resolve(undefined);
  private lastSync: SyncSummary | null = null;
  /** Bytes synced by the passes that ended since the array started. */
  private syncedBefore = 0;
  private mismatchCount = 0;
  private stopping = false;
  /** Runs checkHealth while the array runs (from run() to stop()). */
  private healthTimer: NodeJS.Timeout | undefined;
  private checkingHealth = false;
  /**
   * roleFilledAt[r]: events when role r last got a member. A member that left role r can be
   * re-added with bitmap-guided recovery only if its events are at least this (nobody else held
   * the role since, so the array stayed degraded and the bitmap never cleaned a bit it needs).
   * ROLE_HISTORY_UNKNOWN: always full recovery. Bigints: events past 2^53 must compare exactly.
   */
  private roleFilledAt: bigint[] = [];
  /** Members failed by the bitmap or a superblock write, whose superblock update is in flight. */
  private readonly failures = new Set<Promise<void>>();
  readonly memberSet: MemberSet;
  readonly bitmapHost: BitmapHost;

  constructor(setup: ArraySetup) {
    this.identity = setup.identity;
    this.personality = setup.personality;
    this.members = [...setup.members];
    this.devRoles = [...setup.devRoles];
    this.eventsCounter = setup.events;
    this.resyncFrom = setup.resyncFrom;
    this.tuning = {
      syncSpeedMin: setup.tuning.syncSpeedMin ?? DEFAULT_TUNING.syncSpeedMinKiB,
      syncSpeedMax: setup.tuning.syncSpeedMax ?? DEFAULT_TUNING.syncSpeedMaxKiB,
      autoSync: setup.tuning.autoSync ?? true,
    };
    this.blockSize = Math.max(512, ...setup.members.map((m) => m.device.blockSize));
    this.byRole = new Array<Member | undefined>(setup.identity.raidDisks).fill(undefined);
    for (const m of this.members) {
      if (m.role !== undefined && (m.state === 'in_sync' || m.state === 'rebuilding')) this.byRole[m.role] = m;
    }
    this.degraded = this.personality.isDegraded(this.working());
    this.memberSet = this.makeMemberSet();
    this.bitmapHost = this.makeBitmapHost();
  }

  attachBitmap(bitmap: WriteIntentBitmap): void {
    this.bitmap = bitmap;
    this.personality.attachBitmap?.(bitmap);
  }

  /** At create: every role was filled at events 0. */
  markRolesFilled(): void {
    this.roleFilledAt = new Array<bigint>(this.identity.raidDisks).fill(0n);
  }

  /**
   * At assemble: a vacant role whose departed member is unambiguous (as many faulty slots as
   * vacant roles, so no replacement cycled through it) can take that member back by bitmap.
   */
  setRoleHistory(filledAt: number[]): void {
    this.roleFilledAt = filledAt.map((e) => (Number.isSafeInteger(e) ? BigInt(e) : ROLE_HISTORY_UNKNOWN));
  }

  // ------------------------------------------------------------------ identity and state

  get events(): bigint {
    return this.eventsCounter;
  }

  get size(): number {
    return this.personality.arraySize;
  }

  get name(): string {
    return this.identity.name;
  }

  get uuid(): Buffer {
    return this.identity.uuid;
  }

  private working(): boolean[] {
    return Array.from({ length: this.identity.raidDisks }, (_, r) => this.byRole[r]?.state === 'in_sync');
  }

  isDegraded(): boolean {
    return this.degraded;
  }

  /** The member called `name` (its path), if attached. */
  member(name: string): Member | undefined {
    return this.members.find((m) => m.name === name);
  }

  private refreshState(): void {
    const working = this.working();
    this.degraded = this.personality.isDegraded(working);
    if (this.state === 'stopped') return;
    if (!this.personality.canRun(working)) this.state = 'failed';
    else this.state = this.degraded ? 'degraded' : 'active';
  }

  // ------------------------------------------------------------------ member I/O

  /**
   * What a failed member request does to the member (DESIGN.md §4: a member that fails is failed).
   * - A write, zeroing or flush that failed for any reason (EIO, ENOSPC on a full disk, a closed
   *   or vanished device) leaves the member without data the others hold: it is failed, so reads
   *   stop going to it and the bitmap keeps its chunks for a later re-add. Leaving it in sync
   *   after ENOSPC made reads alternate between new data and stale bytes.
   * - A read fails the member on EIO or a device gone (ESHUTDOWN); EINVAL and ERANGE say the
   *   request was wrong, which every copy would answer alike.
   * - A discard leaves content unspecified anyway (the bitmap marks the range Unwritten): only
   *   EIO fails the member.
   * While the array stops, devices close under the last requests: nothing is failed for that.
   */
  private memberError(m: Member, err: unknown, op: 'read' | 'write' | 'discard'): Promise<void> {
    if (this.stopping && isBlockError(err, 'ESHUTDOWN')) return Promise.resolve();
    const fails = op === 'write' ? true : op === 'read' ? isBlockError(err, 'EIO') || isBlockError(err, 'ESHUTDOWN') : isBlockError(err, 'EIO');
    if (!fails) return Promise.resolve();
    m.errors++;
    return this.failMember(m, err);
  }

  /** The personality's view of the members: closures over this array, never a copy. */
  private makeMemberSet(): MemberSet {
    const get = (role: number, writing: boolean): Member => {
      const m = this.byRole[role];
      if (m === undefined || !(m.state === 'in_sync' || (writing && m.state === 'rebuilding'))) {
        throw new MdError('EIO', `role ${role} has no ${writing ? 'writable' : 'readable'} member`);
      }
      return m;
    };
    // Invariant of MemberSet: an EIO fails the member (superblocks updated) before rejecting.
    const guard = async <T>(role: number, kind: 'read' | 'write' | 'discard', op: (m: Member) => Promise<T>): Promise<T> => {
      const m = get(role, kind !== 'read');
      try {
        return await op(m);
      } catch (err) {
        await this.memberError(m, err, kind);
        throw err;
      }
    };
    const members = this.members;
    return {
      raidDisks: this.identity.raidDisks,
      blockSize: this.blockSize,
      get memberSize() {
        return Math.min(...members.map((m) => m.dataBytes));
      },
      state: (role: number): RoleState => {
        const m = this.byRole[role];
        if (m?.state === 'in_sync') return 'in_sync';
        if (m?.state === 'rebuilding') return 'rebuilding';
        return 'missing';
      },
      read: (role, offset, length) => guard(role, 'read', (m) => m.device.read(m.dataOffset + offset, length)),
      readInto: (role, offset, out) => guard(role, 'read', (m) => readInto(m.device, m.dataOffset + offset, out)),
      write: (role, offset, data, options) => guard(role, 'write', (m) => m.device.write(m.dataOffset + offset, data, options)),
      discard: (role, offset, length) => guard(role, 'discard', (m) => m.device.discard(m.dataOffset + offset, length)),
      writeZeroes: (role, offset, length, options) =>
        guard(role, 'write', (m) => m.device.writeZeroes(m.dataOffset + offset, length, options)),
    };
  }

  private makeBitmapHost(): BitmapHost {
    return {
      uuid: this.identity.uuid,
      events: () => this.eventsCounter,
      parity: this.personality.parity,
      isDegraded: () => this.isDegraded(),
      bitmapMembers: (): readonly BitmapMember[] => this.members.filter((m) => m.state === 'in_sync'),
      requestSync: () => this.onSyncRequested(),
      failMember: (member: BitmapMember, err: Error) => {
        const m = this.members.find((x) => x === member);
        if (m === undefined) return;
        // A failure no superblock could record leaves the array failed; nobody awaits this one.
        const p = this.failMember(m, err).catch((e: unknown) => this.traceUnrecorded(m, e)).finally(() => this.failures.delete(p));
        this.failures.add(p);
      },
    };
  }

  // ------------------------------------------------------------------ BlockDevice

  private async io<T>(what: string, op: () => Promise<T>): Promise<T> {
    while (this.held) await this.held;
    if (this.state === 'stopped' || this.stopping) throw new ShutdownError(`array ${this.name}: ${what}: the array is stopped`);
    if (this.state === 'failed') throw new IoError(`array ${this.name}: ${what}: the array has failed (not enough working members)`);
    this.inflight++;
    this.lastAppIo = performance.now();
    try {
      return await op();
    } catch (err) {
      // The boundary between md and BlockDevice users: md's errors become the block layer's.
      if (err instanceof MdError) throw asBlockError(err, `array ${this.name}`);
      throw err;
    } finally {
      this.inflight--;
      if (this.inflight === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(`array ${this.name}: read`, this.size, offset, length);
    return this.io('read', () => (length === 0 ? Promise.resolve(Buffer.alloc(0)) : this.personality.read(this.memberSet, offset, length)));
  }

  /** The bitmap-ordered write of DESIGN.md §4, shared by write and writeZeroes. */
  private async ordered(offset: number, length: number, op: () => Promise<void>): Promise<void> {
    const r = this.personality.syncRange(offset, length);
    // The common case takes no detour through the event loop: no sync window in the way, no
    // page suspended, no bitmap block to write first.
    const entered = this.barrier.tryEnter(r.offset, r.offset + r.length) ?? (await this.barrier.enter(r.offset, r.offset + r.length));
    try {
      if (r.length === 0) return await op();
      const started = this.bitmap.startWrite(r.offset, r.length);
      if (started) await started;
      try {
        const unplugged = this.bitmap.unplug(r.offset, r.length);
        if (unplugged) await unplugged;
        await op();
        // A write the personality completed around a failed member holds only because the other
        // superblocks now record that member as faulty (md holds such writes until they do).
        // When none could record it (a power cut, every disk gone) the array has failed, and
        // the write must not be acknowledged: after reassembly the stale member would count.
        if (this.state === 'failed') {
          throw new MdError('EIO', `a member failed during the write and no superblock could record it`);
        }
      } finally {
        this.bitmap.endWrite(r.offset, r.length);
      }
    } finally {
      this.barrier.exit(entered);
    }
  }

  async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    checkRange(`array ${this.name}: write`, this.size, offset, data.length);
    if (data.length === 0) return this.io('write', async () => {});
    return this.io('write', () => this.ordered(offset, data.length, () => this.personality.write(this.memberSet, offset, data, options)));
  }

  async writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    checkRange(`array ${this.name}: write zeroes`, this.size, offset, length);
    if (length === 0) return this.io('write zeroes', async () => {});
    return this.io('write zeroes', () => this.ordered(offset, length, () => this.personality.writeZeroes(this.memberSet, offset, length, options)));
  }

  async discard(offset: number, length: number): Promise<void> {
    checkRange(`array ${this.name}: discard`, this.size, offset, length);
    return this.io('discard', async () => {
      if (length === 0) return;
      const r = this.personality.syncRange(offset, length);
      const entered = await this.barrier.enter(r.offset, r.offset + r.length);
      try {
        if (r.length > 0) await this.bitmap.startDiscard(r.offset, r.length);
        try {
          if (r.length > 0) await this.bitmap.unplug(r.offset, r.length);
          await this.personality.discard(this.memberSet, offset, length);
        } finally {
          if (r.length > 0) this.bitmap.endDiscard(r.offset, r.length);
        }
      } finally {
        this.barrier.exit(entered);
      }
    });
  }

  /** Flushes every member that takes writes; succeeds while one in-sync member flushed. */
  flush(): Promise<void> {
    return this.io('flush', async () => {
      const targets = this.members.filter((m) => m.state === 'in_sync' || m.state === 'rebuilding');
      const results = await Promise.allSettled(targets.map(async (m) => {
        try {
          await m.device.flush();
        } catch (err) {
          await this.memberError(m, err, 'write');
          throw err;
        }
      }));
      const ok = results.filter((r, i) => r.status === 'fulfilled' && targets[i]?.state === 'in_sync').length;
      for (const [i, r] of results.entries()) {
        if (r.status === 'rejected' && targets[i]?.state !== 'faulty') throw r.reason;
      }
      if (ok === 0) throw new IoError(`array ${this.name}: flush: no in-sync member could be flushed`);
    });
  }

  /** Chunks the bitmap has never seen written (Unwritten) are holes; everything else is data. */
  async extents(offset: number, length: number): Promise<Extent[]> {
    checkRange(`array ${this.name}: extents`, this.size, offset, length);
    const chunk = this.bitmap.chunkSize;
    const identity = this.personality.syncSize === this.size && !this.personality.parity;
    if (length === 0) return [];
    if (chunk === 0 || !identity) return [{ length, hole: false, zero: false }];
    const out: Extent[] = [];
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const next = Math.min(end, (Math.floor(pos / chunk) + 1) * chunk);
      const hole = this.bitmap.isUnwritten(pos);
      const last = out[out.length - 1];
      if (last !== undefined && last.hole === hole) last.length += next - pos;
      else out.push({ length: next - pos, hole, zero: false });
      pos = next;
    }
    return out;
  }

  /** BlockDevice close: a clean stop. */
  close(): Promise<void> {
    return this.stop();
  }

  // ------------------------------------------------------------------ superblocks

  /** resync_offset to record: 0 while active (dirty), else where a pending resync resumes. */
  private resyncOffsetField(clean: boolean): bigint {
    if (!clean) return 0n;
    return this.resyncFrom === null ? RESYNC_NONE : BigInt(Math.floor(this.resyncFrom / SECTOR));
  }

  /**
   * events++ and every non-faulty member gets the new superblock (FUA), then the bitmap's
   * superblock follows. Serialised: each update sees the previous one complete. A member whose
   * superblock write fails is failed and the update repeated without it.
   */
  writeSuperblocks(clean = false): Promise<void> {
    const run = async (): Promise<void> => {
      for (;;) {
        this.eventsCounter = nextEvents(this.name, this.members, this.eventsCounter, clean);
        this.devRoles = devRolesFor(this.members, this.devRoles.length, this.identity.raidDisks);
        const targets = this.members.filter((m) => m.state !== 'faulty');
        const results = await Promise.allSettled(targets.map(async (m) => {
          const sb = composeSuperblock(this.identity, m, this.eventsCounter, this.devRoles, this.resyncOffsetField(clean));
          // A superblock that says "clean" vouches for every write before it: those must be durable
          // first (md_super_write's REQ_PREFLUSH), or a power cut could leave copies that differ
          // under a superblock that owes no resync.
          if (clean) await m.device.flush();
          await writeSuperblock(m.device, sb);
          m.sb = sb;
        }));
        let failed = false;
        for (const [i, r] of results.entries()) {
          const m = targets[i] as Member;
          if (r.status === 'rejected') {
            if (!(r.reason instanceof BlockError)) throw r.reason;
            this.markFaulty(m);
            failed = true;
          }
        }
        if (targets.length === 0 && this.members.length > 0) {
          // An update no member holds did not happen: whoever waits on it must not go on.
          throw new MdError('EIO', `array ${this.name}: the superblock update reached no member`);
        }
        if (!failed) break;
      }
      if (this.bitmap !== undefined && this.state !== 'failed') await this.bitmap.updateSb();
    };
    const next = this.sbWrite.then(run, run);
    this.sbWrite = next.catch(() => undefined);
    return next;
  }

  /** A failure that no superblock could record has left the array failed: nobody awaits it. */
  private traceUnrecorded(m: Member, err: unknown): void {
    trace('md', 'error', () => `array ${this.name}: failing member ${m.name} could not be recorded: ${describeError(err)}`);
  }

  /** A member device closed on the way out; it takes no I/O any more, whatever close says. */
  private traceClose(m: { name: string }, err: unknown): void {
    trace('md', 'debug', () => `array ${this.name}: closing ${m.name}: ${describeError(err)}`);
  }

  private markFaulty(m: Member): void {
    if (m.role !== undefined && this.byRole[m.role] === m) this.byRole[m.role] = undefined;
    m.state = 'faulty';
    m.role = undefined;
    this.refreshState();
  }

  // ------------------------------------------------------------------ lifecycle

  /** First superblock write of a running array: events up, marked active (dirty). */
  async run(): Promise<void> {
    this.running = true;
    this.refreshState();
    await this.writeSuperblocks(false);
    for (const role of this.vacatedBeforeRun.splice(0)) this.takeSpare(role);
    this.maybeStartSync();
    this.healthTimer = setInterval(() => void this.checkHealth(), HEALTH_INTERVAL_MS);
    this.healthTimer.unref();
  }

  /**
   * Fails members whose device says it can no longer be used though no request failed yet: a
   * member file deleted while in use (writes still land in its unlinked inode, which no restart
   * would find) or a member that stopped answering. md learns of a vanished disk from the block
   * layer; a file gives no such signal, so it is asked.
   */
  private async checkHealth(): Promise<void> {
    if (this.checkingHealth || this.stopping) return;
    this.checkingHealth = true;
    try {
      for (const m of this.members) {
        if ((m.state !== 'in_sync' && m.state !== 'rebuilding') || m.device.health === undefined) continue;
        const why = await m.device.health().catch((err: unknown) => (err as Error).message);
        if (why !== undefined && !this.stopping) await this.failMember(m, new IoError(why)).catch((e: unknown) => this.traceUnrecorded(m, e));
      }
    } finally {
      this.checkingHealth = false;
    }
  }

  /**
   * Fails a member (md's md_error): it stops taking I/O, the others' superblocks record it as
   * faulty (0xfffe) with events up. The array runs degraded, or fails when the level cannot run.
   */
  async failMember(m: Member, cause?: unknown): Promise<void> {
    if (m.state === 'faulty') return this.sbWrite;
    const role = m.role;
    m.failure = cause instanceof Error ? cause.message : 'failed by request';
    if (m.state === 'in_sync' && role !== undefined && this.personality.syncSize > 0 && !this.personality.parity) {
      // As md's raid1_error/raid10_error: the last copy of some data is never failed. The I/O
      // that hit the error fails instead, and the member keeps serving everything else. Parity
      // levels fail it (raid5_error): the array then stops with "cannot continue".
      const working = this.working();
      working[role] = false;
      if (!this.personality.canRun(working)) {
        trace('md', 'info', () => `array ${this.name}: member ${m.name} kept: it holds the last copy of some data (${m.failure})`);
        return;
      }
    }
    trace('md', 'info', () => `array ${this.name}: member ${m.name} failed: ${m.failure}`);
    this.markFaulty(m);
    if (!this.running) {
      if (role !== undefined) this.vacatedBeforeRun.push(role);
      return;
    }
    await this.writeSuperblocks(false);
    if (role !== undefined) this.takeSpare(role);
  }

  /**
   * md's hot spare: a spare takes the vacated role and is rebuilt. Started apart from the caller,
   * which may run inside an application write that a sync window is waiting to drain.
   */
  private takeSpare(role: number): void {
    const spare = this.members.find((x) => x.state === 'spare');
    if (spare !== undefined && this.tuning.autoSync && !this.stopping && this.state !== 'failed') {
      trace('md', 'info', () => `array ${this.name}: spare ${spare.name} takes role ${role}, full recovery`);
      // Nobody awaits it: a spare that cannot be attached stays a spare, and says why.
      const p = this.attachToRole(spare, role, false)
        .catch((err: unknown) => trace('md', 'error', () => `array ${this.name}: spare ${spare.name} could not take role ${role}: ${describeError(err)}`))
        .finally(() => this.failures.delete(p));
      this.failures.add(p);
    }
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
    if (this.state === 'stopped' || this.stopping) throw new MdError('EBUSY', `array ${this.name}: stopped`);
    if (this.state === 'failed') throw new MdError('EIO', `array ${this.name}: cannot grow a failed array`);
    if (this.members.some((m) => m.state === 'rebuilding')) {
      throw new MdError('EBUSY', `array ${this.name}: cannot grow while a member is being rebuilt`);
    }
    const targets = this.members.filter((m) => m.state !== 'faulty');
    let memberBytes = size;
    if (memberBytes === 'max') {
      for (const m of targets) await m.device.grow?.(m.device.size);
      memberBytes = Math.min(...targets.map((m) => m.device.size - m.dataOffset));
    }
    if (!Number.isSafeInteger(memberBytes) || memberBytes <= 0) {
      throw new MdError('EINVAL', `array ${this.name}: grow: expected a positive member size in bytes, found ${memberBytes}`);
    }
    const geometry = { level: this.identity.level, raidDisks: this.identity.raidDisks, layout: this.identity.layout, chunkSize: this.personality.chunkSize };
    const current = this.identity.usedSectors * SECTOR;
    const used = usedMemberBytes({ ...geometry, memberSize: memberBytes });
    if (used < current) {
      throw new MdError('EINVAL', `array ${this.name}: grow: expected at least the current ${current} bytes per member (shrinking is not supported), found ${memberBytes}${used === memberBytes ? '' : ` (rounded down to ${used})`}`);
    }
    if (used === current) return;
    await checkMemberGrowth(this.name, targets, memberBytes, used);
    for (const m of targets) await fitMember(m, m.dataOffset + used);

    await this.stopSync();
    const release = await this.holdIo();
    try {
      const personality = createPersonality({ ...geometry, memberSize: used });
      const oldSyncSize = this.personality.syncSize;
      await this.bitmap.resize(personality.syncSize);
      for (const m of targets) m.sb = { ...m.sb, dataSize: Math.floor((m.device.size - m.dataOffset) / SECTOR) };
      this.identity.usedSectors = used / SECTOR;
      this.personality = personality;
      personality.attachBitmap?.(this.bitmap);
      if (this.bitmap.kind === 'none' && personality.syncSize > oldSyncSize) {
        this.resyncFrom = Math.min(this.resyncFrom ?? oldSyncSize, oldSyncSize);
      }
      await this.writeSuperblocks(false);
    } finally {
      release();
    }
    this.maybeStartSync();
  }

  /** Holds new I/O and waits until none is in flight; call the result to let I/O go again. */
  private async holdIo(): Promise<() => void> {
    while (this.held) await this.held;
    let release!: () => void;
    this.held = new Promise<void>((resolve) => (release = resolve));
    await this.waitIdle();
    return () => {
      this.held = null;
      release();
    };
  }

  /**
   * Throws EOVERFLOW when the superblocks could not record one more change (events at their
   * end): a membership or size change is refused before it is made (member-superblock.ts).
   */
  checkChangeRecordable(): void {
    nextEvents(this.name, this.members, this.eventsCounter, false);
  }

  /** Fails the member called `name` by hand (mdadm --fail). */
  async fail(name: string): Promise<void> {
    const m = this.requireMember(name);
    if (m.state === 'faulty') throw new MdError('EINVAL', `member ${name}: already faulty`);
    if (m.role !== undefined && m.state === 'in_sync') {
      const working = this.working();
      working[m.role] = false;
      if (!this.personality.canRun(working)) {
        throw new MdError('EBUSY', `member ${name}: failing it would leave ${levelName(this.identity.level)} without a complete copy`);
      }
    }
    await this.failMember(m);
  }

  private requireMember(name: string): Member {
    const m = this.member(name);
    if (m === undefined) {
      throw new MdError('EINVAL', `member ${name}: not part of array ${this.name} (members: ${this.members.map((x) => x.name).join(', ')})`);
    }
    return m;
  }

  /** Detaches a faulty or spare member (mdadm --remove) and releases its device if the array opened it. */
  async remove(name: string): Promise<void> {
    const m = this.requireMember(name);
    if (m.state === 'in_sync' || m.state === 'rebuilding') {
      throw new MdError('EBUSY', `member ${name}: is ${m.state}; fail it before removing it`);
    }
    this.members.splice(this.members.indexOf(m), 1);
    await this.writeSuperblocks(false);
    if (m.owned) await m.device.close().catch((err: unknown) => this.traceClose(m, err));
  }

  /**
   * Puts a member into a vacant role and starts recovery onto it. `bitmapGuided`: recover only
   * what the bitmap marks (a re-added member); otherwise every written chunk (a new member).
   */
  async attach(m: Member, bitmapGuided: boolean): Promise<void> {
    if (this.state === 'stopped' || this.stopping) throw new MdError('EBUSY', `array ${this.name}: stopped`);
    const role = this.byRole.findIndex((x) => x === undefined);
    if (role < 0) {
      m.state = 'spare';
      m.role = undefined;
      this.members.push(m);
      await this.writeSuperblocks(false);
      return;
    }
    await this.attachToRole(m, role, bitmapGuided);
  }

  private async attachToRole(m: Member, role: number, bitmapGuided: boolean): Promise<void> {
    await this.stopSync();
    m.state = 'rebuilding';
    m.role = role;
    m.recoveryOffset = 0;
    if (!this.members.includes(m)) this.members.push(m);
    this.byRole[role] = m;
    this.roleFilledAt[role] = this.eventsCounter + 1n;
    this.refreshState();
    await this.writeSuperblocks(false);
    this.startSyncThread('recovery', 0, bitmapGuided);
  }

  /**
   * Re-adds a member that left this array (mdadm --re-add). If the bitmap covers everything it
   * missed (llbitmap.md A5 re-add guard, 004:L78) only the chunks written while it was away are
   * recovered; otherwise everything written. Returns which recovery was chosen.
   */
  async reAdd(spec: MemberSpec): Promise<'bitmap' | 'full'> {
    const old = await this.attachedAs(spec);
    if (old !== undefined && old.state !== 'faulty') {
      throw new MdError('EBUSY', `member ${old.name}: already ${old.state} in array ${this.name}`);
    }
    // The failed member's descriptor still holds the file's exclusive lock: let it go first. A
    // faulty member takes no I/O, so its record can stay (closed) until the re-add succeeds.
    if (old?.owned) await old.device.close().catch((err: unknown) => this.traceClose(old, err));
    const opened = await openMember(spec);
    try {
      const sb = await readSuperblock(opened.device, opened.name);
      if (!sb.setUuid.equals(this.identity.uuid)) {
        throw new MdError('EUUID', `member ${opened.name}: belongs to array ${formatUuid(sb.setUuid)}, expected ${formatUuid(this.identity.uuid)}`);
      }
      if (old !== undefined) this.members.splice(this.members.indexOf(old), 1);
      const role = sb.devRoles[sb.devNumber];
      // Why the bitmap cannot cover what the member missed; undefined when it can.
      const unguided = this.bitmap.kind !== 'llbitmap' ? 'the array has no llbitmap'
        : role === undefined || role >= this.identity.raidDisks ? 'it held no data role'
        : this.byRole[role] !== undefined ? `role ${role} is taken`
        : this.devRoles[sb.devNumber] !== ROLE_FAULTY ? 'the array does not record it as failed'
        : (sb.featureMap & FEATURE_RECOVERY_OFFSET) !== 0 ? 'it was being rebuilt when it left'
        : sb.events > this.eventsCounter ? `its events ${sb.events} are ahead of the array's ${this.eventsCounter}`
        : sb.events < (this.roleFilledAt[role] ?? ROLE_HISTORY_UNKNOWN) ? 'its role was filled by another member since it left'
        : undefined;
      const guided = unguided === undefined && role !== undefined;
      trace('md', 'info', () => `array ${this.name}: re-add ${opened.name}: ${guided ? 'bitmap-guided recovery' : `full recovery, ${unguided}`}`);
      const m = new Member(opened.name, opened.device, sb, opened.owned);
      // It may have left before the array grew.
      await fitMember(m, m.dataOffset + this.identity.usedSectors * SECTOR);
      m.sb = { ...m.sb, dataSize: Math.floor((m.device.size - m.dataOffset) / SECTOR) };
      if (guided) {
        await this.attachToRole(m, role, true);
      } else {
        m.sb = { ...sb, devNumber: this.freeDevNumber(), deviceUuid: randomBytes(16) };
        await this.attach(m, false);
      }
      return guided ? 'bitmap' : 'full';
    } catch (err) {
      if (opened.owned && !this.members.some((x) => x.device === opened.device)) await opened.device.close().catch((e: unknown) => this.traceClose(opened, e));
      throw err;
    }
  }

  /**
   * Adds a new member (mdadm --add): a fresh superblock; it fills a vacant role and every written
   * chunk is rebuilt onto it (Unwritten chunks skipped), or it waits as a spare.
   */
  async add(spec: MemberSpec, options: { force?: boolean } = {}): Promise<void> {
    const attached = await this.attachedAs(spec);
    if (attached !== undefined) throw new MdError('EBUSY', `member ${typeof spec === 'string' ? spec : spec.name}: already part of array ${this.name} (as ${attached.name}, ${attached.state})`);
    const opened = await openMember(spec);
    try {
      const existing = await probeSuperblock(opened);
      if (existing !== undefined && !existing.setUuid.equals(this.identity.uuid) && !options.force) {
        throw new MdError('EEXIST', `member ${opened.name}: carries an md superblock of array ${formatUuid(existing.setUuid)}; use force to overwrite it`);
      }
      const template = this.members[0]?.sb;
      if (template === undefined) throw new MdError('ENODEV', `array ${this.name}: has no member to copy the layout from`);
      const dataSize = Math.floor(opened.device.size / SECTOR) - template.dataOffset;
      if (dataSize < this.identity.usedSectors) {
        throw new MdError('ENOSPC', `member ${opened.name}: expected at least ${(template.dataOffset + this.identity.usedSectors) * SECTOR} bytes, found ${opened.device.size}`);
      }
      const sb: Superblock = { ...template, dataSize, devNumber: this.freeDevNumber(), deviceUuid: randomBytes(16), recoveryOffset: 0, cntCorrectedRead: 0, devflags: 0 };
      await this.attach(new Member(opened.name, opened.device, sb, opened.owned), false);
    } catch (err) {
      if (opened.owned && !this.members.some((x) => x.device === opened.device)) await opened.device.close().catch((e: unknown) => this.traceClose(opened, e));
      throw err;
    }
  }

  /** The attached member `spec` names: by name, or as the same file under another path. */
  private async attachedAs(spec: MemberSpec): Promise<Member | undefined> {
    const name = typeof spec === 'string' ? spec : spec.name;
    for (const m of this.members) {
      if (m.name === name || (await namesDevice(spec, m.device))) return m;
    }
    return undefined;
  }

  /** A dev_number no attached member uses and no departed member is recorded under. */
  private freeDevNumber(): number {
    const used = new Set(this.members.map((m) => m.sb.devNumber));
    for (let i = 0; i < this.devRoles.length; i++) {
      if (!used.has(i) && this.devRoles[i] !== ROLE_FAULTY) return i;
    }
    const next = Math.max(this.devRoles.length, ...[...used].map((u) => u + 1));
    if (next >= MAX_DEV_LIMIT) throw new MdError('ENOSPC', `array ${this.name}: all ${MAX_DEV_LIMIT} device slots are used`);
    return next;
  }

  /** Called by the bitmap when chunks need syncing; md waits until the array is whole again. */
  private onSyncRequested(): void {
    if (this.resyncFrom === null) this.resyncFrom = 0;
    if (this.tuning.autoSync) queueMicrotask(() => this.maybeStartSync());
  }

  private maybeStartSync(): void {
    if (!this.tuning.autoSync || this.syncThread !== undefined || this.stopping || this.state === 'stopped' || this.state === 'failed') return;
    // A bitmap asks for a sync while it loads, before the array holds it: run() starts it.
    if ((this.bitmap as WriteIntentBitmap | undefined) === undefined) return;
    if (this.personality.syncSize === 0) return;
    const rebuilding = this.members.filter((m) => m.state === 'rebuilding');
    if (rebuilding.length > 0) {
      const from = Math.min(...rebuilding.map((m) => this.syncOffsetOfMember(m.recoveryOffset)));
      // A member that was rebuilding when the array stopped was a replacement unless proven otherwise.
      this.startSyncThread('recovery', from, false);
    } else if (this.resyncFrom !== null && !this.isDegraded()) {
      this.startSyncThread('resync', this.resyncFrom, true);
    }
  }

  /** Sync-space position from which a member's recovery resumes (conservative). */
  private syncOffsetOfMember(memberOffset: number): number {
    const p = this.personality;
    return p.syncOffsetOfMember ? p.syncOffsetOfMember(memberOffset) : 0;
  }

  private memberOffsetOfSync(syncOffset: number): number {
    const p = this.personality;
    return p.memberOffsetOfSync ? p.memberOffsetOfSync(syncOffset) : 0;
  }

  /**
   * Proactive parity (llbitmap.md A5, seed 003): parity is built in the background for chunks
   * never written (Unwritten → NeedSyncUnwritten → SyncingUnwritten → CleanUnwritten), so later
   * first writes there need no lazy resync. Parity levels only.
   */
  proactiveSync(): void {
    if (!this.personality.parity) {
      throw new MdError('ENOTSUP', `array ${this.name}: proactive sync builds parity: expected raid4/5/6, found ${levelName(this.identity.level)}`);
    }
    if (this.state === 'stopped' || this.stopping) throw new MdError('EBUSY', `array ${this.name}: stopped`);
    this.bitmap.proactiveSync();
    // Start the pass now rather than from the bitmap's queued request, so waitSync() sees it.
    this.maybeStartSync();
  }

  /**
   * Starts a sync pass (md's sync_action). check and repair need a whole array; resync and
   * recovery normally start by themselves.
   */
  startSync(mode: SyncMode): SyncProgress {
    if (this.personality.syncSize === 0) throw new MdError('ENOTSUP', `array ${this.name}: ${levelName(this.identity.level)} has no redundancy to sync`);
    if (this.syncThread !== undefined) throw new MdError('EBUSY', `array ${this.name}: a ${this.syncThread.mode} is already running`);
    if (this.state === 'stopped' || this.stopping) throw new MdError('EBUSY', `array ${this.name}: stopped`);
    if ((mode === 'check' || mode === 'repair' || mode === 'resync') && this.isDegraded()) {
      throw new MdError('EBUSY', `array ${this.name}: cannot ${mode} while degraded`);
    }
    if (mode === 'recovery' && !this.members.some((m) => m.state === 'rebuilding')) {
      throw new MdError('EINVAL', `array ${this.name}: no member to recover onto`);
    }
    // Only a resync trusts the bitmap to skip written chunks; check/repair scan everything written.
    return this.startSyncThread(mode, mode === 'resync' ? (this.resyncFrom ?? 0) : 0, mode === 'resync').progress();
  }

  private startSyncThread(mode: SyncMode, from: number, bitmapGuided: boolean): SyncThread {
    const thread = new SyncThread({
      array: this.name,
      mode,
      from,
      bitmapGuided,
      syncSize: this.personality.syncSize,
      targetBytes: this.syncTarget(mode, from, bitmapGuided),
      bitmap: this.bitmap,
      speed: (): SyncSpeed => ({ min: this.tuning.syncSpeedMin, max: this.tuning.syncSpeedMax }),
      appBusy: () => performance.now() - this.lastAppIo < 500,
      lock: (start, end) => this.barrier.lock(start, end),
      window: (m, off, len) => this.personality.syncWindow(this.memberSet, m, off, len),
      hasTargets: () => mode !== 'recovery' || this.members.some((x) => x.state === 'rebuilding'),
      checkpoint: (pos) => this.checkpoint(mode, pos),
    });
    this.syncThread = thread;
    if (mode === 'recovery' && !bitmapGuided) this.bitmap.startRecovery();
    this.syncDone = thread.run().then(
      (summary) => this.syncFinished(thread, summary),
      (err: unknown) => this.syncFinished(thread, thread.summary(false, err instanceof Error ? err.message : String(err))),
    );
    return thread;
  }

  /**
   * Bytes a pass from `from` is expected to sync, from the bitmap as it starts: a resync the
   * NeedSync chunks, a re-add what was written while the member was away, anything else every
   * written chunk. Without a bitmap, everything from `from`.
   */
  private syncTarget(mode: SyncMode, from: number, bitmapGuided: boolean): number {
    const rest = this.personality.syncSize - from;
    const chunk = this.bitmap.chunkSize;
    if (chunk === 0) return rest;
    const c = this.bitmap.counts();
    const chunks = mode === 'resync'
      ? c.needSync + c.syncing + c.needSyncUnwritten + c.syncingUnwritten
      : bitmapGuided
        ? c.dirty + c.needSync + c.syncing
        : c.clean + c.dirty + c.needSync + c.syncing;
    return Math.min(rest, chunks * chunk);
  }

  /** Sync checkpoint: position recorded in superblocks so a restart resumes from it. */
  private async checkpoint(mode: SyncMode, pos: number): Promise<void> {
    if (mode === 'recovery') {
      for (const m of this.members) if (m.state === 'rebuilding') m.recoveryOffset = this.memberOffsetOfSync(pos);
      await this.writeSuperblocks(false);
    } else if (mode === 'resync') {
      this.resyncFrom = pos;
    }
  }

  private async syncFinished(thread: SyncThread, summary: SyncSummary): Promise<SyncSummary> {
    this.lastSync = summary;
    this.syncedBefore += summary.bytesSynced;
    if (thread.mode === 'check' || thread.mode === 'repair') this.mismatchCount = summary.mismatches;
    if (summary.complete) {
      if (thread.mode === 'recovery') {
        for (const m of this.members) {
          if (m.state === 'rebuilding') {
            m.state = 'in_sync';
            m.recoveryOffset = 0;
          }
        }
        this.refreshState();
        // In sync in memory either way; superblocks that could not say so keep the recovery
        // offset, and the next assembly recovers from it again: safe, so only traced.
        await this.writeSuperblocks(false).catch((err: unknown) =>
          trace('md', 'error', () => `array ${this.name}: recovery complete, but the superblocks could not record it: ${describeError(err)}`));
      } else if (thread.mode === 'resync' || thread.mode === 'repair') {
        // A write during the pass may have left a chunk NeedSync behind its position: then
        // another pass follows (md sets MD_RECOVERY_NEEDED again), else nothing is owed.
        const c = this.bitmap.counts();
        this.resyncFrom = c.needSync + c.needSyncUnwritten > 0 ? 0 : null;
      }
    } else if (thread.mode === 'resync') {
      this.resyncFrom = summary.position;
    }
    if (this.syncThread === thread) this.syncThread = undefined;
    // A recovery that completed may leave a resync owed (bitmap NeedSync requested meanwhile).
    if (!this.stopping) this.maybeStartSync();
    return summary;
  }

  /** Resolves when the current sync pass (if any) ends, with its summary. */
  async waitSync(): Promise<SyncSummary | undefined> {
    // A failure being handled may be about to start a recovery onto a spare.
    await Promise.allSettled([...this.failures]);
    for (;;) {
      const t = this.syncThread;
      const s = await this.syncDone;
      if (this.syncThread === undefined || this.syncThread === t) return s;
    }
  }

  /** Stops the sync pass at its next window boundary (position kept for resume). */
  async stopSync(): Promise<void> {
    const t = this.syncThread;
    if (t === undefined) return;
    t.stop();
    await this.syncDone;
  }

  private waitIdle(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Clean stop (md's do_md_stop): the sync pass stops at a checkpoint, in-flight I/O drains, the
   * bitmap is flushed (Dirty → Clean, everything written), superblocks are written clean (resync
   * position kept only if a resync is unfinished), then the devices the array opened are closed.
   */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.stopping = true;
    clearInterval(this.healthTimer);
    await this.stopSync();
    await this.waitIdle();
    await Promise.allSettled([...this.failures]);
    try {
      if (this.state !== 'failed') {
        await this.bitmap.flush();
        await this.writeSuperblocks(true);
      }
    } finally {
      // Stopped either way: a stop whose superblocks reached no member still releases everything.
      await this.bitmap.close();
      this.state = 'stopped';
      await Promise.allSettled(this.members.filter((m) => m.owned).map((m) => m.device.close()));
    }
  }

  /**
   * Abandons the array as a crash or kill would: timers stop, devices are released, nothing is
   * written (superblocks stay active/dirty, bitmap Dirty bits stay). For tests of recovery paths
   * and for a supervisor tearing down a wedged engine.
   */
  async abandon(): Promise<void> {
    if (this.state === 'stopped') return;
    this.stopping = true;
    clearInterval(this.healthTimer);
    this.syncThread?.stop();
    await this.bitmap.close().catch((err: unknown) => trace('md', 'debug', () => `array ${this.name}: abandon: bitmap close: ${describeError(err)}`));
    this.state = 'stopped';
    await Promise.allSettled(this.members.filter((m) => m.owned).map((m) => m.device.close()));
  }

  // ------------------------------------------------------------------ status

  status(): ArrayStatus {
    const counts = this.bitmap.counts();
    const working = this.working().filter((w) => w).length;
    return {
      name: this.name,
      uuid: formatUuid(this.identity.uuid),
      level: levelName(this.identity.level),
      raidDisks: this.identity.raidDisks,
      size: this.size,
      chunkSize: this.personality.chunkSize,
      layout: this.identity.layout,
      state: this.state,
      degraded: this.state !== 'stopped' && this.isDegraded(),
      events: this.eventsCounter.toString(),
      working,
      members: this.members.map((m) => ({
        name: m.name,
        role: m.role ?? null,
        state: m.state,
        devNumber: m.sb.devNumber,
        recoveryOffset: m.state === 'rebuilding' ? m.recoveryOffset : 0,
        failure: m.state === 'faulty' ? (m.failure ?? 'failed') : null,
        errors: m.errors,
      })),
      missingRoles: this.byRole.flatMap((m, r) => (m === undefined ? [r] : [])),
      resyncPending: this.resyncFrom,
      bitmap: { kind: this.bitmap.kind, chunkSize: this.bitmap.chunkSize, counts },
      sync: this.syncThread?.progress() ?? null,
      lastSync: this.lastSync,
      bytesSyncedTotal: this.syncedBefore + (this.syncThread?.progress().bytesSynced ?? 0),
      mismatchCount: this.mismatchCount,
      syncSize: this.personality.syncSize,
    };
  }

  /** Members (for lifecycle modules): a copy. */
  memberList(): readonly Member[] {
    return [...this.members];
  }

  /** The roles of the freshest superblock, for re-add decisions. */
  currentDevRoles(): readonly number[] {
    return this.devRoles;
  }
}

/** Makes `m`'s device hold at least `bytes`, growing it where it can. */
async function fitMember(m: Member, bytes: number): Promise<void> {
  if (m.device.size >= bytes) return;
  if (!m.device.grow) throw new MdError('ENOSPC', `member ${m.name}: expected at least ${bytes} bytes, found ${m.device.size} and the device cannot grow`);
  try {
    await m.device.grow(bytes);
  } catch (err) {
    throw new MdError('ENOSPC', `member ${m.name}: could not grow to ${bytes} bytes: ${(err as Error).message}`, { cause: err });
  }
}
