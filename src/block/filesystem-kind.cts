// Which filesystems can leave a request waiting without bound. A local disk answers or fails:
// the block layer times a stuck command out (SCSI and NVMe retry for about 30 s each time) and
// the request ends in EIO, which fails the member. A FUSE server that stops answering, or an
// NFS/SMB/9p server behind a cut network, keeps the request waiting for as long as it likes
// (hard mounts by default), so llraid bounds those itself (FileDevice's deadline).
//
// CommonJS because bin.cts reads it before the first ES module loads, to size the thread pool.

import { statfsSync } from 'node:fs';

/** statfs f_type magic numbers (include/uapi/linux/magic.h), by name. */
const UNBOUNDED_WAIT: ReadonlyMap<number, string> = new Map([
  [0x65735546, 'fuse'],
  [0x6969, 'nfs'],
  [0xff534d42, 'cifs'],
  [0xfe534d42, 'smb2'],
  [0x01021997, '9p'],
  [0x00c36400, 'ceph'],
]);

/** The filesystem holding `path` when it is one that can wait without bound, else undefined. */
export function unboundedWaitFilesystem(path: string): string | undefined {
  try {
    return UNBOUNDED_WAIT.get(statfsSync(path).type);
  } catch {
    return undefined;
  }
}
