// The bytes a connection has received and not yet parsed: a queue of socket chunks read from the
// front. Parsers take fixed-size headers and payloads from it without concatenating the whole
// queue; a piece that lies inside one chunk is returned as a view of that chunk, not a copy.

export class BufferList {
  /** Invariant: every chunk is non-empty and `head` < chunks[0].length whenever chunks is non-empty. */
  private readonly chunks: Buffer[] = [];
  private head = 0;
  /** Bytes queued and not yet taken. */
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /**
   * Removes and returns the next `n` bytes (the caller checked `length >= n`). The result is a view
   * when the bytes lie in one chunk; otherwise they are copied into a fresh buffer.
   */
  take(n: number): Buffer {
    const first = this.chunks[0];
    if (n === 0 || first === undefined) return Buffer.alloc(0);
    if (first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.advance(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.chunks[0]!;
      const m = Math.min(n - filled, chunk.length - this.head);
      chunk.copy(out, filled, this.head, this.head + m);
      filled += m;
      this.advance(m);
    }
    return out;
  }

  /** Where the bytes the last takeWindow() took start in the buffer it returned. */
  windowAt = 0;

  /**
   * Removes the next `n` bytes (the caller checked `length >= n`) and returns a buffer they can be
   * read from, from `windowAt` on, until the next take: the queued chunk itself when they lie in
   * one, else `scratch` (at least `n` long). No view is made: the parser's request header, per
   * request, read where it landed.
   */
  takeWindow(n: number, scratch: Buffer): Buffer {
    const first = this.chunks[0]!;
    if (first.length - this.head >= n) {
      this.windowAt = this.head;
      this.advance(n);
      return first;
    }
    this.windowAt = 0;
    for (let filled = 0; filled < n; filled++) {
      scratch[filled] = this.chunks[0]![this.head]!;
      this.advance(1);
    }
    return scratch;
  }

  /**
   * Moves as many queued bytes as fit into `out` from `at` on (all of them, or `out.length - at`);
   * returns how many.
   */
  takeInto(out: Uint8Array, at: number): number {
    let filled = 0;
    while (at + filled < out.length && this.chunks.length > 0) {
      const chunk = this.chunks[0]!;
      const m = Math.min(out.length - at - filled, chunk.length - this.head);
      out.set(chunk.subarray(this.head, this.head + m), at + filled);
      filled += m;
      this.advance(m);
    }
    return filled;
  }

  /** Drops up to `n` bytes; returns how many were dropped. */
  skip(n: number): number {
    let dropped = 0;
    while (dropped < n && this.chunks.length > 0) {
      const chunk = this.chunks[0]!;
      const m = Math.min(n - dropped, chunk.length - this.head);
      this.advance(m);
      dropped += m;
    }
    return dropped;
  }

  clear(): void {
    this.chunks.length = 0;
    this.head = 0;
    this.length = 0;
  }

  private advance(n: number): void {
    this.head += n;
    this.length -= n;
    if (this.head === this.chunks[0]!.length) {
      this.chunks.shift();
      this.head = 0;
    }
  }
}
