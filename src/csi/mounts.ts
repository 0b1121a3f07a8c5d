// Mount points as the kernel reports them (/proc/self/mountinfo) and the mount operations the
// node service needs: mount a device, bind-mount a directory or a device node, unmount. The
// mount table is the node's staged/published state; nothing else records it.

import { promises as fs } from 'node:fs';
import { basename } from 'node:path';
import { CsiError } from './errors.js';
import { run } from './exec.js';

export interface MountEntry {
  mountPoint: string;
  /** The mounted source: a device path for block filesystems, or the bound file's device. */
  source: string;
  fsType: string;
  options: string[];
  /** The path inside the source filesystem that is mounted (a bind mount's origin). */
  root: string;
  majorMinor: string;
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export async function listMounts(): Promise<MountEntry[]> {
  const text = await fs.readFile('/proc/self/mountinfo', 'utf8');
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    const a = pre.split(' ');
    const b = post.split(' ');
    out.push({
      majorMinor: a[2] ?? '',
      root: unescape(a[3] ?? ''),
      mountPoint: unescape(a[4] ?? ''),
      options: (a[5] ?? '').split(','),
      fsType: b[0] ?? '',
      source: unescape(b[1] ?? ''),
    });
  }
  return out;
}

/** The top-most mount at exactly `path`, if any. */
export async function mountAt(path: string): Promise<MountEntry | undefined> {
  const all = await listMounts();
  for (let i = all.length - 1; i >= 0; i--) if (all[i]?.mountPoint === path) return all[i];
  return undefined;
}

export async function mountDevice(device: string, target: string, fsType: string, options: string[]): Promise<void> {
  const args = ['-t', fsType];
  if (options.length > 0) args.push('-o', options.join(','));
  await run('mount', [...args, device, target]);
}

/** Bind-mounts `source` (a directory, or a device node onto a file) at `target`; ro is a remount. */
export async function bindMount(source: string, target: string, readOnly: boolean, options: string[] = []): Promise<void> {
  await run('mount', ['--bind', source, target]);
  if (readOnly || options.length > 0) {
    const opts = ['remount', 'bind', ...(readOnly ? ['ro'] : []), ...options];
    try {
      await run('mount', ['-o', opts.join(','), target]);
    } catch (err) {
      await run('umount', [target]);
      throw err;
    }
  }
}

/**
 * Unmounts every mount stacked at `path` (a bind mount may be stacked on a stale one). `lazy`
 * detaches a mount whose device is dead, where a normal unmount would fail on the final flush.
 */
export async function unmountAll(path: string, lazy = false): Promise<void> {
  while (await mountAt(path)) await run('umount', lazy ? ['-l', path] : [path]);
}

/** The kinds of block device llraid attaches a volume as: a loop device (fuse) or /dev/nbdX (kernel). */
const attachedDevice = /^\/dev\/(loop|nbd)\d+$/;

/**
 * Whether `m` is a mount of a volume whose block device is `device`: the device itself (a
 * staged filesystem, or a publish bind of it, whose source is still the device) or a bind of
 * its device node onto a file (a published block volume: devtmpfs, root `/loopN` or `/nbdN`).
 * With no device known (the attachment is gone), a mount of any loop or nbd device counts: the
 * leftover of a dead attachment, the only kind of mount llraid leaves behind.
 */
export function isVolumeMount(m: MountEntry, device: string | undefined): boolean {
  const nodeBind = m.fsType === 'devtmpfs' || m.fsType === 'tmpfs';
  if (device !== undefined) return m.source === device || (nodeBind && m.root === `/${basename(device)}`);
  return attachedDevice.test(m.source) || (nodeBind && attachedDevice.test(`/dev${m.root}`));
}

/**
 * Unmounts every mount stacked at `where`, each only after checking it is the volume's
 * (isVolumeMount): a request that names another pod's or another driver's mount point gets
 * FAILED_PRECONDITION and that mount stays. `field` names the request field for the message.
 */
export async function unmountVolumeAt(where: string, device: string | undefined, volumeId: string, field: string): Promise<void> {
  for (let m = await mountAt(where); m; m = await mountAt(where)) {
    if (!isVolumeMount(m, device)) {
      const expected = device ? `volume ${volumeId}'s device ${device}` : `a loop or nbd device of volume ${volumeId} (it is not attached)`;
      throw new CsiError('FAILED_PRECONDITION', `${field} ${where}: expected ${expected} mounted there, found ${m.source} (${m.fsType}${m.root === '/' ? '' : ` ${m.root}`}): left mounted`);
    }
    await run('umount', [where]);
  }
}
