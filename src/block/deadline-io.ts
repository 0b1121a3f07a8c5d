// Positional I/O with a deadline, for files on a filesystem that can leave a request waiting
// without bound (filesystem-kind.cts: FUSE, NFS, ...). A request that gets no answer in time
// rejects with ETIMEDOUT and the device is marked hung: every later request rejects at once, so
// md fails the member and the array goes on from the others.
//
// What a deadline cannot do is take the request back: the libuv pool thread that made the
// syscall stays blocked until the server answers, if ever. Three rules keep that harmless:
// - at most MAX_IN_FLIGHT requests of this device are in the pool at once, so a hang holds at
//   most that many threads (bin.cts sizes the pool for it) and the other members keep theirs;
// - reads land in a buffer of their own and are copied out only when they complete in time, so
//   a late answer never writes into a buffer its caller has reused;
// - writes send a copy of their data, so a late write puts down what was asked, not whatever
//   the caller's buffer holds by then (the chunk is marked for the member in the bitmap anyway).

import { fdatasync } from 'node:fs';
import { promisify } from 'node:util';
import { TimeoutError } from './errors.js';
import { byteLength, readP, writeP, type PositionalIo } from './positional-io.js';
import { trace } from '../common/trace.js';

const fdatasyncP = promisify(fdatasync);

/** Requests of one device in libuv's pool at once. */
export const MAX_IN_FLIGHT = 2;

let defaultDeadlineMs = 30_000;

/** The deadline of devices opened from now on (the CLI's LLRAID_MEMBER_TIMEOUT). */
export function setDefaultDeadline(ms: number): void {
  defaultDeadlineMs = ms;
}

export function defaultDeadline(): number {
  return defaultDeadlineMs;
}

export class DeadlineIo implements PositionalIo {
  /** Why the device stopped taking requests; undefined while it answers. */
  hung: string | undefined;
  private inFlight = 0;
  private readonly queue: (() => void)[] = [];

  constructor(
    /** Names the device in messages. */
    private readonly what: string,
    readonly deadlineMs: number = defaultDeadlineMs,
  ) {}

  read(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
    return this.run(`read [${pos}, +${len})`, async () => {
      const own = Buffer.allocUnsafe(len);
      const n = await readP(fd, own, 0, len, pos);
      own.copy(buf, off, 0, n);
      return n;
    });
  }

  write(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
    const copy = Buffer.from(buf.subarray(off, off + len));
    return this.run(`write [${pos}, +${len})`, () => writeP(fd, copy, 0, len, pos));
  }

  writev(fd: number, parts: readonly Uint8Array[], pos: number): Promise<number> {
    const copy = Buffer.concat(parts);
    return this.run(`write [${pos}, +${byteLength(parts)})`, () => writeP(fd, copy, 0, copy.length, pos));
  }

  sync(fd: number): Promise<void> {
    return this.run('flush', () => fdatasyncP(fd));
  }

  private async run<T>(op: string, request: () => Promise<T>): Promise<T> {
    if (this.hung !== undefined) throw new TimeoutError(this.hung);
    if (this.inFlight >= MAX_IN_FLIGHT) await new Promise<void>((resolve) => this.queue.push(resolve));
    else this.inFlight++;
    try {
      if (this.hung !== undefined) throw new TimeoutError(this.hung);
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          if (this.hung === undefined) {
            this.hung = `${this.what}: ${op} got no answer within ${this.deadlineMs} ms; not asked again`;
            trace('block', 'error', `${this.hung} (the device is marked hung)`);
          }
          reject(new TimeoutError(this.hung));
        }, this.deadlineMs);
      });
      try {
        return await Promise.race([request(), expired]);
      } finally {
        clearTimeout(timer);
      }
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.inFlight--;
    }
  }
}
