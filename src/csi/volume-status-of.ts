// One volume as src/k8s wants it (VolumeStatus: the RaidVolume, its Events, its metrics), made
// from what the plugin knows: the engine's live status while the volume is staged, otherwise
// the member superblocks and the freshest member's bitmap. Pure: status-feed.ts gathers inputs.

import path from 'node:path';
import type { ArrayStatus, BitmapCounts, SyncMode } from '../md/index.js';
import type { MemberRole, SyncAction, VolumeSnapshotInfo, VolumeState, VolumeStatus } from '../k8s/index.js';
import type { VolumeClaim } from './claim-file.js';
import type { VolumeRecord } from './volume-catalog.js';
import type { RuntimeState } from './volume-condition.js';

export interface SnapshotInputs {
  nodeId: string;
  volume: VolumeRecord;
  runtime: RuntimeState;
  claim: VolumeClaim | undefined;
  /** The freshest member's bitmap, read from disk, for a volume no engine holds. */
  offlineBitmap: { chunkSize: number; counts: BitmapCounts } | undefined;
  /** When the feed first saw each member out of sync (by member name); kept by the caller across snapshots. */
  staleSince?: ReadonlyMap<string, Date>;
  /** The node that holds a member, by member name; default: this node for paths, the URI's host for remote ones. */
  memberNode?: (member: string) => string | undefined;
  /** The volume's snapshots, oldest first. */
  snapshots?: VolumeSnapshotInfo[];
}

/** Why a pass of this kind runs, for people reading Events. */
const REASONS: Record<SyncMode, string> = {
  resync: 'the array was not stopped cleanly',
  recovery: 'a member was added or re-added',
  check: 'a check was requested',
  repair: 'a repair was requested',
};

/** Members a level can lose and still serve everything (raid10 as near=2). */
const TOLERANCE: Record<number, (raidDisks: number) => number> = { 0: () => 0, 1: (n) => n - 1, 10: () => 1, 5: () => 1, 6: () => 2 };

export function volumeStatusOf(i: SnapshotInputs): VolumeStatus {
  const v = i.volume;
  const live = i.runtime.array;
  const io = i.runtime.io;
  return {
    name: v.id,
    node: i.nodeId,
    level: v.level,
    chunkSize: v.chunkSize,
    sizeBytes: live?.size ?? v.capacity,
    ...(i.claim ? { claim: { namespace: i.claim.namespace, name: i.claim.name } } : {}),
    ...(i.claim?.persistentVolume ? { persistentVolume: i.claim.persistentVolume } : {}),
    ...(i.snapshots?.length ? { snapshots: i.snapshots } : {}),
    state: live ? liveState(live) : offlineState(v),
    members: (live ? liveMembers(live) : offlineMembers(v)).map((m) => withPlace(m, i)),
    ...bitmapOf(live, i.offlineBitmap),
    ...(live?.sync ? {
      sync: {
        action: live.sync.mode as SyncAction,
        reason: REASONS[live.sync.mode],
        doneBytes: Math.min(live.sync.position, live.sync.size),
        targetBytes: live.sync.targetBytes,
        syncedBytes: live.sync.bytesSynced,
        totalBytes: live.sync.size,
        speedBytesPerSecond: live.sync.speedKiBs * 1024,
        startedAt: new Date(live.sync.startedAt),
      },
    } : {}),
    ...(live?.lastSync ? {
      lastSync: {
        action: live.lastSync.mode as SyncAction,
        reason: REASONS[live.lastSync.mode],
        bytes: live.lastSync.bytesSynced,
        totalBytes: live.lastSync.size,
        durationSeconds: live.lastSync.seconds,
        finishedAt: new Date(live.lastSync.finishedAt),
      },
    } : {}),
    events: Number(live ? live.events : (v.members[0]?.events ?? 0n)),
    io: {
      readOps: io?.readOps ?? 0,
      readBytes: io?.readBytes ?? 0,
      // Writing zeroes is writing, as far as a user's workload goes.
      writeOps: (io?.writeOps ?? 0) + (io?.zeroOps ?? 0),
      writeBytes: (io?.writeBytes ?? 0) + (io?.zeroBytes ?? 0),
      flushOps: io?.flushOps ?? 0,
      discardOps: io?.discardOps ?? 0,
      discardBytes: io?.discardBytes ?? 0,
    },
    outOfSyncBytes: live ? outOfSync(live) : offlineOutOfSync(v, i.offlineBitmap),
  };
}

/** The member's node and, when it is not in sync, since when. */
function withPlace(m: VolumeStatus['members'][number], i: SnapshotInputs): VolumeStatus['members'][number] {
  const node = i.memberNode?.(m.path) ?? hostOf(m.path) ?? i.nodeId;
  const since = m.role === 'active' || m.role === 'spare' ? undefined : i.staleSince?.get(m.path);
  return { ...m, node, ...(since ? { staleSince: since } : {}) };
}

/** The host of a remote member's URI (nbds://HOST:PORT/NAME); undefined for a path. */
function hostOf(member: string): string | undefined {
  if (!/^nbds?(\+\w+)?:\/\//.test(member)) return undefined;
  try {
    return new URL(member).hostname.replace(/^\[|\]$/g, '') || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Bytes a running array owes some member. Whole and idle: nothing (Dirty chunks reached every
 * member; they only matter after a crash). Resyncing: the chunks still NeedSync/Syncing.
 * Degraded: every chunk written while a member was away (Dirty, NeedSync, Syncing) — what its
 * re-add will copy; a member being recovered: what its pass has not copied yet, if more.
 */
function outOfSync(a: ArrayStatus): number {
  const c = a.bitmap.counts;
  const chunk = a.bitmap.chunkSize;
  const owed = c.needSync + c.syncing + c.needSyncUnwritten + c.syncingUnwritten;
  const marked = a.degraded || a.members.some((m) => m.state !== 'in_sync' && m.state !== 'spare') ? c.dirty + owed : owed;
  const byBitmap = a.bitmap.kind === 'llbitmap' ? Math.min(a.size, marked * chunk) : a.degraded || a.resyncPending !== null ? a.size : 0;
  const recovering = a.members.reduce((n, m) => n + (m.recovery ? Math.max(0, m.recovery.bytesToCopy - m.recovery.bytesDone) : 0), 0);
  return Math.max(byBitmap, recovering);
}

/** A stopped volume: what its bitmap on disk marks when a member is missing or a resync is owed. */
function offlineOutOfSync(v: VolumeRecord, bitmap: SnapshotInputs['offlineBitmap']): number {
  const owed = v.missingRoles.length > 0 || v.staleMembers.length > 0 || v.resyncPending;
  if (!owed) return 0;
  if (!bitmap) return v.capacity;
  const c = bitmap.counts;
  const marked = v.missingRoles.length > 0 || v.staleMembers.length > 0 ? c.dirty + c.needSync + c.syncing : c.needSync + c.syncing;
  return Math.min(v.capacity, (marked + c.needSyncUnwritten + c.syncingUnwritten) * bitmap.chunkSize);
}

function liveState(a: ArrayStatus): VolumeState {
  // A fenced engine serves nothing: another engine took the members (the next issue reports it apart).
  if (a.state === 'failed' || a.state === 'fenced') return 'failed';
  if (a.sync?.mode === 'recovery') return 'recovering';
  if (a.sync?.mode === 'resync' || a.sync?.mode === 'repair') return 'resyncing';
  if (a.degraded) return 'degraded';
  return 'active';
}

function offlineState(v: VolumeRecord): VolumeState {
  const lost = v.missingRoles.length;
  if (lost > (TOLERANCE[v.level]?.(v.raidDisks) ?? 0)) return 'failed';
  if (lost > 0) return 'degraded';
  return v.resyncPending ? 'active' : 'clean';
}

function disk(memberPath: string): string {
  return path.basename(path.dirname(memberPath));
}

function liveMembers(a: ArrayStatus): VolumeStatus['members'] {
  const roles: Record<string, MemberRole> = { in_sync: 'active', rebuilding: 'rebuilding', spare: 'spare', faulty: 'faulty' };
  return a.members.map((m) => ({
    disk: disk(m.name),
    path: m.name,
    role: roles[m.state] ?? 'faulty',
    slot: m.role ?? -1,
    errors: m.errors,
    ...(m.failure ? { failure: m.failure } : {}),
    ...(m.recovery ? { recovery: { bytesDone: m.recovery.bytesDone, bytesToCopy: m.recovery.bytesToCopy } } : {}),
  }));
}

function offlineMembers(v: VolumeRecord): VolumeStatus['members'] {
  const stale = new Set(v.staleMembers);
  return v.members.map((m) => ({
    disk: disk(m.path),
    path: m.path,
    role: stale.has(m.path) ? 'faulty' : m.role === undefined ? 'spare' : 'active',
    slot: m.role ?? -1,
    errors: 0,
  }));
}

function bitmapOf(live: ArrayStatus | undefined, offline: SnapshotInputs['offlineBitmap']): Pick<VolumeStatus, 'bitmap'> {
  if (live) return live.bitmap.kind === 'llbitmap' ? { bitmap: { chunkSize: live.bitmap.chunkSize, counts: live.bitmap.counts } } : {};
  return offline ? { bitmap: offline } : {};
}
