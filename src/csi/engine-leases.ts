// The replicated engines of this node and the lease they may acknowledge writes under (issue
// 19): every renewal of the node's Lease that extends the deadline is passed to each of them as
// {op:'lease', ms}, so an engine stops acknowledging writes before another node can see the Lease
// expire and take its volume. After a lapse (renewals failed past the deadline) no engine is
// extended blindly: each volume's RaidVolume is read first, and an engine whose volume another
// node took meanwhile (owner or epoch changed) is stopped for good instead (it is fenced anyway:
// the new owner's higher epoch refuses it at every member).

import type { ControlRequest } from '../engine/control/protocol.js';
import type { Engines } from '../engine/supervisor.js';
import type { LeaseKeeper, ReplicatedVolume } from '../k8s/replication.js';
import { describeError } from '../common/trace.js';

/** The engine's lease request (`llraid serve --lease-ms`): write-type requests wait past `ms`. */
export function leaseRequest(ms: number): ControlRequest {
  return { op: 'lease', ms: Math.max(0, Math.floor(ms)) };
}

export interface EngineLeasesOptions {
  node: string;
  engines: Pick<Engines, 'control' | 'stop'>;
  keeper: Pick<LeaseKeeper, 'onRenewed' | 'validForMs'>;
  /** The volume as the store has it now. */
  fresh: (id: string) => Promise<ReplicatedVolume | undefined>;
  log: (message: string) => void;
}

export class EngineLeases {
  /** Volume id → the epoch its engine here runs with. */
  private readonly held = new Map<string, number>();
  /** Engines not extended since a lapse until their volume's owner was read back (a failed read stays here). */
  private readonly unchecked = new Set<string>();
  private pass: Promise<void> = Promise.resolve();

  constructor(private readonly o: EngineLeasesOptions) {
    o.keeper.onRenewed((ms, afterLapse) => {
      // One pass at a time, in renewal order: a later lease never overtakes an earlier one.
      this.pass = this.pass.then(() => this.renewed(ms, afterLapse));
    });
  }

  /** An engine of `id` runs here with `epoch`; it gets every lease from now on. */
  add(id: string, epoch: number): void {
    this.held.set(id, epoch);
  }

  remove(id: string): void {
    this.held.delete(id);
    this.unchecked.delete(id);
  }

  epochOf(id: string): number | undefined {
    return this.held.get(id);
  }

  ids(): string[] {
    return [...this.held.keys()];
  }

  /** Passes the current lease to one engine now (just started or adopted). */
  async push(id: string): Promise<void> {
    await this.o.engines.control(id, leaseRequest(this.o.keeper.validForMs()));
  }

  /** Resolves when the passes queued so far are done (tests, shutdown). */
  settled(): Promise<void> {
    return this.pass;
  }

  private async renewed(ms: number, afterLapse: boolean): Promise<void> {
    if (afterLapse) for (const id of this.held.keys()) this.unchecked.add(id);
    await Promise.all(
      [...this.held].map(async ([id, epoch]) => {
        try {
          if (this.unchecked.has(id)) {
            if (!(await this.stillOwned(id, epoch))) return;
            this.unchecked.delete(id);
          }
          await this.o.engines.control(id, leaseRequest(ms));
        } catch (err) {
          this.o.log(`volume ${id}: passing the lease to its engine failed: ${describeError(err)}`);
        }
      }),
    );
  }

  /** After a lapse: whether this node still owns `id` with `epoch`; if not, its engine stops. */
  private async stillOwned(id: string, epoch: number): Promise<boolean> {
    const v = await this.o.fresh(id);
    if (v && v.owner.node === this.o.node && v.owner.epoch === epoch) return true;
    const now = v ? (v.owner.node === '' ? 'released' : `owned by ${v.owner.node} with epoch ${v.owner.epoch}`) : 'gone';
    this.o.log(`volume ${id}: this node's lease lapsed and the volume is now ${now} (this engine has epoch ${epoch}): stopping its engine for good`);
    this.remove(id);
    // Lapsed already: writes stay held until the stop fails them. The stop is what frees the
    // member files; the new owner's epoch keeps this engine off every member meanwhile.
    await this.o.engines.control(id, leaseRequest(0)).catch(() => undefined);
    await this.o.engines.stop(id);
    return false;
  }
}
