// The md metadata 1.2 superblock (`struct mdp_superblock_1`, Linux include/uapi/linux/raid/md_p.h)
// that sits 4 KiB into every member: one encode, one decode, the checksum, and reading/writing it
// on a member BlockDevice. Byte-compatible with Linux md and mdadm, so `mdadm --examine` reads it.
//
//   member:  0 ─ 4 KiB ─ superblock (256 B + 2 B per dev slot) ─ 8 KiB ─ bitmap … ─ 1 MiB ─ data
//   (offsets in sectors: super 8, bitmap super+8, data 2048 by default)

import { SECTOR } from '../block/block-device.js';
export { SECTOR };
import type { BlockDevice } from '../block/block-device.js';
import { MdError } from './errors.js';

export const SB_MAGIC = 0xa92b4efc;
/** 1.2 metadata: the superblock is 8 sectors (4 KiB) from the start of the member. */
export const SUPER_OFFSET_SECTORS = 8;
export const SUPER_OFFSET_BYTES = SUPER_OFFSET_SECTORS * SECTOR;
/** The fixed part; dev_roles follow it. */
export const SB_FIXED_BYTES = 256;
/** One 4 KiB block holds the superblock; md refuses max_dev beyond what fits in it. */
export const SB_BLOCK_BYTES = 4096;
export const MAX_DEV_LIMIT = (SB_BLOCK_BYTES - SB_FIXED_BYTES) / 2;
/** resync_offset value meaning "the array is in sync" (MaxSector). */
export const RESYNC_NONE = 0xffff_ffff_ffff_ffffn;
/** The largest value of a u64 field such as `events`. */
export const U64_MAX = 0xffff_ffff_ffff_ffffn;

/** dev_roles values that are not roles. */
export const ROLE_SPARE = 0xffff;
export const ROLE_FAULTY = 0xfffe;

/** feature_map bits (md_p.h MD_FEATURE_*). */
export const FEATURE_BITMAP_OFFSET = 1;
export const FEATURE_RECOVERY_OFFSET = 2;
/** The features llraid writes and understands; any other bit makes decode refuse the member. */
export const FEATURES_KNOWN = FEATURE_BITMAP_OFFSET | FEATURE_RECOVERY_OFFSET;
/** devflags bits (md_p.h): WriteMostly1, "this device is write-mostly" (mdadm --write-mostly). */
export const DEVFLAG_WRITE_MOSTLY = 1;

// Field offsets of struct mdp_superblock_1, named once.
const O = {
  magic: 0,
  majorVersion: 4,
  featureMap: 8,
  pad0: 12,
  setUuid: 16,
  setName: 32,
  ctime: 64,
  level: 72,
  layout: 76,
  size: 80,
  chunksize: 88,
  raidDisks: 92,
  bitmapOffset: 96,
  newLevel: 100,
  reshapePosition: 104,
  deltaDisks: 112,
  newLayout: 116,
  newChunk: 120,
  newOffset: 124,
  dataOffset: 128,
  dataSize: 136,
  superOffset: 144,
  recoveryOffset: 152,
  devNumber: 160,
  cntCorrectedRead: 164,
  deviceUuid: 168,
  devflags: 184,
  bblogShift: 185,
  bblogSize: 186,
  bblogOffset: 188,
  utime: 192,
  events: 200,
  resyncOffset: 208,
  sbCsum: 216,
  maxDev: 220,
  devRoles: 256,
} as const;

const SET_NAME_BYTES = 32;

export interface Superblock {
  featureMap: number;
  setUuid: Buffer;
  /** Up to 32 bytes of UTF-8; llraid stores the volume name here. */
  setName: string;
  /** Creation time, seconds since the epoch. */
  ctime: number;
  level: number;
  layout: number;
  /** Sectors used on each member (md dev_sectors). */
  size: number;
  /** Sectors (0 for raid1). */
  chunkSize: number;
  raidDisks: number;
  /** Signed, sectors from the superblock; meaningful when FEATURE_BITMAP_OFFSET is set. */
  bitmapOffset: number;
  dataOffset: number;
  dataSize: number;
  superOffset: number;
  /** Sectors of this member's data already recovered; meaningful with FEATURE_RECOVERY_OFFSET. */
  recoveryOffset: number;
  /** Index into devRoles: the permanent slot of this member, not its role. */
  devNumber: number;
  cntCorrectedRead: number;
  deviceUuid: Buffer;
  devflags: number;
  /** Bad block log geometry (shift, sectors, signed offset from the superblock); carried, not used. */
  bblogShift: number;
  bblogSize: number;
  bblogOffset: number;
  /** Last update, seconds since the epoch. */
  utime: number;
  events: bigint;
  /** Sectors known in sync from the start; RESYNC_NONE when the whole array is in sync. */
  resyncOffset: bigint;
  /** devRoles[devNumber] = role, ROLE_SPARE or ROLE_FAULTY. Its length is max_dev. */
  devRoles: number[];
}

/** Checksum as md's calc_sb_1_csum: 32-bit LE words over 256 + 2*max_dev bytes, folded. */
export function superblockChecksum(buf: Buffer, maxDev: number): number {
  let size = SB_FIXED_BYTES + maxDev * 2;
  let off = 0;
  // Summing in a Number is exact: at most 1024 words of < 2^32 each stays below 2^53.
  let acc = 0;
  for (; size >= 4; size -= 4, off += 4) {
    acc += off === O.sbCsum ? 0 : buf.readUInt32LE(off);
  }
  if (size === 2) acc += buf.readUInt16LE(off);
  const sum = BigInt(acc);
  return Number(((sum & 0xffff_ffffn) + (sum >> 32n)) & 0xffff_ffffn);
}

function encodeTime(seconds: number): bigint {
  return BigInt(Math.max(0, Math.floor(seconds))) & 0xff_ffff_ffffn;
}

function decodeTime(raw: bigint): number {
  return Number(raw & 0xff_ffff_ffffn);
}

/**
 * A u64 field's value, checked: Buffer.writeBigUInt64LE would throw a bare RangeError for one
 * out of range, and BigInt() one for a fraction. Sector counts come in as numbers.
 */
function u64(value: bigint | number, field: string): bigint {
  if (typeof value === 'number' && !Number.isSafeInteger(value)) {
    throw new MdError('EINVAL', `superblock: expected ${field} to be a whole number of at most ${Number.MAX_SAFE_INTEGER}, found ${value}`);
  }
  const v = BigInt(value);
  if (v < 0n || v > U64_MAX) throw new MdError('EINVAL', `superblock: expected ${field} between 0 and ${U64_MAX}, found ${v}`);
  return v;
}

/** Encodes into one 4 KiB block (the rest zeroed), checksum included. */
export function encodeSuperblock(sb: Superblock): Buffer {
  const maxDev = sb.devRoles.length;
  if (maxDev > MAX_DEV_LIMIT) {
    throw new MdError('EINVAL', `superblock: expected at most ${MAX_DEV_LIMIT} device slots, found ${maxDev}`);
  }
  const name = Buffer.from(sb.setName, 'utf8');
  if (name.length > SET_NAME_BYTES) {
    throw new MdError('EINVAL', `superblock: array name must fit in ${SET_NAME_BYTES} bytes, found ${name.length} bytes`);
  }
  if (sb.setUuid.length !== 16 || sb.deviceUuid.length !== 16) {
    throw new MdError('EINVAL', 'superblock: set and device UUIDs must be 16 bytes');
  }
  const b = Buffer.alloc(SB_BLOCK_BYTES);
  b.writeUInt32LE(SB_MAGIC, O.magic);
  b.writeUInt32LE(1, O.majorVersion);
  b.writeUInt32LE(sb.featureMap >>> 0, O.featureMap);
  sb.setUuid.copy(b, O.setUuid);
  name.copy(b, O.setName);
  b.writeBigUInt64LE(encodeTime(sb.ctime), O.ctime);
  b.writeInt32LE(sb.level, O.level);
  b.writeUInt32LE(sb.layout >>> 0, O.layout);
  b.writeBigUInt64LE(u64(sb.size, 'size'), O.size);
  b.writeUInt32LE(sb.chunkSize >>> 0, O.chunksize);
  b.writeUInt32LE(sb.raidDisks >>> 0, O.raidDisks);
  b.writeInt32LE(sb.bitmapOffset, O.bitmapOffset);
  b.writeBigUInt64LE(u64(sb.dataOffset, 'data_offset'), O.dataOffset);
  b.writeBigUInt64LE(u64(sb.dataSize, 'data_size'), O.dataSize);
  b.writeBigUInt64LE(u64(sb.superOffset, 'super_offset'), O.superOffset);
  b.writeBigUInt64LE(u64(sb.recoveryOffset, 'recovery_offset'), O.recoveryOffset);
  b.writeUInt32LE(sb.devNumber >>> 0, O.devNumber);
  b.writeUInt32LE(sb.cntCorrectedRead >>> 0, O.cntCorrectedRead);
  sb.deviceUuid.copy(b, O.deviceUuid);
  b.writeUInt8(sb.devflags & 0xff, O.devflags);
  b.writeUInt8(sb.bblogShift & 0xff, O.bblogShift);
  b.writeUInt16LE(sb.bblogSize & 0xffff, O.bblogSize);
  b.writeInt32LE(sb.bblogOffset, O.bblogOffset);
  b.writeBigUInt64LE(encodeTime(sb.utime), O.utime);
  b.writeBigUInt64LE(u64(sb.events, 'events'), O.events);
  b.writeBigUInt64LE(u64(sb.resyncOffset, 'resync_offset'), O.resyncOffset);
  b.writeUInt32LE(maxDev, O.maxDev);
  sb.devRoles.forEach((role, i) => b.writeUInt16LE(role, O.devRoles + i * 2));
  b.writeUInt32LE(superblockChecksum(b, maxDev), O.sbCsum);
  return b;
}

function bad(member: string, what: string): MdError {
  return new MdError('EBADMETA', `member ${member}: ${what}`);
}

function safeSectors(b: Buffer, off: number, member: string, field: string): number {
  const v = b.readBigUInt64LE(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(member, `${field} ${v} is out of range`);
  return Number(v);
}

/**
 * Decodes and validates a superblock block. `memberBytes` is the member's size, to catch a
 * member truncated below its data area. Every failure is MdError('EBADMETA', "member X: ...").
 */
export function decodeSuperblock(b: Buffer, member: string, memberBytes: number): Superblock {
  if (b.length < SB_FIXED_BYTES) {
    throw bad(member, `truncated: expected a ${SB_FIXED_BYTES}-byte superblock, found ${b.length} bytes`);
  }
  const magic = b.readUInt32LE(O.magic);
  if (magic !== SB_MAGIC) {
    throw bad(member, `no md superblock: expected magic 0x${SB_MAGIC.toString(16)}, found 0x${magic.toString(16)}`);
  }
  const major = b.readUInt32LE(O.majorVersion);
  if (major !== 1) throw bad(member, `expected superblock major_version 1, found ${major}`);
  const maxDev = b.readUInt32LE(O.maxDev);
  if (maxDev > MAX_DEV_LIMIT) throw bad(member, `expected max_dev at most ${MAX_DEV_LIMIT}, found ${maxDev}`);
  if (b.length < SB_FIXED_BYTES + maxDev * 2) {
    throw bad(member, `truncated: superblock needs ${SB_FIXED_BYTES + maxDev * 2} bytes, found ${b.length}`);
  }
  const stored = b.readUInt32LE(O.sbCsum);
  const computed = superblockChecksum(b, maxDev);
  if (stored !== computed) {
    throw bad(member, `superblock checksum mismatch: stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)}`);
  }
  const featureMap = b.readUInt32LE(O.featureMap);
  if ((featureMap & ~FEATURES_KNOWN) !== 0) {
    throw bad(member, `unsupported superblock features 0x${(featureMap & ~FEATURES_KNOWN).toString(16)}`);
  }
  const superOffset = safeSectors(b, O.superOffset, member, 'super_offset');
  if (superOffset !== SUPER_OFFSET_SECTORS) {
    throw bad(member, `expected a 1.2 superblock at sector ${SUPER_OFFSET_SECTORS}, it records sector ${superOffset}`);
  }
  const dataOffset = safeSectors(b, O.dataOffset, member, 'data_offset');
  const dataSize = safeSectors(b, O.dataSize, member, 'data_size');
  const size = safeSectors(b, O.size, member, 'size');
  if (dataOffset * SECTOR < SUPER_OFFSET_BYTES + SB_BLOCK_BYTES) {
    throw bad(member, `data_offset ${dataOffset} overlaps the superblock`);
  }
  if (size > dataSize) throw bad(member, `used size ${size} sectors exceeds data_size ${dataSize}`);
  const needed = (dataOffset + dataSize) * SECTOR;
  if (memberBytes < needed) {
    throw bad(member, `truncated: expected at least ${needed} bytes (data_offset + data_size), found ${memberBytes}`);
  }
  const devRoles: number[] = [];
  for (let i = 0; i < maxDev; i++) devRoles.push(b.readUInt16LE(O.devRoles + i * 2));
  const devNumber = b.readUInt32LE(O.devNumber);
  if (devNumber >= maxDev) throw bad(member, `dev_number ${devNumber} is outside the ${maxDev} device slots`);
  const raidDisks = b.readUInt32LE(O.raidDisks);
  if (raidDisks === 0 || raidDisks > maxDev) {
    throw bad(member, `raid_disks ${raidDisks} must be between 1 and max_dev ${maxDev}`);
  }
  const nameEnd = b.subarray(O.setName, O.setName + SET_NAME_BYTES).indexOf(0);
  return {
    featureMap,
    setUuid: Buffer.from(b.subarray(O.setUuid, O.setUuid + 16)),
    setName: b.toString('utf8', O.setName, O.setName + (nameEnd < 0 ? SET_NAME_BYTES : nameEnd)),
    ctime: decodeTime(b.readBigUInt64LE(O.ctime)),
    level: b.readInt32LE(O.level),
    layout: b.readUInt32LE(O.layout),
    size,
    chunkSize: b.readUInt32LE(O.chunksize),
    raidDisks,
    bitmapOffset: b.readInt32LE(O.bitmapOffset),
    dataOffset,
    dataSize,
    superOffset,
    recoveryOffset: safeSectors(b, O.recoveryOffset, member, 'recovery_offset'),
    devNumber,
    cntCorrectedRead: b.readUInt32LE(O.cntCorrectedRead),
    deviceUuid: Buffer.from(b.subarray(O.deviceUuid, O.deviceUuid + 16)),
    devflags: b.readUInt8(O.devflags),
    bblogShift: b.readUInt8(O.bblogShift),
    bblogSize: b.readUInt16LE(O.bblogSize),
    bblogOffset: b.readInt32LE(O.bblogOffset),
    utime: decodeTime(b.readBigUInt64LE(O.utime)),
    events: b.readBigUInt64LE(O.events),
    resyncOffset: b.readBigUInt64LE(O.resyncOffset),
    devRoles,
  };
}

/** Reads and decodes the superblock of a member device. */
export async function readSuperblock(device: BlockDevice, member: string): Promise<Superblock> {
  if (device.size < SUPER_OFFSET_BYTES + SB_BLOCK_BYTES) {
    throw bad(member, `truncated: expected at least ${SUPER_OFFSET_BYTES + SB_BLOCK_BYTES} bytes for a 1.2 superblock, found ${device.size}`);
  }
  const block = await device.read(SUPER_OFFSET_BYTES, SB_BLOCK_BYTES);
  return decodeSuperblock(block, member, device.size);
}

/** Writes the superblock durably (FUA): md's superblock writes are barriers for what follows. */
export async function writeSuperblock(device: BlockDevice, sb: Superblock): Promise<void> {
  await device.write(SUPER_OFFSET_BYTES, encodeSuperblock(sb), { fua: true });
}

/** The role of this member, or undefined when it is a spare or faulty. */
export function roleOf(sb: Superblock): number | undefined {
  const r = sb.devRoles[sb.devNumber];
  return r === undefined || r >= ROLE_FAULTY ? undefined : r;
}

/** UUIDs in mdadm's printed form (8:8:8:8 hex). */
export function formatUuid(uuid: Uint8Array): string {
  const h = Buffer.from(uuid).toString('hex');
  return `${h.slice(0, 8)}:${h.slice(8, 16)}:${h.slice(16, 24)}:${h.slice(24, 32)}`;
}
