// A member file that an engine opened itself with an attach epoch (local-members.ts), watched
// while the engine runs: when the member's epoch record rises above this engine's epoch (the
// member service on this node took the member for an engine elsewhere, or another engine here
// opened it with a higher one), every call rejects with FencedError — md turns that into the
// array's fenced state — and the file is closed once the calls in flight have settled, which
// drops its lock so that the new holder can open it.

import { watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import type { Extent, WriteOptions, ZeroOptions } from '../block/block-device.js';
import { FencedError } from '../block/errors.js';
import type { FileDevice } from '../block/file-device.js';
import { FilterDevice } from '../block/filter-device.js';
import { describeError, trace } from '../common/trace.js';
import { EpochStore, type EpochRecordOwner } from './member-service/epoch-store.js';

/** The record is also read this often, in case inotify says nothing (a network filesystem, a full watch table). */
export const EPOCH_POLL_MS = 1000;

export class EpochWatchDevice extends FilterDevice {
  /** Set once, when the record was seen above `epoch`; from then on every call rejects with it. */
  private fencedBy: FencedError | undefined;
  /** Asynchronous calls started and not settled; the file is closed only when this is 0. */
  private inFlight = 0;
  /** The file's close, once begun (by a fence or by close()). */
  private released: Promise<void> | undefined;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** A look at the record is under way; `again` asks for one more after it (an event came meanwhile). */
  private looking: Promise<void> | undefined;
  private again = false;

  constructor(
    private readonly file: FileDevice,
    private readonly member: EpochRecordOwner,
    private readonly epoch: bigint,
    private readonly store = new EpochStore(),
  ) {
    super(file);
  }

  /** Starts watching the record's directory (it exists: the opener read or wrote the record) and looks once. */
  async start(): Promise<void> {
    try {
      this.watcher = watch(dirname(EpochStore.pathOf(this.member)), { persistent: false }, () => void this.look());
      this.watcher.on('error', (err) => {
        trace('engine', 'info', `member ${this.member.path}: watching its epoch record failed (${describeError(err)}); it is read every ${EPOCH_POLL_MS} ms`);
        this.stopWatching(false);
      });
    } catch (err) {
      trace('engine', 'info', `member ${this.member.path}: cannot watch its epoch record (${describeError(err)}); it is read every ${EPOCH_POLL_MS} ms`);
    }
    this.timer = setInterval(() => void this.look(), EPOCH_POLL_MS);
    this.timer.unref();
    await this.look();
  }

  /** The fence, when the member was taken with a higher epoch. */
  get fenced(): FencedError | undefined {
    return this.fencedBy;
  }

  /** Reads the record and fences this device when it is above this engine's epoch. */
  look(): Promise<void> {
    if (this.fencedBy !== undefined || this.released !== undefined) return Promise.resolve();
    if (this.looking !== undefined) {
      this.again = true;
      return this.looking;
    }
    this.looking = (async () => {
      do {
        this.again = false;
        let stored: bigint | undefined;
        try {
          stored = await this.store.read(this.member);
        } catch (err) {
          // Unreadable now (being replaced, a disk error): the next look tries again.
          trace('engine', 'error', `member ${this.member.path}: ${describeError(err)}`);
          continue;
        }
        if (stored !== undefined && stored > this.epoch) {
          this.fence(stored);
          return;
        }
      } while (this.again);
    })().finally(() => {
      this.looking = undefined;
    });
    return this.looking;
  }

  private fence(stored: bigint): void {
    this.fencedBy = new FencedError(`fenced: member ${this.member.path} has accepted epoch ${stored}; this engine presented ${this.epoch}`);
    trace('engine', 'info', this.fencedBy.message);
    this.stopWatching(true);
    if (this.inFlight === 0) void this.release();
  }

  private release(): Promise<void> {
    this.released ??= this.file.close().catch((err: unknown) => {
      trace('engine', 'error', `member ${this.member.path}: closing it after the fence: ${describeError(err)}`);
    });
    return this.released;
  }

  private stopWatching(timerToo: boolean): void {
    this.watcher?.close();
    this.watcher = undefined;
    if (timerToo && this.timer !== undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private async gated<T>(call: () => Promise<T>): Promise<T> {
    if (this.fencedBy !== undefined) throw this.fencedBy;
    this.inFlight++;
    try {
      return await call();
    } finally {
      this.inFlight--;
      if (this.fencedBy !== undefined && this.inFlight === 0) void this.release();
    }
  }

  override read(offset: number, length: number): Promise<Buffer> {
    return this.gated(() => this.inner.read(offset, length));
  }

  override readInto(offset: number, out: Buffer): Promise<void> {
    return this.gated(() => this.inner.readInto!(offset, out));
  }

  /** Fenced: not now, so the caller takes read(), which rejects. */
  override readNow(offset: number, out: Buffer): boolean {
    return this.fencedBy === undefined && this.inner.readNow!(offset, out);
  }

  override write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    return this.gated(() => this.inner.write(offset, data, options));
  }

  override writev(offset: number, parts: readonly Uint8Array[], options?: WriteOptions): Promise<void> {
    return this.gated(() => this.inner.writev!(offset, parts, options));
  }

  override writeNow(offset: number, parts: readonly Uint8Array[], options?: WriteOptions): boolean {
    return this.fencedBy === undefined && this.inner.writeNow!(offset, parts, options);
  }

  override flush(): Promise<void> {
    return this.gated(() => this.inner.flush());
  }

  override discard(offset: number, length: number): Promise<void> {
    return this.gated(() => this.inner.discard(offset, length));
  }

  override writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    return this.gated(() => this.inner.writeZeroes(offset, length, options));
  }

  override extents(offset: number, length: number): Promise<Extent[]> {
    return this.gated(() => this.inner.extents!(offset, length));
  }

  override grow(size: number): Promise<void> {
    return this.gated(() => this.inner.grow!(size));
  }

  override async health(): Promise<string | undefined> {
    // A rejection, as the requests': the array is fenced, never degraded, even while idle.
    if (this.fencedBy !== undefined) throw this.fencedBy;
    return this.inner.health!();
  }

  override close(): Promise<void> {
    this.stopWatching(true);
    return this.release();
  }
}
