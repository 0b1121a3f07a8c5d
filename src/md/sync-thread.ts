// The sync thread (md's md_do_sync): one pass of resync, recovery, check or repair over the sync
// space, window by window. It asks the bitmap what it may skip, takes the sync barrier around
// each window, checkpoints every daemon_sleep seconds so a restart resumes, and throttles itself
// between sync_speed_min and sync_speed_max so application I/O keeps most of the bandwidth.
//
// Skipping rules (llbitmap.md A4/A5): resync and a bitmap-guided recovery (re-add) sync only
// what startSync says; a full recovery (new member), check and repair skip only never-written
// chunks and sync everything else.

import type { SyncMode, SyncWindowResult } from './personality.js';
import type { WriteIntentBitmap } from './write-intent-bitmap.js';

/** Largest step in bytes: big enough for throughput, small enough to keep app I/O waits short. */
const MAX_WINDOW = 256 * 1024;
/** How often the speed estimate restarts (md's SYNC_MARKS idea). */
const MARK_INTERVAL_MS = 3000;
/** A pause while application I/O is active and the pass already runs above its minimum speed. */
const YIELD_MS = 20;

export interface SyncSpeed {
  /** KiB/s. */
  min: number;
  max: number;
}

export interface SyncHost {
  mode: SyncMode;
  /** Sync-space byte to start from (a checkpoint when resuming). */
  from: number;
  /** Sync only what bitmap.startSync returns true for (resync, re-add). */
  bitmapGuided: boolean;
  syncSize: number;
  /** Bytes the pass expects to sync (reported with progress). */
  targetBytes: number;
  bitmap: WriteIntentBitmap;
  speed(): SyncSpeed;
  /** Whether the application did I/O very recently (md's is_mddev_idle, inverted). */
  appBusy(): boolean;
  lock(start: number, end: number): Promise<void>;
  unlock(): void;
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
  /** Over the last few seconds. */
  speedKiBs: number;
  /** null until a speed is known. */
  etaSeconds: number | null;
  /** Bytes synced so far (windows run; skipped bytes excluded). */
  bytesSynced: number;
  /** Bytes the pass expects to sync: what the bitmap marked for it when it started. */
  targetBytes: number;
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

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class SyncThread {
  readonly mode: SyncMode;
  private readonly host: SyncHost;
  private position: number;
  private stopRequested = false;
  private bytesSynced = 0;
  private bytesSkipped = 0;
  private bytesWritten = 0;
  private mismatches = 0;
  private readonly started = performance.now();
  private readonly startedAt = Date.now();
  private markTime = performance.now();
  private markPos: number;
  private lastSpeed = 0;
  /** Bytes synced at the last mark: the throttle counts I/O done, not bytes skipped (md's io_sectors). */
  private markIo = 0;
  private lastCheckpoint = performance.now();

  constructor(host: SyncHost) {
    this.host = host;
    this.mode = host.mode;
    this.position = Math.min(host.from, host.syncSize);
    this.markPos = this.position;
  }

  /** Asks the pass to end at its next window boundary. */
  stop(): void {
    this.stopRequested = true;
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
      etaSeconds: speed > 0 ? Math.ceil((size - this.position) / 1024 / speed) : null,
      bytesSynced: this.bytesSynced,
      targetBytes: this.host.targetBytes,
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
      bytesWritten: this.bytesWritten,
      mismatches: this.mismatches,
      seconds: (performance.now() - this.started) / 1000,
      size: this.host.syncSize,
      startedAt: this.startedAt,
      finishedAt: Date.now(),
      ...(error === undefined ? {} : { error }),
    };
  }

  /** Progress rate (position KiB/s since the last mark), for the ETA. */
  private currentSpeed(): number {
    const dt = (performance.now() - this.markTime) / 1000;
    if (dt < 0.05) return this.lastSpeed;
    return (this.position - this.markPos) / 1024 / Math.max(dt, 0.001);
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
        this.markPos = this.position;
        this.markIo = this.bytesSynced;
        return;
      }
      const { min, max } = this.host.speed();
      const ioKiB = (this.bytesSynced - this.markIo) / 1024;
      const speed = ioKiB / Math.max((now - this.markTime) / 1000, 0.001);
      if (speed > max) {
        // Sleep just long enough to fall back to max, checkpointing while waiting.
        const needMs = (ioKiB / max) * 1000 - (now - this.markTime);
        await sleep(Math.max(1, Math.min(needMs, 500)));
        await this.maybeCheckpoint();
        continue;
      }
      if (speed > min && this.host.appBusy()) {
        await sleep(YIELD_MS);
        continue;
      }
      return;
    }
  }

  /** Runs the pass to the end (or to stop()). Never rejects for a stop; rejects on a window error. */
  async run(): Promise<SyncSummary> {
    const { bitmap, syncSize, mode } = this.host;
    const guided = this.host.bitmapGuided;
    try {
      while (this.position < syncSize && !this.stopRequested && this.host.hasTargets()) {
        const pos = this.position;
        const skip = guided ? bitmap.skipSyncBlocks(pos, mode) : bitmap.isUnwritten(pos) ? bitmap.skipSyncBlocks(pos) : 0;
        if (skip > 0) {
          const n = Math.min(skip, syncSize - pos);
          this.bytesSkipped += n;
          this.position += n;
          continue;
        }
        const { sync, length } = bitmap.startSync(pos);
        const step = Math.min(length, MAX_WINDOW, syncSize - pos);
        if (sync || !guided) {
          await this.host.lock(pos, pos + step);
          try {
            const r = await this.host.window(mode, pos, step);
            this.mismatches += r.mismatches;
            this.bytesWritten += r.bytesWritten;
          } finally {
            this.host.unlock();
          }
          this.bytesSynced += step;
        } else {
          this.bytesSkipped += step;
        }
        this.position = pos + step;
        await this.maybeCheckpoint();
        await this.throttle();
      }
    } catch (err) {
      bitmap.endSync(this.position);
      throw err;
    }
    const complete = this.position >= syncSize && this.host.hasTargets();
    if (complete) {
      bitmap.closeSync();
      await bitmap.condEndSync(syncSize);
    } else {
      // E12: chunks entirely below the stop point were synced (Endsync → Dirty → Clean); the
      // chunk holding it and everything after go back to NeedSync (Abortsync).
      await bitmap.condEndSync(this.position);
      bitmap.endSync(this.position);
      await this.host.checkpoint(this.position);
    }
    return this.summary(complete);
  }
}
