// The lease gate: an engine that serves a replicated volume acknowledges writes only while it
// holds a lease (DESIGN.md §8, docs/architecture.md "Engines acknowledge writes only under a
// lease"). Another node takes the volume over once this node's lease has expired as it observes
// it; from then on nothing this engine acknowledges may be lost, so it must have stopped
// acknowledging before. The deadline is on this process's monotonic clock (performance.now):
// wall clocks of two nodes are never compared, and a step of this node's wall clock moves nothing.
//
// Past the deadline, writes, flushes, discards and zeroings are held, not failed: a lapse is
// usually a slow API server or a renewal that came late, and the node plugin extends the lease
// again once it has checked that this node still owns the volume. Failing them would turn every
// such hiccup into I/O errors under the pod's filesystem (ext4 goes read-only on the first one).
// A request that was already running when the deadline passed finishes on the members, but its
// acknowledgement waits too: an answer after the deadline is exactly what the lease forbids.
// Held requests run (in the order they came) when the deadline is extended; they fail with EIO
// when the gate is shut (the array fenced, the engine stopping), and then never reach a member.
// Reads are never held: they change nothing another engine could lose.
//
// Memory held is bounded by the NBD server, not here: a held write is a request in flight on its
// connection, and each connection stops reading once it has 256 requests or 6 MiB of payload in
// flight (nbd/connection.ts, DEFAULT_LIMITS). The engine's socket is a 0600 unix socket that
// only the node's NBD client opens, with a few connections.

import { performance } from 'node:perf_hooks';
import type { WriteOptions, ZeroOptions } from '../block/block-device.js';
import { InvalidRequestError, IoError, type BlockError } from '../block/errors.js';
import { FilterDevice } from '../block/filter-device.js';
import type { BlockDevice } from '../block/block-device.js';

/** What `status` reports of the lease. */
export interface LeaseStatus {
  /** ms until the deadline; 0 once it has passed. */
  validForMs: number;
  /** Requests not acknowledged because of the lapse: waiting to run, or run and waiting to be answered. */
  held: number;
  /** Payload bytes of the held writes that have not run. */
  heldBytes: number;
}

/** What the gate reports as it happens (the engine turns them into its events). */
export type LeaseChange =
  /** The deadline passed: nothing more is acknowledged until the lease is extended. */
  | { type: 'lease-lapsed' }
  /** The lease was extended after a lapse: `released` held requests run (or are answered) now. */
  | { type: 'lease-renewed'; released: number; lapsedMs: number; validForMs: number };

export interface LeaseGateOptions {
  /** The first lease: the deadline is this many ms after the gate is made. */
  leaseMs: number;
  onChange: (e: LeaseChange) => void;
}

/** The longest lease a request may grant: a day; a deadline further out is a mistake. */
export const MAX_LEASE_MS = 86_400_000;

interface HeldRequest {
  bytes: number;
  run: () => void;
  fail: (err: BlockError) => void;
}

export class LeaseGate extends FilterDevice {
  private deadline: number;
  /** When the current lapse began (the deadline that passed), once it has been noticed. */
  private lapsedAt: number | undefined;
  /** Requests that arrived past the deadline, in order; none of them has reached `inner`. */
  private queue: HeldRequest[] = [];
  /** Requests done on `inner` after the deadline passed, waiting to be acknowledged. */
  private answers: HeldRequest[] = [];
  private shutBy: BlockError | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(inner: BlockDevice, private readonly options: LeaseGateOptions) {
    super(inner);
    checkLeaseMs(options.leaseMs);
    this.deadline = performance.now() + options.leaseMs;
    this.arm();
  }

  /** Sets the deadline to now + `ms` (0: lapses at once). After a lapse, held requests go on. */
  extend(ms: number): LeaseStatus {
    checkLeaseMs(ms);
    if (this.shutBy !== undefined) throw this.shutBy;
    const now = performance.now();
    this.noticeLapse(now);
    this.deadline = now + ms;
    if (ms > 0 && this.lapsedAt !== undefined) {
      const answers = this.answers;
      const queue = this.queue;
      this.options.onChange({ type: 'lease-renewed', released: answers.length + queue.length, lapsedMs: Math.round(now - this.lapsedAt), validForMs: ms });
      this.lapsedAt = undefined;
      this.answers = [];
      this.queue = [];
      // Answers first: those requests came before any still queued.
      for (const a of answers) a.run();
      for (const q of queue) q.run();
    }
    this.arm();
    return this.status();
  }

  /**
   * Ends the gate for good: every held request fails with EIO (those queued never reach the
   * device), and every later write-type request too. `why` is what extend() then throws.
   */
  shut(why: BlockError): void {
    if (this.shutBy !== undefined) return;
    this.shutBy = why;
    clearTimeout(this.timer);
    const held = [...this.answers, ...this.queue];
    this.answers = [];
    this.queue = [];
    for (const h of held) h.fail(this.notAcknowledged(true));
  }

  status(): LeaseStatus {
    const left = this.deadline - performance.now();
    return {
      validForMs: left > 0 ? Math.ceil(left) : 0,
      held: this.answers.length + this.queue.length,
      heldBytes: this.queue.reduce((n, q) => n + q.bytes, 0),
    };
  }

  override write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    return this.gated(data.length, () => super.write(offset, data, options));
  }

  override flush(): Promise<void> {
    return this.gated(0, () => super.flush());
  }

  override discard(offset: number, length: number): Promise<void> {
    return this.gated(0, () => super.discard(offset, length));
  }

  override writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    return this.gated(0, () => super.writeZeroes(offset, length, options));
  }

  override async close(): Promise<void> {
    this.shut(new IoError('the engine closed its device'));
    await super.close();
  }

  private gated(bytes: number, op: () => Promise<void>): Promise<void> {
    if (this.shutBy !== undefined) return Promise.reject(this.notAcknowledged(false));
    const now = performance.now();
    if (now < this.deadline) return this.answerWhenLeased(op());
    this.noticeLapse(now);
    return new Promise((resolve, reject) => {
      this.queue.push({ bytes, run: () => void this.answerWhenLeased(op()).then(resolve, reject), fail: reject });
    });
  }

  /**
   * `done`'s outcome, a success held back while the lease has lapsed (failed once the gate is
   * shut). A failure needs no lease; a success within the lease is answered even after a shut
   * (an engine stopping answers what it has in flight).
   */
  private async answerWhenLeased(done: Promise<void>): Promise<void> {
    await done;
    const now = performance.now();
    if (now < this.deadline) return;
    if (this.shutBy !== undefined) throw this.notAcknowledged(true);
    this.noticeLapse(now);
    await new Promise<void>((resolve, reject) => this.answers.push({ bytes: 0, run: resolve, fail: reject }));
  }

  /** Reports the lapse once, when first seen (by the timer or by a request that beat it). */
  private noticeLapse(now: number): void {
    if (this.lapsedAt !== undefined || now < this.deadline) return;
    this.lapsedAt = this.deadline;
    this.options.onChange({ type: 'lease-lapsed' });
  }

  /** A timer at the deadline, so a lapse is reported even when no request comes. */
  private arm(): void {
    clearTimeout(this.timer);
    const wait = this.deadline - performance.now();
    if (wait <= 0) {
      this.noticeLapse(performance.now());
      return;
    }
    // Timers may fire a little early: look again, and re-arm until the deadline has passed.
    this.timer = setTimeout(() => this.arm(), Math.ceil(wait) + 1);
    this.timer.unref();
  }

  private notAcknowledged(held: boolean): IoError {
    const why = this.shutBy!.message;
    return new IoError(held ? `held while the engine's lease had lapsed, then not acknowledged: ${why}` : `not acknowledged: ${why}`, { cause: this.shutBy });
  }
}

/** Throws EINVAL unless `ms` is a whole number of ms from 0 to MAX_LEASE_MS. */
export function checkLeaseMs(ms: number): void {
  if (!Number.isSafeInteger(ms) || ms < 0 || ms > MAX_LEASE_MS) {
    throw new InvalidRequestError(`lease: expected a whole number of ms from 0 to ${MAX_LEASE_MS}, found ${String(ms)}`);
  }
}
