// One 4 KiB llbitmap page in memory: its bytes (superblock area or chunk states), the mask of
// io_size blocks changed since the last write-out, and the per-page barrier that keeps the
// daemon from cleaning a chunk while a write to this page is in flight (llbitmap.md A7).

import { PAGE_SIZE } from './geometry.js';

export class BitmapPage {
  /** The page as on disk: chunk i's state at (1024 + i) % 4096 of page (1024 + i) >> 12. */
  readonly data = Buffer.alloc(PAGE_SIZE);
  /** dirty[b] = 1 when block b changed since it was last handed to a write-out. */
  readonly dirty: Uint8Array;
  /** written[b]: the write-out that last took block b (llbitmap.ts counts them from 1). */
  readonly written: Uint32Array;
  /** Set by flush (stop): the daemon takes this page without waiting for it to expire. */
  flush = false;
  /**
   * When the daemon may clean this page (performance.now() ms). Infinity after the daemon took
   * the page and until the next write or Dirty; every page holding a Dirty chunk has a finite
   * expiry (set where a chunk becomes Dirty), so the daemon always gets to it.
   */
  expire = 0;

  /** Writes (and discards) in flight on this page: startWrite..endWrite. */
  private active = 0;
  /** Invariant: while suspended no new reference is taken; `resumed` wakes those waiting. */
  private suspended = false;
  private resumeWaiters: (() => void)[] = [];
  private drained: ((ok: boolean) => void) | null = null;

  constructor(blocksPerPage: number) {
    this.dirty = new Uint8Array(blocksPerPage);
    this.written = new Uint32Array(blocksPerPage);
  }

  get inFlight(): number {
    return this.active;
  }

  get isSuspended(): boolean {
    return this.suspended;
  }

  /** Takes a reference unless the daemon has the page suspended. */
  tryGet(): boolean {
    if (this.suspended) return false;
    this.active++;
    return true;
  }

  /** Resolves when the page is resumed (at once if it is not suspended). */
  waitResume(): Promise<void> {
    if (!this.suspended) return Promise.resolve();
    return new Promise((resolve) => this.resumeWaiters.push(resolve));
  }

  /** Drops a reference; false when none was held (an endWrite without its startWrite). */
  put(): boolean {
    if (this.active === 0) return false;
    this.active--;
    if (this.active === 0 && this.drained) {
      const done = this.drained;
      this.drained = null;
      done(true);
    }
    return true;
  }

  /**
   * Stops new references and waits for those in flight, at most `timeoutMs` (B-j: bounded).
   * Resolves true when the page is drained, false on timeout or cancel; the caller resumes
   * the page in both cases.
   */
  suspend(timeoutMs: number): Promise<boolean> {
    this.suspended = true;
    if (this.active === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      // Not unref'd: a flush waiting here must complete even if nothing else keeps the process up.
      const timer = setTimeout(() => this.cancelSuspend(), timeoutMs);
      this.drained = (ok) => {
        clearTimeout(timer);
        resolve(ok);
      };
    });
  }

  /** Ends a suspend wait early (shutdown): it resolves false. */
  cancelSuspend(): void {
    const done = this.drained;
    this.drained = null;
    done?.(false);
  }

  /** Allows references again and wakes every writer waiting on this page. */
  resume(expire: number): void {
    this.suspended = false;
    this.expire = expire;
    const waiters = this.resumeWaiters;
    this.resumeWaiters = [];
    for (const w of waiters) w();
  }
}
