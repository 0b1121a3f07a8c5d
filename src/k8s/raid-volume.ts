// The RaidVolume custom resource (llraid.io/v1alpha1, cluster-scoped): the object the node plugin
// keeps per volume so `kubectl get/describe raidvolume` shows level, members, bitmap and sync.
// Pure builders from a VolumeStatus snapshot; cluster-api.ts writes what they return.

import { formatBytes } from '../units/byte-sizes.js';
import { formatPercent } from './quantity.js';
import type { VolumeStatus } from './volume-status.js';

export const RAID_VOLUME_GROUP = 'llraid.io';
export const RAID_VOLUME_VERSION = 'v1alpha1';
export const RAID_VOLUME_PLURAL = 'raidvolumes';
export const RAID_VOLUME_KIND = 'RaidVolume';
export const RAID_VOLUME_API_VERSION = `${RAID_VOLUME_GROUP}/${RAID_VOLUME_VERSION}`;
/** Label on every RaidVolume: the node that owns it, so a plugin can list its own. */
export const NODE_LABEL = 'llraid.io/node';

export type ConditionType = 'Ready' | 'Degraded' | 'Syncing';

export interface Condition {
  type: ConditionType;
  status: 'True' | 'False';
  reason: string;
  message: string;
  lastTransitionTime: string;
}

/** The apply configuration of a RaidVolume without status (written through the main resource). */
export function raidVolumeSpec(s: VolumeStatus): Record<string, unknown> {
  const spec: Record<string, unknown> = {
    level: `raid${s.level}`,
    // raid1 has no chunk (mdadm prints none for it): a "Chunk Size: 0" would read as a fault.
    ...(s.chunkSize > 0 ? { chunkSize: s.chunkSize } : {}),
    sizeBytes: s.sizeBytes,
    size: formatBytes(s.sizeBytes),
    node: s.node,
    bitmap: s.bitmap ? 'llbitmap' : 'none',
    members: s.members.map((m) => ({ disk: m.disk, path: m.path, role: m.role, slot: m.slot })),
  };
  if (s.claim) spec.claim = { namespace: s.claim.namespace, name: s.claim.name };
  if (s.persistentVolume) spec.persistentVolume = s.persistentVolume;
  return {
    apiVersion: RAID_VOLUME_API_VERSION,
    kind: RAID_VOLUME_KIND,
    metadata: { name: s.name, labels: { [NODE_LABEL]: s.node } },
    spec,
  };
}

function wantedConditions(s: VolumeStatus): Omit<Condition, 'lastTransitionTime'>[] {
  const inSync = s.members.filter((m) => m.role === 'active').length;
  const faulty = s.members.filter((m) => m.role === 'faulty').map((m) => m.path);
  const ready = s.state !== 'failed';
  const degraded = s.state === 'degraded' || s.state === 'recovering' || s.state === 'failed' || faulty.length > 0;
  const sync = s.sync;
  const pending = s.bitmap ? s.bitmap.counts.needSync + s.bitmap.counts.needSyncUnwritten : 0;
  return [
    {
      type: 'Ready',
      status: ready ? 'True' : 'False',
      reason: ready ? 'ArrayRunning' : 'ArrayFailed',
      message: ready
        ? `${inSync} of ${s.members.length} members in sync, state ${s.state}`
        : `not enough members for raid${s.level}: ${inSync} of ${s.members.length} in sync`,
    },
    {
      type: 'Degraded',
      status: degraded ? 'True' : 'False',
      reason: degraded ? (faulty.length > 0 ? 'MemberFailed' : 'MissingRedundancy') : 'FullRedundancy',
      message: degraded
        ? faulty.length > 0 ? `faulty members: ${faulty.join(', ')}` : `state ${s.state}`
        : `all ${s.members.length} members in sync`,
    },
    sync
      ? {
          type: 'Syncing',
          status: 'True',
          reason: sync.action === 'recovery' ? 'Recovering' : 'Resyncing',
          message: `${sync.action} (${sync.reason}): ${syncSummary(sync)} copied (${formatPercent(sync.syncedBytes, sync.targetBytes)}), at ${formatBytes(sync.doneBytes)} of ${formatBytes(sync.totalBytes)}`,
        }
      : {
          type: 'Syncing',
          status: 'False',
          reason: pending > 0 ? 'SyncPending' : 'InSync',
          message: pending > 0 ? `${pending} chunks need sync` : 'no sync running or pending',
        },
  ];
}

/**
 * Conditions for `s`, keeping each previous lastTransitionTime whose status did not change, so
 * the time says when the condition last flipped, not when the plugin last wrote.
 */
export function conditionsFor(s: VolumeStatus, previous: readonly Condition[], now: Date): Condition[] {
  return wantedConditions(s).map((c) => {
    const before = previous.find((p) => p.type === c.type);
    const lastTransitionTime = before && before.status === c.status ? before.lastTransitionTime : now.toISOString();
    return { ...c, lastTransitionTime };
  });
}

const MEMBER_STATES: Record<VolumeStatus['members'][number]['role'], string> = {
  active: 'InSync',
  rebuilding: 'Recovering',
  faulty: 'Stale',
  spare: 'Spare',
};

/** One member as `kubectl describe raidvolume` shows it: where it is and how far behind. */
function memberStatus(m: VolumeStatus['members'][number]): Record<string, unknown> {
  const out: Record<string, unknown> = { slot: m.slot, node: m.node ?? '', member: m.path, state: MEMBER_STATES[m.role] };
  if (m.staleSince) out.staleSince = m.staleSince.toISOString();
  if (m.recovery) {
    const r = m.recovery;
    out.recovery = {
      bytesDone: r.bytesDone,
      bytesToCopy: r.bytesToCopy,
      progress: formatPercent(r.bytesDone, r.bytesToCopy),
      summary: `${formatBytes(r.bytesDone)} of ${formatBytes(r.bytesToCopy)}`,
    };
  }
  return out;
}

/** "9 MiB of 30.8 MiB marked": what a pass has copied of what the bitmap gave it. */
function syncSummary(p: { syncedBytes: number; targetBytes: number }): string {
  return `${formatBytes(p.syncedBytes)} of ${formatBytes(p.targetBytes)} marked`;
}

/** The status subresource body of a RaidVolume (apply configuration). */
export function raidVolumeStatus(s: VolumeStatus, conditions: readonly Condition[], now: Date): Record<string, unknown> {
  const active = s.members.filter((m) => m.role === 'active').length;
  const status: Record<string, unknown> = {
    state: s.state,
    membersInSync: `${active}/${s.members.length}`,
    members: s.members.map(memberStatus),
    outOfSyncBytes: s.outOfSyncBytes,
    outOfSync: formatBytes(s.outOfSyncBytes),
    events: s.events,
    observedAt: now.toISOString(),
    conditions,
  };
  if (s.bitmap) status.bitmap = { chunkSize: s.bitmap.chunkSize, ...s.bitmap.counts };
  if (s.sync) {
    const p = s.sync;
    const remaining = Math.max(0, p.targetBytes - p.syncedBytes);
    const sync: Record<string, unknown> = {
      action: p.action,
      reason: p.reason,
      doneBytes: p.doneBytes,
      targetBytes: p.targetBytes,
      syncedBytes: p.syncedBytes,
      totalBytes: p.totalBytes,
      // Of what the pass copies, as the member's recovery shows it: the position (doneBytes)
      // runs ahead through the chunks the bitmap lets it skip.
      progress: formatPercent(p.syncedBytes, p.targetBytes),
      summary: `${syncSummary(p)} copied, at ${formatBytes(p.doneBytes)} of ${formatBytes(p.totalBytes)}`,
      speed: `${formatBytes(p.speedBytesPerSecond)}/s`,
      speedBytesPerSecond: Math.round(p.speedBytesPerSecond),
      startedAt: p.startedAt.toISOString(),
    };
    // speedBytesPerSecond is bytes copied, the same measure as syncedBytes, so what is left of
    // the target over it is the time left.
    if (p.speedBytesPerSecond > 0) {
      sync.estimatedFinish = new Date(now.getTime() + (remaining / p.speedBytesPerSecond) * 1000).toISOString();
    }
    status.sync = sync;
  }
  if (s.lastSync) {
    const r = s.lastSync;
    status.lastSync = {
      action: r.action,
      reason: r.reason,
      bytes: r.bytes,
      totalBytes: r.totalBytes,
      summary: `${formatBytes(r.bytes)} of ${formatBytes(r.totalBytes)} in ${r.durationSeconds.toFixed(1)}s`,
      durationSeconds: Math.round(r.durationSeconds * 1000) / 1000,
      finishedAt: r.finishedAt.toISOString(),
    };
  }
  if (s.snapshots?.length) {
    status.snapshots = s.snapshots.map((snap) => ({
      id: snap.id,
      createdAt: snap.createdAt.toISOString(),
      sizeBytes: snap.sizeBytes,
      size: formatBytes(snap.sizeBytes),
      sharedBytes: snap.sharedBytes,
      shared: `${formatBytes(snap.sharedBytes)} (${formatPercent(snap.sharedBytes, snap.sizeBytes)})`,
      readyToUse: snap.readyToUse,
    }));
  }
  return {
    apiVersion: RAID_VOLUME_API_VERSION,
    kind: RAID_VOLUME_KIND,
    metadata: { name: s.name },
    status,
  };
}
