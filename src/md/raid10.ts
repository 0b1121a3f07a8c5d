// raid10, near layout (md's default "n2"/"n3"): each chunk is stored on `nearCopies` consecutive
// members, rows wrapping around, so an odd member count works as md allows:
//
//   3 members, near=2:   role0  role1  role2
//                 row0:   C0     C0     C1
//                 row1:   C1     C2     C2
//
// md's raid10_find_phys with far_copies = 1. layout = near_copies | far_copies << 8.
// Sync space = array space, as md's resync (the bitmap covers array addresses).
// A request inside one chunk has one copy set and goes as raid1's does (mirror-io.ts), by the
// synchronous fast paths too; one across chunk boundaries is split, one copy set per chunk.

import type { WriteOptions, ZeroOptions } from '../block/block-device.js';
import { byteLength } from '../block/positional-io.js';
import { segments } from './chunk-segments.js';
import { MdError } from './errors.js';
import { fanOut, readCopies, type Label, readCopiesInto, readCopyNow, syncCopies, writeCopies, writeCopiesNow } from './mirror-io.js';
import { rangeOf, type MemberSet, type Personality, type SyncRange, type SyncWindowResult } from './personality.js';
import type { SyncMode } from './types.js';
import { ReadBalancer, type Copy } from './read-balance.js';
import { allSettledOrThrow } from './all-settled.js';

/** The md layout value of the near layout with `copies` copies. */
export function raid10NearLayout(copies: number): number {
  return copies | (1 << 8);
}

export class Raid10 implements Personality {
  readonly level = 10 as const;
  readonly parity = false;
  readonly layout: number;
  readonly raidDisks: number;
  readonly chunkSize: number;
  readonly nearCopies: number;
  readonly arraySize: number;
  readonly syncSize: number;
  private readonly balancer: ReadBalancer;

  constructor(raidDisks: number, layout: number, chunkSize: number, memberSize: number) {
    const near = layout & 0xff;
    const far = (layout >> 8) & 0xff;
    if (far !== 1 || layout >> 16 !== 0) {
      throw new MdError('ENOTSUP', `raid10: only the near layout is supported (far_copies 1), found layout 0x${layout.toString(16)}`);
    }
    if (near < 2 || near > raidDisks) {
      throw new MdError('EINVAL', `raid10: near copies must be between 2 and the member count ${raidDisks}, found ${near}`);
    }
    if (chunkSize < 4096 || (chunkSize & (chunkSize - 1)) !== 0) {
      throw new MdError('EINVAL', `raid10: chunk size must be a power of two of at least 4096 bytes, found ${chunkSize}`);
    }
    this.layout = layout;
    this.raidDisks = raidDisks;
    this.chunkSize = chunkSize;
    this.nearCopies = near;
    // raid10_size: member chunks × raid_disks / near_copies, whole chunks only.
    this.arraySize = Math.floor((Math.floor(memberSize / chunkSize) * raidDisks) / near) * chunkSize;
    this.syncSize = this.arraySize;
    this.balancer = new ReadBalancer(raidDisks);
  }

  /** Where the copies of array chunk `chunk` live (member byte offsets of the chunk start + inChunk). */
  copiesOf(chunk: number, inChunk: number): Copy[] {
    const stripe = chunk * this.nearCopies;
    let role = stripe % this.raidDisks;
    let row = Math.floor(stripe / this.raidDisks);
    const out: Copy[] = new Array<Copy>(this.nearCopies);
    for (let k = 0; k < this.nearCopies; k++) {
      out[k] = { role, offset: row * this.chunkSize + inChunk };
      role++;
      if (role >= this.raidDisks) {
        role = 0;
        row++;
      }
    }
    return out;
  }

  syncRange(offset: number, length: number, into?: SyncRange): SyncRange {
    return rangeOf(offset, length, into);
  }

  /** Rows entirely below the first stripe of the chunk at `syncOffset` are recovered on every member. */
  memberOffsetOfSync(syncOffset: number): number {
    const c = Math.floor(syncOffset / this.chunkSize);
    return Math.floor((c * this.nearCopies) / this.raidDisks) * this.chunkSize;
  }

  /** Chunks whose every copy lies in rows below `memberOffset`. */
  syncOffsetOfMember(memberOffset: number): number {
    const rows = Math.floor(memberOffset / this.chunkSize);
    return Math.min(this.syncSize, Math.floor((rows * this.raidDisks) / this.nearCopies) * this.chunkSize);
  }

  canRun(working: readonly boolean[]): boolean {
    // The role sets of chunks repeat with period raid_disks (chunk*near mod n).
    for (let c = 0; c < this.raidDisks; c++) {
      if (!this.copiesOf(c, 0).some((copy) => working[copy.role] === true)) return false;
    }
    return true;
  }

  isDegraded(working: readonly boolean[]): boolean {
    for (let r = 0; r < this.raidDisks; r++) if (working[r] !== true) return true;
    return false;
  }

  private what(op: string, offset: number, length: number): Label {
    return () => `raid10: ${op} [${offset}, ${offset + length})`;
  }

  /**
   * The copies of [offset, offset+length) when it lies inside one chunk (the common small
   * request: one copy set, done as raid1 does its whole range); undefined when it crosses a
   * chunk boundary.
   */
  private copiesInOneChunk(offset: number, length: number): Copy[] | undefined {
    const chunk = Math.floor(offset / this.chunkSize);
    const inChunk = offset - chunk * this.chunkSize;
    return inChunk + length <= this.chunkSize ? this.copiesOf(chunk, inChunk) : undefined;
  }

  read(members: MemberSet, offset: number, length: number): Promise<Buffer> {
    const copies = this.copiesInOneChunk(offset, length);
    if (copies !== undefined) return readCopies(members, this.balancer, copies, length, this.what('read', offset, length));
    // Every byte is written by the member reads that all resolved, or the buffer is never returned.
    const out = Buffer.allocUnsafe(length);
    return this.readAcross(members, offset, out).then(() => out);
  }

  readInto(members: MemberSet, offset: number, out: Buffer): Promise<void> {
    const copies = this.copiesInOneChunk(offset, out.length);
    if (copies !== undefined) return readCopiesInto(members, this.balancer, copies, out, this.what('read', offset, out.length));
    return this.readAcross(members, offset, out);
  }

  /** A read across chunks: each chunk's part read from its copies straight into its place in `out`. */
  private async readAcross(members: MemberSet, offset: number, out: Buffer): Promise<void> {
    await allSettledOrThrow(segments(offset, out.length, this.chunkSize).map((s) =>
      readCopiesInto(members, this.balancer, this.copiesOf(s.chunk, s.inChunk), out.subarray(s.requestOffset, s.requestOffset + s.length),
        this.what('read', offset, out.length))));
  }

  /** read() inside one chunk done now (readCopyNow); a read across chunks is left to read(). */
  readNow(members: MemberSet, offset: number, out: Buffer): boolean {
    const copies = this.copiesInOneChunk(offset, out.length);
    return copies !== undefined && readCopyNow(members, this.balancer, copies, out);
  }

  write(members: MemberSet, offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    const copies = this.copiesInOneChunk(offset, data.length);
    if (copies !== undefined) return writeCopies(members, copies, data, options, this.what('write', offset, data.length));
    return this.writeAcross(members, offset, data, options);
  }

  private async writeAcross(members: MemberSet, offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    await allSettledOrThrow(segments(offset, data.length, this.chunkSize).map((s) =>
      writeCopies(members, this.copiesOf(s.chunk, s.inChunk), data.subarray(s.requestOffset, s.requestOffset + s.length), options,
        this.what('write', offset, data.length))));
  }

  /** write() inside one chunk done now on its every copy (writeCopiesNow); false leaves it to write(). */
  writeNow(members: MemberSet, offset: number, parts: readonly Uint8Array[]): boolean {
    const copies = this.copiesInOneChunk(offset, byteLength(parts));
    return copies !== undefined && writeCopiesNow(members, copies, parts);
  }

  async discard(members: MemberSet, offset: number, length: number): Promise<void> {
    await Promise.all(segments(offset, length, this.chunkSize).map((s) =>
      fanOut(members, this.copiesOf(s.chunk, s.inChunk), this.what('discard', offset, length),
        (c) => members.discard(c.role, c.offset, s.length))));
  }

  async writeZeroes(members: MemberSet, offset: number, length: number, options?: ZeroOptions): Promise<void> {
    await Promise.all(segments(offset, length, this.chunkSize).map((s) =>
      fanOut(members, this.copiesOf(s.chunk, s.inChunk), this.what('write zeroes', offset, length),
        (c) => members.writeZeroes(c.role, c.offset, s.length, options))));
  }

  async syncWindow(members: MemberSet, mode: SyncMode, offset: number, length: number): Promise<SyncWindowResult> {
    const total: SyncWindowResult = { mismatches: 0, bytesWritten: 0 };
    for (const s of segments(offset, length, this.chunkSize)) {
      const r = await syncCopies(members, this.balancer, mode, this.copiesOf(s.chunk, s.inChunk), s.length, this.what(mode, offset, length));
      total.mismatches += r.mismatches;
      total.bytesWritten += r.bytesWritten;
    }
    return total;
  }
}
