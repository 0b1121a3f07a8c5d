// Bringing a reflink clone of a file back in step with its source, range by range: the ranges
// where the two no longer share their blocks (file-extents.ts: a write to a shared block lands
// elsewhere, so a byte mapped to the same block in both holds the same bytes) are cloned again
// with FICLONERANGE. A clone of a large file is a transaction per extent and takes hundreds of
// milliseconds on a loaded disk; catching up with what was written since takes a transaction per
// range written, so a caller that must hold writes while the copy is exact clones the whole file
// before it holds them and only catches up while they are held.
//
// Like FS_IOC_FIEMAP, FICLONERANGE is issued through koffi (libc.ts), synchronously.

import { openSync, closeSync, fstatSync, ftruncateSync } from 'node:fs';
import { IoError, NoSpaceError, NotSupportedError } from './errors.js';
import { differingRanges, fileExtents, type ByteRange, type FileExtent } from './file-extents.js';
import { loadLibc } from './libc.js';

/** _IOW(0x94, 13, struct file_clone_range): { s64 src_fd; u64 src_offset, src_length, dest_offset }. */
const FICLONERANGE = 0x4020940d;
const ARG_BYTES = 32;
const EOPNOTSUPP = 95;
const EXDEV = 18;
const EINVAL = 22;
const ENOSPC = 28;

/** sync_file_range: wait for writeback already under way, start it for every dirty page, wait for all of it. */
const SYNC_FILE_RANGE_ALL = 0x1 | 0x2 | 0x4;

type Ioctl = (fd: number, request: number, arg: Buffer) => number;
type SyncFileRange = (fd: number, offset: number, length: number, flags: number) => number;

interface Calls {
  ioctl: Ioctl;
  syncFileRange: SyncFileRange;
  errno: () => number;
}

let calls: Promise<Calls> | undefined;

function loadCalls(): Promise<Calls> {
  calls ??= (async () => {
    const { koffi, libc } = await loadLibc();
    const ioctl = libc.func('int ioctl(int fd, unsigned long request, _Inout_ uint8_t *arg)') as unknown as Ioctl;
    const syncFileRange = libc.func('int sync_file_range(int fd, int64_t offset, int64_t nbytes, unsigned int flags)') as unknown as SyncFileRange;
    return { ioctl, syncFileRange, errno: () => koffi.errno() };
  })();
  return calls;
}

/**
 * Writes `file`'s dirty pages back and waits for them, without the device cache flush an
 * fdatasync adds (sync_file_range): what a clone or a FIEMAP_FLAG_SYNC must do first, done
 * ahead of it, so that it finds only what was written since.
 */
export async function writeBackPages(file: string): Promise<void> {
  const { syncFileRange, errno } = await loadCalls();
  const fd = openSync(file, 'r');
  try {
    if (syncFileRange(fd, 0, 0, SYNC_FILE_RANGE_ALL) !== 0) throw new IoError(`${file}: sync_file_range failed with errno ${errno()}`);
  } finally {
    closeSync(fd);
  }
}

/** Clones `ranges` of the open file `srcFd` onto the same offsets of `dstFd`, replacing what they held. */
export async function cloneRanges(srcFd: number, dstFd: number, ranges: readonly ByteRange[]): Promise<void> {
  const clone = await loadRangeCloner();
  for (const r of ranges) clone(srcFd, dstFd, r.offset, r.length);
}

/**
 * Clones `length` bytes at `offset` of the open file `srcFd` onto the same offset of `dstFd`,
 * synchronously (the calling thread waits for the filesystem's transaction). Throws
 * NotSupportedError, NoSpaceError or IoError.
 */
export type RangeCloner = (srcFd: number, dstFd: number, offset: number, length: number) => void;

/** A RangeCloner, once libc is loaded: for callers that must clone without giving up the thread between the decision and the clone (copy-before-write.ts). */
export async function loadRangeCloner(): Promise<RangeCloner> {
  const { ioctl, errno } = await loadCalls();
  const arg = Buffer.alloc(ARG_BYTES);
  return (srcFd, dstFd, offset, length) => {
    arg.writeBigInt64LE(BigInt(srcFd), 0);
    arg.writeBigUInt64LE(BigInt(offset), 8);
    arg.writeBigUInt64LE(BigInt(length), 16);
    arg.writeBigUInt64LE(BigInt(offset), 24);
    if (ioctl(dstFd, FICLONERANGE, arg) === 0) return;
    const e = errno();
    if (e === EOPNOTSUPP || e === EXDEV) throw new NotSupportedError(`FICLONERANGE: this filesystem cannot clone file ranges (errno ${e})`);
    if (e === ENOSPC) throw new NoSpaceError(`FICLONERANGE of ${length} bytes at ${offset}: no space for the clone's metadata`);
    throw new IoError(`FICLONERANGE of ${length} bytes at ${offset} failed with errno ${e}${e === EINVAL ? ' (a range not aligned to the filesystem block?)' : ''}`);
  };
}

/** The most a piece of a piecewise clone takes: 128 MiB, tens of milliseconds of the source's lock. */
export const CLONE_PIECE_BYTES = 128 * 1024 * 1024;

/**
 * Clones `src` to a new file `dst` (which must not exist) piece by piece (FICLONERANGE of
 * `pieceBytes` at a time, the event loop let go between pieces). A whole-file clone holds the
 * source's inode lock for as long as it remaps every extent, and every write to the source waits
 * meanwhile (hundreds of milliseconds for a 4 GiB member under load); a piece holds it for its
 * own extents only. The result is not one instant's copy when `src` is written meanwhile: the
 * caller catches it up (catchUpClone).
 */
export async function cloneInPieces(src: string, dst: string, pieceBytes = CLONE_PIECE_BYTES): Promise<void> {
  const s = openSync(src, 'r');
  try {
    const d = openSync(dst, 'wx', fstatSync(s).mode & 0o777);
    try {
      const size = fstatSync(s).size;
      ftruncateSync(d, size);
      for (let at = 0; at < size; at += pieceBytes) {
        await cloneRanges(s, d, [{ offset: at, length: Math.min(pieceBytes, size - at) }]);
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      closeSync(d);
    }
  } finally {
    closeSync(s);
  }
}

/** What one catch-up did: the ranges found apart and cloned again, their bytes, and the clone's extents after. */
export interface CatchUp {
  ranges: number;
  bytes: number;
  /**
   * The clone's extents once caught up (mapped again after the ranges were cloned): a later
   * catch-up may pass them as `known` instead of mapping the clone, as long as nothing else
   * wrote the clone meanwhile.
   */
  extents: FileExtent[];
}

/**
 * Makes `dst`, a clone of `src` made earlier, hold `src`'s bytes as they are now: `src`'s dirty
 * pages are written back (so every byte has its block), then each range where the two map
 * different blocks is cloned again. Exact when nothing writes `src` meanwhile; a write during the
 * call may or may not be in `dst`. Both files must have one size (a file that grew since its
 * clone is cloned whole again by the caller). With `known` (the extents a previous catch-up
 * returned), `dst` is not mapped before, and `extents` is not filled after (mapping the source
 * is what must be quick; `extents` is then the empty list).
 */
export async function catchUpClone(src: string, dst: string, known?: readonly FileExtent[]): Promise<CatchUp> {
  const s = openSync(src, 'r');
  try {
    const d = openSync(dst, 'r+');
    try {
      const size = fstatSync(s).size;
      if (fstatSync(d).size !== size) throw new IoError(`${dst}: ${fstatSync(d).size} bytes, its source ${src} ${size}: not a clone of it as it is now`);
      const apart = differingRanges(await fileExtents(s, 0, size, true), known ?? (await fileExtents(d, 0, size)), 0, size);
      await cloneRanges(s, d, apart);
      return {
        ranges: apart.length,
        bytes: apart.reduce((n, r) => n + r.length, 0),
        extents: known === undefined ? await fileExtents(d, 0, size) : [],
      };
    } finally {
      closeSync(d);
    }
  } finally {
    closeSync(s);
  }
}
