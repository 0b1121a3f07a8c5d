// This node's Lease, renewed every R, and the deadline until which its replicated engines may
// acknowledge writes. The keeper rule (docs/architecture.md, "Ownership, leases and the API
// server"): a renewal sent at local monotonic time t_sent whose answer arrives BEFORE the
// current deadline moves the deadline to t_sent + D - margin. An answer that arrives after it (a
// lapse: another node may have seen the Lease expire meanwhile and taken volumes over) renews
// the Lease but is reported with afterLapse=true, so the caller re-checks each volume's owner
// before telling its engine. Only this process's monotonic clock is read; renewTime in the
// Lease is for people.

import { performance } from 'node:perf_hooks';
import { backoffDelay } from './backoff.js';
import { K8sError } from './errors.js';
import type { LeaseApi } from './lease-api.js';
import type { LeaseKeeper } from './replication.js';

export interface LeaseKeeperOptions {
  /** This node's name: the Lease is llraid-node-<node>, holderIdentity <node>. */
  node: string;
  /** D: leaseDurationSeconds, what observers wait before counting the Lease expired (chart nodeLease.durationSeconds). */
  durationSeconds: number;
  /** R: seconds between renewals (chart nodeLease.renewSeconds); may be fractional. */
  renewSeconds: number;
  /** `<host>:<port>` of this node's member service, written as the annotation llraid.io/member-service. */
  memberService: string;
  /** A renewal with no answer within this long counts as failed (default R, at least 1 s). */
  requestTimeoutMs?: number;
  /** Told about every failed renewal (the keeper retries by itself); for logs. */
  onError?: (err: K8sError) => void;
  /** Monotonic milliseconds (default performance.now). */
  now?: () => number;
  /** Runs fn after ms; returns a cancel (default setTimeout). */
  schedule?: (fn: () => void, ms: number) => () => void;
  random?: () => number;
}

/** margin = max(2 s, D/4): covers clock rate differences and the time to tell the engines. */
export function leaseMarginMs(durationSeconds: number): number {
  return Math.max(2000, (durationSeconds * 1000) / 4);
}

const defaultSchedule = (fn: () => void, ms: number): (() => void) => {
  const t = setTimeout(fn, ms);
  return () => clearTimeout(t);
};

export class KubeLeaseKeeper implements LeaseKeeper {
  /** Monotonic ms until which engines may acknowledge writes; -Infinity = never held (a lapse). */
  private deadline = -Infinity;
  private readonly callbacks: Array<(validForMs: number, afterLapse: boolean) => void> = [];
  private readonly now: () => number;
  private readonly schedule: (fn: () => void, ms: number) => () => void;
  private cancel: (() => void) | undefined;
  private stopped = false;
  private started = false;
  private failures = 0;
  private readonly validityMs: number;
  private readonly renewMs: number;

  constructor(private readonly api: LeaseApi, private readonly o: LeaseKeeperOptions) {
    const d = o.durationSeconds;
    if (!Number.isSafeInteger(d) || d < 1) throw new K8sError('EINVAL', `node lease: durationSeconds: expected an integer ≥ 1, found ${String(d)}`);
    this.validityMs = d * 1000 - leaseMarginMs(d);
    this.renewMs = o.renewSeconds * 1000;
    // A renewal must be able to land before the deadline it extends, with time for a retry.
    if (!(this.renewMs > 0) || this.renewMs >= this.validityMs) {
      throw new K8sError('EINVAL', `node lease: renewSeconds: expected more than 0 and less than durationSeconds - max(2, durationSeconds/4) = ${this.validityMs / 1000}, found ${String(o.renewSeconds)}`);
    }
    if (!o.memberService) throw new K8sError('EINVAL', `node lease: memberService: expected <host>:<port>, found ${JSON.stringify(o.memberService)}`);
    this.now = o.now ?? (() => performance.now());
    this.schedule = o.schedule ?? defaultSchedule;
  }

  validForMs(): number {
    return Math.max(0, this.deadline - this.now());
  }

  onRenewed(cb: (validForMs: number, afterLapse: boolean) => void): void {
    this.callbacks.push(cb);
  }

  /**
   * Renews until the first renewal succeeds (retrying with backoff), then keeps renewing every R.
   * The first renewal counts as the end of a lapse: engines that outlived a plugin restart are
   * extended only after the caller re-checked their volumes' owners.
   */
  async start(): Promise<void> {
    if (this.started) throw new K8sError('EINVAL', 'node lease: start: expected a keeper not started yet, found it started');
    this.started = true;
    while (!this.stopped) {
      const sent = this.now();
      if (await this.renew()) {
        this.plan(Math.max(0, sent + this.renewMs - this.now()));
        return;
      }
      // stop() ends this wait too, so that start() rejects instead of hanging.
      await new Promise<void>((resolve) => {
        const cancelTimer = this.schedule(resolve, this.retryDelay());
        this.cancel = () => {
          cancelTimer();
          resolve();
        };
      });
    }
    throw new K8sError('ECLOSED', `node lease: the keeper of ${this.o.node} was stopped before its first renewal`);
  }

  /** Stops renewing. The Lease stays: observers see it expire after D, engines lapse at the deadline. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.cancel?.();
    this.cancel = undefined;
  }

  private retryDelay(): number {
    const base = Math.min(1000, this.renewMs);
    return backoffDelay({ baseMs: base, maxMs: this.renewMs }, this.failures, this.o.random);
  }

  private plan(ms: number): void {
    if (this.stopped) return;
    this.cancel = this.schedule(() => void this.tick(), ms);
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    const sent = this.now();
    const ok = await this.renew();
    // The next renewal R after this one was sent, so the cadence does not drift by the round trip.
    this.plan(ok ? Math.max(0, sent + this.renewMs - this.now()) : this.retryDelay());
  }

  /** One renewal; true when the API server took it. Applies the keeper rule to the deadline. */
  private async renew(): Promise<boolean> {
    const sent = this.now();
    const timeoutMs = this.o.requestTimeoutMs ?? Math.max(1000, this.renewMs);
    let timer: (() => void) | undefined;
    try {
      await Promise.race([
        this.api.renew(this.o.node, { durationSeconds: this.o.durationSeconds, memberService: this.o.memberService, renewTime: new Date() }),
        new Promise<never>((_, reject) => {
          timer = this.schedule(() => reject(new K8sError('EUNREACHABLE', `renew lease of ${this.o.node}: no answer within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } catch (err) {
      this.failures++;
      const e = err instanceof K8sError ? err : new K8sError('EUNREACHABLE', `renew lease of ${this.o.node}: ${err instanceof Error ? err.message : String(err)}`, undefined, { cause: err });
      try {
        this.o.onError?.(e);
      } catch {
        // A logger that throws must not stop the renewals.
      }
      return false;
    } finally {
      timer?.();
    }
    this.failures = 0;
    const answered = this.now();
    const extended = sent + this.validityMs;
    if (this.stopped) return true;
    if (answered < this.deadline) {
      // In time: no observer can have counted the Lease expired (see the file's comment).
      if (extended > this.deadline) this.deadline = extended;
      this.tell(false);
    } else {
      // A lapse is over. The Lease is ours again from t_sent, but volumes may have moved: the
      // caller decides per volume. An answer later than the whole validity extends nothing.
      this.deadline = Math.max(this.deadline, extended);
      if (extended > answered) this.tell(true);
    }
    return true;
  }

  private tell(afterLapse: boolean): void {
    const valid = this.validForMs();
    for (const cb of this.callbacks) {
      try {
        cb(valid, afterLapse);
      } catch (err) {
        this.o.onError?.(new K8sError('EINVAL', `node lease: an onRenewed callback threw: ${err instanceof Error ? err.message : String(err)}`, undefined, { cause: err }));
      }
    }
  }
}
