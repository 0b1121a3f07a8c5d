// The temp directory of a test: made fresh under the OS temp dir (or `base`, e.g. /dev/shm for
// tmpfs, /var/tmp for a disk filesystem) and removed with everything in it when the test ends.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** What owns the directory: a TestContext, or a suite's hook context (cleanup after afterEach). */
export interface TempDirOwner {
  after(fn: () => void): void;
}

/** A new directory `<base>/llraid-<name>-XXXXXX`, removed when `owner` ends. */
export function tempDir(owner: TempDirOwner, name = 'test', base = tmpdir()): string {
  const dir = mkdtempSync(join(base, `llraid-${name}-`));
  owner.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
