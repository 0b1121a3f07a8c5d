// The member set of a running array: its members by role, their states, the dev_roles and
// events the superblocks carry, the array's state (active, degraded, failed, stopped), and the
// superblock updates that record changes to them. The other parts of an array (membership.ts,
// sync-control.ts, io-path.ts, md-array.ts) share this one object and change the members only
// through it, so what the superblocks say and what the array believes never part.

import { BlockError, FencedError, isBlockError } from '../../block/errors.js';
import { describeError, trace } from '../../common/trace.js';
import type { ArrayEvent, ArrayEventListener } from '../array-events.js';
import { MdError } from '../errors.js';
import type { Member } from '../member.js';
import type { MemberOpener } from '../member-source.js';
import type { ArrayState } from '../array-status.js';
import { composeSuperblock, devRolesFor, nextEvents, type ArrayIdentity } from '../member-superblock.js';
import type { Personality } from '../personality.js';
import { MAX_DEV_LIMIT, RESYNC_NONE, ROLE_FAULTY, SECTOR, writeSuperblock } from '../superblock.js';
import { SyncBarrier } from '../sync-barrier.js';
import { DEFAULT_TUNING } from '../tuning.js';
import type { WriteIntentBitmap } from '../write-intent-bitmap.js';

/** roleFilledAt for a role whose history is unknown: above any events a member can carry. */
export const ROLE_HISTORY_UNKNOWN = 1n << 64n;

export interface ArrayTuning {
  /** KiB/s the sync thread keeps even under application I/O (md sync_speed_min). Default: tuning.ts. */
  syncSpeedMin?: number;
  /** KiB/s the sync thread never exceeds (md sync_speed_max). Default: tuning.ts. */
  syncSpeedMax?: number;
  /**
   * Start resync/recovery by itself when needed, and let a parity level's writes build the parity
   * of the bitmap chunks they touch (default true). Off, parity is built only by passes started
   * by hand and by writes that compute it from every data block of their stripes.
   */
  autoSync?: boolean;
  /**
   * How often (ms) the array tries to open again a remote member that dropped out, to re-add it
   * (membership.ts, the return check). Default 5000.
   */
  returnIntervalMs?: number;
  /** How long (ms) one such attempt may take to open the member and read its superblock. Default 15000. */
  returnTimeoutMs?: number;
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
  /** Opens members named by URI (re-add, add, the return check); files are opened as files. */
  opener?: MemberOpener | undefined;
}

export class ArrayMembers {
  /** The same on every member; usedSectors changes only in grow(). */
  readonly identity: ArrayIdentity;
  /** Replaced only by grow(), while every I/O is held. */
  personality: Personality;
  /** Set once by attachBitmap before run; NoBitmap for `bitmap: none`. */
  bitmap!: WriteIntentBitmap;
  readonly tuning: Required<ArrayTuning>;
  readonly blockSize: number;
  /** Every member attached (in_sync, rebuilding, spare, faulty until removed). */
  readonly members: Member[];
  /** byRole[r] = the in_sync or rebuilding member in role r, if any. */
  readonly byRole: (Member | undefined)[];
  devRoles: number[];
  events: bigint;
  state: ArrayState = 'active';
  /**
   * Why the array is fenced (non-null iff state is 'fenced'): a member's device answered that
   * another engine took it with a higher attach epoch. From then on nothing is written to any
   * member and every request rejects (fence()).
   */
  fencedBy: string | null = null;
  /** Opens members named by URI (re-add, add, the return check). */
  readonly opener: MemberOpener | undefined;
  /** Who hears the array's events (md-array.ts: onEvent). */
  readonly listeners = new Set<ArrayEventListener>();
  /** Set by MdArray: stops what would go on writing (the sync pass, the member watchers). */
  onFenced: () => void = () => {};
  /**
   * The personality's verdict on the roles in sync, asked on every write (the bitmap's
   * transitions depend on it), so kept rather than recomputed: it changes only where a member
   * changes role or state, and each of those places calls refreshState().
   */
  degraded: boolean;
  /**
   * False until run(): during assembly nothing is written to any member (md writes nothing
   * before do_md_run), so a member failed then is recorded in memory and run() writes it.
   */
  running = false;
  stopping = false;
  /** Sync-space byte a resync must start from, or null when none is owed. */
  resyncFrom: number | null;
  /** Orders application writes against sync windows (sync-barrier.ts). */
  readonly barrier = new SyncBarrier();
  /**
   * Application requests so far: the sync thread yields while this moves (SyncControl's
   * appBusy). A count, not a time: a clock read is 60 ns, 1% of a 4 KiB request's CPU.
   */
  appIos = 0;
  /**
   * roleFilledAt[r]: events when role r last got a member. A member that left role r can be
   * re-added with bitmap-guided recovery only if its events are at least this (nobody else held
   * the role since, so the array stayed degraded and the bitmap never cleaned a bit it needs).
   * ROLE_HISTORY_UNKNOWN: the history is unknown, always full recovery.
   */
  roleFilledAt: bigint[] = [];
  /** Member failures and spare takeovers nobody awaits, still in flight (stop waits for them). */
  readonly background = new Set<Promise<void>>();
  private sbWrite: Promise<void> = Promise.resolve();

  constructor(setup: ArraySetup) {
    this.identity = setup.identity;
    this.personality = setup.personality;
    this.members = [...setup.members];
    this.devRoles = [...setup.devRoles];
    this.events = setup.events;
    this.resyncFrom = setup.resyncFrom;
    this.tuning = {
      syncSpeedMin: setup.tuning.syncSpeedMin ?? DEFAULT_TUNING.syncSpeedMinKiB,
      syncSpeedMax: setup.tuning.syncSpeedMax ?? DEFAULT_TUNING.syncSpeedMaxKiB,
      autoSync: setup.tuning.autoSync ?? true,
      returnIntervalMs: setup.tuning.returnIntervalMs ?? DEFAULT_TUNING.returnIntervalMs,
      returnTimeoutMs: setup.tuning.returnTimeoutMs ?? DEFAULT_TUNING.returnTimeoutMs,
    };
    this.opener = setup.opener;
    this.blockSize = Math.max(512, ...setup.members.map((m) => m.device.blockSize));
    this.byRole = new Array<Member | undefined>(setup.identity.raidDisks).fill(undefined);
    for (const m of this.members) {
      if (m.role !== undefined && (m.state === 'in_sync' || m.state === 'rebuilding')) this.byRole[m.role] = m;
    }
    this.degraded = this.personality.isDegraded(this.working());
  }

  get name(): string {
    return this.identity.name;
  }

  /** Which roles hold an in-sync member. */
  working(): boolean[] {
    return Array.from({ length: this.identity.raidDisks }, (_, r) => this.byRole[r]?.state === 'in_sync');
  }

  refreshState(): void {
    const working = this.working();
    const wasDegraded = this.degraded;
    this.degraded = this.personality.isDegraded(working);
    if (wasDegraded && !this.degraded && (this.bitmap as WriteIntentBitmap | undefined) !== undefined) this.bitmap.wholeAgain();
    if (this.state === 'stopped' || this.state === 'fenced') return;
    if (!this.personality.canRun(working)) this.state = 'failed';
    else this.state = this.degraded ? 'degraded' : 'active';
  }

  /** Tells every listener; a listener that throws is traced, never lets the array fail. */
  emit(e: ArrayEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch (err) {
        trace('md', 'error', () => `array ${this.name}: a ${e.type} listener failed: ${describeError(err)}`);
      }
    }
  }

  /**
   * The array stops here (DESIGN.md §8): `m`'s device was taken by another engine. Unlike a
   * failure this never degrades the array: the member is not failed, no superblock or bitmap
   * records anything (the other engine owns them now), the sync pass stops, and every request
   * from now on rejects; so does every request in flight that had not completed.
   */
  fence(m: { name: string }, err: unknown): void {
    if (this.state === 'fenced' || this.state === 'stopped') return;
    const reason = `member ${m.name}: ${err instanceof Error ? err.message : String(err)}`;
    this.state = 'fenced';
    this.fencedBy = reason;
    trace('md', 'error', () => `array ${this.name}: fenced, no write is acknowledged from now on: ${reason}`);
    this.onFenced();
    this.emit({ type: 'fenced', member: m.name, reason });
  }

  /** The error every request and every change meets once the array is fenced. */
  fencedError(what: string): FencedError {
    return new FencedError(`array ${this.name}: ${what}: the array is fenced (${this.fencedBy ?? 'fenced'})`);
  }

  /** Throws fencedError when fenced: what writes nothing must not start. */
  checkNotFenced(what: string): void {
    if (this.state === 'fenced') throw this.fencedError(what);
  }

  /** The member called `name` (its path), if attached. */
  member(name: string): Member | undefined {
    return this.members.find((m) => m.name === name);
  }

  requireMember(name: string): Member {
    const m = this.member(name);
    if (m === undefined) {
      throw new MdError('EINVAL', `member ${name}: not part of array ${this.name} (members: ${this.members.map((x) => x.name).join(', ')})`);
    }
    return m;
  }

  markFaulty(m: Member): void {
    if (m.role !== undefined && this.byRole[m.role] === m) this.byRole[m.role] = undefined;
    m.state = 'faulty';
    m.role = undefined;
    this.refreshState();
  }

  /** A dev_number no attached member uses and no departed member is recorded under. */
  freeDevNumber(): number {
    const used = new Set(this.members.map((m) => m.sb.devNumber));
    for (let i = 0; i < this.devRoles.length; i++) {
      if (!used.has(i) && this.devRoles[i] !== ROLE_FAULTY) return i;
    }
    const next = Math.max(this.devRoles.length, ...[...used].map((u) => u + 1));
    if (next >= MAX_DEV_LIMIT) throw new MdError('ENOSPC', `array ${this.name}: all ${MAX_DEV_LIMIT} device slots are used`);
    return next;
  }

  /** Runs `p` in the background (nobody awaits it); stop() waits for it to settle. */
  inBackground(p: Promise<unknown>): void {
    const settled: Promise<void> = p.then(() => undefined, () => undefined).finally(() => this.background.delete(settled));
    this.background.add(settled);
  }

  /** A member device closed on the way out; it takes no I/O any more, whatever close says. */
  traceClose(m: { name: string }, err: unknown): void {
    trace('md', 'debug', () => `array ${this.name}: closing ${m.name}: ${describeError(err)}`);
  }

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
        // A fenced array's members belong to another engine: not one more byte goes to them.
        this.checkNotFenced('superblock update');
        this.events = nextEvents(this.name, this.members, this.events, clean);
        this.devRoles = devRolesFor(this.members, this.devRoles.length, this.identity.raidDisks);
        const targets = this.members.filter((m) => m.state !== 'faulty');
        const results = await Promise.allSettled(targets.map(async (m) => {
          const sb = composeSuperblock(this.identity, m, this.events, this.devRoles, this.resyncOffsetField(clean));
          // A superblock that says "clean" vouches for every write before it: those must be durable
          // first (md_super_write's REQ_PREFLUSH), or a power cut could leave copies that differ
          // under a superblock that owes no resync.
          if (clean) await m.device.flush();
          // Fenced while flushing: the superblock stays as it was.
          this.checkNotFenced('superblock update');
          await writeSuperblock(m.device, sb);
          m.sb = sb;
        }));
        // A fence wins over any failure beside it: no member is marked faulty for it.
        const fencedAt = results.findIndex((r) => r.status === 'rejected' && isBlockError(r.reason, 'EFENCED'));
        if (fencedAt >= 0) {
          const reason = (results[fencedAt] as PromiseRejectedResult).reason as Error;
          this.fence(targets[fencedAt] as Member, reason);
          throw reason;
        }
        this.checkNotFenced('superblock update');
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
      if ((this.bitmap as WriteIntentBitmap | undefined) !== undefined && this.state !== 'failed') await this.bitmap.updateSb();
    };
    const next = this.sbWrite.then(run, run);
    this.sbWrite = next.catch(() => undefined);
    return next;
  }

  /** The superblock update last started (resolves when it is done, whatever its outcome). */
  lastSuperblockWrite(): Promise<void> {
    return this.sbWrite;
  }

  /**
   * Throws EOVERFLOW when the superblocks could not record one more change (events at their
   * end): a membership or size change is refused before it is made (member-superblock.ts).
   */
  checkChangeRecordable(): void {
    nextEvents(this.name, this.members, this.events, false);
  }
}
