// Bringing a reflink clone of a file back in step with its source, range by range: the ranges
// where the two no longer share their blocks (file-extents.ts: a write to a shared block lands
// elsewhere, so a byte mapped to the same block in both holds the same bytes) are cloned again
// with FICLONERANGE. A clone of a large file is a transaction per extent and takes hundreds of
// milliseconds on a loaded disk; catching up with what was written since takes a transaction per
// range written, so a caller that must hold writes while the copy is exact clones the whole file
// before it holds them and only catches up while they are held.
//
// Like FS_IOC_FIEMAP, FICLONERANGE is issued through koffi (libc.ts), synchronously.

import { openSync, closeSync, fstatSync } from 'node:fs';
import { IoError, NotSupportedError } from './errors.js';
import { differingRanges, fileExtents, type ByteRange, type FileExtent } from './file-extents.js';
import { loadLibc } from './libc.js';

/** _IOW(0x94, 13, struct file_clone_range): { s64 src_fd; u64 src_offset, src_length, dest_offset }. */
const FICLONERANGE = 0x4020940d;
const ARG_BYTES = 32;
const EOPNOTSUPP = 95;
const EXDEV = 18;
const EINVAL = 22;

type Ioctl = (fd: number, request: number, arg: Buffer) => number;

let ioctlCall: Promise<{ ioctl: Ioctl; errno: () => number }> | undefined;

function loadIoctl(): Promise<{ ioctl: Ioctl; errno: () => number }> {
  ioctlCall ??= (async () => {
    const { koffi, libc } = await loadLibc();
    const ioctl = libc.func('int ioctl(int fd, unsigned long request, _Inout_ uint8_t *arg)') as unknown as Ioctl;
    return { ioctl, errno: () => koffi.errno() };
  })();
  return ioctlCall;
}

/** Clones `ranges` of the open file `srcFd` onto the same offsets of `dstFd`, replacing what they held. */
export async function cloneRanges(srcFd: number, dstFd: number, ranges: readonly ByteRange[]): Promise<void> {
  const { ioctl, errno } = await loadIoctl();
  const arg = Buffer.alloc(ARG_BYTES);
  for (const r of ranges) {
    arg.writeBigInt64LE(BigInt(srcFd), 0);
    arg.writeBigUInt64LE(BigInt(r.offset), 8);
    arg.writeBigUInt64LE(BigInt(r.length), 16);
    arg.writeBigUInt64LE(BigInt(r.offset), 24);
    if (ioctl(dstFd, FICLONERANGE, arg) !== 0) {
      const e = errno();
      if (e === EOPNOTSUPP || e === EXDEV) throw new NotSupportedError(`FICLONERANGE: this filesystem cannot clone file ranges (errno ${e})`);
      throw new IoError(`FICLONERANGE of ${r.length} bytes at ${r.offset} failed with errno ${e}${e === EINVAL ? ' (a range not aligned to the filesystem block?)' : ''}`);
    }
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
