// Filesystems on attached volumes: probing (blkid), creating (mkfs.ext4 / mkfs.xfs) only on an
// empty device, growing after an expansion, and usage for NodeGetVolumeStats.

import { promises as fs } from 'node:fs';
import { CsiError } from './errors.js';
import { run } from './exec.js';
import type { FsType } from './parameters.js';

/** The filesystem (or other signature) type on `device`, or undefined when blkid finds nothing. */
export async function probeFilesystem(device: string): Promise<string | undefined> {
  // -p reads the device itself rather than the blkid cache, which is stale for reused devices.
  const r = await run('blkid', ['-p', '-s', 'TYPE', '-o', 'value', device], { okCodes: [0, 2] });
  const type = r.stdout.trim();
  return r.code === 2 || type === '' ? undefined : type;
}

/**
 * Makes sure `device` holds a filesystem of `fsType`: creates one when the device is empty and
 * refuses (FAILED_PRECONDITION) when it holds something else, so data is never formatted over.
 */
export async function ensureFilesystem(device: string, fsType: FsType): Promise<'created' | 'existing'> {
  const found = await probeFilesystem(device);
  if (found === fsType) return 'existing';
  if (found !== undefined) {
    throw new CsiError('FAILED_PRECONDITION', `device ${device}: expected an empty device or ${fsType}, found ${found}`);
  }
  if (fsType === 'ext4') {
    // lazy init keeps mkfs fast on large volumes; the kernel zeroes the tables in the background.
    await run('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=1,lazy_journal_init=1,nodiscard', device]);
  } else {
    await run('mkfs.xfs', ['-q', '-f', '-K', device]);
  }
  return 'created';
}

/** Bytes an ext4 on `device` spans (its superblock's block count × block size). */
async function ext4Bytes(device: string): Promise<number> {
  const r = await run('dumpe2fs', ['-h', device]);
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)$`, 'm').exec(r.stdout)?.[1] ?? NaN);
  const bytes = field('Block count') * field('Block size');
  if (!Number.isSafeInteger(bytes)) throw new CsiError('INTERNAL', `dumpe2fs -h ${device}: expected Block count and Block size, found none`);
  return bytes;
}

/**
 * An ext4 smaller than its device (the volume grew while it was not staged) grows before it is
 * mounted: offline resize2fs needs only the device, where an online one also needs
 * CAP_SYS_RESOURCE. Returns whether it grew. (xfs grows only mounted: growFilesystem.)
 */
export async function growUnmountedExt4(device: string): Promise<boolean> {
  if ((await ext4Bytes(device)) >= (await deviceSize(device))) return false;
  // resize2fs refuses an unmounted filesystem that was not checked since its last mount.
  await run('e2fsck', ['-f', '-p', device], { okCodes: [0, 1] });
  await run('resize2fs', [device]);
  return true;
}

/** Grows the filesystem mounted at `mountPoint` (on `device`) to fill the device; nothing when it does. */
export async function growFilesystem(device: string, mountPoint: string, fsType: string): Promise<void> {
  if (fsType === 'xfs') await run('xfs_growfs', [mountPoint]);
  else if ((await ext4Bytes(device)) < (await deviceSize(device))) await run('resize2fs', [device]);
}

export interface FsUsage {
  totalBytes: number;
  freeBytes: number;
  usedBytes: number;
  totalInodes: number;
  freeInodes: number;
  usedInodes: number;
}

export async function filesystemUsage(path: string): Promise<FsUsage> {
  const s = await fs.statfs(path);
  const totalBytes = s.blocks * s.bsize;
  return {
    totalBytes,
    freeBytes: s.bavail * s.bsize,
    usedBytes: (s.blocks - s.bfree) * s.bsize,
    totalInodes: s.files,
    freeInodes: s.ffree,
    usedInodes: s.files - s.ffree,
  };
}

/** Size in bytes of a block device (or of a regular file). */
export async function deviceSize(device: string): Promise<number> {
  const r = await run('blockdev', ['--getsize64', device]);
  return Number(r.stdout.trim());
}
