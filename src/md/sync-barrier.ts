// Mutual exclusion between application writes and the one sync window in flight (md's
// raise_barrier/wait_barrier, by range). Without it a recovery could read a range from a source
// copy, lose the race to an application write that updates every copy, then write the old data
// onto the target. Ranges are in sync space.
//
// Invariant: while a window is locked, no application write overlapping it is in flight.

interface Range {
  start: number;
  end: number;
}

function overlaps(a: Range, b: Range): boolean {
  return a.start < b.end && b.start < a.end;
}

export class SyncBarrier {
  private window: (Range & { done: Promise<void>; release: () => void }) | undefined;
  private readonly inflight = new Set<Range>();
  private drained: (() => void) | undefined;

  /** An application I/O over [start, end): waits while the sync window overlaps it. */
  async enter(start: number, end: number): Promise<Range> {
    const r = { start, end };
    while (this.window !== undefined && overlaps(this.window, r)) await this.window.done;
    this.inflight.add(r);
    return r;
  }

  exit(r: Range): void {
    this.inflight.delete(r);
    this.drained?.();
  }

  /** The sync thread takes [start, end): new overlapping I/O waits; in-flight overlapping I/O drains. */
  async lock(start: number, end: number): Promise<void> {
    let release!: () => void;
    const done = new Promise<void>((resolve) => (release = resolve));
    this.window = { start, end, done, release };
    const w = this.window;
    while ([...this.inflight].some((r) => overlaps(r, w))) {
      await new Promise<void>((resolve) => (this.drained = resolve));
      this.drained = undefined;
    }
  }

  unlock(): void {
    const w = this.window;
    this.window = undefined;
    w?.release();
  }
}
