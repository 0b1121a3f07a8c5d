// Who may run a replicated volume's engine (issue 19): the owner recorded in its RaidVolume,
// with the attach epoch the engine presents to every member. Ownership changes only by
// compare-and-swap on the object's resourceVersion, so of two nodes staging at once exactly one
// wins; a node takes a volume another node owns only once that node's Lease has expired as seen
// from here (or the node is out of service), and then with a higher epoch, which fences
// whatever the old owner still runs. Written only when ownership changes: no per-volume renewals.

import { K8sError } from '../k8s/errors.js';
import type { NodeLiveness, ReplicatedVolume, ReplicationStore, VolumeOwner } from '../k8s/replication.js';
import { CsiError, notFound } from './errors.js';

export interface OwnershipOptions {
  /** This node. */
  node: string;
  /** How long a stage waits for the owner's Lease to expire (about twice its duration). */
  takeOverTimeoutMs: number;
  /** Compare-and-swap attempts before ABORTED (each conflict re-reads first). Default 5. */
  attempts?: number;
  now?: () => Date;
}

export interface Acquired {
  volume: ReplicatedVolume;
  /** The epoch this node's engine presents. */
  epoch: number;
  /** This call wrote the owner (false: this node owned it already). */
  taken: boolean;
  /** The node this call took the volume from, after its Lease expired. */
  tookOverFrom?: string;
}

const isConflict = (err: unknown): boolean => err instanceof K8sError && err.code === 'CONFLICT';

export class VolumeOwnership {
  constructor(
    private readonly store: Pick<ReplicationStore, 'get' | 'setOwner'>,
    private readonly liveness: Pick<NodeLiveness, 'waitExpired'>,
    private readonly o: OwnershipOptions,
  ) {}

  private owner(epoch: number, node = this.o.node): VolumeOwner {
    return { node, epoch, since: (this.o.now?.() ?? new Date()).toISOString() };
  }

  private async read(id: string, what: string): Promise<ReplicatedVolume> {
    const v = await this.store.get(id);
    if (!v) throw notFound(`${what}: volume ${id} does not exist (no RaidVolume)`);
    return v;
  }

  /**
   * Makes this node the owner: kept as is when it already is (a repeated stage, a restarted
   * plugin), taken with epoch+1 when released, or when the owner's Lease expired while this call
   * waited (at most takeOverTimeoutMs, once, for the owner first seen). Another node seen owning
   * it after that (it won a race, or took it meanwhile) ends the call: ABORTED naming it.
   */
  async acquire(id: string): Promise<Acquired> {
    const attempts = this.o.attempts ?? 5;
    const first = await this.read(id, 'NodeStageVolume');
    if (first.deleting) throw new CsiError('FAILED_PRECONDITION', `NodeStageVolume: volume ${id} is being deleted`);
    let expired: string | undefined;
    const firstOwner = first.owner.node;
    if (firstOwner !== '' && firstOwner !== this.o.node) {
      if (!(await this.liveness.waitExpired(firstOwner, this.o.takeOverTimeoutMs))) {
        throw new CsiError(
          'ABORTED',
          `NodeStageVolume: volume ${id} is owned by node ${firstOwner} whose lease is valid (waited ${Math.round(this.o.takeOverTimeoutMs / 1000)} s for it to expire): unstage it there first`,
        );
      }
      expired = firstOwner;
    }
    let v = expired === undefined ? first : await this.read(id, 'NodeStageVolume');
    for (let attempt = 1; ; attempt++) {
      const o = v.owner;
      if (o.node === this.o.node) return { volume: v, epoch: o.epoch, taken: false };
      if (o.node !== '' && o.node !== expired) {
        throw new CsiError('ABORTED', `NodeStageVolume: volume ${id} is owned by node ${o.node} (it took the volume first, epoch ${o.epoch})`);
      }
      try {
        const taken = await this.store.setOwner(id, v.resourceVersion, this.owner(o.epoch + 1));
        return { volume: taken, epoch: o.epoch + 1, taken: true, ...(o.node === '' ? {} : { tookOverFrom: o.node }) };
      } catch (err) {
        if (!isConflict(err)) throw err;
        if (attempt >= attempts) {
          throw new CsiError('ABORTED', `NodeStageVolume: volume ${id}: its RaidVolume kept changing under ${attempts} attempts to take ownership; retry`);
        }
      }
      v = await this.read(id, 'NodeStageVolume');
    }
  }

  /**
   * Releases the volume after its engine stopped cleanly: owner '' with the epoch kept, so the
   * next stage anywhere takes it at once. Nothing to do when this node is not the owner (another
   * took it, or an earlier call released it).
   */
  async release(id: string): Promise<void> {
    const attempts = this.o.attempts ?? 5;
    for (let attempt = 1; ; attempt++) {
      const v = await this.store.get(id);
      if (!v || v.owner.node !== this.o.node) return;
      try {
        await this.store.setOwner(id, v.resourceVersion, this.owner(v.owner.epoch, ''));
        return;
      } catch (err) {
        if (!isConflict(err)) throw err;
        if (attempt >= attempts) {
          throw new CsiError('ABORTED', `NodeUnstageVolume: volume ${id}: its RaidVolume kept changing under ${attempts} attempts to release it; retry`);
        }
      }
    }
  }
}
