// StorageClass parameters of an llraid volume (DESIGN.md §7): parsing, defaults and validation.
// The controller turns CreateVolume/GetCapacity parameters into a VolumeSpec here, and nowhere else.

import { minMembers, type BitmapKind, type CreatableLevel } from '../md/index.js';
import { invalid } from './errors.js';
import { parseSize } from '../units/byte-sizes.js';

/** The size `text` gives, or undefined when it gives none (the caller names the parameter). */
export function sizeOrUndefined(text: string): number | undefined {
  try {
    return parseSize(text, 'size');
  } catch {
    return undefined;
  }
}

export type FsType = 'ext4' | 'xfs';

export interface VolumeSpec {
  level: CreatableLevel;
  /** Member count: each member on a distinct disk of the pool. */
  members: number;
  /** Bytes; a power of two. */
  chunkSize: number;
  bitmap: BitmapKind;
  fsType: FsType;
}

export const parameterNames = ['level', 'members', 'chunkSize', 'bitmap', 'fsType'] as const;

/** Keys the external-provisioner adds (`--extra-create-metadata`); not ours to validate. */
const reservedPrefix = 'csi.storage.k8s.io/';

const levels: Record<string, CreatableLevel> = {
  '0': 0, raid0: 0,
  '1': 1, raid1: 1,
  '10': 10, raid10: 10,
  '5': 5, raid5: 5,
  '6': 6, raid6: 6,
};

const maxMembers = 64;
const minChunk = 4096;
const maxChunk = 64 * 1024 * 1024;
const defaultChunk = 512 * 1024;

/** Turns StorageClass parameters into a VolumeSpec; any unknown or bad parameter is INVALID_ARGUMENT. */
export function parseVolumeParameters(params: Record<string, string>): VolumeSpec {
  for (const key of Object.keys(params)) {
    if (key.startsWith(reservedPrefix)) continue;
    if (!(parameterNames as readonly string[]).includes(key)) {
      throw invalid(`parameter ${JSON.stringify(key)} is unknown: expected one of ${parameterNames.join(', ')}`);
    }
  }
  const levelText = params.level ?? '1';
  const level = levels[levelText.toLowerCase()];
  if (level === undefined) {
    throw invalid(`parameter "level": expected 0, 1, 10, 5 or 6, found ${JSON.stringify(levelText)}`);
  }

  let members = minMembers(level);
  if (params.members !== undefined) {
    if (!/^\d+$/.test(params.members)) {
      throw invalid(`parameter "members": expected a whole number, found ${JSON.stringify(params.members)}`);
    }
    members = Number(params.members);
  }
  if (members < minMembers(level) || members > maxMembers) {
    throw invalid(
      `parameter "members": raid${level} needs ${minMembers(level)} to ${maxMembers} members, found ${members}`,
    );
  }

  let chunkSize = defaultChunk;
  if (params.chunkSize !== undefined) {
    const v = sizeOrUndefined(params.chunkSize);
    if (v === undefined || v < minChunk || v > maxChunk || (v & (v - 1)) !== 0) {
      throw invalid(
        `parameter "chunkSize": expected a power of two from 4K to 64M, found ${JSON.stringify(params.chunkSize)}`,
      );
    }
    chunkSize = v;
  }

  // raid0 has no redundancy, so a write-intent bitmap would have nothing to resync.
  const bitmapText = params.bitmap ?? (level === 0 ? 'none' : 'llbitmap');
  if (bitmapText !== 'llbitmap' && bitmapText !== 'none') {
    throw invalid(`parameter "bitmap": expected llbitmap or none, found ${JSON.stringify(bitmapText)}`);
  }
  if (level === 0 && bitmapText === 'llbitmap') {
    throw invalid('parameter "bitmap": raid0 has no redundancy to resync, expected none, found llbitmap');
  }

  const fsText = params.fsType ?? 'ext4';
  if (fsText !== 'ext4' && fsText !== 'xfs') {
    throw invalid(`parameter "fsType": expected ext4 or xfs, found ${JSON.stringify(fsText)}`);
  }
  return { level, members, chunkSize, bitmap: bitmapText, fsType: fsText };
}
