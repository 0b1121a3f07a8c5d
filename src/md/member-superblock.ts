// Composing the superblock one member gets at each update: the array-wide fields (identity,
// events, dev_roles, clean/dirty) joined with the member's own (dev_number, device UUID, data
// area, recovery offset). MdArray writes the result to every non-faulty member.

import { MdError } from './errors.js';
import type { Member } from './member.js';
import {
  FEATURE_BITMAP_OFFSET, FEATURE_RECOVERY_OFFSET, ROLE_FAULTY, ROLE_SPARE, SECTOR, U64_MAX, type Superblock,
} from './superblock.js';

/** Array-wide superblock fields, the same on every member. */
export interface ArrayIdentity {
  uuid: Buffer;
  name: string;
  ctime: number;
  level: number;
  layout: number;
  /** Sectors (0 for raid1). */
  chunkSizeSectors: number;
  raidDisks: number;
  /** md superblock `size`: sectors used per member. */
  usedSectors: number;
  /** Sectors from the superblock to the bitmap; 0 when the array has no bitmap. */
  bitmapOffset: number;
}

export function composeSuperblock(id: ArrayIdentity, m: Member, events: bigint, devRoles: readonly number[], resyncOffset: bigint): Superblock {
  const rebuilding = m.state === 'rebuilding';
  return {
    featureMap: (id.bitmapOffset !== 0 ? FEATURE_BITMAP_OFFSET : 0) | (rebuilding ? FEATURE_RECOVERY_OFFSET : 0),
    setUuid: id.uuid,
    setName: id.name,
    ctime: id.ctime,
    level: id.level,
    layout: id.layout,
    size: id.usedSectors,
    chunkSize: id.chunkSizeSectors,
    raidDisks: id.raidDisks,
    bitmapOffset: id.bitmapOffset,
    dataOffset: m.sb.dataOffset,
    dataSize: m.sb.dataSize,
    superOffset: m.sb.superOffset,
    recoveryOffset: rebuilding ? Math.floor(m.recoveryOffset / SECTOR) : 0,
    devNumber: m.sb.devNumber,
    cntCorrectedRead: m.sb.cntCorrectedRead,
    deviceUuid: m.sb.deviceUuid,
    devflags: m.sb.devflags,
    bblogShift: m.sb.bblogShift,
    bblogSize: m.sb.bblogSize,
    bblogOffset: m.sb.bblogOffset,
    utime: Math.floor(Date.now() / 1000),
    events,
    resyncOffset,
    devRoles: [...devRoles],
  };
}

/**
 * dev_roles as md's super_1_sync builds them: a slot is the role of the member holding that
 * dev_number, 0xffff for a spare, and 0xfffe (faulty) for a slot whose member failed or left
 * (llraid keeps 0xfffe there, where Linux writes 0xffff, so that the re-add guard can tell a
 * departed member's slot from a never-used one).
 */
export function devRolesFor(members: readonly Member[], previousLength: number, raidDisks: number): number[] {
  const len = Math.max(previousLength, ...members.map((m) => m.sb.devNumber + 1), raidDisks);
  const roles = new Array<number>(len).fill(ROLE_FAULTY);
  for (const m of members) {
    if (m.state === 'faulty') continue;
    roles[m.sb.devNumber] = m.role !== undefined && m.state !== 'spare' ? m.role : ROLE_SPARE;
  }
  return roles;
}

/**
 * The events of the next superblock update (md_update_sb's events++), within the u64 field.
 * Invariant: events never pass U64_MAX, and U64_MAX itself is kept for a clean stop: an update
 * that leaves the array active may go at most to U64_MAX - 1. So an array whose events run out
 * ends stopped cleanly (nothing owed a resync), never active with no update left to clean it.
 * Linux md counts on never getting there (md_update_sb only warns when events wrap to 0, after
 * which a stale member would look the freshest); llraid refuses instead.
 */
export function nextEvents(arrayName: string, members: readonly Member[], events: bigint, clean: boolean): bigint {
  const limit = clean ? U64_MAX : U64_MAX - 1n;
  if (events < limit) return events + 1n;
  const holders = members.filter((m) => m.state !== 'faulty' && m.sb.events === events).map((m) => m.name);
  throw new MdError(
    'EOVERFLOW',
    `array ${arrayName}: cannot record ${clean ? 'a clean stop' : 'this change'} in the superblocks: ` +
      `events would go from ${events} (member${holders.length === 1 ? '' : 's'} ${holders.join(', ') || 'none'}) to ${events + 1n}, ` +
      `expected at most ${limit} (the u64 events field ends at ${U64_MAX}${clean ? '' : ', and its last value is kept for a clean stop'})`,
  );
}
