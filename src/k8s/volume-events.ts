// Which Kubernetes Events a change of a volume deserves: the pure diff of two snapshots. The
// reporter turns each into an Event on the PVC, the PV and the RaidVolume. Only what a user must
// know: a sync starting and finishing, a member failing or lost (on another node) and back,
// losing and regaining redundancy.

import { formatBytes } from '../units/byte-sizes.js';
import type { VolumeStatus } from './volume-status.js';

export type VolumeEventReason =
  | 'ResyncStarted' | 'ResyncCompleted' | 'RecoveryStarted' | 'RecoveryCompleted'
  | 'MemberFailed' | 'MemberLost' | 'MemberBack' | 'Degraded' | 'Recovered'
  /** A node took a replicated volume over from one whose Lease expired (takeover-event.ts, not a snapshot diff). */
  | 'TakeOver';

export interface VolumeEvent {
  reason: VolumeEventReason;
  type: 'Normal' | 'Warning';
  message: string;
}

const REDUNDANT = new Set(['clean', 'active', 'resyncing']);

function sameSync(a: VolumeStatus['sync'], b: VolumeStatus['sync']): boolean {
  return !!a && !!b && a.action === b.action && a.startedAt.getTime() === b.startedAt.getTime();
}

/** A member as Events name it: by its slot; a faulty one holds none (its failure names where it is). */
function memberName(m: { slot: number }): string {
  return m.slot >= 0 ? `member ${m.slot}` : 'a member';
}

/**
 * Events for the step `prev` → `next` (prev undefined: the plugin just learned of the volume, so
 * a sync already running is reported as started, and an already degraded volume as degraded).
 */
export function volumeEvents(prev: VolumeStatus | undefined, next: VolumeStatus): VolumeEvent[] {
  const out: VolumeEvent[] = [];
  const total = (n: number) => formatBytes(n);

  const before = new Map((prev?.members ?? []).map((m) => [m.path, m.role]));
  for (const m of next.members) {
    const was = before.get(m.path);
    const away = m.node !== undefined && m.node !== next.node;
    if (m.role === 'faulty' && was !== 'faulty') {
      // A member on another node is lost with its node or the link to it, not by its disk.
      out.push(away
        ? { reason: 'MemberLost', type: 'Warning', message: `${memberName(m)} on node ${m.node} lost${m.failure ? `: ${m.failure}` : ''}; the bitmap keeps what it misses` }
        : { reason: 'MemberFailed', type: 'Warning', message: `member ${m.path} on disk ${m.disk} failed after ${m.errors} I/O errors${m.failure ? `: ${m.failure}` : ''}` });
    } else if (away && was === 'faulty' && (m.role === 'rebuilding' || m.role === 'active')) {
      // Its node or link came back (a local member's return is told by Recovered).
      const where = `${memberName(m)} on node ${m.node}`;
      out.push({
        reason: 'MemberBack',
        type: 'Normal',
        message: m.recovery
          ? `${where} is back: recovering ${total(m.recovery.bytesToCopy)} written while it was away`
          : m.role === 'rebuilding'
            ? `${where} is back: recovering what was written while it was away`
            : `${where} is back and in sync`,
      });
    }
  }

  const wasRedundant = prev ? REDUNDANT.has(prev.state) : true;
  const isRedundant = REDUNDANT.has(next.state);
  if (wasRedundant && !isRedundant) {
    const inSync = next.members.filter((m) => m.role === 'active').length;
    out.push({
      reason: 'Degraded',
      type: 'Warning',
      message: `raid${next.level} volume is ${next.state}: ${inSync} of ${next.members.length} members in sync`,
    });
  } else if (prev && !wasRedundant && isRedundant) {
    out.push({ reason: 'Recovered', type: 'Normal', message: `raid${next.level} volume has full redundancy again: all ${next.members.length} members in sync` });
  }

  const started = (action: string): VolumeEventReason => (action === 'recovery' ? 'RecoveryStarted' : 'ResyncStarted');
  const s = next.sync;
  if (s && !sameSync(prev?.sync, s)) {
    out.push({
      reason: started(s.action),
      type: 'Normal',
      message: `${s.action} started (${s.reason}): ${total(s.targetBytes)} of ${total(s.totalBytes)} marked by the bitmap`,
    });
  }
  const r = next.lastSync;
  if (r && (!prev?.lastSync || prev.lastSync.finishedAt.getTime() !== r.finishedAt.getTime())) {
    // A bitmap-guided pass can start and finish between two polls; its start still deserves
    // its event, or a user reading the PVC sees a pass complete that never began.
    const seenRunning = prev?.sync?.action === r.action && prev.sync.startedAt.getTime() <= r.finishedAt.getTime();
    if (!seenRunning) {
      out.push({
        reason: started(r.action),
        type: 'Normal',
        message: `${r.action} started (${r.reason}): ${total(r.bytes)} of ${total(r.totalBytes)} marked by the bitmap`,
      });
    }
    out.push({
      reason: r.action === 'recovery' ? 'RecoveryCompleted' : 'ResyncCompleted',
      type: 'Normal',
      message: `${r.action} completed (${r.reason}): ${total(r.bytes)} of ${total(r.totalBytes)} ${r.action === 'recovery' ? 'copied' : 'resynced'} (${r.bytes} of ${r.totalBytes} bytes) in ${r.durationSeconds.toFixed(1)}s`,
    });
  }
  return out;
}
