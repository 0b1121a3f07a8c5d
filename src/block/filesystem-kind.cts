// Which filesystems can leave a request waiting without bound. A local disk answers or fails:
// the block layer times a stuck command out (SCSI and NVMe retry for about 30 s each time) and
// the request ends in EIO, which fails the member. A FUSE server that stops answering, or an
// NFS/SMB/9p server behind a cut network, keeps the request waiting for as long as it likes
// (hard mounts by default), so llraid bounds those itself (FileDevice's deadline).
//
// A local disk that hangs below its filesystem (a firmware bug, a dead path with queue_if_no_path,
// a loop device over a stuck file) can still wait longer than anyone wants, so files on every
// filesystem except the ones held in memory (tmpfs, ramfs) get a deadline too, and reach the
// event loop only through calls that cannot wait (nowait-io.ts).
//
// CommonJS because bin.cts reads it before the first ES module loads, to size the thread pool.

import { statfsSync, statSync } from 'node:fs';

/** statfs f_type magic numbers (include/uapi/linux/magic.h), by name. */
const UNBOUNDED_WAIT: ReadonlyMap<number, string> = new Map([
  [0x65735546, 'fuse'],
  [0x6969, 'nfs'],
  [0xff534d42, 'cifs'],
  [0xfe534d42, 'smb2'],
  [0x01021997, '9p'],
  [0x00c36400, 'ceph'],
]);

/** Filesystems whose files live in memory: a request never waits for a device. */
const IN_MEMORY: ReadonlyMap<number, string> = new Map([
  [0x01021994, 'tmpfs'],
  [0x858458f6, 'ramfs'],
]);

/** The filesystem holding `path` when it keeps its files in memory, else undefined. */
export function inMemoryFilesystem(path: string): string | undefined {
  try {
    return IN_MEMORY.get(statfsSync(path).type);
  } catch {
    return undefined;
  }
}

/**
 * Whether requests to `path` may wait for a device: true for files on disk (and network)
 * filesystems and for block devices (statfs of a device node names devtmpfs, so that is asked
 * with stat first); false for tmpfs/ramfs files and for paths that do not exist.
 */
export function mayWaitForDevice(path: string): boolean {
  try {
    const st = statSync(path);
    if (st.isBlockDevice()) return true;
    if (!st.isFile()) return false;
  } catch {
    return false;
  }
  return inMemoryFilesystem(path) === undefined;
}

/** The filesystem holding `path` when it is one that can wait without bound, else undefined. */
export function unboundedWaitFilesystem(path: string): string | undefined {
  try {
    return UNBOUNDED_WAIT.get(statfsSync(path).type);
  } catch {
    return undefined;
  }
}
