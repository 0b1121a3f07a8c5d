// Sync orchestration of a running array: which pass runs (resync after an unclean stop,
// recovery onto a re-added or new member, check and repair on demand, proactive parity), from
// where, guided by the bitmap or not, how far it is expected to go, where it checkpoints, and
// what the array records when it ends. One pass at a time (md's sync_thread); the pass itself is
// sync-thread.ts.

import { describeError, trace } from '../../common/trace.js';
import { levelName } from '../array-status.js';
import { MdError } from '../errors.js';
import type { MemberSet } from '../personality.js';
import { SyncThread, type SyncProgress, type SyncSpeed, type SyncSummary } from '../sync-thread.js';
import type { SyncMode } from '../types.js';
import type { WriteIntentBitmap } from '../write-intent-bitmap.js';
import type { ArrayMembers } from './member-set.js';

export class SyncControl {
  private thread: SyncThread | undefined;
  private done: Promise<SyncSummary | undefined> = Promise.resolve(undefined);
  /** The summary of the last pass that ended. */
  lastSync: SyncSummary | null = null;
  /** Bytes synced by the passes that ended since the array started. */
  syncedBefore = 0;
  /** Mismatched sectors the last check or repair found (md mismatch_cnt). */
  mismatchCount = 0;
  /** When the application's request count (ArrayMembers.appIos) last moved, as the sync thread saw it. */
  private readonly appActivity = new AppActivity(APP_IDLE_MS);

  constructor(
    private readonly set: ArrayMembers,
    /** The personality's view of the members, for the pass's windows (io-path.ts makes it). */
    private readonly memberSet: () => MemberSet,
  ) {}

  /** The pass running now, if any. */
  get running(): SyncThread | undefined {
    return this.thread;
  }

  /** A maybeStart is queued: a pass taking up every chunk of a big array asks once per chunk. */
  private startQueued = false;

  /** Called by the bitmap when chunks need syncing; md waits until the array is whole again. */
  onSyncRequested(): void {
    if (this.set.resyncFrom === null) this.set.resyncFrom = 0;
    if (!this.set.tuning.autoSync || this.startQueued) return;
    this.startQueued = true;
    queueMicrotask(() => {
      this.startQueued = false;
      this.maybeStart();
    });
  }

  /** Starts the pass the array owes, if any and none runs: recovery first, else a resync. */
  maybeStart(): void {
    const s = this.set;
    if (!s.tuning.autoSync || this.thread !== undefined || s.stopping || s.state === 'stopped' || s.state === 'failed' || s.state === 'fenced') return;
    // A bitmap asks for a sync while it loads, before the array holds it: run() starts it.
    if ((s.bitmap as WriteIntentBitmap | undefined) === undefined) return;
    if (s.personality.syncSize === 0) return;
    const rebuilding = s.members.filter((m) => m.state === 'rebuilding');
    if (rebuilding.length > 0) {
      const from = Math.min(...rebuilding.map((m) => this.syncOffsetOfMember(m.recoveryOffset)));
      // A member that was rebuilding when the array stopped was a replacement unless proven otherwise.
      this.startThread('recovery', from, false);
    } else if (s.resyncFrom !== null && !s.degraded) {
      this.startThread('resync', s.resyncFrom, true);
    }
  }

  /** Sync-space position from which a member's recovery resumes (conservative). */
  private syncOffsetOfMember(memberOffset: number): number {
    const p = this.set.personality;
    return p.syncOffsetOfMember ? p.syncOffsetOfMember(memberOffset) : 0;
  }

  private memberOffsetOfSync(syncOffset: number): number {
    const p = this.set.personality;
    return p.memberOffsetOfSync ? p.memberOffsetOfSync(syncOffset) : 0;
  }

  /**
   * Proactive parity (llbitmap.md A5, seed 003): parity is built in the background for chunks
   * never written (Unwritten → NeedSyncUnwritten → SyncingUnwritten → CleanUnwritten), so later
   * first writes there need no lazy resync. Parity levels only.
   */
  proactiveSync(): void {
    const s = this.set;
    if (!s.personality.parity) {
      throw new MdError('ENOTSUP', `array ${s.name}: proactive sync builds parity: expected raid4/5/6, found ${levelName(s.identity.level)}`);
    }
    if (s.state === 'stopped' || s.stopping) throw new MdError('EBUSY', `array ${s.name}: stopped`);
    s.bitmap.proactiveSync();
    // Start the pass now rather than from the bitmap's queued request, so waitSync() sees it.
    this.maybeStart();
  }

  /**
   * Starts a sync pass (md's sync_action). check and repair need a whole array; resync and
   * recovery normally start by themselves.
   */
  startSync(mode: SyncMode): SyncProgress {
    const s = this.set;
    if (s.personality.syncSize === 0) throw new MdError('ENOTSUP', `array ${s.name}: ${levelName(s.identity.level)} has no redundancy to sync`);
    if (this.thread !== undefined) throw new MdError('EBUSY', `array ${s.name}: a ${this.thread.mode} is already running`);
    if (s.state === 'stopped' || s.stopping) throw new MdError('EBUSY', `array ${s.name}: stopped`);
    s.checkNotFenced(mode);
    if ((mode === 'check' || mode === 'repair' || mode === 'resync') && s.degraded) {
      throw new MdError('EBUSY', `array ${s.name}: cannot ${mode} while degraded`);
    }
    if (mode === 'recovery' && !s.members.some((m) => m.state === 'rebuilding')) {
      throw new MdError('EINVAL', `array ${s.name}: no member to recover onto`);
    }
    // Only a resync trusts the bitmap to skip written chunks; check/repair scan everything written.
    return this.startThread(mode, mode === 'resync' ? (s.resyncFrom ?? 0) : 0, mode === 'resync').progress();
  }

  /** Starts a pass now (the caller made sure none runs). */
  startThread(mode: SyncMode, from: number, bitmapGuided: boolean): SyncThread {
    const s = this.set;
    const thread = new SyncThread({
      array: s.name,
      mode,
      from,
      bitmapGuided,
      // Gaps between marked chunks join their window only where that writes nothing that agrees.
      bridge: mode === 'resync' && bitmapGuided && !s.personality.parity,
      syncSize: s.personality.syncSize,
      targetBytes: this.target(mode, from, bitmapGuided),
      bitmap: s.bitmap,
      speed: (): SyncSpeed => ({ min: s.tuning.syncSpeedMin, max: s.tuning.syncSpeedMax }),
      appBusy: () => this.appActivity.busy(s.appIos, performance.now()),
      lock: (start, end) => s.barrier.lock(start, end),
      window: (m, off, len) => s.personality.syncWindow(this.memberSet(), m, off, len),
      hasTargets: () => mode !== 'recovery' || s.members.some((x) => x.state === 'rebuilding'),
      checkpoint: (pos) => this.checkpoint(mode, pos),
    });
    this.thread = thread;
    if (mode === 'recovery' && !bitmapGuided) s.bitmap.startRecovery();
    const rebuilding = mode === 'recovery' ? s.members.filter((m) => m.state === 'rebuilding') : [];
    this.done = thread.run().then(
      (summary) => this.finished(thread, summary),
      (err: unknown) => this.finished(thread, thread.summary(false, err instanceof Error ? err.message : String(err))),
    ).then((summary) => {
      s.emit({ type: 'sync-ended', summary, members: rebuilding.map((m) => m.name) });
      return summary;
    });
    return thread;
  }

  /**
   * Bytes a pass from `from` is expected to sync, from the bitmap as it starts: a resync the
   * NeedSync chunks, a re-add what was written while the member was away, anything else every
   * written chunk. Without a bitmap, everything from `from`.
   */
  private target(mode: SyncMode, from: number, bitmapGuided: boolean): number {
    const s = this.set;
    const rest = s.personality.syncSize - from;
    const chunk = s.bitmap.chunkSize;
    if (chunk === 0) return rest;
    const c = s.bitmap.counts();
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
      for (const m of this.set.members) if (m.state === 'rebuilding') m.recoveryOffset = this.memberOffsetOfSync(pos);
      await this.set.writeSuperblocks(false);
    } else if (mode === 'resync') {
      this.set.resyncFrom = pos;
    }
  }

  private async finished(thread: SyncThread, summary: SyncSummary): Promise<SyncSummary> {
    const s = this.set;
    this.lastSync = summary;
    this.syncedBefore += summary.bytesSynced;
    if (s.state === 'fenced') {
      // Nothing is recorded: the members are another engine's now.
      if (this.thread === thread) this.thread = undefined;
      return summary;
    }
    if (thread.mode === 'check' || thread.mode === 'repair') this.mismatchCount = summary.mismatches;
    if (summary.complete) {
      if (thread.mode === 'recovery') {
        for (const m of s.members) {
          if (m.state === 'rebuilding') {
            m.state = 'in_sync';
            m.recoveryOffset = 0;
          }
        }
        s.refreshState();
        // The pass made the copies of every chunk it took equal (mirror-io.ts syncCopies) and
        // left them Clean: a resync owed from an unclean stop has nothing left unless a chunk
        // was marked since. Without this the resync runs anyway, finds nothing, and its "0 B"
        // is what the status shows of a recovery that copied the member's missing chunks.
        if (s.resyncFrom !== null && s.bitmap.chunkSize > 0 && this.syncOwedChunks() === 0) s.resyncFrom = null;
        // In sync in memory either way; superblocks that could not say so keep the recovery
        // offset, and the next assembly recovers from it again: safe, so only traced.
        await s.writeSuperblocks(false).catch((err: unknown) =>
          trace('md', 'error', () => `array ${s.name}: recovery complete, but the superblocks could not record it: ${describeError(err)}`));
      } else if (thread.mode === 'resync' || thread.mode === 'repair') {
        // A write during the pass may have left a chunk NeedSync behind its position: then
        // another pass follows (md sets MD_RECOVERY_NEEDED again), else nothing is owed.
        s.resyncFrom = this.syncOwedChunks() > 0 ? 0 : null;
      }
    } else if (thread.mode === 'resync') {
      s.resyncFrom = summary.position;
    }
    if (this.thread === thread) this.thread = undefined;
    // A recovery that completed may leave a resync owed (bitmap NeedSync requested meanwhile).
    if (!s.stopping) this.maybeStart();
    return summary;
  }

  /** Chunks the bitmap holds for a resync once no pass runs (a pass ends its Syncing ones). */
  private syncOwedChunks(): number {
    const c = this.set.bitmap.counts();
    return c.needSync + c.needSyncUnwritten;
  }

  /** Resolves when the current sync pass (if any) ends, with its summary. */
  async waitSync(): Promise<SyncSummary | undefined> {
    // A failure being handled may be about to start a recovery onto a spare.
    await Promise.allSettled([...this.set.background]);
    for (;;) {
      const t = this.thread;
      const s = await this.done;
      if (this.thread === undefined || this.thread === t) return s;
    }
  }

  /** Stops the sync pass at its next window boundary (position kept for resume). */
  async stopSync(): Promise<void> {
    const t = this.thread;
    if (t === undefined) return;
    t.stop();
    await this.done;
  }

  /** Stops the pass without waiting (abandon: the array goes away as a crash would). */
  abandon(): void {
    this.thread?.stop();
  }
}

/** The application is busy while it made a request within this long: the sync pass keeps to sync_speed_min. */
const APP_IDLE_MS = 500;

/**
 * Whether the application made a request in the last `idleMs`, from a count of its requests read
 * when asked (the sync thread asks between windows and in its pauses of at most 100 ms): a
 * count that moved since the last question means a request since then, taken as now.
 */
export class AppActivity {
  #seen = 0;
  #movedAt = -Infinity;

  constructor(private readonly idleMs: number) {}

  busy(count: number, now: number): boolean {
    if (count !== this.#seen) {
      this.#seen = count;
      this.#movedAt = now;
    }
    return now - this.#movedAt < this.idleMs;
  }
}
