// The parity personality: raid5, and raid6 with a second syndrome Q = Σ 2^i·D_i over GF(2^8)
// so any two members may be missing. md serves raid4/5/6 from one driver (raid5.c); llraid
// shares this class the same way and only the level and member minimum differ. Geometry comes
// from layout.ts; the data path and sync steps from stripe-engine.ts. Sync space is per-member
// (md's resync_max_sectors for raid4/5/6).

import type { WriteOptions, ZeroOptions } from '../../block/block-device.js';
import { MdError } from '../errors.js';
import { DEFAULT_ALGORITHM, ParityLayout, type ParityLevel } from './layout.js';
import type { MemberSet, Personality, SyncRange, SyncWindowResult } from '../personality.js';
import type { SyncMode } from '../types.js';
import { StripeEngine, type ParitySyncState, type StripeStats } from './stripe-engine.js';
import { columnSpan, splitRows } from './stripe-plan.js';
import { stripeCacheBytes } from './stripe-cache.js';
import type { WriteIntentBitmap } from '../write-intent-bitmap.js';

/** md's default chunk for raid5/6 (mdadm: 512 KiB). */
export const DEFAULT_PARITY_CHUNK = 512 * 1024;

export interface ParityOptions {
  raidDisks: number;
  /** Bytes of data area on every member. */
  memberSize: number;
  /** Default 512 KiB. */
  chunkSize?: number;
  /** md algorithm number (parity/layout.ts); default left-symmetric (2). */
  layout?: number;
  /**
   * md's stripe_cache_size: stripe heads (a 4 KiB page of every member) the stripe cache may hold;
   * default DEFAULT_STRIPE_CACHE_SIZE (stripe-cache.ts). 0 caches nothing.
   */
  stripeCacheSize?: number;
}

export class ParityPersonality implements Personality {
  readonly level: ParityLevel;
  readonly layout: number;
  readonly chunkSize: number;
  readonly raidDisks: number;
  readonly arraySize: number;
  readonly syncSize: number;
  readonly parity = true;
  readonly geometry: ParityLayout;
  readonly #engine: StripeEngine;

  constructor(level: ParityLevel, options: ParityOptions) {
    const chunkSize = options.chunkSize ?? DEFAULT_PARITY_CHUNK;
    this.geometry = new ParityLayout({ level, raidDisks: options.raidDisks, chunkSize, algorithm: options.layout ?? DEFAULT_ALGORITHM });
    if (!Number.isSafeInteger(options.memberSize) || options.memberSize < chunkSize) {
      throw new MdError('ENOSPC', `raid${level}: members must hold at least one chunk (${chunkSize} bytes), found ${options.memberSize} bytes`);
    }
    this.level = level;
    this.layout = this.geometry.algorithm;
    this.chunkSize = chunkSize;
    this.raidDisks = options.raidDisks;
    this.syncSize = Math.floor(options.memberSize / chunkSize) * chunkSize;
    this.arraySize = this.geometry.arraySize(options.memberSize);
    this.#engine = new StripeEngine(this.geometry, stripeCacheBytes(options.raidDisks, options.stripeCacheSize));
  }

  get writeWeight(): number {
    return this.#engine.writeWeight;
  }

  /** How many members may be missing while every byte stays readable. */
  get tolerance(): number {
    return this.#engine.tolerance;
  }

  /** Counters of the write path (full-stripe, read-modify-write, reconstruct-write, degraded). */
  get stats(): Readonly<StripeStats> {
    return this.#engine.stats;
  }

  /**
   * The array hands over its write-intent bitmap: writes into chunks whose parity is not yet valid
   * (blocks_synced false: Unwritten, NeedSync, Syncing, ...) then use reconstruct-write, so parity
   * becomes right for every stripe written even before the lazy resync reaches it.
   */
  attachBitmap(bitmap: Pick<WriteIntentBitmap, 'blocksSynced' | 'paritySynced' | 'chunkSize' | 'kind'>): void {
    if (bitmap.kind === 'none' || bitmap.chunkSize === 0) {
      this.#engine.syncState = undefined;
      return;
    }
    this.#engine.syncState = bitmapSyncState(bitmap);
  }

  /** Same as attachBitmap, for any source of the blocks_synced answer (tests, tools). */
  setParitySyncState(state: ParitySyncState | undefined): void {
    this.#engine.syncState = state;
  }

  syncRange(offset: number, length: number): SyncRange {
    if (length === 0) return { offset: 0, length: 0 };
    const pieces = splitRows(this.geometry, offset, length);
    const first = pieces[0]!;
    const last = pieces[pieces.length - 1]!;
    const start = first.row * this.chunkSize + columnSpan(this.geometry, first).lo;
    const end = last.row * this.chunkSize + columnSpan(this.geometry, last).hi;
    // Rows in between are covered whole, so [start, end) in member space covers every column touched.
    return { offset: start, length: end - start };
  }

  // Sync space is member space: recovery up to a sync offset has rebuilt the members up to it.
  memberOffsetOfSync(syncOffset: number): number {
    return syncOffset;
  }

  syncOffsetOfMember(memberOffset: number): number {
    return memberOffset;
  }

  canRun(working: readonly boolean[]): boolean {
    return this.#missing(working) <= this.tolerance;
  }

  isDegraded(working: readonly boolean[]): boolean {
    return this.#missing(working) > 0;
  }

  read(members: MemberSet, offset: number, length: number): Promise<Buffer> {
    return this.#engine.read(members, offset, length);
  }

  /** read() into `out`, each member part straight into its place (StripeEngine.readInto). */
  readInto(members: MemberSet, offset: number, out: Buffer): Promise<void> {
    return this.#engine.readInto(members, offset, out);
  }

  /** A read inside one chunk whose data member is in sync, from that member now (StripeEngine.readNow). */
  readNow(members: MemberSet, offset: number, out: Buffer): boolean {
    return this.#engine.readNow(members, offset, out);
  }

  write(members: MemberSet, offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    return this.#engine.write(members, offset, data, options);
  }

  /** A small read-modify-write done now (StripeEngine.writeNow). */
  writeNow(members: MemberSet, offset: number, parts: readonly Uint8Array[]): boolean | Promise<void> {
    return this.#engine.writeNow(members, offset, parts);
  }

  discard(members: MemberSet, offset: number, length: number): Promise<void> {
    return this.#engine.discard(members, offset, length);
  }

  writeZeroes(members: MemberSet, offset: number, length: number, options?: ZeroOptions): Promise<void> {
    return this.#engine.writeZeroes(members, offset, length, options);
  }

  /**
   * resync: recompute P (and Q) from the data and rewrite what differs. recovery: rebuild every
   * rebuilding role from the others. check: count mismatching 4 KiB stripe units (8 sectors each,
   * as md's mismatch_cnt). repair: check, then rewrite the parity of the mismatching units.
   */
  syncWindow(members: MemberSet, mode: SyncMode, offset: number, length: number): Promise<SyncWindowResult> {
    return this.#engine.sync(members, mode, offset, length);
  }

  #missing(working: readonly boolean[]): number {
    let missing = 0;
    for (let m = 0; m < this.raidDisks; m++) if (working[m] !== true) missing++;
    return missing;
  }
}

/** raid5: one parity block per row; at least 2 members (md allows 2; 3 is the useful minimum). */
export function createRaid5(options: ParityOptions): ParityPersonality {
  return new ParityPersonality(5, options);
}

/** blocks_synced over a member range: every bitmap chunk the range touches must have valid parity. */
function bitmapSyncState(bitmap: Pick<WriteIntentBitmap, 'blocksSynced' | 'paritySynced' | 'chunkSize'>): ParitySyncState {
  const cs = bitmap.chunkSize;
  return {
    blocksSynced(offset: number, length: number): boolean {
      const last = Math.floor((offset + Math.max(length, 1) - 1) / cs);
      for (let c = Math.floor(offset / cs); c <= last; c++) if (!bitmap.blocksSynced(c * cs)) return false;
      return true;
    },
    paritySynced: (offset, length) => bitmap.paritySynced(offset, length),
  };
}

/** raid6: P and Q per row, at least 4 members. */
export function createRaid6(options: ParityOptions): ParityPersonality {
  return new ParityPersonality(6, options);
}
