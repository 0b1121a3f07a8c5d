// Per-row exclusion for the raid5/6 paths: a parity update reads, computes and writes a row as one
// step, so two writes to one row (or a write and a degraded read that rebuilds from parity) must
// not interleave. Each caller holds at most one row at a time, so there is no lock order to break.

export class StripeLocks {
  // row → the tail of its waiting chain; absent when nobody holds the row.
  readonly #tails = new Map<number, Promise<void>>();

  /** Waits for the row, runs `fn` holding it, releases it whatever `fn` does. */
  async with<T>(row: number, fn: () => Promise<T>): Promise<T> {
    const before = this.#tails.get(row) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = before.then(() => mine);
    this.#tails.set(row, tail);
    await before;
    try {
      return await fn();
    } finally {
      release();
      if (this.#tails.get(row) === tail) this.#tails.delete(row);
    }
  }

  /** Whether a step holds `row` or waits for it (the direct read leaves such rows to the stripe path). */
  held(row: number): boolean {
    return this.#tails.has(row);
  }

  /** Rows currently held or waited for (tests). */
  get size(): number {
    return this.#tails.size;
  }
}
