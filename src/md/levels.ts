// The md levels llraid builds: which class implements each (the personality for a geometry),
// what each needs (members), and what each gives (array bytes for the member bytes, and back).
// The one place that knows this: the CLI and the CSI driver ask here rather than re-derive it.

import { DATA_OFFSET_SECTORS } from './bitmap-setup.js';
import { MdError } from './errors.js';
import { SECTOR } from './superblock.js';
import type { Personality } from './personality.js';
import { Raid0 } from './raid0.js';
import { Raid1 } from './raid1.js';
import { Raid10 } from './raid10.js';
import { createRaid5, createRaid6 } from './parity/parity-personality.js';

/** The levels llraid creates. */
export type CreatableLevel = 0 | 1 | 10 | 5 | 6;
export const CREATABLE_LEVELS: readonly CreatableLevel[] = [0, 1, 10, 5, 6];

/**
 * The fewest members each level is created with: two for striping or mirroring, raid10 as many
 * as its near copies, raid5 a parity beside two data members, raid6 two beside two.
 */
export function minMembers(level: CreatableLevel, nearCopies = 2): number {
  return level === 10 ? nearCopies : level === 5 ? 3 : level === 6 ? 4 : 2;
}

/** Data members of a level: how many members' worth of bytes a row of the array holds. */
function dataMembers(level: CreatableLevel, members: number, nearCopies: number): number {
  return level === 0 ? members : level === 1 ? 1 : level === 10 ? members / nearCopies : level === 5 ? members - 1 : members - 2;
}

/**
 * Bytes of an array whose members each offer `memberData` bytes of data area: what
 * createPersonality(...).arraySize gives for that geometry, without building one (a raid5
 * personality brings its stripe cache). test/md/levels.test.ts holds the two to each other.
 */
export function arrayBytes(level: CreatableLevel, members: number, chunkSize: number, memberData: number, nearCopies = 2): number {
  const used = usedMemberBytes({ level, raidDisks: members, layout: 0, chunkSize, memberSize: Math.max(0, memberData) });
  if (level !== 10) return dataMembers(level, members, nearCopies) * used;
  // raid10 near: every chunk is written nearCopies times across the members, in whole chunks.
  return Math.floor((members * used) / nearCopies / chunkSize) * chunkSize;
}

/** Data bytes per member (whole units of the level) that give an array of at least `capacity` bytes. */
export function memberDataFor(level: CreatableLevel, members: number, chunkSize: number, capacity: number, nearCopies = 2): number {
  const unit = level === 1 ? 4096 : chunkSize;
  let d = Math.max(unit, Math.ceil(Math.ceil(capacity / dataMembers(level, members, nearCopies)) / unit) * unit);
  while (arrayBytes(level, members, chunkSize, d, nearCopies) < capacity) d += unit;
  return d;
}

/** Bytes of a member file before its data area: superblock at 4 KiB, llbitmap after it, data at 1 MiB. */
export const MEMBER_DATA_OFFSET = DATA_OFFSET_SECTORS * SECTOR;

/** Size of a member file holding `memberData` bytes of data. */
export function memberFileBytes(memberData: number): number {
  return MEMBER_DATA_OFFSET + memberData;
}

export interface Geometry {
  level: number;
  raidDisks: number;
  /** md layout field. */
  layout: number;
  /** Bytes (0 for raid1). */
  chunkSize: number;
  /** Bytes of data area per member. */
  memberSize: number;
}

export function createPersonality(g: Geometry): Personality {
  switch (g.level) {
    case 0:
      return new Raid0(g.raidDisks, g.chunkSize, g.memberSize);
    case 1:
      return new Raid1(g.raidDisks, g.memberSize);
    case 10:
      return new Raid10(g.raidDisks, g.layout, g.chunkSize, g.memberSize);
    case 5:
      return createRaid5({ raidDisks: g.raidDisks, memberSize: g.memberSize, chunkSize: g.chunkSize, layout: g.layout });
    case 6:
      return createRaid6({ raidDisks: g.raidDisks, memberSize: g.memberSize, chunkSize: g.chunkSize, layout: g.layout });
    default:
      throw new MdError('ENOTSUP', `expected level 0, 1, 10, 5 or 6, found level ${g.level}`);
  }
}

/**
 * The md superblock `size` in bytes: how much of each member's data area the level uses. raid1
 * keeps whole 4 KiB blocks (its array size); striped levels whole chunks.
 */
export function usedMemberBytes(g: Geometry): number {
  const unit = g.level === 1 ? 4096 : g.chunkSize;
  return Math.floor(g.memberSize / unit) * unit;
}
