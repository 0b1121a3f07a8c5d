// Loading the bitmap from every member and trusting none of them alone (llbitmap.md A2, read_sb).
// Each in-sync member holds a copy of the bitmap; a copy can be damaged (a zeroed area reads as
// all Unwritten, which would make a recovery skip everything) or lag the others. So at assembly
// every copy is read: copies whose superblock is not a valid bitmap of this array are left out
// (and named), the freshest valid one decides the geometry and flags, and the chunk bytes are
// merged per chunk with mergeStates — a chunk the copies disagree on is given the state that
// owes the most (written beside never-written is NeedSync: resynced, never skipped).

import { MdError } from '../errors.js';
import type { BitmapHost, BitmapLoadReport, BitmapMember } from '../write-intent-bitmap.js';
import { readFromEveryMember } from './bitmap-io.js';
import { BITMAP_DATA_OFFSET, checkBitmapUuid, decodeBitmapSuper, type BitmapSuper } from './bitmap-superblock.js';
import { mergeStates } from './states.js';

export interface SuperCopies {
  /** Valid copies, freshest (highest events) first. */
  valid: { member: BitmapMember; sb: BitmapSuper }[];
  rejected: { name: string; reason: string }[];
}

/**
 * Every bitmap member's bitmap superblock, decoded and checked against this array's uuid.
 * Rejects with the first member's error when no copy is valid (as loading from one member did).
 */
export async function readBitmapSupers(host: BitmapHost, ioSize: number): Promise<SuperCopies> {
  const reads = await readFromEveryMember(host, 0, ioSize, 'superblock');
  const valid: SuperCopies['valid'] = [];
  const rejected: SuperCopies['rejected'] = [];
  let firstError: unknown;
  for (const { member, data } of reads) {
    try {
      const sb = decodeBitmapSuper(data, member.name);
      checkBitmapUuid(sb, host.uuid, member.name);
      valid.push({ member, sb });
    } catch (err) {
      if (!(err instanceof MdError)) throw err;
      firstError ??= err;
      rejected.push({ name: member.name, reason: err.message });
    }
  }
  if (valid.length === 0) throw firstError;
  // Stable: of equally fresh copies the first member's leads, as before the cross-check.
  valid.sort((a, b) => (a.sb.events === b.sb.events ? 0 : a.sb.events > b.sb.events ? -1 : 1));
  return { valid, rejected };
}

/** Whether two copies lay their chunks out alike, so their bytes can be merged chunk by chunk. */
export function sameGeometry(a: BitmapSuper, b: BitmapSuper): boolean {
  return a.chunksize === b.chunksize && a.sectorsReserved === b.sectorsReserved;
}

export async function readAreas(host: BitmapHost, members: readonly BitmapMember[], length: number): Promise<{ member: BitmapMember; data: Buffer }[]> {
  const all = await readFromEveryMember(host, 0, length, 'pages');
  return all.filter((a) => members.includes(a.member));
}

/**
 * The first area, with each of its `chunks` chunk bytes merged with the other areas' where they
 * differ. Copies that agree (the normal case) cost one comparison.
 */
export function crossCheck(areas: readonly { data: Buffer }[], chunks: number): { area: Buffer; disagreeing: number } {
  const area = areas[0]!.data;
  const start = BITMAP_DATA_OFFSET;
  const end = Math.min(area.length, start + chunks);
  let disagreeing = 0;
  const others = areas.slice(1).filter((o) => o.data.compare(area, start, end, start, end) !== 0);
  if (others.length === 0) return { area, disagreeing };
  const states = new Uint8Array(others.length + 1);
  for (let i = start; i < end; i++) {
    states[0] = area[i]!;
    let differs = false;
    for (let k = 0; k < others.length; k++) {
      states[k + 1] = others[k]!.data[i] ?? 0;
      if (states[k + 1] !== states[0]) differs = true;
    }
    if (!differs) continue;
    disagreeing++;
    area[i] = mergeStates(states);
  }
  return { area, disagreeing };
}

/** What a load found, as lines for people; none when every copy was used and they agreed. */
export function describeBitmapLoad(report: BitmapLoadReport | undefined): string[] {
  if (report === undefined) return [];
  const lines = report.rejected.map((r) => `bitmap copy on ${r.name} left out: ${r.reason}`);
  if (report.disagreeing > 0) {
    lines.push(`bitmap copies on ${report.members.join(', ')} disagree on ${report.disagreeing} chunks: each is resynced`);
  }
  return lines;
}
