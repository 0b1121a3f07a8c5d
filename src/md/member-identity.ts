// Member files copied from another array (a snapshot's reflinked members, a clone's) get an
// identity of their own here: a new set UUID and name in every superblock, a new device UUID per
// member, and the set UUID in the llbitmap superblock (assembly checks it, cross-check.ts). Data,
// roles, events and bitmap chunks stay as copied, so the copy assembles as the source would
// have from the same bytes. Also reads which chunks a member's bitmap has ever seen written.

import { close, open, readP } from '../common/callback-fs.js';
import { readSuperblockAt } from './array-survey.js';
import { FileDevice } from '../block/file-device.js';
import { randomBytes } from '../common/lazy-builtins.js';
import { MdError } from './errors.js';
import { BITMAP_DATA_OFFSET, BITMAP_SUPER_SIZE, decodeBitmapSuper, encodeBitmapSuper } from './llbitmap/bitmap-superblock.js';
import { State } from './llbitmap/states.js';
import { FEATURE_BITMAP_OFFSET, SECTOR, SUPER_OFFSET_BYTES, readSuperblock, writeSuperblock, type Superblock } from './superblock.js';

export interface NewIdentity {
  /** 16 bytes: the new set UUID. */
  uuid: Buffer;
  /** The new set name (at most 32 bytes). */
  name: string;
}

/**
 * Rewrites the identity of the member files `paths`, which must all be members of one array
 * (one set UUID: EUUID otherwise) that nothing runs. Each file is opened exclusively (its
 * flock, as every writable open of a member), so a running engine's members are refused with
 * EBUSY naming the holder, before anything is written.
 */
export async function reidentifyMembers(paths: readonly string[], id: NewIdentity): Promise<void> {
  if (id.uuid.length !== 16) throw new MdError('EINVAL', `reidentify: expected a 16-byte uuid, found ${id.uuid.length} bytes`);
  const devices: FileDevice[] = [];
  try {
    for (const p of paths) devices.push(await FileDevice.open(p, { exclusive: true }));
    const sbs: Superblock[] = [];
    for (const [i, d] of devices.entries()) sbs.push(await readSuperblock(d, paths[i] as string));
    const source = sbs[0]?.setUuid;
    for (const [i, sb] of sbs.entries()) {
      if (source && !sb.setUuid.equals(source)) {
        throw new MdError('EUUID', `member ${paths[i]}: expected set uuid ${source.toString('hex')} like ${paths[0]}, found ${sb.setUuid.toString('hex')}`);
      }
    }
    for (const [i, d] of devices.entries()) {
      const sb = sbs[i] as Superblock;
      // The bitmap first: a crash between the two leaves a member whose superblock still names
      // the source, which assembly of the copy refuses (a wrong member), never a silent mix.
      if ((sb.featureMap & FEATURE_BITMAP_OFFSET) !== 0) {
        const at = SUPER_OFFSET_BYTES + sb.bitmapOffset * SECTOR;
        const where = `member ${paths[i]}: bitmap`;
        const block = await d.read(at, SECTOR);
        const bsb = decodeBitmapSuper(block.subarray(0, BITMAP_SUPER_SIZE), where);
        const out = Buffer.from(block);
        encodeBitmapSuper({ ...bsb, uuid: id.uuid }).copy(out, 0);
        await d.write(at, out, { fua: true });
      }
      await writeSuperblock(d, { ...sb, setUuid: Buffer.from(id.uuid), setName: id.name, deviceUuid: randomBytes(16) });
    }
  } finally {
    await Promise.allSettled(devices.map((d) => d.close()));
  }
}

export interface WrittenChunks {
  /** Bytes of sync space per bitmap chunk. */
  chunkSize: number;
  chunks: number;
  /** One bit per chunk, chunk i at byte i>>3, bit i&7: set when the chunk was ever written. */
  bits: Buffer;
}

/**
 * Which chunks of the array `path` is a member of were ever written (any llbitmap state but the
 * Unwritten ones), read from that member's bitmap copy with plain reads, no lock. Undefined
 * for an array without an llbitmap. The copy on one member is enough for a cleanly stopped
 * array (every in-sync member holds the same bytes).
 */
export async function writtenChunks(path: string): Promise<WrittenChunks | undefined> {
  const fd = await open(path, 'r');
  try {
    const sb = await readSuperblockAt(fd, path);
    if ((sb.featureMap & FEATURE_BITMAP_OFFSET) === 0) return undefined;
    const at = SUPER_OFFSET_BYTES + sb.bitmapOffset * SECTOR;
    const head = Buffer.alloc(BITMAP_SUPER_SIZE);
    await readP(fd, head, 0, head.length, at);
    const bsb = decodeBitmapSuper(head, `member ${path}: bitmap`);
    const chunkSize = bsb.chunksize * SECTOR;
    if (chunkSize === 0) throw new MdError('EBADMETA', `member ${path}: bitmap: chunk size 0`);
    const chunks = Number((bsb.syncSize * BigInt(SECTOR) + BigInt(chunkSize) - 1n) / BigInt(chunkSize));
    const states = Buffer.alloc(chunks);
    await readP(fd, states, 0, states.length, at + BITMAP_DATA_OFFSET);
    const bits = Buffer.alloc(Math.ceil(chunks / 8));
    for (let i = 0; i < chunks; i++) {
      const st = states[i] as number;
      const written = st === State.Clean || st === State.Dirty || st === State.NeedSync || st === State.Syncing;
      if (written) bits[i >> 3]! |= 1 << (i & 7);
    }
    return { chunkSize, chunks, bits };
  } finally {
    await close(fd);
  }
}
