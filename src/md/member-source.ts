// Where members come from: a path the engine opens (and later closes) as a FileDevice, or a
// BlockDevice the caller already holds (a fault-injecting device in tests, a remote member).

import { promises as fs } from 'node:fs';
import type { BlockDevice } from '../block/block-device.js';
import { FileDevice, fileIdOf } from '../block/file-device.js';
import { MdError } from './errors.js';
import { readSuperblock, type Superblock } from './superblock.js';

export type MemberSpec = string | { name: string; device: BlockDevice };

export interface OpenedMember {
  name: string;
  device: BlockDevice;
  /** The engine opened it, so the engine closes it. */
  owned: boolean;
}

/**
 * Opens a member. A writable open takes the file for this process alone (FileDevice's
 * `exclusive`): while an engine runs an array, nothing else can assemble, check or repair it.
 */
export async function openMember(spec: MemberSpec, readOnly = false): Promise<OpenedMember> {
  if (typeof spec !== 'string') return { name: spec.name, device: spec.device, owned: false };
  return { name: spec, device: await FileDevice.open(spec, { readOnly, exclusive: !readOnly }), owned: true };
}

/**
 * Refuses a member list that names one file (or one block device) twice, under the same name or
 * another (x.img and ./x.img, a symlink, a second device node): a "mirror" of one file holds
 * one copy. Paths that do not exist are left for the open to report.
 */
async function checkDistinct(specs: readonly MemberSpec[]): Promise<void> {
  const seen = new Map<string, string>();
  for (const s of specs) {
    const name = typeof s === 'string' ? s : s.name;
    let id: string | undefined;
    if (typeof s === 'string') {
      const st = await fs.stat(s).catch(() => undefined);
      if (st !== undefined) id = fileIdOf(st);
    } else {
      id = s.device instanceof FileDevice ? s.device.fileId : undefined;
    }
    const key = id ?? `name ${name}`;
    const first = seen.get(key);
    if (first !== undefined) {
      throw new MdError('EINVAL', first === name ? `member ${name}: given more than once` : `member ${name}: is the same ${id?.startsWith('block') ? 'device' : 'file'} as member ${first}; each member must be a distinct file or device`);
    }
    seen.set(key, name);
  }
}

/**
 * Whether `spec` names the file `device` has open (by device and inode, whatever the path), or
 * is that device itself.
 */
export async function namesDevice(spec: MemberSpec, device: BlockDevice): Promise<boolean> {
  if (typeof spec !== 'string') return spec.device === device;
  if (!(device instanceof FileDevice)) return false;
  const st = await fs.stat(spec).catch(() => undefined);
  return st !== undefined && fileIdOf(st) === device.fileId;
}

/** Opens every spec; on any failure closes the ones already opened and rethrows. */
export async function openMembers(specs: readonly MemberSpec[]): Promise<OpenedMember[]> {
  await checkDistinct(specs);
  const opened: OpenedMember[] = [];
  try {
    for (const s of specs) opened.push(await openMember(s));
  } catch (err) {
    await releaseMembers(opened);
    throw err;
  }
  return opened;
}

export async function releaseMembers(members: readonly OpenedMember[]): Promise<void> {
  await Promise.allSettled(members.filter((m) => m.owned).map((m) => m.device.close()));
}

/** The member's superblock, or undefined when it carries none (no magic); other damage throws. */
export async function probeSuperblock(m: OpenedMember): Promise<Superblock | undefined> {
  try {
    return await readSuperblock(m.device, m.name);
  } catch (err) {
    if (err instanceof MdError && err.code === 'EBADMETA' && /no md superblock|truncated/.test(err.message)) return undefined;
    throw err;
  }
}
