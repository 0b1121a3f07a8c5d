// Scratch blocks of the raid5/6 row steps (member reads, rebuilt blocks, parity), reused from step
// to step: a 1 MiB write would otherwise leave several chunk-sized buffers per row for the
// collector, and 4 KiB writes at queue depth 32 three small ones each.
//
// A step collects what it took in a `held` list and gives the list back once nothing reads those
// blocks any more (its member writes settled). Blocks of one exact size suit application steps,
// whose lengths repeat (a 4 KiB write, a chunk of a 1 MiB write); sync steps span whatever part of
// a row a window covers, so they take fixed-size buffers and use a prefix.

import { BufferPool } from '../../block/buffer-pool.js';

export class ScratchBlocks {
  readonly #pool: BufferPool;
  readonly #fixed: number | undefined;

  /**
   * Keeps at most `keep` free buffers and `keepBytes` bytes of them. With `fixed`, every buffer
   * has that size and a block of any length up to it is a prefix of one.
   */
  constructor(options: { keep: number; keepBytes: number; fixed?: number }) {
    this.#pool = new BufferPool(options.keep, options.keepBytes);
    this.#fixed = options.fixed;
  }

  /** A block of `length` bytes (contents unspecified); its buffer is added to `held`. */
  take(length: number, held: Buffer[]): Buffer {
    if (this.#fixed === undefined || length > this.#fixed) {
      const b = this.#pool.take(length);
      held.push(b);
      return b;
    }
    const b = this.#pool.take(this.#fixed);
    held.push(b);
    return b.subarray(0, length);
  }

  /** Takes back every buffer of `held`: the caller holds no block of them, nor any I/O still using one. */
  give(held: readonly Buffer[]): void {
    for (const b of held) this.#pool.give(b);
  }
}
