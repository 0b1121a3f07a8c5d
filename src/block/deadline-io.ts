// Positional I/O with a deadline, for every member whose requests may wait for a device: files
// on a filesystem that can leave a request waiting without bound (filesystem-kind.cts: FUSE,
// NFS, ...), and files on local disks and block devices, whose disk may hang below the kernel's
// own timeouts (a multipath device queueing with no path, a loop device over a stuck file). A
// request that gets no answer in time rejects with ETIMEDOUT and the device is marked hung:
// every later request rejects at once, so md fails the member and the array goes on from the
// others.
//
// A local disk that is merely slow must not be failed: an fdatasync after gigabytes of buffered
// writes can take minutes on a spinning disk. So a device with a block device under it (sysfs
// has its I/O counters) is failed only when the deadline passes with no request of that block
// device completing; while it completes some, the deadline starts again.
//
// What a deadline cannot do is take the request back: the libuv pool thread that made the
// syscall stays blocked until the server answers, if ever. Three rules keep that harmless:
// - at most MAX_IN_FLIGHT requests of this device are in the pool at once, so a hang holds at
//   most that many threads (bin.cts sizes the pool for it) and the other members keep theirs;
// - reads land in a bounce buffer of their own (reused from a pool) and are copied out only when
//   they complete in time, so a late answer never writes into a buffer its caller has reused;
// - writes are sent from the caller's buffer, not a copy (a copy per write cost a quarter of a
//   1 MiB write's CPU), so a late write puts down whatever that buffer holds when the thread gets
//   to it. BlockDevice.write's contract makes that harmless: a caller reuses its buffer only
//   after the write resolved; after a rejection it drops it. A member write that timed out fails
//   the member, and md resyncs that member's chunks from the bitmap before trusting it again,
//   so what a late write put down there is never read.

import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { TimeoutError } from './errors.js';
import { byteLength, type PositionalIo } from './positional-io.js';
import { SizeClassPool } from './size-class-pool.js';
import { fdatasync, readP, writeP, writevP } from '../common/callback-fs.js';
import { trace } from '../common/trace.js';

/**
 * Requests of one device in libuv's pool at once. Two unless the process's pool was sized for
 * more per member (bin.cts sets LLRAID_MEMBER_IN_FLIGHT when it sizes the pool for `serve`): a
 * hang must never hold every pool thread, or the deadline's own checks wait behind it.
 */
export const MAX_IN_FLIGHT = Math.max(1, Number(process.env.LLRAID_MEMBER_IN_FLIGHT ?? 2) || 2);

let defaultDeadlineMs = 30_000;

/**
 * Bounce buffers of reads, shared by every device of the process. A buffer goes back only once its
 * read has returned (a read past its deadline keeps its buffer until then); the pool keeps what
 * MAX_IN_FLIGHT reads of 1 MiB on a few members use.
 */
const bounceBuffers = new SizeClassPool(8 * 1024 * 1024);

/** The deadline of devices opened from now on (the CLI's LLRAID_MEMBER_TIMEOUT). */
export function setDefaultDeadline(ms: number): void {
  defaultDeadlineMs = ms;
}

export function defaultDeadline(): number {
  return defaultDeadlineMs;
}

/**
 * A reading of the I/O counters of the block device with number `dev` (st.dev of a file, st.rdev
 * of a device node) that changes whenever it completes a request; undefined when it has none in
 * sysfs (FUSE, NFS and btrfs files have anonymous device numbers).
 */
export function blockDeviceProgress(dev: number): (() => string) | undefined {
  const major = Math.floor(dev / 256) % 4096;
  const minor = (dev % 256) + Math.floor(dev / 1048576) * 256;
  const stat = `/sys/dev/block/${major}:${minor}/stat`;
  const read = (): string => {
    // Fields (Documentation/block/stat.rst): reads, writes, discards and flushes completed.
    const f = readFileSync(stat, 'utf8').trim().split(/\s+/);
    return `${f[0]} ${f[4]} ${f[11] ?? ''} ${f[15] ?? ''}`;
  };
  try {
    read();
  } catch {
    return undefined;
  }
  return () => {
    try {
      return read();
    } catch {
      return '';
    }
  };
}

export class DeadlineIo implements PositionalIo {
  /** Why the device stopped taking requests; undefined while it answers. */
  hung: string | undefined;
  private inFlight = 0;
  private mark: string | undefined;
  private markedAt = 0;
  private readonly queue: (() => void)[] = [];

  constructor(
    /** Names the device in messages. */
    private readonly what: string,
    readonly deadlineMs: number = defaultDeadlineMs,
    /** The device's progress (blockDeviceProgress): while it changes, the deadline restarts. */
    private readonly progress?: () => string,
  ) {}

  read(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
    let late = false;
    return this.run(`read [${pos}, +${len})`, async () => {
      const own = bounceBuffers.take(len);
      try {
        const n = await readP(fd, own, 0, len, pos);
        // Past its deadline the caller has its rejection and may have reused `buf` since.
        if (!late) own.copy(buf, off, 0, n);
        return n;
      } finally {
        bounceBuffers.give(own);
      }
    }, () => (late = true));
  }

  write(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
    return this.run(`write [${pos}, +${len})`, () => writeP(fd, buf, off, len, pos));
  }

  writev(fd: number, parts: readonly Uint8Array[], pos: number): Promise<number> {
    return this.run(`write [${pos}, +${byteLength(parts)})`, () => writevP(fd, parts, pos));
  }

  /**
   * The device's progress reading, re-read when `fresh` or when the last one is older than a
   * quarter of the deadline (a sysfs read per request would cost more than the request). A reading
   * up to that old at a request's start can make its first expiry look like progress: a hung
   * device is failed within two deadlines of the request.
   */
  private progressMark(fresh = false): string | undefined {
    if (this.progress === undefined) return undefined;
    const now = performance.now();
    if (fresh || this.mark === undefined || now - this.markedAt > this.deadlineMs / 4) {
      this.mark = this.progress();
      this.markedAt = now;
    }
    return this.mark;
  }

  sync(fd: number): Promise<void> {
    return this.run('flush', () => fdatasync(fd));
  }

  /** Runs `request` against the deadline; `expired` is told when it lost (it may still run). */
  private async run<T>(op: string, request: () => Promise<T>, expired?: () => void): Promise<T> {
    if (this.hung !== undefined) throw new TimeoutError(this.hung);
    if (this.inFlight >= MAX_IN_FLIGHT) await new Promise<void>((resolve) => this.queue.push(resolve));
    else this.inFlight++;
    try {
      if (this.hung !== undefined) throw new TimeoutError(this.hung);
      let timer: NodeJS.Timeout | undefined;
      let seen = this.progressMark();
      const deadline = new Promise<never>((_, reject) => {
        const expire = (): void => {
          const now = this.progressMark(true);
          if (now !== seen && this.hung === undefined) {
            // The disk completed requests meanwhile: slow, not hung.
            seen = now;
            timer = setTimeout(expire, this.deadlineMs);
            return;
          }
          if (this.hung === undefined) {
            this.hung = `${this.what}: ${op} got no answer within ${this.deadlineMs} ms; not asked again`;
            trace('block', 'error', `${this.hung} (the device is marked hung)`);
          }
          expired?.();
          reject(new TimeoutError(this.hung));
        };
        timer = setTimeout(expire, this.deadlineMs);
      });
      try {
        return await Promise.race([request(), deadline]);
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
