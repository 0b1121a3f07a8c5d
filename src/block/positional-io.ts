// Positional reads and writes on a file descriptor, as promises, with inline fast paths.
//
// Node does positional file I/O through libuv's thread pool: the request is queued, a pool
// thread makes the syscall, and the result comes back to the event loop through an async handle.
// For a 4 KiB request that the page cache answers (tmpfs, a warm file, a buffered write) the
// syscall itself takes a microsecond or two, while the hand-offs cost the event loop several
// times that; on a small node the event loop is what limits an NBD server's IOPS. So small
// requests are made synchronously on the calling thread when that cannot hold it for long:
//
// - NowaitIo, for files on disk filesystems and block devices (a disk may hang): a call goes
//   inline only with RWF_NOWAIT (nowait-io.ts), which the kernel answers from the page cache or
//   refuses with EAGAIN at once (a read first asks cachestat whether all its pages are cached,
//   since a refused RWF_NOWAIT read still starts readahead); a refused call goes to `slow`, the pool under the member's
//   deadline (deadline-io.ts), which fails the member when its disk stops answering. Reads take
//   the flag on ext4, xfs and block devices; buffered writes only where the filesystem takes it
//   (xfs; ext4 answers EOPNOTSUPP on Linux 6.18), elsewhere every write goes to `slow`. Without
//   koffi there is no NowaitIo and every request goes to `slow`: never an unbounded inline call.
// - InlineIo, for files in memory (tmpfs, ramfs), where nothing waits for a device and RWF_NOWAIT
//   is refused: plain readSync/writevSync while the calls are fast, the pool again as soon as
//   they are not (swap, memory pressure). The price of a wrong guess is bounded: a slow inline
//   call blocks the event loop once, and the policy then stays on the pool for a back-off period
//   that doubles (up to MAX_BACKOFF_MS) each time a probe after it is slow too.
//
// This is the same bet io_uring makes when it tries a request inline before punting it to a
// worker. LLRAID_INLINE_IO=0 (setInlineIoDefault) turns both fast paths off.

import { readSync, writeSync, writevSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { UNSUPPORTED, type NowaitCalls } from './nowait-io.js';
import { readP, writeP, writevP } from '../common/callback-fs.js';

export function byteLength(parts: readonly Uint8Array[]): number {
  let n = 0;
  for (const p of parts) n += p.length;
  return n;
}

/** Positional I/O on a descriptor: `n` bytes moved, resolved when done. */
export interface PositionalIo {
  read(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number>;
  write(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number>;
  /** One gathering write of `parts`, in order, at `pos`. */
  writev(fd: number, parts: readonly Uint8Array[], pos: number): Promise<number>;
}

/** A PositionalIo that may also make a small request on this thread now (FileDevice's readNow/writeNow). */
export interface InlinePositionalIo extends PositionalIo {
  /** A read on this thread now, if allowed: bytes read (0 at the end of the file), or undefined (nothing done). Throws its errno. */
  readNow(fd: number, buf: Uint8Array, off: number, len: number, pos: number): number | undefined;
  /** A gathering write on this thread now, if allowed: bytes written, or undefined (nothing done). Throws its errno. */
  writevNow(fd: number, parts: readonly Uint8Array[], pos: number): number | undefined;
  /** Calls made inline, for tests and curiosity. */
  readonly stats: { inline: number };
}

/** Every request through libuv's pool. */
export const POOL_IO: PositionalIo = { read: readP, write: writeP, writev: writevP };

/** Requests larger than this always use the pool: copying them is slow enough to keep a thread busy. */
export const MAX_INLINE_BYTES = 64 * 1024;
/**
 * An inline call slower than this was not answered from memory. A page-cache copy of 64 KiB
 * takes well under 20 µs; a read from even a fast NVMe drive takes 50 µs or more.
 */
const SLOW_MS = 0.05;
/**
 * A single call this slow switches to the pool at once (a disk that stalls). Well above a
 * scheduler time slice: on a busy node a fast call can be preempted for several milliseconds,
 * and the clock cannot tell that from waiting for a disk.
 */
const STALL_MS = 50;
/** Inline calls are judged in windows of this many; more than SLOW_PER_WINDOW slow ones switch. */
const WINDOW = 64;
const SLOW_PER_WINDOW = 8;
const INITIAL_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 60_000;

/**
 * Chooses, per request, between a synchronous syscall on this thread and libuv's pool, from how
 * fast recent inline calls were. One per file descriptor's device (a FileDevice).
 *
 * Invariant: `poolUntil` is 0 while inline calls are allowed; otherwise the clock
 * time before which every request goes to the pool.
 */
export class InlineIo implements InlinePositionalIo {
  private poolUntil = 0;
  private backoffMs = INITIAL_BACKOFF_MS;
  private calls = 0;
  private slow = 0;
  /** Inline calls made and switches to the pool, for tests and curiosity. */
  readonly stats = { inline: 0, switches: 0 };

  /** `now` is a clock in milliseconds (tests pass their own). */
  constructor(private readonly now: () => number = () => performance.now()) {}

  read(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
    return this.attempt(len, () => readSync(fd, buf, off, len, pos), () => readP(fd, buf, off, len, pos));
  }

  write(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
    return this.attempt(len, () => writeSync(fd, buf, off, len, pos), () => writeP(fd, buf, off, len, pos));
  }

  writev(fd: number, parts: readonly Uint8Array[], pos: number): Promise<number> {
    return this.attempt(byteLength(parts), () => writevSync(fd, parts as Uint8Array[], pos), () => writevP(fd, parts, pos));
  }

  // readNow and writevNow time their call themselves rather than through inlineCall: a closure
  // per request was garbage on every 4 KiB request of every engine.

  /** A read on this thread now, if the policy allows it: bytes read, or undefined (nothing done). Throws its errno. */
  readNow(fd: number, buf: Uint8Array, off: number, len: number, pos: number): number | undefined {
    if (len > MAX_INLINE_BYTES || !this.allowed()) return undefined;
    const t0 = this.now();
    const n = readSync(fd, buf, off, len, pos);
    this.observe(this.now() - t0);
    return n;
  }

  /** A gathering write on this thread now, if the policy allows it: bytes written, or undefined (nothing done). */
  writevNow(fd: number, parts: readonly Uint8Array[], pos: number): number | undefined {
    const len = parts.length === 1 ? parts[0]!.length : byteLength(parts);
    if (len > MAX_INLINE_BYTES || !this.allowed()) return undefined;
    const t0 = this.now();
    // One part (an NBD WRITE's payload): writeSync, 0.2-0.3 µs less than writevSync for 4 KiB on tmpfs.
    const n = parts.length === 1 ? writeSync(fd, parts[0]!, 0, len, pos) : writevSync(fd, parts as Uint8Array[], pos);
    this.observe(this.now() - t0);
    return n;
  }

  /** `inline` on this thread, timed, when `len` is small and the policy allows; else undefined. */
  private inlineCall(len: number, inline: () => number): number | undefined {
    if (len > MAX_INLINE_BYTES || !this.allowed()) return undefined;
    const t0 = this.now();
    const n = inline();
    this.observe(this.now() - t0);
    return n;
  }

  /** `inline` when the policy allows (inlineCall), else `pooled`. */
  private attempt(len: number, inline: () => number, pooled: () => Promise<number>): Promise<number> {
    let n: number | undefined;
    try {
      n = this.inlineCall(len, inline);
    } catch (err) {
      return Promise.reject(err);
    }
    return n === undefined ? pooled() : Promise.resolve(n);
  }

  /** True while small requests go inline (asked after a back-off, it starts the probe). */
  get inline(): boolean {
    return this.allowed();
  }

  private allowed(): boolean {
    if (this.poolUntil === 0) return true;
    if (this.now() < this.poolUntil) return false;
    // Back-off over: the next call is a probe, judged on its own.
    this.poolUntil = 0;
    this.calls = WINDOW - 1;
    this.slow = SLOW_PER_WINDOW;
    return true;
  }

  private observe(ms: number): void {
    this.stats.inline++;
    if (ms > SLOW_MS) this.slow++;
    if (ms > STALL_MS || this.slow > SLOW_PER_WINDOW) {
      this.poolUntil = this.now() + this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
      this.stats.switches++;
      this.calls = 0;
      this.slow = 0;
      return;
    }
    if (++this.calls >= WINDOW) {
      // A whole window was fast: a later slow spell starts its back-off from the beginning.
      if (this.slow === 0) this.backoffMs = INITIAL_BACKOFF_MS;
      this.calls = 0;
      this.slow = 0;
    }
  }
}

/**
 * Small requests with RWF_NOWAIT on this thread, everything the kernel will not answer at once
 * through `slow` (a DeadlineIo). An operation the filesystem refuses the flag for is not tried
 * inline again. Invariant: no call on this thread can wait for a device.
 *
 * Given a loader rather than the calls, it loads them (koffi, block/libc.ts) at the first
 * readNow or writevNow, the fast paths a served volume's small requests take, and declines until
 * they are there: an engine that assembled its array and serves nothing never loads koffi, whose
 * load costs 2.3 MiB of an idle engine's RSS on disk members (`serve --file` 49.8 against 47.5 on
 * tmpfs, where no engine loads it). The load is 2-5 ms on the event loop, once. The asynchronous
 * methods never start it.
 */
export class NowaitIo implements InlinePositionalIo {
  private readsInline = true;
  private writesInline = true;
  private calls: NowaitCalls | undefined;
  private load: (() => Promise<NowaitCalls | undefined>) | undefined;
  /** Inline calls that moved bytes, and calls the kernel sent to `slow` (EAGAIN). */
  readonly stats = { inline: 0, refused: 0 };

  constructor(
    calls: NowaitCalls | (() => Promise<NowaitCalls | undefined>),
    readonly slow: PositionalIo,
  ) {
    if (typeof calls === 'function') this.load = calls;
    else this.calls = calls;
  }

  /**
   * False once nothing can go inline (the calls could not be loaded, or the filesystem refused
   * both operations): every request then goes through `slow`.
   */
  get available(): boolean {
    return this.readsInline || this.writesInline;
  }

  read(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
    let n: number | undefined;
    try {
      n = this.calls === undefined ? undefined : this.readNow(fd, buf, off, len, pos);
    } catch (err) {
      return Promise.reject(err);
    }
    return n === undefined ? this.slow.read(fd, buf, off, len, pos) : Promise.resolve(n);
  }

  write(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
    return this.writevOr(fd, [buf.subarray(off, off + len)], pos, () => this.slow.write(fd, buf, off, len, pos));
  }

  writev(fd: number, parts: readonly Uint8Array[], pos: number): Promise<number> {
    return this.writevOr(fd, parts, pos, () => this.slow.writev(fd, parts, pos));
  }

  readNow(fd: number, buf: Uint8Array, off: number, len: number, pos: number): number | undefined {
    if (!this.readsInline || len > MAX_INLINE_BYTES) return undefined;
    if (this.calls === undefined) return this.startLoad();
    return this.outcome(this.calls.read(fd, buf, off, len, pos), () => (this.readsInline = false));
  }

  writevNow(fd: number, parts: readonly Uint8Array[], pos: number): number | undefined {
    if (!this.writesInline || byteLength(parts) > MAX_INLINE_BYTES) return undefined;
    if (this.calls === undefined) return this.startLoad();
    return this.outcome(this.calls.writev(fd, parts, pos), () => (this.writesInline = false));
  }

  /** Starts loading the calls (once); this request goes the other way. Without them, nothing goes inline. */
  private startLoad(): undefined {
    const load = this.load;
    this.load = undefined;
    const none = (): void => {
      this.readsInline = this.writesInline = false;
    };
    void load?.().then((calls) => (calls === undefined ? none() : (this.calls = calls)), none);
    return undefined;
  }

  private writevOr(fd: number, parts: readonly Uint8Array[], pos: number, pooled: () => Promise<number>): Promise<number> {
    let n: number | undefined;
    try {
      n = this.calls === undefined ? undefined : this.writevNow(fd, parts, pos);
    } catch (err) {
      return Promise.reject(err);
    }
    return n === undefined ? pooled() : Promise.resolve(n);
  }

  private outcome(n: number, refusedForGood: () => void): number | undefined {
    if (n >= 0) {
      this.stats.inline++;
      return n;
    }
    if (n === UNSUPPORTED) refusedForGood();
    else this.stats.refused++;
    return undefined;
  }
}
