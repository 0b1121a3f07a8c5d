// Test fixture: an XFS made with reflink=1 in a sparse loop file, mounted in a temp dir, so that
// snapshot and clone tests run on disks that can clone files. Needs root, mkfs.xfs and loop
// devices; without them the test fails (it never skips).

import { mkdtempSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run } from '../../src/csi/exec.js';

export interface ReflinkDisk {
  /** The mounted filesystem. */
  dir: string;
  close(): Promise<void>;
}

export async function mountReflinkXfs(size = '2G'): Promise<ReflinkDisk> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'llraid-reflink-'));
  const image = path.join(root, 'xfs.img');
  const dir = path.join(root, 'mnt');
  await fs.mkdir(dir);
  await run('truncate', ['-s', size, image]);
  await run('mkfs.xfs', ['-q', '-m', 'reflink=1', image]);
  await run('mount', ['-o', 'loop', image, dir]);
  return {
    dir,
    async close() {
      await run('umount', [dir], { okCodes: [0, 32] }).catch(() => run('umount', ['-l', dir], { okCodes: [0, 32] }));
      await fs.rm(root, { recursive: true, force: true });
    },
  };
}
