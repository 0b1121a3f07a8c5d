// The controller's bridge to the md engine for volumes no engine holds: writes a new array's
// superblocks and bitmap on the preallocated member files (createArray), or grows a stopped one
// (assemble, grow, stop), and leaves it stopped cleanly until a NodeStage starts its engine.

import { assembleArray, createArray, type MemberOpener } from '../md/index.js';
import type { ArrayBackend } from './array-backend.js';
import { CsiError } from './errors.js';
import { nearCopiesOf, type VolumeSpec } from './parameters.js';
import type { VolumeRecord } from './volume-catalog.js';

export class MdArrays implements ArrayBackend {
  async create(options: {
    uuid: Buffer; setName: string; spec: VolumeSpec; memberPaths: string[]; memberDataSize: number; opener?: MemberOpener; force?: boolean;
  }): Promise<void> {
    const { spec } = options;
    const array = await createArray({
      name: options.setName,
      level: spec.level,
      members: options.memberPaths,
      chunkSize: spec.chunkSize,
      ...(spec.level === 10 ? { nearCopies: nearCopiesOf(spec) } : {}),
      ...(options.opener ? { opener: options.opener } : {}),
      ...(options.force ? { force: true } : {}),
      bitmap: spec.bitmap,
      uuid: options.uuid,
      // Fresh member files are preallocated zeroes, so every copy (and every parity block: the
      // XOR and Q syndrome of zeroes are zero) already agrees. With llbitmap the chunks start
      // Unwritten, nothing to sync; without a bitmap, say so to skip a full initial resync.
      assumeClean: spec.bitmap === 'none',
      autoSync: false,
    });
    await array.stop();
  }

  async settle(memberPaths: string[]): Promise<void> {
    const { array } = await assembleArray({ members: memberPaths });
    try {
      const summary = await array.waitSync();
      if (summary !== undefined && !summary.complete) {
        throw new CsiError('INTERNAL', `the ${summary.mode} of ${memberPaths.join(', ')} ended at ${summary.position} of ${summary.size} bytes${summary.error ? `: ${summary.error}` : ''}`);
      }
    } finally {
      await array.stop();
    }
  }

  async grow(volume: VolumeRecord, memberDataSize: number): Promise<void> {
    // No sync runs here: a resync an unclean stop left owed stays recorded for the next stage.
    const { array } = await assembleArray({ members: volume.members.map((m) => m.path), autoSync: false });
    try {
      await array.grow(memberDataSize);
    } finally {
      await array.stop();
    }
  }
}
