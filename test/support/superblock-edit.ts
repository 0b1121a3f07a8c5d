// Editing a member's md superblock behind llraid's back, for tests of what the CLI makes of
// unusual but well-formed metadata: decode, change a field, encode (checksum recomputed), write.

import { open } from 'node:fs/promises';
import { decodeSuperblock, encodeSuperblock, SB_BLOCK_BYTES, SUPER_OFFSET_BYTES, type Superblock } from '../../src/md/superblock.js';

export async function editSuperblock(path: string, edit: (sb: Superblock) => Superblock): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const block = Buffer.alloc(SB_BLOCK_BYTES);
    await fh.read(block, 0, SB_BLOCK_BYTES, SUPER_OFFSET_BYTES);
    const sb = decodeSuperblock(block, path, (await fh.stat()).size);
    await fh.write(encodeSuperblock(edit(sb)), 0, SB_BLOCK_BYTES, SUPER_OFFSET_BYTES);
  } finally {
    await fh.close();
  }
}
