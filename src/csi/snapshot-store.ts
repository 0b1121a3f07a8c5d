// Where snapshots live: beside the members, on the same disks, because a reflink clone stays
// within one filesystem. Each member's copy is `<disk>/llraid-snapshots/<id>/member-<slot>.img`
// with `snapshot.json` (the record, the same on every disk) beside it; like volumes, snapshots
// need no database and survive plugin restarts. A snapshot is built in `<id>.part` directories
// and renamed into place disk by disk, so the scan never takes a half-made copy for one: a
// snapshot is complete when every disk its record names holds its directory. What a crash left
// half-made is removed when the plugin starts (removeLeftovers). A staged volume's snapshot is
// made in place instead (prepareInPlace): its engine fills the copies after the cut, and its
// record says `copying` until the plugin has seen them finished.

import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fsyncPath } from '../block/fsync-path.js';
import type { BitmapKind, CreatableLevel } from '../md/index.js';
import type { DiskPool } from './disk-pool.js';
import type { FsType } from './parameters.js';

const dirName = 'llraid-snapshots';
const recordName = 'snapshot.json';

/**
 * `<source volume id>-<node tag><8 hex random>`: the source is in the id, so a list by volume
 * needs no read, and so is the node that holds it (its tag, 8 hex digits of the SHA-256 of its
 * name), so a plugin of another node can forward changed-block tracking there
 * (snapshot-metadata-forwarder.ts). Ids made before the tag have 16 random digits: the same shape.
 */
export const snapshotIdPattern = /^([0-9a-f]{32})-([0-9a-f]{16})$/;

/** The 8 hex digits of a node's name that snapshot ids made on it carry. */
export function nodeTag(node: string): string {
  return createHash('sha256').update(node, 'utf8').digest('hex').slice(0, 8);
}

/** The node tag of a snapshot id; undefined for an id of another shape. */
export function snapshotNodeTag(id: string): string | undefined {
  return snapshotIdPattern.exec(id)?.[2]?.slice(0, 8);
}

/** A new id of a snapshot of `sourceVolumeId` made on `node`. */
export function newSnapshotId(sourceVolumeId: string, node: string): string {
  return `${sourceVolumeId}-${nodeTag(node)}${randomBytes(4).toString('hex')}`;
}

export interface SnapshotRecord {
  version: 1;
  id: string;
  /** The CreateSnapshot name (idempotency key), whole. */
  name: string;
  sourceVolumeId: string;
  createdAt: { seconds: number; nanos: number };
  /** The source volume's capacity at the instant: a volume from it has at least this. */
  sizeBytes: number;
  /** The source's geometry, which a volume made from the snapshot keeps. */
  level: CreatableLevel;
  raidDisks: number;
  chunkSize: number;
  bitmap: BitmapKind;
  fsType: FsType;
  memberSize: number;
  /** The disk directory of each member copy, by slot (the source's member files in order). */
  disks: string[];
  /** How long the source's new writes were held (0: it was not staged, nothing was paused). */
  pauseMs: number;
  /**
   * What changed-block tracking will start from: the llbitmap chunk size and how many chunks were
   * ever written at the instant. The chunk map itself is the bitmap inside the member copies
   * (md's writtenChunks reads it), which nothing writes after the snapshot.
   */
  written?: { chunkSize: number; chunks: number; writtenChunks: number };
  /**
   * Set while the copies of a staged volume's cut are being made by its engine (cut.ts): each is
   * `member-<slot>.img.cutting` until complete and durable, then renamed to its name; the record
   * loses this once the plugin has seen every copy finished (snapshot-controller.ts).
   */
  copying?: true;
}

export interface StoredSnapshot {
  record: SnapshotRecord;
  /** The member copies by slot. */
  members: string[];
  /** Every disk holds its copy (a crash between renames leaves some without), and it is not being copied. */
  complete: boolean;
  /** Every member copy is there under its name (for a cut: the engine finished them all). */
  present: boolean;
}

export class SnapshotStore {
  constructor(private readonly pool: DiskPool) {}

  dir(disk: string, id: string): string {
    return path.join(disk, dirName, id);
  }

  memberPath(disk: string, id: string, slot: number): string {
    return path.join(this.dir(disk, id), `member-${slot}.img`);
  }

  /** Every snapshot whose record is on some disk of the pool, by id, in id order. */
  async scan(): Promise<Map<string, StoredSnapshot>> {
    const seen = new Map<string, SnapshotRecord>();
    for (const disk of this.pool.disks) {
      const names = await fs.readdir(path.join(disk, dirName)).catch(() => [] as string[]);
      for (const id of names) {
        if (!snapshotIdPattern.test(id) || seen.has(id)) continue;
        const record = await this.readRecord(this.dir(disk, id));
        if (record) seen.set(id, record);
      }
    }
    const out = new Map<string, StoredSnapshot>();
    for (const id of [...seen.keys()].sort()) {
      const record = seen.get(id) as SnapshotRecord;
      const members = record.disks.map((d, slot) => this.memberPath(d, id, slot));
      const present = await Promise.all(members.map((m) => fs.stat(m).then((s) => s.isFile(), () => false)));
      const all = present.every((p) => p);
      out.set(id, { record, members, present: all, complete: all && record.copying !== true });
    }
    return out;
  }

  async get(id: string): Promise<StoredSnapshot | undefined> {
    if (!snapshotIdPattern.test(id)) return undefined;
    return (await this.scan()).get(id);
  }

  private async readRecord(dir: string): Promise<SnapshotRecord | undefined> {
    try {
      const r = JSON.parse(await fs.readFile(path.join(dir, recordName), 'utf8')) as SnapshotRecord;
      return r.version === 1 && Array.isArray(r.disks) ? r : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Makes a snapshot: `copy` fills the member paths it is given (by slot, in `.part`
   * directories); then the record goes beside each copy and each directory is renamed into
   * place. Whatever fails removes every directory of this id, so nothing half-made remains.
   * `finish` may add to the record from the finished copies (written chunks).
   */
  async create(
    record: SnapshotRecord,
    copy: (dsts: string[]) => Promise<{ pauseMs: number }>,
    finish: (members: string[]) => Promise<Partial<SnapshotRecord>>,
  ): Promise<StoredSnapshot> {
    const parts = record.disks.map((d) => `${this.dir(d, record.id)}.part`);
    const dsts = record.disks.map((_, slot) => path.join(parts[slot] as string, `member-${slot}.img`));
    /** One directory per disk (two slots on one disk share it). */
    const dirs = [...new Set(parts)];
    const records = dirs.map((p) => path.join(p, recordName));
    try {
      for (const p of dirs) await fs.mkdir(p, { recursive: true, mode: 0o700 });
      const { pauseMs } = await copy(dsts);
      const done = { ...record, pauseMs, ...(await finish(dsts)) };
      for (const r of records) await fs.writeFile(r, `${JSON.stringify(done, null, 1)}\n`, { mode: 0o600 });
      // ReadyToUse promises a snapshot that outlives a power cut: the copies (their extent maps:
      // the shared data went to disk before each clone) and records are durable before the
      // renames, and the renames before the call returns.
      await Promise.all([...dsts, ...records].map(fsyncPath));
      for (const p of dirs) await fs.rename(p, p.slice(0, -'.part'.length));
      await Promise.all(dirs.map((p) => fsyncPath(path.dirname(p))));
      return { record: done, members: record.disks.map((d, slot) => this.memberPath(d, record.id, slot)), present: true, complete: true };
    } catch (err) {
      await this.remove(record.id);
      throw err;
    }
  }

  /**
   * The directories of a snapshot whose copies an engine makes in place (a cut): each disk's
   * directory with `record` (copying) in it, durable, before the engine is asked for anything,
   * so a crash leaves a record that says what it was. → the member copies' paths by slot.
   */
  async prepareInPlace(record: SnapshotRecord & { copying: true }): Promise<string[]> {
    try {
      for (const d of new Set(record.disks)) await fs.mkdir(this.dir(d, record.id), { recursive: true, mode: 0o700 });
      await this.writeRecord(record);
      return record.disks.map((d, slot) => this.memberPath(d, record.id, slot));
    } catch (err) {
      await this.remove(record.id);
      throw err;
    }
  }

  /** Writes `record` on every disk it names, durably (a snapshot's directories exist). */
  async writeRecord(record: SnapshotRecord): Promise<void> {
    const dirs = [...new Set(record.disks.map((d) => this.dir(d, record.id)))];
    for (const dir of dirs) {
      const tmp = path.join(dir, `${recordName}.tmp`);
      await fs.writeFile(tmp, `${JSON.stringify(record, null, 1)}\n`, { mode: 0o600 });
      await fsyncPath(tmp);
      await fs.rename(tmp, path.join(dir, recordName));
      await fsyncPath(dir);
    }
    for (const d of new Set(record.disks)) await fsyncPath(path.join(d, dirName));
  }

  /**
   * Removes what a crash left half-made: snapshot `.part` directories and copies of volumes not
   * yet renamed (`llraid-<id>-<slot>.img.part`). Only for the plugin's start, when no copy is in
   * progress (only the plugin makes them). → what was removed.
   */
  async removeLeftovers(): Promise<string[]> {
    const removed: string[] = [];
    for (const disk of this.pool.disks) {
      for (const name of await fs.readdir(disk).catch(() => [] as string[])) {
        if (/^llraid-[0-9a-f]{32}-\d+\.img\.part$/.test(name)) removed.push(path.join(disk, name));
      }
      for (const name of await fs.readdir(path.join(disk, dirName)).catch(() => [] as string[])) {
        if (name.endsWith('.part')) removed.push(path.join(disk, dirName, name));
      }
    }
    for (const p of removed) await fs.rm(p, { recursive: true, force: true });
    return removed;
  }

  /** Removes the snapshot's directories (and any `.part` left) from every disk; idempotent. */
  async remove(id: string): Promise<void> {
    for (const disk of this.pool.disks) {
      await fs.rm(this.dir(disk, id), { recursive: true, force: true });
      await fs.rm(`${this.dir(disk, id)}.part`, { recursive: true, force: true });
    }
  }
}
