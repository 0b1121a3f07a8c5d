// Virtual time for unit tests of code that reads performance.now and waits with setTimeout (the
// sync thread's throttle, the llbitmap daemon): time moves only when a test fires a timer, so an
// assertion says what the code decided (how long it asked to wait, whether it waited at all),
// never how fast the machine ran. Only for code whose other waits are promises (memory devices,
// stand-in hosts): real I/O would not wait for virtual time.

import type { TestContext } from 'node:test';

interface Timer {
  at: number;
  fn: () => void;
}

/** What setTimeout returns here: enough of a Timeout for code that unrefs it. */
class Handle {
  constructor(readonly id: number) {}
  unref(): this {
    return this;
  }
  ref(): this {
    return this;
  }
  hasRef(): boolean {
    return true;
  }
}

/**
 * Replaces performance.now, setTimeout and clearTimeout for the rest of test `t` (t.mock
 * restores them). A timer fires only through fireNext, which moves the clock to its due time.
 */
export class VirtualClock {
  now = 0;
  /** Every delay asked of setTimeout, in order (ms). */
  readonly delays: number[] = [];
  private readonly timers = new Map<number, Timer>();
  private nextId = 1;

  constructor(t: TestContext) {
    t.mock.method(performance, 'now', () => this.now);
    t.mock.method(globalThis, 'setTimeout', ((fn: () => void, ms = 0) => {
      const handle = new Handle(this.nextId++);
      this.delays.push(ms);
      this.timers.set(handle.id, { at: this.now + ms, fn });
      return handle;
    }) as unknown as typeof setTimeout);
    t.mock.method(globalThis, 'clearTimeout', ((handle: Handle | undefined) => {
      if (handle instanceof Handle) this.timers.delete(handle.id);
    }) as unknown as typeof clearTimeout);
  }

  /** Timers set and neither fired nor cleared. */
  get pending(): number {
    return this.timers.size;
  }

  /** Fires the earliest pending timer, moving the clock to its due time; false when none is pending. */
  fireNext(): boolean {
    const next = this.earliest();
    if (next === undefined) return false;
    this.timers.delete(next[0]);
    this.now = Math.max(this.now, next[1].at);
    next[1].fn();
    return true;
  }

  /** Lets `ms` of virtual time pass: every timer due by then fires in order, each followed up before the next. */
  async advance(ms: number): Promise<void> {
    const until = this.now + ms;
    for (;;) {
      await settle();
      const next = this.earliest();
      if (next === undefined || next[1].at > until) break;
      this.fireNext();
    }
    this.now = until;
    await settle();
  }

  private earliest(): [number, Timer] | undefined {
    let next: [number, Timer] | undefined;
    for (const entry of this.timers) if (next === undefined || entry[1].at < next[1].at) next = entry;
    return next;
  }
}

/**
 * A few turns of the event loop (real setImmediate): every promise already resolved has been
 * followed up, and so has work that waits for the end of a turn (a bitmap write-out starts
 * there, coalesced-flush.ts), however many such steps a chain takes up to SETTLE_TURNS.
 */
export async function settle(): Promise<void> {
  for (let i = 0; i < SETTLE_TURNS; i++) await new Promise((resolve) => setImmediate(resolve));
}

const SETTLE_TURNS = 8;

/** Whether `p` settles within a few turns of the event loop (settle), with no timer fired. */
export async function settlesWithoutTime(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(
    () => (done = true),
    () => (done = true),
  );
  await settle();
  return done;
}

/** Runs `p` to its end on virtual time: whenever it waits, the clock jumps to the next timer. */
export async function runOnClock<T>(p: Promise<T>, clock: VirtualClock): Promise<T> {
  let done = false;
  const finished = p.finally(() => {
    done = true;
  });
  for (;;) {
    await settle();
    if (done) return finished;
    if (!clock.fireNext()) throw new Error('the code under test waits, but on no timer');
  }
}
