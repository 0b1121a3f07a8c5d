// The health of a volume as CSI reports it (VolumeCondition): abnormal, with a message, while the
// array is degraded, has stale members, has a resync pending, or its engine/attachment is lost.

import type { IoCounters } from '../block/counting-device.js';
import type { ArrayStatus } from '../md/index.js';
import type { VolumeCondition } from './messages.js';
import type { VolumeRecord } from './volume-catalog.js';

export interface RuntimeState {
  /** The volume is staged: its engine should be running. */
  staged: boolean;
  engineRunning: boolean;
  attached: boolean;
  /** The running engine's live view of the array, when it answered. */
  array?: ArrayStatus;
  /** What clients asked of the engine since it started, when it answered. */
  io?: IoCounters;
}

export function volumeCondition(v: VolumeRecord, runtime?: RuntimeState): VolumeCondition {
  const problems: string[] = [];
  if (v.missingRoles.length > 0) {
    problems.push(`degraded: ${v.missingRoles.length} of ${v.raidDisks} members missing (roles ${v.missingRoles.join(', ')})`);
  }
  if (v.staleMembers.length > 0) problems.push(`stale members: ${v.staleMembers.join(', ')}`);
  // While an engine runs, the superblocks say "active" (not clean) by design; only a stopped
  // volume with an unclean superblock has a resync waiting for its next stage.
  if (v.resyncPending && !runtime?.engineRunning) problems.push('resync pending: the array was not stopped cleanly');
  if (runtime?.staged && !runtime.engineRunning) problems.push('engine not running');
  if (runtime?.staged && runtime.engineRunning && !runtime.attached) problems.push('attachment lost');
  const live = runtime?.array;
  if (live) {
    if (live.degraded && v.missingRoles.length === 0) problems.push(`degraded: ${live.raidDisks - live.working} of ${live.raidDisks} members not in sync`);
    if (live.sync) problems.push(`${live.sync.mode} in progress: ${live.sync.percent.toFixed(1)}% done`);
    else if (live.resyncPending !== null) problems.push('resync pending');
  }
  return problems.length > 0 ? { abnormal: true, message: problems.join('; ') } : { abnormal: false, message: 'healthy' };
}
