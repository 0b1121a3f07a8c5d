// The CSI snapshot calls (CreateSnapshot, DeleteSnapshot, ListSnapshots) and the volumes made
// from a snapshot or cloned from a volume (CreateVolume's content source), for node-local
// volumes. Copies are reflinks of the member files (reflink.ts, snapshot-store.ts); a copy made
// into a volume gets its own md identity (md's reidentifyMembers) before it is renamed into the
// name the volume catalog scans, so no moment exists where it passes for a member of its source.

import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { PhaseTimer } from '../common/phase-timer.js';
import { arrayBytes, memberDataFor, memberFileBytes, reidentifyMembers, writtenChunks, type CreatableLevel } from '../md/index.js';
import type { ArrayBackend } from './array-backend.js';
import { claimFromParameters, writeClaim } from './claim-file.js';
import type { DiskPool } from './disk-pool.js';
import { CsiError, invalid, notFound } from './errors.js';
import type { CapacityRange, CreateVolumeRequest, VolumeContentSource } from './messages.js';
import type { VolumeSpec } from './parameters.js';
import { canClone, cloneFile } from './reflink.js';
import { newSnapshotId, snapshotIdPattern, type SnapshotRecord, type SnapshotStore, type StoredSnapshot } from './snapshot-store.js';
import { captureMembers, type VolumeFreezer } from './volume-capture.js';
import type { VolumeCatalog, VolumeRecord } from './volume-catalog.js';
import { volumeKey, type VolumeLocks } from './volume-locks.js';
import { encodeSetName } from './volume-name.js';

/** What the snapshot calls need of the Node service: whether an engine runs, and its freeze. */
export interface SnapshotUsage extends VolumeFreezer {
  /** Whether the volume's engine runs (it is staged): only that, no status asked of it. */
  engineRunning(volumeId: string): Promise<boolean>;
}

export const snapshotKey = (id: string): string => `snapshot:${id}`;
const snapshotNameKey = (name: string): string => `snapshot-name:${name}`;

/** A volume's source of its content, and what a copy of it keeps. */
interface Source {
  geometry: { level: CreatableLevel; raidDisks: number; chunkSize: number; bitmap: SnapshotRecord['bitmap']; fsType: SnapshotRecord['fsType']; memberSize: number };
  sizeBytes: number;
  /** The disk of each member to copy, by slot: the copy's member goes on the same disk. */
  disks: string[];
  /** Copies the members to `dsts` at one instant. */
  copy(dsts: string[]): Promise<unknown>;
  contentSource: object;
}

export class SnapshotController {
  private cloneable: Promise<string[]> | undefined;

  constructor(
    private readonly pool: DiskPool,
    private readonly catalog: VolumeCatalog,
    private readonly store: SnapshotStore,
    private readonly arrays: ArrayBackend,
    private readonly usage: SnapshotUsage,
    private readonly locks: VolumeLocks,
    private readonly isReplicated: (volumeId: string) => Promise<boolean>,
    /** This node's name: new snapshot ids carry its tag (snapshot-store.ts). */
    private readonly nodeId: string,
    private readonly log: (line: string) => void,
  ) {}

  /**
   * A snapshot id of `volumeId` that names no snapshot yet. 32 random bits per id: a clash is
   * rare but would make the new copy's rename fail and its cleanup remove the older snapshot.
   * Called under the volume's lock, so no other CreateSnapshot of it picks the same id meanwhile.
   */
  private async freshId(volumeId: string): Promise<string> {
    for (;;) {
      const id = newSnapshotId(volumeId, this.nodeId);
      if (!(await this.store.get(id))) return id;
    }
  }

  /**
   * The pool's disks whose filesystem cannot clone files, probed once. The plugin advertises
   * snapshots and clones only when this is empty (ControllerGetCapabilities).
   */
  disksWithoutReflink(): Promise<string[]> {
    this.cloneable ??= (async () => {
      const out: string[] = [];
      for (const d of this.pool.disks) if (!(await canClone(d))) out.push(d);
      if (out.length > 0) this.log(`snapshots and clones are off: disks ${out.join(', ')} cannot clone files (reflink); they need XFS made with reflink=1 or btrfs`);
      return out;
    })();
    return this.cloneable;
  }

  private toSnapshot(r: SnapshotRecord): object {
    return {
      size_bytes: r.sizeBytes,
      snapshot_id: r.id,
      source_volume_id: r.sourceVolumeId,
      creation_time: r.createdAt,
      ready_to_use: true,
    };
  }

  private async byName(name: string): Promise<StoredSnapshot | undefined> {
    for (const s of (await this.store.scan()).values()) if (s.record.name === name) return s;
    return undefined;
  }

  CreateSnapshot = async (req: { source_volume_id: string; name: string }): Promise<object> => {
    if (!req.name) throw invalid('CreateSnapshot: name is empty');
    if (!req.source_volume_id) throw invalid('CreateSnapshot: source_volume_id is empty');
    const timer = new PhaseTimer();
    return this.locks.with(snapshotNameKey(req.name), async () => {
      timer.mark('lock');
      const existing = await this.byName(req.name);
      if (existing?.complete) {
        if (existing.record.sourceVolumeId !== req.source_volume_id) {
          throw new CsiError('ALREADY_EXISTS', `CreateSnapshot: snapshot ${JSON.stringify(req.name)} exists as ${existing.record.id} of volume ${existing.record.sourceVolumeId}, the request names volume ${req.source_volume_id}`);
        }
        return { snapshot: this.toSnapshot(existing.record) };
      }
      // A snapshot a crash left half-renamed: made again from the volume as it is now.
      if (existing) await this.store.remove(existing.record.id);
      timer.mark('name lookup');
      return this.locks.with(volumeKey(req.source_volume_id), async () => {
        timer.mark('lock');
        // Both scan (the process table, the pool's superblocks): side by side. The volume's own
        // error comes first; the engine's answer is only used for a volume that exists.
        const running = this.usage.engineRunning(req.source_volume_id);
        running.catch(() => undefined);
        const v = await this.sourceVolume(req.source_volume_id, 'CreateSnapshot');
        const staged = await running;
        const now = Date.now();
        const record: SnapshotRecord = {
          version: 1,
          id: await this.freshId(v.id),
          name: req.name,
          sourceVolumeId: v.id,
          createdAt: { seconds: Math.floor(now / 1000), nanos: (now % 1000) * 1_000_000 },
          sizeBytes: v.capacity,
          level: v.level,
          raidDisks: v.raidDisks,
          chunkSize: v.chunkSize,
          bitmap: v.bitmap,
          fsType: v.fsType,
          memberSize: v.memberSize,
          disks: v.members.map((m) => path.dirname(m.path)),
          pauseMs: 0,
        };
        timer.mark('volume lookup');
        const made = await this.store.create(
          record,
          (dsts) => {
            timer.mark('directories');
            return captureMembers(v, dsts, staged, this.usage, { timer });
          },
          async (members) => {
            const w = await writtenChunks(members[0] as string);
            if (!w) return {};
            let n = 0;
            for (let i = 0; i < w.chunks; i++) if (((w.bits[i >> 3] as number) >> (i & 7)) & 1) n++;
            return { written: { chunkSize: w.chunkSize, chunks: w.chunks, writtenChunks: n } };
          },
        );
        timer.mark('record');
        this.log(`snapshot ${made.record.id} of volume ${v.id}: ${staged ? `staged, writes held ${made.record.pauseMs} ms` : 'not staged, nothing paused'}; ${timer.toString()}`);
        return { snapshot: this.toSnapshot(made.record) };
      });
    });
  };

  DeleteSnapshot = async (req: { snapshot_id: string }): Promise<object> => {
    if (!req.snapshot_id) throw invalid('DeleteSnapshot: snapshot_id is empty');
    // An id this plugin never issued names nothing: deleting it succeeds (idempotent).
    if (!snapshotIdPattern.test(req.snapshot_id)) return {};
    await this.locks.with(snapshotKey(req.snapshot_id), () => this.store.remove(req.snapshot_id));
    return {};
  };

  ListSnapshots = async (req: { max_entries: number; starting_token: string; source_volume_id: string; snapshot_id: string }): Promise<object> => {
    if (req.max_entries < 0) throw invalid(`ListSnapshots: max_entries must not be negative, found ${req.max_entries}`);
    let all = [...(await this.store.scan()).values()].filter((s) => s.complete).map((s) => s.record);
    if (req.snapshot_id) all = all.filter((r) => r.id === req.snapshot_id);
    if (req.source_volume_id) all = all.filter((r) => r.sourceVolumeId === req.source_volume_id);
    let start = 0;
    if (req.starting_token) {
      // The token is the id of the first snapshot of the page, as ListVolumes' is.
      if (!snapshotIdPattern.test(req.starting_token)) {
        throw new CsiError('ABORTED', `ListSnapshots: starting_token ${JSON.stringify(req.starting_token)} is not a token this plugin issued`);
      }
      const i = all.findIndex((r) => r.id >= req.starting_token);
      start = i < 0 ? all.length : i;
    }
    const end = req.max_entries > 0 ? Math.min(all.length, start + req.max_entries) : all.length;
    return {
      entries: all.slice(start, end).map((r) => ({ snapshot: this.toSnapshot(r) })),
      next_token: end < all.length ? (all[end]?.id ?? '') : '',
    };
  };

  private async sourceVolume(id: string, what: string): Promise<VolumeRecord> {
    const v = /^[0-9a-f]{32}$/.test(id) ? await this.catalog.get(id) : undefined;
    if (v) return v;
    if (await this.isReplicated(id)) {
      throw new CsiError('FAILED_PRECONDITION', `${what}: volume ${id} is replicated over several nodes, and replicated volumes have no snapshots or clones yet: use a node-local volume (replicas 1)`);
    }
    throw notFound(`${what}: volume ${JSON.stringify(id)} does not exist`);
  }

  /**
   * CreateVolume with a content source, under the caller's name lock (no volume of that name
   * exists): a new volume with its own ids whose data is the source's at its instant, on the
   * disks of the source's members (a reflink stays within a filesystem), grown when the request
   * asks for more than the source holds.
   */
  async createFrom(req: CreateVolumeRequest, source: VolumeContentSource, spec: VolumeSpec, range: CapacityRange, given: ReadonlySet<string>): Promise<{ volume: VolumeRecord; contentSource: object }> {
    if (spec.replicas > 1) {
      throw new CsiError('FAILED_PRECONDITION', 'CreateVolume: a volume from a snapshot or a clone must be node-local (replicas 1): replicated volumes have no snapshots or clones yet');
    }
    const snapshotId = source.snapshot?.snapshot_id;
    const volumeId = source.volume?.volume_id;
    if (snapshotId !== undefined) {
      return this.locks.with(snapshotKey(snapshotId), async () => this.build(req, await this.fromSnapshot(snapshotId), spec, range, given));
    }
    if (volumeId !== undefined) {
      return this.locks.with(volumeKey(volumeId), async () => this.build(req, await this.fromVolume(volumeId), spec, range, given));
    }
    throw invalid('CreateVolume: volume_content_source names neither a snapshot nor a volume');
  }

  private async fromSnapshot(id: string): Promise<Source> {
    if (!id) throw invalid('CreateVolume: volume_content_source.snapshot.snapshot_id is empty');
    const s = await this.store.get(id);
    if (!s?.complete) throw notFound(`CreateVolume: source snapshot ${JSON.stringify(id)} does not exist`);
    const r = s.record;
    return {
      geometry: r,
      sizeBytes: r.sizeBytes,
      disks: r.disks,
      copy: async (dsts) => {
        for (const [i, m] of s.members.entries()) await cloneFile(m, dsts[i] as string);
      },
      contentSource: { snapshot: { snapshot_id: id } },
    };
  }

  private async fromVolume(id: string): Promise<Source> {
    if (!id) throw invalid('CreateVolume: volume_content_source.volume.volume_id is empty');
    const v = await this.sourceVolume(id, 'CreateVolume');
    const staged = await this.usage.engineRunning(v.id);
    return {
      geometry: v,
      sizeBytes: v.capacity,
      disks: v.members.map((m) => path.dirname(m.path)),
      copy: (dsts) => captureMembers(v, dsts, staged, this.usage),
      contentSource: { volume: { volume_id: id } },
    };
  }

  private async build(req: CreateVolumeRequest, src: Source, spec: VolumeSpec, range: CapacityRange, given: ReadonlySet<string>): Promise<{ volume: VolumeRecord; contentSource: object }> {
    const g = src.geometry;
    const diffs: string[] = [];
    if (given.has('level') && spec.level !== g.level) diffs.push(`level ${spec.level} ≠ the source's ${g.level}`);
    if (given.has('members') && spec.members !== g.raidDisks) diffs.push(`members ${spec.members} ≠ the source's ${g.raidDisks}`);
    if (given.has('chunkSize') && g.level !== 1 && spec.chunkSize !== g.chunkSize) diffs.push(`chunkSize ${spec.chunkSize} ≠ the source's ${g.chunkSize}`);
    if (given.has('bitmap') && spec.bitmap !== g.bitmap) diffs.push(`bitmap ${spec.bitmap} ≠ the source's ${g.bitmap}`);
    if (diffs.length > 0) throw invalid(`CreateVolume: a copy keeps its source's geometry: ${diffs.join(', ')}`);
    if (range.limit_bytes > 0 && range.limit_bytes < src.sizeBytes) {
      throw new CsiError('OUT_OF_RANGE', `CreateVolume: the source holds ${src.sizeBytes} bytes, above limit_bytes ${range.limit_bytes}`);
    }
    const uuid = randomBytes(16);
    const id = uuid.toString('hex');
    const finals = src.disks.map((d, slot) => this.pool.memberPath(d, id, slot));
    const parts = finals.map((p) => `${p}.part`);
    try {
      await src.copy(parts);
      await reidentifyMembers(parts, { uuid, name: encodeSetName(req.name, g.fsType) });
      // A crash-consistent copy (volume-capture.ts) owes the resync of the chunks Dirty at its
      // instant: done now, while nothing uses it, so the volume is delivered clean (not "resync
      // pending" until its first stage) for the price of those few chunks.
      await this.arrays.settle(parts);
      for (const [i, p] of parts.entries()) await fs.rename(p, finals[i] as string);
      const claim = claimFromParameters(req.parameters ?? {});
      if (claim) await writeClaim(finals, claim);
      let v = await this.catalog.get(id);
      if (!v) throw new CsiError('INTERNAL', `CreateVolume: volume ${id} was copied but its members do not read back`);
      if (range.required_bytes > v.capacity) v = await this.grow(v, range);
      return { volume: v, contentSource: src.contentSource };
    } catch (err) {
      await Promise.all([...parts, ...finals].map((p) => fs.rm(p, { force: true })));
      throw err;
    }
  }

  /** As ControllerExpandVolume grows an unstaged volume: member files first, then md. */
  private async grow(v: VolumeRecord, range: CapacityRange): Promise<VolumeRecord> {
    const chunk = v.chunkSize || 4096;
    const memberData = memberDataFor(v.level, v.raidDisks, chunk, range.required_bytes);
    const usable = arrayBytes(v.level, v.raidDisks, chunk, memberData);
    if (range.limit_bytes > 0 && usable > range.limit_bytes) {
      throw new CsiError('OUT_OF_RANGE', `CreateVolume: the array would hold ${usable} bytes, above limit_bytes ${range.limit_bytes}`);
    }
    for (const m of v.members) await this.pool.grow(m.path, memberFileBytes(memberData));
    await this.arrays.grow(v, memberData);
    const after = await this.catalog.get(v.id);
    if (!after) throw new CsiError('INTERNAL', `CreateVolume: volume ${v.id} grew but its members do not read back`);
    return after;
  }
}
