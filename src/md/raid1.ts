// raid1: every member holds the whole array at the same offset. Reads go to one in-sync copy
// (read-balanced), writes fan out to every member in parallel, and a write succeeds while at
// least one in-sync copy took it. Sync space = array space.

import type { WriteOptions, ZeroOptions } from '../block/block-device.js';
import { MdError } from './errors.js';
import { fanOut, readCopies, readCopiesInto, readCopyNow, syncCopies, writeCopies, writeCopiesNow } from './mirror-io.js';
import { rangeOf, type MemberSet, type Personality, type SyncRange, type SyncWindowResult } from './personality.js';
import type { SyncMode } from './types.js';
import { ReadBalancer, type Copy } from './read-balance.js';

/** The array size is kept a multiple of 4 KiB so that any block size up to 4096 divides it. */
const ALIGN = 4096;

export class Raid1 implements Personality {
  readonly level = 1 as const;
  readonly layout = 0;
  readonly chunkSize = 0;
  readonly parity = false;
  readonly raidDisks: number;
  readonly arraySize: number;
  readonly syncSize: number;
  private readonly balancer: ReadBalancer;
  private readonly nowCopies: Copy[];

  constructor(raidDisks: number, memberSize: number) {
    if (raidDisks < 1) throw new MdError('EINVAL', `raid1: expected at least 1 member, found ${raidDisks}`);
    this.raidDisks = raidDisks;
    this.arraySize = Math.floor(memberSize / ALIGN) * ALIGN;
    this.syncSize = this.arraySize;
    this.balancer = new ReadBalancer(raidDisks);
    this.nowCopies = this.copies(0);
  }

  private copies(offset: number): Copy[] {
    const out: Copy[] = new Array<Copy>(this.raidDisks);
    for (let role = 0; role < this.raidDisks; role++) out[role] = { role, offset };
    return out;
  }

  /**
   * copies() for readNow and writeNow, in one array reused by every call: they are done before
   * they return and keep none of it, and a fresh array of copies was most of what a 4 KiB
   * request left for V8 to collect.
   */
  private copiesNow(offset: number): Copy[] {
    for (const c of this.nowCopies) c.offset = offset;
    return this.nowCopies;
  }

  syncRange(offset: number, length: number, into?: SyncRange): SyncRange {
    return rangeOf(offset, length, into);
  }

  memberOffsetOfSync(syncOffset: number): number {
    return syncOffset;
  }

  syncOffsetOfMember(memberOffset: number): number {
    return Math.min(memberOffset, this.syncSize);
  }

  canRun(working: readonly boolean[]): boolean {
    return working.some((w) => w);
  }

  isDegraded(working: readonly boolean[]): boolean {
    return working.slice(0, this.raidDisks).some((w) => !w) || working.length < this.raidDisks;
  }

  read(members: MemberSet, offset: number, length: number): Promise<Buffer> {
    return readCopies(members, this.balancer, this.copies(offset), length, () => `raid1: read [${offset}, ${offset + length})`);
  }

  readInto(members: MemberSet, offset: number, out: Buffer): Promise<void> {
    return readCopiesInto(members, this.balancer, this.copies(offset), out, () => `raid1: read [${offset}, ${offset + out.length})`);
  }

  /** read() done now from the copy it would try first (readCopyNow). */
  readNow(members: MemberSet, offset: number, out: Buffer): boolean {
    return readCopyNow(members, this.balancer, this.copiesNow(offset), out);
  }

  /** write() done now on every member (writeCopiesNow); false leaves it to write(). */
  writeNow(members: MemberSet, offset: number, parts: readonly Uint8Array[]): boolean {
    return writeCopiesNow(members, this.copiesNow(offset), parts);
  }

  write(members: MemberSet, offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    return writeCopies(members, this.copies(offset), data, options, () => `raid1: write [${offset}, ${offset + data.length})`);
  }

  discard(members: MemberSet, offset: number, length: number): Promise<void> {
    return fanOut(members, this.copies(offset), () => `raid1: discard [${offset}, ${offset + length})`,
      (c) => members.discard(c.role, c.offset, length));
  }

  writeZeroes(members: MemberSet, offset: number, length: number, options?: ZeroOptions): Promise<void> {
    return fanOut(members, this.copies(offset), () => `raid1: write zeroes [${offset}, ${offset + length})`,
      (c) => members.writeZeroes(c.role, c.offset, length, options));
  }

  syncWindow(members: MemberSet, mode: SyncMode, offset: number, length: number): Promise<SyncWindowResult> {
    return syncCopies(members, this.balancer, mode, this.copies(offset), length, () => `raid1: ${mode} [${offset}, ${offset + length})`);
  }
}
