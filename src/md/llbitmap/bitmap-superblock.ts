// The bitmap superblock (`bitmap_super_t`, 256 bytes, little-endian) at the start of the bitmap
// area on every bitmap member: one encode and one decode, field offsets named once. Used by the
// llbitmap class to create, load and update_sb; the chunk bytes follow at BITMAP_DATA_OFFSET.

import { MdError } from '../errors.js';

export const BITMAP_MAGIC = 0x6d746962; // "bitm"
/** BITMAP_MAJOR_LOCKLESS: version 6 is only used by the lockless bitmap. */
export const BITMAP_MAJOR_LOCKLESS = 6;
export const BITMAP_SUPER_SIZE = 256;
/** Chunk i's state byte is at BITMAP_DATA_OFFSET + i (BITMAP_SB_SIZE in the kernel). */
export const BITMAP_DATA_OFFSET = 1024;

/**
 * `state` flag BIT NUMBERS, the kernel's `enum bitmap_state` (B-o: mdadm patch 000 has
 * DAEMON_BUSY=4; the kernel has CLEAN=4, DAEMON_BUSY=5, and the kernel's values are followed).
 */
export const BitmapFlag = {
  Stale: 1,
  WriteError: 2,
  FirstUse: 3,
  Clean: 4,
  DaemonBusy: 5,
  HostEndian: 15,
} as const;
export type BitmapFlag = (typeof BitmapFlag)[keyof typeof BitmapFlag];

export function hasFlag(state: number, flag: BitmapFlag): boolean {
  return ((state >>> flag) & 1) === 1;
}

export function withFlag(state: number, flag: BitmapFlag, on: boolean): number {
  return (on ? state | (1 << flag) : state & ~(1 << flag)) >>> 0;
}

//  0 magic   4 version   8 uuid[16]   24 events   32 events_cleared   40 sync_size
// 48 state  52 chunksize 56 daemon_sleep 60 write_behind 64 sectors_reserved 68 nodes
// 72 cluster_name[64]   136..255 zero
const OFF = {
  magic: 0,
  version: 4,
  uuid: 8,
  events: 24,
  eventsCleared: 32,
  syncSize: 40,
  state: 48,
  chunksize: 52,
  daemonSleep: 56,
  writeBehind: 60,
  sectorsReserved: 64,
  nodes: 68,
  clusterName: 72,
} as const;
const UUID_LEN = 16;
const CLUSTER_NAME_LEN = 64;

export interface BitmapSuper {
  magic: number;
  version: number;
  uuid: Uint8Array;
  events: bigint;
  eventsCleared: bigint;
  /** Sectors of the sync space the bitmap covers. */
  syncSize: bigint;
  /** Flag bits, see BitmapFlag. */
  state: number;
  /** In SECTORS for llbitmap (L2168, L3555), unlike the classic bitmap. */
  chunksize: number;
  /** Seconds. */
  daemonSleep: number;
  writeBehind: number;
  /** Sectors reserved for the whole bitmap area (superblock included). */
  sectorsReserved: number;
  nodes: number;
  /** Up to 64 bytes; empty for llbitmap (no clustering). */
  clusterName: string;
}

export function encodeBitmapSuper(sb: BitmapSuper): Buffer {
  const buf = Buffer.alloc(BITMAP_SUPER_SIZE);
  if (sb.uuid.length !== UUID_LEN) {
    throw new MdError('EINVAL', `bitmap superblock: expected a ${UUID_LEN}-byte uuid, found ${sb.uuid.length} bytes`);
  }
  const name = Buffer.from(sb.clusterName, 'utf8');
  if (name.length > CLUSTER_NAME_LEN) {
    throw new MdError(
      'EINVAL',
      `bitmap superblock: expected a cluster name of at most ${CLUSTER_NAME_LEN} bytes, found ${name.length}`,
    );
  }
  buf.writeUInt32LE(sb.magic >>> 0, OFF.magic);
  buf.writeUInt32LE(sb.version >>> 0, OFF.version);
  buf.set(sb.uuid, OFF.uuid);
  buf.writeBigUInt64LE(BigInt.asUintN(64, sb.events), OFF.events);
  buf.writeBigUInt64LE(BigInt.asUintN(64, sb.eventsCleared), OFF.eventsCleared);
  buf.writeBigUInt64LE(BigInt.asUintN(64, sb.syncSize), OFF.syncSize);
  buf.writeUInt32LE(sb.state >>> 0, OFF.state);
  buf.writeUInt32LE(sb.chunksize >>> 0, OFF.chunksize);
  buf.writeUInt32LE(sb.daemonSleep >>> 0, OFF.daemonSleep);
  buf.writeUInt32LE(sb.writeBehind >>> 0, OFF.writeBehind);
  buf.writeUInt32LE(sb.sectorsReserved >>> 0, OFF.sectorsReserved);
  buf.writeUInt32LE(sb.nodes >>> 0, OFF.nodes);
  name.copy(buf, OFF.clusterName);
  return buf;
}

/**
 * Decodes and checks what identifies a bitmap superblock, in read_sb order (A2): magic, then
 * version. `where` names the member for messages. Field ranges are checked by the loader.
 */
export function decodeBitmapSuper(buf: Uint8Array, where: string): BitmapSuper {
  if (buf.length < BITMAP_SUPER_SIZE) {
    throw new MdError(
      'EBADMETA',
      `${where}: bitmap superblock: expected ${BITMAP_SUPER_SIZE} bytes, found ${buf.length}`,
    );
  }
  const b = Buffer.from(buf.buffer, buf.byteOffset, BITMAP_SUPER_SIZE);
  const magic = b.readUInt32LE(OFF.magic);
  if (magic !== BITMAP_MAGIC) {
    throw new MdError(
      'EBADMETA',
      `${where}: bitmap superblock: expected magic 0x${hex(BITMAP_MAGIC)}, found 0x${hex(magic)}`,
    );
  }
  const version = b.readUInt32LE(OFF.version);
  if (version !== BITMAP_MAJOR_LOCKLESS) {
    throw new MdError(
      'EBADMETA',
      `${where}: bitmap superblock: expected version ${BITMAP_MAJOR_LOCKLESS} (lockless), found ${version}`,
    );
  }
  const nameBytes = b.subarray(OFF.clusterName, OFF.clusterName + CLUSTER_NAME_LEN);
  const nul = nameBytes.indexOf(0);
  return {
    magic,
    version,
    uuid: Uint8Array.from(b.subarray(OFF.uuid, OFF.uuid + UUID_LEN)),
    events: b.readBigUInt64LE(OFF.events),
    eventsCleared: b.readBigUInt64LE(OFF.eventsCleared),
    syncSize: b.readBigUInt64LE(OFF.syncSize),
    state: b.readUInt32LE(OFF.state),
    chunksize: b.readUInt32LE(OFF.chunksize),
    daemonSleep: b.readUInt32LE(OFF.daemonSleep),
    writeBehind: b.readUInt32LE(OFF.writeBehind),
    sectorsReserved: b.readUInt32LE(OFF.sectorsReserved),
    nodes: b.readUInt32LE(OFF.nodes),
    clusterName: nameBytes.subarray(0, nul < 0 ? CLUSTER_NAME_LEN : nul).toString('utf8'),
  };
}

/** The uuid check of read_sb, third after magic and version. */
export function checkBitmapUuid(sb: BitmapSuper, expected: Uint8Array, where: string): void {
  if (!Buffer.from(sb.uuid).equals(Buffer.from(expected))) {
    throw new MdError(
      'EBADMETA',
      `${where}: bitmap superblock: expected array uuid ${uuidText(expected)}, found ${uuidText(sb.uuid)}`,
    );
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function uuidText(u: Uint8Array): string {
  const h = Buffer.from(u).toString('hex');
  return `${h.slice(0, 8)}:${h.slice(8, 16)}:${h.slice(16, 24)}:${h.slice(24, 32)}`;
}
