// A simulated API server for Leases on a FakeClock (unit-test double). The renewing node's link
// is what the tests vary: a renewal reaches the server half its round trip after being sent
// (the resourceVersion changes then) and its answer comes back at the full round trip; `down`
// drops renewals (an error after the round trip), `hang` never answers. Observers read at once.

import { K8sError } from '../../src/k8s/errors.js';
import type { LeaseApi, LeaseRenewal, LeaseView } from '../../src/k8s/lease-api.js';
import type { FakeClock } from './fake-clock.js';

export class FakeLeaseApi implements LeaseApi {
  leases = new Map<string, LeaseView>();
  outOfServiceNodes = new Set<string>();
  link: 'up' | 'down' | 'hang' = 'up';
  roundTripMs = 100;
  /** Reads fail (the observer's own link to the API server is down). */
  readsFail = false;
  renewals: Array<{ node: string; at: number; renewal: LeaseRenewal }> = [];
  reads = 0;
  private version = 1;

  constructor(private readonly clock: FakeClock) {}

  /** Writes a renewal as the server would (a new resourceVersion). */
  write(node: string, durationSeconds: number, memberService?: string): void {
    const v: LeaseView = { node, resourceVersion: String(++this.version), durationSeconds };
    if (memberService) v.memberService = memberService;
    this.leases.set(node, v);
  }

  renew(node: string, renewal: LeaseRenewal): Promise<void> {
    const link = this.link;
    if (link === 'hang') return new Promise(() => {});
    const rtt = this.roundTripMs;
    return new Promise((resolve, reject) => {
      this.clock.schedule(() => {
        if (link === 'up') {
          this.renewals.push({ node, at: this.clock.now(), renewal });
          this.write(node, renewal.durationSeconds, renewal.memberService);
        }
      }, rtt / 2);
      this.clock.schedule(() => (link === 'up' ? resolve() : reject(new K8sError('EUNREACHABLE', 'renew: connection refused'))), rtt);
    });
  }

  private read(): void {
    this.reads++;
    if (this.readsFail) throw new K8sError('EUNREACHABLE', 'read: connection refused');
  }

  async get(node: string): Promise<LeaseView | undefined> {
    this.read();
    const l = this.leases.get(node);
    return l && { ...l };
  }

  async list(): Promise<LeaseView[]> {
    this.read();
    return [...this.leases.values()].map((l) => ({ ...l }));
  }

  async outOfService(node: string): Promise<boolean> {
    this.read();
    return this.outOfServiceNodes.has(node);
  }
}
