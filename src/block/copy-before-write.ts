// A copy of a file as it was at one instant, made while the file goes on being written: a
// snapshot's cut (docs/architecture.md, "Snapshots and copies of volumes"). The copy is a reflink
// clone of the file, made granule by granule in the background; a write to a granule the copy
// does not hold yet first clones that granule into it (copy before write, as a device-mapper
// snapshot origin copies a chunk out before its first write). Which bytes the copy holds is then
// decided by the instant the copy started, not by how long the copy takes.
//
// A copy is registered by its file's identity (dev:ino, fileIdOf), and every FileDevice of this
// process asks the registry before it changes bytes of a file (write, zeroing, discard): every
// opener of the file is covered, whenever it opened it (a member re-added during the copy is a
// new FileDevice of the same file). With no copy registered that is one size check per write.
//
// Everything runs on the event loop's thread, the clones too (FICLONERANGE, synchronously): a
// granule is marked copied only once its clone returned, and a write is issued only once every
// granule it changes is marked, so no clone of a granule ever runs beside a write to it. Writes
// issued before the copy started are the caller's to drain (the engine starts copies inside a
// quiesce). A clone costs its filesystem transaction plus writing back the granule's dirty pages
// (the filesystem does that first), so the background pass clones PIECE_BYTES at a time and lets
// the loop run between pieces: each piece writes back only its own range's pages.
//
// A failed clone (no space for the clone's metadata, an I/O error) fails the copy, never the
// write that asked for it: the copy unregisters, writes go on as if there were none, and run()
// rejects with the cause.

import { closeSync, fstatSync, ftruncateSync, openSync, unlinkSync } from 'node:fs';
import { BusyError, InvalidRequestError } from './errors.js';
import { loadRangeCloner, type RangeCloner } from './file-clone.js';
import { fileIdOf } from './file-device.js';
import { fsync } from '../common/callback-fs.js';

/** The unit the copy tracks: a write to a granule not yet copied clones the whole granule first. */
export const GRANULE_BYTES = 1024 * 1024;
/** What the background pass clones at once: one filesystem transaction per extent in it. */
export const PIECE_BYTES = 8 * 1024 * 1024;

const copies = new Map<string, CopyBeforeWrite>();

/**
 * Called by FileDevice before it changes `length` bytes at `offset` of the file `fileId`: when
 * a copy of that file is being made, the granules the change touches are in the copy on return.
 * Never throws (a clone that fails fails the copy, not the write).
 */
export function beforeChange(fileId: string, offset: number, length: number): void {
  if (copies.size === 0) return;
  copies.get(fileId)?.preserve(offset, length);
}

export interface CopyOptions {
  granuleBytes?: number;
  pieceBytes?: number;
}

export class CopyBeforeWrite {
  /** One byte per granule: 1 once the copy holds it as it was at the start. */
  private readonly copied: Uint8Array;
  private copiedCount = 0;
  /** The next granule the background pass looks at. */
  private cursor = 0;
  private failure: unknown;
  private running = false;
  /** The longest one clone held the thread (and the writes waiting on it), in ms. */
  longestCloneMs = 0;
  private closed = false;
  private readonly granule: number;
  private readonly piece: number;

  private constructor(
    readonly source: string,
    readonly target: string,
    private readonly srcFd: number,
    private readonly dstFd: number,
    private readonly fileId: string,
    /** The source's size at the start: the copy's size; bytes past it are not copied. */
    readonly size: number,
    private readonly clone: RangeCloner,
    options: CopyOptions,
  ) {
    this.granule = options.granuleBytes ?? GRANULE_BYTES;
    this.piece = Math.max(this.granule, options.pieceBytes ?? PIECE_BYTES);
    this.copied = new Uint8Array(Math.ceil(size / this.granule));
  }

  /**
   * Starts a copy of `source` (a regular file) into `target`, a new file of the same size (it
   * must not exist): from now on the copy holds `source` as it is at this call, whatever is
   * written after. The caller must not let any write to `source` be in flight across this call.
   * BusyError when a copy of the same file is already being made; NotSupportedError when its
   * filesystem cannot clone (the first granule is cloned here), the target removed again.
   */
  static async start(source: string, target: string, options: CopyOptions = {}): Promise<CopyBeforeWrite> {
    const granule = options.granuleBytes ?? GRANULE_BYTES;
    if (!Number.isSafeInteger(granule) || granule < 4096 || granule % 4096 !== 0) {
      throw new InvalidRequestError(`copy of ${source}: a granule of ${granule} bytes is not a positive multiple of 4096`);
    }
    // Loaded before any descriptor is opened: from the registration on, every step is synchronous.
    const clone = await loadRangeCloner();
    const srcFd = openSync(source, 'r');
    let dstFd = -1;
    try {
      const st = fstatSync(srcFd);
      if (!st.isFile()) throw new InvalidRequestError(`copy of ${source}: not a regular file (only files can be cloned)`);
      const id = fileIdOf(st);
      if (copies.has(id)) throw new BusyError(`copy of ${source}: a copy of this file is already being made (into ${copies.get(id)!.target})`);
      dstFd = openSync(target, 'wx', st.mode & 0o777);
      ftruncateSync(dstFd, st.size);
      const copy = new CopyBeforeWrite(source, target, srcFd, dstFd, id, st.size, clone, options);
      // The first granule at once: a filesystem that cannot clone says so here, not in run().
      if (copy.copied.length > 0) clone(srcFd, dstFd, 0, Math.min(st.size, granule));
      copy.copied[0] = 1;
      copy.copiedCount = Math.min(1, copy.copied.length);
      copies.set(id, copy);
      return copy;
    } catch (err) {
      if (dstFd >= 0) {
        closeSync(dstFd);
        unlinkSync(target);
      }
      closeSync(srcFd);
      throw err;
    }
  }

  get copiedBytes(): number {
    return Math.min(this.size, this.copiedCount * this.granule);
  }

  get done(): boolean {
    return this.copiedCount === this.copied.length;
  }

  /** Makes the copy hold every granule `[offset, offset + length)` touches (a write is about to change them). */
  preserve(offset: number, length: number): void {
    if (this.failure !== undefined || offset >= this.size || length <= 0) return;
    const first = Math.floor(offset / this.granule);
    const last = Math.min(this.copied.length, Math.ceil((offset + length) / this.granule)) - 1;
    for (let g = first; g <= last; g++) {
      if (this.copied[g] === 1) continue;
      // A run of granules not yet copied: one clone.
      let end = g + 1;
      while (end <= last && this.copied[end] === 0) end++;
      if (!this.cloneGranules(g, end)) return;
      g = end - 1;
    }
  }

  /**
   * Clones the rest of the file piece by piece, letting the loop run between pieces, then makes
   * the copy durable (fsync: its extent map). Resolves when the copy holds the whole file as it
   * was at the start; rejects with what failed it (a clone, the fsync, abort()). The copy is
   * unregistered either way; the caller removes a failed copy's target.
   */
  async run(): Promise<void> {
    this.running = true;
    try {
      const granulesPerPiece = this.piece / this.granule;
      while (this.failure === undefined && this.cursor < this.copied.length) {
        while (this.cursor < this.copied.length && this.copied[this.cursor] === 1) this.cursor++;
        if (this.cursor === this.copied.length) break;
        let end = this.cursor + 1;
        while (end < this.copied.length && end - this.cursor < granulesPerPiece && this.copied[end] === 0) end++;
        this.cloneGranules(this.cursor, end);
        await new Promise((r) => setImmediate(r));
      }
      if (this.failure !== undefined) throw this.failure;
      // Nothing changes the copy from here on: writes to the source need nothing more of it.
      copies.delete(this.fileId);
      await fsync(this.dstFd);
    } finally {
      this.close();
    }
  }

  /** Stops the copy: writes no longer wait for it, and run() rejects with `cause` (or, not running, it is closed now). */
  abort(cause: Error): void {
    this.fail(cause);
    if (!this.running) this.close();
  }

  /** Clones granules [from, to); false when it failed (the copy is then failed). */
  private cloneGranules(from: number, to: number): boolean {
    const offset = from * this.granule;
    const length = Math.min(this.size, to * this.granule) - offset;
    const t0 = performance.now();
    try {
      this.clone(this.srcFd, this.dstFd, offset, length);
      this.longestCloneMs = Math.max(this.longestCloneMs, performance.now() - t0);
    } catch (err) {
      this.fail(err);
      return false;
    }
    this.copied.fill(1, from, to);
    this.copiedCount += to - from;
    return true;
  }

  private fail(cause: unknown): void {
    this.failure ??= cause;
    if (copies.get(this.fileId) === this) copies.delete(this.fileId);
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    if (copies.get(this.fileId) === this) copies.delete(this.fileId);
    closeSync(this.dstFd);
    closeSync(this.srcFd);
  }
}
