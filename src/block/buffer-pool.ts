// Buffers of one size handed out and taken back, for hot paths that would otherwise allocate a
// fresh large buffer per request: a new 512 KiB or 1 MiB buffer costs its page faults every time
// (about 0.25 ms per 512 KiB here, as long as computing raid5 parity over it), a reused one none.

export class BufferPool {
  readonly #free = new Map<number, Buffer[]>();

  /**
   * Keeps at most `keep` free buffers of the current size, and no more than `keepBytes` bytes of
   * them: many small buffers (a queue of 4 KiB requests) without holding as many large ones.
   */
  constructor(
    private readonly keep = 16,
    private readonly keepBytes = Infinity,
  ) {}

  /** A buffer of exactly `length` bytes, contents unspecified. */
  take(length: number): Buffer {
    return this.#free.get(length)?.pop() ?? Buffer.allocUnsafeSlow(length);
  }

  /** Takes `b` back. The caller must hold no reference to it, nor any I/O still using it. */
  give(b: Uint8Array): void {
    if (!Buffer.isBuffer(b)) return;
    let list = this.#free.get(b.length);
    if (list === undefined) {
      // One size at a time in practice (a chunk's, a sync window's): forget the others.
      this.#free.clear();
      this.#free.set(b.length, (list = []));
    }
    if (list.length < this.keep && (list.length + 1) * b.length <= this.keepBytes) list.push(b);
  }
}
