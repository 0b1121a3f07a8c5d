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
  /**
   * Nodes holding a copy: 1 = node-local (every member on this node's pool), 2 or 3 = one member
   * per node for raid1, member slot i on node i mod replicas for raid10 (replica-placement.ts).
   */
  replicas: number;
  /** A pod may run on a node holding no member of the volume (every member then remote). */
  disklessAttach: boolean;
  /** md's sync_speed_min/max (KiB/s) for the engines of a replicated volume, over the node's. */
  recoverySpeed?: { minKiB: number; maxKiB: number };
}

export const parameterNames = [
  'level', 'members', 'chunkSize', 'bitmap', 'fsType', 'replicas', 'disklessAttach', 'recoverySpeedMinKiB', 'recoverySpeedMaxKiB',
] as const;

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

  const replicas = parseReplicas(params.replicas);
  const members = parseMembers(params.members, level, replicas);
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
  // A copy on another node catches up after an absence from the bitmap alone: without one, every
  // return of a node would copy the whole volume.
  if (replicas > 1 && bitmapText === 'none') {
    throw invalid('parameter "bitmap": replicas needs llbitmap (a member that was away catches up from it), found none');
  }
  const disklessAttach = parseBoolean(params.disklessAttach, 'disklessAttach');
  if (disklessAttach && replicas === 1) {
    throw invalid('parameter "disklessAttach": a node-local volume (replicas 1) is reachable on its node only; use replicas 2 or 3 with it');
  }
  const recoverySpeed = parseRecoverySpeed(params, replicas);
  return {
    level, members, chunkSize, bitmap: bitmapText, fsType: fsText, replicas, disklessAttach,
    ...(recoverySpeed === undefined ? {} : { recoverySpeed }),
  };
}

/** md's near copies of a volume's raid10: one copy per node when replicated, md's 2 otherwise. */
export function nearCopiesOf(spec: Pick<VolumeSpec, 'level' | 'replicas'>): number {
  return spec.level === 10 && spec.replicas > 1 ? spec.replicas : 2;
}

function parseReplicas(text: string | undefined): number {
  if (text === undefined) return 1;
  if (!/^[123]$/.test(text)) {
    throw invalid(`parameter "replicas": expected 1 (node-local), 2 or 3 (copies on distinct nodes), found ${JSON.stringify(text)}`);
  }
  return Number(text);
}

/**
 * The member count: given, or the level's least (node-local), or one member per node for a
 * replicated raid1 and two per node for a replicated raid10. A replicated raid10 has one near
 * copy per node, so members must come in whole rows of `replicas`: slot i on node i mod
 * replicas then puts every copy of a chunk on a different node.
 */
function parseMembers(text: string | undefined, level: CreatableLevel, replicas: number): number {
  if (text !== undefined && !/^\d+$/.test(text)) {
    throw invalid(`parameter "members": expected a whole number, found ${JSON.stringify(text)}`);
  }
  const given = text === undefined ? undefined : Number(text);
  if (replicas > 1) {
    if (level !== 1 && level !== 10) {
      throw invalid(
        `parameter "replicas": replicas needs level raid1 or raid10 (copies on distinct nodes); raid${level} keeps every member on one node: use replicas 1`,
      );
    }
    if (level === 1) {
      if (given !== undefined && given !== replicas) {
        throw invalid(`parameter "members": a replicated raid1 has one member per node, so members must equal replicas (${replicas}), found ${given}; leave members out`);
      }
      return replicas;
    }
    const members = given ?? 2 * replicas;
    if (members % replicas !== 0 || members < replicas || members > maxMembers - (maxMembers % replicas)) {
      throw invalid(
        `parameter "members": a replicated raid10 puts slot i on node i mod replicas, so members must be a multiple of replicas (${replicas}) from ${replicas} to ${maxMembers - (maxMembers % replicas)}, found ${members}; the default is ${2 * replicas}`,
      );
    }
    return members;
  }
  const members = given ?? minMembers(level);
  if (members < minMembers(level) || members > maxMembers) {
    throw invalid(`parameter "members": raid${level} needs ${minMembers(level)} to ${maxMembers} members, found ${members}`);
  }
  return members;
}

function parseBoolean(text: string | undefined, name: string): boolean {
  if (text === undefined) return false;
  if (text !== 'true' && text !== 'false') throw invalid(`parameter "${name}": expected true or false, found ${JSON.stringify(text)}`);
  return text === 'true';
}

function parseRecoverySpeed(params: Record<string, string>, replicas: number): VolumeSpec['recoverySpeed'] {
  const min = params.recoverySpeedMinKiB;
  const max = params.recoverySpeedMaxKiB;
  if (min === undefined && max === undefined) return undefined;
  if (replicas === 1) {
    throw invalid('parameters "recoverySpeedMinKiB"/"recoverySpeedMaxKiB" apply to replicated volumes (replicas 2 or 3); a node-local volume recovers at the node\'s syncSpeedMin/syncSpeedMax');
  }
  if (min === undefined || max === undefined) {
    throw invalid(`parameters "recoverySpeedMinKiB" and "recoverySpeedMaxKiB" go together: give both, found only ${min === undefined ? 'recoverySpeedMaxKiB' : 'recoverySpeedMinKiB'}`);
  }
  const kib = (text: string, name: string): number => {
    const n = Number(text);
    if (!/^\d+$/.test(text) || n < 1 || n > 0xffffffff) throw invalid(`parameter "${name}": expected a whole number of KiB/s from 1, found ${JSON.stringify(text)}`);
    return n;
  };
  const minKiB = kib(min, 'recoverySpeedMinKiB');
  const maxKiB = kib(max, 'recoverySpeedMaxKiB');
  if (maxKiB < minKiB) {
    throw invalid(`parameter "recoverySpeedMaxKiB": expected at least recoverySpeedMinKiB (${minKiB}), found ${maxKiB}`);
  }
  return { minKiB, maxKiB };
}
