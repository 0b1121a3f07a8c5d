// An XFS made with reflink=1 in a sparse loop file, mounted in a temp dir for one test: the kind
// of disk on which snapshots are reflink clones. Needs root, mkfs.xfs (xfsprogs) and a free loop
// device; without them the test fails (it never skips).

import { execFile } from 'node:child_process';
import { mkdtempSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface ReflinkFs {
  /** The mount point. */
  dir: string;
  close(): Promise<void>;
}

export async function mountReflinkFs(name: string, size = '2G', base = '/var/tmp'): Promise<ReflinkFs> {
  const root = mkdtempSync(join(base, `llraid-${name}-`));
  const image = join(root, 'xfs.img');
  const dir = join(root, 'mnt');
  await fs.mkdir(dir);
  await run('truncate', ['-s', size, image]);
  await run('mkfs.xfs', ['-q', '-m', 'reflink=1', image]);
  await run('mount', ['-o', 'loop', image, dir]);
  return {
    dir,
    async close() {
      // A lazy unmount when something still holds the mount: the loop device goes with the last user.
      await run('umount', [dir]).catch(() => run('umount', ['-l', dir]));
      await fs.rm(root, { recursive: true, force: true });
    },
  };
}
