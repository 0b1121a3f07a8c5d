// Per-chunk write bookkeeping: what replaces the kernel's per-page barrier (llbitmap.md A7) in a
// single-threaded engine. For every chunk, the number of writes and discards in flight
// (startWrite..endWrite) and when it was last active (a write ended, or it became Dirty). The
// daemon cleans a Dirty chunk on its own when none is in flight and it has been idle for
// barrier_idle, so one busy chunk no longer keeps the 4096 chunks of its page Dirty.
//
// Why this keeps every ordering invariant of the bitmap (docs/architecture.md, "The llbitmap
// daemon without page barriers", has the proof in full):
//  1. A chunk is Dirty on disk before its data is written: startWrite counts the chunk in flight
//     and applies Startwrite in the same synchronous turn (B-a); unplug then waits until the
//     block holding the new state is durable on every bitmap member. The daemon cannot turn the
//     chunk Clean in between: it only cleans chunks whose count is 0, and the count stays above
//     0 until endWrite, which the array calls after the data write completed.
//  2. A chunk is never Clean on disk while one of its writes is in flight, or acknowledged but
//     not yet durable: at the moment the daemon cleans a chunk (in memory) no write is in flight
//     on it, so every write it ever had has completed. The Clean reaches disk only in a
//     write-out that starts later and flushes every member's cache first (ChunkMap.cleaned, the
//     preflush of write-out.ts): those completed writes are durable before the Clean is.
//  3. A write that starts after the clean finds the chunk Clean, makes it Dirty and marks its
//     block, and its unplug waits for a write-out that snapshots the block after that change;
//     write-outs run one at a time in order, so no earlier one carrying Clean can land after it.
//  4. The check (count 0, idle, Dirty) and the change to Clean run in one synchronous turn of the
//     event loop: no startWrite can come in between. Linux needs the page barrier because a CPU
//     may start a write on the chunk while another cleans it; one thread cannot.
// The page barrier gave two more things: the daemon waited for a page to drain before a flush
// (kept: flush waits for the writes in flight on Dirty chunks, at most daemon_sleep, B-j), and
// writers waited while the daemon held a page (gone: nothing ever waits for the daemon now).

import { MdError } from '../errors.js';

/** Stamps are milliseconds modulo 2^32: a stamp 49.7 days old may look recent, which only delays a clean. */
function nowMs(): number {
  return Math.floor(performance.now()) >>> 0;
}

/** Far enough in the past that any barrier_idle (at most 2^31-1 ms, options.ts) has passed. */
const LONG_AGO = 0x80000000;

export class ChunkActivity {
  /** Writes and discards in flight per chunk. */
  private writing: Uint32Array;
  /** When each chunk was last active (ms, modulo 2^32). */
  private stamp: Uint32Array;
  /** Waiting for some chunk's last write in flight to end (flush, daemon.ts); wakes them all. */
  private waiters: ((ended: boolean) => void)[] = [];

  constructor(chunks: number) {
    this.writing = new Uint32Array(chunks);
    this.stamp = new Uint32Array(chunks);
  }

  /** The bitmap was resized (no I/O in flight): every chunk starts with no history. */
  resize(chunks: number): void {
    this.writing = new Uint32Array(chunks);
    this.stamp = new Uint32Array(chunks).fill((nowMs() - LONG_AGO) >>> 0);
  }

  /** A write or discard on chunks [first, last] starts. */
  begin(first: number, last: number): void {
    const w = this.writing;
    for (let c = first; c <= last; c++) w[c]!++;
  }

  /**
   * A write or discard on chunks [first, last] ended: they are active now. False (and nothing
   * changed) when one of them had nothing in flight: an end without its start.
   */
  end(first: number, last: number): boolean {
    const w = this.writing;
    for (let c = first; c <= last; c++) if (w[c] === 0) return false;
    const now = nowMs();
    let drained = false;
    for (let c = first; c <= last; c++) {
      if (--w[c]! === 0) drained = true;
      this.stamp[c] = now;
    }
    if (drained && this.waiters.length > 0) this.wake(true);
    return true;
  }

  inFlight(chunk: number): boolean {
    return this.writing[chunk] !== 0;
  }

  /** The chunk became Dirty: the idle time counts from now. */
  touch(chunk: number): void {
    this.stamp[chunk] = nowMs();
  }

  /** The chunks may be cleaned without waiting for barrier_idle (a finished sync pass). */
  expire(first: number, last: number): void {
    this.stamp.fill((nowMs() - LONG_AGO) >>> 0, first, last + 1);
  }

  /** Whether nothing is in flight on the chunk and it has been idle for `idleMs`. */
  cleanable(chunk: number, idleMs: number, now: number): boolean {
    return this.writing[chunk] === 0 && ((now - this.stamp[chunk]!) >>> 0) >= idleMs;
  }

  now(): number {
    return nowMs();
  }

  /**
   * Resolves true when some chunk's last write in flight ends, false after `timeoutMs` or on
   * cancel (close). Not unref'd: a flush waiting here must end even if nothing else runs.
   */
  waitForEnd(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(false), timeoutMs);
      const done = (ended: boolean): void => {
        clearTimeout(timer);
        const i = this.waiters.indexOf(done);
        if (i !== -1) this.waiters.splice(i, 1);
        resolve(ended);
      };
      this.waiters.push(done);
    });
  }

  /** Ends every waitForEnd at once (shutdown): they resolve false. */
  cancelWaits(): void {
    this.wake(false);
  }

  private wake(ended: boolean): void {
    for (const w of this.waiters.splice(0)) w(ended);
  }
}

export function unmatchedEnd(what: string, first: number, last: number): MdError {
  return new MdError('EINVAL', `llbitmap: ${what}: expected a matching start on chunks ${first}..${last}, found none in flight`);
}
