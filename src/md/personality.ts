// The personality interface: what every RAID level (raid0/1/10 here, raid5/6 beside them)
// implements. An MdArray owns one personality and hands it a MemberSet; the personality maps
// array I/O onto member I/O and does one sync step at a time for the sync thread.
//
// Units: bytes everywhere. Member offsets are relative to the start of the member's DATA area
// (md's data_offset is applied by the MemberSet, never by a personality).

import type { WriteOptions, ZeroOptions } from '../block/block-device.js';
import type { RaidLevel, SyncMode } from './types.js';
import type { WriteIntentBitmap } from './write-intent-bitmap.js';

/**
 * The state of one role slot as the personality sees it.
 * - in_sync: holds valid data; read from it and write to it.
 * - rebuilding: a recovery target; write to it (so recovered ranges stay current), never read.
 * - missing: no device (failed, removed, or never assembled); neither read nor write.
 */
export type RoleState = 'in_sync' | 'rebuilding' | 'missing';

/**
 * The members of one array, by role, as handed to a personality by the array.
 * Invariant: an I/O error on a role fails that member BEFORE the promise rejects, so by the time
 * a personality sees the rejection `state(role)` already reports 'missing'. Personalities
 * therefore never fail members themselves; they only decide whether the request can still
 * succeed on the copies that are left.
 */
export interface MemberSet {
  /** Number of role slots (md raid_disks). */
  readonly raidDisks: number;
  /** Bytes of data area usable on every member (the array's per-member size). */
  readonly memberSize: number;
  /** The largest logical block of any member: every request to a member is a multiple of it. */
  readonly blockSize: number;
  state(role: number): RoleState;
  /**
   * Whether the member in `role` is write-mostly: mirrored levels read it only when no other
   * in-sync copy can serve the read (md's WriteMostly). Absent: none is.
   */
  writeMostly?(role: number): boolean;
  read(role: number, offset: number, length: number): Promise<Buffer>;
  /** Reads `out.length` bytes into `out` (the sync thread's reused buffers). */
  readInto(role: number, offset: number, out: Buffer): Promise<void>;
  write(role: number, offset: number, data: Uint8Array, options?: WriteOptions): Promise<void>;
  discard(role: number, offset: number, length: number): Promise<void>;
  writeZeroes(role: number, offset: number, length: number, options?: ZeroOptions): Promise<void>;
  /**
   * Optional synchronous fast paths (BlockDevice.readNow/writeNow of the member's device): true
   * when the member did the whole request now, false when it did not (its device cannot now, or
   * the role is not readable/writable, or the request failed). A failed request has already
   * started failing the member (the MemberSet invariant), and the array holds every request,
   * the caller's retry on the asynchronous path included, until that failure is recorded.
   * Never throws.
   */
  readNow?(role: number, offset: number, out: Buffer): boolean;
  writeNow?(role: number, offset: number, parts: readonly Uint8Array[]): boolean;
}

/** A range in sync space (see write-intent-bitmap.ts for what sync space is). */
export interface SyncRange {
  offset: number;
  length: number;
}

/** [offset, +length) as a SyncRange, in `into` when given (Personality.syncRange of the mirrors, whose sync space is the array's). */
export function rangeOf(offset: number, length: number, into?: SyncRange): SyncRange {
  if (into === undefined) return { offset, length };
  into.offset = offset;
  into.length = length;
  return into;
}

/** What one sync step did. */
export interface SyncWindowResult {
  /** Sectors (512 bytes) found different between copies (check/repair; md's mismatch_cnt). */
  mismatches: number;
  /** Bytes written to members by this step (recovery/resync/repair writes). */
  bytesWritten: number;
}

export interface Personality {
  readonly level: RaidLevel;
  /** The md `layout` field (raid10: near_copies | far_copies << 8; raid5/6: algorithm; else 0). */
  readonly layout: number;
  /** Stripe chunk in bytes (0 for raid1). */
  readonly chunkSize: number;
  readonly raidDisks: number;
  /** Bytes the array exposes. */
  readonly arraySize: number;
  /** Bytes of sync space: md's resync_max_sectors. The bitmap covers exactly this. */
  readonly syncSize: number;
  /** raid4/5/6 (bitmap Unwritten → NeedSync on first write). */
  readonly parity: boolean;
  /**
   * Bytes a write() in flight holds per byte written, its data included; 1 when absent (the
   * personality holds only the caller's buffer). The NBD server counts writes at it.
   */
  readonly writeWeight?: number;

  /**
   * The sync-space range the bitmap must mark for an array range (empty for raid0). With `into`
   * the answer may be `into`, filled in: for a caller done with it before it yields (writeNow),
   * which then makes no object per request.
   */
  syncRange(offset: number, length: number, into?: SyncRange): SyncRange;
  /** Whether the array can run with these roles in_sync (`working[role]`). */
  canRun(working: readonly boolean[]): boolean;
  /** Whether every array byte still has a readable copy when only `working` roles are in sync. */
  isDegraded(working: readonly boolean[]): boolean;

  /** Rejects with MdError('EIO') when no working copy could serve the range. */
  read(members: MemberSet, offset: number, length: number): Promise<Buffer>;
  /**
   * read() into `out`, a caller's reused buffer (NBD's, for large reads), each member read
   * straight into its place (where a part is rebuilt, copied there). Settles only once no member
   * read still writes into `out`, whichever way it ends.
   */
  readInto(members: MemberSet, offset: number, out: Buffer): Promise<void>;
  /** Resolves once every range has at least one complete copy (FUA forwarded to members). */
  write(members: MemberSet, offset: number, data: Uint8Array, options?: WriteOptions): Promise<void>;
  discard(members: MemberSet, offset: number, length: number): Promise<void>;
  writeZeroes(members: MemberSet, offset: number, length: number, options?: ZeroOptions): Promise<void>;
  /**
   * Optional synchronous fast paths for small requests (ArrayIo.readNow/writeNow): true when
   * done, false when nothing needed doing differently from the asynchronous read()/write(),
   * which the caller then runs (a mirror's write declined half way is written again in full: the
   * same bytes). writeNow is asked only of a whole array (every role in sync) with the sync barrier
   * entered and the bitmap's Startwrite applied and durable, as write() is called. A promise from
   * writeNow: declined half way where writing the same bytes again is not enough by itself (a
   * parity update: data and parity disagree until the rest is written); the personality finishes
   * the member writes it started, and the caller keeps the range's bitmap chunks Dirty until the
   * promise settles, then runs write() as for false.
   */
  readNow?(members: MemberSet, offset: number, out: Buffer): boolean;
  writeNow?(members: MemberSet, offset: number, parts: readonly Uint8Array[]): boolean | Promise<void>;

  /**
   * One sync step over [offset, offset+length) of sync space.
   * resync: make every in_sync copy equal to the first readable one.
   * recovery: write every rebuilding role from an in_sync copy.
   * check: compare copies, count mismatches, write nothing. repair: as check, then rewrite.
   */
  syncWindow(members: MemberSet, mode: SyncMode, offset: number, length: number): Promise<SyncWindowResult>;

  /**
   * Optional, for md's per-member recovery_offset: the member data bytes fully recovered once
   * sync space below `syncOffset` is done, and back (both rounding down). Without them a
   * recovery that was interrupted restarts from 0.
   */
  memberOffsetOfSync?(syncOffset: number): number;
  syncOffsetOfMember?(memberOffset: number): number;

  /**
   * Optional, parity levels: the array hands over its bitmap once attached, so that writes to
   * chunks whose parity is not yet valid (blocks_synced false) use reconstruct-write, and a
   * write that leaves parity right over a whole chunk tells it so (paritySynced).
   */
  attachBitmap?(bitmap: WriteIntentBitmap): void;
}
