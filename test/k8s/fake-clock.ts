// A monotonic clock and timer queue under the test's control (unit-test double), for the lease
// keeper's and observer's timing rules: `advance` runs every timer due on the way, in order,
// letting the promise chains each one starts settle before the next.

export class FakeClock {
  private t = 0;
  private seq = 0;
  private timers: Array<{ at: number; seq: number; fn: () => void }> = [];

  readonly now = (): number => this.t;

  readonly schedule = (fn: () => void, ms: number): (() => void) => {
    const timer = { at: this.t + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((x) => x !== timer);
    };
  };

  readonly sleep = (ms: number): Promise<void> => new Promise((resolve) => void this.schedule(resolve, ms));

  /** Lets pending promise chains run (they may schedule timers). */
  async settle(): Promise<void> {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  }

  async advance(ms: number): Promise<void> {
    const target = this.t + ms;
    await this.settle();
    while (true) {
      const due = this.timers.filter((x) => x.at <= target).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!due) break;
      this.timers = this.timers.filter((x) => x !== due);
      this.t = due.at;
      due.fn();
      await this.settle();
    }
    this.t = target;
    await this.settle();
  }

  /** Advances in steps until `cond` holds (or `maxMs` passes); returns the time it held. */
  async until(cond: () => boolean, maxMs: number, stepMs = 10): Promise<number> {
    const end = this.t + maxMs;
    while (!cond()) {
      if (this.t >= end) throw new Error(`condition not met within ${maxMs} ms of fake time`);
      await this.advance(stepMs);
    }
    return this.t;
  }
}
