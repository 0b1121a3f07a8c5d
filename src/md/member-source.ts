// Where members come from: a path the engine opens (and later closes) as a FileDevice, or a
// BlockDevice the caller already holds (a fault-injecting device in tests, a remote member).

import type { BlockDevice } from '../block/block-device.js';
import { FileDevice } from '../block/file-device.js';
import { MdError } from './errors.js';
import { readSuperblock, type Superblock } from './superblock.js';

export type MemberSpec = string | { name: string; device: BlockDevice };

export interface OpenedMember {
  name: string;
  device: BlockDevice;
  /** The engine opened it, so the engine closes it. */
  owned: boolean;
}

export async function openMember(spec: MemberSpec, readOnly = false): Promise<OpenedMember> {
  if (typeof spec !== 'string') return { name: spec.name, device: spec.device, owned: false };
  return { name: spec, device: await FileDevice.open(spec, { readOnly }), owned: true };
}

/** Opens every spec; on any failure closes the ones already opened and rethrows. */
export async function openMembers(specs: readonly MemberSpec[]): Promise<OpenedMember[]> {
  const names = specs.map((s) => (typeof s === 'string' ? s : s.name));
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) throw new MdError('EINVAL', `member ${dup}: given more than once`);
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
