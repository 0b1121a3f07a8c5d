// The CSI snapshot calls (CreateSnapshot, DeleteSnapshot, ListSnapshots) and the volumes made
// from a snapshot or cloned from a volume (CreateVolume's content source), for node-local
// volumes. Copies are reflinks of the member files (reflink.ts, snapshot-store.ts); a copy made
// into a volume gets its own md identity (md's reidentifyMembers) before it is renamed into the
// name the volume catalog scans, so no moment exists where it passes for a member of its source.

import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { PhaseTimer } from '../common/phase-timer.js';
import { describeError } from '../common/trace.js';
import { EngineError } from '../engine/control/client.js';
import type { CutStatus, CutTarget, FreezeConsistency } from '../engine/control/protocol.js';
import { arrayBytes, memberDataFor, memberFileBytes, reidentifyMembers, writtenChunks, type CreatableLevel } from '../md/index.js';
import type { ArrayBackend } from './array-backend.js';
import { claimFromParameters, writeClaim } from './claim-file.js';
import type { DiskPool } from './disk-pool.js';
import { CsiError, invalid, notFound } from './errors.js';
import type { CapacityRange, CreateVolumeRequest, VolumeContentSource } from './messages.js';
import type { VolumeSpec } from './parameters.js';
import { canClone, cloneFile } from './reflink.js';
import { newSnapshotId, snapshotIdPattern, type SnapshotRecord, type SnapshotStore, type StoredSnapshot } from './snapshot-store.js';
import { captureMembers, consistencyFor, SNAPSHOT_PAUSE_MS, type VolumeFreezer } from './volume-capture.js';
import type { VolumeCatalog, VolumeRecord } from './volume-catalog.js';
import { volumeKey, type VolumeLocks } from './volume-locks.js';
import { encodeSetName } from './volume-name.js';

/** What the snapshot calls need of the Node service: whether an engine runs, its freeze and its cuts. */
export interface SnapshotUsage extends VolumeFreezer {
  /** Whether the volume's engine runs (it is staged): only that, no status asked of it. */
  engineRunning(volumeId: string): Promise<boolean>;
  /** The engine's cut (engine/control/cut.ts): the copies hold the members as at the cut, filled in the background. */
  cut(volumeId: string, id: string, targets: CutTarget[], timeoutMs: number, consistency: FreezeConsistency): Promise<{ pausedMs: number }>;
  /** How the engine's copy of cut `id` goes; null when the engine has none (it restarted, or it is not running). */
  cutStatus(volumeId: string, id: string): Promise<CutStatus | null>;
  /** Gives the engine's copy of cut `id` up (nothing when there is none). */
  cutAbort(volumeId: string, id: string): Promise<void>;
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
      ready_to_use: r.copying !== true,
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
      if (existing && (existing.complete || existing.record.copying)) {
        if (existing.record.sourceVolumeId !== req.source_volume_id) {
          throw new CsiError('ALREADY_EXISTS', `CreateSnapshot: snapshot ${JSON.stringify(req.name)} exists as ${existing.record.id} of volume ${existing.record.sourceVolumeId}, the request names volume ${req.source_volume_id}`);
        }
        if (existing.complete) return { snapshot: this.toSnapshot(existing.record) };
        const progressed = await this.cutProgress(existing);
        if (progressed) return { snapshot: this.toSnapshot(progressed) };
      }
      // A snapshot a crash left half-renamed, or whose cut's copy was lost (its engine stopped
      // or failed before it was done): made again from the volume as it is now.
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
        if (staged) {
          const cut = await this.cutSnapshot(v, record, timer);
          if (cut) return { snapshot: this.toSnapshot(cut) };
        }
        const made = await this.store.create(
          record,
          (dsts) => {
            timer.mark('directories');
            return captureMembers(v, dsts, staged, this.usage, { timer });
          },
          (members) => this.writtenSummary(members),
        );
        timer.mark('record');
        this.log(`snapshot ${made.record.id} of volume ${v.id}: ${staged ? `staged, writes held ${made.record.pauseMs} ms` : 'not staged, nothing paused'}; ${timer.toString()}`);
        return { snapshot: this.toSnapshot(made.record) };
      });
    });
  };

  /**
   * A snapshot of a staged volume by its engine's cut: the record (copying) goes on the disks,
   * the engine makes the cut and copies in the background: ready_to_use false until a later
   * CreateSnapshot or ListSnapshots finds the copies done (cutProgress). → undefined when the
   * engine does not know the cut (an engine older than the plugin): the caller copies the volume
   * itself.
   */
  private async cutSnapshot(v: VolumeRecord, base: SnapshotRecord, timer: PhaseTimer): Promise<SnapshotRecord | undefined> {
    const record: SnapshotRecord & { copying: true } = { ...base, copying: true };
    const dsts = await this.store.prepareInPlace(record);
    timer.mark('record');
    try {
      // No write-back of the members' dirty pages first (the copy of a volume does one): each of
      // the engine's clones writes back its own range's pages, a few per piece, in the
      // background, where a write-back here (a copy on write per page the last snapshot shares)
      // was most of the call's time.
      const targets = v.members.map((m, slot) => ({ member: m.path, to: dsts[slot] as string }));
      const { pausedMs } = await this.usage.cut(v.id, record.id, targets, SNAPSHOT_PAUSE_MS, consistencyFor(v));
      timer.mark('cut');
      // The record gets the pause when it is finished (cutProgress: the engine's cut status has it).
      this.log(`snapshot ${record.id} of volume ${v.id}: staged, cut with writes held ${pausedMs} ms, copying in the engine; ${timer.toString()}`);
      return record;
    } catch (err) {
      await this.store.remove(record.id);
      if (err instanceof EngineError && err.code === 'EINVAL' && /expected a request/.test(err.message)) {
        this.log(`snapshot of volume ${v.id}: its engine does not make cuts (an older engine): the plugin copies the members`);
        return undefined;
      }
      if (err instanceof EngineError && err.code === 'ENOTSUP') {
        throw new CsiError('FAILED_PRECONDITION', `CreateSnapshot: volume ${v.id}: a disk of its members cannot clone file ranges (reflink): snapshots need XFS made with reflink=1 or btrfs: ${err.message}`);
      }
      throw err;
    }
  }

  /**
   * Where the engine's copy of cut snapshot `s` is: → its record, still copying (not ready),
   * while the engine copies; once every copy is there, the finished record (the written-chunk
   * summary added, `copying` dropped, durably: ready); undefined when the copy was lost (the
   * engine failed it, or stopped or restarted before it was done): the caller makes it again.
   */
  private async cutProgress(s: StoredSnapshot): Promise<SnapshotRecord | undefined> {
    const r = s.record;
    const status = await this.usage.cutStatus(r.sourceVolumeId, r.id).catch((err: unknown) => {
      this.log(`snapshot ${r.id}: its volume's engine did not answer cut-status: ${describeError(err)}`);
      return null;
    });
    if (!s.present) {
      if (status?.state === 'copying') return r;
      const again = await this.store.get(r.id);
      if (!again?.present) {
        this.log(`snapshot ${r.id}: its copy was lost (${status === null ? 'the engine has no such cut: it restarted or stopped before the copy was done' : `failed: ${status.error ?? 'unknown'}`}); made again`);
        return undefined;
      }
    }
    // The pause, from the engine while it runs (an engine stopped since took it along: 0).
    const pauseMs = status?.pausedMs ?? r.pauseMs;
    const finished = { ...r, pauseMs, ...(await this.writtenSummary(s.members)) };
    delete finished.copying;
    await this.store.writeRecord(finished);
    this.log(`snapshot ${r.id} of volume ${r.sourceVolumeId}: copied by its engine, ready`);
    return finished;
  }

  private async writtenSummary(members: string[]): Promise<Partial<SnapshotRecord>> {
    const w = await writtenChunks(members[0] as string);
    if (!w) return {};
    let n = 0;
    for (let i = 0; i < w.chunks; i++) if (((w.bits[i >> 3] as number) >> (i & 7)) & 1) n++;
    return { written: { chunkSize: w.chunkSize, chunks: w.chunks, writtenChunks: n } };
  }

  DeleteSnapshot = async (req: { snapshot_id: string }): Promise<object> => {
    if (!req.snapshot_id) throw invalid('DeleteSnapshot: snapshot_id is empty');
    // An id this plugin never issued names nothing: deleting it succeeds (idempotent).
    if (!snapshotIdPattern.test(req.snapshot_id)) return {};
    await this.locks.with(snapshotKey(req.snapshot_id), async () => {
      const s = await this.store.get(req.snapshot_id);
      // A cut still being copied is given up first: its engine stops writing into the files.
      if (s?.record.copying && !s.present) {
        await this.usage.cutAbort(s.record.sourceVolumeId, s.record.id).catch((err: unknown) => {
          this.log(`snapshot ${s.record.id}: giving its copy up: ${describeError(err)} (its files are removed anyway)`);
        });
      }
      await this.store.remove(req.snapshot_id);
    });
    return {};
  };

  ListSnapshots = async (req: { max_entries: number; starting_token: string; source_volume_id: string; snapshot_id: string }): Promise<object> => {
    if (req.max_entries < 0) throw invalid(`ListSnapshots: max_entries must not be negative, found ${req.max_entries}`);
    // Snapshots being copied are listed too, not ready to use until their copy is done: the CO
    // (csi-snapshotter) asks ListSnapshots, not CreateSnapshot again, whether one became ready,
    // so a list moves them on as CreateSnapshot does; a lost copy is removed (it never becomes ready).
    let all: SnapshotRecord[] = [];
    for (const s of (await this.store.scan()).values()) {
      if (s.complete) all.push(s.record);
      else if (s.record.copying && (!req.snapshot_id || req.snapshot_id === s.record.id) && (!req.source_volume_id || req.source_volume_id === s.record.sourceVolumeId)) {
        const r = await this.locks.with(snapshotNameKey(s.record.name), async () => {
          const now = await this.store.get(s.record.id);
          if (!now?.record.copying) return now?.complete ? now.record : undefined;
          const moved = await this.cutProgress(now);
          if (!moved) await this.store.remove(now.record.id);
          return moved;
        });
        if (r) all.push(r);
      }
    }
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
    if (s?.record.copying) throw new CsiError('UNAVAILABLE', `CreateVolume: source snapshot ${id} is still being copied (not ready to use yet)`);
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
