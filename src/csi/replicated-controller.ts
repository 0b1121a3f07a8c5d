// CreateVolume and DeleteVolume of a replicated volume (issue 19), run by the plugin of the
// first consumer's node as for node-local volumes. Create, in this order:
//   1. place the copies (replica-placement.ts): this node, then live nodes with room;
//   2. create the RaidVolume (placement, one finalizer per member node, owner released, epoch 0)
//      BEFORE any member file exists, so no member is ever without its record;
//   3. allocate this node's members, and wait (bounded) until each other node's plugin has
//      allocated its own and its member service exports it (an NBD attach with TLS succeeds);
//   4. write the array's superblocks and bitmap on every member, local files and nbds URIs, at
//      epoch 1, and record epoch 1 (owner still released): that marks the volume complete.
// A volume found by name with epoch 0 is an earlier attempt that died midway: steps 3-4 run again
// over the same placement. A failed attempt marks its RaidVolume for deletion, so the member
// reconcilers remove what was allocated. Delete marks the RaidVolume for deletion (each member
// node removes its files, then its finalizer) and removes this node's files now; it is refused
// while another node whose Lease is live owns (stages) the volume.

import { randomBytes } from 'node:crypto';
import { K8sError } from '../k8s/errors.js';
import type { NodeLiveness, ReplicaPlacement, ReplicatedVolume, ReplicationStore } from '../k8s/replication.js';
import { arrayBytes, memberDataFor, memberFileBytes } from '../md/index.js';
import { fencedMemberOpener } from '../engine/remote-members.js';
import { isNbdError } from '../nbd/index.js';
import { attachOnce, type MemberProbe } from './member-probe.js';
import { describeError } from '../common/trace.js';
import type { VolumeClaim } from './claim-file.js';
import type { ArrayBackend } from './array-backend.js';
import type { DiskPool } from './disk-pool.js';
import { CsiError } from './errors.js';
import type { CapacityRange, Topology } from './messages.js';
import type { MemberReconciler } from './member-reconciler.js';
import { nearCopiesOf, type VolumeSpec } from './parameters.js';
import { candidateNodes, placeReplicas, type PlacementReports } from './replica-placement.js';
import type { ReplicatedIndex } from './replicated-index.js';
import type { TlsFiles } from './member-tls.js';
import { memberUri, replicatedRecord } from './replicated-stage.js';
import { nodeTopology } from './topology.js';
import type { RuntimeState } from './volume-condition.js';
import { decodeSetName, encodeSetName, matchesName } from './volume-name.js';

/** The epoch the array is created with; the first NodeStage takes 2. */
const CREATE_EPOCH = 1;


export interface ReplicatedControllerOptions {
  node: string;
  store: Pick<ReplicationStore, 'create' | 'setOwner' | 'delete'>;
  index: ReplicatedIndex;
  liveness: Pick<NodeLiveness, 'liveNodes' | 'memberService'>;
  reports: PlacementReports;
  pool: DiskPool;
  arrays: ArrayBackend;
  reconciler: Pick<MemberReconciler, 'allocate' | 'removeLocal'>;
  tls: TlsFiles;
  runtime: (volumeId: string) => Promise<RuntimeState>;
  /** How long create waits for the other nodes' members to be exported (default 60 s). */
  exportWaitMs?: number;
  probe?: MemberProbe;
  log: (message: string) => void;
}

export interface ReplicatedCreateRequest {
  name: string;
  spec: VolumeSpec;
  range: CapacityRange;
  defaultCapacity: number;
  claim: VolumeClaim | undefined;
  requisite: readonly Topology[];
}

export class ReplicatedController {
  constructor(private readonly o: ReplicatedControllerOptions) {}

  /** The CSI Volume of a replicated volume: reachable on its member nodes, or anywhere with diskless attach. */
  toVolume(v: ReplicatedVolume): object {
    const nodes = [...new Set(v.placement.map((p) => p.node))].sort();
    return {
      capacity_bytes: replicatedRecord(v).capacity,
      volume_id: v.id,
      volume_context: {
        level: String(v.level), members: String(v.members), replicas: String(v.replicas), fsType: v.fsType, bitmap: 'llbitmap',
        ...(v.disklessAttach ? { disklessAttach: 'true' } : {}),
      },
      // Diskless attach: no topology at all, so the PV gets no node affinity and a pod may run on
      // any node (the driver must run there: its engine reaches every member remotely).
      accessible_topology: v.disklessAttach ? [] : nodes.map(nodeTopology),
    };
  }

  /** The replicated volume created for CSI name `name` (not one being deleted). */
  findByName(name: string): ReplicatedVolume | undefined {
    return this.o.index.all().find((v) => {
      const d = decodeSetName(v.setName);
      return !v.deleting && d !== undefined && matchesName(d, name);
    });
  }

  async create(r: ReplicatedCreateRequest): Promise<ReplicatedVolume> {
    const existing = this.findByName(r.name);
    if (existing) {
      checkSame(existing, r.spec, r.range, r.name);
      if (existing.owner.epoch >= CREATE_EPOCH) return existing;
      this.o.log(`CreateVolume ${r.name}: volume ${existing.id} was left half-made by an earlier attempt; completing it`);
      return this.complete(existing, true);
    }
    const { spec } = r;
    const near = nearCopiesOf(spec);
    let capacity = r.range.required_bytes > 0 ? r.range.required_bytes : r.defaultCapacity;
    if (r.range.limit_bytes > 0) capacity = Math.min(capacity, r.range.limit_bytes);
    const memberData = memberDataFor(spec.level, spec.members, spec.chunkSize, capacity, near);
    const usable = arrayBytes(spec.level, spec.members, spec.chunkSize, memberData, near);
    if (r.range.limit_bytes > 0 && usable > r.range.limit_bytes) {
      throw new CsiError('OUT_OF_RANGE', `CreateVolume: raid${spec.level} with ${spec.members} members over ${spec.replicas} nodes holds ${usable} bytes, above limit_bytes ${r.range.limit_bytes}`);
    }
    const memberBytes = memberFileBytes(memberData);
    const id = randomBytes(16).toString('hex');
    const slotsHere = spec.members / spec.replicas;
    let localDisks: string[] = [];
    let localProblem: string | undefined;
    try {
      localDisks = await this.o.pool.place(slotsHere, memberBytes, `${slotsHere} member(s) of ${memberBytes} bytes`);
    } catch (err) {
      if (!(err instanceof CsiError)) throw err;
      localProblem = err.message;
    }
    const { candidates, others } = await candidateNodes(this.o.liveness, this.o.reports, r.claim, r.requisite, this.o.node);
    const placed = placeReplicas({
      volumeId: id, members: spec.members, replicas: spec.replicas, capacity: usable, localNode: this.o.node, requisite: r.requisite, candidates,
      ...(others === undefined ? {} : { others }),
      ...(localProblem === undefined ? {} : { localProblem }),
    });
    // This node's disks are known here: row k of copies (slots k*replicas ..) goes on local disk
    // k. Another node's entry names the same disk as a hint: its plugin uses a disk of that name
    // when it has one with room (nodes are often laid out alike), else picks among its own.
    const placement: ReplicaPlacement[] = placed.slots.map((s) => ({
      ...s,
      disk: diskName(localDisks[Math.floor(s.slot / spec.replicas)]!),
    }));
    const created = await this.o.store.create({
      id, creator: this.o.node, level: spec.level as 1 | 10, members: spec.members, chunkSize: spec.chunkSize, replicas: spec.replicas,
      disklessAttach: spec.disklessAttach, memberBytes, fsType: spec.fsType, setName: encodeSetName(r.name, spec.fsType), placement,
      ...(spec.recoverySpeed ? { recoverySpeed: spec.recoverySpeed } : {}),
      ...(r.claim ? { claim: { namespace: r.claim.namespace, name: r.claim.name } } : {}),
    });
    this.o.index.remember(created);
    return this.complete(created, false);
  }

  /** Steps 3 and 4: members allocated and exported, array written at epoch 1; undone on failure. */
  private async complete(v: ReplicatedVolume, retry: boolean): Promise<ReplicatedVolume> {
    try {
      const local = await this.o.reconciler.allocate(v);
      const members = await this.memberNames(v, local);
      const spec: VolumeSpec = {
        level: v.level, members: v.members, chunkSize: v.chunkSize, bitmap: 'llbitmap', fsType: v.fsType === 'xfs' ? 'xfs' : 'ext4',
        replicas: v.replicas, disklessAttach: v.disklessAttach, ...(v.recoverySpeed ? { recoverySpeed: v.recoverySpeed } : {}),
      };
      await this.o.arrays.create({
        uuid: Buffer.from(v.id, 'hex'), setName: v.setName, spec, memberPaths: members, memberDataSize: v.memberBytes,
        opener: fencedMemberOpener({ epoch: BigInt(CREATE_EPOCH), tls: this.o.tls }),
        // A retry overwrites what the failed attempt wrote; a first attempt refuses any superblock.
        force: retry,
      });
      return await this.recordCreated(v);
    } catch (err) {
      this.o.log(`CreateVolume: volume ${v.id} failed, removing what was made: ${describeError(err)}`);
      await this.o.store.delete(v.id).catch((e: unknown) => this.o.log(`volume ${v.id}: marking it for deletion: ${describeError(e)}`));
      await this.o.reconciler.removeLocal({ ...v, deleting: true }).catch((e: unknown) => this.o.log(`volume ${v.id}: removing its members here: ${describeError(e)}`));
      throw err;
    }
  }

  /** Members in slot order: this node's files, the others' nbds URIs once each is exported. */
  private async memberNames(v: ReplicatedVolume, local: string[]): Promise<string[]> {
    const mine = v.placement.filter((p) => p.node === this.o.node).sort((a, b) => a.slot - b.slot);
    if (local.length !== mine.length) throw new CsiError('INTERNAL', `CreateVolume: volume ${v.id}: ${mine.length - local.length} member file(s) of this node were not allocated`);
    const deadline = Date.now() + (this.o.exportWaitMs ?? 60_000);
    const names = new Map<number, string>(mine.map((e, i) => [e.slot, local[i]!]));
    await Promise.all(
      v.placement.filter((p) => p.node !== this.o.node).map(async (entry) => {
        names.set(entry.slot, await this.exported(v, entry, deadline));
      }),
    );
    return v.placement.map((p) => p.slot).sort((a, b) => a - b).map((slot) => names.get(slot)!);
  }

  /** Waits until `entry`'s node exports its member file; its URI. */
  private async exported(v: ReplicatedVolume, entry: ReplicaPlacement, deadline: number): Promise<string> {
    const probe = this.o.probe ?? attachOnce;
    let last = 'its node has no member service address';
    for (let attempt = 0; ; attempt++) {
      const address = await this.o.liveness.memberService(entry.node);
      if (address) {
        const uri = memberUri(address, entry.file);
        try {
          await probe(uri, this.o.tls, CREATE_EPOCH);
          return uri;
        } catch (err) {
          // Not there yet (not allocated, the service not up): wait. Anything else (TLS, a
          // refusal) will not mend by waiting.
          if (!isNbdError(err, 'NBD_NO_EXPORT') && !isNbdError(err, 'NBD_CONNECT') && !isNbdError(err, 'NBD_CLOSED')) throw err;
          last = describeError(err);
        }
      }
      if (Date.now() >= deadline) {
        throw new CsiError(
          'UNAVAILABLE',
          `CreateVolume: volume ${v.id}: node ${entry.node} did not export member ${entry.file} in time (its plugin allocates it when it sees the RaidVolume; see its log): ${last}`,
        );
      }
      await new Promise((r) => setTimeout(r, Math.min(1000, 100 * 2 ** attempt)));
    }
  }

  /** Epoch 1 recorded (owner released): the volume is complete. A conflict re-reads and tries again. */
  private async recordCreated(v: ReplicatedVolume): Promise<ReplicatedVolume> {
    let current = v;
    for (let attempt = 1; ; attempt++) {
      if (current.owner.epoch >= CREATE_EPOCH) return current;
      try {
        const done = await this.o.store.setOwner(v.id, current.resourceVersion, { node: '', epoch: CREATE_EPOCH, since: new Date().toISOString() });
        this.o.index.remember(done);
        return done;
      } catch (err) {
        if (!(err instanceof K8sError && err.code === 'CONFLICT') || attempt >= 5) throw err;
      }
      const fresh = await this.o.index.fresh(v.id);
      if (!fresh) throw new CsiError('ABORTED', `CreateVolume: volume ${v.id} was deleted while it was created`);
      current = fresh;
    }
  }

  /**
   * Deletes replicated volume `id`; false when there is no such volume. Refused while a node
   * whose Lease is live owns it (or this node serves it). The caller holds the volume's lock.
   */
  async delete(id: string): Promise<boolean> {
    const v = await this.o.index.fresh(id);
    if (!v) return false;
    const owner = v.owner.node;
    if (owner === this.o.node) {
      const rt = await this.o.runtime(id);
      if (rt.staged || rt.engineRunning || rt.attached) {
        throw new CsiError('FAILED_PRECONDITION', `DeleteVolume: volume ${id} is in use (staged on node ${owner}): unstage it first`);
      }
    } else if (owner !== '' && (await this.o.liveness.liveNodes()).some((n) => n.node === owner)) {
      throw new CsiError('FAILED_PRECONDITION', `DeleteVolume: volume ${id} is staged on node ${owner}: unstage it first`);
    }
    await this.o.store.delete(id);
    await this.o.reconciler.removeLocal({ ...v, deleting: true }, { locked: true });
    return true;
  }
}

/** The name a placement gives a disk of this node: its directory's basename (disk0, ...). */
function diskName(disk: string): string {
  return disk.split('/').filter(Boolean).pop() ?? disk;
}

function checkSame(v: ReplicatedVolume, spec: VolumeSpec, range: CapacityRange, name: string): void {
  const diffs: string[] = [];
  const capacity = replicatedRecord(v).capacity;
  if (v.level !== spec.level) diffs.push(`level ${v.level} ≠ ${spec.level}`);
  if (v.members !== spec.members) diffs.push(`members ${v.members} ≠ ${spec.members}`);
  if (v.replicas !== spec.replicas) diffs.push(`replicas ${v.replicas} ≠ ${spec.replicas}`);
  if (v.level === 10 && v.chunkSize !== spec.chunkSize) diffs.push(`chunkSize ${v.chunkSize} ≠ ${spec.chunkSize}`);
  if (v.fsType !== spec.fsType) diffs.push(`fsType ${v.fsType} ≠ ${spec.fsType}`);
  if (v.disklessAttach !== spec.disklessAttach) diffs.push(`disklessAttach ${v.disklessAttach} ≠ ${spec.disklessAttach}`);
  if (range.required_bytes > 0 && capacity < range.required_bytes) diffs.push(`capacity ${capacity} < required ${range.required_bytes}`);
  if (range.limit_bytes > 0 && capacity > range.limit_bytes) diffs.push(`capacity ${capacity} > limit ${range.limit_bytes}`);
  if (diffs.length > 0) {
    throw new CsiError('ALREADY_EXISTS', `CreateVolume: volume ${JSON.stringify(name)} exists as replicated volume ${v.id} with different parameters: ${diffs.join(', ')}`);
  }
}
