// What the CSI controller needs of the md engine: creating and growing arrays on member files.
// Its own module so that both controllers (node-local and replicated) and md-arrays.ts, which
// implements it, can name it without importing one another.

import type { VolumeSpec } from './parameters.js';
import type { VolumeRecord } from './volume-catalog.js';
import type { MemberOpener } from '../md/index.js';

/** What the controller needs from the md engine: creating and growing arrays on member files. */
export interface ArrayBackend {
  /**
   * Writes the superblocks (and bitmap) of a new array on already allocated member files (or, for
   * a replicated volume, members named by nbds URIs, opened by `opener`).
   */
  create(options: {
    uuid: Buffer;
    setName: string;
    spec: VolumeSpec;
    memberPaths: string[];
    memberDataSize: number;
    opener?: MemberOpener;
    /** Overwrite superblocks a failed earlier attempt left (a replicated create retried). */
    force?: boolean;
  }): Promise<void>;
  /** Records a larger per-member data size in the superblocks (and bitmap) of a stopped array. */
  grow(volume: VolumeRecord, memberDataSize: number): Promise<void>;
  /**
   * Runs the resync a stopped array owes (an unclean stop, or a crash-consistent copy of one) and
   * stops it cleanly; an array that owes none is only assembled and stopped.
   */
  settle(memberPaths: string[]): Promise<void>;
}
