// The CSI Controller service, run inside the node plugin (the external-provisioner runs with
// --node-deployment), so every volume it creates is placed on this node's disk pool. Volume
// state is read back from member superblocks on every call (volume-catalog.ts): no database.

import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { isBlock, requireCapabilities, unsupportedReason } from './capabilities.js';
import type { DiskPool } from './disk-pool.js';
import { claimFromParameters, removeClaim, writeClaim } from './claim-file.js';
import { CsiError, invalid, notFound } from './errors.js';
import { nameKey, volumeKey, type VolumeLocks } from './volume-locks.js';
import type { CapacityRange, CreateVolumeRequest, Topology, VolumeCapability } from './messages.js';
import { nearCopiesOf, parseVolumeParameters, type VolumeSpec } from './parameters.js';
import type { ReplicatedVolume } from '../k8s/replication.js';
import type { ReplicatedController } from './replicated-controller.js';
import type { ReplicatedIndex } from './replicated-index.js';
import { replicatedRecord } from './replicated-stage.js';
import { arrayBytes, MEMBER_DATA_OFFSET, memberDataFor, memberFileBytes } from '../md/index.js';
import type { ArrayBackend } from './array-backend.js';
import type { VolumeCatalog, VolumeRecord } from './volume-catalog.js';
import { volumeCondition, type RuntimeState } from './volume-condition.js';
import { encodeSetName, matchesName, decodeSetName } from './volume-name.js';

import { topologyKey } from './topology.js';
import type { SnapshotController, SnapshotUsage } from './snapshot-controller.js';

export interface VolumeUsage extends SnapshotUsage {
  runtime(volumeId: string): Promise<RuntimeState>;
  /** Whether a staged volume can grow live (its attachment follows a bigger export). */
  readonly onlineExpansion: boolean;
  /** Online expansion of a staged volume: the engine grows the running array. */
  growOnline(volume: VolumeRecord, memberDataSize: number): Promise<void>;
}

export interface ControllerOptions {
  nodeId: string;
  /** Capacity of a volume whose request names none. */
  defaultCapacity: number;
}

const idPattern = /^[0-9a-f]{32}$/;

export class ControllerServer {

  constructor(
    private readonly options: ControllerOptions,
    private readonly pool: DiskPool,
    private readonly catalog: VolumeCatalog,
    private readonly arrays: ArrayBackend,
    private readonly usage: VolumeUsage,
    /** The driver's per-volume locks, shared with the Node service. */
    private readonly locks: VolumeLocks,
    /** Snapshots and copies of node-local volumes (snapshot-controller.ts). */
    private readonly snapshots: SnapshotController,
    /** Replicated volumes (issue 19); absent when the plugin runs without replication settings. */
    private readonly replicated?: ReplicatedController,
    private readonly replicatedIndex?: ReplicatedIndex,
  ) {}

  private topology(): Topology {
    return { segments: { [topologyKey]: this.options.nodeId } };
  }

  private isThisNode(t: Topology): boolean {
    const v = t.segments?.[topologyKey];
    return v === undefined ? Object.keys(t.segments ?? {}).length === 0 : v === this.options.nodeId;
  }

  private toVolume(v: VolumeRecord): object {
    return {
      capacity_bytes: v.capacity,
      volume_id: v.id,
      volume_context: {
        level: String(v.level),
        members: String(v.raidDisks),
        fsType: v.fsType,
        bitmap: v.bitmap,
      },
      accessible_topology: [this.topology()],
    };
  }

  private async lookup(volumeId: string, what: string): Promise<VolumeRecord> {
    return (await this.find(volumeId, what)).record;
  }

  /** A node-local volume of this pool, or a replicated volume (its RaidVolume). */
  private async find(volumeId: string, what: string): Promise<{ record: VolumeRecord; replicated?: ReplicatedVolume }> {
    if (!volumeId) throw invalid(`${what}: volume_id is empty`);
    const local = idPattern.test(volumeId) ? await this.catalog.get(volumeId) : undefined;
    if (local) return { record: local };
    const v = idPattern.test(volumeId) ? await this.replicatedIndex?.get(volumeId) : undefined;
    if (v) return { record: replicatedRecord(v), replicated: v };
    throw notFound(`${what}: volume ${JSON.stringify(volumeId)} does not exist on node ${this.options.nodeId}`);
  }

  private volumeOf(found: { record: VolumeRecord; replicated?: ReplicatedVolume }): object {
    return found.replicated && this.replicated ? this.replicated.toVolume(found.replicated) : this.toVolume(found.record);
  }

  CreateVolume = async (req: CreateVolumeRequest): Promise<object> => {
    if (!req.name) throw invalid('CreateVolume: name is empty');
    const caps = requireCapabilities(req.volume_capabilities, 'CreateVolume');
    for (const cap of caps) {
      const why = unsupportedReason(cap);
      if (why) throw invalid(`CreateVolume: ${why}`);
    }
    const source = req.volume_content_source?.snapshot || req.volume_content_source?.volume ? req.volume_content_source : undefined;
    const spec = parseVolumeParameters(req.parameters ?? {});
    const fsFromCap = caps.find((c) => !isBlock(c) && c.mount?.fs_type)?.mount?.fs_type;
    if (fsFromCap === 'ext4' || fsFromCap === 'xfs') {
      if (req.parameters?.fsType && req.parameters.fsType !== fsFromCap) {
        throw invalid(`CreateVolume: parameter "fsType" is ${req.parameters.fsType} but the mount capability asks for ${fsFromCap}`);
      }
      spec.fsType = fsFromCap;
    }
    const range = req.capacity_range ?? { required_bytes: 0, limit_bytes: 0 };
    if (range.required_bytes < 0 || range.limit_bytes < 0) {
      throw invalid(`CreateVolume: capacity_range must not be negative, found ${range.required_bytes}..${range.limit_bytes}`);
    }
    if (range.limit_bytes > 0 && range.required_bytes > range.limit_bytes) {
      throw invalid(`CreateVolume: required_bytes ${range.required_bytes} exceeds limit_bytes ${range.limit_bytes}`);
    }
    const reqs = req.accessibility_requirements;
    if (spec.replicas > 1 && source) {
      throw new CsiError('FAILED_PRECONDITION', 'CreateVolume: a volume from a snapshot or a clone must be node-local (replicas 1): replicated volumes have no snapshots or clones yet');
    }
    if (spec.replicas > 1) return this.createReplicated(req, spec, range);
    if (reqs && reqs.requisite.length > 0 && !reqs.requisite.some((t) => this.isThisNode(t))) {
      throw new CsiError(
        'RESOURCE_EXHAUSTED',
        `CreateVolume: accessibility requirements do not include this node (${topologyKey}=${this.options.nodeId})`,
      );
    }

    return this.locks.with(nameKey(req.name), async () => {
      const other = this.replicated?.findByName(req.name);
      if (other) throw new CsiError('ALREADY_EXISTS', `CreateVolume: volume ${JSON.stringify(req.name)} exists as replicated volume ${other.id} (replicas ${other.replicas}), the request asks for replicas 1`);
      const existing = await this.findByName(req.name);
      if (existing) {
        this.checkSame(existing, spec, range, req.name);
        return { volume: this.toVolume(existing) };
      }
      if (source) {
        const made = await this.snapshots.createFrom(req, source, spec, range, new Set(Object.keys(req.parameters ?? {})));
        return { volume: { ...this.toVolume(made.volume), content_source: made.contentSource } };
      }
      let capacity = range.required_bytes > 0 ? range.required_bytes : this.options.defaultCapacity;
      if (range.limit_bytes > 0) capacity = Math.min(capacity, range.limit_bytes);
      const memberData = memberDataFor(spec.level, spec.members, spec.chunkSize, capacity);
      const usable = arrayBytes(spec.level, spec.members, spec.chunkSize, memberData);
      if (range.limit_bytes > 0 && usable > range.limit_bytes) {
        throw new CsiError(
          'OUT_OF_RANGE',
          `CreateVolume: raid${spec.level} with ${spec.members} members and ${spec.chunkSize}-byte chunks holds ${usable} bytes, above limit_bytes ${range.limit_bytes}`,
        );
      }
      const size = memberFileBytes(memberData);
      const disks = await this.pool.place(spec.members, size, `raid${spec.level} with ${spec.members} members of ${memberData + MEMBER_DATA_OFFSET} bytes`);
      const uuid = randomBytes(16);
      const id = uuid.toString('hex');
      const paths = disks.map((d, slot) => this.pool.memberPath(d, id, slot));
      try {
        for (const p of paths) await this.pool.allocate(p, size);
        await this.arrays.create({ uuid, setName: encodeSetName(req.name, spec.fsType), spec, memberPaths: paths, memberDataSize: memberData });
        const claim = claimFromParameters(req.parameters ?? {});
        if (claim) await writeClaim(paths, claim);
      } catch (err) {
        await Promise.all(paths.map((p) => fs.rm(p, { force: true })));
        await removeClaim(paths);
        throw err;
      }
      const created = await this.catalog.get(id);
      if (!created) throw new CsiError('INTERNAL', `CreateVolume: volume ${id} was created but its members do not read back`);
      return { volume: this.toVolume(created) };
    });
  };

  /** CreateVolume with replicas ≥ 2 (replicated-controller.ts), under the same name lock. */
  private async createReplicated(req: CreateVolumeRequest, spec: VolumeSpec, range: CapacityRange): Promise<object> {
    const replicated = this.replicated;
    if (!replicated) {
      throw invalid(
        `CreateVolume: parameter "replicas": ${spec.replicas} needs the plugin's replication settings (the chart's memberService.enabled: LLRAID_TLS_DIR, LLRAID_NAMESPACE, LLRAID_MEMBER_SERVICE_LISTEN), which this plugin runs without; use replicas 1`,
      );
    }
    return this.locks.with(nameKey(req.name), async () => {
      const local = await this.findByName(req.name);
      if (local) throw new CsiError('ALREADY_EXISTS', `CreateVolume: volume ${JSON.stringify(req.name)} exists as node-local volume ${local.id}, the request asks for replicas ${spec.replicas}`);
      const v = await replicated.create({
        name: req.name, spec, range, defaultCapacity: this.options.defaultCapacity,
        claim: claimFromParameters(req.parameters ?? {}), requisite: req.accessibility_requirements?.requisite ?? [],
      });
      return { volume: replicated.toVolume(v) };
    });
  }

  private async findByName(name: string): Promise<VolumeRecord | undefined> {
    for (const v of (await this.catalog.scan()).values()) {
      const d = decodeSetName(v.setName);
      if (d && matchesName(d, name)) return v;
    }
    return undefined;
  }

  private checkSame(v: VolumeRecord, spec: VolumeSpec, range: CapacityRange, name: string): void {
    const diffs: string[] = [];
    if (v.level !== spec.level) diffs.push(`level ${v.level} ≠ ${spec.level}`);
    if (v.raidDisks !== spec.members) diffs.push(`members ${v.raidDisks} ≠ ${spec.members}`);
    if (v.level !== 1 && v.chunkSize !== spec.chunkSize) diffs.push(`chunkSize ${v.chunkSize} ≠ ${spec.chunkSize}`);
    if (v.bitmap !== spec.bitmap) diffs.push(`bitmap ${v.bitmap} ≠ ${spec.bitmap}`);
    if (v.fsType !== spec.fsType) diffs.push(`fsType ${v.fsType} ≠ ${spec.fsType}`);
    if (range.required_bytes > 0 && v.capacity < range.required_bytes) diffs.push(`capacity ${v.capacity} < required ${range.required_bytes}`);
    if (range.limit_bytes > 0 && v.capacity > range.limit_bytes) diffs.push(`capacity ${v.capacity} > limit ${range.limit_bytes}`);
    if (diffs.length > 0) {
      throw new CsiError('ALREADY_EXISTS', `CreateVolume: volume ${JSON.stringify(name)} exists as ${v.id} with different parameters: ${diffs.join(', ')}`);
    }
  }

  DeleteVolume = async (req: { volume_id: string }): Promise<object> => {
    if (!req.volume_id) throw invalid('DeleteVolume: volume_id is empty');
    return this.locks.with(volumeKey(req.volume_id), async () => {
      if (!idPattern.test(req.volume_id)) return {};
      // Its members, and any file named for it whose superblock does not read: still its files,
      // and deleting the volume deletes them (else they would stay behind for good).
      const { volume, unreadable } = await this.catalog.lookup(req.volume_id);
      const files = [...(volume?.members.map((m) => m.path) ?? []), ...unreadable.map((u) => u.path)];
      if (files.length === 0) {
        await this.replicated?.delete(req.volume_id);
        return {};
      }
      const rt = await this.usage.runtime(req.volume_id);
      if (rt.staged || rt.engineRunning || rt.attached) {
        throw new CsiError('FAILED_PRECONDITION', `DeleteVolume: volume ${req.volume_id} is in use (staged on node ${this.options.nodeId}): unstage it first`);
      }
      for (const f of files) await fs.rm(f, { force: true });
      await removeClaim(files);
      return {};
    });
  };

  ValidateVolumeCapabilities = async (req: { volume_id: string; volume_capabilities: VolumeCapability[]; parameters: Record<string, string> }): Promise<object> => {
    if (!req.volume_id) throw invalid('ValidateVolumeCapabilities: volume_id is empty');
    const caps = requireCapabilities(req.volume_capabilities, 'ValidateVolumeCapabilities');
    await this.lookup(req.volume_id, 'ValidateVolumeCapabilities');
    if (req.parameters && Object.keys(req.parameters).length > 0) {
      try {
        parseVolumeParameters(req.parameters);
      } catch (err) {
        return { message: (err as Error).message };
      }
    }
    for (const cap of caps) {
      const why = unsupportedReason(cap);
      if (why) return { message: why };
    }
    return { confirmed: { volume_context: {}, volume_capabilities: caps, parameters: req.parameters ?? {} } };
  };

  ListVolumes = async (req: { max_entries: number; starting_token: string }): Promise<object> => {
    if (req.max_entries < 0) throw invalid(`ListVolumes: max_entries must not be negative, found ${req.max_entries}`);
    const all = [...(await this.catalog.scan()).values()];
    let start = 0;
    if (req.starting_token) {
      // The token is the id of the first volume of the page: stable while volumes come and go.
      const i = all.findIndex((v) => v.id >= req.starting_token);
      if (!idPattern.test(req.starting_token)) {
        throw new CsiError('ABORTED', `ListVolumes: starting_token ${JSON.stringify(req.starting_token)} is not a token this plugin issued`);
      }
      start = i < 0 ? all.length : i;
    }
    const end = req.max_entries > 0 ? Math.min(all.length, start + req.max_entries) : all.length;
    const page = all.slice(start, end);
    const entries = [];
    for (const v of page) {
      entries.push({
        volume: this.toVolume(v),
        status: { published_node_ids: [], volume_condition: volumeCondition(v, await this.usage.runtime(v.id)) },
      });
    }
    return { entries, next_token: end < all.length ? (all[end]?.id ?? '') : '' };
  };

  GetCapacity = async (req: { volume_capabilities: VolumeCapability[]; parameters: Record<string, string>; accessible_topology: Topology | null }): Promise<object> => {
    const spec = parseVolumeParameters(req.parameters ?? {});
    for (const cap of req.volume_capabilities ?? []) {
      const why = unsupportedReason(cap);
      if (why) throw invalid(`GetCapacity: ${why}`);
    }
    if (req.accessible_topology && !this.isThisNode(req.accessible_topology)) {
      return { available_capacity: 0 };
    }
    // A replicated volume puts members/replicas of its members on each node: the largest volume
    // whose share this pool holds (what placement compares with, through CSIStorageCapacity).
    const here = spec.members / spec.replicas;
    const space = await this.pool.memberSpace(here);
    const usable = space > MEMBER_DATA_OFFSET ? arrayBytes(spec.level, spec.members, spec.chunkSize, space - MEMBER_DATA_OFFSET, nearCopiesOf(spec)) : 0;
    return { available_capacity: usable, maximum_volume_size: { value: usable } };
  };

  ControllerGetCapabilities = async (): Promise<object> => {
    // Snapshots and clones only where every disk can reflink its files (snapshot-controller.ts).
    const copies = (await this.snapshots.disksWithoutReflink()).length === 0 ? ['CREATE_DELETE_SNAPSHOT', 'LIST_SNAPSHOTS', 'CLONE_VOLUME'] : [];
    return {
      capabilities: [
        'CREATE_DELETE_VOLUME',
        'LIST_VOLUMES',
        'GET_CAPACITY',
        'EXPAND_VOLUME',
        'VOLUME_CONDITION',
        'GET_VOLUME',
        'SINGLE_NODE_MULTI_WRITER',
        ...copies,
      ].map((type) => ({ rpc: { type } })),
    };
  };

  CreateSnapshot = (req: { source_volume_id: string; name: string }): Promise<object> => this.snapshots.CreateSnapshot(req);
  DeleteSnapshot = (req: { snapshot_id: string }): Promise<object> => this.snapshots.DeleteSnapshot(req);
  ListSnapshots = (req: { max_entries: number; starting_token: string; source_volume_id: string; snapshot_id: string }): Promise<object> => this.snapshots.ListSnapshots(req);

  ControllerExpandVolume = async (req: { volume_id: string; capacity_range: CapacityRange | null; volume_capability: VolumeCapability | null }): Promise<object> => {
    if (!req.volume_id) throw invalid('ControllerExpandVolume: volume_id is empty');
    if (!req.capacity_range) throw invalid('ControllerExpandVolume: capacity_range is missing');
    return this.locks.with(volumeKey(req.volume_id), async () => {
      const found = await this.find(req.volume_id, 'ControllerExpandVolume');
      const v = found.record;
      const range = req.capacity_range!;
      if (found.replicated && range.required_bytes > v.capacity) {
        throw new CsiError('FAILED_PRECONDITION', `ControllerExpandVolume: volume ${v.id} is replicated over nodes ${[...new Set(found.replicated.placement.map((p) => p.node))].join(', ')}, and replicated volumes cannot grow yet: create a larger one and copy the data`);
      }
      const nodeExpansion = !(req.volume_capability && isBlock(req.volume_capability));
      if (range.required_bytes <= v.capacity) {
        return { capacity_bytes: v.capacity, node_expansion_required: false };
      }
      if (range.limit_bytes > 0 && range.required_bytes > range.limit_bytes) {
        throw invalid(`ControllerExpandVolume: required_bytes ${range.required_bytes} exceeds limit_bytes ${range.limit_bytes}`);
      }
      const chunk = v.chunkSize || 4096;
      const memberData = memberDataFor(v.level, v.raidDisks, chunk, range.required_bytes);
      const usable = arrayBytes(v.level, v.raidDisks, chunk, memberData);
      if (range.limit_bytes > 0 && usable > range.limit_bytes) {
        throw new CsiError('OUT_OF_RANGE', `ControllerExpandVolume: the array would hold ${usable} bytes, above limit_bytes ${range.limit_bytes}`);
      }
      // Refuse before any member file grows: a staged volume the attachment cannot follow.
      const online = (await this.usage.runtime(v.id)).engineRunning;
      if (online && !this.usage.onlineExpansion) {
        throw new CsiError('FAILED_PRECONDITION', `ControllerExpandVolume: volume ${v.id} is staged, and this node's attach mode cannot resize a device in use (nbdfuse fixes its size at connect): expand it while it is not staged`);
      }
      const grow = memberFileBytes(memberData) - memberFileBytes(v.memberSize);
      const usage = await this.pool.usage();
      for (const m of v.members) {
        const disk = usage.find((u) => m.path.startsWith(u.path + '/'));
        if (disk && disk.freeBytes < grow) {
          throw new CsiError('RESOURCE_EXHAUSTED', `ControllerExpandVolume: member ${m.path} needs ${grow} more bytes, its disk has ${disk.freeBytes} free`);
        }
      }
      for (const m of v.members) await this.pool.grow(m.path, memberFileBytes(memberData));
      if (online) await this.usage.growOnline(v, memberData);
      else await this.arrays.grow(v, memberData);
      const after = await this.lookup(v.id, 'ControllerExpandVolume');
      return { capacity_bytes: after.capacity, node_expansion_required: nodeExpansion };
    });
  };

  ControllerGetVolume = async (req: { volume_id: string }): Promise<object> => {
    const found = await this.find(req.volume_id, 'ControllerGetVolume');
    const v = found.record;
    return {
      volume: this.volumeOf(found),
      status: { published_node_ids: [], volume_condition: volumeCondition(v, await this.usage.runtime(v.id)) },
    };
  };
}
