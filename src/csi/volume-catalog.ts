// Rediscovers the node's volumes from the member superblocks in the disk pool: the only record
// of a volume is on its members (DESIGN.md §7), so after a plugin restart a scan gives back
// every volume's identity, geometry and health. Read-only: nothing here writes to a member.

import { promises as fs } from 'node:fs';
import { MdError } from '../md/errors.js';
import {
  decodeSuperblock,
  FEATURE_BITMAP_OFFSET,
  RESYNC_NONE,
  ROLE_FAULTY,
  SB_BLOCK_BYTES,
  SECTOR,
  SUPER_OFFSET_BYTES,
  type Superblock,
} from '../md/superblock.js';
import type { DiskPool } from './disk-pool.js';
import type { BitmapKind, FsType, RaidLevel } from './parameters.js';
import { usableBytes } from './raid-geometry.js';
import { decodeSetName } from './volume-name.js';

export interface MemberRecord {
  path: string;
  /** Role in the array, or undefined for a spare/faulty member. */
  role: number | undefined;
  events: bigint;
}

export interface VolumeRecord {
  /** 32 hex digits of the md set UUID. */
  id: string;
  setName: string;
  /** The name key from the set name (see volume-name.ts). */
  nameKey: string;
  fsType: FsType;
  level: RaidLevel;
  raidDisks: number;
  /** Bytes (md's chunksize; 0 for raid1 as md stores it). */
  chunkSize: number;
  bitmap: BitmapKind;
  /** Data bytes used on each member. */
  memberSize: number;
  /** Usable bytes of the array. */
  capacity: number;
  /** Every member file found, freshest first. */
  members: MemberRecord[];
  /** Roles with no fresh, non-faulty member: the array runs degraded (or not at all) without them. */
  missingRoles: number[];
  /** Members whose events lag the freshest: stale copies. */
  staleMembers: string[];
  /** The freshest superblock does not record a clean stop: a (bitmap-guided) resync is due. */
  resyncPending: boolean;
  ctime: number;
}

/** Reads a member file's superblock with plain reads; no device is opened for writing. */
export async function readMemberSuperblock(file: string): Promise<Superblock> {
  const handle = await fs.open(file, 'r');
  try {
    const { size } = await handle.stat();
    if (size < SUPER_OFFSET_BYTES + SB_BLOCK_BYTES) {
      throw new MdError('EBADMETA', `member ${file}: truncated: expected at least ${SUPER_OFFSET_BYTES + SB_BLOCK_BYTES} bytes, found ${size}`);
    }
    const block = Buffer.alloc(SB_BLOCK_BYTES);
    await handle.read(block, 0, SB_BLOCK_BYTES, SUPER_OFFSET_BYTES);
    return decodeSuperblock(block, file, size);
  } finally {
    await handle.close();
  }
}

function toLevel(level: number): RaidLevel | undefined {
  return level === 0 || level === 1 || level === 10 || level === 5 || level === 6 ? level : undefined;
}

/** Builds one volume from the superblocks of its members (all with the same set UUID). */
function assemble(found: Array<{ path: string; sb: Superblock }>): VolumeRecord | undefined {
  const sorted = [...found].sort((a, b) => (a.sb.events > b.sb.events ? -1 : a.sb.events < b.sb.events ? 1 : 0));
  const fresh = sorted[0];
  if (!fresh) return undefined;
  const sb = fresh.sb;
  const level = toLevel(sb.level);
  const named = decodeSetName(sb.setName);
  if (level === undefined || !named) return undefined;
  const members: MemberRecord[] = sorted.map(({ path, sb: m }) => {
    const r = sb.devRoles[m.devNumber];
    return { path, role: r === undefined || r >= ROLE_FAULTY ? undefined : r, events: m.events };
  });
  const staleMembers = members.filter((m) => m.events < sb.events).map((m) => m.path);
  const present = new Set(members.filter((m) => m.events === sb.events && m.role !== undefined).map((m) => m.role));
  const missingRoles: number[] = [];
  for (let role = 0; role < sb.raidDisks; role++) if (!present.has(role)) missingRoles.push(role);
  const chunkSize = sb.chunkSize * SECTOR;
  const memberSize = sb.size * SECTOR;
  return {
    id: sb.setUuid.toString('hex'),
    setName: sb.setName,
    nameKey: named.key,
    fsType: named.fsType,
    level,
    raidDisks: sb.raidDisks,
    chunkSize,
    bitmap: (sb.featureMap & FEATURE_BITMAP_OFFSET) !== 0 ? 'llbitmap' : 'none',
    memberSize,
    capacity: usableBytes(level, sb.raidDisks, chunkSize, memberSize),
    members,
    missingRoles,
    staleMembers,
    resyncPending: sb.resyncOffset !== RESYNC_NONE,
    ctime: sb.ctime,
  };
}

export class VolumeCatalog {
  constructor(private readonly pool: DiskPool) {}

  /**
   * Every volume on the pool, by id. Files whose superblock does not decode are skipped: a
   * member file that is half-created or damaged must not hide the other volumes.
   */
  async scan(): Promise<Map<string, VolumeRecord>> {
    const byUuid = new Map<string, Array<{ path: string; sb: Superblock }>>();
    for (const file of await this.pool.memberFiles()) {
      let sb: Superblock;
      try {
        sb = await readMemberSuperblock(file);
      } catch {
        continue;
      }
      const id = sb.setUuid.toString('hex');
      const list = byUuid.get(id) ?? [];
      list.push({ path: file, sb });
      byUuid.set(id, list);
    }
    const out = new Map<string, VolumeRecord>();
    for (const [id, found] of [...byUuid.entries()].sort(([a], [b]) => a.localeCompare(b))) {
      const v = assemble(found);
      if (v) out.set(id, v);
    }
    return out;
  }

  async get(id: string): Promise<VolumeRecord | undefined> {
    return (await this.scan()).get(id);
  }
}
