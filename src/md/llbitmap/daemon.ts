// The bitmap daemon (llbitmap.md A7, per chunk): every daemon_sleep seconds it visits the pages
// holding Dirty chunks and cleans each Dirty chunk with no write in flight that has been idle for
// barrier_idle: Dirty → Clean. The kernel suspends a whole page and cleans it only when the page
// as a whole is idle, which random writes over a volume never let happen; here a chunk is cleaned
// on its own (chunk-activity.ts: why the ordering invariants still hold). A degraded array keeps
// its Dirty chunks (they say what a re-added member missed). Never after close begins (B-j).
//
// Where llraid departs from the kernel: a pass that cleaned chunks writes their pages. In the
// kernel, Clean reaches disk lazily, with the next write to its block; a chunk cleaned after the
// last write to its block stays Dirty on disk, and a crash resyncs it again. After a resync or
// recovery that is the whole region just synced (Endsync leaves it Dirty for the daemon), so
// every crash of a taken-over volume would copy it again, and again. One write of the cleaned
// pages per pass (at most the bitmap, every daemon_sleep) makes a crash resync only the chunks
// written since. Safe: the pages are written from memory as they are at the write, where a
// cleaned chunk has no write in flight and a chunk written since is Dirty again.

import type { ChunkMap } from './chunk-map.js';

export class BitmapDaemon {
  private timer: NodeJS.Timeout | null = null;
  /** The pass running now, if any. */
  running: Promise<void> | null = null;
  /** The timer fired while a pass was running (DAEMON_BUSY): run it again. */
  private busy = false;
  /** Set when the bitmap closes: no timer is armed and no pass starts after this. */
  closing = false;

  constructor(
    private readonly map: ChunkMap,
    /** Writes the marked blocks (WriteOut.request); errors are the writer's to handle. */
    private readonly writeOut: () => Promise<void>,
  ) {}

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
    let marked = false;
    do {
      this.busy = false;
      restart = false;
      // ‡ A degraded array keeps its Dirty bits: they say what a re-added member missed.
      if (m.host.isDegraded() || m.writeError) return;
      for (let idx = 0; idx < m.pages.length && !this.closing; idx++) {
        const page = m.pages[idx]!;
        // B-g: the flush flag is consumed by this pass.
        const force = page.flush;
        page.flush = false;
        // Nothing to clean: nothing to look at chunk by chunk.
        if (!m.pageHasDirty(idx)) continue;
        let r = m.cleanIdle(idx, force);
        let cleaned = r.cleaned;
        if (force && r.busy > 0) {
          // A flush (A8) waits for the writes in flight on Dirty chunks, at most daemon_sleep
          // (B-j: a write that never ends leaves its chunk Dirty, the flush goes on). Writes to
          // other chunks meanwhile are not held up; those that end in time are cleaned too.
          const deadline = performance.now() + m.daemonSleepSeconds * 1000;
          while (r.busy > 0 && !this.closing) {
            const left = deadline - performance.now();
            if (left <= 0 || !(await m.activity.waitForEnd(left))) break;
            r = m.cleanIdle(idx, true);
            cleaned += r.cleaned;
          }
        }
        // B-h: re-arm only while some page still holds Dirty chunks.
        if (r.left > 0) restart = true;
        // B-n: bits were cleared on a whole array: the bitmap is clean up to these events.
        if (cleaned > 0 && !m.host.isDegraded()) {
          const events = m.host.events();
          if (events > m.eventsCleared) m.eventsCleared = events;
        }
        if (cleaned > 0) {
          m.markPage(idx);
          marked = true;
        }
      }
    } while (this.busy && !this.closing);
    if (marked && !m.writeError) await this.writeOut();
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
