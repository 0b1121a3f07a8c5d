// fsync of a file or directory named by its path: what makes a written file (its data and
// metadata) or a directory's entries (a rename, a new file) durable. A directory opens read-only
// for it, as does a file another descriptor wrote.

import { promises as fs } from 'node:fs';

export async function fsyncPath(path: string): Promise<void> {
  const handle = await fs.open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
