// The CSI Node service: stages a volume (engine up, attached, filesystem made when empty,
// mounted), publishes it to pods (bind mounts), and reports its usage and health. Every step
// first looks at what already exists (processes, loop/nbd devices, the mount table), so each
// call is idempotent and a restarted plugin carries on from the node's real state.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Attacher } from './attach.js';
import { isBlock, unsupportedReason } from './capabilities.js';
import type { VolumeUsage } from './controller-server.js';
import { topologyKey } from './topology.js';
import type { Engines } from '../engine/supervisor.js';
import type { CutStatus, CutTarget, FreezeConsistency } from '../engine/control/protocol.js';
import { CsiError, invalid, notFound } from './errors.js';
import { deviceSize, ensureFilesystem, filesystemUsage, growFilesystem, growUnmountedExt4 } from './filesystem.js';
import { volumeKey, type VolumeLocks } from './volume-locks.js';
import { KubeletPaths } from './kubelet-paths.js';
import type { CapacityRange, NodePublishVolumeRequest, NodeStageVolumeRequest, VolumeCapability } from './messages.js';
import { bindMount, isVolumeMount, listMounts, mountAt, mountDevice, unmountAll, unmountVolumeAt } from './mounts.js';
import { removePublishTarget } from './publish-target.js';
import type { VolumeCatalog, VolumeRecord } from './volume-catalog.js';
import { volumeCondition, type RuntimeState } from './volume-condition.js';
import { describeError, trace } from '../common/trace.js';
import type { ReplicatedVolume } from '../k8s/replication.js';
import { findAny, type ReplicatedStage } from './replicated-stage.js';

export interface NodeOptions {
  nodeId: string;
  /** 0 = no limit. */
  maxVolumes: number;
  /** Every path a Node call names must resolve below this directory (kubelet-paths.ts). */
  kubeletDir: string;
}

/** The `llraid serve` arguments that assemble and serve a volume from its member files. */
export type EngineSource = (volume: VolumeRecord) => string[];

/** The serve arguments of an engine this call starts, and those its supervisor restarts it with. */
interface EngineArgs {
  start: string[];
  restart: string[];
}

/** A volume as the Node service finds it: node-local (its superblocks) or replicated (its RaidVolume). */
interface NodeVolume {
  record: VolumeRecord;
  replicated?: ReplicatedVolume;
}

const idPattern = /^[0-9a-f]{32}$/;

export class NodeServer implements VolumeUsage {
  private readonly paths: KubeletPaths;

  constructor(
    private readonly options: NodeOptions,
    private readonly catalog: VolumeCatalog,
    private readonly engines: Engines,
    private readonly attacher: Attacher,
    private readonly engineSource: EngineSource,
    /** The driver's per-volume locks, shared with the Controller service. */
    private readonly locks: VolumeLocks,
    /** Replicated volumes (issue 19); absent when the plugin runs without the cluster's replication settings. */
    private readonly replicated?: ReplicatedStage,
  ) {
    this.paths = new KubeletPaths(options.kubeletDir);
  }

  private async find(volumeId: string, what: string): Promise<NodeVolume> {
    if (!volumeId) throw invalid(`${what}: volume_id is empty`);
    const v = idPattern.test(volumeId) ? await findAny(this.catalog, this.replicated, volumeId) : undefined;
    if (!v) throw notFound(`${what}: volume ${JSON.stringify(volumeId)} does not exist on node ${this.options.nodeId}`);
    return v;
  }

  private async lookup(volumeId: string, what: string): Promise<VolumeRecord> {
    return (await this.find(volumeId, what)).record;
  }

  /**
   * A volume_path (NodeGetVolumeStats, NodeExpandVolume) confined like every path. A relative
   * one is NOT_FOUND rather than INVALID_ARGUMENT, as csi-sanity expects of these two calls
   * ("some/path": the volume does not exist on it); it is never resolved against the plugin's
   * working directory.
   */
  private async volumePath(p: string, field: string): Promise<string> {
    if (!path.isAbsolute(p)) {
      throw notFound(`${field} ${JSON.stringify(p)}: the volume is not there, expected an absolute path below the kubelet directory ${this.paths.root}`);
    }
    return this.paths.confine(p, field);
  }

  private checkCapability(cap: VolumeCapability | null, what: string): VolumeCapability {
    if (!cap) throw invalid(`${what}: volume_capability is missing`);
    if (!cap.access_mode) throw invalid(`${what}: volume_capability has no access_mode`);
    if (!cap.mount && !cap.block) throw invalid(`${what}: volume_capability has no access type: expected mount or block`);
    const why = unsupportedReason(cap);
    if (why) throw invalid(`${what}: ${why}`);
    return cap;
  }

  async engineRunning(volumeId: string): Promise<boolean> {
    return (await this.engines.find(volumeId)) !== undefined;
  }

  async runtime(volumeId: string): Promise<RuntimeState> {
    const socket = this.engines.socket(volumeId);
    const engineRunning = await this.engineRunning(volumeId);
    const attached = (await this.attacher.find(volumeId, socket)) !== undefined;
    // A running engine speaks for the array; one that cannot answer leaves the superblocks' word.
    const live = engineRunning
      ? await this.engines.control(volumeId, { op: 'status' }).catch((err: unknown) => {
        trace('csi', 'info', () => `volume ${volumeId}: its engine runs but did not answer status: ${describeError(err)}`);
        return undefined;
      })
      : undefined;
    return {
      staged: engineRunning || attached || (await this.engines.isWanted(volumeId)),
      engineRunning,
      attached,
      ...(live?.status ? { array: live.status } : {}),
      ...(live?.io ? { io: live.io } : {}),
    };
  }

  /** Staged volumes grow live only where the attachment can follow (kernel nbd); else unstaged. */
  get onlineExpansion(): boolean {
    return this.attacher.resize !== undefined;
  }

  async growOnline(v: VolumeRecord, memberDataSize: number): Promise<void> {
    await this.engines.control(v.id, { op: 'grow', memberBytes: memberDataSize });
  }

  /** A snapshot's pause (volume-capture.ts): the engine quiesces its array until thaw or the timeout. */
  async freeze(volumeId: string, timeoutMs: number, consistency: FreezeConsistency): Promise<{ drainMs: number }> {
    const r = await this.engines.control(volumeId, { op: 'freeze', timeoutMs, consistency });
    return { drainMs: r.drainMs ?? 0 };
  }

  async thaw(volumeId: string): Promise<{ pausedMs: number }> {
    const r = await this.engines.control(volumeId, { op: 'thaw' });
    return { pausedMs: r.pausedMs ?? 0 };
  }

  /** A snapshot's cut (engine/control/cut.ts): the engine copies the members in the background. */
  async cut(volumeId: string, id: string, targets: CutTarget[], timeoutMs: number, consistency: FreezeConsistency): Promise<{ pausedMs: number }> {
    const r = await this.engines.control(volumeId, { op: 'cut', id, targets, timeoutMs, consistency });
    return { pausedMs: r.pausedMs ?? 0 };
  }

  async cutStatus(volumeId: string, id: string): Promise<CutStatus | null> {
    if (!(await this.engineRunning(volumeId))) return null;
    return (await this.engines.control(volumeId, { op: 'cut-status', id })).cut ?? null;
  }

  async cutAbort(volumeId: string, id: string): Promise<void> {
    if (await this.engineRunning(volumeId)) await this.engines.control(volumeId, { op: 'cut-abort', id });
  }

  /** Engine up and attached: the volume's block device, whichever call got it there first. */
  private async bringUp(v: VolumeRecord, args: EngineArgs): Promise<string> {
    const socket = this.engines.socket(v.id);
    const device = await this.attacher.find(v.id, socket);
    if (device && (await this.attacher.connected(v.id, socket))) {
      await this.engines.adopt(v.id, args.restart);
      return device;
    }
    // A device whose engine died (crash, killed plugin) is torn down and attached afresh, with
    // every mount of it (block publishes too), so none is left for a later call to trip on.
    if (device) {
      for (const m of (await listMounts()).filter((m) => isVolumeMount(m, device)).reverse()) await unmountAll(m.mountPoint, true);
      await this.attacher.detach(v.id, socket, true);
    }
    await this.engines.start(v.id, args.start);
    if (args.restart !== args.start) await this.engines.adopt(v.id, args.restart);
    return this.attacher.attach(v.id, socket);
  }

  /**
   * The engine arguments of a volume: its member files for a node-local one; for a replicated
   * one, ownership first (replicated-stage.ts), then its members here and on other nodes.
   */
  private async engineArgs(nv: NodeVolume): Promise<EngineArgs & { epoch?: number; taken?: boolean }> {
    if (!nv.replicated || !this.replicated) {
      const args = this.engineSource(nv.record);
      return { start: args, restart: args };
    }
    return this.replicated.prepare(nv.replicated);
  }

  /** Stages a volume's engine and device; a replicated volume that fails to come up is released again. */
  private async stageEngine(nv: NodeVolume): Promise<string> {
    const args = await this.engineArgs(nv);
    if (args.epoch === undefined || !this.replicated) return this.bringUp(nv.record, args);
    try {
      const device = await this.bringUp(nv.record, args);
      this.replicated.started(nv.record.id, args.epoch);
      return device;
    } catch (err) {
      // Holding ownership of a volume this node does not run would keep every other node out
      // until this one's Lease expired: never, while it lives. (Only what this call took: an
      // engine that already ran here keeps its ownership.)
      if (!args.taken) throw err;
      await this.attacher.detach(nv.record.id, this.engines.socket(nv.record.id), true).catch(() => undefined);
      await this.engines.stop(nv.record.id).catch(() => undefined);
      await this.replicated.release(nv.record.id).catch((e: unknown) => trace('csi', 'error', () => `volume ${nv.record.id}: releasing after a failed stage: ${describeError(e)}`));
      throw err;
    }
  }

  NodeStageVolume = async (req: NodeStageVolumeRequest): Promise<object> => {
    if (!req.volume_id) throw invalid('NodeStageVolume: volume_id is empty');
    if (!req.staging_target_path) throw invalid('NodeStageVolume: staging_target_path is empty');
    const cap = this.checkCapability(req.volume_capability, 'NodeStageVolume');
    const staging = await this.paths.confine(req.staging_target_path, 'NodeStageVolume: staging_target_path');
    return this.locks.with(volumeKey(req.volume_id), async () => {
      const nv = await this.find(req.volume_id, 'NodeStageVolume');
      const v = nv.record;
      if (isBlock(cap)) {
        if (await mountAt(staging)) throw new CsiError('ALREADY_EXISTS', `NodeStageVolume: ${staging} is staged as a mount volume, the request asks for block`);
        await this.stageEngine(nv);
        return {};
      }
      const fsType = cap.mount?.fs_type || v.fsType;
      const device = await this.stageEngine(nv);
      // Looked at after the engine is up: a device whose engine had died was taken down with its
      // mounts (bringUp), the staging one among them, and the new device is mounted below.
      const mounted = await mountAt(staging);
      if (mounted) {
        if (mounted.source === device) return {};
        throw new CsiError('ALREADY_EXISTS', `NodeStageVolume: ${staging} already has ${mounted.source} mounted, expected ${device}`);
      }
      const made = await ensureFilesystem(device, fsType === 'xfs' ? 'xfs' : 'ext4');
      // A volume expanded while unstaged comes back bigger than its filesystem: grow it now.
      if (made === 'existing' && fsType !== 'xfs') await growUnmountedExt4(device);
      await fs.mkdir(staging, { recursive: true });
      await mountDevice(device, staging, fsType, cap.mount?.mount_flags ?? []);
      if (made === 'existing' && fsType === 'xfs') await growFilesystem(device, staging, 'xfs');
      return {};
    });
  };

  NodeUnstageVolume = async (req: { volume_id: string; staging_target_path: string }): Promise<object> => {
    if (!req.volume_id) throw invalid('NodeUnstageVolume: volume_id is empty');
    if (!req.staging_target_path) throw invalid('NodeUnstageVolume: staging_target_path is empty');
    const staging = await this.paths.confine(req.staging_target_path, 'NodeUnstageVolume: staging_target_path');
    return this.locks.with(volumeKey(req.volume_id), async () => {
      const nv = await this.find(req.volume_id, 'NodeUnstageVolume');
      const v = nv.record;
      const socket = this.engines.socket(v.id);
      const device = await this.attacher.find(v.id, socket);
      if (device) {
        const users = (await listMounts()).filter((m) => m.source === device && m.mountPoint !== staging);
        if (users.length > 0) {
          throw new CsiError('FAILED_PRECONDITION', `NodeUnstageVolume: volume ${v.id} is still published at ${users.map((u) => u.mountPoint).join(', ')}`);
        }
      }
      await unmountVolumeAt(staging, device, v.id, 'NodeUnstageVolume: staging_target_path');
      await this.attacher.detach(v.id, socket);
      if (nv.replicated) this.replicated?.stopping(v.id);
      await this.engines.stop(v.id);
      // Only after a clean stop: the next owner then finds every member in sync (nothing to resync).
      if (nv.replicated) await this.replicated?.release(v.id);
      return {};
    });
  };

  NodePublishVolume = async (req: NodePublishVolumeRequest): Promise<object> => {
    if (!req.volume_id) throw invalid('NodePublishVolume: volume_id is empty');
    if (!req.staging_target_path) throw invalid('NodePublishVolume: staging_target_path is empty');
    if (!req.target_path) throw invalid('NodePublishVolume: target_path is empty');
    const cap = this.checkCapability(req.volume_capability, 'NodePublishVolume');
    const target = await this.paths.confine(req.target_path, 'NodePublishVolume: target_path');
    const staging = await this.paths.confine(req.staging_target_path, 'NodePublishVolume: staging_target_path');
    return this.locks.with(volumeKey(req.volume_id), async () => {
      const v = await this.lookup(req.volume_id, 'NodePublishVolume');
      const readOnly = req.readonly || cap.access_mode?.mode === 'SINGLE_NODE_READER_ONLY';
      const device = await this.attacher.find(v.id, this.engines.socket(v.id));
      if (!device) throw new CsiError('FAILED_PRECONDITION', `NodePublishVolume: volume ${v.id} is not staged on this node`);
      const existing = await mountAt(target);
      if (isBlock(cap)) {
        if (existing) {
          if (isVolumeMount(existing, device) && existing.options.includes('ro') === readOnly) return {};
          throw new CsiError('ALREADY_EXISTS', `NodePublishVolume: ${target} is already published with other options or another volume`);
        }
        await fs.mkdir(path.dirname(target), { recursive: true });
        const st = await fs.stat(target).catch(() => undefined);
        if (st?.isDirectory()) await fs.rmdir(target).catch(() => undefined);
        await fs.writeFile(target, '', { flag: 'a' });
        await bindMount(device, target, readOnly);
        return {};
      }
      const staged = await mountAt(staging);
      if (!staged || staged.source !== device) {
        throw new CsiError('FAILED_PRECONDITION', `NodePublishVolume: volume ${v.id} is not staged at ${req.staging_target_path}`);
      }
      if (existing) {
        if (existing.source === device && existing.options.includes('ro') === readOnly) return {};
        throw new CsiError('ALREADY_EXISTS', `NodePublishVolume: ${target} is already published with other options or another volume (${existing.source})`);
      }
      await fs.mkdir(target, { recursive: true });
      await bindMount(staging, target, readOnly, cap.mount?.mount_flags ?? []);
      return {};
    });
  };

  NodeUnpublishVolume = async (req: { volume_id: string; target_path: string }): Promise<object> => {
    if (!req.volume_id) throw invalid('NodeUnpublishVolume: volume_id is empty');
    if (!req.target_path) throw invalid('NodeUnpublishVolume: target_path is empty');
    const target = await this.paths.confine(req.target_path, 'NodeUnpublishVolume: target_path');
    return this.locks.with(volumeKey(req.volume_id), async () => {
      const v = await this.lookup(req.volume_id, 'NodeUnpublishVolume');
      const device = await this.attacher.find(v.id, this.engines.socket(v.id));
      await unmountVolumeAt(target, device, v.id, 'NodeUnpublishVolume: target_path');
      // Only what publish made goes: an empty directory or an empty file (publish-target.ts).
      await removePublishTarget(target);
      return {};
    });
  };

  NodeGetVolumeStats = async (req: { volume_id: string; volume_path: string }): Promise<object> => {
    if (!req.volume_id) throw invalid('NodeGetVolumeStats: volume_id is empty');
    if (!req.volume_path) throw invalid('NodeGetVolumeStats: volume_path is empty');
    const v = await this.lookup(req.volume_id, 'NodeGetVolumeStats');
    const volumePath = await this.volumePath(req.volume_path, 'NodeGetVolumeStats: volume_path');
    const st = await fs.stat(volumePath).catch(() => undefined);
    if (!st) throw notFound(`NodeGetVolumeStats: volume_path ${req.volume_path} does not exist`);
    const condition = volumeCondition(v, await this.runtime(v.id));
    if (st.isBlockDevice() || st.isFile()) {
      const device = await this.attacher.find(v.id, this.engines.socket(v.id));
      const total = device ? await deviceSize(device) : v.capacity;
      return { usage: [{ unit: 'BYTES', total, available: 0, used: 0 }], volume_condition: condition };
    }
    const u = await filesystemUsage(volumePath);
    return {
      usage: [
        { unit: 'BYTES', total: u.totalBytes, available: u.freeBytes, used: u.usedBytes },
        { unit: 'INODES', total: u.totalInodes, available: u.freeInodes, used: u.usedInodes },
      ],
      volume_condition: condition,
    };
  };

  NodeExpandVolume = async (req: { volume_id: string; volume_path: string; capacity_range: CapacityRange | null; staging_target_path: string; volume_capability: VolumeCapability | null }): Promise<object> => {
    if (!req.volume_id) throw invalid('NodeExpandVolume: volume_id is empty');
    if (!req.volume_path) throw invalid('NodeExpandVolume: volume_path is empty');
    return this.locks.with(volumeKey(req.volume_id), async () => {
      const v = await this.lookup(req.volume_id, 'NodeExpandVolume');
      const volumePath = await this.volumePath(req.volume_path, 'NodeExpandVolume: volume_path');
      // Not used beyond the check: the volume's own device and mount say what to grow.
      if (req.staging_target_path) await this.paths.confine(req.staging_target_path, 'NodeExpandVolume: staging_target_path');
      const st = await fs.stat(volumePath).catch(() => undefined);
      if (!st) throw notFound(`NodeExpandVolume: volume_path ${req.volume_path} does not exist`);
      if (req.capacity_range && req.capacity_range.limit_bytes > 0 && req.capacity_range.limit_bytes < v.capacity) {
        throw new CsiError('OUT_OF_RANGE', `NodeExpandVolume: the volume holds ${v.capacity} bytes, above limit_bytes ${req.capacity_range.limit_bytes}`);
      }
      const device = await this.attacher.find(v.id, this.engines.socket(v.id));
      if (!device) throw new CsiError('FAILED_PRECONDITION', `NodeExpandVolume: volume ${v.id} is not staged on this node`);
      // The engine's array size is the truth; the superblocks say the same once it wrote them.
      const size = (await this.runtime(v.id)).array?.size ?? v.capacity;
      const have = await deviceSize(device);
      if (have < size) {
        if (!this.attacher.resize) {
          throw new CsiError('FAILED_PRECONDITION', `NodeExpandVolume: ${device} holds ${have} bytes of the volume's ${size}, and ${this.attacher.mode} attach cannot resize a device in use: unstage and stage the volume again`);
        }
        await this.attacher.resize(device, size);
      }
      const block = (req.volume_capability && isBlock(req.volume_capability)) || !st.isDirectory();
      if (!block) {
        const m = await mountAt(volumePath);
        if (m) await growFilesystem(device, volumePath, m.fsType);
      }
      return { capacity_bytes: await deviceSize(device) };
    });
  };

  NodeGetCapabilities = async (): Promise<object> => ({
    capabilities: [
      'STAGE_UNSTAGE_VOLUME',
      'GET_VOLUME_STATS',
      'EXPAND_VOLUME',
      'VOLUME_CONDITION',
      'SINGLE_NODE_MULTI_WRITER',
    ].map(
      (type) => ({ rpc: { type } }),
    ),
  });

  NodeGetInfo = async (): Promise<object> => ({
    node_id: this.options.nodeId,
    max_volumes_per_node: this.options.maxVolumes,
    accessible_topology: { segments: { [topologyKey]: this.options.nodeId } },
  });

  /**
   * After a plugin restart: engines still running are supervised again; attachments whose
   * engine is gone are torn down (with any mounts on them) so the next NodeStage rebuilds them
   * with a bitmap-guided resync. Each volume is handled under its lock, so a NodeStage that
   * arrives meanwhile waits for its volume's cleanup. Returns what it found, for the log.
   */
  async recover(): Promise<{ adopted: string[]; cleaned: string[] }> {
    const adopted: string[] = [];
    const cleaned: string[] = [];
    const volumes = [...(await this.catalog.scan()).values()];
    await Promise.all(
      volumes.map((v) =>
        this.locks.with(volumeKey(v.id), async () => {
          const socket = this.engines.socket(v.id);
          const engine = await this.engines.find(v.id);
          const device = await this.attacher.find(v.id, socket);
          if (engine) {
            await this.engines.adopt(v.id, this.engineSource(v));
            adopted.push(v.id);
          } else if (device) {
            for (const m of (await listMounts()).filter((m) => isVolumeMount(m, device)).reverse()) {
              await unmountAll(m.mountPoint, true);
            }
            await this.attacher.detach(v.id, socket, true);
            cleaned.push(v.id);
          }
        }),
      ),
    );
    return { adopted, cleaned };
  }

  /**
   * After a plugin restart, for replicated volumes (once their RaidVolumes are known): an engine
   * of a volume this node still owns is supervised again with its epoch and given the current
   * lease; one of a volume another node took meanwhile is stopped (its epoch is fenced anyway);
   * a dead attachment is cleared as for a node-local volume (the volume stays owned here: the
   * next NodeStage starts it with the same epoch).
   */
  async recoverReplicated(): Promise<{ adopted: string[]; stopped: string[]; cleaned: string[] }> {
    const out = { adopted: [] as string[], stopped: [] as string[], cleaned: [] as string[] };
    const stage = this.replicated;
    if (!stage) return out;
    const local = new Set((await this.catalog.scan()).keys());
    await Promise.all(
      (await stage.recoverable(local)).map((rv) =>
        this.locks.with(volumeKey(rv.id), async () => {
          const socket = this.engines.socket(rv.id);
          const engine = await this.engines.find(rv.id);
          const device = await this.attacher.find(rv.id, socket);
          if (engine && rv.owner.node === this.options.nodeId) {
            const volume = rv;
            const args = await stage.argsFor(volume, volume.owner.epoch);
            await this.engines.adopt(rv.id, args.restart);
            stage.started(rv.id, volume.owner.epoch);
            await stage.push(rv.id).catch((err: unknown) => trace('csi', 'error', () => `volume ${rv.id}: lease: ${describeError(err)}`));
            out.adopted.push(rv.id);
          } else if (engine) {
            await this.engines.stop(rv.id);
            out.stopped.push(rv.id);
          } else if (device) {
            for (const m of (await listMounts()).filter((m) => isVolumeMount(m, device)).reverse()) await unmountAll(m.mountPoint, true);
            await this.attacher.detach(rv.id, socket, true);
            out.cleaned.push(rv.id);
          }
        }),
      ),
    );
    return out;
  }
}
