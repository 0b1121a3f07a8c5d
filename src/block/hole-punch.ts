// Deallocating a byte range of a file or block device. Node has no fallocate(2) or BLKDISCARD
// ioctl, so this runs util-linux's `fallocate --punch-hole` / `blkdiscard`: a process per call,
// which is why FileDevice only uses it for large ranges (discard and zeroing of whole regions).

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Punches [offset, offset+length) out of a regular file; it reads back as zeroes afterwards. */
export async function punchFileHole(path: string, offset: number, length: number): Promise<void> {
  await run('fallocate', ['--punch-hole', '--offset', String(offset), '--length', String(length), path]);
}

/** Discards [offset, offset+length) of a block device (contents afterwards are device-defined). */
export async function discardBlockRange(path: string, offset: number, length: number): Promise<void> {
  await run('blkdiscard', ['--offset', String(offset), '--length', String(length), path]);
}
