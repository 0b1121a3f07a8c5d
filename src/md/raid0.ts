// raid0: chunks striped round-robin over all members, no redundancy, no sync space and no bitmap.
// Equal member sizes give md's single zone: chunk c lives on role c % n at member chunk c / n.
// Any member failure fails the request (and the array cannot run without every member).

import type { WriteOptions, ZeroOptions } from '../block/block-device.js';
import { segments, type Segment } from './chunk-segments.js';
import { MdError } from './errors.js';
import type { MemberSet, Personality, SyncRange, SyncWindowResult } from './personality.js';
import { allSettledOrThrow } from './all-settled.js';

export class Raid0 implements Personality {
  readonly level = 0 as const;
  readonly layout = 0;
  readonly parity = false;
  readonly raidDisks: number;
  readonly chunkSize: number;
  readonly arraySize: number;
  readonly syncSize = 0;

  constructor(raidDisks: number, chunkSize: number, memberSize: number) {
    if (raidDisks < 1) throw new MdError('EINVAL', `raid0: expected at least 1 member, found ${raidDisks}`);
    if (chunkSize < 4096 || (chunkSize & (chunkSize - 1)) !== 0) {
      throw new MdError('EINVAL', `raid0: chunk size must be a power of two of at least 4096 bytes, found ${chunkSize}`);
    }
    this.raidDisks = raidDisks;
    this.chunkSize = chunkSize;
    this.arraySize = Math.floor(memberSize / chunkSize) * chunkSize * raidDisks;
  }

  private place(s: Segment): { role: number; offset: number } {
    return { role: s.chunk % this.raidDisks, offset: Math.floor(s.chunk / this.raidDisks) * this.chunkSize + s.inChunk };
  }

  syncRange(): SyncRange {
    return { offset: 0, length: 0 };
  }

  canRun(working: readonly boolean[]): boolean {
    return working.length >= this.raidDisks && working.slice(0, this.raidDisks).every((w) => w);
  }

  isDegraded(): boolean {
    return false;
  }

  /** Runs `op` on every chunk's segment; settles only once all of them have (all-settled.ts). */
  private async each(members: MemberSet, offset: number, length: number, what: string, op: (role: number, off: number, s: Segment) => Promise<void>): Promise<void> {
    await allSettledOrThrow(segments(offset, length, this.chunkSize).map(async (s) => {
      const { role, offset: off } = this.place(s);
      if (members.state(role) !== 'in_sync') {
        throw new MdError('EIO', `raid0: ${what} [${offset}, ${offset + length}): member role ${role} is missing`);
      }
      try {
        await op(role, off, s);
      } catch (err) {
        if (members.state(role) === 'missing') {
          throw new MdError('EIO', `raid0: ${what} [${offset}, ${offset + length}) failed on role ${role}`, { cause: err });
        }
        throw err;
      }
    }));
  }

  async read(members: MemberSet, offset: number, length: number): Promise<Buffer> {
    // Every byte is written by the member reads that all resolved, or the buffer is never returned.
    const out = Buffer.allocUnsafe(length);
    await this.readInto(members, offset, out);
    return out;
  }

  /** read() into `out`: each chunk's part read from its member straight into its place. */
  async readInto(members: MemberSet, offset: number, out: Buffer): Promise<void> {
    await this.each(members, offset, out.length, 'read', (role, off, s) =>
      members.readInto(role, off, out.subarray(s.requestOffset, s.requestOffset + s.length)));
  }

  /**
   * A read inside one chunk done now by its member's synchronous read (MemberSet.readNow); false
   * for a read across chunks, or when the member cannot now (or failed: then it is failing, and
   * the caller's read() meets that).
   */
  readNow(members: MemberSet, offset: number, out: Buffer): boolean {
    if (members.readNow === undefined) return false;
    const chunk = Math.floor(offset / this.chunkSize);
    const inChunk = offset - chunk * this.chunkSize;
    if (inChunk + out.length > this.chunkSize) return false;
    const { role, offset: off } = this.place({ chunk, inChunk, length: out.length, requestOffset: 0 });
    return members.state(role) === 'in_sync' && members.readNow(role, off, out);
  }

  write(members: MemberSet, offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    return this.each(members, offset, data.length, 'write', (role, off, s) =>
      members.write(role, off, data.subarray(s.requestOffset, s.requestOffset + s.length), options));
  }

  discard(members: MemberSet, offset: number, length: number): Promise<void> {
    return this.each(members, offset, length, 'discard', (role, off, s) => members.discard(role, off, s.length));
  }

  writeZeroes(members: MemberSet, offset: number, length: number, options?: ZeroOptions): Promise<void> {
    return this.each(members, offset, length, 'write zeroes', (role, off, s) => members.writeZeroes(role, off, s.length, options));
  }

  async syncWindow(): Promise<SyncWindowResult> {
    throw new MdError('ENOTSUP', 'raid0: has no redundancy to sync or check');
  }
}
