// What the superblocks of a stopped array's members say, read without assembling or opening a
// member for writing: identity, geometry, each member's standing by the rules assembly applies
// (member-report.ts memberStanding), the roles nobody holds, whether a resync is owed. The CSI
// driver lists a node's volumes from this after a restart; nothing here writes.

import { close, fstat, open, readP } from '../common/callback-fs.js';
import { MdError } from './errors.js';
import { arrayBytes, CREATABLE_LEVELS, type CreatableLevel } from './levels.js';
import { memberStanding, type MemberStanding } from './member-report.js';
import { FEATURE_BITMAP_OFFSET, RESYNC_NONE, SB_BLOCK_BYTES, SECTOR, SUPER_OFFSET_BYTES, decodeSuperblock, type Superblock } from './superblock.js';
import type { BitmapKind } from './bitmap-setup.js';

export interface SurveyedMember {
  name: string;
  /** Role it holds (in sync or rebuilding, or stale in it), undefined for a spare or faulty member. */
  role: number | undefined;
  events: bigint;
  standing: MemberStanding;
}

export interface ArraySurvey {
  uuid: Buffer;
  setName: string;
  level: CreatableLevel;
  raidDisks: number;
  layout: number;
  /** Bytes (md's chunksize; 0 for raid1, as md stores it). */
  chunkSize: number;
  bitmap: BitmapKind;
  /** Data bytes the array uses on each member. */
  memberSize: number;
  /** Bytes of the array. */
  arrayBytes: number;
  /** Every member given, freshest first. */
  members: SurveyedMember[];
  /** Members too far behind (or disagreeing on their role) to count: stale copies. */
  staleMembers: string[];
  /** Roles no member holds in sync or rebuilding: the array runs degraded (or not) without them. */
  missingRoles: number[];
  /** The freshest superblock records no clean stop: a resync is owed at the next start. */
  resyncPending: boolean;
  ctime: number;
}

/** A member file's superblock, read with plain reads: no lock taken, nothing opened for writing. */
export async function readSuperblockFile(path: string): Promise<Superblock> {
  const fd = await open(path, 'r');
  try {
    return await readSuperblockAt(fd, path);
  } finally {
    await close(fd);
  }
}

/** The superblock of the member file open as `fd` (named `path` in errors), with a plain read. */
export async function readSuperblockAt(fd: number, path: string): Promise<Superblock> {
  const { size } = await fstat(fd);
  if (size < SUPER_OFFSET_BYTES + SB_BLOCK_BYTES) {
    throw new MdError('EBADMETA', `member ${path}: truncated: expected at least ${SUPER_OFFSET_BYTES + SB_BLOCK_BYTES} bytes, found ${size}`);
  }
  const block = Buffer.alloc(SB_BLOCK_BYTES);
  await readP(fd, block, 0, block.length, SUPER_OFFSET_BYTES);
  return decodeSuperblock(block, path, size);
}

/**
 * The array the members of one set UUID make, or undefined when its level is not one llraid
 * builds. `found` must be non-empty and of one array (callers group by set UUID).
 */
export function surveyArray(found: readonly { name: string; superblock: Superblock }[]): ArraySurvey | undefined {
  const sorted = [...found].sort((a, b) => (a.superblock.events > b.superblock.events ? -1 : a.superblock.events < b.superblock.events ? 1 : 0));
  const fresh = sorted[0]?.superblock;
  if (fresh === undefined) throw new MdError('EINVAL', 'survey: expected at least one member');
  const level = CREATABLE_LEVELS.find((l) => l === fresh.level);
  if (level === undefined) return undefined;
  const members = sorted.map(({ name, superblock }) => {
    const s = memberStanding({ name, superblock, bitmap: null, bitmapNote: null }, fresh);
    return { name, role: s.role ?? undefined, events: superblock.events, standing: s.standing };
  });
  const held = new Set(members.filter((m) => m.standing === 'in_sync' || m.standing === 'rebuilding').map((m) => m.role));
  const missingRoles: number[] = [];
  for (let role = 0; role < fresh.raidDisks; role++) if (!held.has(role)) missingRoles.push(role);
  const chunkSize = fresh.chunkSize * SECTOR;
  const memberSize = fresh.size * SECTOR;
  return {
    uuid: fresh.setUuid,
    setName: fresh.setName,
    level,
    raidDisks: fresh.raidDisks,
    layout: fresh.layout,
    chunkSize,
    bitmap: (fresh.featureMap & FEATURE_BITMAP_OFFSET) !== 0 ? 'llbitmap' : 'none',
    memberSize,
    arrayBytes: arrayBytes(level, fresh.raidDisks, chunkSize, memberSize, level === 10 ? fresh.layout & 0xff : 2),
    members,
    staleMembers: members.filter((m) => m.standing === 'stale').map((m) => m.name),
    missingRoles,
    resyncPending: fresh.resyncOffset !== RESYNC_NONE,
    ctime: fresh.ctime,
  };
}
