// Membership changes of a running array, as mdadm --fail, --remove, --re-add and --add and as md
// does by itself: a member that fails (md_error) is recorded faulty in the others' superblocks;
// a hot spare takes a vacated role; a member that comes back is recovered only where the bitmap
// says it missed writes, when the bitmap can say so; a member whose device reports it can no
// longer be used (deleted, hung) is failed before a request finds out; a remote member that
// dropped out is watched, opened again by its name every returnIntervalMs, and re-added (by the
// bitmap) when it comes back; so is one that could not be reached when the array was assembled.

import { IoError, TimeoutError, isBlockError } from '../../block/errors.js';
import { randomBytes } from '../../common/lazy-builtins.js';
import { describeError, trace } from '../../common/trace.js';
import { levelName } from '../array-status.js';
import { MdError } from '../errors.js';
import { Member } from '../member.js';
import { namesDevice, openMember, probeSuperblock, type MemberSpec, type OpenedMember } from '../member-source.js';
import { FEATURE_RECOVERY_OFFSET, ROLE_FAULTY, SECTOR, formatUuid, readSuperblock, type Superblock } from '../superblock.js';
import { ROLE_HISTORY_UNKNOWN, type ArrayMembers } from './member-set.js';
import type { SyncControl } from './sync-control.js';

/** How often members are asked whether they can still be used (checkHealth). */
const HEALTH_INTERVAL_MS = 2000;

/** A remote member that dropped out, while the array waits for it to come back. */
interface Away {
  /** The attempt running now, until it has an answer (back, refused, or past its deadline). */
  attempt: Promise<void> | undefined;
  /**
   * Until the attempt's open itself has settled too (an opener that ignores the abort may take
   * longer than the deadline): no new attempt starts before, so attempts never overlap.
   */
  busy: Promise<void> | undefined;
  /** Aborts the running attempt's open (its deadline passed, or the array stops). */
  abort: AbortController | undefined;
  /** Its old device is closed (once, at the first attempt). */
  released: boolean;
  /** Why the last attempt did not bring it back: traced when it changes, not at every attempt. */
  lastWhy: string | undefined;
}

/** A remote member that could not be opened at assembly: watched by its name alone. */
interface Unopened extends Away {
  /** Why the open at assembly failed. */
  reason: string;
}

/** A member the return check watches: one that left (its record kept), or one never opened. */
type Watched = { kind: 'left'; member: Member; w: Away } | { kind: 'unopened'; name: string; w: Unopened };

export class Membership {
  /** Roles a member left by failing before run(): run() offers them to spares. */
  private vacatedBeforeRun: number[] = [];
  private healthTimer: NodeJS.Timeout | undefined;
  private returnTimer: NodeJS.Timeout | undefined;
  private checkingHealth = false;
  /** Remote members failed by their device (not by hand), watched until they are back or removed. */
  private readonly away = new Map<Member, Away>();
  /**
   * Remote members that could not be reached when the array was assembled, by name: the array
   * holds no record of them (no device, no superblock) until one opens and is taken back.
   */
  private readonly unopened = new Map<string, Unopened>();

  constructor(
    private readonly set: ArrayMembers,
    private readonly sync: SyncControl,
  ) {}

  /** At run(): roles vacated during assembly go to spares, and members are watched from now on. */
  start(): void {
    for (const role of this.vacatedBeforeRun.splice(0)) this.takeSpare(role);
    this.healthTimer = setInterval(() => void this.checkHealth(), HEALTH_INTERVAL_MS);
    this.healthTimer.unref();
    this.returnTimer = setInterval(() => this.checkReturns(), this.set.tuning.returnIntervalMs);
    this.returnTimer.unref();
  }

  /** Stops watching: no health check and no return attempt starts, the running one is aborted. */
  stop(): void {
    clearInterval(this.healthTimer);
    clearInterval(this.returnTimer);
    for (const w of [...this.away.values(), ...this.unopened.values()]) w.abort?.abort();
  }

  /** Names of the members the array waits for (remote, dropped out): status shows them. */
  awaitedMembers(): ReadonlySet<Member> {
    return new Set(this.away.keys());
  }

  /**
   * Assembly: `name` (a remote member) could not be opened, and the array started without it.
   * From run() on it is watched as a member that dropped out is, by its name alone.
   */
  awaitUnopened(name: string, reason: string): void {
    this.unopened.set(name, { attempt: undefined, busy: undefined, abort: undefined, released: true, lastWhy: undefined, reason });
  }

  /** The members never opened that the array waits for, and why each is not back yet. */
  unopenedMembers(): { name: string; why: string }[] {
    return [...this.unopened].map(([name, w]) => ({ name, why: w.lastWhy ?? w.reason }));
  }

  /** Every return attempt still running has settled (stop() waits for them). */
  async returnsSettled(): Promise<void> {
    await Promise.allSettled([...this.away.values(), ...this.unopened.values()].map((w) => w.attempt));
  }

  /**
   * One round of the return check: every remote member that dropped out (or was never reached)
   * and has no attempt running gets one. A member removed or re-added by hand meanwhile is no
   * longer watched.
   */
  private checkReturns(): void {
    const s = this.set;
    if (s.stopping || s.state === 'fenced' || s.state === 'stopped') return;
    for (const [m, w] of this.away) {
      if (!s.members.includes(m) || m.state !== 'faulty') {
        this.away.delete(m);
        continue;
      }
      this.startAttempt({ kind: 'left', member: m, w });
    }
    for (const [name, w] of this.unopened) this.startAttempt({ kind: 'unopened', name, w });
  }

  private startAttempt(watched: Watched): void {
    const s = this.set;
    const w = watched.w;
    if (w.busy !== undefined) return;
    const name = watched.kind === 'left' ? watched.member.name : watched.name;
    let opening: Promise<unknown> = Promise.resolve();
    const attempt = this.tryReturn(watched, (p) => (opening = p)).then(
      () => {
        if (watched.kind === 'left') this.away.delete(watched.member);
        else this.unopened.delete(watched.name);
      },
      (err: unknown) => {
        // The member's service accepted a higher epoch while it was away: another engine owns
        // the volume now, and this one must stop, not go on degraded (DESIGN.md §8).
        if (isBlockError(err, 'EFENCED')) return s.fence({ name }, err);
        const why = describeError(err);
        if (why !== w.lastWhy) trace('md', 'info', () => `array ${s.name}: member ${name} is not back yet: ${why}`);
        w.lastWhy = why;
      },
    ).finally(() => {
      w.attempt = undefined;
      w.abort = undefined;
    });
    w.attempt = attempt;
    // `opening` is read once the attempt has its answer: by then it holds the attempt's open.
    w.busy = attempt.then(() => opening).then(() => undefined, () => undefined).finally(() => {
      w.busy = undefined;
    });
  }

  /**
   * Opens a watched member again by its name (through the opener) and re-adds it when its
   * superblock shows it may be taken back (returnRefusal); then reAdd's rules decide the
   * recovery: only the chunks the bitmap marked while it was away when the bitmap covers its
   * absence, else every written chunk. The open and the superblock read together have
   * returnTimeoutMs; rejects when it is not back.
   */
  private async tryReturn(watched: Watched, opening: (p: Promise<unknown>) => void): Promise<void> {
    const s = this.set;
    const w = watched.w;
    const name = watched.kind === 'left' ? watched.member.name : watched.name;
    if (!w.released && watched.kind === 'left') {
      // Its dead connection goes first, as reAdd lets a file's lock go before opening it again.
      const m = watched.member;
      if (m.owned) await m.device.close().catch((err: unknown) => s.traceClose(m, err));
      w.released = true;
    }
    const abort = new AbortController();
    w.abort = abort;
    const ms = s.tuning.returnTimeoutMs;
    const probe = (async (): Promise<{ opened: OpenedMember; sb: Superblock }> => {
      const opened = await openMember(name, false, s.opener, abort.signal);
      try {
        return { opened, sb: await readSuperblock(opened.device, opened.name) };
      } catch (err) {
        await opened.device.close().catch((e: unknown) => s.traceClose(opened, e));
        throw err;
      }
    })();
    opening(probe);
    const { opened, sb } = await withDeadline(probe, ms, abort, `member ${name}: not open within ${ms} ms`,
      (late) => void late.opened.device.close().catch((e: unknown) => s.traceClose(late.opened, e)));
    try {
      if (s.stopping || s.state === 'fenced' || s.state === 'stopped') throw new MdError('EBUSY', `array ${s.name}: stopping`);
      const why = this.returnRefusal(watched, sb);
      if (why !== undefined) throw new MdError('ESTALE', `member ${name}: opened again, but not taken back: ${why}`);
      const recovery = await this.reAddOpened(opened, sb, watched.kind === 'left' ? watched.member : undefined);
      // Attached now: status must not list it twice to a listener of the event below.
      if (watched.kind === 'unopened') this.unopened.delete(watched.name);
      const bytesToCopy = this.sync.running?.progress().targetBytes ?? 0;
      trace('md', 'info', () => `array ${s.name}: member ${name} is back: ${recovery === 'bitmap' ? 'bitmap-guided' : 'full'} recovery of ${bytesToCopy} bytes`);
      s.emit({ type: 'member-returned', member: name, recovery, bytesToCopy });
    } catch (err) {
      if (!s.members.some((x) => x.device === opened.device)) await opened.device.close().catch((e: unknown) => s.traceClose(opened, e));
      throw err;
    }
  }

  /**
   * Why a watched member that opened again is not taken back by itself (left for a re-add by
   * hand), or undefined. Always: it is of this array, and its events are not ahead of the
   * array's (ahead: it was written without this array). A member that left: the same device
   * (device UUID) as the one that left. A member never opened, whose device the array cannot
   * compare: no attached member is that device or holds its dev slot, and the role its
   * superblock gives it is vacant (or it held no data role, a spare).
   */
  private returnRefusal(watched: Watched, sb: Superblock): string | undefined {
    const s = this.set;
    if (!sb.setUuid.equals(s.identity.uuid)) return `it belongs to array ${formatUuid(sb.setUuid)} now`;
    if (sb.events > s.events) return `its events ${sb.events} are ahead of the array's ${s.events}: it was written without this array; re-add it by hand to overwrite it`;
    if (watched.kind === 'left') {
      const left = watched.member.sb.deviceUuid;
      return sb.deviceUuid.equals(left) ? undefined : `it is another device (device UUID ${formatUuid(sb.deviceUuid)}, the one that left was ${formatUuid(left)})`;
    }
    const twin = s.members.find((x) => x.sb.deviceUuid.equals(sb.deviceUuid) || (x.state !== 'faulty' && x.sb.devNumber === sb.devNumber));
    if (twin !== undefined) return `member ${twin.name} is ${twin.sb.deviceUuid.equals(sb.deviceUuid) ? 'that device' : `in its dev slot ${sb.devNumber}`} already`;
    const role = sb.devRoles[sb.devNumber];
    const holder = role === undefined ? undefined : s.byRole[role];
    if (holder !== undefined) return `its role ${role} is held by ${holder.name}`;
    return undefined;
  }

  /**
   * Fails members whose device says it can no longer be used though no request failed yet: a
   * member file deleted while in use (writes still land in its unlinked inode, which no restart
   * would find) or a member that stopped answering. md learns of a vanished disk from the block
   * layer; a file gives no such signal, so it is asked.
   */
  private async checkHealth(): Promise<void> {
    if (this.checkingHealth || this.set.stopping) return;
    this.checkingHealth = true;
    try {
      for (const m of this.set.members) {
        if ((m.state !== 'in_sync' && m.state !== 'rebuilding') || m.device.health === undefined) continue;
        // A device another engine took rejects with EFENCED: that fences the array (failMember),
        // as a request meeting it would, instead of failing the member while the array is idle.
        const why = await m.device.health().catch((err: unknown) => (isBlockError(err, 'EFENCED') ? err : (err as Error).message));
        if (why !== undefined && !this.set.stopping) await this.failMember(m, typeof why === 'string' ? new IoError(why) : why).catch((e: unknown) => this.traceUnrecorded(m, e));
      }
    } finally {
      this.checkingHealth = false;
    }
  }

  /** A failure that no superblock could record has left the array failed: nobody awaits it. */
  traceUnrecorded(m: Member, err: unknown): void {
    trace('md', 'error', () => `array ${this.set.name}: failing member ${m.name} could not be recorded: ${describeError(err)}`);
  }

  /**
   * Fails a member (md's md_error): it stops taking I/O, the others' superblocks record it as
   * faulty (0xfffe) with events up. The array runs degraded, or fails when the level cannot run.
   */
  async failMember(m: Member, cause?: unknown): Promise<void> {
    const s = this.set;
    // Another engine took the member: that stops the array, it never degrades it (fence()).
    if (isBlockError(cause, 'EFENCED')) return s.fence(m, cause);
    if (s.state === 'fenced') return;
    if (m.state === 'faulty') return s.lastSuperblockWrite();
    const role = m.role;
    m.failure = cause instanceof Error ? cause.message : 'failed by request';
    if (m.state === 'in_sync' && role !== undefined && s.personality.syncSize > 0 && !s.personality.parity) {
      // As md's raid1_error/raid10_error: the last copy of some data is never failed. The I/O
      // that hit the error fails instead, and the member keeps serving everything else. Parity
      // levels fail it (raid5_error): the array then stops with "cannot continue".
      const working = s.working();
      working[role] = false;
      if (!s.personality.canRun(working)) {
        trace('md', 'info', () => `array ${s.name}: member ${m.name} kept: it holds the last copy of some data (${m.failure})`);
        return;
      }
    }
    trace('md', 'info', () => `array ${s.name}: member ${m.name} failed: ${m.failure}`);
    s.markFaulty(m);
    // A remote member failed by its device (not by hand) has dropped out: it may come back.
    const watched = m.remote && cause !== undefined && s.opener !== undefined;
    if (watched) this.away.set(m, { attempt: undefined, busy: undefined, abort: undefined, released: false, lastWhy: undefined });
    s.emit({ type: 'member-failed', member: m.name, reason: m.failure, watched });
    if (!s.running) {
      if (role !== undefined) this.vacatedBeforeRun.push(role);
      return;
    }
    await s.writeSuperblocks(false);
    if (role !== undefined) this.takeSpare(role);
  }

  /** failMember for a caller that cannot wait (the bitmap): traced if no superblock records it. */
  failInBackground(m: Member, err: Error): void {
    this.set.inBackground(this.failMember(m, err).catch((e: unknown) => this.traceUnrecorded(m, e)));
  }

  /**
   * md's hot spare: a spare takes the vacated role and is rebuilt. Started apart from the caller,
   * which may run inside an application write that a sync window is waiting to drain.
   */
  private takeSpare(role: number): void {
    const s = this.set;
    const spare = s.members.find((x) => x.state === 'spare');
    if (spare !== undefined && s.tuning.autoSync && !s.stopping && s.state !== 'failed') {
      trace('md', 'info', () => `array ${s.name}: spare ${spare.name} takes role ${role}, full recovery`);
      // Nobody awaits it: a spare that cannot be attached stays a spare, and says why.
      s.inBackground(this.attachToRole(spare, role, false)
        .catch((err: unknown) => trace('md', 'error', () => `array ${s.name}: spare ${spare.name} could not take role ${role}: ${describeError(err)}`)));
    }
  }

  /** Fails the member called `name` by hand (mdadm --fail). */
  async fail(name: string): Promise<void> {
    const s = this.set;
    s.checkNotFenced('fail');
    const m = s.requireMember(name);
    if (m.state === 'faulty') throw new MdError('EINVAL', `member ${name}: already faulty`);
    if (m.role !== undefined && m.state === 'in_sync') {
      const working = s.working();
      working[m.role] = false;
      if (!s.personality.canRun(working)) {
        throw new MdError('EBUSY', `member ${name}: failing it would leave ${levelName(s.identity.level)} without a complete copy`);
      }
    }
    await this.failMember(m);
  }

  /** Detaches a faulty or spare member (mdadm --remove) and releases its device if the array opened it. */
  async remove(name: string): Promise<void> {
    const s = this.set;
    s.checkNotFenced('remove');
    // A member never opened is only watched: it stops being watched, no superblock changes.
    if (await this.forgetUnopened(name)) return;
    const m = s.requireMember(name);
    if (m.state === 'in_sync' || m.state === 'rebuilding') {
      throw new MdError('EBUSY', `member ${name}: is ${m.state}; fail it before removing it`);
    }
    s.members.splice(s.members.indexOf(m), 1);
    this.away.get(m)?.abort?.abort();
    this.away.delete(m);
    await s.writeSuperblocks(false);
    if (m.owned) await m.device.close().catch((err: unknown) => s.traceClose(m, err));
  }

  /**
   * Puts a member into a vacant role and starts recovery onto it. `bitmapGuided`: recover only
   * what the bitmap marks (a re-added member); otherwise every written chunk (a new member).
   */
  async attach(m: Member, bitmapGuided: boolean): Promise<void> {
    const s = this.set;
    if (s.state === 'stopped' || s.stopping) throw new MdError('EBUSY', `array ${s.name}: stopped`);
    s.checkNotFenced('attach');
    const role = s.byRole.findIndex((x) => x === undefined);
    if (role < 0) {
      m.state = 'spare';
      m.role = undefined;
      s.members.push(m);
      await s.writeSuperblocks(false);
      return;
    }
    await this.attachToRole(m, role, bitmapGuided);
  }

  private async attachToRole(m: Member, role: number, bitmapGuided: boolean): Promise<void> {
    const s = this.set;
    await this.sync.stopSync();
    m.state = 'rebuilding';
    m.role = role;
    m.recoveryOffset = 0;
    if (!s.members.includes(m)) s.members.push(m);
    s.byRole[role] = m;
    s.roleFilledAt[role] = s.events + 1n;
    s.refreshState();
    await s.writeSuperblocks(false);
    this.sync.startThread('recovery', 0, bitmapGuided);
  }

  /**
   * Re-adds a member that left this array (mdadm --re-add). If the bitmap covers everything it
   * missed (llbitmap.md A5 re-add guard, 004:L78) only the chunks written while it was away are
   * recovered; otherwise everything written. Returns which recovery was chosen.
   */
  async reAdd(spec: MemberSpec): Promise<'bitmap' | 'full'> {
    const s = this.set;
    s.checkNotFenced('re-add');
    const old = await this.attachedAs(spec);
    if (old !== undefined && old.state !== 'faulty') {
      throw new MdError('EBUSY', `member ${old.name}: already ${old.state} in array ${s.name}`);
    }
    const name = typeof spec === 'string' ? spec : spec.name;
    if (this.unopened.has(name) && !(await this.forgetUnopened(name))) throw new MdError('EBUSY', `member ${name}: came back by itself meanwhile`);
    // A return attempt for it (a remote member) is not raced: it ends first.
    const watched = old === undefined ? undefined : this.away.get(old);
    if (watched !== undefined) {
      watched.abort?.abort();
      await watched.attempt;
      if (!s.members.includes(old!)) throw new MdError('EBUSY', `member ${old!.name}: came back by itself meanwhile`);
      this.away.delete(old!);
    }
    // The failed member's descriptor still holds the file's exclusive lock: let it go first. A
    // faulty member takes no I/O, so its record can stay (closed) until the re-add succeeds.
    if (old?.owned && watched?.released !== true) await old.device.close().catch((err: unknown) => s.traceClose(old, err));
    const opened = await openMember(spec, false, s.opener);
    try {
      const sb = await readSuperblock(opened.device, opened.name);
      return await this.reAddOpened(opened, sb, old);
    } catch (err) {
      if (opened.owned && !s.members.some((x) => x.device === opened.device)) await opened.device.close().catch((e: unknown) => s.traceClose(opened, e));
      throw err;
    }
  }

  /**
   * The re-add of a member already opened, whose superblock `sb` was just read; `old` is its
   * record as a faulty member, if the array still has it. Checks and takes the record in one
   * turn of the event loop, so two re-adds of one member (by hand and by the return check)
   * cannot both pass. The caller closes `opened` if this rejects.
   */
  private async reAddOpened(opened: OpenedMember, sb: Superblock, old: Member | undefined): Promise<'bitmap' | 'full'> {
    const s = this.set;
    s.checkNotFenced('re-add');
    if (old !== undefined && (!s.members.includes(old) || old.state !== 'faulty')) {
      throw new MdError('EBUSY', `member ${old.name}: already re-added`);
    }
    if (!sb.setUuid.equals(s.identity.uuid)) {
      throw new MdError('EUUID', `member ${opened.name}: belongs to array ${formatUuid(sb.setUuid)}, expected ${formatUuid(s.identity.uuid)}`);
    }
    if (old !== undefined) s.members.splice(s.members.indexOf(old), 1);
    const role = sb.devRoles[sb.devNumber];
    // Why the bitmap cannot cover what the member missed; undefined when it can.
    const unguided = s.bitmap.kind !== 'llbitmap' ? 'the array has no llbitmap'
      : role === undefined || role >= s.identity.raidDisks ? 'it held no data role'
      : s.byRole[role] !== undefined ? `role ${role} is taken`
      : s.devRoles[sb.devNumber] !== ROLE_FAULTY ? 'the array does not record it as failed'
      : (sb.featureMap & FEATURE_RECOVERY_OFFSET) !== 0 ? 'it was being rebuilt when it left'
      : sb.events > s.events ? `its events ${sb.events} are ahead of the array's ${s.events}`
      : sb.events < (s.roleFilledAt[role] ?? ROLE_HISTORY_UNKNOWN) ? 'its role was filled by another member since it left'
      : undefined;
    const guided = unguided === undefined && role !== undefined;
    trace('md', 'info', () => `array ${s.name}: re-add ${opened.name}: ${guided ? 'bitmap-guided recovery' : `full recovery, ${unguided}`}`);
    const m = new Member(opened.name, opened.device, sb, opened.owned, { writeMostly: opened.writeMostly, remote: opened.remote });
    // It may have left before the array grew.
    await fitMember(m, m.dataOffset + s.identity.usedSectors * SECTOR);
    m.sb = { ...m.sb, dataSize: Math.floor((m.device.size - m.dataOffset) / SECTOR) };
    if (guided) {
      await this.attachToRole(m, role, true);
    } else {
      m.sb = { ...sb, devNumber: s.freeDevNumber(), deviceUuid: randomBytes(16) };
      await this.attach(m, false);
    }
    return guided ? 'bitmap' : 'full';
  }

  /**
   * Adds a new member (mdadm --add): a fresh superblock; it fills a vacant role and every written
   * chunk is rebuilt onto it (Unwritten chunks skipped), or it waits as a spare.
   */
  async add(spec: MemberSpec, options: { force?: boolean } = {}): Promise<void> {
    const s = this.set;
    s.checkNotFenced('add');
    const attached = await this.attachedAs(spec);
    if (attached !== undefined) throw new MdError('EBUSY', `member ${typeof spec === 'string' ? spec : spec.name}: already part of array ${s.name} (as ${attached.name}, ${attached.state})`);
    const name = typeof spec === 'string' ? spec : spec.name;
    if (this.unopened.has(name)) throw new MdError('EBUSY', `member ${name}: a member of array ${s.name} the array waits for (unreachable when it was assembled); re-add it, or remove it first`);
    const opened = await openMember(spec, false, s.opener);
    try {
      const existing = await probeSuperblock(opened);
      if (existing !== undefined && !existing.setUuid.equals(s.identity.uuid) && !options.force) {
        throw new MdError('EEXIST', `member ${opened.name}: carries an md superblock of array ${formatUuid(existing.setUuid)}; use force to overwrite it`);
      }
      const template = s.members[0]?.sb;
      if (template === undefined) throw new MdError('ENODEV', `array ${s.name}: has no member to copy the layout from`);
      const dataSize = Math.floor(opened.device.size / SECTOR) - template.dataOffset;
      if (dataSize < s.identity.usedSectors) {
        throw new MdError('ENOSPC', `member ${opened.name}: expected at least ${(template.dataOffset + s.identity.usedSectors) * SECTOR} bytes, found ${opened.device.size}`);
      }
      const sb: Superblock = { ...template, dataSize, devNumber: s.freeDevNumber(), deviceUuid: randomBytes(16), recoveryOffset: 0, cntCorrectedRead: 0, devflags: 0 };
      await this.attach(new Member(opened.name, opened.device, sb, opened.owned, { writeMostly: opened.writeMostly, remote: opened.remote }), false);
    } catch (err) {
      if (opened.owned && !s.members.some((x) => x.device === opened.device)) await opened.device.close().catch((e: unknown) => s.traceClose(opened, e));
      throw err;
    }
  }

  /**
   * Stops watching `name` if it is a member never opened: its running attempt ends first (so a
   * re-add by hand does not race it). False when it is not watched so, or came back meanwhile.
   */
  private async forgetUnopened(name: string): Promise<boolean> {
    const w = this.unopened.get(name);
    if (w === undefined) return false;
    w.abort?.abort();
    await w.attempt;
    return this.unopened.delete(name);
  }

  /** The attached member `spec` names: by name, or as the same file under another path. */
  private async attachedAs(spec: MemberSpec): Promise<Member | undefined> {
    const name = typeof spec === 'string' ? spec : spec.name;
    for (const m of this.set.members) {
      if (m.name === name || (await namesDevice(spec, m.device))) return m;
    }
    return undefined;
  }
}

/** Makes `m`'s device hold at least `bytes`, growing it where it can. */
export async function fitMember(m: Member, bytes: number): Promise<void> {
  if (m.device.size >= bytes) return;
  if (!m.device.grow) throw new MdError('ENOSPC', `member ${m.name}: expected at least ${bytes} bytes, found ${m.device.size} and the device cannot grow`);
  try {
    await m.device.grow(bytes);
  } catch (err) {
    throw new MdError('ENOSPC', `member ${m.name}: could not grow to ${bytes} bytes: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * `p`, or a rejection with ETIMEDOUT after `ms`, or with EIO when `abort` is aborted first (the
 * array stops). Either way `abort` ends aborted and a late result is handed to `late`, which
 * releases it: nothing opened is left behind.
 */
async function withDeadline<T>(p: Promise<T>, ms: number, abort: AbortController, message: string, late: (v: T) => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let expired = false;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      expired = true;
      // Rejected before the abort below, whose listener would say "aborted" instead.
      reject(new TimeoutError(message));
      abort.abort();
    }, ms);
    abort.signal.addEventListener('abort', () => reject(new IoError(`${message}: aborted`)), { once: true });
  });
  p.then((v) => {
    if (expired || abort.signal.aborted) late(v);
  }, () => undefined);
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
