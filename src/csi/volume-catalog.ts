// Rediscovers the node's volumes from the member superblocks in the disk pool: the only record
// of a volume is on its members (DESIGN.md §7), so after a plugin restart a scan gives back
// every volume's identity, geometry and health. Read-only: nothing here writes to a member.

import { readSuperblockFile, surveyArray, type BitmapKind, type CreatableLevel, type Superblock } from '../md/index.js';
import type { DiskPool } from './disk-pool.js';
import type { FsType } from './parameters.js';
import { isMarked } from './replica-marker.js';
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
  level: CreatableLevel;
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

/** One volume from the superblocks of its members (all of one set UUID), as md surveys them. */
function toRecord(found: Array<{ path: string; sb: Superblock }>): VolumeRecord | undefined {
  const survey = surveyArray(found.map((f) => ({ name: f.path, superblock: f.sb })));
  const named = survey && decodeSetName(survey.setName);
  if (!survey || !named) return undefined;
  return {
    id: survey.uuid.toString('hex'),
    setName: survey.setName,
    nameKey: named.key,
    fsType: named.fsType,
    level: survey.level,
    raidDisks: survey.raidDisks,
    chunkSize: survey.chunkSize,
    bitmap: survey.bitmap,
    memberSize: survey.memberSize,
    capacity: survey.arrayBytes,
    members: survey.members.map((m) => ({ path: m.name, role: m.role, events: m.events })),
    missingRoles: survey.missingRoles,
    staleMembers: survey.staleMembers,
    resyncPending: survey.resyncPending,
    ctime: survey.ctime,
  };
}

export class VolumeCatalog {
  constructor(private readonly pool: DiskPool) {}

  /**
   * Every node-local volume on the pool, by id. Files whose superblock does not decode are
   * skipped: a member file that is half-created or damaged must not hide the other volumes.
   * Members of replicated volumes (marked, replica-marker.ts) are not listed: this node holds
   * only some of their members, and their RaidVolume is their record.
   */
  async scan(): Promise<Map<string, VolumeRecord>> {
    const byUuid = new Map<string, Array<{ path: string; sb: Superblock }>>();
    for (const file of await this.pool.memberFiles()) {
      if (await isMarked(file)) continue;
      let sb: Superblock;
      try {
        sb = await readSuperblockFile(file);
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
      const v = toRecord(found);
      if (v) out.set(id, v);
    }
    return out;
  }

  async get(id: string): Promise<VolumeRecord | undefined> {
    return (await this.scan()).get(id);
  }
}
