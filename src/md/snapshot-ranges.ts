// Changed-block tracking for arrays whose snapshots are reflink clones of their member files: the
// array ranges a snapshot holds data in, and the array ranges that differ between two snapshots of
// one array. Both come from the filesystem's extent maps (block/file-extents.ts: a clone shares
// every block until one side is written, and a write never lands in a shared block) turned into
// array bytes by the array's own layout (member-map.ts). Nothing is recorded on the write path, so
// there is nothing of ours to lose in a crash: the filesystem's journal keeps the extent maps.

import { closeSync, openSync } from 'node:fs';
import { dataRanges, differingRanges, fileExtents, type ByteRange, type FileExtent } from '../block/file-extents.js';
import { readSuperblockFile, surveyArray } from './array-survey.js';
import { MdError } from './errors.js';
import type { Geometry } from './levels.js';
import { arrayRangesOf } from './member-map.js';
import { SECTOR } from './superblock.js';

/** A snapshot's member files by role, as the array would open them. */
export interface SnapshotMembers {
  geometry: Geometry;
  /** Bytes before each member's data area (md's data_offset). */
  dataOffset: number;
  /** By role; undefined where the member was missing or out of sync when the snapshot was taken. */
  paths: readonly (string | undefined)[];
}

/**
 * A snapshot's members as their superblocks describe them (geometry, data offset, which member
 * holds which role in sync), read without opening anything for writing. Members a survey finds
 * stale or faulty are left out: they did not receive every write.
 */
export async function readSnapshotMembers(files: readonly string[]): Promise<SnapshotMembers> {
  const found = await Promise.all(files.map(async (name) => ({ name, superblock: await readSuperblockFile(name) })));
  const survey = surveyArray(found);
  if (!survey) throw new MdError('EINVAL', `${files.join(', ')}: not an array of a level llraid builds`);
  const offsets = new Set(found.map((f) => f.superblock.dataOffset));
  if (offsets.size !== 1) throw new MdError('EBADMETA', `${files.join(', ')}: members disagree on the data offset`);
  const paths: (string | undefined)[] = Array.from({ length: survey.raidDisks }, () => undefined);
  for (const m of survey.members) if (m.standing === 'in_sync' && m.role !== undefined) paths[m.role] = m.name;
  return {
    geometry: { level: survey.level, raidDisks: survey.raidDisks, layout: survey.layout, chunkSize: survey.chunkSize, memberSize: survey.memberSize },
    dataOffset: [...offsets][0]! * SECTOR,
    paths,
  };
}

async function extentsOf(path: string, from: number, length: number): Promise<FileExtent[]> {
  const fd = openSync(path, 'r');
  try {
    return await fileExtents(fd, from, length);
  } finally {
    closeSync(fd);
  }
}

/** Ranges of a member file's data area, shifted to data-area offsets. */
function toDataArea(ranges: readonly ByteRange[], dataOffset: number): ByteRange[] {
  return ranges.map((r) => ({ offset: r.offset - dataOffset, length: r.length }));
}

/** The array ranges that hold data in a snapshot: written at some time, not holes. */
export async function allocatedRanges(s: SnapshotMembers): Promise<ByteRange[]> {
  const { dataOffset, geometry: g } = s;
  const perRole = new Map<number, ByteRange[]>();
  for (const [role, path] of s.paths.entries()) {
    if (path === undefined) continue;
    const extents = await extentsOf(path, dataOffset, g.memberSize);
    perRole.set(role, toDataArea(dataRanges(extents, dataOffset, dataOffset + g.memberSize), dataOffset));
  }
  return arrayRangesOf(g, s.paths.map((p) => p !== undefined), perRole);
}

/**
 * The array ranges whose bytes may differ between two snapshots of one array (`target` taken after
 * `base`; it may be larger, after an expansion): a superset of the ranges that do, tight to the
 * filesystem's block. Refuses snapshots of different layouts.
 */
export async function changedRanges(base: SnapshotMembers, target: SnapshotMembers): Promise<ByteRange[]> {
  const [b, t] = [base.geometry, target.geometry];
  if (b.level !== t.level || b.raidDisks !== t.raidDisks || b.layout !== t.layout || b.chunkSize !== t.chunkSize || base.dataOffset !== target.dataOffset) {
    throw new MdError('EINVAL', `the two snapshots do not have one array's layout (raid${b.level} of ${b.raidDisks}, chunk ${b.chunkSize} against raid${t.level} of ${t.raidDisks}, chunk ${t.chunkSize})`);
  }
  if (t.memberSize < b.memberSize) throw new MdError('EINVAL', 'the target snapshot is smaller than the base: expected the later snapshot as the target');
  const { dataOffset } = target;
  const end = dataOffset + t.memberSize;
  const perRole = new Map<number, ByteRange[]>();
  const working = target.paths.map((p, role) => p !== undefined && base.paths[role] !== undefined);
  for (const [role, ok] of working.entries()) {
    if (!ok) continue;
    const [be, te] = [await extentsOf(base.paths[role]!, dataOffset, t.memberSize), await extentsOf(target.paths[role]!, dataOffset, t.memberSize)];
    perRole.set(role, toDataArea(differingRanges(be, te, dataOffset, end), dataOffset));
  }
  return arrayRangesOf(t, working, perRole);
}

/** Bytes of `a` (sorted, disjoint ranges) outside `b` (likewise). */
export function bytesOutside(a: readonly ByteRange[], b: readonly ByteRange[]): number {
  let n = 0;
  let j = 0;
  for (const r of a) {
    let at = r.offset;
    const end = r.offset + r.length;
    while (j < b.length && b[j]!.offset + b[j]!.length <= at) j++;
    for (let k = j; k < b.length && b[k]!.offset < end; k++) {
      const cut = b[k]!;
      if (cut.offset > at) n += cut.offset - at;
      at = Math.max(at, cut.offset + cut.length);
    }
    if (end > at) n += end - at;
  }
  return n;
}

/**
 * Bytes of the array that a snapshot holds data in and still shares with the live volume (the
 * rest of its data is what the snapshot costs on disk): its allocated ranges less those where
 * the live members' extents have moved since.
 */
export async function sharedBytes(snapshot: SnapshotMembers, live: SnapshotMembers): Promise<number> {
  return bytesOutside(await allocatedRanges(snapshot), await changedRanges(snapshot, live));
}
