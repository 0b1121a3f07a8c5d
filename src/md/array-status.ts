// The plain, JSON-ready snapshot MdArray.status() returns: what the CLI prints, the CSI plugin
// turns into volume conditions, and the status resource reports. No behaviour lives here.

import type { MemberState } from './member.js';
import type { SyncProgress, SyncSummary } from './sync-thread.js';
import type { BitmapCounts } from './write-intent-bitmap.js';

const LEVEL_NAMES: Record<number, string> = { 0: 'raid0', 1: 'raid1', 4: 'raid4', 5: 'raid5', 6: 'raid6', 10: 'raid10' };

/** The md personality name of a superblock level ("raid10"). */
export function levelName(level: number): string {
  return LEVEL_NAMES[level] ?? `level ${level}`;
}

/**
 * fenced: a member's device said another engine took it (a higher attach epoch); the array
 * writes nothing more and every request rejects with EFENCED until it is stopped.
 */
export type ArrayState = 'active' | 'degraded' | 'failed' | 'fenced' | 'stopped';

/**
 * A rebuilding member's recovery, in sync-space bytes (array bytes for raid1/raid10, member
 * bytes for the parity levels): what the pass set out to copy and how far it got.
 */
export interface MemberRecovery {
  /** bitmap: only the chunks written while it was away (a re-add); full: every written chunk. */
  kind: 'bitmap' | 'full';
  /** Bytes recovered so far by this pass. */
  bytesDone: number;
  /**
   * Bytes the pass expects to copy: the bitmap's marked chunks × its chunk size (bitmap), or
   * every written chunk (full), clipped to the array's end.
   */
  bytesToCopy: number;
  /** Bytes this pass wrote to rebuilding members (raid10: only the copies on them). */
  bytesWritten: number;
  /** The pass's throttle, KiB/s (md's sync_speed_min and _max). */
  speedMinKiBs: number;
  speedMaxKiBs: number;
}

export interface MemberStatus {
  name: string;
  role: number | null;
  state: MemberState;
  /** Its slot in dev_roles; null for a member never opened (unreachable at assembly). */
  devNumber: number | null;
  /** Rebuilding members: bytes of their data area already recovered. */
  recoveryOffset: number;
  /** Faulty members: why they were failed. */
  failure: string | null;
  /** I/O errors this member returned since the array started. */
  errors: number;
  /** Read only when no other in-sync copy can serve (raid1, raid10). */
  writeMostly: boolean;
  /** Reached over a network (its opener said so). */
  remote: boolean;
  /**
   * Faulty remote members (dropped out, or unreachable when the array was assembled): the array
   * tries to open it again and re-adds it when it is back.
   */
  awaited: boolean;
  /** Rebuilding members while their recovery runs. */
  recovery: MemberRecovery | null;
}

/** A plain, JSON-ready snapshot (bigints as decimal strings). */
export interface ArrayStatus {
  name: string;
  uuid: string;
  level: string;
  raidDisks: number;
  size: number;
  chunkSize: number;
  layout: number;
  state: ArrayState;
  /** Fenced arrays: which member fenced it and what its device said. */
  fenced: string | null;
  degraded: boolean;
  events: string;
  /** In-sync roles out of raid_disks, as mdadm's [n/m]. */
  working: number;
  members: MemberStatus[];
  /** Roles with no member. */
  missingRoles: number[];
  /** Resync still owed from this sync-space byte (null: in sync). */
  resyncPending: number | null;
  bitmap: { kind: 'llbitmap' | 'none'; chunkSize: number; counts: BitmapCounts };
  sync: SyncProgress | null;
  lastSync: SyncSummary | null;
  /** Bytes every sync pass since the array started has synced (finished passes and the current). */
  bytesSyncedTotal: number;
  /** md mismatch_cnt: sectors found different by the last check/repair. */
  mismatchCount: number;
  /** Sync-space bytes (the "of how many" of a sync pass). */
  syncSize: number;
  /** Every sync pass (resync, recovery, check, repair) runs between these, KiB/s. */
  syncSpeed: { minKiBs: number; maxKiBs: number };
}
