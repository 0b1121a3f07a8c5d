// The snapshot of one volume that the CSI layer hands to src/k8s: what the RaidVolume object,
// the Events and the metrics are made from. Plain data on purpose: src/k8s imports nothing of
// llraid, so the CSI layer maps the md array's status() into this shape. The shapes here are the
// RaidVolume API users read, so they are declared here, not taken from md's or block's types
// (BitmapCounts, IoCounters): an internal change must not change the API without a change here,
// and the CSI mapping (volume-status-of.ts) fails to compile when the two part.

import { K8sError } from './errors.js';

export type VolumeState = 'clean' | 'active' | 'degraded' | 'resyncing' | 'recovering' | 'failed';
export const VOLUME_STATES: readonly VolumeState[] = ['clean', 'active', 'degraded', 'resyncing', 'recovering', 'failed'];

/** Role of a member in its array, as the superblock records it. */
export type MemberRole = 'active' | 'spare' | 'faulty' | 'rebuilding';
export const MEMBER_ROLES: readonly MemberRole[] = ['active', 'spare', 'faulty', 'rebuilding'];

export interface MemberStatus {
  /** The pool disk (failure domain) that holds the member, e.g. "disk-a". */
  disk: string;
  /** The member file on the node. */
  path: string;
  role: MemberRole;
  /** Slot in the array (md dev_roles index); -1 for a spare. */
  slot: number;
  /** I/O errors this member returned since the engine started (cumulative). */
  errors: number;
  /** Why the member was failed, when it is faulty. */
  failure?: string;
  /** The node whose disk holds the member (a replicated volume's members sit on several). */
  node?: string;
  /** Since when the member has not been in sync (faulty, awaited or rebuilding), as this plugin saw it. */
  staleSince?: Date;
  /** A rebuilding member's recovery: bytes copied so far of those the pass set out to copy. */
  recovery?: { bytesDone: number; bytesToCopy: number };
}

/** Chunks per llbitmap state (llbitmap.md A3 order). */
export interface BitmapCounts {
  unwritten: number;
  clean: number;
  dirty: number;
  needSync: number;
  syncing: number;
  needSyncUnwritten: number;
  syncingUnwritten: number;
  cleanUnwritten: number;
}
export const BITMAP_STATES: readonly (keyof BitmapCounts)[] = [
  'unwritten', 'clean', 'dirty', 'needSync', 'syncing', 'needSyncUnwritten', 'syncingUnwritten', 'cleanUnwritten',
];

export type SyncAction = 'resync' | 'recovery' | 'check' | 'repair';
export const SYNC_ACTIONS: readonly SyncAction[] = ['resync', 'recovery', 'check', 'repair'];

/** A sync pass that is running now. */
export interface SyncProgress {
  action: SyncAction;
  /** Why it runs, for people: "unclean shutdown", "member re-added", ... */
  reason: string;
  /** Bytes of the sync space the pass has handled (synced or skipped). */
  doneBytes: number;
  /** Bytes the bitmap marked for this pass: what it will actually copy. */
  targetBytes: number;
  /** Bytes the pass has copied so far: the "done" of targetBytes (doneBytes counts skipped ones). */
  syncedBytes: number;
  /** Bytes of the whole sync space (the denominator for "of how many"). */
  totalBytes: number;
  /** Bytes copied per second (md's sync_speed; what the recovery speed limits bound), as syncedBytes. */
  speedBytesPerSecond: number;
  startedAt: Date;
}

/** The last sync pass that finished. */
export interface SyncResult {
  action: SyncAction;
  reason: string;
  /** Bytes actually copied. */
  bytes: number;
  /** Bytes of the whole sync space. */
  totalBytes: number;
  durationSeconds: number;
  finishedAt: Date;
}

/**
 * One snapshot of the volume (reflink copies of its members on the same disks), for `kubectl
 * describe raidvolume`: how big it is and how much of it still shares blocks with the volume,
 * so what it costs on disk is the rest.
 */
export interface VolumeSnapshotInfo {
  /** The CSI snapshot id (the VolumeSnapshotContent's snapshotHandle). */
  id: string;
  createdAt: Date;
  /** The volume's size when the snapshot was taken. */
  sizeBytes: number;
  /** Bytes of the array (its address space) whose blocks the snapshot still shares with the volume; at most sizeBytes. */
  sharedBytes: number;
  readyToUse: boolean;
}

/**
 * Cumulative I/O counters of the volume since its engine started: the engine's counters, with
 * write-zeroes counted as writes (what a user asks of a volume is reads, writes and discards).
 */
export interface IoCounters {
  readOps: number;
  readBytes: number;
  writeOps: number;
  writeBytes: number;
  flushOps: number;
  discardOps: number;
  discardBytes: number;
}

export interface VolumeStatus {
  /** The CSI volume id; also the RaidVolume's name, so a DNS-1123 subdomain. */
  name: string;
  /** The node the members live on. */
  node: string;
  level: 0 | 1 | 10 | 5 | 6;
  /** Bytes per md chunk (stripe unit); 0 for raid1. */
  chunkSize: number;
  /** Usable size of the array in bytes. */
  sizeBytes: number;
  /** The PVC this volume was provisioned for, when known (csi-provisioner --extra-create-metadata). */
  claim?: { namespace: string; name: string };
  /** The PersistentVolume name, when known. */
  persistentVolume?: string;
  state: VolumeState;
  members: MemberStatus[];
  /** Absent for bitmap: none. */
  bitmap?: { chunkSize: number; counts: BitmapCounts };
  sync?: SyncProgress;
  lastSync?: SyncResult;
  /** The md superblock events counter of the freshest member. */
  events: number;
  io: IoCounters;
  /**
   * Bytes not yet on every member that should hold them: the chunks a missing or rebuilding
   * member still needs, or a resync still owes (DRBD's out-of-sync, md's mismatch-to-be).
   */
  outOfSyncBytes: number;
  /** The volume's snapshots, oldest first; absent or empty when it has none. */
  snapshots?: VolumeSnapshotInfo[];
}

/** One disk of the node's pool, for capacity metrics. */
export interface PoolDiskStatus {
  disk: string;
  path: string;
  capacityBytes: number;
  freeBytes: number;
}

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LEVELS = new Set([0, 1, 10, 5, 6]);

function count(what: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new K8sError('EINVAL', `${what}: expected a non-negative integer, found ${String(value)}`);
  }
}

/**
 * Checks a snapshot before anything is derived from it, so a bad snapshot becomes one clear
 * error at `update()` instead of a rejected API write later. Returns the snapshot unchanged.
 */
export function checkVolumeStatus(s: VolumeStatus): VolumeStatus {
  if (typeof s.name !== 'string' || s.name.length > 253 || !DNS1123_SUBDOMAIN.test(s.name)) {
    throw new K8sError('EINVAL', `volume name: expected a DNS-1123 subdomain of at most 253 characters, found ${JSON.stringify(s.name)}`);
  }
  const where = `volume ${s.name}`;
  if (typeof s.node !== 'string' || s.node === '') throw new K8sError('EINVAL', `${where}: node: expected a node name, found ${JSON.stringify(s.node)}`);
  if (!LEVELS.has(s.level)) throw new K8sError('EINVAL', `${where}: level: expected one of 0, 1, 10, 5, 6, found ${String(s.level)}`);
  if (!VOLUME_STATES.includes(s.state)) {
    throw new K8sError('EINVAL', `${where}: state: expected one of ${VOLUME_STATES.join(', ')}, found ${JSON.stringify(s.state)}`);
  }
  count(`${where}: chunkSize`, s.chunkSize);
  count(`${where}: sizeBytes`, s.sizeBytes);
  count(`${where}: events`, s.events);
  if (!Array.isArray(s.members) || s.members.length === 0) throw new K8sError('EINVAL', `${where}: members: expected at least one member, found none`);
  for (const m of s.members) {
    if (!MEMBER_ROLES.includes(m.role)) {
      throw new K8sError('EINVAL', `${where}: member ${m.path}: role: expected one of ${MEMBER_ROLES.join(', ')}, found ${JSON.stringify(m.role)}`);
    }
    count(`${where}: member ${m.path}: errors`, m.errors);
    if (m.recovery) {
      count(`${where}: member ${m.path}: recovery bytesDone`, m.recovery.bytesDone);
      count(`${where}: member ${m.path}: recovery bytesToCopy`, m.recovery.bytesToCopy);
    }
  }
  count(`${where}: outOfSyncBytes`, s.outOfSyncBytes);
  if (s.bitmap) for (const k of BITMAP_STATES) count(`${where}: bitmap ${k}`, s.bitmap.counts[k]);
  for (const [k, v] of Object.entries(s.io)) count(`${where}: io ${k}`, v);
  if (s.sync) {
    const p = s.sync;
    if (!SYNC_ACTIONS.includes(p.action)) throw new K8sError('EINVAL', `${where}: sync action: expected one of ${SYNC_ACTIONS.join(', ')}, found ${JSON.stringify(p.action)}`);
    count(`${where}: sync doneBytes`, p.doneBytes);
    count(`${where}: sync totalBytes`, p.totalBytes);
    count(`${where}: sync targetBytes`, p.targetBytes);
    count(`${where}: sync syncedBytes`, p.syncedBytes);
    if (p.doneBytes > p.totalBytes) throw new K8sError('EINVAL', `${where}: sync doneBytes: expected at most totalBytes ${p.totalBytes}, found ${p.doneBytes}`);
  }
  if (s.lastSync) {
    count(`${where}: lastSync bytes`, s.lastSync.bytes);
    count(`${where}: lastSync totalBytes`, s.lastSync.totalBytes);
  }
  for (const snap of s.snapshots ?? []) {
    if (typeof snap.id !== 'string' || snap.id === '') throw new K8sError('EINVAL', `${where}: snapshot id: expected a CSI snapshot id, found ${JSON.stringify(snap.id)}`);
    count(`${where}: snapshot ${snap.id}: sizeBytes`, snap.sizeBytes);
    count(`${where}: snapshot ${snap.id}: sharedBytes`, snap.sharedBytes);
    if (snap.sharedBytes > snap.sizeBytes) {
      throw new K8sError('EINVAL', `${where}: snapshot ${snap.id}: sharedBytes: expected at most sizeBytes ${snap.sizeBytes}, found ${snap.sharedBytes}`);
    }
  }
  if (s.claim && (!DNS1123_SUBDOMAIN.test(s.claim.name) || !DNS1123_SUBDOMAIN.test(s.claim.namespace))) {
    throw new K8sError('EINVAL', `${where}: claim: expected namespace/name, found ${JSON.stringify(s.claim)}`);
  }
  return s;
}
