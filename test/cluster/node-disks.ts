// Node-local disks for the cluster tests: each one a small ext4 filesystem on a loop device,
// mounted on its own directory, so the driver's disk pool sees real, separate failure domains with
// a fixed size (capacity numbers stay exact while other processes fill the machine's /tmp).

import { execFile } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export class NodeDisks {
  private readonly mounted: string[] = [];

  private constructor(readonly paths: string[]) {}

  /** Creates a disk of `sizeBytes` for each mount point, its image file beside it (`<mountpoint>.ext4`). */
  static async create(mountpoints: string[], sizeBytes: number): Promise<NodeDisks> {
    const disks = new NodeDisks([]);
    try {
      for (const mountpoint of mountpoints) {
        const image = `${mountpoint}.ext4`;
        await mkdir(mountpoint, { recursive: true });
        await exec('truncate', ['-s', String(sizeBytes), image]);
        await exec('mkfs.ext4', ['-q', '-F', '-m', '0', image]);
        // -o loop sets the loop device up with autoclear, so umount also frees it.
        await exec('mount', ['-o', 'loop', image, mountpoint]);
        disks.mounted.push(mountpoint);
        disks.paths.push(mountpoint);
      }
    } catch (err) {
      await disks.remove();
      throw err;
    }
    return disks;
  }

  /** Unmounts every disk (lazily, in case a FUSE mount below it is still going away) and deletes the images. */
  async remove(): Promise<void> {
    for (const m of this.mounted.splice(0)) {
      await exec('umount', ['-l', m]).catch(() => undefined);
      await rm(`${m}.ext4`, { force: true });
    }
  }
}
