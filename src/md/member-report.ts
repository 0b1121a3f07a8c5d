// A read-only look at one member: its md superblock and, when it carries an llbitmap, the bitmap's
// superblock and per-state chunk counts, read straight from the member without assembling
// anything (what `llraid examine` prints, like `mdadm --examine` with the bitmap of
// `mdadm --examine-bitmap`); and, over several members, what the freshest superblock says each
// one is (what `llraid status` prints for an array that is not running). Nothing here writes.

import type { BlockDevice } from '../block/block-device.js';
import { MdError } from './errors.js';
import type { MemberState } from './member.js';
import { openMember, releaseMembers, type MemberOpener, type MemberSpec } from './member-source.js';
import {
  FEATURE_BITMAP_OFFSET, FEATURE_RECOVERY_OFFSET, formatUuid, readSuperblock, ROLE_FAULTY, ROLE_SPARE, SECTOR,
  SUPER_OFFSET_BYTES, type Superblock,
} from './superblock.js';
import { BITMAP_DATA_OFFSET, BITMAP_SUPER_SIZE, decodeBitmapSuper, type BitmapSuper } from './llbitmap/bitmap-superblock.js';
import { STATE_COUNT } from './llbitmap/states.js';
import { bitsText, metadataText } from './llbitmap/status-text.js';
import type { BitmapCounts } from './write-intent-bitmap.js';

export interface MemberBitmapReport {
  superblock: BitmapSuper;
  chunks: number;
  /** Bytes per chunk. */
  chunkSize: number;
  counts: BitmapCounts;
  /** State bytes that are no valid state: assembly turns them into NeedSync. */
  corrupt: number;
  bits: string;
  metadata: string;
}

export interface MemberReport {
  name: string;
  superblock: Superblock;
  /**
   * Null when the array has no bitmap (feature bit 0 clear or level without redundancy), or when
   * this member does not keep it (bitmapNote says why).
   */
  bitmap: MemberBitmapReport | null;
  /** Why a member of an array with a bitmap has none to report; null otherwise. */
  bitmapNote: string | null;
}

export async function examineMemberReport(spec: MemberSpec, opener?: MemberOpener): Promise<MemberReport> {
  const m = await openMember(spec, true, opener);
  try {
    const superblock = await readSuperblock(m.device, m.name);
    if ((superblock.featureMap & FEATURE_BITMAP_OFFSET) === 0 || superblock.bitmapOffset === 0) {
      return { name: m.name, superblock, bitmap: null, bitmapNote: null };
    }
    // B-e: the bitmap is written to in-sync members only. A spare's bitmap area was never
    // written (or holds what a former array left there), a rebuilding member's lags: neither is
    // this array's bitmap, and neither is corrupt.
    const own = superblock.devRoles[superblock.devNumber];
    if (own === ROLE_SPARE || (own !== undefined && own < ROLE_FAULTY && own >= superblock.raidDisks)) {
      return { name: m.name, superblock, bitmap: null, bitmapNote: 'a spare: the bitmap is kept on in-sync members only' };
    }
    if ((superblock.featureMap & FEATURE_RECOVERY_OFFSET) !== 0) {
      return { name: m.name, superblock, bitmap: null, bitmapNote: 'being rebuilt: the bitmap is kept on in-sync members only' };
    }
    const start = SUPER_OFFSET_BYTES + superblock.bitmapOffset * SECTOR;
    const where = `member ${m.name}: bitmap`;
    if (start < 0 || start + BITMAP_DATA_OFFSET > m.device.size) {
      throw new MdError('EBADMETA', `${where}: offset ${superblock.bitmapOffset} sectors points outside the member`);
    }
    const sb = decodeBitmapSuper(await readSectors(m.device, start, BITMAP_SUPER_SIZE), where);
    const chunkSize = sb.chunksize * SECTOR;
    if (chunkSize === 0 || (chunkSize & (chunkSize - 1)) !== 0) {
      throw new MdError('EBADMETA', `${where}: expected a power-of-two chunksize, found ${sb.chunksize} sectors`);
    }
    const chunks = Number((sb.syncSize * BigInt(SECTOR) + BigInt(chunkSize) - 1n) / BigInt(chunkSize));
    const reserved = sb.sectorsReserved * SECTOR;
    if (BITMAP_DATA_OFFSET + chunks > reserved || start + reserved > superblock.dataOffset * SECTOR) {
      throw new MdError('EBADMETA', `${where}: ${chunks} chunks do not fit its ${reserved} reserved bytes before the data`);
    }
    const bytes = await readSectors(m.device, start + BITMAP_DATA_OFFSET, chunks);
    const tally = new Array<number>(STATE_COUNT).fill(0);
    let corrupt = 0;
    for (const b of bytes) {
      if (b < STATE_COUNT) tally[b]!++;
      else corrupt++;
    }
    const counts: BitmapCounts = {
      unwritten: tally[0]!,
      clean: tally[1]!,
      dirty: tally[2]!,
      needSync: tally[3]!,
      syncing: tally[4]!,
      needSyncUnwritten: tally[5]!,
      syncingUnwritten: tally[6]!,
      cleanUnwritten: tally[7]!,
    };
    return {
      name: m.name,
      superblock,
      bitmapNote: null,
      bitmap: {
        superblock: sb,
        chunks,
        chunkSize,
        counts,
        corrupt,
        bits: bitsText(counts),
        metadata: metadataText({
          chunksize: sb.chunksize,
          chunkshift: Math.log2(sb.chunksize),
          chunks,
          offset: superblock.bitmapOffset,
          daemonSleep: sb.daemonSleep,
        }),
      },
    };
  } finally {
    await releaseMembers([m]);
  }
}

/** A member as the freshest superblock of its array sees it; `other_array` when it is not one of it. */
export type MemberStanding = MemberState | 'stale' | 'other_array';

/**
 * The report that speaks for the array: highest events; of equals, one that carries the bitmap
 * (a spare is as fresh as the others but keeps none).
 */
export function freshestReport(reports: readonly MemberReport[]): MemberReport {
  if (reports.length === 0) throw new MdError('EINVAL', 'expected at least one member');
  return reports.reduce((a, b) =>
    b.superblock.events > a.superblock.events || (b.superblock.events === a.superblock.events && a.bitmap === null && b.bitmap !== null) ? b : a);
}

/**
 * Where `r` stands in the array of `fresh`, by the rules assembly applies (assemble.ts): the slot
 * the freshest superblock gives its dev_number decides faulty (0xfffe, or no slot: failed or
 * removed), spare, or a role; a member holding a role is stale when its own superblock claims
 * another or its events lag by more than md's margin of one. Role is null unless it holds one;
 * `why` explains every standing but in_sync, rebuilding and spare.
 */
export function memberStanding(r: MemberReport, fresh: Superblock): { role: number | null; standing: MemberStanding; why: string | null } {
  const sb = r.superblock;
  if (!sb.setUuid.equals(fresh.setUuid)) {
    return { role: null, standing: 'other_array', why: `belongs to array ${formatUuid(sb.setUuid)}` };
  }
  const slot = fresh.devRoles[sb.devNumber];
  if (slot === undefined || slot === ROLE_FAULTY) return { role: null, standing: 'faulty', why: 'the array records it failed or removed' };
  if (slot === ROLE_SPARE || slot >= fresh.raidDisks) return { role: null, standing: 'spare', why: null };
  if (sb.events + 1n < fresh.events) return { role: slot, standing: 'stale', why: `events lag the array's ${fresh.events}` };
  const own = sb.devRoles[sb.devNumber];
  if (own !== slot) return { role: slot, standing: 'stale', why: `its own superblock gives it ${own === ROLE_SPARE ? 'no role (spare)' : `role ${own}`}` };
  return { role: slot, standing: (sb.featureMap & FEATURE_RECOVERY_OFFSET) !== 0 ? 'rebuilding' : 'in_sync', why: null };
}

/**
 * `len` bytes at `offset`, read as whole sectors: a member reached over NBD refuses a request
 * that is not aligned to its minimum block size (512), as a block device does.
 */
async function readSectors(device: BlockDevice, offset: number, len: number): Promise<Uint8Array> {
  const from = offset - (offset % SECTOR);
  const to = Math.min(device.size, Math.ceil((offset + len) / SECTOR) * SECTOR);
  const block = await device.read(from, to - from);
  return block.subarray(offset - from, offset - from + len);
}
