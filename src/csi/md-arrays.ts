// The controller's bridge to the md engine: writes a new array's superblocks and bitmap on the
// preallocated member files (createArray), then stops it cleanly so that the volume rests with
// every superblock clean until a NodeStage starts its engine.

import { createArray } from '../md/create.js';
import { MdError } from '../md/errors.js';
import type { ArrayBackend } from './controller-server.js';
import type { VolumeSpec } from './parameters.js';

export class MdArrays implements ArrayBackend {
  async create(options: { uuid: Buffer; setName: string; spec: VolumeSpec; memberPaths: string[]; memberDataSize: number }): Promise<void> {
    const { spec } = options;
    if (spec.level !== 0 && spec.level !== 1 && spec.level !== 10) {
      throw new MdError('ENOTSUP', `raid${spec.level}: the md engine creates raid0, raid1 and raid10 arrays, found level ${spec.level}`);
    }
    const array = await createArray({
      name: options.setName,
      level: spec.level,
      members: options.memberPaths,
      chunkSize: spec.chunkSize,
      bitmap: spec.bitmap,
      uuid: options.uuid,
      // Fresh member files are preallocated zeroes, so every copy already agrees. With llbitmap the
      // chunks start Unwritten (nothing to sync); without a bitmap, say so to skip a full resync.
      assumeClean: spec.bitmap === 'none',
      autoSync: false,
    });
    await array.stop();
  }
}
