// The bitmap daemon (llbitmap.md A7): every daemon_sleep seconds it visits the pages, and on
// each page idle for barrier_idle it suspends new writers, waits for those in flight to drain
// (at most daemon_sleep), and applies Daemon to its chunks: Dirty → Clean. A degraded array
// keeps its Dirty chunks (they say what a re-added member missed). Never after close begins (B-j).

import { BITMAP_DATA_OFFSET } from './bitmap-superblock.js';
import type { ChunkMap } from './chunk-map.js';
import { firstChunkOfPage, PAGE_SIZE } from './geometry.js';
import { Action } from './states.js';

export class BitmapDaemon {
  private timer: NodeJS.Timeout | null = null;
  /** The pass running now, if any. */
  running: Promise<void> | null = null;
  /** The timer fired while a pass was running (DAEMON_BUSY): run it again. */
  private busy = false;
  /** Set when the bitmap closes: no timer is armed and no pass starts after this. */
  closing = false;

  constructor(private readonly map: ChunkMap) {}

  /**
   * One daemon pass now, as the timer runs it (A7). If a pass is running, it runs once more
   * after the current one (DAEMON_BUSY) and this resolves when that is done.
   */
  run(): Promise<void> {
    if (this.running) {
      this.busy = true;
      return this.running;
    }
    const run = this.loop().finally(() => {
      if (this.running === run) this.running = null;
    });
    this.running = run;
    return run;
  }

  private async loop(): Promise<void> {
    const m = this.map;
    let restart: boolean;
    do {
      this.busy = false;
      restart = false;
      // ‡ A degraded array keeps its Dirty bits: they say what a re-added member missed.
      if (m.host.isDegraded() || m.writeError) return;
      for (let idx = 0; idx < m.pages.length && !this.closing; idx++) {
        const page = m.pages[idx]!;
        if (!page.flush && performance.now() < page.expire) {
          // B-h: re-arm only for pages that still hold Dirty chunks.
          if (m.pageHasDirty(idx)) restart = true;
          continue;
        }
        // B-g: the flush flag is consumed by this pass.
        page.flush = false;
        // Nothing to clean: writers on this page are not held up for nothing.
        if (!m.pageHasDirty(idx)) continue;
        const drained = await page.suspend(m.daemonSleepSeconds * 1000);
        if (!drained) {
          // B-j: writes did not drain within daemon_sleep: skip this page, retry next pass.
          page.resume(performance.now());
          if (m.pageHasDirty(idx)) restart = true;
          continue;
        }
        const first = firstChunkOfPage(idx);
        const last = Math.min(m.chunks, first + (idx === 0 ? PAGE_SIZE - BITMAP_DATA_OFFSET : PAGE_SIZE)) - 1;
        m.apply(first, last, Action.Daemon);
        page.resume(Infinity);
        // B-n: bits were cleared on a whole array: the bitmap is clean up to these events. (If the
        // array went degraded during the wait, Daemon changed nothing: ‡ in states.ts.)
        if (!m.host.isDegraded()) {
          const events = m.host.events();
          if (events > m.eventsCleared) m.eventsCleared = events;
        }
      }
    } while (this.busy && !this.closing);
    if (restart) this.arm();
  }

  /** Arms the timer for the next pass in daemon_sleep, unless armed (or shutting down). */
  arm(): void {
    // B-j: never armed during or after shutdown.
    if (this.timer || this.closing) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.closing) return;
      void this.run();
    }, this.map.daemonSleepSeconds * 1000);
    this.timer.unref();
  }

  clear(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
