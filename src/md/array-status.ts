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

export type ArrayState = 'active' | 'degraded' | 'failed' | 'stopped';

export interface MemberStatus {
  name: string;
  role: number | null;
  state: MemberState;
  devNumber: number;
  /** Rebuilding members: bytes of their data area already recovered. */
  recoveryOffset: number;
  /** Faulty members: why they were failed. */
  failure: string | null;
  /** I/O errors this member returned since the array started. */
  errors: number;
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
}
