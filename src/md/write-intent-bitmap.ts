// The contract between an array and its write-intent bitmap, the llraid form of md's
// `bitmap_operations`. Two implementations: the lockless bitmap (src/md/llbitmap/) and
// NoBitmap (bitmap: none). The array calls these; the bitmap never calls the personality.
//
// Units: all offsets and lengths are BYTES in the array's *sync space* — the address space the
// personality resyncs over (md's resync_max_sectors): array addresses for raid1/raid10, per-member
// addresses for raid4/5/6. The bitmap converts to chunks internally.

import type { BlockDevice } from '../block/block-device.js';
import type { SyncMode } from './types.js';

/** A member that holds a copy of the bitmap. */
export interface BitmapMember {
  /** For messages: the member's path. */
  readonly name: string;
  readonly device: BlockDevice;
  /** Byte offset of the bitmap area (its 256-byte superblock first) from the start of `device`. */
  readonly bitmapOffset: number;
}

/** What the bitmap needs from the array it belongs to. */
export interface BitmapHost {
  /** The array's set UUID (16 bytes); the bitmap superblock must carry the same. */
  readonly uuid: Uint8Array;
  /** The array's current events counter (from the freshest superblock). */
  events(): bigint;
  /** raid4/5/6: first writes to Unwritten chunks go to NeedSync (lazy initial parity). */
  readonly parity: boolean;
  /** True while the array lacks a member it needs for full redundancy. */
  isDegraded(): boolean;
  /** Members that take bitmap writes and may be read from: active, In_sync, not faulty. */
  bitmapMembers(): readonly BitmapMember[];
  /** The bitmap found chunks that need syncing: wake the sync thread (md_wakeup_thread). */
  requestSync(): void;
  /** A bitmap read or write failed on this member: the array fails it (records it, events up). */
  failMember(member: BitmapMember, err: Error): void;
}

/** What loading found about the members' copies of the bitmap (llbitmap/cross-check.ts). */
export interface BitmapLoadReport {
  /** Members whose copy was read and merged. */
  members: string[];
  /** Members whose copy was left out, and why. */
  rejected: { name: string; reason: string }[];
  /** Chunks on which the merged copies disagreed (each given the state that owes the most). */
  disagreeing: number;
}

/** Per-state chunk counts, in llbitmap state order. */
export interface BitmapCounts {
  unwritten: number;
  clean: number;
  dirty: number;
  needSync: number;
  syncing: number;
  needSyncUnwritten: number;
  syncingUnwritten: number;
  cleanUnwritten: number;
}

export interface StartSyncResult {
  /** True when this chunk must be synced; false when the sync thread may skip it. */
  sync: boolean;
  /** Bytes from `offset` to the end of its chunk: the step the sync thread takes. */
  length: number;
}

export interface WriteIntentBitmap {
  readonly kind: 'llbitmap' | 'none';
  /** Set by loading an existing bitmap that has copies to compare; undefined otherwise. */
  readonly loadReport?: BitmapLoadReport | undefined;
  /** Chunk size in bytes (0 for none). */
  readonly chunkSize: number;

  /**
   * Before a data write: counts the write in flight on every chunk the range touches (the daemon
   * leaves them alone until endWrite), then applies Startwrite. Must be paired with endWrite.
   * Returns nothing when it is done at once (llbitmap always is: no await needed).
   */
  startWrite(offset: number, length: number): Promise<void> | undefined;
  /** After the data write completed (or failed): drops what startWrite counted. */
  endWrite(offset: number, length: number): void;
  /** As startWrite/endWrite, for a discard: applies Discard to the chunks the range fully covers. */
  startDiscard(offset: number, length: number): Promise<void>;
  endDiscard(offset: number, length: number): void;
  /**
   * Writes every dirty bitmap block to every bitmap member and waits until durable.
   * Concurrent callers share one flush; callers that arrive while one is in flight share the next.
   * The array calls this after startWrite and before issuing any data write. With the write's
   * range, only the blocks holding its chunks are waited for; without, every dirty block and
   * any write-out in flight. Returns nothing when there is nothing to wait for.
   */
  unplug(offset?: number, length?: number): Promise<void> | undefined;
  /**
   * unplug() of the range with nothing to wait for: true when the range's bitmap blocks are
   * durable as this returns (written now if they were dirty and every bitmap member could take
   * them durably at once). False asks for nothing: the writer's unplug() then does.
   */
  unplugNow(offset: number, length: number): boolean;

  /**
   * Bytes from `offset` the sync thread may skip without looking (0 = none), up to the end of
   * the run of skippable chunks. `mode` is the pass being run: Clean/Dirty chunks are skipped
   * only in a plain 'resync'; without it only never-written chunks are skipped (safe for every
   * pass).
   */
  skipSyncBlocks(offset: number, mode?: SyncMode): number;
  /** Startsync on the chunk holding `offset`. */
  startSync(offset: number): StartSyncResult;
  /** Sync stopped early at `offset`: Abortsync from that chunk to the end. */
  endSync(offset: number): void;
  /** Sync completed over the whole space: Endsync everywhere. */
  closeSync(): void;
  /** Checkpoint: Endsync on chunks entirely below `offset`, then persist the whole bitmap. */
  condEndSync(offset: number): Promise<void>;
  /** raid4/5/6: whether the chunk at `offset` has valid parity (Clean, Dirty, CleanUnwritten). */
  blocksSynced(offset: number): boolean;
  /**
   * raid4/5/6: a write has just made parity match the data over the member range [offset,
   * +length) on every member of a whole array (a reconstruct-write or full-stripe write, which
   * compute parity from every data block). Chunks the range covers wholly that only owed their
   * parity build (NeedSync) hold valid parity now.
   */
  paritySynced(offset: number, length: number): void;
  /** Whether the chunk at `offset` has never been written (Unwritten or *Unwritten): a hole. */
  isUnwritten(offset: number): boolean;
  /** At the start of recovery onto a new member: every *Unwritten state reverts to Unwritten. */
  startRecovery(): void;
  /** Parity levels only (refuses otherwise): ProactiveSync on every chunk. */
  proactiveSync(): void;

  /**
   * The array grew: cover `syncSize` bytes of sync space from now on (never less than before).
   * Called with every I/O held and no sync running; durable before it resolves.
   */
  resize(syncSize: number): Promise<void>;

  /** Superblock update: write events (and the rest of update_sb) to every bitmap member. */
  updateSb(): Promise<void>;
  /**
   * The array is whole again (it was degraded): the Dirty chunks it kept meanwhile may be
   * cleaned now. Without this the daemon, which stops on a degraded array, waits for the next
   * write to wake it.
   */
  wholeAgain(): void;
  /** On stop: run the daemon on every page, write every block, wait. */
  flush(): Promise<void>;
  /** Stop timers. No bitmap I/O after this resolves. */
  close(): Promise<void>;

  counts(): BitmapCounts;
  /** The sysfs `bits` text (llbitmap.md A9), byte-exact. */
  bitsText(): string;
  /** The sysfs `metadata` text (llbitmap.md A9), byte-exact. */
  metadataText(): string;
  daemonSleep: number;
  barrierIdle: number;
}
