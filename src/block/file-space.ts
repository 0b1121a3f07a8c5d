// Deallocating or zeroing a byte range of a file or block device. Node has no fallocate(2) or
// BLKDISCARD ioctl, so this runs util-linux's `fallocate` / `blkdiscard`: a process per call,
// which is why FileDevice only uses it for large ranges (discard and zeroing of whole regions).

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/**
 * Runs one util-linux command. Its failure carries the errno the command reported (ENOSPC,
 * EOPNOTSUPP) as `code`, as a failed syscall would, so FileDevice maps both alike.
 */
async function run(cmd: string, args: string[]): Promise<void> {
  try {
    await exec(cmd, args);
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim();
    const e = new Error(`${cmd}: ${stderr || (err as Error).message}`, { cause: err }) as NodeJS.ErrnoException;
    if (/No space left on device/i.test(stderr)) e.code = 'ENOSPC';
    else if (/Disk quota exceeded/i.test(stderr)) e.code = 'EDQUOT';
    else if (/Operation not supported/i.test(stderr)) e.code = 'EOPNOTSUPP';
    throw e;
  }
}

/** Punches [offset, offset+length) out of a regular file; it reads back as zeroes afterwards. */
export async function punchFileHole(path: string, offset: number, length: number): Promise<void> {
  await run('fallocate', ['--punch-hole', '--offset', String(offset), '--length', String(length), path]);
}

/** Discards [offset, offset+length) of a block device (contents afterwards are device-defined). */
export async function discardBlockRange(path: string, offset: number, length: number): Promise<void> {
  await run('blkdiscard', ['--offset', String(offset), '--length', String(length), path]);
}

/**
 * Zeroes [offset, offset+length) of a regular file and keeps its blocks allocated
 * (FALLOC_FL_ZERO_RANGE): a later write there needs no new block, so it cannot meet ENOSPC.
 */
export async function zeroFileRange(path: string, offset: number, length: number): Promise<void> {
  await run('fallocate', ['--zero-range', '--offset', String(offset), '--length', String(length), path]);
}

/** Allocates [offset, offset+length) of a regular file (reads as zeroes where it was a hole); ENOSPC when the disk cannot. */
export async function allocateFileRange(path: string, offset: number, length: number): Promise<void> {
  await run('fallocate', ['--offset', String(offset), '--length', String(length), path]);
}
