// Where the time of one call went, phase by phase, for a log line: `lookup 3 ms, clone 21 ms`.
// The phases are named by the caller and follow one another; a phase entered twice adds up.

export class PhaseTimer {
  private readonly started = performance.now();
  private last = this.started;
  private readonly phases = new Map<string, number>();

  /** Ends the phase that ran since the previous mark (or since the timer was made). */
  mark(phase: string): void {
    const now = performance.now();
    this.phases.set(phase, (this.phases.get(phase) ?? 0) + (now - this.last));
    this.last = now;
  }

  /** Milliseconds since the timer was made. */
  totalMs(): number {
    return performance.now() - this.started;
  }

  /** `total N ms: a 1 ms, b 2 ms` (whole milliseconds; under 10 ms with one decimal). */
  toString(): string {
    const fmt = (v: number): string => (v < 10 ? v.toFixed(1) : v.toFixed(0));
    return `total ${fmt(this.totalMs())} ms: ${[...this.phases].map(([k, v]) => `${k} ${fmt(v)} ms`).join(', ')}`;
  }
}
