// Builds the personality for a level from the array geometry (superblock fields): the one place
// that knows which class implements which md level.

import { MdError } from './errors.js';
import type { Personality } from './personality.js';
import { Raid0 } from './raid0.js';
import { Raid1 } from './raid1.js';
import { Raid10 } from './raid10.js';
import { createRaid5, createRaid6 } from './parity/parity-personality.js';

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
