// The llbitmap's settings: what creating and loading take, their defaults, and the checks of
// settings and members that run before any bitmap I/O (B-m: nothing persisted that load rejects).

import { MdError } from '../errors.js';
import { DEFAULT_TUNING } from '../tuning.js';
import type { BitmapHost, BitmapMember } from '../write-intent-bitmap.js';
import { checkIoSize, checkSyncSize, SECTOR, type Geometry } from './geometry.js';

export const DEFAULT_DAEMON_SLEEP = DEFAULT_TUNING.bitmapDaemonSleepSeconds;
export const DEFAULT_BARRIER_IDLE = 5;
/** mdadm's default for metadata 1.2: the bitmap starts 8 sectors after the md superblock. */
export const DEFAULT_OFFSET_SECTORS = 8;
/** setTimeout's limit (2^31-1 ms), in whole seconds. */
export const MAX_TIMER_SECONDS = Math.floor(0x7fffffff / 1000);

export interface CommonOptions {
  /** Bytes per bitmap write: the array's logical block size (512 or 4096). */
  ioSize: number;
  /** Bytes of sync space the bitmap covers (md's resync_max_sectors × 512). */
  syncSize: number;
  /** Seconds a page must be idle before the daemon may clean it. Default 5. */
  barrierIdle?: number;
  /** The md superblock's bitmap_offset in sectors, shown by `metadata`. Default 8. */
  offsetSectors?: number;
}

export interface LlBitmapCreateOptions extends CommonOptions {
  /** Bytes reserved for the bitmap area on every member (superblock included); recorded as sectors_reserved. */
  spaceBytes: number;
  /** Bytes per chunk; default: the smallest power of two from 64 KiB whose chunks fit (A2). */
  chunkSize?: number;
  /** Seconds between daemon passes, at least 1. Default 30. */
  daemonSleep?: number;
  /** Start every chunk Clean instead of Unwritten (the array was created assume-clean). */
  assumeClean?: boolean;
}

export interface LlBitmapLoadOptions extends CommonOptions {
  /** Bytes reserved for the bitmap area; default the superblock's sectors_reserved. */
  spaceBytes?: number;
  /**
   * The caller knows the bitmap may not cover every difference between the members (a member
   * missed the clean stop the others recorded): load as STALE, so every written chunk is resynced.
   */
  stale?: boolean;
}

export function checkCommon(o: CommonOptions): void {
  checkIoSize(o.ioSize);
  checkSyncSize(o.syncSize);
  if (o.barrierIdle !== undefined) checkBarrierIdle(o.barrierIdle);
  if (o.offsetSectors !== undefined && !Number.isSafeInteger(o.offsetSectors)) {
    throw new MdError('EINVAL', `llbitmap: expected a whole number of sectors as offset, found ${o.offsetSectors}`);
  }
}

export function checkDaemonSleep(seconds: number): void {
  if (!Number.isSafeInteger(seconds) || seconds < 1 || seconds > MAX_TIMER_SECONDS) {
    throw new MdError('EINVAL', `llbitmap: expected daemon_sleep a whole number of seconds from 1 to ${MAX_TIMER_SECONDS}, found ${seconds}`);
  }
}

export function checkBarrierIdle(seconds: number): void {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0 || seconds > MAX_TIMER_SECONDS) {
    throw new MdError('EINVAL', `llbitmap: expected barrier_idle from 0 to ${MAX_TIMER_SECONDS} seconds, found ${seconds}`);
  }
}

/** Every bitmap member must hold the whole usable area, aligned, before any bitmap I/O. */
export function checkMembers(host: BitmapHost, g: Geometry): void {
  for (const m of host.bitmapMembers()) checkMember(m, g);
}

function checkMember(m: BitmapMember, g: Geometry): void {
  checkMemberBase(m, g.ioSize, g.usableSpace);
}

export function checkMemberBase(m: BitmapMember, ioSize: number, areaBytes: number): void {
  const bs = m.device.blockSize;
  if (!Number.isSafeInteger(m.bitmapOffset) || m.bitmapOffset < 0 || m.bitmapOffset % SECTOR !== 0 || m.bitmapOffset % bs !== 0) {
    throw new MdError('EINVAL', `${m.name}: expected a bitmap offset aligned to ${Math.max(bs, SECTOR)} bytes, found ${m.bitmapOffset}`);
  }
  if (ioSize % bs !== 0) {
    throw new MdError('EINVAL', `${m.name}: expected a logical block size dividing the bitmap io size ${ioSize}, found ${bs}`);
  }
  if (m.bitmapOffset + areaBytes > m.device.size) {
    throw new MdError(
      'ENOSPC',
      `${m.name}: bitmap area [${m.bitmapOffset}, ${m.bitmapOffset + areaBytes}) reaches past the end of the device (${m.device.size} bytes)`,
    );
  }
}
