// What NodePublishVolume makes at a target path, and the one rule by which NodeUnpublishVolume
// takes it away again (the CSI spec: the plugin deletes the file or directory it created there).
//
// Publish makes exactly one of two things: a directory (a mount volume: the staging directory is
// bind-mounted on it) or an empty regular file (a block volume: the device node is bind-mounted
// on it). So, once nothing is mounted there, Unpublish removes
//   - an empty directory, with rmdir, which the kernel refuses for a directory with entries, and
//   - a regular file of zero bytes,
// and nothing else. A file with data, a symlink, a socket or device node, or a directory with
// entries was not made by the plugin (or has held something since): it stays where it is.

import { promises as fs } from 'node:fs';

export type TargetRemoval = 'removed' | 'absent' | 'kept';

/**
 * Removes what publish made at `target` (a resolved path with nothing mounted on it) by the
 * rule above; says what it did. A file that gains data between the size check and the unlink
 * would be lost: only the kubelet, root on the node, writes below its directory.
 */
export async function removePublishTarget(target: string): Promise<TargetRemoval> {
  const st = await fs.lstat(target).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (!st) return 'absent';
  if (st.isDirectory()) {
    try {
      await fs.rmdir(target);
      return 'removed';
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST') return 'kept';
      if (code === 'ENOENT') return 'absent';
      throw err;
    }
  }
  if (st.isFile() && st.size === 0) {
    await fs.unlink(target).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    return 'removed';
  }
  return 'kept';
}
