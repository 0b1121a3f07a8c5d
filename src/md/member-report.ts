// A read-only look at one member: its md superblock and, when it carries an llbitmap, the bitmap's
// superblock and per-state chunk counts, read straight from the member without assembling
// anything (what `llraid examine` prints, like `mdadm --examine` with the bitmap of
// `mdadm --examine-bitmap`). Nothing here writes.

import { MdError } from './errors.js';
import { openMember, releaseMembers, type MemberSpec } from './member-source.js';
import { readSuperblock, SECTOR, SUPER_OFFSET_BYTES, type Superblock } from './superblock.js';
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
  /** Null when the array has no bitmap (feature bit 0 clear or level without redundancy). */
  bitmap: MemberBitmapReport | null;
}

const FEATURE_BITMAP_OFFSET = 1;

export async function examineMemberReport(spec: MemberSpec): Promise<MemberReport> {
  const m = await openMember(spec, true);
  try {
    const superblock = await readSuperblock(m.device, m.name);
    if ((superblock.featureMap & FEATURE_BITMAP_OFFSET) === 0 || superblock.bitmapOffset === 0) {
      return { name: m.name, superblock, bitmap: null };
    }
    const start = SUPER_OFFSET_BYTES + superblock.bitmapOffset * SECTOR;
    const where = `member ${m.name}: bitmap`;
    if (start < 0 || start + BITMAP_DATA_OFFSET > m.device.size) {
      throw new MdError('EBADMETA', `${where}: offset ${superblock.bitmapOffset} sectors points outside the member`);
    }
    const sb = decodeBitmapSuper(await m.device.read(start, BITMAP_SUPER_SIZE), where);
    const chunkSize = sb.chunksize * SECTOR;
    if (chunkSize === 0 || (chunkSize & (chunkSize - 1)) !== 0) {
      throw new MdError('EBADMETA', `${where}: expected a power-of-two chunksize, found ${sb.chunksize} sectors`);
    }
    const chunks = Number((sb.syncSize * BigInt(SECTOR) + BigInt(chunkSize) - 1n) / BigInt(chunkSize));
    const reserved = sb.sectorsReserved * SECTOR;
    if (BITMAP_DATA_OFFSET + chunks > reserved || start + reserved > superblock.dataOffset * SECTOR) {
      throw new MdError('EBADMETA', `${where}: ${chunks} chunks do not fit its ${reserved} reserved bytes before the data`);
    }
    const bytes = await m.device.read(start + BITMAP_DATA_OFFSET, chunks);
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
