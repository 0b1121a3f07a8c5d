// The lockless bitmap's public face: the array creates or loads an LlBitmap and then uses it only
// through WriteIntentBitmap (../write-intent-bitmap.ts). Everything else in this folder is inside.
//
// LlBitmap.create(host, options): a new bitmap, durable on every host.bitmapMembers() member
// before it resolves. LlBitmap.load(host, options): assemble from the members (A2).
// Options (bytes unless stated):
//   ioSize        required  bytes per bitmap write: the array's logical block size (512..4096)
//   syncSize      required  bytes of sync space covered (resync_max_sectors × 512), a multiple of 512
//   spaceBytes    create: required; load: default sectors_reserved × 512. Bytes reserved for the
//                 whole bitmap area (superblock included); no bitmap I/O ever passes it
//   chunkSize     create only, optional: bytes per chunk, a power of two; default the smallest from
//                 64 KiB whose chunks fit (1024 + chunks <= spaceBytes)
//   daemonSleep   create only, seconds ≥ 1, default 30 (load takes the superblock's)
//   barrierIdle   seconds a page must be idle before the daemon cleans it, default 5
//   assumeClean   create only: every chunk starts Clean instead of Unwritten
//   offsetSectors the md superblock's bitmap_offset, shown by `metadata`, default 8
// Errors are MdError: EINVAL (bad argument), ENOSPC (does not fit), EBADMETA (bad bitmap
// superblock, naming the member), EIO (no bitmap member could be read or written), ENOTSUP.

export {
  LlBitmap,
  DEFAULT_BARRIER_IDLE,
  DEFAULT_DAEMON_SLEEP,
  DEFAULT_OFFSET_SECTORS,
  type LlBitmapCreateOptions,
  type LlBitmapLoadOptions,
} from './llbitmap.js';
export { State, Action, STATE_NAMES, ACTION_NAMES } from './states.js';
export { BitmapFlag, BITMAP_MAGIC, BITMAP_MAJOR_LOCKLESS, BITMAP_DATA_OFFSET } from './bitmap-superblock.js';
export { MIN_CHUNK_SIZE, PAGE_SIZE } from './geometry.js';
