// Node-local disks for the cluster tests: each one a small ext4 (or XFS with reflink, which
// snapshots need) filesystem on a loop device,
// mounted on its own directory, so the driver's disk pool sees real, separate failure domains with
// a fixed size (capacity numbers stay exact while other processes fill the machine's /tmp).

import { execFile } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export class NodeDisks {
  private readonly mounted: string[] = [];

  private constructor(
    readonly paths: string[],
    private readonly fsType: 'ext4' | 'xfs',
  ) {}

  /**
   * Creates a disk of `sizeBytes` for each mount point, its image file beside it
   * (`<mountpoint>.<fsType>`). XFS is made with reflink on (llraid's snapshots are reflink copies
   * of the member files); mkfs.xfs wants at least 300 MiB.
   */
  static async create(mountpoints: string[], sizeBytes: number, fsType: 'ext4' | 'xfs' = 'ext4'): Promise<NodeDisks> {
    const disks = new NodeDisks([], fsType);
    try {
      for (const mountpoint of mountpoints) {
        const image = `${mountpoint}.${fsType}`;
        await mkdir(mountpoint, { recursive: true });
        await exec('truncate', ['-s', String(sizeBytes), image]);
        if (fsType === 'xfs') await exec('mkfs.xfs', ['-q', '-f', '-m', 'reflink=1', image]);
        else await exec('mkfs.ext4', ['-q', '-F', '-m', '0', image]);
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
      await rm(`${m}.${this.fsType}`, { force: true });
    }
  }
}
