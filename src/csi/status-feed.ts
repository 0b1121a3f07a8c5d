// The node plugin's report to the cluster: every few seconds it looks at each volume on the pool
// (live from its engine's control socket while staged, from the member superblocks and the
// freshest member's bitmap otherwise) and hands src/k8s a VolumeStatus, which becomes
// the RaidVolume's status, Events on the PVC and PV, and metrics. It never touches the I/O
// path: a slow API server slows only this loop, and src/k8s rate-limits and retries on its own.

import path from 'node:path';
import { examineMemberReport, readSnapshotMembers, sharedBytes } from '../md/index.js';
import type { BitmapCounts } from '../md/index.js';
import type { NodeReporting, VolumeSnapshotInfo } from '../k8s/index.js';
import { readClaim, type VolumeClaim } from './claim-file.js';
import type { DiskPool } from './disk-pool.js';
import type { StoredSnapshot } from './snapshot-store.js';
import type { UnreadableMember, VolumeCatalog, VolumeRecord } from './volume-catalog.js';
import type { RuntimeState } from './volume-condition.js';
import { volumeStatusOf } from './volume-status-of.js';

export interface StatusFeedOptions {
  nodeId: string;
  catalog: VolumeCatalog;
  pool: DiskPool;
  runtime: (volumeId: string) => Promise<RuntimeState>;
  reporting: NodeReporting;
  /** Between two looks at every volume (default 2 s). */
  intervalMs?: number;
  /**
   * The replicated volumes this node owns (replicated-status.ts): reported while their engine runs
   * here, live, with each member's node; the node that owns a volume is the one that reports it.
   */
  replicated?: () => ReplicatedReport[];
  /** Every snapshot on the pool (the snapshot store's scan). */
  snapshots?: () => Promise<Map<string, StoredSnapshot>>;
  log: (message: string) => void;
}

/**
 * How often a snapshot's shared bytes are measured again (extent maps of every member of the
 * snapshot and of the volume), and the unit they are reported in: a volume being written
 * changes them all the time, and its status must not be rewritten at every look.
 */
const SHARED_REFRESH_MS = 5 * 60_000;
const SHARED_UNIT = 1024 * 1024;

/** A replicated volume as the feed reports it. */
export interface ReplicatedReport {
  volume: VolumeRecord;
  claim: VolumeClaim | undefined;
  /** The node of an engine's member (its path or URI). */
  memberNode: (member: string) => string | undefined;
}

type OfflineBitmap = { chunkSize: number; counts: BitmapCounts } | undefined;

export class StatusFeed {
  private timer: NodeJS.Timeout | undefined;
  private pass: Promise<void> | undefined;
  /** Volumes reported by the last pass: one gone since is removed from the cluster. */
  private known = new Set<string>();
  /** Bitmaps of volumes no engine holds, read once per superblock events value. */
  private readonly offline = new Map<string, { key: string; bitmap: OfflineBitmap }>();
  /** Per volume, when each member out of sync was first seen so (in memory: a restart starts over). */
  private readonly stale = new Map<string, Map<string, Date>>();
  /** The unreadable member files of the last pass, with why: in how many passes in a row. */
  private unreadable = new Map<string, number>();
  /** Per snapshot id, its shared bytes and when they were measured. */
  private readonly shared = new Map<string, { bytes: number; at: number }>();

  constructor(private readonly o: StatusFeedOptions) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.poke(), this.o.intervalMs ?? 2000);
    this.timer.unref();
    void this.poke();
  }

  /** Looks at every volume now (joins a pass already running). */
  poke(): Promise<void> {
    this.pass ??= this.look().finally(() => (this.pass = undefined));
    return this.pass;
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.pass;
  }

  private async look(): Promise<void> {
    let volumes: Map<string, VolumeRecord>;
    let unreadable: UnreadableMember[];
    try {
      ({ volumes, unreadable } = await this.o.catalog.survey());
    } catch (err) {
      this.o.log(`status: scanning the pool failed: ${(err as Error).message}`);
      return;
    }
    const snapshots = await this.snapshotsByVolume();
    for (const v of volumes.values()) {
      try {
        const runtime = await this.o.runtime(v.id);
        const paths = v.members.map((m) => m.path);
        this.o.reporting.update(volumeStatusOf({
          nodeId: this.o.nodeId,
          volume: v,
          runtime,
          claim: await readClaim(paths),
          offlineBitmap: runtime.array ? undefined : await this.offlineBitmap(v),
          staleSince: this.staleSince(v, runtime),
          snapshots: await this.snapshotInfo(v, snapshots.get(v.id) ?? []),
        }));
      } catch (err) {
        this.o.log(`status of volume ${v.id}: ${(err as Error).message}`);
      }
    }
    const reported = new Set(volumes.keys());
    // A volume whose member files stopped reading keeps its last status (its RaidVolume is not
    // removed as if it were deleted). Each such file is logged once per reason, when a second
    // pass finds it so: a CreateVolume writes a new member's superblock just after making the file.
    const unread = new Map<string, number>();
    for (const u of unreadable) {
      const key = `${u.path}: ${u.reason}`;
      const passes = (this.unreadable.get(key) ?? 0) + 1;
      unread.set(key, passes);
      if (passes === 2) this.o.log(`status: member file ${key}`);
      if (this.known.has(u.volumeId)) reported.add(u.volumeId);
    }
    this.unreadable = unread;
    for (const r of this.o.replicated?.() ?? []) {
      const v = r.volume;
      if (reported.has(v.id)) continue;
      try {
        const runtime = await this.o.runtime(v.id);
        // Only its live status says anything: the members are spread over nodes, the superblocks here are some of them.
        if (!runtime.array) continue;
        this.o.reporting.update(volumeStatusOf({
          nodeId: this.o.nodeId, volume: v, runtime, claim: r.claim, offlineBitmap: undefined,
          staleSince: this.staleSince(v, runtime), memberNode: r.memberNode,
        }));
        reported.add(v.id);
      } catch (err) {
        this.o.log(`status of volume ${v.id}: ${(err as Error).message}`);
      }
    }
    for (const id of this.known) {
      if (!reported.has(id)) {
        this.o.reporting.remove(id);
        this.offline.delete(id);
        this.stale.delete(id);
      }
    }
    this.known = reported;
    try {
      const usage = await this.o.pool.usage();
      this.o.reporting.setPool(usage.map((u) => ({ disk: path.basename(u.path), path: u.path, capacityBytes: u.totalBytes, freeBytes: u.freeBytes })));
    } catch (err) {
      this.o.log(`status: pool usage: ${(err as Error).message}`);
    }
  }

  /** The complete snapshots on the pool, by source volume, oldest first. */
  private async snapshotsByVolume(): Promise<Map<string, StoredSnapshot[]>> {
    const out = new Map<string, StoredSnapshot[]>();
    if (!this.o.snapshots) return out;
    try {
      for (const s of (await this.o.snapshots()).values()) {
        if (!s.complete) continue;
        const list = out.get(s.record.sourceVolumeId) ?? [];
        list.push(s);
        out.set(s.record.sourceVolumeId, list);
      }
    } catch (err) {
      this.o.log(`status: listing snapshots: ${(err as Error).message}`);
    }
    const ids = new Set([...out.values()].flat().map((s) => s.record.id));
    for (const id of this.shared.keys()) if (!ids.has(id)) this.shared.delete(id);
    for (const list of out.values()) list.sort((a, b) => a.record.createdAt.seconds - b.record.createdAt.seconds || a.record.createdAt.nanos - b.record.createdAt.nanos);
    return out;
  }

  /** What `kubectl describe raidvolume` lists of a volume's snapshots; shared bytes measured at most every SHARED_REFRESH_MS. */
  private async snapshotInfo(v: VolumeRecord, list: StoredSnapshot[]): Promise<VolumeSnapshotInfo[]> {
    const out: VolumeSnapshotInfo[] = [];
    for (const s of list) {
      const r = s.record;
      let cached = this.shared.get(r.id);
      if (!cached || Date.now() - cached.at >= SHARED_REFRESH_MS) {
        try {
          const live = await readSnapshotMembers(v.members.map((m) => m.path));
          const bytes = await sharedBytes(await readSnapshotMembers(s.members), live);
          cached = { bytes: Math.min(r.sizeBytes, Math.floor(bytes / SHARED_UNIT) * SHARED_UNIT), at: Date.now() };
        } catch (err) {
          // Unknown until measured: the snapshot is listed, its sharing reported as none.
          this.o.log(`status: snapshot ${r.id}: shared bytes: ${(err as Error).message}`);
          cached = { bytes: cached?.bytes ?? 0, at: Date.now() };
        }
        this.shared.set(r.id, cached);
      }
      out.push({ id: r.id, createdAt: new Date(r.createdAt.seconds * 1000 + Math.floor(r.createdAt.nanos / 1e6)), sizeBytes: r.sizeBytes, sharedBytes: cached.bytes, readyToUse: true });
    }
    return out;
  }

  /** Members not in sync now, each with the time this feed first saw it so. */
  private staleSince(v: VolumeRecord, runtime: RuntimeState): Map<string, Date> {
    const before = this.stale.get(v.id) ?? new Map<string, Date>();
    const now = new Date();
    const out = new Map<string, Date>();
    const behind = runtime.array
      ? runtime.array.members.filter((m) => m.state !== 'in_sync' && m.state !== 'spare').map((m) => m.name)
      : v.staleMembers;
    for (const name of behind) out.set(name, before.get(name) ?? now);
    this.stale.set(v.id, out);
    return out;
  }

  private async offlineBitmap(v: VolumeRecord): Promise<OfflineBitmap> {
    const freshest = v.members[0];
    if (!freshest || v.bitmap !== 'llbitmap') return undefined;
    // A stopped array's bitmap changes only with its superblocks (events go up at every stop).
    const key = `${freshest.path}:${freshest.events}`;
    const cached = this.offline.get(v.id);
    if (cached?.key === key) return cached.bitmap;
    const report = await examineMemberReport(freshest.path);
    const bitmap = report.bitmap ? { chunkSize: report.bitmap.chunkSize, counts: report.bitmap.counts } : undefined;
    this.offline.set(v.id, { key, bitmap });
    return bitmap;
  }
}
