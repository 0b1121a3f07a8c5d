// Mutual exclusion between application writes and the sync windows in flight (md's
// raise_barrier/wait_barrier, by range). Without it a recovery could read a range from a source
// copy, lose the race to an application write that updates every copy, then write the old data
// onto the target. Ranges are in sync space.
//
// Invariant: while a window is locked, no application I/O overlapping it is in flight.

interface Range {
  start: number;
  end: number;
}

function overlaps(a: Range, b: Range): boolean {
  return a.start < b.end && b.start < a.end;
}

interface Window extends Range {
  done: Promise<void>;
  release: () => void;
}

export class SyncBarrier {
  /** The sync windows in flight; they never overlap one another (the sync thread's ranges). */
  private readonly windows = new Set<Window>();
  private readonly inflight = new Set<Range>();
  private drainWaiters: (() => void)[] = [];

  /**
   * Whether application I/O over [start, end) that ends before this thread runs anything else
   * (writeNow: its member writes are synchronous) may go without entering: no sync window
   * overlaps it. A window cannot start while such I/O runs, so it need not be counted in flight,
   * and it costs no Range and no change of the in-flight set.
   */
  clear(start: number, end: number): boolean {
    if (this.windows.size === 0) return true;
    for (const w of this.windows) if (w.start < end && start < w.end) return false;
    return true;
  }

  /** An application I/O over [start, end) when no sync window overlaps it; else undefined. */
  tryEnter(start: number, end: number): Range | undefined {
    const r = { start, end };
    if (this.windows.size > 0 && this.overlapping(r) !== undefined) return undefined;
    this.inflight.add(r);
    return r;
  }

  /** An application I/O over [start, end): waits while a sync window overlaps it. */
  async enter(start: number, end: number): Promise<Range> {
    const r = { start, end };
    for (let w = this.overlapping(r); w !== undefined; w = this.overlapping(r)) await w.done;
    this.inflight.add(r);
    return r;
  }

  exit(r: Range): void {
    this.inflight.delete(r);
    // Nobody waiting (no window being locked) is the common case: no new array per request.
    if (this.drainWaiters.length === 0) return;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  /**
   * The sync thread takes [start, end): new overlapping I/O waits, in-flight overlapping I/O
   * drains. Resolves with the function that releases the window.
   */
  async lock(start: number, end: number): Promise<() => void> {
    let release!: () => void;
    const done = new Promise<void>((resolve) => (release = resolve));
    const w: Window = { start, end, done, release };
    this.windows.add(w);
    while ([...this.inflight].some((r) => overlaps(r, w))) {
      await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
    }
    return () => {
      this.windows.delete(w);
      w.release();
    };
  }

  private overlapping(r: Range): Window | undefined {
    for (const w of this.windows) if (overlaps(w, r)) return w;
    return undefined;
  }
}
