// Coalescing of bitmap write-outs (DESIGN.md §4): at most one write-out runs at a time; callers
// that arrive while one is in flight share the next one, which starts when it completes. Used by
// llbitmap's unplug, flush, checkpoint and update_sb.

export class CoalescedFlush {
  private running: Promise<void> | null = null;
  private next: Promise<void> | null = null;

  /** `run` takes its snapshot of what to write when it starts, and must not reject. */
  constructor(private readonly run: () => Promise<void>) {}

  /**
   * A write-out that starts now or after the one in flight: everything changed before this call
   * is in it. Invariant: `next` is non-null only while `running` is.
   */
  request(): Promise<void> {
    if (this.next) return this.next;
    if (!this.running) return this.start();
    this.next = this.running.then(() => {
      this.next = null;
      return this.start();
    });
    return this.next;
  }

  /** The write-out in flight or queued, if any: what a caller with nothing new must wait for. */
  pending(): Promise<void> | null {
    return this.next ?? this.running;
  }

  private start(): Promise<void> {
    const p = this.run().finally(() => {
      if (this.running === p) this.running = null;
    });
    this.running = p;
    return p;
  }
}
