// Buffers for requests of any size (an NBD WRITE's payload, a large READ's reply, a member
// request's bounce buffer), handed out per request and taken back once the request is done with
// them. A fresh buffer per request is garbage the moment the request ends, and V8 takes such memory
// (outside its heap) back only every few tens of MiB: an engine taking 1 MiB requests grew by
// 40-60 MiB of it, and paid the page faults of every new buffer. (BufferPool, beside this, keeps
// buffers of one size for callers whose requests all have it.)
//
// Buffers come in power-of-two sizes from 4 KiB, and a request gets a view of the first `length`
// bytes of one, so a caller that mixes request sizes reuses buffers too. The pool keeps at most
// `keepBytes` of free buffers; what is in use is bounded by its callers. With an idle policy it
// lets go, down to `idle.keepBytes`, of the sizes nothing took for `idle.afterMs`: a client that
// went from 1 MiB requests to 4 KiB ones does not keep the 1 MiB buffers because 4 KiB ones are
// still taken. What it lets go of is garbage that an idle process may not collect for minutes,
// and memory glibc may keep: megabytes of it are given back at once (give-back.ts).
// The clock is the pool's own, not its callers', so one pool can serve many callers (an NBD
// server's connections), and the buffers a finished caller used are what the next one reuses
// rather than a second set.

import { giveBack } from './give-back.js';

const MIN_SIZE = 4096;

export interface IdleTrim {
  /** Free bytes kept once the pool is idle. */
  keepBytes: number;
  /** The pool is idle when nothing was taken for this long. */
  afterMs: number;
}

export class SizeClassPool {
  /** Free buffers by size; each is a whole allocation (byteOffset 0, its ArrayBuffer's length). */
  readonly #free = new Map<number, Buffer[]>();
  #freeBytes = 0;
  /** take() calls so far, by size: the idle timer trims the sizes none came for since it was armed. */
  readonly #takes = new Map<number, number>();
  #idleTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly keepBytes: number,
    private readonly idle?: IdleTrim,
  ) {}

  /** A buffer of exactly `length` bytes, contents unspecified. */
  take(length: number): Buffer {
    const size = sizeFor(length);
    if (this.idle !== undefined) this.#takes.set(size, (this.#takes.get(size) ?? 0) + 1);
    let whole = this.#free.get(size)?.pop();
    if (whole === undefined) whole = Buffer.allocUnsafeSlow(size);
    else this.#freeBytes -= size;
    // A length of a whole class (4 KiB, 1 MiB: most requests) is the pooled Buffer itself: no
    // view made per take, none per give.
    return length === size ? whole : whole.subarray(0, length);
  }

  /**
   * Takes back a buffer take() gave. The caller must hold no reference to it, and no I/O may still
   * be using it (a device's write has settled; a reply's bytes have gone to the kernel).
   */
  give(b: Buffer): void {
    const size = b.buffer.byteLength;
    if (b.byteOffset !== 0 || size !== sizeFor(size) || this.#freeBytes + size > this.keepBytes) return;
    let list = this.#free.get(size);
    if (list === undefined) this.#free.set(size, (list = []));
    list.push(b.length === size ? b : Buffer.from(b.buffer, 0, size));
    this.#freeBytes += size;
    if (this.idle !== undefined && this.#idleTimer === undefined && this.#freeBytes > this.idle.keepBytes) this.armIdleTrim(this.idle);
  }

  private armIdleTrim(idle: IdleTrim): void {
    const before = new Map(this.#takes);
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = undefined;
      const idleSizes = [...this.#free.keys()].filter((size) => this.#takes.get(size) === before.get(size));
      const held = this.#freeBytes;
      this.trim(idle.keepBytes, idleSizes);
      void giveBack(held - this.#freeBytes);
      if (this.#freeBytes > idle.keepBytes) this.armIdleTrim(idle);
    }, idle.afterMs).unref();
  }

  /** Lets go of free buffers (the largest first; only of `sizes` if given) until at most `keepBytes` are held. */
  trim(keepBytes: number, sizes: Iterable<number> = this.#free.keys()): void {
    for (const size of [...sizes].sort((x, y) => y - x)) {
      const list = this.#free.get(size)!;
      while (this.#freeBytes > keepBytes && list.length > 0) {
        list.pop();
        this.#freeBytes -= size;
      }
    }
  }

  /** Bytes held in free buffers. */
  get freeBytes(): number {
    return this.#freeBytes;
  }
}

/** The power of two (at least MIN_SIZE) a request of `length` bytes gets a buffer of. */
function sizeFor(length: number): number {
  return length <= MIN_SIZE ? MIN_SIZE : 2 ** Math.ceil(Math.log2(length));
}
