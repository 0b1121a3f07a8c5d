// Replicated volumes put together for one node plugin (issue 19): the index of RaidVolumes (one
// list-watch), ownership, the lease passed to engines, the stage and create/delete logic and the
// member reconciler, over the three cluster interfaces of k8s/replication.ts. The driver builds
// it when the replication settings are present and starts it beside the CSI server: the API
// server being away at start delays only replicated volumes, never node-local ones.

import type { Engines } from '../engine/supervisor.js';
import { backoffDelay } from '../k8s/backoff.js';
import type { LeaseKeeper, NodeLiveness, ReplicatedVolume, ReplicationStore } from '../k8s/replication.js';
import { describeError } from '../common/trace.js';
import type { ReplicationSettings } from './config.js';
import type { ArrayBackend } from './array-backend.js';
import type { DiskPool } from './disk-pool.js';
import { EngineLeases } from './engine-leases.js';
import { MemberReconciler } from './member-reconciler.js';
import type { PlacementReports } from './replica-placement.js';
import { ReplicatedController } from './replicated-controller.js';
import type { MemberProbe } from './member-probe.js';
import { ReplicatedIndex } from './replicated-index.js';
import { memberNodeOf, ReplicatedStage, replicatedRecord } from './replicated-stage.js';
import type { ReplicatedReport } from './status-feed.js';
import type { RuntimeState } from './volume-condition.js';
import type { VolumeLocks } from './volume-locks.js';
import { VolumeOwnership } from './volume-ownership.js';

/** What the cluster side gives (the k8s implementations, or fakes in tests). */
export interface ReplicationCluster {
  store: ReplicationStore;
  liveness: NodeLiveness;
  keeper: LeaseKeeper;
  /** Room per node and the class's allowed nodes, for placement. */
  reports: PlacementReports;
  /** A take-over happened: the TakeOver Event on the PVC. */
  onTakeOver?: (v: ReplicatedVolume, from: string, epoch: number) => void;
  /** Tests: how a member is attached once through a member service. */
  probe?: MemberProbe;
  /** Tests: how long CreateVolume waits for the exports (default 60 s). */
  exportWaitMs?: number;
}

export interface ReplicationParts {
  node: string;
  runDir: string;
  settings: ReplicationSettings;
  pool: DiskPool;
  engines: Engines;
  arrays: ArrayBackend;
  locks: VolumeLocks;
  log: (message: string) => void;
}

export class ReplicationRuntime {
  readonly index: ReplicatedIndex;
  readonly leases: EngineLeases;
  readonly stage: ReplicatedStage;
  private reconciler: MemberReconciler | undefined;
  private controller: ReplicatedController | undefined;
  private stopped = false;

  constructor(
    private readonly p: ReplicationParts,
    private readonly cluster: ReplicationCluster,
  ) {
    const { store, liveness, keeper } = cluster;
    this.index = new ReplicatedIndex(store, p.node, p.log);
    this.leases = new EngineLeases({ node: p.node, engines: p.engines, keeper, fresh: (id) => this.index.fresh(id), log: p.log });
    const ownership = new VolumeOwnership(store, liveness, {
      node: p.node,
      // Long enough for the owner's Lease to expire as seen here (D after it was last renewed).
      takeOverTimeoutMs: 2 * p.settings.leaseDurationSeconds * 1000,
    });
    this.stage = new ReplicatedStage({
      node: p.node, runDir: p.runDir, index: this.index, ownership, keeper, leases: this.leases, pool: p.pool,
      tls: p.settings.tls, memberService: (n) => liveness.memberService(n), ownMemberService: p.settings.memberService, log: p.log,
      ...(cluster.probe ? { probe: cluster.probe } : {}),
      ...(cluster.onTakeOver ? { onTakeOver: cluster.onTakeOver } : {}),
    });
  }

  /** The volumes this node owns, for the status feed (which reports those whose engine runs here). */
  statusReports(): ReplicatedReport[] {
    return this.index.all().filter((v) => v.owner.node === this.p.node).map((v) => ({
      volume: replicatedRecord(v),
      claim: v.claim,
      memberNode: memberNodeOf(v),
    }));
  }

  /** The parts that need the Node service (whether an engine here serves a volume). */
  connect(runtime: (volumeId: string) => Promise<RuntimeState>): ReplicatedController {
    const { store, liveness, reports } = this.cluster;
    const isServed = async (id: string): Promise<boolean> => {
      const rt = await runtime(id);
      return rt.staged || rt.engineRunning || rt.attached;
    };
    this.reconciler = new MemberReconciler({ node: this.p.node, pool: this.p.pool, store, index: this.index, locks: this.p.locks, isServed, log: this.p.log });
    this.controller = new ReplicatedController({
      node: this.p.node, store, index: this.index, liveness, reports, pool: this.p.pool, arrays: this.p.arrays, reconciler: this.reconciler,
      tls: this.p.settings.tls, runtime, log: this.p.log,
      ...(this.cluster.probe ? { probe: this.cluster.probe } : {}),
      ...(this.cluster.exportWaitMs === undefined ? {} : { exportWaitMs: this.cluster.exportWaitMs }),
    });
    return this.controller;
  }

  /**
   * Starts the node's Lease (its first renewal retried until the API server answers) and the
   * reconciler (the one watch); `recover` looks at the replicated engines of this node at once
   * (reading their volumes fresh). Resolves when the first renewal landed and recovery is done.
   */
  async start(recover: () => Promise<void>): Promise<void> {
    this.reconciler?.start();
    await Promise.all([this.startKeeper(), this.retry('recovering replicated volumes', recover)]);
  }

  /** Runs `fn` until it succeeds (the API server may be away a while) or the runtime stops. */
  private async retry(what: string, fn: () => Promise<void>): Promise<void> {
    for (let failures = 1; !this.stopped; failures++) {
      try {
        return await fn();
      } catch (err) {
        this.p.log(`${what} failed (attempt ${failures}), retrying: ${describeError(err)}`);
        await new Promise((r) => setTimeout(r, backoffDelay({ baseMs: 500, maxMs: 10_000 }, failures)).unref());
      }
    }
  }

  /** The keeper retries its first renewal itself until it lands (or it is stopped). */
  private async startKeeper(): Promise<void> {
    await this.cluster.keeper.start().catch((err: unknown) => {
      if (!this.stopped) this.p.log(`node lease: not started: ${describeError(err)}`);
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.reconciler?.close();
    this.index.close();
    await this.leases.settled();
    // Engines keep their lease until it runs out: a plugin restart shorter than the lease costs
    // no held write; a longer one holds writes until the new plugin's first renewal.
    await this.cluster.keeper.stop();
  }
}
