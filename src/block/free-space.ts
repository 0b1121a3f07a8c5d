// Whether the filesystems under some files can hold them at new sizes, asked before the files are
// created or extended. Extending a file (ftruncate) never fails for want of space, it only makes
// it sparse: without this question a full filesystem shows up later, as writes into the space
// failing with ENOSPC. Block devices are not files on a filesystem: they are left out.

import type { Stats } from 'node:fs';
import { dirname } from 'node:path';
import { stat, statfs } from '../common/callback-fs.js';

export interface FileTarget {
  /** The file, or where it will be created. */
  path: string;
  /** Bytes it is to have. */
  size: number;
}

export interface SpaceShortfall {
  /** The files on this filesystem that are to grow or be created, in the order given. */
  paths: string[];
  /** Bytes they still need allocated to be fully written at their target sizes. */
  neededBytes: number;
  /** Bytes the filesystem has available to unprivileged writers (df's Avail, statfs f_bavail). */
  freeBytes: number;
}

/**
 * The first filesystem that cannot hold `targets` fully written, or undefined when every one can.
 * A file's need is its target size less what it has allocated already (a preallocated file needs
 * nothing, a sparse one its holes); a file already at its target size or beyond is not growing
 * and is left out, as is anything that is not a regular file. A missing file counts as new,
 * on the filesystem of its directory.
 */
export async function spaceShortfall(targets: readonly FileTarget[]): Promise<SpaceShortfall | undefined> {
  const byFilesystem = new Map<number, { probe: string; paths: string[]; neededBytes: number }>();
  for (const t of targets) {
    const st = await statIfExists(t.path);
    if (st !== undefined && (!st.isFile() || st.size >= t.size)) continue;
    const probe = st === undefined ? dirname(t.path) : t.path;
    const dev = st?.dev ?? (await stat(probe)).dev;
    const fs = byFilesystem.get(dev) ?? { probe, paths: [], neededBytes: 0 };
    fs.paths.push(t.path);
    // st_blocks counts 512-byte units whatever the filesystem's block size (stat(2)).
    fs.neededBytes += Math.max(0, t.size - (st === undefined ? 0 : st.blocks * 512));
    byFilesystem.set(dev, fs);
  }
  for (const fs of byFilesystem.values()) {
    const s = await statfs(fs.probe);
    const freeBytes = s.bavail * s.bsize;
    if (fs.neededBytes > freeBytes) return { paths: fs.paths, neededBytes: fs.neededBytes, freeBytes };
  }
  return undefined;
}

async function statIfExists(path: string): Promise<Stats | undefined> {
  try {
    return await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
