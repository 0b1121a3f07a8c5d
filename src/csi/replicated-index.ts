// This node's view of its replicated volumes (their RaidVolumes), kept by ONE watch
// (ReplicationStore.watch: a list, then changes), so that the Node service's lookups (NodePublish, NodeGetVolumeStats
// every minute per volume) and the member reconciler cost the API server nothing per volume.
// "Its" volumes: those with a member on this node (the store's watch follows only those) or
// owned by it; any other is read from the store when asked for, and not kept (no watch would
// keep it current). Decisions that need the object as it is now (ownership, DeleteVolume) read
// it fresh instead.

import type { ReplicatedVolume, ReplicationStore } from '../k8s/replication.js';

export type ReplicatedChange = (v: ReplicatedVolume, gone: boolean) => void;

export class ReplicatedIndex {
  private readonly cache = new Map<string, ReplicatedVolume>();
  private readonly listeners: ReplicatedChange[] = [];
  private watcher: { close(): void } | undefined;
  private closed = false;

  constructor(
    private readonly store: Pick<ReplicationStore, 'get' | 'watch'>,
    /** This node. */
    private readonly node: string,
    private readonly log: (message: string) => void = () => undefined,
  ) {}

  private keeps(v: ReplicatedVolume): boolean {
    return v.owner.node === this.node || v.placement.some((p) => p.node === this.node);
  }

  /** Called for every volume the watch reports (its first list included). */
  onChange(cb: ReplicatedChange): void {
    this.listeners.push(cb);
  }

  /**
   * Starts the one watch. Its first list arrives as adds (ReplicationStore.watch), so a plugin
   * start costs no list of its own; the watch retries by itself while the API server is away,
   * and lookups read the store meanwhile.
   */
  start(): void {
    if (this.closed) return;
    this.watcher ??= this.store.watch((v, gone) => this.apply(v, gone));
  }

  private apply(v: ReplicatedVolume, gone: boolean): void {
    if (gone || !this.keeps(v)) {
      if (!this.cache.delete(v.id) && !gone) return;
    } else {
      this.cache.set(v.id, v);
    }
    for (const l of this.listeners) {
      try {
        l(v, gone);
      } catch (err) {
        this.log(`replicated volume ${v.id}: ${(err as Error).message}`);
      }
    }
  }

  /** The volume as last seen; one not seen yet (just created elsewhere) is read from the store. */
  async get(id: string): Promise<ReplicatedVolume | undefined> {
    return this.cache.get(id) ?? this.fresh(id);
  }

  /** The volume as the store has it now (and remembered). */
  async fresh(id: string): Promise<ReplicatedVolume | undefined> {
    const v = await this.store.get(id);
    if (v && this.keeps(v)) this.cache.set(id, v);
    else this.cache.delete(id);
    return v;
  }

  /** A volume this node just wrote (its own create or CAS): seen before the watch reports it. */
  remember(v: ReplicatedVolume): void {
    if (this.keeps(v)) this.cache.set(v.id, v);
  }

  /** Whether the volume is known here (seen by the watch, or read since). */
  has(id: string): boolean {
    return this.cache.has(id);
  }

  /** Every volume of this node as last seen. */
  all(): ReplicatedVolume[] {
    return [...this.cache.values()];
  }

  close(): void {
    this.closed = true;
    this.watcher?.close();
    this.watcher = undefined;
  }
}
