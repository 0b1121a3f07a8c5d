// An XFS filesystem with reflink on a loop file, mounted for one test: the kind of disk on which
// snapshots are reflink clones. Needs root, mkfs.xfs (xfsprogs) and a free loop device; fails
// (never skips) without them.

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export interface ReflinkFs {
  /** The mount point. */
  dir: string;
  close(): void;
}

export function mountReflinkFs(name: string, bytes = 512 * 1024 * 1024, base = '/var/tmp'): ReflinkFs {
  const root = mkdtempSync(join(base, `llraid-${name}-`));
  const image = join(root, 'xfs.img');
  const dir = join(root, 'mnt');
  mkdirSync(dir);
  execFileSync('truncate', ['-s', String(bytes), image]);
  execFileSync('mkfs.xfs', ['-q', '-m', 'reflink=1', image]);
  execFileSync('mount', ['-o', 'loop', image, dir]);
  return {
    dir,
    close() {
      try {
        execFileSync('umount', [dir]);
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    },
  };
}
