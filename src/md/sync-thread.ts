// The sync thread (md's md_do_sync): one pass of resync, recovery, check or repair over the sync
// space, window by window. It asks the bitmap what it may skip, takes the sync barrier around
// each window, checkpoints every daemon_sleep seconds so a restart resumes, and throttles itself
// between sync_speed_min and sync_speed_max so application I/O keeps most of the bandwidth.
//
// Skipping rules (llbitmap.md A4/A5): resync and a bitmap-guided recovery (re-add) sync only
// what startSync says; a full recovery (new member), check and repair skip only never-written
// chunks and sync everything else.

import type { SyncWindowResult } from './personality.js';
import { describeError, trace } from '../common/trace.js';
import type { SyncMode } from './types.js';
import type { WriteIntentBitmap } from './write-intent-bitmap.js';

/** Largest step in bytes: big enough for throughput, small enough to keep app I/O waits short. */
export const MAX_WINDOW = 1024 * 1024;
/** How often the speed estimate restarts (md's SYNC_MARKS idea). */
const MARK_INTERVAL_MS = 3000;
/**
 * Windows in flight at once: their reads, compares and writes overlap (md keeps many in flight
 * too). While the application is busy the pass is held to sync_speed_min and keeps one: more only
 * burst ahead of the throttle (it counts a window once done), and their blocks pile on the
 * application's. A new raid5's lazy build beside 1 MiB reads and writes (`llraid serve`, fio)
 * raised the engine's peak RSS from 66 to 69 MiB with four in flight.
 */
const DEPTH = 4;
/**
 * A bitmap-guided pass syncs a gap of up to this many bytes between two marked chunks with them,
 * in one window: a window costs a fixed part (the barrier, two reads, a compare, the round trips)
 * that outweighs reading a few more chunks. On tmpfs a 64 KiB window costs about 80 us of which
 * 12 us is the bytes; on a disk a seek costs more than 256 KiB of transfer. Syncing a chunk the
 * bitmap does not mark is harmless: its copies already agree, or it was never written. Only where
 * a window reads every copy and writes nothing that agrees (a resync of mirrors, SyncHost.bridge):
 * a recovery would copy the gap to the new member, a parity resync would rebuild its parity. The
 * bytes are counted apart (bytesBridged), never as synced.
 */
export const BRIDGE = 256 * 1024;
/**
 * Longest single pause while application I/O is active: the pass looks again this often, so it
 * returns to full speed soon after the application goes quiet.
 */
const BUSY_PAUSE_MS = 100;

export interface SyncSpeed {
  /** KiB/s. */
  min: number;
  max: number;
}

export interface SyncHost {
  /** The array's name, for trace lines. */
  array?: string;
  mode: SyncMode;
  /** Sync-space byte to start from (a checkpoint when resuming). */
  from: number;
  /** Sync only what bitmap.startSync returns true for (resync, re-add). */
  bitmapGuided: boolean;
  /** A guided pass may take short gaps between owed chunks into their window (BRIDGE). */
  bridge?: boolean;
  syncSize: number;
  /** Bytes the pass expects to sync (reported with progress). */
  targetBytes: number;
  bitmap: WriteIntentBitmap;
  speed(): SyncSpeed;
  /** Whether the application did I/O very recently (md's is_mddev_idle, inverted). */
  appBusy(): boolean;
  /** Takes the sync barrier over [start, end); resolves with its release. */
  lock(start: number, end: number): Promise<() => void>;
  window(mode: SyncMode, offset: number, length: number): Promise<SyncWindowResult>;
  /** False once there is nothing left to sync onto (a recovery target failed). */
  hasTargets(): boolean;
  /** Persist the position (superblock recovery_offset / resync position). */
  checkpoint(position: number): Promise<void>;
}

export interface SyncProgress {
  mode: SyncMode;
  /** Sync-space byte the pass has reached. */
  position: number;
  size: number;
  /** Percent of the sync space, 0..100, one decimal. */
  percent: number;
  /**
   * Bytes synced per second over the last few seconds (md's sync_speed): skipped chunks cost
   * nothing, so this is the rate sync_speed_min/max bound, not the position's.
   */
  speedKiBs: number;
  /** Seconds until targetBytes are synced at that speed; null until a speed is known. */
  etaSeconds: number | null;
  /** Bytes synced so far (windows run; skipped bytes excluded). */
  bytesSynced: number;
  /** Bytes the pass expects to sync: what the bitmap marked for it when it started. */
  targetBytes: number;
  /** Bytes written to members so far (recovery: to the rebuilding ones). */
  bytesWritten: number;
  /** Whether only what the bitmap marks is synced (resync, re-add) or every written chunk. */
  bitmapGuided: boolean;
  /** When the pass started (ms since the epoch). */
  startedAt: number;
}

export interface SyncSummary {
  mode: SyncMode;
  complete: boolean;
  /** Where the pass stopped (syncSize when complete). */
  position: number;
  /** Bytes actually synced (windows run), skipped bytes excluded. */
  bytesSynced: number;
  bytesSkipped: number;
  /** Bytes the bitmap did not mark, read with their neighbours in one window (BRIDGE). */
  bytesBridged: number;
  /** Bytes written to members. */
  bytesWritten: number;
  /** Sectors that differed between copies. */
  mismatches: number;
  seconds: number;
  /** Sync-space bytes of the array: the "of how many" of bytesSynced. */
  size: number;
  /** ms since the epoch. */
  startedAt: number;
  finishedAt: number;
  /** Why the pass ended early, when it did. */
  error?: string;
}

export class SyncThread {
  readonly mode: SyncMode;
  private readonly host: SyncHost;
  private position: number;
  private stopRequested = false;
  private bytesSynced = 0;
  /** Windows this pass ran (started), whether or not they finished. */
  private windows = 0;
  private bytesSkipped = 0;
  private bytesBridged = 0;
  private bytesWritten = 0;
  private mismatches = 0;
  private readonly started = performance.now();
  private readonly startedAt = Date.now();
  private markTime = performance.now();
  private lastSpeed = 0;
  /** Bytes synced at the last mark: the throttle counts I/O done, not bytes skipped (md's io_sectors). */
  private markIo = 0;
  private lastCheckpoint = performance.now();
  /** Ends the throttle's pause early: set while it sleeps, called by stop(). */
  private wake: (() => void) | undefined;

  constructor(host: SyncHost) {
    this.host = host;
    this.mode = host.mode;
    this.position = Math.min(host.from, host.syncSize);
  }

  /** Asks the pass to end at its next window boundary (a throttle pause ends at once). */
  stop(): void {
    this.stopRequested = true;
    this.wake?.();
  }

  /** A throttle pause that stop() cuts short: stopping never waits out a pause of up to 500 ms. */
  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    }).finally(() => {
      this.wake = undefined;
    });
  }

  progress(): SyncProgress {
    const size = this.host.syncSize;
    const speed = this.currentSpeed();
    return {
      mode: this.mode,
      position: this.position,
      size,
      percent: size === 0 ? 100 : Math.floor((this.position / size) * 1000) / 10,
      speedKiBs: Math.round(speed),
      etaSeconds: speed > 0 ? Math.ceil(Math.max(0, this.host.targetBytes - this.bytesSynced) / 1024 / speed) : null,
      bytesSynced: this.bytesSynced,
      targetBytes: this.host.targetBytes,
      bytesWritten: this.bytesWritten,
      bitmapGuided: this.host.bitmapGuided,
      startedAt: this.startedAt,
    };
  }

  summary(complete: boolean, error?: string): SyncSummary {
    return {
      mode: this.mode,
      complete,
      position: this.position,
      bytesSynced: this.bytesSynced,
      bytesSkipped: this.bytesSkipped,
      bytesBridged: this.bytesBridged,
      bytesWritten: this.bytesWritten,
      mismatches: this.mismatches,
      seconds: (performance.now() - this.started) / 1000,
      size: this.host.syncSize,
      startedAt: this.startedAt,
      finishedAt: Date.now(),
      ...(error === undefined ? {} : { error }),
    };
  }

  /** KiB synced per second since the last mark (as the throttle measures it), for the ETA. */
  private currentSpeed(): number {
    const dt = (performance.now() - this.markTime) / 1000;
    if (dt < 0.05) return this.lastSpeed;
    return (this.bytesSynced - this.markIo) / 1024 / Math.max(dt, 0.001);
  }

  /** Every daemon_sleep seconds: checkpoint the bitmap and the superblocks at the position. */
  private async maybeCheckpoint(): Promise<void> {
    if (performance.now() - this.lastCheckpoint < this.host.bitmap.daemonSleep * 1000) return;
    await this.host.bitmap.condEndSync(this.position);
    await this.host.checkpoint(this.position);
    this.lastCheckpoint = performance.now();
  }

  /**
   * md's throttle: above max always wait; above min wait while the application is busy.
   * Speed here is bytes actually synced per second; skipped ranges cost nothing.
   */
  private async throttle(): Promise<void> {
    for (;;) {
      if (this.stopRequested) return;
      const now = performance.now();
      if (now - this.markTime > MARK_INTERVAL_MS) {
        this.lastSpeed = this.currentSpeed();
        this.markTime = now;
        this.markIo = this.bytesSynced;
        return;
      }
      const { min, max } = this.host.speed();
      const ioKiB = (this.bytesSynced - this.markIo) / 1024;
      const speed = ioKiB / Math.max((now - this.markTime) / 1000, 0.001);
      // md.rst: sync_speed_max bounds the pass when the array is otherwise idle; while there is
      // other I/O the pass gets sync_speed_min, and the rest of the bandwidth is the application's.
      const busy = this.host.appBusy();
      const limit = busy ? Math.min(min, max) : max;
      if (speed > limit) {
        // Sleep just long enough to fall back to the limit, checkpointing while waiting.
        const needMs = (ioKiB / limit) * 1000 - (now - this.markTime);
        await this.pause(Math.max(1, Math.min(needMs, busy ? BUSY_PAUSE_MS : 500)));
        await this.maybeCheckpoint();
        continue;
      }
      return;
    }
  }

  /** Bytes from `pos` this pass may skip without looking: what the bitmap allows for its kind. */
  private skippable(pos: number): number {
    const { bitmap, mode } = this.host;
    if (this.host.bitmapGuided) return bitmap.skipSyncBlocks(pos, mode);
    return bitmap.isUnwritten(pos) ? bitmap.skipSyncBlocks(pos) : 0;
  }

  /**
   * Whether any chunk of [from, to) still needs this bitmap-guided pass, asked again once the
   * window holds its range: a write that was in flight there may have made the chunks' parity
   * valid meanwhile (parity levels), which leaves them Dirty, and startSync then answers false.
   */
  private stillOwed(from: number, to: number): boolean {
    const { bitmap } = this.host;
    for (let pos = from; pos < to; ) {
      const s = bitmap.startSync(pos);
      if (s.sync) return true;
      pos += s.length;
    }
    return false;
  }

  /** Runs the pass to the end (or to stop()). Never rejects for a stop; rejects on a window error. */
  async run(): Promise<SyncSummary> {
    const { bitmap, syncSize, mode } = this.host;
    const guided = this.host.bitmapGuided;
    const who = `array ${this.host.array ?? '?'}: ${mode}${guided ? ' (bitmap-guided)' : ''}`;
    trace('md', 'info', () => `${who}: pass starts at ${this.position} of ${syncSize} bytes, ${this.host.targetBytes} expected to sync`);
    // What was scheduled, in order. `position` moves over the finished prefix only: checkpoints
    // and Abortsync count on every byte below it being synced, whatever runs beyond it.
    const queue: { end: number; done: boolean; run: Promise<void> }[] = [];
    const settle = (): void => {
      while (queue[0]?.done) this.position = queue.shift()!.end;
    };
    /** A range needing no window: the last entry grows when it is finished too (the queue stays short). */
    const passOver = (end: number): void => {
      const last = queue[queue.length - 1];
      if (last?.done) last.end = end;
      else queue.push({ end, done: true, run: Promise.resolve() });
      settle();
    };
    let failure: { err: unknown } | undefined;
    let cursor = this.position;
    try {
      while (cursor < syncSize && !this.stopRequested && failure === undefined && this.host.hasTargets()) {
        const pos = cursor;
        const skip = this.skippable(pos);
        if (skip > 0) {
          cursor = Math.min(syncSize, pos + skip);
          this.bytesSkipped += cursor - pos;
          passOver(cursor);
          continue;
        }
        const first = bitmap.startSync(pos);
        const sync = first.sync || !guided;
        let step = Math.min(first.length, MAX_WINDOW, syncSize - pos);
        let bridged = 0;
        // Neighbouring chunks that need syncing too go into the same window (as md's
        // sync_request batches pages): a window per 64 KiB chunk pays the per-window cost (barrier,
        // reads, compare) sixteen times per MiB. A guided pass bridges short gaps (BRIDGE).
        while (sync && step < MAX_WINDOW && pos + step < syncSize) {
          const next = pos + step;
          const gap = this.skippable(next);
          if (gap > 0) {
            const after = next + gap;
            if (!guided || this.host.bridge !== true || gap > BRIDGE || after >= syncSize || after - pos >= MAX_WINDOW) break;
            const more = bitmap.startSync(after);
            if (!more.sync) break;
            bridged += gap;
            step = after - pos + Math.min(more.length, MAX_WINDOW - (after - pos), syncSize - after);
            continue;
          }
          const more = bitmap.startSync(next);
          if (guided && !more.sync) break;
          step += Math.min(more.length, MAX_WINDOW - step, syncSize - next);
        }
        cursor = pos + step;
        if (!sync) {
          this.bytesSkipped += step;
          passOver(cursor);
          continue;
        }
        const release = await this.host.lock(pos, cursor);
        if (guided && !this.stillOwed(pos, cursor)) {
          // The writes this window waited for built its parity themselves (paritySynced).
          release();
          this.bytesSkipped += step;
          passOver(cursor);
          continue;
        }
        this.windows++;
        const entry = { end: cursor, done: false, run: Promise.resolve() };
        entry.run = this.host.window(mode, pos, step).then(
          (r) => {
            this.mismatches += r.mismatches;
            this.bytesWritten += r.bytesWritten;
            this.bytesSynced += step - bridged;
            this.bytesBridged += bridged;
            entry.done = true;
            settle();
          },
          (err: unknown) => {
            failure ??= { err };
          },
        ).finally(release);
        queue.push(entry);
        const depth = this.host.appBusy() ? 1 : DEPTH;
        for (let busy = queue.filter((e) => !e.done); busy.length >= depth && failure === undefined; busy = queue.filter((e) => !e.done)) {
          await Promise.race(busy.map((e) => e.run));
        }
        await this.maybeCheckpoint();
        await this.throttle();
      }
      await Promise.all(queue.map((e) => e.run));
      if (failure !== undefined) throw failure.err;
    } catch (err) {
      await Promise.allSettled(queue.map((e) => e.run));
      bitmap.endSync(this.position);
      trace('md', 'error', () => `${who}: pass failed at ${this.position}: ${describeError(err)}`);
      throw err;
    }
    const complete = this.position >= syncSize && this.host.hasTargets();
    if (complete && this.windows === 0 && guided) {
      // Nothing was synced, so nothing ends: every chunk this pass took up (Syncing) was passed
      // over because a write built its parity, which left it Dirty. Ending the pass as below
      // would write the whole bitmap and hand every page to the daemon at once, for nothing; on
      // a new parity array written sequentially, passes like this follow one another.
    } else if (complete) {
      bitmap.closeSync();
      await bitmap.condEndSync(syncSize);
    } else {
      // E12: chunks entirely below the stop point were synced (Endsync → Dirty → Clean); the
      // chunk holding it and everything after go back to NeedSync (Abortsync).
      await bitmap.condEndSync(this.position);
      bitmap.endSync(this.position);
      await this.host.checkpoint(this.position);
    }
    trace('md', 'info', () => `${who}: pass ${complete ? 'complete' : this.stopRequested ? 'stopped' : 'ended (no member left to sync onto)'} at ${this.position}: ` +
      `${this.bytesSynced} bytes synced, ${this.bytesSkipped} skipped, ${this.bytesBridged} read between marked chunks, ${this.mismatches} sectors mismatched`);
    return this.summary(complete);
  }
}
