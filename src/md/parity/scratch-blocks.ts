// Scratch blocks of the raid5/6 row steps (member reads, rebuilt blocks, parity), reused from step
// to step: a 1 MiB write would otherwise leave several chunk-sized buffers per row for the
// collector, and 4 KiB writes at queue depth 32 three small ones each.
//
// A step collects what it took in a `held` list and gives the list back once nothing reads those
// blocks any more (its member writes settled). The blocks come from a SizeClassPool: steps of
// every length (a 4 KiB write, a chunk of a 1 MiB write, a sync window's part of a row) reuse
// buffers of their power-of-two size, without one length evicting the others.

import { SizeClassPool, type IdleTrim } from '../../block/size-class-pool.js';

export class ScratchBlocks {
  readonly #pool: SizeClassPool;

  /** Keeps at most `keepBytes` bytes of free buffers, and after idle `idle.keepBytes`. */
  constructor(keepBytes: number, idle?: IdleTrim) {
    this.#pool = new SizeClassPool(keepBytes, idle);
  }

  /** A block of `length` bytes (contents unspecified), added to `held`. */
  take(length: number, held: Buffer[]): Buffer {
    const b = this.#pool.take(length);
    held.push(b);
    return b;
  }

  /** Takes back every block of `held`: the caller holds none of them, nor any I/O still using one. */
  give(held: readonly Buffer[]): void {
    for (const b of held) this.#pool.give(b);
  }
}
