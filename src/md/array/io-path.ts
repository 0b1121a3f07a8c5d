// The I/O path of a running array, what makes it a BlockDevice: every request is counted in
// flight (grow holds new ones and waits for these), a write follows DESIGN.md §4's order (sync
// barrier → bitmap Startwrite → dirty bitmap blocks durable on every in-sync member → the
// personality's member writes in parallel → bitmap endWrite → acknowledge), and md's errors
// become the block layer's at the boundary. The personality reaches the members through the
// MemberSet view built here, whose every failed request fails its member first (membership.ts).
//
// Fenced (a member's device answered EFENCED: another engine took it): every request rejects
// with EFENCED, reads too (the other engine may be writing the members, a read could return
// anything), those in flight included when they complete; no member request starts any more.

import { readInto, type Extent, type WriteOptions, type ZeroOptions } from '../../block/block-device.js';
import { IoError, ShutdownError, isBlockError } from '../../block/errors.js';
import { describeError, trace } from '../../common/trace.js';
import { MdError, asBlockError } from '../errors.js';
import type { Member } from '../member.js';
import type { MemberSet, RoleState, SyncRange } from '../personality.js';
import type { ArrayMembers } from './member-set.js';
import type { Membership } from './membership.js';

export class ArrayIo {
  /** The personality's view of the members: closures over the member set, never a copy. */
  readonly memberSet: MemberSet;
  /** The sync range writeNow asks for, filled in per call (it is done with it before it returns). */
  private readonly nowRange: SyncRange = { offset: 0, length: 0 };
  private inflight = 0;
  private idleWaiters: (() => void)[] = [];
  /** Non-null while grow() holds I/O: new requests wait for it before they count as in flight. */
  private held: Promise<void> | null = null;
  /**
   * Non-null while the failure of a member that a synchronous fast path found failing is being
   * recorded (superblocks): every request waits for it, the retry of the one that met it first,
   * so none completes, around the member or on it, before the array says the member failed.
   */
  private recording: Promise<void> | null = null;

  constructor(
    private readonly set: ArrayMembers,
    private readonly membership: Membership,
  ) {
    this.memberSet = this.makeMemberSet();
  }

  /** Runs one application request: counted in flight, refused on a stopped or failed array. */
  async io<T>(what: string, op: () => Promise<T>): Promise<T> {
    const s = this.set;
    for (let gate = this.held ?? this.recording; gate !== null; gate = this.held ?? this.recording) await gate;
    if (s.state === 'stopped' || s.stopping) throw new ShutdownError(`array ${s.name}: ${what}: the array is stopped`);
    if (s.state === 'failed') throw new IoError(`array ${s.name}: ${what}: the array has failed (not enough working members)`);
    s.checkNotFenced(what);
    this.inflight++;
    s.appIos++;
    try {
      const result = await op();
      // Completed on every member, but the array was fenced meanwhile: not acknowledged.
      s.checkNotFenced(what);
      return result;
    } catch (err) {
      if (s.state === 'fenced' && !isBlockError(err, 'EFENCED')) throw s.fencedError(what);
      // The boundary between md and BlockDevice users: md's errors become the block layer's.
      if (err instanceof MdError) throw asBlockError(err, `array ${s.name}`);
      throw err;
    } finally {
      this.inflight--;
      if (this.inflight === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.io('read', () => (length === 0 ? Promise.resolve(Buffer.alloc(0)) : this.set.personality.read(this.memberSet, offset, length)));
  }

  /** read() into `out`, a caller's reused buffer. */
  readInto(offset: number, out: Buffer): Promise<void> {
    const personality = this.set.personality;
    return this.io('read', () => (out.length === 0 ? Promise.resolve() : personality.readInto(this.memberSet, offset, out)));
  }

  write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    if (data.length === 0) return this.io('write', async () => {});
    return this.io('write', () => this.ordered(offset, data.length, (waited) => this.writeMembers(offset, data, waited, options)));
  }

  /**
   * write()'s member writes, once the bitmap allows them. A write that waited for the bitmap (a
   * chunk's first write since it was last clean, whose state had to be made durable) is the one
   * writeNow declined for that reason alone: it is done now if the personality can, as writeNow
   * would have. A new raid5's first writes to its chunks are such writes: through the promise path
   * (a reconstruct-write, the chunk's parity built around it asynchronously) the first seconds of
   * 4 KiB random writes on a new 1.2 GiB array ran at 4-5k a second and left the engine's V8 heap
   * 9 MiB larger for good.
   */
  private async writeMembers(offset: number, data: Uint8Array, waited: boolean, options?: WriteOptions): Promise<void> {
    const s = this.set;
    const personality = s.personality;
    if (waited && options?.fua !== true && personality.writeNow !== undefined && this.mayWriteNow()) {
      const done = personality.writeNow(this.memberSet, offset, [data]);
      if (done === true) return;
      // Declined half way: the personality finishes what it started, and write() writes the whole again.
      if (done !== false) await done;
    }
    await personality.write(this.memberSet, offset, data, options);
  }

  /**
   * BlockDevice.readNow: the personality's read done now, on this thread, when nothing makes it
   * wait (grow's hold, a member failure being recorded) and the array serves reads (active or
   * degraded); false otherwise, and the caller's read() does it. Reads take no barrier (read()
   * does not either): a sync window only writes what every in-sync copy already reads back.
   */
  readNow(offset: number, out: Buffer): boolean {
    const s = this.set;
    const personality = s.personality;
    if (personality.readNow === undefined || !this.mayGoNow() || (s.state !== 'active' && s.state !== 'degraded')) return false;
    if (out.length === 0) return true;
    s.appIos++;
    return personality.readNow(this.memberSet, offset, out);
  }

  /**
   * BlockDevice.writeNow: write()'s order of DESIGN.md §4 with nothing to wait for, done now. Only
   * on a whole array (state active: no role degraded or rebuilding), with no sync window over the
   * range (the barrier entered at once), and a bitmap whose Startwrite needs no waiting (the
   * chunks Dirty and durable already, or written out now: unplugNow): anything else, FUA among
   * them (NBD asks writeNow only without it), is declined before any member is written, and
   * write() waits as it must. A member that declines (or fails) after another took the bytes
   * also declines the whole: write() writes them again, into the chunks still Dirty (the daemon
   * cleans only idle chunks later).
   */
  writeNow(offset: number, parts: readonly Uint8Array[], length: number): boolean {
    const s = this.set;
    const personality = s.personality;
    if (personality.writeNow === undefined || !this.mayWriteNow()) return false;
    if (length === 0) return true;
    // The range read out of the reused object at once: the continuation below outlives this call.
    const { offset: from, length: span } = personality.syncRange(offset, length, this.nowRange);
    if (span === 0) return false;
    // Synchronous from here to the end: no sync window can start meanwhile, so the barrier is
    // only asked, not entered (no Range made and counted per request).
    if (!s.barrier.clear(from, from + span)) return false;
    const started = s.bitmap.startWrite(from, span);
    if (started !== undefined) {
      // A bitmap that must wait before Startwrite holds: write() waits for it. The pairing
      // endWrite follows it, whichever way it ends.
      void started.then(() => s.bitmap.endWrite(from, span), () => s.bitmap.endWrite(from, span));
      return false;
    }
    let done: boolean | Promise<void> = false;
    try {
      // The chunks' new state must be durable before any data write: written out now, or
      // write() waits for the write-out.
      if (!s.bitmap.unplugNow(from, span)) return false;
      s.appIos++;
      done = personality.writeNow(this.memberSet, offset, parts);
      return done === true;
    } finally {
      // Declined half way: the chunks stay Dirty until the personality has finished the member
      // writes it started (a crash before then resyncs them).
      if (typeof done === 'object') void done.then(() => s.bitmap.endWrite(from, span), () => s.bitmap.endWrite(from, span));
      else s.bitmap.endWrite(from, span);
    }
  }

  /** Whether a write may go now: the array is whole (writes now go to every role) and mayGoNow. */
  private mayWriteNow(): boolean {
    return this.set.state === 'active' && this.mayGoNow();
  }

  /** Whether a request may go now: no hold, no failure being recorded, not stopping or fenced. */
  private mayGoNow(): boolean {
    const s = this.set;
    return this.held === null && this.recording === null && !s.stopping && s.running;
  }

  /** A member request of a fast path failed: the member is failed as memberError says, and every request waits. */
  private failedNow(m: Member, err: unknown, op: 'read' | 'write'): void {
    const recording = this.memberError(m, err, op).catch((e: unknown) => {
      // Not recorded anywhere (the array failed, or was fenced): the requests that waited see that state.
      trace('md', 'debug', () => `array ${this.set.name}: member ${m.name}: the failure after a ${op} was not recorded: ${describeError(e)}`);
    }).finally(() => {
      if (this.recording === recording) this.recording = null;
    });
    this.recording = recording;
  }

  writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    const s = this.set;
    if (length === 0) return this.io('write zeroes', async () => {});
    return this.io('write zeroes', () => this.ordered(offset, length, () => s.personality.writeZeroes(this.memberSet, offset, length, options)));
  }

  /** The bitmap-ordered write of DESIGN.md §4, shared by write and writeZeroes. */
  private async ordered(offset: number, length: number, op: (waited: boolean) => Promise<void>): Promise<void> {
    const s = this.set;
    const r = s.personality.syncRange(offset, length);
    // The common case takes no detour through the event loop: no sync window in the way, no
    // bitmap block to write first.
    const entered = s.barrier.tryEnter(r.offset, r.offset + r.length) ?? (await s.barrier.enter(r.offset, r.offset + r.length));
    try {
      if (r.length === 0) return await op(false);
      const started = s.bitmap.startWrite(r.offset, r.length);
      if (started) await started;
      try {
        const unplugged = s.bitmap.unplug(r.offset, r.length);
        if (unplugged) await unplugged;
        await op(started !== undefined || unplugged !== undefined);
        // A write the personality completed around a failed member holds only because the other
        // superblocks now record that member as faulty (md holds such writes until they do).
        // When none could record it (a power cut, every disk gone) the array has failed, and
        // the write must not be acknowledged: after reassembly the stale member would count.
        if (s.state === 'failed') {
          throw new MdError('EIO', `a member failed during the write and no superblock could record it`);
        }
      } finally {
        s.bitmap.endWrite(r.offset, r.length);
      }
    } finally {
      s.barrier.exit(entered);
    }
  }

  discard(offset: number, length: number): Promise<void> {
    const s = this.set;
    return this.io('discard', async () => {
      if (length === 0) return;
      const r = s.personality.syncRange(offset, length);
      const entered = await s.barrier.enter(r.offset, r.offset + r.length);
      try {
        if (r.length > 0) await s.bitmap.startDiscard(r.offset, r.length);
        try {
          if (r.length > 0) await s.bitmap.unplug(r.offset, r.length);
          await s.personality.discard(this.memberSet, offset, length);
        } finally {
          if (r.length > 0) s.bitmap.endDiscard(r.offset, r.length);
        }
      } finally {
        s.barrier.exit(entered);
      }
    });
  }

  /** Flushes every member that takes writes; succeeds while one in-sync member flushed. */
  flush(): Promise<void> {
    const s = this.set;
    return this.io('flush', async () => {
      s.checkNotFenced('flush');
      const targets = s.members.filter((m) => m.state === 'in_sync' || m.state === 'rebuilding');
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
      if (ok === 0) throw new IoError(`array ${s.name}: flush: no in-sync member could be flushed`);
    });
  }

  /** Chunks the bitmap has never seen written (Unwritten) are holes; everything else is data. */
  extents(offset: number, length: number, size: number): Extent[] {
    const s = this.set;
    const chunk = s.bitmap.chunkSize;
    const identity = s.personality.syncSize === size && !s.personality.parity;
    if (length === 0) return [];
    if (chunk === 0 || !identity) return [{ length, hole: false, zero: false }];
    const out: Extent[] = [];
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const next = Math.min(end, (Math.floor(pos / chunk) + 1) * chunk);
      const hole = s.bitmap.isUnwritten(pos);
      const last = out[out.length - 1];
      if (last !== undefined && last.hole === hole) last.length += next - pos;
      else out.push({ length: next - pos, hole, zero: false });
      pos = next;
    }
    return out;
  }

  /** Holds new I/O and waits until none is in flight; call the result to let I/O go again. */
  async holdIo(): Promise<() => void> {
    while (this.held) await this.held;
    let release!: () => void;
    this.held = new Promise<void>((resolve) => (release = resolve));
    await this.waitIdle();
    return () => {
      this.held = null;
      release();
    };
  }

  waitIdle(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * What a failed member request does to the member (DESIGN.md §4: a member that fails is failed).
   * - A write, zeroing or flush that failed for any reason (EIO, ENOSPC on a full disk, a closed
   *   or vanished device) leaves the member without data the others hold: it is failed, so reads
   *   stop going to it and the bitmap keeps its chunks for a later re-add. Leaving it in sync
   *   after ENOSPC made reads alternate between new data and stale bytes.
   * - A read fails the member on EIO, a device gone (ESHUTDOWN) or one that stopped answering
   *   (ETIMEDOUT: its deadline passed); EINVAL and ERANGE say the request was wrong, which every
   *   copy would answer alike.
   * - A discard leaves content unspecified anyway (the bitmap marks the range Unwritten): only
   *   EIO fails the member.
   * While the array stops, devices close under the last requests: nothing is failed for that.
   */
  private memberError(m: Member, err: unknown, op: 'read' | 'write' | 'discard'): Promise<void> {
    if (isBlockError(err, 'EFENCED')) {
      this.set.fence(m, err);
      return Promise.resolve();
    }
    if (this.set.stopping && isBlockError(err, 'ESHUTDOWN')) return Promise.resolve();
    const fails = op === 'write' ? true : op === 'read' ? isBlockError(err, 'EIO') || isBlockError(err, 'ESHUTDOWN') || isBlockError(err, 'ETIMEDOUT') : isBlockError(err, 'EIO');
    if (!fails) return Promise.resolve();
    m.errors++;
    return this.membership.failMember(m, err);
  }

  private makeMemberSet(): MemberSet {
    const s = this.set;
    const get = (role: number, writing: boolean): Member => {
      // Fenced: no member request starts, whoever asks (a write still fanning out, the sync pass).
      if (s.state === 'fenced') throw s.fencedError(`role ${role}: ${writing ? 'write' : 'read'}`);
      const m = s.byRole[role];
      if (m === undefined || !(m.state === 'in_sync' || (writing && m.state === 'rebuilding'))) {
        throw new MdError('EIO', `role ${role} has no ${writing ? 'writable' : 'readable'} member`);
      }
      return m;
    };
    // Invariant of MemberSet: a failed request fails the member (superblocks updated) before rejecting.
    const guard = async <T>(role: number, kind: 'read' | 'write' | 'discard', op: (m: Member) => Promise<T>): Promise<T> => {
      const m = get(role, kind !== 'read');
      try {
        return await op(m);
      } catch (err) {
        await this.memberError(m, err, kind);
        throw err;
      }
    };
    return {
      raidDisks: s.identity.raidDisks,
      blockSize: s.blockSize,
      get memberSize() {
        return Math.min(...s.members.map((m) => m.dataBytes));
      },
      state: (role: number): RoleState => {
        const m = s.byRole[role];
        if (m?.state === 'in_sync') return 'in_sync';
        if (m?.state === 'rebuilding') return 'rebuilding';
        return 'missing';
      },
      writeMostly: (role: number): boolean => s.byRole[role]?.writeMostly ?? false,
      read: (role, offset, length) => guard(role, 'read', (m) => m.device.read(m.dataOffset + offset, length)),
      readInto: (role, offset, out) => guard(role, 'read', (m) => readInto(m.device, m.dataOffset + offset, out)),
      write: (role, offset, data, options) => guard(role, 'write', (m) => m.device.write(m.dataOffset + offset, data, options)),
      discard: (role, offset, length) => guard(role, 'discard', (m) => m.device.discard(m.dataOffset + offset, length)),
      writeZeroes: (role, offset, length, options) =>
        guard(role, 'write', (m) => m.device.writeZeroes(m.dataOffset + offset, length, options)),
      readNow: (role, offset, out) => {
        const m = s.byRole[role];
        if (m?.state !== 'in_sync' || m.device.readNow === undefined || s.state === 'fenced') return false;
        try {
          return m.device.readNow(m.dataOffset + offset, out);
        } catch (err) {
          this.failedNow(m, err, 'read');
          return false;
        }
      },
      writeNow: (role, offset, parts) => {
        const m = s.byRole[role];
        if (m === undefined || !(m.state === 'in_sync' || m.state === 'rebuilding') || m.device.writeNow === undefined || s.state === 'fenced') return false;
        try {
          return m.device.writeNow(m.dataOffset + offset, parts);
        } catch (err) {
          this.failedNow(m, err, 'write');
          return false;
        }
      },
    };
  }
}
