// fsync of a file or directory named by its path: what makes a written file (its data and
// metadata) or a directory's entries (a rename, a new file) durable. A directory opens read-only
// for it, as does a file another descriptor wrote. Engines call this (a snapshot's cut), hence
// callback fs (callback-fs.ts).

import { close, fsync, open } from '../common/callback-fs.js';

export async function fsyncPath(path: string): Promise<void> {
  const fd = await open(path, 'r');
  try {
    await fsync(fd);
  } finally {
    await close(fd);
  }
}
