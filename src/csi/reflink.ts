// Whole-file reflink clones (FICLONE through copyFile's COPYFILE_FICLONE_FORCE): the copy shares
// every extent with its source until either is written, so it is instant and costs no space.
// Only filesystems that clone file ranges can (XFS made with reflink=1, btrfs); elsewhere the
// call fails and nothing is copied: llraid never falls back to a full copy, which would hold a
// staged volume's writes for as long as the copy takes (docs/architecture.md, Snapshots).

import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import { NoSpaceError, NotSupportedError } from '../block/errors.js';
import { cloneInPieces } from '../block/file-clone.js';
import { CsiError } from './errors.js';

/** The errnos of a filesystem (or a pair of files) that cannot share extents. */
const cannotClone = new Set(['EOPNOTSUPP', 'ENOTSUP', 'EXDEV', 'EINVAL', 'ENOSYS', 'ENOTTY']);

/**
 * Clones `src` to `dst` (which must not exist). FAILED_PRECONDITION names the disk whose
 * filesystem cannot clone; RESOURCE_EXHAUSTED when it is full (the clone's metadata).
 */
export async function cloneFile(src: string, dst: string): Promise<void> {
  try {
    await fs.copyFile(src, dst, constants.COPYFILE_FICLONE_FORCE | constants.COPYFILE_EXCL);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (cannotClone.has(code)) {
      throw new CsiError(
        'FAILED_PRECONDITION',
        `disk ${path.dirname(src)}: its filesystem cannot clone files (reflink, ${code}): snapshots and clones need XFS made with reflink=1 or btrfs`,
      );
    }
    if (code === 'ENOSPC') throw new CsiError('RESOURCE_EXHAUSTED', `disk ${path.dirname(dst)}: no space to clone ${src}`);
    throw err;
  }
}

/**
 * As cloneFile, piece by piece (block/file-clone.ts: a write to `src` waits for one piece, not
 * for the whole clone), for a source that is being written: the copy is then of no one instant
 * until the caller catches it up.
 */
export async function cloneFileInPieces(src: string, dst: string): Promise<void> {
  try {
    await cloneInPieces(src, dst);
  } catch (err) {
    if (err instanceof NotSupportedError) {
      throw new CsiError('FAILED_PRECONDITION', `disk ${path.dirname(src)}: its filesystem cannot clone file ranges (reflink): snapshots and clones need XFS made with reflink=1 or btrfs: ${err.message}`);
    }
    if (err instanceof NoSpaceError) throw new CsiError('RESOURCE_EXHAUSTED', `disk ${path.dirname(dst)}: no space to clone ${src}`);
    throw err;
  }
}

/** Whether files in `dir` can be cloned: a probe file of one block, cloned, both removed. */
export async function canClone(dir: string): Promise<boolean> {
  const a = path.join(dir, `.llraid-reflink-probe-${process.pid}`);
  const b = `${a}.clone`;
  try {
    await fs.writeFile(a, Buffer.alloc(4096, 1));
    await fs.copyFile(a, b, constants.COPYFILE_FICLONE_FORCE);
    return true;
  } catch {
    return false;
  } finally {
    await fs.rm(a, { force: true });
    await fs.rm(b, { force: true });
  }
}
