// fsync of a file or directory named by its path: what makes a written file (its data and
// metadata) or a directory's entries (a rename, a new file) durable. A directory opens read-only
// for it, as does a file another descriptor wrote. Callback fs, promisified: engines call this
// (a snapshot's cut), and node:fs/promises would load readline's modules into them
// (scripts/build.mjs).

import { close, fsync, open } from 'node:fs';
import { promisify } from 'node:util';

const openP = promisify(open);
const fsyncP = promisify(fsync);
const closeP = promisify(close);

export async function fsyncPath(path: string): Promise<void> {
  const fd = await openP(path, 'r');
  try {
    await fsyncP(fd);
  } finally {
    await closeP(fd);
  }
}
