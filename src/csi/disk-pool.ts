// The node's disk pool: one directory per node-local disk, each a failure domain (DESIGN.md §7).
// It measures the disks (statfs), places a volume's members on distinct disks, and preallocates
// member files. Metadata is not kept here: the member files' superblocks are the only record.

import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import { formatBytes } from '../units/byte-sizes.js';
import { CsiError } from './errors.js';
import { run } from './exec.js';

export interface DiskUsage {
  path: string;
  totalBytes: number;
  freeBytes: number;
}

/**
 * `<disk>/llraid-<volumeId>-<slot>.img`. The superblock, not the name, says which volume a file
 * is a member of; the name serves humans, and finds the files of a volume whose superblocks do
 * not read (volume-catalog.ts).
 */
const memberFilePattern = /^llraid-([0-9a-f]{32})-(\d+)\.img$/;

/** The volume id a member file's name gives, or undefined for a name that is not a member file's. */
export function volumeIdOfMemberFile(file: string): string | undefined {
  return memberFilePattern.exec(path.basename(file))?.[1];
}

export class DiskPool {
  constructor(readonly disks: readonly string[]) {}

  /** Throws FAILED_PRECONDITION naming the first disk that is missing, not a directory or not writable. */
  async check(): Promise<void> {
    if (this.disks.length === 0) throw new CsiError('FAILED_PRECONDITION', 'disk pool: expected at least one disk, found none');
    for (const disk of this.disks) {
      try {
        const st = await fs.stat(disk);
        if (!st.isDirectory()) throw new Error('not a directory');
        await fs.access(disk, constants.W_OK);
      } catch (err) {
        throw new CsiError('FAILED_PRECONDITION', `disk pool: disk ${disk} is not a writable directory: ${(err as Error).message}`);
      }
    }
  }

  async usage(): Promise<DiskUsage[]> {
    return Promise.all(
      this.disks.map(async (disk) => {
        const s = await fs.statfs(disk);
        return { path: disk, totalBytes: s.blocks * s.bsize, freeBytes: s.bavail * s.bsize };
      }),
    );
  }

  /**
   * Picks `count` distinct disks with at least `fileSize` free each, the emptiest first so that
   * volumes spread over the pool. RESOURCE_EXHAUSTED says which of the two was missing.
   */
  async place(count: number, fileSize: number, what: string): Promise<string[]> {
    if (count > this.disks.length) {
      throw new CsiError(
        'RESOURCE_EXHAUSTED',
        `${what} needs ${count} distinct disks, the pool has ${this.disks.length}`,
      );
    }
    const usage = (await this.usage()).sort((a, b) => b.freeBytes - a.freeBytes);
    const fit = usage.filter((u) => u.freeBytes >= fileSize);
    if (fit.length < count) {
      const free = usage.map((u) => `${u.path}: ${formatBytes(u.freeBytes)} free`).join(', ');
      throw new CsiError(
        'RESOURCE_EXHAUSTED',
        `${what} needs ${count} disks with ${formatBytes(fileSize)} free each, found ${fit.length} (${free})`,
      );
    }
    return fit.slice(0, count).map((u) => u.path);
  }

  /** The `members`-th largest free space: the most any one of `members` distinct disks can hold. */
  async memberSpace(members: number): Promise<number> {
    const free = (await this.usage()).map((u) => u.freeBytes).sort((a, b) => b - a);
    return members > free.length ? 0 : (free[members - 1] ?? 0);
  }

  memberPath(disk: string, volumeId: string, slot: number): string {
    return path.join(disk, `llraid-${volumeId}-${slot}.img`);
  }

  /**
   * Creates a member file of `size` bytes with its blocks reserved. Node has no fallocate(2), and
   * writing zeroes would cost the whole size in I/O, so util-linux `fallocate` reserves the
   * blocks: the file reads as zeroes, costs no data writes, and a full disk fails here (ENOSPC)
   * rather than later under a pod's writes. The file must not exist yet.
   */
  async allocate(file: string, size: number): Promise<void> {
    const handle = await fs.open(file, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
    await handle.close();
    try {
      await run('fallocate', ['-l', String(size), file]);
    } catch (err) {
      await fs.rm(file, { force: true });
      throw new CsiError('RESOURCE_EXHAUSTED', `member ${file}: could not reserve ${formatBytes(size)}: ${(err as Error).message}`);
    }
  }

  /** Grows a member file to `size` bytes, reserving the new blocks as allocate() does. */
  async grow(file: string, size: number): Promise<void> {
    try {
      await run('fallocate', ['-l', String(size), file]);
    } catch (err) {
      throw new CsiError('RESOURCE_EXHAUSTED', `member ${file}: could not grow to ${formatBytes(size)}: ${(err as Error).message}`);
    }
  }

  /** The member file `name` (a basename) on whichever disk holds it. */
  async findMember(name: string): Promise<string | undefined> {
    for (const disk of this.disks) {
      const p = path.join(disk, name);
      if ((await fs.stat(p).catch(() => undefined))?.isFile()) return p;
    }
    return undefined;
  }

  /** The pool disk whose directory has `name` as its basename (placements name disks so). */
  diskNamed(name: string): string | undefined {
    return this.disks.find((d) => path.basename(d) === name);
  }

  /** Every llraid member file on every disk. A missing disk contributes nothing. */
  async memberFiles(): Promise<string[]> {
    const out: string[] = [];
    for (const disk of this.disks) {
      let names: string[];
      try {
        names = await fs.readdir(disk);
      } catch {
        continue;
      }
      for (const name of names.sort()) if (memberFilePattern.test(name)) out.push(path.join(disk, name));
    }
    return out;
  }
}
