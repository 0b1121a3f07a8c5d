// I/O over a set of copies of one byte range, shared by raid1 (one range, a copy per member) and
// raid10 (a range per chunk, near_copies copies each): read one copy with fallback, fan a write
// out to every copy, the synchronous fast paths of both (one copy read now, every copy written
// now), and the sync step that makes copies equal.
//
// Success rule (DESIGN.md §4): a write resolves once every copy has answered (as DRBD's protocol
// C: each in_sync member holds it, or failed and the others' superblocks say so), and succeeds
// when at least one in_sync copy took it. A member I/O error has already failed that member
// (MemberSet invariant); any other error (EFENCED among them) is re-thrown.
//
// Reads go to write-mostly members (remote ones) only when no other in-sync copy can serve.

import { SECTOR } from '../block/block-device.js';
import type { WriteOptions } from '../block/block-device.js';
import { BufferPool } from '../block/buffer-pool.js';
import { MdError } from './errors.js';
import type { MemberSet, SyncWindowResult } from './personality.js';
import type { SyncMode } from './types.js';
import type { Copy, ReadBalancer } from './read-balance.js';

/** The sync step's read buffers, reused from window to window (see BufferPool). */
const syncBuffers = new BufferPool();
/**
 * Every sync read buffer is at least this big (the sync thread's largest window) and a window
 * uses its first bytes: a bitmap-guided pass has windows of every size, and a pool of one size
 * per window would allocate (and page-fault, and collect) a fresh buffer for nearly every window.
 */
const SYNC_BUFFER = 1024 * 1024;

/**
 * What a request was, for the error it may end in: formatted only then. A label formatted per
 * request (two offsets as decimal text) cost more than the rest of a write's bookkeeping.
 */
export type Label = () => string;

/**
 * Reads `length` bytes from the best in_sync copy, falling back to the others on failure;
 * write-mostly copies come last, whatever the balancer thinks of them.
 */
export function readCopies(
  members: MemberSet, balancer: ReadBalancer, copies: readonly Copy[], length: number, what: Label,
): Promise<Buffer> {
  return readSomeCopy(members, balancer, copies, length, what, (c) => members.read(c.role, c.offset, length));
}

/** readCopies into `out` (a part of a larger read): no buffer of its own, nothing copied. */
export async function readCopiesInto(
  members: MemberSet, balancer: ReadBalancer, copies: readonly Copy[], out: Buffer, what: Label,
): Promise<void> {
  await readSomeCopy(members, balancer, copies, out.length, what, (c) => members.readInto(c.role, c.offset, out));
}

async function readSomeCopy<T>(
  members: MemberSet, balancer: ReadBalancer, copies: readonly Copy[], length: number, what: Label, read: (copy: Copy) => Promise<T>,
): Promise<T> {
  let candidates = balancer.rank(copies.filter((c) => members.state(c.role) === 'in_sync'));
  const writeMostly = members.writeMostly;
  if (writeMostly !== undefined && candidates.some((c) => writeMostly(c.role))) {
    candidates = [...candidates.filter((c) => !writeMostly(c.role)), ...candidates.filter((c) => writeMostly(c.role))];
  }
  for (const copy of candidates) {
    if (members.state(copy.role) !== 'in_sync') continue;
    balancer.begin(copy, length);
    try {
      return await read(copy);
    } catch (err) {
      if (members.state(copy.role) !== 'missing') throw err;
    } finally {
      balancer.end(copy);
    }
  }
  throw new MdError('EIO', `${what()}: no in-sync copy could be read`);
}

/**
 * The synchronous fast path of readCopies: the best in_sync copy that is not write-mostly, by
 * the balancer's ranking, read now when its device can. False (nothing else tried: the caller's
 * readCopies falls back as it does) when only write-mostly copies are in sync, or that device
 * cannot now or failed (then failing, as MemberSet.readNow says).
 */
export function readCopyNow(members: MemberSet, balancer: ReadBalancer, copies: readonly Copy[], out: Buffer): boolean {
  if (members.readNow === undefined) return false;
  let best: Copy | undefined;
  for (const c of copies) {
    if (members.state(c.role) !== 'in_sync' || members.writeMostly?.(c.role) === true) continue;
    if (best === undefined || balancer.compare(c.role, c.offset, best.role, best.offset) < 0) best = c;
  }
  if (best === undefined || !members.readNow(best.role, best.offset, out)) return false;
  balancer.issuedNow(best.role, best.offset, out.length);
  return true;
}

/**
 * The synchronous fast path of writeCopies: every copy written now, one after the other on this
 * thread, when every copy's role is in_sync (the success rule then holds with every copy taken).
 * False as soon as one cannot (or failed): the caller's writeCopies writes every copy again,
 * the same bytes.
 */
export function writeCopiesNow(members: MemberSet, copies: readonly Copy[], parts: readonly Uint8Array[]): boolean {
  if (members.writeNow === undefined) return false;
  for (const c of copies) if (members.state(c.role) !== 'in_sync') return false;
  for (const c of copies) if (!members.writeNow(c.role, c.offset, parts)) return false;
  return true;
}

/**
 * Runs `op` on every copy whose role takes writes (in_sync or rebuilding), in parallel.
 * Resolves when all finished and at least one in_sync copy succeeded.
 */
export async function fanOut(
  members: MemberSet, copies: readonly Copy[], what: Label, op: (copy: Copy) => Promise<void>,
): Promise<void> {
  const targets = copies.filter((c) => members.state(c.role) !== 'missing');
  const wasInSync = targets.map((c) => members.state(c.role) === 'in_sync');
  const results = await Promise.allSettled(targets.map(op));
  let good = 0;
  for (const [i, r] of results.entries()) {
    const copy = targets[i] as Copy;
    if (r.status === 'fulfilled') {
      if (wasInSync[i]) good++;
    } else if (members.state(copy.role) !== 'missing') {
      throw r.reason;
    }
  }
  if (good === 0) throw new MdError('EIO', `${what()}: no in-sync copy took the write`);
}

export function writeCopies(
  members: MemberSet, copies: readonly Copy[], data: Uint8Array, options: WriteOptions | undefined, what: Label,
): Promise<void> {
  return fanOut(members, copies, what, (c) => members.write(c.role, c.offset, data, options));
}

/**
 * The granule a resync rewrites: after a crash mirrors differ in the few pages whose writes were
 * in flight, and rewriting only those (not the whole window, up to 1 MiB) keeps a pass over
 * scattered differences from writing nearly every byte it reads.
 */
const REWRITE_UNIT = 4096;

/**
 * The byte ranges, in whole units of `unit`, in which `a` and `b` differ; neighbouring units join
 * into one range.
 */
export function differingRanges(a: Buffer, b: Buffer, unit: number): { start: number; end: number }[] {
  const ranges: { start: number; end: number }[] = [];
  for (let off = 0; off < a.length; off += unit) {
    const end = Math.min(off + unit, a.length);
    if (a.compare(b, off, end, off, end) === 0) continue;
    const last = ranges[ranges.length - 1];
    if (last?.end === off) last.end = end;
    else ranges.push({ start: off, end });
  }
  return ranges;
}

/** 512-byte sectors in which `a` and `b` differ, looking only inside `ranges` (differingRanges). */
function mismatchedSectors(a: Buffer, b: Buffer, ranges: readonly { start: number; end: number }[]): number {
  let n = 0;
  for (const { start, end } of ranges) {
    for (let off = start; off < end; off += SECTOR) {
      const stop = Math.min(off + SECTOR, end);
      if (a.compare(b, off, stop, off, stop) !== 0) n++;
    }
  }
  return n;
}

/**
 * One sync step over the copies of one range.
 * resync/repair: copies that differ from the first readable in_sync copy are rewritten from it.
 * check: differences are counted only. recovery: rebuilding copies are written from an in_sync one;
 * with two or more in_sync copies they are first made equal as a resync would, because the pass
 * ends the window's chunks Clean: a chunk NeedSync after an unclean stop (its in_sync copies may
 * differ) would otherwise lose the resync it is owed, and reads would return either copy.
 */
export async function syncCopies(
  members: MemberSet, balancer: ReadBalancer, mode: SyncMode, copies: readonly Copy[], length: number, what: Label,
): Promise<SyncWindowResult> {
  const result: SyncWindowResult = { mismatches: 0, bytesWritten: 0 };
  const targets = mode === 'recovery' ? copies.filter((c) => members.state(c.role) === 'rebuilding') : [];
  if (mode === 'recovery' && targets.length === 0) return result;
  const inSync = copies.filter((c) => members.state(c.role) === 'in_sync');
  if (mode === 'recovery' && inSync.length < 2) {
    const data = await readCopies(members, balancer, copies, length, what);
    await Promise.all(targets.map(async (c) => {
      await members.write(c.role, c.offset, data);
      result.bytesWritten += length;
    }));
    return result;
  }
  const pooled = inSync.map(() => syncBuffers.take(Math.max(length, SYNC_BUFFER)));
  const buffers = pooled.map((b) => b.subarray(0, length));
  try {
    const reads = await Promise.allSettled(inSync.map((c, i) => members.readInto(c.role, c.offset, buffers[i]!)));
    const good: { copy: Copy; data: Buffer }[] = [];
    for (const [i, r] of reads.entries()) {
      const copy = inSync[i] as Copy;
      if (r.status === 'fulfilled') good.push({ copy, data: buffers[i]! });
      else if (members.state(copy.role) !== 'missing') throw r.reason;
    }
    const source = good[0];
    if (source === undefined) throw new MdError('EIO', `${what()}: no in-sync copy could be read`);
    const unit = members.blockSize * Math.ceil(REWRITE_UNIT / members.blockSize);
    const differing = good.slice(1).filter((g) => !g.data.equals(source.data))
      .map((d) => ({ ...d, ranges: differingRanges(source.data, d.data, unit) }));
    for (const d of differing) result.mismatches += mismatchedSectors(source.data, d.data, d.ranges);
    if (mode === 'check') return result;
    // Settled, not just resolved: no write may still use the buffers when they go back.
    const writes = await Promise.allSettled([
      ...differing.flatMap((d) => d.ranges.map(async ({ start, end }) => {
        await members.write(d.copy.role, d.copy.offset + start, source.data.subarray(start, end));
        result.bytesWritten += end - start;
      })),
      ...targets.map(async (c) => {
        await members.write(c.role, c.offset, source.data);
        result.bytesWritten += length;
      }),
    ]);
    const failed = writes.find((w) => w.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  } finally {
    // Every read and write above has settled by now, whichever way this block is left.
    for (const b of pooled) syncBuffers.give(b);
  }
  return result;
}
