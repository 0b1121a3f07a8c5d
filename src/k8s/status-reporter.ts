// Keeps each volume's RaidVolume object and Events in the cluster in step with the snapshots
// the CSI layer feeds it. update() only records the snapshot and queues Events (it never waits
// on the network, so the I/O path never blocks on the API server); one background worker
// writes, at most once per minInterval per volume, retrying failures with backoff.
//
// Interface for the CSI layer (it owns the md array and maps its status() to VolumeStatus):
//   const reporter = new StatusReporter(new KubeClusterApi(), { node });
//   reporter.update(snapshot)  on every state change and periodically while a sync runs
//   reporter.remove(name)      after DeleteVolume (the RaidVolume is deleted)
//   await reporter.close()     on shutdown (writes what is pending, bounded by a timeout)

import type { ClusterApi } from './cluster-api.js';
import { K8sError } from './errors.js';
import { eventObject, type ObjectRef } from './event-object.js';
import { backoffDelay, type BackoffPolicy } from './backoff.js';
import { conditionsFor, raidVolumeSpec, raidVolumeStatus, RAID_VOLUME_API_VERSION, RAID_VOLUME_KIND, type Condition } from './raid-volume.js';
import { checkVolumeStatus, type VolumeStatus } from './volume-status.js';
import { volumeEvents, type VolumeEvent } from './volume-events.js';

export interface ReporterOptions {
  /** This node's name: the Events' reporting instance. */
  node: string;
  /** Least time between two status writes of one volume (default 5 s). */
  minIntervalMs?: number;
  /** Retry delays after failed writes (default 500 ms doubling to 60 s). */
  backoff?: BackoffPolicy;
  /** Events per volume allowed in a burst (default 10) ... */
  eventBurst?: number;
  /** ... and one more allowed per this many ms (default 30 s). Beyond that they are dropped. */
  eventRefillMs?: number;
  /** Bound on queued Event writes; the oldest are dropped past it (default 1000). */
  maxQueuedEvents?: number;
  /** Attempts per Event write before it is dropped (default 6). */
  eventAttempts?: number;
  /** Told about every failed API call (the reporter itself retries); for logs. */
  onError?: (err: K8sError) => void;
  now?: () => number;
  random?: () => number;
}

export interface ReporterStats {
  statusWrites: number;
  eventsWritten: number;
  /** Dropped by the rate limit, the queue bound, exhausted retries, or a missing PVC/PV. */
  eventsDropped: number;
  apiErrors: number;
  pendingEvents: number;
}

type Target = 'raidvolume' | 'pvc' | 'pv';

interface QueuedEvent {
  volume: string;
  target: Target;
  event: VolumeEvent;
  at: number;
  attempts: number;
  retryAt: number;
}

interface Tracked {
  latest: VolumeStatus;
  /** statusKey of the snapshot last written; differs from latest's ⇔ a write is due. */
  writtenKey?: string;
  specKey?: string;
  /** The RaidVolume's uid; known ⇔ the object was applied since the reporter started. */
  uid?: string;
  conditions: Condition[];
  lastWriteAt: number;
  failures: number;
  retryAt: number;
  tokens: number;
  tokensAt: number;
  /** Cached uids of the PVC and PV; null = looked up and absent. */
  pvcUid?: string | null;
  pvUid?: string | null;
  removed: boolean;
}

type Step = { run: () => Promise<void> } | { waitMs: number } | null;

/**
 * What of a snapshot the RaidVolume shows: I/O counters and member error counts are metrics
 * only, so a busy volume whose state does not change causes no status writes.
 */
function statusKey(s: VolumeStatus): string {
  return JSON.stringify({ ...s, io: undefined, members: s.members.map((m) => ({ ...m, errors: undefined })) });
}

export class StatusReporter {
  private readonly volumes = new Map<string, Tracked>();
  private queue: QueuedEvent[] = [];
  private readonly o: Required<Omit<ReporterOptions, 'onError'>> & Pick<ReporterOptions, 'onError'>;
  private busy = false;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private idleWaiters: Array<() => void> = [];
  private readonly counters = { statusWrites: 0, eventsWritten: 0, eventsDropped: 0, apiErrors: 0 };

  constructor(private readonly api: ClusterApi, options: ReporterOptions) {
    this.o = {
      minIntervalMs: 5_000,
      backoff: { baseMs: 500, maxMs: 60_000 },
      eventBurst: 10,
      eventRefillMs: 30_000,
      maxQueuedEvents: 1000,
      eventAttempts: 6,
      now: Date.now,
      random: Math.random,
      ...options,
    };
    if (!(this.o.minIntervalMs >= 0) || !(this.o.eventBurst >= 1) || !(this.o.eventRefillMs > 0) || !(this.o.maxQueuedEvents >= 1)) {
      throw new K8sError('EINVAL', `reporter options: expected minIntervalMs ≥ 0, eventBurst ≥ 1, eventRefillMs > 0, maxQueuedEvents ≥ 1, found ${JSON.stringify(options)}`);
    }
  }

  /**
   * Records a snapshot and queues the Events it implies (compared with the previous snapshot of
   * the same volume). Synchronous and cheap; throws only K8sError EINVAL for a bad snapshot.
   */
  update(snapshot: VolumeStatus): void {
    if (this.closed) throw new K8sError('ECLOSED', `status reporter: expected an open reporter for update of ${snapshot.name}, found it closed`);
    const s = structuredClone(checkVolumeStatus(snapshot));
    const now = this.o.now();
    let t = this.volumes.get(s.name);
    const prev = t && !t.removed ? t.latest : undefined;
    // The last sync is history: a snapshot that does not know it (the volume's engine restarted
    // or stopped) keeps the one reported before, so `kubectl describe` still tells it.
    if (!s.lastSync && prev?.lastSync) s.lastSync = prev.lastSync;
    if (!t || t.removed) {
      t = { latest: s, conditions: [], lastWriteAt: -Infinity, failures: 0, retryAt: 0, tokens: this.o.eventBurst, tokensAt: now, removed: false };
      this.volumes.set(s.name, t);
    }
    // A new claim or PV name means new objects to attach Events to.
    if (prev && (prev.claim?.name !== s.claim?.name || prev.claim?.namespace !== s.claim?.namespace)) t.pvcUid = undefined;
    if (prev && prev.persistentVolume !== s.persistentVolume) t.pvUid = undefined;
    t.latest = s;
    for (const ev of volumeEvents(prev, s)) this.enqueue(t, s, ev, now);
    this.wake();
  }

  /** Forgets a volume and deletes its RaidVolume (retried like every write). */
  remove(name: string): void {
    const t = this.volumes.get(name);
    if (!t) return;
    t.removed = true;
    t.failures = 0;
    t.retryAt = 0;
    this.wake();
  }

  stats(): ReporterStats {
    return { ...this.counters, pendingEvents: this.queue.length };
  }

  /** Resolves true once nothing is pending, false if that has not happened within timeoutMs. */
  flush(timeoutMs = 30_000): Promise<boolean> {
    if (this.isIdle()) return Promise.resolve(true);
    this.wake();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.idleWaiters = this.idleWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.idleWaiters.push(done);
    });
  }

  /** Writes what is pending (up to timeoutMs), then stops the worker. */
  async close(timeoutMs = 5_000): Promise<void> {
    if (this.closed) return;
    await this.flush(timeoutMs);
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private enqueue(t: Tracked, s: VolumeStatus, event: VolumeEvent, now: number): void {
    // Token bucket per volume: a flapping member cannot flood the API server with Events.
    const refill = Math.floor((now - t.tokensAt) / this.o.eventRefillMs);
    if (refill > 0) {
      t.tokens = Math.min(this.o.eventBurst, t.tokens + refill);
      t.tokensAt += refill * this.o.eventRefillMs;
    }
    if (t.tokens < 1) {
      this.counters.eventsDropped++;
      return;
    }
    t.tokens--;
    const targets: Target[] = ['raidvolume'];
    if (s.claim) targets.push('pvc');
    if (s.persistentVolume) targets.push('pv');
    for (const target of targets) this.queue.push({ volume: s.name, target, event, at: now, attempts: 0, retryAt: 0 });
    while (this.queue.length > this.o.maxQueuedEvents) {
      this.queue.shift();
      this.counters.eventsDropped++;
    }
  }

  private isIdle(): boolean {
    if (this.queue.length > 0) return false;
    for (const t of this.volumes.values()) if (t.removed || t.writtenKey !== statusKey(t.latest)) return false;
    return true;
  }

  private wake(delayMs = 0): void {
    if (this.closed || this.busy) return; // a running worker re-plans after every step
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.work();
    }, delayMs);
  }

  private async work(): Promise<void> {
    if (this.busy || this.closed) return;
    this.busy = true;
    let next: Step;
    try {
      while (!this.closed && (next = this.plan(this.o.now())) && 'run' in next) await next.run();
    } finally {
      this.busy = false;
    }
    if (this.closed) return;
    const step = this.plan(this.o.now());
    if (step && 'waitMs' in step) this.wake(step.waitMs);
    else if (step) this.wake();
    else {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** The next thing to do now, or how long until something is due, or null when idle. */
  private plan(now: number): Step {
    let soonest = Infinity;
    for (const [name, t] of this.volumes) {
      if (!t.removed) continue;
      if (t.retryAt > now) { soonest = Math.min(soonest, t.retryAt); continue; }
      return { run: () => this.deleteVolume(name, t) };
    }
    // Events of one volume keep their order: one waiting for a retry holds back the later ones.
    const held = new Set<string>();
    for (const q of this.queue) {
      if (held.has(q.volume)) continue;
      if (q.retryAt > now) {
        soonest = Math.min(soonest, q.retryAt);
        held.add(q.volume);
        continue;
      }
      return { run: () => this.writeEvent(q) };
    }
    for (const [name, t] of this.volumes) {
      if (t.writtenKey === statusKey(t.latest)) continue;
      const due = Math.max(t.lastWriteAt + this.o.minIntervalMs, t.retryAt);
      if (due > now) { soonest = Math.min(soonest, due); continue; }
      return { run: () => this.writeStatus(name, t) };
    }
    return soonest === Infinity ? null : { waitMs: Math.max(1, soonest - now) };
  }

  private failed(err: unknown): K8sError {
    const e = err instanceof K8sError ? err : new K8sError('EAPI', `status reporter: ${err instanceof Error ? err.message : String(err)}`, undefined, { cause: err });
    this.counters.apiErrors++;
    this.o.onError?.(e);
    return e;
  }

  private async deleteVolume(name: string, t: Tracked): Promise<void> {
    try {
      await this.api.deleteRaidVolume(name);
      // Only forget it if no update() revived the volume while the delete was in flight.
      if (this.volumes.get(name) === t && t.removed) this.volumes.delete(name);
    } catch (err) {
      this.failed(err);
      t.failures++;
      t.retryAt = this.o.now() + backoffDelay(this.o.backoff, t.failures, this.o.random);
    }
  }

  private async applySpec(t: Tracked): Promise<void> {
    const spec = raidVolumeSpec(t.latest);
    const key = JSON.stringify(spec);
    if (t.uid && t.specKey === key) return;
    t.uid = await this.api.applyRaidVolume(spec);
    t.specKey = key;
  }

  private async writeStatus(name: string, t: Tracked): Promise<void> {
    const snapshot = t.latest;
    const key = statusKey(snapshot);
    try {
      await this.applySpec(t);
      const now = this.o.now();
      const conditions = conditionsFor(snapshot, t.conditions, new Date(now));
      await this.api.applyRaidVolumeStatus(name, raidVolumeStatus(snapshot, conditions, new Date(now)));
      t.conditions = conditions;
      t.writtenKey = key;
      // From the end of this write: the next one starts at least minInterval after it finished.
      t.lastWriteAt = this.o.now();
      t.failures = 0;
      this.counters.statusWrites++;
    } catch (err) {
      const e = this.failed(err);
      // Someone deleted the object (or the CRD was reinstalled): apply it again next time.
      if (e.status === 404) t.uid = undefined;
      t.failures++;
      t.retryAt = this.o.now() + backoffDelay(this.o.backoff, t.failures, this.o.random);
    }
  }

  private async resolve(q: QueuedEvent, t: Tracked): Promise<ObjectRef | undefined> {
    const s = t.latest;
    if (q.target === 'raidvolume') {
      await this.applySpec(t);
      return { apiVersion: RAID_VOLUME_API_VERSION, kind: RAID_VOLUME_KIND, name: s.name, uid: t.uid as string };
    }
    if (q.target === 'pvc' && s.claim) {
      if (t.pvcUid === undefined) t.pvcUid = (await this.api.uidOf('PersistentVolumeClaim', s.claim.name, s.claim.namespace)) ?? null;
      return t.pvcUid ? { apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: s.claim.name, namespace: s.claim.namespace, uid: t.pvcUid } : undefined;
    }
    if (q.target === 'pv' && s.persistentVolume) {
      if (t.pvUid === undefined) t.pvUid = (await this.api.uidOf('PersistentVolume', s.persistentVolume)) ?? null;
      return t.pvUid ? { apiVersion: 'v1', kind: 'PersistentVolume', name: s.persistentVolume, uid: t.pvUid } : undefined;
    }
    return undefined;
  }

  private async writeEvent(q: QueuedEvent): Promise<void> {
    const t = this.volumes.get(q.volume);
    const drop = () => {
      this.queue = this.queue.filter((x) => x !== q);
    };
    if (!t) {
      drop();
      this.counters.eventsDropped++;
      return;
    }
    try {
      const ref = await this.resolve(q, t);
      if (!ref) {
        // The PVC or PV does not exist (any more): nothing to attach the Event to.
        drop();
        this.counters.eventsDropped++;
        return;
      }
      await this.api.createEvent(eventObject(ref, q.event, this.o.node, new Date(q.at)));
      drop();
      this.counters.eventsWritten++;
    } catch (err) {
      const e = this.failed(err);
      if (e.status === 404 && q.target === 'raidvolume') t.uid = undefined;
      q.attempts++;
      if (q.attempts >= this.o.eventAttempts) {
        drop();
        this.counters.eventsDropped++;
      } else {
        q.retryAt = this.o.now() + backoffDelay(this.o.backoff, q.attempts, this.o.random);
      }
    }
  }
}
