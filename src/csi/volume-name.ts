// How a CSI volume name and its filesystem type are kept in the 32-byte md `set_name` of every
// member superblock, so that CreateVolume stays idempotent by name with no database.
//
// Form: "<fsType>:<name>", mdadm's "host:name" shape with the filesystem in the host slot. A
// name too long for the field keeps its head and ends in "~" plus 12 hex digits of its SHA-256,
// so two long names sharing a prefix still get different keys.

import { createHash } from 'node:crypto';
import type { FsType } from './parameters.js';

const setNameBytes = 32;
const hashChars = 12;

/** The `<name>` part of the set name: the name itself when it fits, else head + "~" + hash. */
export function shortName(name: string, fsType: FsType): string {
  const room = setNameBytes - fsType.length - 1;
  if (Buffer.byteLength(name, 'utf8') <= room && !name.includes('~')) return name;
  const hash = createHash('sha256').update(name, 'utf8').digest('hex').slice(0, hashChars);
  let head = name.slice(0, room - hashChars - 1);
  while (Buffer.byteLength(head, 'utf8') > room - hashChars - 1) head = head.slice(0, -1);
  return `${head}~${hash}`;
}

export function encodeSetName(name: string, fsType: FsType): string {
  return `${fsType}:${shortName(name, fsType)}`;
}

/** Splits a set name; undefined for a set name llraid did not write. */
export function decodeSetName(setName: string): { fsType: FsType; key: string } | undefined {
  const m = /^(ext4|xfs):(.+)$/.exec(setName);
  if (!m) return undefined;
  return { fsType: m[1] as FsType, key: m[2] as string };
}

/** Whether a decoded set name belongs to the CSI volume `name` (whatever its fsType). */
export function matchesName(decoded: { fsType: FsType; key: string }, name: string): boolean {
  return decoded.key === shortName(name, decoded.fsType);
}
