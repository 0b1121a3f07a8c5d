// RAID capacity arithmetic for placement: how big each member file must be for a requested
// volume size, and how much a volume can hold given member space. The md engine has the final
// word on the array size; these numbers only decide member file sizes and GetCapacity answers.

import type { RaidLevel } from './parameters.js';

/** Bytes before the data area of a member: superblock at 4 KiB, llbitmap after it, data at 1 MiB. */
export const memberDataOffset = 2048 * 512;

/** raid10 near layout with two copies: every chunk is written twice. */
const raid10Copies = 2;

function roundDown(v: number, unit: number): number {
  if (unit <= 1) return v;
  return Math.floor(v / unit) * unit;
}

/** Usable bytes of an array whose members each hold `memberData` bytes of data. */
export function usableBytes(level: RaidLevel, members: number, chunkSize: number, memberData: number): number {
  const d = roundDown(Math.max(0, memberData), chunkSize);
  switch (level) {
    case 0:
      return members * d;
    case 1:
      return d;
    case 10:
      return roundDown(Math.floor((members * d) / raid10Copies), chunkSize);
    case 5:
      return (members - 1) * d;
    case 6:
      return (members - 2) * d;
  }
}

/** Data bytes per member (a chunk multiple) that give at least `capacity` usable bytes. */
export function memberDataFor(level: RaidLevel, members: number, chunkSize: number, capacity: number): number {
  const dataMembers =
    level === 0 ? members : level === 1 ? 1 : level === 10 ? members / raid10Copies : level === 5 ? members - 1 : members - 2;
  let d = Math.max(chunkSize, Math.ceil(Math.ceil(capacity / dataMembers) / chunkSize) * chunkSize);
  while (usableBytes(level, members, chunkSize, d) < capacity) d += chunkSize;
  return d;
}

/** Size of each member file for `memberData` bytes of data. */
export function memberFileSize(memberData: number): number {
  return memberDataOffset + memberData;
}
