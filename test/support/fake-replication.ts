// In-memory stand-ins for the replication contract (src/k8s/replication.ts), shared by the CSI
// unit tests and the two-plugin test without an API server: a ReplicationStore with real
// compare-and-swap on resourceVersion and finalizers that hold a deleted object, node liveness
// the test sets, and a LeaseKeeper the test renews or lapses by hand.

import { K8sError } from '../../src/k8s/errors.js';
import type {
  LeaseKeeper,
  NewReplicatedVolume,
  NodeLiveness,
  ReplicatedVolume,
  ReplicationStore,
  VolumeOwner,
} from '../../src/k8s/replication.js';

type Listener = (v: ReplicatedVolume, gone: boolean) => void;

export class FakeReplicationStore implements ReplicationStore {
  private readonly objects = new Map<string, ReplicatedVolume>();
  private version = 0;
  private readonly listeners = new Set<Listener>();
  /** Every call, in order ("setOwner id"), for tests that count API requests. */
  readonly calls: string[] = [];
  /** Set to make the next setOwner of an id fail with CONFLICT after bumping it (a racing writer). */
  readonly interfere = new Map<string, (v: ReplicatedVolume) => Partial<ReplicatedVolume>>();

  private copy(v: ReplicatedVolume): ReplicatedVolume {
    return structuredClone(v);
  }

  private put(v: ReplicatedVolume): ReplicatedVolume {
    const stored = { ...v, resourceVersion: String(++this.version) };
    this.objects.set(v.id, stored);
    for (const l of this.listeners) queueMicrotask(() => l(this.copy(stored), false));
    return this.copy(stored);
  }

  /** Changes an object as another writer would (the status reporter, another node). */
  touch(id: string, change: Partial<ReplicatedVolume> = {}): ReplicatedVolume {
    const v = this.objects.get(id);
    if (!v) throw new Error(`fake store: no ${id}`);
    return this.put({ ...v, ...change });
  }

  async get(id: string): Promise<ReplicatedVolume | undefined> {
    this.calls.push(`get ${id}`);
    const v = this.objects.get(id);
    return v && this.copy(v);
  }

  async list(): Promise<ReplicatedVolume[]> {
    this.calls.push('list');
    return [...this.objects.values()].map((v) => this.copy(v));
  }

  async create(n: NewReplicatedVolume): Promise<ReplicatedVolume> {
    this.calls.push(`create ${n.id}`);
    const existing = this.objects.get(n.id);
    if (existing) return this.copy(existing);
    // As the real store (k8s/replicated-volume.ts) checks before it writes.
    for (const p of n.placement) {
      if (p.node === '' || p.disk === '' || p.file === '') throw new K8sError('EINVAL', `replicated volume ${JSON.stringify(n.id)}: placement slot ${p.slot}: expected node, disk and file, found ${JSON.stringify(p)}`);
    }
    const { creator: _creator, ...rest } = n;
    const nodes = [...new Set(n.placement.map((p) => p.node))];
    return this.put({
      ...rest,
      resourceVersion: '',
      deleting: false,
      finalizers: nodes.map((node) => `llraid.io/member-${node}`),
      owner: { node: '', epoch: 0, since: new Date(0).toISOString() },
    });
  }

  async setOwner(id: string, resourceVersion: string, owner: VolumeOwner): Promise<ReplicatedVolume> {
    this.calls.push(`setOwner ${id} ${owner.node}/${owner.epoch}`);
    const racing = this.interfere.get(id);
    if (racing) {
      this.interfere.delete(id);
      const v = this.objects.get(id)!;
      this.put({ ...v, ...racing(v) });
    }
    const v = this.objects.get(id);
    if (!v) throw new K8sError('EAPI', `raidvolume ${id} not found`, 404);
    if (v.resourceVersion !== resourceVersion) {
      throw new K8sError('CONFLICT', `raidvolume ${id}: resourceVersion ${resourceVersion} is stale (now ${v.resourceVersion})`, 409);
    }
    return this.put({ ...v, owner });
  }

  async delete(id: string): Promise<void> {
    this.calls.push(`delete ${id}`);
    const v = this.objects.get(id);
    if (!v) return;
    if (v.finalizers.length === 0) return this.gone(v);
    if (!v.deleting) this.put({ ...v, deleting: true });
  }

  async removeFinalizer(id: string, node: string): Promise<void> {
    this.calls.push(`removeFinalizer ${id} ${node}`);
    const v = this.objects.get(id);
    if (!v) return;
    const finalizers = v.finalizers.filter((f) => f !== `llraid.io/member-${node}`);
    if (v.deleting && finalizers.length === 0) return this.gone(v);
    this.put({ ...v, finalizers });
  }

  private gone(v: ReplicatedVolume): void {
    this.objects.delete(v.id);
    for (const l of this.listeners) queueMicrotask(() => l(this.copy(v), true));
  }

  /** As the real store's: the first list arrives as adds, then every change. */
  watch(onChange: Listener): { close(): void } {
    this.calls.push('watch');
    for (const v of this.objects.values()) {
      const copy = this.copy(v);
      queueMicrotask(() => onChange(copy, false));
    }
    this.listeners.add(onChange);
    return { close: () => void this.listeners.delete(onChange) };
  }

  /** The object as stored (no copy), for assertions. */
  peek(id: string): ReplicatedVolume | undefined {
    return this.objects.get(id);
  }
}

/** Liveness the test controls: live nodes with their member service, and when a Lease expires. */
export class FakeLiveness implements NodeLiveness {
  readonly services = new Map<string, string>();
  private readonly dead = new Set<string>();
  private readonly waiters = new Map<string, Array<() => void>>();

  live(node: string, memberService: string): this {
    this.services.set(node, memberService);
    this.dead.delete(node);
    return this;
  }

  /** The node's Lease expires (as another node would observe it). */
  expire(node: string): void {
    this.dead.add(node);
    for (const w of this.waiters.get(node) ?? []) w();
    this.waiters.delete(node);
  }

  async liveNodes(): Promise<{ node: string; memberService: string }[]> {
    return [...this.services].filter(([n]) => !this.dead.has(n)).map(([node, memberService]) => ({ node, memberService }));
  }

  async memberService(node: string): Promise<string | undefined> {
    return this.services.get(node);
  }

  async knownNodes(): Promise<{ node: string; memberService: string }[]> {
    return [...this.services].map(([node, memberService]) => ({ node, memberService }));
  }

  waitExpired(node: string, timeoutMs: number): Promise<boolean> {
    if (this.dead.has(node) || !this.services.has(node)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      const list = this.waiters.get(node) ?? [];
      list.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
      this.waiters.set(node, list);
    });
  }
}

/** A keeper renewed by the test: renew(ms) extends, lapse() ends it, recover(ms) is a renewal after a lapse. */
export class FakeLeaseKeeper implements LeaseKeeper {
  private deadline = 0;
  private readonly callbacks: Array<(validForMs: number, afterLapse: boolean) => void> = [];

  constructor(private readonly durationMs = 15_000) {}

  async start(): Promise<void> {
    this.renew();
  }

  async stop(): Promise<void> {
    this.deadline = 0;
  }

  validForMs(): number {
    return Math.max(0, this.deadline - performance.now());
  }

  onRenewed(cb: (validForMs: number, afterLapse: boolean) => void): void {
    this.callbacks.push(cb);
  }

  renew(ms = this.durationMs): void {
    const afterLapse = this.deadline !== 0 && this.validForMs() === 0;
    this.deadline = performance.now() + ms;
    for (const cb of this.callbacks) cb(ms, afterLapse);
  }

  lapse(): void {
    this.deadline = Math.min(this.deadline, performance.now());
  }
}
