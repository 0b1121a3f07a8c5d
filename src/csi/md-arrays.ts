// The controller's bridge to the md engine: writes a new array's superblocks and bitmap on the
// preallocated member files (createArray), then stops it cleanly so that the volume rests with
// every superblock clean until a NodeStage starts its engine.

import { createArray } from '../md/index.js';
import type { ArrayBackend } from './controller-server.js';
import type { VolumeSpec } from './parameters.js';

export class MdArrays implements ArrayBackend {
  async create(options: { uuid: Buffer; setName: string; spec: VolumeSpec; memberPaths: string[]; memberDataSize: number }): Promise<void> {
    const { spec } = options;
    const array = await createArray({
      name: options.setName,
      level: spec.level,
      members: options.memberPaths,
      chunkSize: spec.chunkSize,
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
}
