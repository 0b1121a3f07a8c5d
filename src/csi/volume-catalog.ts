// Rediscovers the node's volumes from the member superblocks in the disk pool: the only record
// of a volume is on its members (DESIGN.md §7), so after a plugin restart a scan gives back
// every volume's identity, geometry and health. Read-only: nothing here writes to a member.

import { describeError } from '../common/trace.js';
import { MdError, readSuperblockFile, surveyArray, type BitmapKind, type CreatableLevel, type Superblock } from '../md/index.js';
import { volumeIdOfMemberFile, type DiskPool } from './disk-pool.js';
import { CsiError } from './errors.js';
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

/** A member file a scan found but could not read as an md member, and why. */
export interface UnreadableMember {
  path: string;
  /** The volume id its name gives (`llraid-<id>-<slot>.img`). */
  volumeId: string;
  reason: string;
}

/**
 * How long a scan waits before reading a superblock that did not decode a second time. An
 * engine rewrites its members' superblocks in place (events, clean/active), and a buffered read
 * is not ordered against a write of the same page on every filesystem (ext4's are not): a read
 * can see half of each. A damaged superblock reads the same twice; a torn read does not.
 */
const REREAD_DELAY_MS = 20;

export class VolumeCatalog {
  constructor(
    private readonly pool: DiskPool,
    /** How a member file's superblock is read (a test's stand-in may fail it once). */
    private readonly readSuperblock: (file: string) => Promise<Superblock> = readSuperblockFile,
  ) {}

  /**
   * Every node-local volume on the pool, by id, and the member files that do not read as md
   * members (half-created or damaged): one such file must not hide the other volumes, nor make
   * its own volume pass for one that does not exist (get()). A file removed between the listing
   * and its read is neither. Members of replicated volumes (marked, replica-marker.ts) are not
   * listed: this node holds only some of their members, and their RaidVolume is their record.
   */
  async survey(): Promise<{ volumes: Map<string, VolumeRecord>; unreadable: UnreadableMember[] }> {
    const byUuid = new Map<string, Array<{ path: string; sb: Superblock }>>();
    const unreadable: UnreadableMember[] = [];
    for (const file of await this.pool.memberFiles()) {
      if (await isMarked(file)) continue;
      const read = await readMember(file, this.readSuperblock);
      if (read === 'gone') continue;
      if (typeof read === 'string') {
        unreadable.push({ path: file, volumeId: volumeIdOfMemberFile(file) ?? '', reason: read });
        continue;
      }
      const id = read.setUuid.toString('hex');
      const list = byUuid.get(id) ?? [];
      list.push({ path: file, sb: read });
      byUuid.set(id, list);
    }
    const volumes = new Map<string, VolumeRecord>();
    for (const [id, found] of [...byUuid.entries()].sort(([a], [b]) => a.localeCompare(b))) {
      const v = toRecord(found);
      if (v) volumes.set(id, v);
    }
    return { volumes, unreadable };
  }

  /** Every node-local volume on the pool, by id (survey() without the unreadable files). */
  async scan(): Promise<Map<string, VolumeRecord>> {
    return (await this.survey()).volumes;
  }

  /** Volume `id` as far as its member files read, and those of its files that do not read. */
  async lookup(id: string): Promise<{ volume: VolumeRecord | undefined; unreadable: UnreadableMember[] }> {
    const { volumes, unreadable } = await this.survey();
    return { volume: volumes.get(id), unreadable: unreadable.filter((u) => u.volumeId === id) };
  }

  /**
   * The volume, or undefined when the pool holds no member file of it. A volume whose member
   * files are there but none reads as a member is UNAVAILABLE, with why: "does not exist" would
   * be false, and would let a DeleteVolume succeed with its files left behind.
   */
  async get(id: string): Promise<VolumeRecord | undefined> {
    const { volume, unreadable: files } = await this.lookup(id);
    if (volume) return volume;
    if (files.length > 0) {
      throw new CsiError('UNAVAILABLE', `volume ${id}: its member files do not read as md members: ${files.map((f) => `${f.path}: ${f.reason}`).join('; ')}`);
    }
    return undefined;
  }
}

/**
 * A member file's superblock; 'gone' when the file was removed since the listing; else why it
 * does not read (a superblock that does not decode is read once more first: REREAD_DELAY_MS).
 */
async function readMember(file: string, read: (file: string) => Promise<Superblock>): Promise<Superblock | 'gone' | string> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await read(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
      if (!(err instanceof MdError) || attempt > 0) return describeError(err);
    }
    await new Promise((r) => setTimeout(r, REREAD_DELAY_MS));
  }
}
