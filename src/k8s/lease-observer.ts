// Other nodes' liveness as seen from here, from their Leases (lease-api.ts), without comparing
// clocks across nodes: a Lease counts as expired when a fresh read shows the same
// resourceVersion at least D after this process first saw that version, D measured on this
// process's monotonic clock. Every renewal changes the version, so a holder that renewed is
// never counted expired; one that did not has, by the keeper rule (node-lease.ts), stopped
// acknowledging writes at t_sent + D - margin, before we first saw its last version + D.
// A missing Lease counts as expired D after the first look that missed it; a Node tainted
// node.kubernetes.io/out-of-service (an administrator's word that it is down) at once.

import { performance } from 'node:perf_hooks';
import { K8sError } from './errors.js';
import type { LeaseApi, LeaseView } from './lease-api.js';
import type { NodeLiveness } from './replication.js';

export interface NodeLivenessOptions {
  /**
   * D of this cluster (chart nodeLease.durationSeconds). A Lease that states a longer
   * leaseDurationSeconds (its holder's promise) is waited for that long instead.
   */
  durationSeconds: number;
  /** Reads while waiting for an expiry (default D/4, between 250 ms and 2 s). */
  pollMs?: number;
  /** Told about failed reads while waiting (the wait goes on until its timeout); for logs. */
  onError?: (err: K8sError) => void;
  /** Monotonic milliseconds (default performance.now). */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

/** What this process knows of one node's Lease. */
interface Sighting {
  /** The version last read, or undefined: the last read found no Lease. */
  resourceVersion: string | undefined;
  /** Monotonic ms when this process first read that version (or first missed the Lease). */
  since: number;
  /** How long to wait from `since` (ms). */
  durationMs: number;
}

export class KubeNodeLiveness implements NodeLiveness {
  private readonly sightings = new Map<string, Sighting>();
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly durationMs: number;
  private readonly pollMs: number;

  constructor(private readonly api: LeaseApi, private readonly o: NodeLivenessOptions) {
    if (!Number.isSafeInteger(o.durationSeconds) || o.durationSeconds < 1) {
      throw new K8sError('EINVAL', `node liveness: durationSeconds: expected an integer ≥ 1, found ${String(o.durationSeconds)}`);
    }
    this.durationMs = o.durationSeconds * 1000;
    this.pollMs = o.pollMs ?? Math.min(2000, Math.max(250, this.durationMs / 4));
    this.now = o.now ?? (() => performance.now());
    this.sleep = o.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /** Records a fresh read of `node`'s Lease (undefined: none) and says whether it has expired. */
  private observe(node: string, lease: LeaseView | undefined): { expired: boolean; expiresInMs: number } {
    const now = this.now();
    const rv = lease?.resourceVersion;
    let s = this.sightings.get(node);
    if (!s || s.resourceVersion !== rv) {
      const stated = (lease?.durationSeconds ?? 0) * 1000;
      s = { resourceVersion: rv, since: now, durationMs: Math.max(this.durationMs, stated) };
      this.sightings.set(node, s);
    }
    const left = s.since + s.durationMs - now;
    return { expired: left <= 0, expiresInMs: Math.max(0, left) };
  }

  /**
   * Nodes whose Lease is not expired as observed here and that name a member service. A Lease
   * seen for the first time counts as live: nothing here can tell otherwise without comparing
   * clocks, and a wrong guess costs placement a bounded wait, never safety (ownership moves only
   * through waitExpired). From D after the first look on, a dead node's Lease is left out.
   */
  async liveNodes(): Promise<{ node: string; memberService: string }[]> {
    const leases = await this.api.list();
    const listed = new Set(leases.map((l) => l.node));
    // A Lease that vanished since the last list is missing from now on (observe() records it).
    for (const node of this.sightings.keys()) if (!listed.has(node)) this.observe(node, undefined);
    const live: { node: string; memberService: string }[] = [];
    for (const l of leases) {
      if (this.observe(l.node, l).expired || !l.memberService) continue;
      live.push({ node: l.node, memberService: l.memberService });
    }
    return live.sort((a, b) => a.node.localeCompare(b.node));
  }

  async knownNodes(): Promise<{ node: string; memberService: string }[]> {
    const out: { node: string; memberService: string }[] = [];
    for (const l of await this.api.list()) if (l.memberService) out.push({ node: l.node, memberService: l.memberService });
    return out.sort((a, b) => a.node.localeCompare(b.node));
  }

  async memberService(node: string): Promise<string | undefined> {
    const lease = await this.api.get(node);
    this.observe(node, lease);
    return lease?.memberService;
  }

  /**
   * Reads the Node and the Lease until one says the node is gone, or timeoutMs passes. Reads
   * are timed to land right when D since the first sighting of a version runs out, so the answer
   * comes as soon as it may. API errors do not end the wait: they are reported and read again.
   */
  async waitExpired(node: string, timeoutMs: number): Promise<boolean> {
    const end = this.now() + timeoutMs;
    while (true) {
      let nextMs = this.pollMs;
      try {
        if (await this.api.outOfService(node)) return true;
        const { expired, expiresInMs } = this.observe(node, await this.api.get(node));
        if (expired) return true;
        nextMs = Math.min(nextMs, expiresInMs);
      } catch (err) {
        this.o.onError?.(err instanceof K8sError ? err : new K8sError('EUNREACHABLE', `node liveness of ${node}: ${String(err)}`, undefined, { cause: err }));
      }
      const left = end - this.now();
      if (left <= 0) return false;
      await this.sleep(Math.max(1, Math.min(nextMs, left)));
    }
  }
}
