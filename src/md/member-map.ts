// From member bytes back to array bytes: which ranges of the array are held by given ranges of
// its members. Changed-block tracking needs it: the filesystem tells which bytes of each member
// file changed between two snapshots (block/file-extents.ts), the client asks in array bytes.
//
// Rather than invert every level's layout by hand, the array's own personality is asked where it
// would read each piece of the array from, through a member set that records the reads instead of
// making them. Each piece is one stripe chunk (or, for raid1, a fixed span), so it lies in one
// contiguous range of the member that serves it and maps back linearly. One copy is enough: every
// in-sync copy of a byte receives the same writes. A piece the personality serves from more than
// one member (a degraded parity row, reconstructed) is reported whole when any of those members
// changed there: never a miss, only looser. A parity personality keeps the rows it reconstructed
// in its stripe cache and answers the next probe of the row without a read; such a probe is asked
// again of a fresh personality.

import type { ByteRange } from '../block/file-extents.js';
import { createPersonality, type Geometry } from './levels.js';
import type { MemberSet, Personality, RoleState } from './personality.js';

/** Pieces of a raid1 (no chunk) asked about at once. */
const MIRROR_SPAN = 1024 * 1024;
/** The smallest read the recorder is asked: md's sector. */
const PROBE = 512;

interface RecordedRead {
  role: number;
  offset: number;
}

/** A member set that answers reads with zeros and remembers where they went. */
class ReadRecorder implements MemberSet {
  readonly blockSize = PROBE;
  readonly reads: RecordedRead[] = [];

  constructor(readonly raidDisks: number, readonly memberSize: number, private readonly working: readonly boolean[]) {}

  state(role: number): RoleState {
    return this.working[role] === true ? 'in_sync' : 'missing';
  }

  read(role: number, offset: number, length: number): Promise<Buffer> {
    this.reads.push({ role, offset });
    return Promise.resolve(Buffer.alloc(length));
  }

  readInto(role: number, offset: number, out: Buffer): Promise<void> {
    this.reads.push({ role, offset });
    out.fill(0);
    return Promise.resolve();
  }

  write(): Promise<void> {
    return Promise.reject(new Error('member-map: a mapping never writes'));
  }

  discard(): Promise<void> {
    return this.write();
  }

  writeZeroes(): Promise<void> {
    return this.write();
  }
}

/** The part of `ranges` (sorted, disjoint) inside [from, to), clipped. */
function overlapping(ranges: readonly ByteRange[], from: number, to: number): ByteRange[] {
  let lo = 0;
  let hi = ranges.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const r = ranges[mid]!;
    if (r.offset + r.length <= from) lo = mid + 1;
    else hi = mid;
  }
  const out: ByteRange[] = [];
  for (let i = lo; i < ranges.length && ranges[i]!.offset < to; i++) {
    const r = ranges[i]!;
    const a = Math.max(from, r.offset);
    const b = Math.min(to, r.offset + r.length);
    if (b > a) out.push({ offset: a, length: b - a });
  }
  return out;
}

function append(out: ByteRange[], offset: number, length: number): void {
  const prev = out[out.length - 1];
  if (prev && prev.offset + prev.length === offset) prev.length += length;
  else out.push({ offset, length });
}

/** The reads `personality` makes to serve the first sector at `at`. */
async function probe(personality: Personality, g: Geometry, working: readonly boolean[], at: number): Promise<RecordedRead[]> {
  const recorder = new ReadRecorder(g.raidDisks, g.memberSize, working);
  await personality.read(recorder, at, PROBE);
  return recorder.reads;
}

/**
 * The array ranges, in order and merged where they touch, held by `memberRanges` (per role: sorted,
 * disjoint byte ranges of that member's data area) in an array of geometry `g`. `working` says
 * which roles held current data.
 */
export async function arrayRangesOf(
  g: Geometry, working: readonly boolean[], memberRanges: ReadonlyMap<number, readonly ByteRange[]>,
): Promise<ByteRange[]> {
  const out: ByteRange[] = [];
  let personality = createPersonality(g);
  const step = personality.chunkSize > 0 ? personality.chunkSize : MIRROR_SPAN;
  for (let at = 0; at < personality.arraySize; at += step) {
    const length = Math.min(step, personality.arraySize - at);
    let reads = await probe(personality, g, working, at);
    if (reads.length === 0) {
      personality = createPersonality(g);
      reads = await probe(personality, g, working, at);
    }
    if (reads.length === 1) {
      const { role, offset } = reads[0]!;
      for (const r of overlapping(memberRanges.get(role) ?? [], offset, offset + length)) append(out, at + (r.offset - offset), r.length);
    } else if (reads.length === 0 || reads.some(({ role, offset }) => overlapping(memberRanges.get(role) ?? [], offset, offset + length).length > 0)) {
      append(out, at, length);
    }
  }
  return out;
}
