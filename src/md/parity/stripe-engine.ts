// The raid5/raid6 data path: reads (rebuilt from parity when a member is missing), parity writes
// by read-modify-write or reconstruct-write, and one sync step (resync, recovery, check, repair)
// over a range of a row. parity-personality.ts wraps it as md's raid5 and raid6 personalities.
//
// Every write, sync step and rebuilding read handles its row under the row's stripe lock, and the
// member contents it reads or writes pass through the stripe cache. Reads that rebuild nothing
// take neither: the direct read (md's chunk_aligned_read: inside one chunk of an in-sync data
// member whose row no step holds) goes to that member alone, and a read across chunks whose data
// members are in sync reads each of them straight into the caller's buffer. A small write into a
// row no step holds is done now (writeNow, on this thread, with the members' synchronous reads and
// writes: a read-modify-write, or a reconstruct-write where that reads less or parity is not
// valid yet), needing no lock: nothing else runs meanwhile. A member read that
// fails means the array has just failed that member (MemberSet invariant), so the step is planned
// again against the new member states.

import { SECTOR } from '../../block/block-device.js';
import { MAX_INLINE_BYTES, byteLength } from '../../block/positional-io.js';
import type { WriteOptions, ZeroOptions } from '../../block/block-device.js';
import { MdError } from '../errors.js';
import type { ParityLayout, StripeMap } from './layout.js';
import { recoverStripe } from './recovery.js';
import { computeP, computePQ, mulXorInto, xorInto } from './syndrome.js';
import { gfExp2 } from './gf256.js';
import type { MemberSet, SyncWindowResult } from '../personality.js';
import type { SyncMode } from '../types.js';
import { ScratchBlocks } from './scratch-blocks.js';
import { allSettledOrThrow } from '../all-settled.js';
import { StripeCache } from './stripe-cache.js';
import { StripeLocks } from './stripe-lock.js';
import { columnSegments, sliceSegment, splitRows, type ColumnSegment, type RowPiece } from './stripe-plan.js';

/** Where an array offset lies (ParityLayout.locate). */
type Located = ReturnType<ParityLayout['locate']>;

/** One member write of a write done now. */
interface NowWrite {
  role: number;
  offset: number;
  parts: readonly Uint8Array[];
}

/** A row's blocks at some columns, rebuilt where missing (in scratch blocks of the caller's). */
interface RebuiltRow {
  data: Uint8Array[];
  p: Uint8Array;
  q: Uint8Array | undefined;
}

/** One column segment of a row being written (#writeSegmentOnce), and its scratch blocks. */
interface SegmentStep {
  members: MemberSet;
  row: number;
  map: StripeMap;
  /** The segment's columns: [lo, lo + len) of each member's chunk in the row. */
  lo: number;
  len: number;
  /** The data slots written, and their new blocks by slot. */
  written: readonly number[];
  fresh: Map<number, Uint8Array>;
  /** Scratch blocks taken for the step (#blocks), given back when it ends. */
  held: Buffer[];
  /** Whether what the step writes and reads goes into the cache (else it is forgotten there). */
  keep: boolean;
}

/** How a segment step's parity is had: computed from every data block or not, and the computation. */
interface SegmentParity {
  fromAllData: boolean;
  compute(): [Uint8Array, Uint8Array | undefined];
}

/** Whether parity is valid over a range of sync space (member offsets): the bitmap's blocks_synced. */
export interface ParitySyncState {
  blocksSynced(offset: number, length: number): boolean;
  /** A write made parity match the data over this range on every member (see WriteIntentBitmap). */
  paritySynced?(offset: number, length: number): void;
}

/** How writes were carried out, per column segment (tests and the benchmark read these). */
export interface StripeStats {
  fullWrites: number;
  rmwWrites: number;
  rcwWrites: number;
  degradedWrites: number;
  degradedReads: number;
  /** Reads served by one member read, bypassing the stripe cache (StripeEngine.read/readNow). */
  directReads: number;
  /** Bytes read from members by the write path (parity inputs). */
  writeReadBytes: number;
  /** Writes done now (StripeEngine.writeNow), counted in rmwWrites or rcwWrites too. */
  nowWrites: number;
}

/** md counts a mismatch per 4 KiB stripe unit, as STRIPE_SECTORS sectors. */
const CHECK_UNIT = 4096;
/**
 * Free scratch blocks kept for the next step: while steps take them, up to what 1 MiB writes at
 * queue depth 8 hold at once (every row's parity and reads, chunk-sized), so a busy array
 * allocates none; a second after the last take of a size, no more than room for a queue of 4 KiB
 * random writes' blocks (three per write on the promise path, 32 deep: 384 KiB; a write done now
 * gives its two back before the next). Kept at 4 MiB idle, a 1 MiB write's 256 KiB blocks stayed
 * after it, under every later workload: the 1M reads of bench:nbd's second round peaked 4 MiB
 * higher than the first's. Kept at 4 MiB busy, the rest of each 1 MiB write's 64 KiB blocks were
 * garbage: below glibc's mmap threshold, they grew its heap to 45 MiB before V8 freed them (peak
 * RSS 112 MiB over bench:nbd's raid5 run).
 */
const SCRATCH_KEEP = { busyBytes: 32 * 1024 * 1024, idle: { keepBytes: 512 * 1024, afterMs: 1000 } };
/**
 * A sync step covers at most this much of a row's columns (aligned to it): md's resync walks a
 * row in 4 KiB stripe heads; a step here reads every member's slice and writes what it must, so
 * with 4 members and P it holds five blocks of this size, not five 512 KiB chunks.
 */
const SYNC_SLICE = 128 * 1024;
/**
 * A write step covers at most this much of a row's columns (aligned to it), for the reason of
 * SYNC_SLICE: its scratch blocks (the members it reads, the parity it computes) are this size, not
 * a chunk's. 1 MiB writes at queue depth 8 on a 4-member raid5 held 8.4 MiB of chunk-sized blocks;
 * cut at 256 KiB, 4-5 MiB less at the peak. A smaller slice cuts 256 KiB writes in two as well,
 * and those were 15% slower at 128 KiB (members on tmpfs).
 */
const WRITE_SLICE = 256 * 1024;
/**
 * The stripe cache keeps a write's blocks (and those it read) only for a sequential writer filling
 * a row in pieces up to this long: a piece that starts the row (a writer crossing into a row
 * starts there) or starts where the last such piece of the row ended, and does not run to the
 * row's end. That writer comes back to the row several times, and the cache spares it reading its
 * own writes back: 128 KiB writes on members limited to 256 MiB/s each got 220 MiB/s with it, 182
 * without. A larger piece comes back at most once or twice, and copying it into 4 KiB pages costs
 * the engine's one thread more than reading back costs the members' I/O threads: 1 MiB writes at
 * depth 8 through `llraid serve` took 1250-1450 µs of CPU each this way, 1680-1750 µs when cached.
 * A random writer rarely comes back to a row before the cache's 256 heads have moved on: caching
 * its writes cost 4 MiB and 10-25% more CPU per 4 KiB write, for nothing.
 */
const CACHED_PIECE = 256 * 1024;
/** At most this many rows are remembered as being filled (#filling), and kept in the cache. */
const FILLING_ROWS = 64;
/**
 * The largest write done now (writeNow): the event loop does its member reads and writes in one
 * go, so it stays one small request's work (the NBD client's 4-64 KiB writes).
 */
const NOW_MAX = MAX_INLINE_BYTES;
/** Zeroing in pieces through the write path for partial rows never builds a buffer larger than this. */
const ZERO_PIECE = 1024 * 1024;

// A member failed while a step was reading: plan the step again with the new member states.
// Never leaves the engine (unwrap turns the last one into an EIO that says so).
class Replan extends MdError {
  constructor() {
    super('EIO', 'a member failed while the step was reading; plan it again');
  }
}

export class StripeEngine {
  readonly layout: ParityLayout;
  readonly cache: StripeCache;
  readonly locks = new StripeLocks();
  /** Rows a sequential writer started and has not finished, oldest first, with where its last piece ended (CACHED_PIECE). */
  readonly #filling = new Map<number, number>();
  readonly tolerance: number;
  /**
   * Whether a small write done now into one data block, where parity is valid, reads no more as a
   * read-modify-write (old data, P, Q) than as a reconstruct-write (the other data blocks): see writeNow.
   */
  readonly #modifyReadsLess: boolean;
  /** Scratch blocks of every step (reads, writes, sync windows). */
  readonly #blocks = new ScratchBlocks(SCRATCH_KEEP.busyBytes, SCRATCH_KEEP.idle);
  syncState: ParitySyncState | undefined;
  readonly stats: StripeStats = {
    fullWrites: 0,
    rmwWrites: 0,
    rcwWrites: 0,
    degradedWrites: 0,
    degradedReads: 0,
    directReads: 0,
    writeReadBytes: 0,
    nowWrites: 0,
  };

  /**
   * Bytes a write() in flight holds per byte written, its data included: its steps' scratch
   * blocks (a parity block, and the member blocks a reconstruct- or read-modify-write reads) are
   * the rest. Measured under 1 MiB writes at depth 8 through `serve` on a 4-member raid5: at most
   * 3.0 MiB of scratch blocks in use beside 6 MiB of payloads, so half again; raid6 computes a Q
   * block beside each P, so once again. The NBD server counts writes at this weight against a
   * connection's budget: at 6 MiB, four 1 MiB raid5 writes in flight rather than six, as many
   * written a second (1110-1262 against 1154-1295 MiB/s, two runs each) and 2.5-3 MiB less RSS.
   */
  get writeWeight(): number {
    return this.layout.level === 5 ? 1.5 : 2;
  }

  /** `cacheBytes`: the stripe cache's budget (stripeCacheBytes). */
  constructor(layout: ParityLayout, cacheBytes: number) {
    this.layout = layout;
    this.tolerance = layout.level === 5 ? 1 : 2;
    this.#modifyReadsLess = 1 + this.tolerance <= layout.dataDisks - 1;
    this.cache = new StripeCache(layout.raidDisks, layout.chunkSize, cacheBytes);
  }

  // ---------------------------------------------------------------- reads

  /**
   * Reads [offset, offset+length) of the array: straight from the data member when the direct
   * read may serve it (#directRead), else row by row (#readRows).
   */
  read(members: MemberSet, offset: number, length: number): Promise<Buffer> {
    const at = this.#directRead(members, offset, length);
    if (at === undefined) {
      const out = Buffer.allocUnsafe(length);
      return this.#readRows(members, offset, out).then(() => out);
    }
    this.stats.directReads++;
    return members.read(at.member, at.memberOffset, length).catch(async (err: unknown) => {
      // The MemberSet failed the member before rejecting: its block is rebuilt from parity.
      if (members.state(at.member) !== 'in_sync') {
        const out = Buffer.allocUnsafe(length);
        await this.#readRows(members, offset, out);
        return out;
      }
      throw this.#readError(at.member, err);
    });
  }

  /**
   * read() into `out` (a caller's reused buffer): every member part read straight into its place.
   * Settles only once no member read still writes into `out`, whichever way it ends.
   */
  async readInto(members: MemberSet, offset: number, out: Buffer): Promise<void> {
    const at = this.#directRead(members, offset, out.length);
    if (at !== undefined) {
      this.stats.directReads++;
      try {
        await members.readInto(at.member, at.memberOffset, out);
        return;
      } catch (err) {
        if (members.state(at.member) === 'in_sync') throw this.#readError(at.member, err);
        // Failed by the MemberSet: its block is rebuilt from parity below.
      }
    }
    await this.#readRows(members, offset, out);
  }

  /**
   * The direct read done now (the MemberSet's synchronous read of the data member): true when it
   * did the whole read, false when the read is not direct (#directRead) or the member's device
   * cannot answer now (or failed: the MemberSet is failing it, and the caller's read() then
   * rebuilds the block from parity).
   */
  readNow(members: MemberSet, offset: number, out: Buffer): boolean {
    if (members.readNow === undefined) return false;
    const at = this.#directRead(members, offset, out.length);
    if (at === undefined || !members.readNow(at.member, at.memberOffset, out)) return false;
    this.stats.directReads++;
    return true;
  }

  /**
   * Where a read can be served by one member read, as md's chunk_aligned_read does: the range
   * lies in one chunk, the data member holding it is in sync, and no write or sync step holds
   * its row. Undefined otherwise.
   *
   * Why the member alone is right there: an in-sync member's data block is written only by an
   * application write to that block (sync steps write parity, recovery writes rebuilding members,
   * a degraded write touches the blocks it writes and parity), and a write resolves only after
   * its member writes settled, failing the members that did not take it first. So after a write
   * is acknowledged, an in-sync member holds it: the cache, written through, holds nothing newer
   * for an in-sync member. A read that overlaps a write in flight may see either contents, as on
   * any block device. A row a step holds is left to the stripe path all the same, which reads
   * the cache first: reads that overlap a parity update answer exactly as before.
   */
  #directRead(members: MemberSet, offset: number, length: number): { member: number; memberOffset: number } | undefined {
    const c = this.layout.chunkSize;
    if ((offset % c) + length > c) return undefined;
    const at = this.layout.locate(offset);
    if (members.state(at.member) !== 'in_sync' || this.locks.held(at.row)) return undefined;
    return at;
  }

  /** Reads row by row into `out`; settles once every row piece has (no member read left writing into `out`). */
  async #readRows(members: MemberSet, offset: number, out: Buffer): Promise<void> {
    await allSettledOrThrow(splitRows(this.layout, offset, out.length).map((p) => this.#readPiece(members, p, out)));
  }

  /**
   * One row's part of a read, into its place in `out`. With every data block it covers on an
   * in-sync member (or, for a member that is not, in the cache), each block is read where it is,
   * unlocked and uncached, for the same reason as the direct read: an in-sync member holds every
   * acknowledged write to its data blocks. Otherwise the row is rebuilt under its lock.
   */
  async #readPiece(members: MemberSet, piece: RowPiece, out: Buffer): Promise<void> {
    const c = this.layout.chunkSize;
    const map = this.layout.stripe(piece.row);
    // The data blocks the piece covers, with their column ranges.
    const parts: { i: number; lo: number; hi: number; at: number }[] = [];
    for (let i = Math.floor(piece.start / c); i * c < piece.start + piece.length; i++) {
      const lo = Math.max(0, piece.start - i * c);
      const hi = Math.min(c, piece.start + piece.length - i * c);
      parts.push({ i, lo, hi, at: piece.bufferOffset + i * c + lo - piece.start });
    }
    for (let attempt = 0; ; attempt++) {
      const direct = parts.every(
        (p) => members.state(map.dataMembers[p.i]!) === 'in_sync' || this.cache.has(piece.row, map.dataMembers[p.i]!, p.lo, p.hi - p.lo),
      );
      try {
        if (direct) {
          await allSettledOrThrow(
            parts.map((p) => this.#readPart(members, piece.row, map.dataMembers[p.i]!, p.lo, out.subarray(p.at, p.at + p.hi - p.lo))),
          );
        } else {
          await this.locks.with(piece.row, async () => {
            this.stats.degradedReads++;
            const lo = Math.min(...parts.map((p) => p.lo));
            const hi = Math.max(...parts.map((p) => p.hi));
            const held: Buffer[] = [];
            try {
              const stripe = await this.#rebuild(members, piece.row, map, lo, hi, held);
              for (const p of parts) out.set(stripe.data[p.i]!.subarray(p.lo - lo, p.hi - lo), p.at);
            } finally {
              this.#blocks.give(held);
            }
          });
        }
        return;
      } catch (err) {
        if (!(err instanceof Replan) || attempt >= this.layout.raidDisks) throw unwrap(err);
      }
    }
  }

  /** One data block's columns into `into`, unlocked: from an in-sync member, else from the cache. */
  async #readPart(members: MemberSet, row: number, member: number, lo: number, into: Buffer): Promise<void> {
    if (members.state(member) !== 'in_sync') {
      // Between has() and now nothing ran: the copy cannot miss, but a miss is planned again.
      if (!this.cache.copyInto(row, member, lo, into)) throw new Replan();
      return;
    }
    try {
      await members.readInto(member, row * this.layout.chunkSize + lo, into);
    } catch (err) {
      if (members.state(member) !== 'in_sync') throw new Replan();
      throw this.#readError(member, err);
    }
  }

  #readError(member: number, err: unknown): MdError {
    return new MdError('EIO', `raid${this.layout.level}: read of member role ${member} failed: ${(err as Error).message}`, { cause: err });
  }

  /**
   * Reads one member's columns of a row, under the row's lock: from the cache, else from the
   * member (and caches it). The block is a scratch block added to `held` (the step's).
   */
  async #readMember(members: MemberSet, row: number, member: number, lo: number, length: number, held: Buffer[], keep = true): Promise<Buffer> {
    const block = this.#blocks.take(length, held);
    if (this.cache.copyInto(row, member, lo, block)) return block;
    if (members.state(member) !== 'in_sync') throw new Replan();
    try {
      await members.readInto(member, row * this.layout.chunkSize + lo, block);
    } catch (err) {
      if (members.state(member) !== 'in_sync') throw new Replan();
      throw this.#readError(member, err);
    }
    if (keep) this.cache.put(row, member, lo, block);
    return block;
  }

  /**
   * Every block of a row at columns [lo, hi): read what is readable (or cached), rebuild the rest
   * from parity. Rejects when more members are missing than the level can rebuild. The blocks are
   * scratch blocks added to `held`.
   */
  async #rebuild(
    members: MemberSet,
    row: number,
    map: StripeMap,
    lo: number,
    hi: number,
    held: Buffer[],
    fromDisk = false,
  ): Promise<RebuiltRow> {
    const len = hi - lo;
    const n = this.layout.raidDisks;
    const got: (Uint8Array | null)[] = new Array(n).fill(null);
    // Settled, not just resolved: no read may still put into the cache once the row's lock is gone.
    await allSettledOrThrow(
      Array.from({ length: n }, async (_, m) => {
        const usable = members.state(m) === 'in_sync' || (!fromDisk && this.cache.has(row, m, lo, len));
        if (!usable) return;
        got[m] = fromDisk ? await this.#readDisk(members, row, m, lo, len, held) : await this.#readMember(members, row, m, lo, len, held);
      }),
    );
    const lost = got.flatMap((b, m) => (b === null ? [m] : []));
    if (lost.length > this.tolerance) throw this.#tooManyMissing(lost, 'read');
    return this.#solve(map, got, len, held);
  }

  /** Rebuilds the null blocks of a row (indexed by member) from the others. */
  #solve(map: StripeMap, got: (Uint8Array | null)[], len: number, held: Buffer[]): RebuiltRow {
    const dd = this.layout.dataDisks;
    const raid6 = this.layout.level === 6;
    const fill = (): Buffer => this.#blocks.take(len, held);
    // recoverStripe works in syndrome-slot order.
    const slotData: (Uint8Array | null)[] = new Array(dd).fill(null);
    const out = { data: new Map<number, Uint8Array>(), p: undefined as Uint8Array | undefined, q: undefined as Uint8Array | undefined };
    for (let i = 0; i < dd; i++) {
      const b = got[map.dataMembers[i]!]!;
      const slot = map.qSlot[i]!;
      slotData[slot] = b;
      if (b === null) out.data.set(slot, fill());
    }
    const p = got[map.pd]!;
    if (p === null) out.p = fill();
    let q: Uint8Array | null | undefined;
    if (raid6) {
      q = got[map.qd]!;
      if (q === null) out.q = fill();
    }
    const r = recoverStripe(raid6 ? { data: slotData, p, q } : { data: slotData, p }, out);
    const data = Array.from({ length: dd }, (_, i) => r.data[map.qSlot[i]!]!);
    return { data, p: r.p, q: r.q };
  }

  // ---------------------------------------------------------------- writes

  /**
   * A small write done now, with the MemberSet's synchronous member reads and writes, inside one
   * chunk of a row no step holds: a read-modify-write (#modifyNow) where parity is valid (the
   * bitmap's blocks_synced), unless a reconstruct-write (#reconstructNow) reads fewer blocks (raid6
   * over five members: two against three). On a tie (raid5 over four) the read-modify-write, whose
   * two XORs cost less than parity over every data block: 4 KiB random writes 3% faster. The
   * MemberSet reads now only from in-sync members, so a member that is not declines it before
   * anything is written. Data is written first, then P (and Q).
   *
   * true: done. false: nothing written (a member could not read or take it now), write() does it.
   * A promise: a member write did not happen now (declined, or failed: the MemberSet is failing
   * the member) after the data block had started changing, so data and parity disagree. The rest
   * is written under the row's lock, taken before this returns so that no step sees the row half
   * written; the caller waits for the promise (keeping its bitmap chunks Dirty) and then writes
   * the whole again with write(), which then finds data and parity agreeing (or the member failed).
   */
  writeNow(members: MemberSet, offset: number, parts: readonly Uint8Array[]): boolean | Promise<void> {
    if (members.readNow === undefined || members.writeNow === undefined) return false;
    const len = byteLength(parts);
    const c = this.layout.chunkSize;
    if (len === 0 || len > NOW_MAX || (offset % c) + len > c) return false;
    const at = this.layout.locate(offset);
    if (this.locks.held(at.row)) return false;
    const held: Buffer[] = [];
    // The members hold every acknowledged write (write-through), and no step holds the row: what
    // they answer now is the row's contents.
    const synced = this.syncState?.blocksSynced(at.memberOffset, len) ?? true;
    const modify = synced && this.#modifyReadsLess;
    const plan = modify ? this.#modifyNow(members, at, parts, len, held) : this.#reconstructNow(members, at, parts, len, held);
    if (plan === undefined) {
      this.#blocks.give(held);
      return false;
    }
    for (let k = 0; k < plan.length; k++) {
      const w = plan[k]!;
      // What the cache holds of the range is older now (no step holds the row to put it back).
      this.cache.forget(at.row, w.role, w.offset - at.row * c, byteLength(w.parts));
      if (members.writeNow(w.role, w.offset, w.parts)) continue;
      // A declined write may have written part of its block: from this one on, every target is
      // written again, under the row's lock. Copies of the blocks: the caller may give its
      // buffer back before this settles, should its write() end early (the array stopping).
      const rest = plan.slice(k).map((r) => ({ role: r.role, offset: r.offset, block: Buffer.concat(r.parts) }));
      this.#blocks.give(held);
      return this.locks.with(at.row, async () => {
        await Promise.allSettled(rest.map((r) => (members.state(r.role) === 'missing' ? undefined : members.write(r.role, r.offset, r.block))));
        for (const r of rest) this.cache.forget(at.row, r.role, r.offset - at.row * c, r.block.length);
      });
    }
    if (modify) {
      this.stats.rmwWrites++;
    } else {
      // Parity now matches the data over the write on every member (writeNow runs on a whole
      // array): a bitmap chunk it covers wholly needs no lazy build any more, as after write().
      this.syncState?.paritySynced?.(at.memberOffset, len);
      this.stats.rcwWrites++;
    }
    this.stats.nowWrites++;
    this.#blocks.give(held);
    return true;
  }

  /** writeNow where parity is valid: old data and parity read now, P ^= old ^ new (Q likewise). */
  #modifyNow(members: MemberSet, at: Located, parts: readonly Uint8Array[], len: number, held: Buffer[]): NowWrite[] | undefined {
    const readNow = members.readNow!;
    const map = this.layout.stripe(at.row);
    const delta = this.#blocks.take(len, held);
    const p = this.#blocks.take(len, held);
    const q = this.layout.level === 6 ? this.#blocks.take(len, held) : undefined;
    if (!readNow(at.member, at.memberOffset, delta) || !readNow(map.pd, at.memberOffset, p) || (q !== undefined && !readNow(map.qd, at.memberOffset, q))) return undefined;
    this.stats.writeReadBytes += held.length * len;
    let pos = 0;
    for (const part of parts) {
      xorInto(delta.subarray(pos, pos + part.length), part);
      pos += part.length;
    }
    foldDelta(map, at.dataIndex, delta, p, q);
    const writes: NowWrite[] = [{ role: at.member, offset: at.memberOffset, parts }, { role: map.pd, offset: at.memberOffset, parts: [p] }];
    if (q !== undefined) writes.push({ role: map.qd, offset: at.memberOffset, parts: [q] });
    return writes;
  }

  /**
   * writeNow by reconstruct-write: the other data members' blocks at the write's offset read now,
   * P (and Q) computed from them and the new bytes. Right whether or not parity was valid before,
   * so this is how a write into a chunk that owes its lazy build (a new array's, NeedSync) is
   * done: the chunk stays owed (the parity of its other stripes is still whatever the members
   * held) and the lazy pass builds it, as in Linux. Before, such a write built its whole bitmap
   * chunk at once (every data member's 64 KiB read, the chunk's parity written): on a new raid5
   * of four 1 GiB tmpfs members, 50,000 random 4 KiB writes made as `llraid serve` makes them, at
   * depth 32, ran at 0.31-0.33x of the same writes on an array without a bitmap, 0.76-0.78x this
   * way; on raid6 over five, 0.32-0.33x and 0.80-0.87x.
   */
  #reconstructNow(members: MemberSet, at: Located, parts: readonly Uint8Array[], len: number, held: Buffer[]): NowWrite[] | undefined {
    const readNow = members.readNow!;
    const map = this.layout.stripe(at.row);
    const data = map.dataMembers.map(() => this.#blocks.take(len, held));
    for (let i = 0; i < data.length; i++) if (i !== at.dataIndex && !readNow(map.dataMembers[i]!, at.memberOffset, data[i]!)) return undefined;
    this.stats.writeReadBytes += (data.length - 1) * len;
    let pos = 0;
    for (const part of parts) {
      data[at.dataIndex]!.set(part, pos);
      pos += part.length;
    }
    const p = this.#blocks.take(len, held);
    const q = this.layout.level === 6 ? this.#blocks.take(len, held) : undefined;
    this.#parityInto(map, data, p, q);
    const writes: NowWrite[] = [{ role: at.member, offset: at.memberOffset, parts }, { role: map.pd, offset: at.memberOffset, parts: [p] }];
    if (q !== undefined) writes.push({ role: map.qd, offset: at.memberOffset, parts: [q] });
    return writes;
  }

  async write(members: MemberSet, offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    this.#refuseIfFailed(members, 'write');
    // Settled, not just resolved: the caller may reuse `data` once this rejects, so no row may
    // still be writing from it.
    await allSettledOrThrow(
      splitRows(this.layout, offset, data.length).map((piece) =>
        this.locks.with(piece.row, async () => {
          // A piece that runs to the row's end leaves the row (a sequential writer goes on to the
          // next one and does not come back): the cache forgets the row rather than copy into it
          // what no later write will read, and its pages serve the rows still being written.
          const leaves = piece.start + piece.length === this.layout.rowBytes;
          const keep = !leaves && piece.length <= CACHED_PIECE && this.#fills(piece);
          try {
            for (const seg of columnSegments(this.layout, piece)) {
              let synced = true;
              for (const slice of sliceSegment(seg, WRITE_SLICE)) {
                synced = (await this.#writeSegment(members, piece.row, slice, data, keep, options)) && synced;
              }
              // Parity over the segment now matches the data on every member: a bitmap chunk it
              // covers wholly needs no lazy parity build any more (with a member missing, the
              // bitmap declines). Told per segment, not per slice: a chunk may be larger than a slice.
              if (synced) this.syncState?.paritySynced?.(piece.row * this.layout.chunkSize + seg.lo, seg.hi - seg.lo);
            }
          } finally {
            if (leaves) {
              this.cache.invalidate(piece.row);
              this.#filling.delete(piece.row);
            }
          }
        }),
      ),
    );
  }

  /** Whether a piece that stays inside its row is a sequential writer's filling it (CACHED_PIECE); remembers where it ended. */
  #fills(piece: RowPiece): boolean {
    if (piece.start !== 0 && this.#filling.get(piece.row) !== piece.start) return false;
    this.#filling.delete(piece.row);
    this.#filling.set(piece.row, piece.start + piece.length);
    if (this.#filling.size > FILLING_ROWS) {
      // A writer that left this row long ago (or a random write that happened to start it): what
      // it cached would only take pages from rows being filled. Forgetting is safe under any lock.
      const oldest = this.#filling.keys().next().value!;
      this.#filling.delete(oldest);
      this.cache.invalidate(oldest);
    }
    return true;
  }

  /**
   * One column segment of a row, planned again while members fail under it; `keep`: into the cache
   * (else forgotten there). True when every member took it and its parity was computed from every
   * data block (full-stripe or reconstruct-write): parity then matches the data there.
   */
  async #writeSegment(members: MemberSet, row: number, seg: ColumnSegment, src: Uint8Array, keep: boolean, options?: WriteOptions): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#writeSegmentOnce(members, row, seg, src, keep, options);
      } catch (err) {
        if (!(err instanceof Replan) || attempt >= this.layout.raidDisks) {
          this.cache.invalidate(row);
          throw unwrap(err);
        }
      }
    }
  }

  async #writeSegmentOnce(members: MemberSet, row: number, seg: ColumnSegment, src: Uint8Array, keep: boolean, options?: WriteOptions): Promise<boolean> {
    const len = seg.hi - seg.lo;
    const fresh = new Map<number, Uint8Array>();
    seg.written.forEach((i, k) => fresh.set(i, src.subarray(seg.source[k]!, seg.source[k]! + len)));
    // The scratch blocks this step reads into and computes parity in: handed back at the end,
    // which every way out reaches only once no member write still reads them.
    const held: Buffer[] = [];
    try {
      const step: SegmentStep = { members, row, map: this.layout.stripe(row), lo: seg.lo, len, written: seg.written, fresh, held, keep };
      return await this.#writeSegmentBlocks(step, await this.#segmentParity(step), options);
    } finally {
      this.#blocks.give(held);
    }
  }

  // A segment step is cut into these small functions, not one: TurboFan compiled the single
  // async function it was (three ways to parity, their reads, the writes) in 41-69 ms on the
  // engine's thread, four times in the first seconds (once, then after each deoptimization as
  // new paths ran), and each compile's zone memory was a 3-5 MiB spike of the engine's RSS for as
  // long. 1 MiB writes at depth 1 through `serve` on a new raid5 peaked at 64.0 MiB (59.2 at the
  // end); cut up, the largest compile here takes 22-30 ms and the peak is 61.2-61.3 (60.8 with the
  // old function kept out of TurboFan altogether).

  /**
   * How the step gets its parity: the blocks it needs read (under the row's lock), and the
   * computation, run once the new data blocks are on their way to their members.
   */
  #segmentParity(s: SegmentStep): Promise<SegmentParity> | SegmentParity {
    const dd = this.layout.dataDisks;
    if (s.fresh.size === dd) {
      this.stats.fullWrites++;
      return { fromAllData: true, compute: () => this.#parity(s.map, Array.from({ length: dd }, (_, i) => s.fresh.get(i)!), s.len, s.held) };
    }
    const { map } = s;
    const parityMembers = this.layout.level === 6 ? [map.pd, map.qd] : [map.pd];
    const untouched = Array.from({ length: dd }, (_, i) => i).filter((i) => !s.fresh.has(i));
    const synced = this.syncState?.blocksSynced(s.row * this.layout.chunkSize + s.lo, s.len) ?? true;
    const rcwOk = untouched.every((i) => this.#usable(s, map.dataMembers[i]!));
    const rmwOk = synced && s.written.every((i) => this.#usable(s, map.dataMembers[i]!)) && parityMembers.every((m) => this.#usable(s, m));
    const rcwCost = untouched.reduce((sum, i) => sum + this.#readCost(s, map.dataMembers[i]!), 0);
    const rmwCost = s.written.reduce((sum, i) => sum + this.#readCost(s, map.dataMembers[i]!), 0) + parityMembers.reduce((sum, m) => sum + this.#readCost(s, m), 0);
    if (rmwOk && (!rcwOk || rmwCost < rcwCost)) return this.#modifyParity(s, parityMembers);
    if (rcwOk) return this.#reconstructParity(s, untouched);
    return this.#degradedParity(s);
  }

  /** Whether the step can have a member's columns: it answers reads, or the cache has them. */
  #usable(s: SegmentStep, m: number): boolean {
    return s.members.state(m) === 'in_sync' || this.cache.has(s.row, m, s.lo, s.len);
  }

  /** What reading a member's columns costs the step: nothing where the cache has them. */
  #readCost(s: SegmentStep, m: number): number {
    return this.cache.has(s.row, m, s.lo, s.len) ? 0 : 1;
  }

  /**
   * Read-modify-write: P ^= old ^ new, Q ^= 2^slot·(old ^ new) for each written block, in the
   * scratch blocks read (the cache copied them already).
   */
  async #modifyParity(s: SegmentStep, parityMembers: number[]): Promise<SegmentParity> {
    this.stats.rmwWrites++;
    const olds = await this.#readSegment(s, s.written.map((i) => s.map.dataMembers[i]!));
    const [p, q] = await this.#readSegment(s, parityMembers);
    return {
      fromAllData: false,
      compute: () => {
        s.written.forEach((i, k) => {
          const delta = olds[k]!;
          xorInto(delta, s.fresh.get(i)!);
          foldDelta(s.map, i, delta, p!, q);
        });
        return [p!, q];
      },
    };
  }

  /**
   * Reconstruct-write: parity from the new blocks and the untouched ones, read. raid5's P is
   * computed over the first block read, which nothing reads after (the cache took a copy): a
   * scratch block less per step: 1 MiB writes at depth 8 through `serve` peaked at 68.0-68.8 MiB,
   * 69.8 before.
   */
  async #reconstructParity(s: SegmentStep, untouched: number[]): Promise<SegmentParity> {
    this.stats.rcwWrites++;
    const reads = await this.#readSegment(s, untouched.map((i) => s.map.dataMembers[i]!));
    const data = new Array<Uint8Array>(this.layout.dataDisks);
    for (const [i, b] of s.fresh) data[i] = b;
    untouched.forEach((i, k) => (data[i] = reads[k]!));
    const over = this.layout.level === 5 ? reads[0] : undefined;
    if (over === undefined) return { fromAllData: true, compute: () => this.#parity(s.map, data, s.len, s.held) };
    return {
      fromAllData: true,
      compute: () => {
        computeP(data, over);
        return [over, undefined];
      },
    };
  }

  /** An untouched block's member is missing: the row rebuilt first, then as reconstruct-write. */
  async #degradedParity(s: SegmentStep): Promise<SegmentParity> {
    this.stats.degradedWrites++;
    const old = await this.#rebuild(s.members, s.row, s.map, s.lo, s.lo + s.len, s.held);
    const data = old.data.map((b, i) => s.fresh.get(i) ?? b);
    return { fromAllData: true, compute: () => this.#parity(s.map, data, s.len, s.held) };
  }

  /**
   * The step's columns of `roles`, from the cache or the members. Settled, not just resolved: no
   * read of a failed attempt may put into the cache later.
   */
  #readSegment(s: SegmentStep, roles: number[]): Promise<Buffer[]> {
    return allSettledOrThrow(roles.map((m) => {
      // #readMember looks in the cache before its first await: what it misses now, it reads.
      if (!this.cache.has(s.row, m, s.lo, s.len)) this.stats.writeReadBytes += s.len;
      return this.#readMember(s.members, s.row, m, s.lo, s.len, s.held, s.keep);
    }));
  }

  /**
   * The step's member writes: the new data blocks issued first, parity computed meanwhile and
   * issued last; a member that fails is failed by the MemberSet before this sees it. True when
   * every member took them and parity came from every data block.
   */
  async #writeSegmentBlocks(s: SegmentStep, parity: SegmentParity, options?: WriteOptions): Promise<boolean> {
    const { members, map, row, lo } = s;
    const memberOffset = row * this.layout.chunkSize + lo;
    const targets: [number, Uint8Array][] = [...s.fresh].map(([i, b]) => [map.dataMembers[i]!, b]);
    const issue = ([m, b]: [number, Uint8Array]) => (members.state(m) === 'missing' ? Promise.resolve() : members.write(m, memberOffset, b, options));
    const writes = targets.map(issue);
    let p: Uint8Array;
    let q: Uint8Array | undefined;
    try {
      [p, q] = parity.compute();
    } catch (err) {
      await Promise.allSettled(writes);
      throw err;
    }
    const parityTargets: [number, Uint8Array][] = [[map.pd, p]];
    if (this.layout.level === 6) parityTargets.push([map.qd, q!]);
    for (const t of parityTargets) {
      targets.push(t);
      writes.push(issue(t));
    }
    const results = await Promise.allSettled(writes);
    // The cache keeps the row's logical contents, whether or not a member took its write (or,
    // not keeping them, must not answer with what they were before).
    const insert = s.fresh.size !== this.layout.dataDisks;
    for (const [m, b] of targets) {
      if (s.keep) this.cache.put(row, m, lo, b, insert);
      else this.cache.forget(row, m, lo, s.len);
    }
    this.#checkWrites(members, results, targets.map(([m]) => m));
    return parity.fromAllData && results.every((r) => r.status === 'fulfilled');
  }

  /**
   * Whether a row write holds: every member that rejected its part must have been failed by the
   * MemberSet (recorded as faulty, so parity stands in for it), and no more members may be
   * missing than the level can rebuild. Any other rejection (a shutdown) fails the write.
   */
  #checkWrites(members: MemberSet, results: PromiseSettledResult<unknown>[], roles: number[]): void {
    const rejected = results.flatMap((r, k) => (r.status === 'rejected' ? [{ role: roles[k]!, reason: r.reason as unknown }] : []));
    if (rejected.length === 0) return;
    const unrecorded = rejected.find((r) => members.state(r.role) !== 'missing');
    if (unrecorded !== undefined) throw unrecorded.reason;
    const lost = Array.from({ length: this.layout.raidDisks }, (_, m) => m).filter((m) => members.state(m) === 'missing');
    if (lost.length > this.tolerance) throw this.#tooManyMissing(lost, 'write', rejected[0]!.reason);
  }

  /** P (and Q) of a row's data blocks given in logical order, in scratch blocks added to `held`. */
  #parity(map: StripeMap, data: Uint8Array[], len: number, held: Buffer[]): [Uint8Array, Uint8Array | undefined] {
    const p = this.#blocks.take(len, held);
    const q = this.layout.level === 6 ? this.#blocks.take(len, held) : undefined;
    this.#parityInto(map, data, p, q);
    return [p, q];
  }

  /** P (and Q, raid6) of a row's data blocks (in data order), into `p` and `q`. */
  #parityInto(map: StripeMap, data: readonly Uint8Array[], p: Uint8Array, q: Uint8Array | undefined): void {
    if (q === undefined) {
      computeP(data, p);
      return;
    }
    const bySlot = new Array<Uint8Array>(data.length);
    data.forEach((b, i) => (bySlot[map.qSlot[i]!] = b));
    computePQ(bySlot, p, q);
  }

  async writeZeroes(members: MemberSet, offset: number, length: number, options?: ZeroOptions): Promise<void> {
    this.#refuseIfFailed(members, 'write');
    const c = this.layout.chunkSize;
    await Promise.all(
      splitRows(this.layout, offset, length).map(async (piece) => {
        if (piece.length === this.layout.rowBytes) {
          // A whole row of zeroes has zero P and zero Q: zero every member, no parity to compute.
          await this.locks.with(piece.row, async () => {
            this.cache.invalidate(piece.row);
            const n = this.layout.raidDisks;
            const results = await Promise.allSettled(
              Array.from({ length: n }, (_, m) => (members.state(m) === 'missing' ? Promise.resolve() : members.writeZeroes(m, piece.row * c, c, options))),
            );
            this.#checkWrites(members, results, Array.from({ length: n }, (_, m) => m));
          });
          return;
        }
        for (let done = 0; done < piece.length; done += ZERO_PIECE) {
          const n = Math.min(ZERO_PIECE, piece.length - done);
          await this.write(members, piece.row * this.layout.rowBytes + piece.start + done, Buffer.alloc(n), options);
        }
      }),
    );
  }

  /** Discards whole rows only (data and parity together, as md); partial rows are left alone. */
  async discard(members: MemberSet, offset: number, length: number): Promise<void> {
    const c = this.layout.chunkSize;
    await Promise.all(
      splitRows(this.layout, offset, length)
        .filter((piece) => piece.length === this.layout.rowBytes)
        .map((piece) =>
          this.locks.with(piece.row, async () => {
            this.cache.invalidate(piece.row);
            await Promise.allSettled(
              Array.from({ length: this.layout.raidDisks }, (_, m) =>
                members.state(m) === 'missing' ? Promise.resolve() : members.discard(m, piece.row * c, c),
              ),
            );
          }),
        ),
    );
  }

  // ---------------------------------------------------------------- sync

  /** One sync step over [offset, offset+length) of sync space (member offsets). */
  async sync(members: MemberSet, mode: SyncMode, offset: number, length: number): Promise<SyncWindowResult> {
    const c = this.layout.chunkSize;
    const total: SyncWindowResult = { mismatches: 0, bytesWritten: 0 };
    for (let pos = offset; pos < offset + length; ) {
      const row = Math.floor(pos / c);
      const lo = pos - row * c;
      // A slice at a time: its blocks (a member's each) are what a sync step holds in memory, and
      // the row's lock is held for one slice, not for a whole chunk column of the row.
      const hi = Math.min(c, lo + offset + length - pos, (Math.floor(lo / SYNC_SLICE) + 1) * SYNC_SLICE);
      const r = await this.locks.with(row, () => this.#syncRow(members, mode, row, lo, hi));
      total.mismatches += r.mismatches;
      total.bytesWritten += r.bytesWritten;
      pos += hi - lo;
    }
    return total;
  }

  async #syncRow(members: MemberSet, mode: SyncMode, row: number, lo: number, hi: number): Promise<SyncWindowResult> {
    const { layout } = this;
    const map = layout.stripe(row);
    const n = layout.raidDisks;
    const len = hi - lo;
    const at = row * layout.chunkSize + lo;
    const result: SyncWindowResult = { mismatches: 0, bytesWritten: 0 };
    const roles = Array.from({ length: n }, (_, m) => m);
    // The step's scratch blocks, given back once every read and write of it settled.
    const held: Buffer[] = [];
    // Sync writes members behind the cache's back: forget the row once done, whatever happens.
    try {
      if (mode === 'recovery') {
        const targets = roles.filter((m) => members.state(m) === 'rebuilding');
        if (targets.length === 0) return result;
        const stripe = await this.#rebuild(members, row, map, lo, hi, held, true);
        await allSettledOrThrow(
          targets.map(async (m) => {
            const role = map.role[m]!;
            const block = role >= 0 ? stripe.data[role]! : role === -1 ? stripe.p : stripe.q!;
            await members.write(m, at, block);
            result.bytesWritten += len;
          }),
        );
        return result;
      }
      // resync, check, repair: need every data block; md does not resync a degraded array.
      if (map.dataMembers.some((m) => members.state(m) !== 'in_sync')) return result;
      const readDisk = (m: number): Promise<Buffer> => this.#readDisk(members, row, m, lo, len, held);
      const data = await allSettledOrThrow(map.dataMembers.map(readDisk));
      const [p, q] = this.#parity(map, data, len, held);
      const parity: [number, Uint8Array][] = [[map.pd, p]];
      if (q !== undefined) parity.push([map.qd, q]);
      const live = parity.filter(([m]) => members.state(m) === 'in_sync');
      const onDisk = await allSettledOrThrow(live.map(([m]) => readDisk(m)));
      // Which 4 KiB units of P (and Q) differ from what the data says they must be.
      const units = Math.ceil(len / CHECK_UNIT);
      const unit = (u: number): [number, number] => [u * CHECK_UNIT, Math.min(len, (u + 1) * CHECK_UNIT)];
      const differs = live.map(([, want], k) =>
        Array.from({ length: units }, (_, u) => {
          const [s, e] = unit(u);
          return Buffer.compare(Buffer.from(want.buffer, want.byteOffset + s, e - s), onDisk[k]!.subarray(s, e)) !== 0;
        }),
      );
      const badUnits = Array.from({ length: units }, (_, u) => differs.some((d) => d[u])).filter(Boolean).length;
      if (mode === 'check' || mode === 'repair') result.mismatches = badUnits * (CHECK_UNIT / SECTOR);
      // resync and repair rewrite exactly the parity units that differ.
      const writes = mode === 'check' ? [] : live.flatMap(([m, want], k) =>
        differs[k]!.flatMap((bad, u) => {
          if (!bad) return [];
          const [s, e] = unit(u);
          result.bytesWritten += e - s;
          return [members.write(m, at + s, want.subarray(s, e))];
        }),
      );
      await allSettledOrThrow(writes);
      return result;
    } finally {
      this.#blocks.give(held);
      this.cache.invalidate(row);
    }
  }

  /**
   * Reads a member from disk (sync must see what is really there, not the cache), into a sync
   * scratch block added to `held`.
   */
  async #readDisk(members: MemberSet, row: number, member: number, lo: number, length: number, held: Buffer[]): Promise<Buffer> {
    const block = this.#blocks.take(length, held);
    try {
      await members.readInto(member, row * this.layout.chunkSize + lo, block);
      return block;
    } catch (err) {
      throw new MdError('EIO', `raid${this.layout.level}: sync read of member role ${member} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  // ---------------------------------------------------------------- failures

  /** How many roles are missing now; refuses a write up front when the level cannot absorb them. */
  #refuseIfFailed(members: MemberSet, what: string): void {
    const lost = Array.from({ length: this.layout.raidDisks }, (_, m) => m).filter((m) => members.state(m) === 'missing');
    if (lost.length > this.tolerance) throw this.#tooManyMissing(lost, what);
  }

  #tooManyMissing(lost: number[], what: string, cause?: unknown): MdError {
    const l = this.layout;
    return new MdError(
      'EIO',
      `raid${l.level}: cannot ${what}: ${lost.length} of ${l.raidDisks} members unavailable (roles ${lost.join(', ')}), at most ${this.tolerance} can be rebuilt`,
      cause === undefined ? undefined : { cause },
    );
  }
}

/**
 * A read-modify-write's parity update for data block `i` of a row, whose old ^ new is `delta`:
 * P ^= delta, and Q ^= 2^slot · delta (raid6).
 */
function foldDelta(map: StripeMap, i: number, delta: Uint8Array, p: Uint8Array, q: Uint8Array | undefined): void {
  xorInto(p, delta);
  if (q !== undefined) mulXorInto(q, gfExp2(map.qSlot[i]!), delta);
}

function unwrap(err: unknown): unknown {
  if (err instanceof Replan) return new MdError('EIO', 'members kept failing while the request was planned');
  return err;
}

