// Where a file's bytes lie on its filesystem (FS_IOC_FIEMAP), and which ranges of two files do
// not share their blocks.
//
// This is the source of changed-block tracking for snapshots on filesystems that clone files by
// reference (XFS with reflink, btrfs). A snapshot member is a reflink clone of the live member, so
// right after the clone both map every byte to the same physical blocks. A later write to the
// live file cannot overwrite a shared block in place: the filesystem writes it elsewhere first
// (copy on write). So for two clones of the same file, a byte whose physical address is the same
// in both has not been written between them, and a byte whose address differs may have been. The
// comparison costs nothing on the write path, and the filesystem's journal keeps it true across
// crashes: there is no record of our own to keep in step.
//
// Node cannot issue ioctl(2); koffi (libc.ts) makes the call. It is made synchronously: koffi reports errno only for calls on the calling thread,
// and mapping a clone that nobody writes is a walk of the filesystem's extent tree in memory.

import { IoError, NotSupportedError } from './errors.js';
import { loadLibc } from './libc.js';

/** One mapped range of a file, in bytes. */
export interface FileExtent {
  logical: number;
  physical: number;
  length: number;
  flags: number;
}

/** fiemap_extent.fe_flags (include/uapi/linux/fiemap.h). */
export const EXTENT_LAST = 0x1;
export const EXTENT_UNKNOWN = 0x2;
export const EXTENT_DELALLOC = 0x4;
export const EXTENT_UNWRITTEN = 0x800;
export const EXTENT_SHARED = 0x2000;

/** _IOWR('f', 11, struct fiemap): the header is 32 bytes. */
const FS_IOC_FIEMAP = 0xc020660b;
const FIEMAP_FLAG_SYNC = 0x1;
const EOPNOTSUPP = 95;
const HEADER_BYTES = 32;
const EXTENT_BYTES = 56;
/** Extents asked for per call: 28 KiB of buffer. */
const BATCH = 512;

type Ioctl = (fd: number, request: number, arg: Buffer) => number;

let ioctlCall: Promise<{ ioctl: Ioctl; errno: () => number }> | undefined;

function loadIoctl(): Promise<{ ioctl: Ioctl; errno: () => number }> {
  ioctlCall ??= (async () => {
    const { koffi, libc } = await loadLibc();
    const ioctl = libc.func('int ioctl(int fd, unsigned long request, _Inout_ uint8_t *arg)') as unknown as Ioctl;
    return { ioctl, errno: () => koffi.errno() };
  })();
  return ioctlCall;
}

/**
 * The extents of the open file `fd` that overlap [start, start + length), in file order. With
 * `sync`, the file's dirty pages are written first, so delayed allocations have their addresses
 * (this blocks for as long as that writeback takes: for a file still being written).
 * Throws NotSupportedError where the filesystem cannot map its files, IoError otherwise.
 */
export async function fileExtents(fd: number, start: number, length: number, sync = false): Promise<FileExtent[]> {
  const { ioctl, errno } = await loadIoctl();
  const out: FileExtent[] = [];
  const end = start + length;
  const buf = Buffer.alloc(HEADER_BYTES + BATCH * EXTENT_BYTES);
  let at = start;
  let flags = sync ? FIEMAP_FLAG_SYNC : 0;
  while (at < end) {
    buf.fill(0);
    buf.writeBigUInt64LE(BigInt(at), 0);
    buf.writeBigUInt64LE(BigInt(end - at), 8);
    buf.writeUInt32LE(flags, 16);
    buf.writeUInt32LE(BATCH, 24);
    if (ioctl(fd, FS_IOC_FIEMAP, buf) !== 0) {
      const e = errno();
      if (e === EOPNOTSUPP) throw new NotSupportedError('this filesystem cannot map its files (FS_IOC_FIEMAP: EOPNOTSUPP)');
      throw new IoError(`FS_IOC_FIEMAP failed with errno ${e}`);
    }
    flags = 0;
    const mapped = buf.readUInt32LE(20);
    if (mapped === 0) break;
    let last = false;
    for (let i = 0; i < mapped; i++) {
      const o = HEADER_BYTES + i * EXTENT_BYTES;
      const e = {
        logical: Number(buf.readBigUInt64LE(o)),
        physical: Number(buf.readBigUInt64LE(o + 8)),
        length: Number(buf.readBigUInt64LE(o + 16)),
        flags: buf.readUInt32LE(o + 40),
      };
      out.push(e);
      last ||= (e.flags & EXTENT_LAST) !== 0;
    }
    const tail = out[out.length - 1]!;
    if (last || tail.logical + tail.length <= at) break;
    at = tail.logical + tail.length;
  }
  return out;
}

/** A byte range [offset, offset + length). */
export interface ByteRange {
  offset: number;
  length: number;
}

/** Appends a range, merging it into the last one when they touch. */
function push(ranges: ByteRange[], offset: number, length: number): void {
  if (length <= 0) return;
  const prev = ranges[ranges.length - 1];
  if (prev && prev.offset + prev.length === offset) prev.length += length;
  else ranges.push({ offset, length });
}

/**
 * What a byte reads as, judged from its extent: zeros (a hole or an unwritten extent), data at a
 * known physical address, or unknown (delayed allocation and the like: always counts as changed).
 */
type Where = { kind: 'zero' } | { kind: 'data'; delta: number } | { kind: 'unknown' };

function whereOf(e: FileExtent | undefined): Where {
  if (e === undefined || (e.flags & EXTENT_UNWRITTEN) !== 0) return { kind: 'zero' };
  if ((e.flags & (EXTENT_UNKNOWN | EXTENT_DELALLOC)) !== 0) return { kind: 'unknown' };
  return { kind: 'data', delta: e.physical - e.logical };
}

function same(a: Where, b: Where): boolean {
  if (a.kind === 'zero' && b.kind === 'zero') return true;
  return a.kind === 'data' && b.kind === 'data' && a.delta === b.delta;
}

/**
 * The ranges of [start, end) where two files' extents (each sorted, as fileExtents returns them)
 * do not put the same bytes in the same place: a superset of the bytes whose contents differ, for
 * two reflink clones of one file. Ranges that are zeros in both (holes, unwritten extents) are
 * never reported, whatever their allocation.
 */
export function differingRanges(a: readonly FileExtent[], b: readonly FileExtent[], start: number, end: number): ByteRange[] {
  const out: ByteRange[] = [];
  let i = 0;
  let j = 0;
  let at = start;
  while (at < end) {
    while (i < a.length && a[i]!.logical + a[i]!.length <= at) i++;
    while (j < b.length && b[j]!.logical + b[j]!.length <= at) j++;
    const ea = a[i] !== undefined && a[i]!.logical <= at ? a[i] : undefined;
    const eb = b[j] !== undefined && b[j]!.logical <= at ? b[j] : undefined;
    // The next point where either file's mapping may change.
    let next = end;
    for (const [list, k, cur] of [[a, i, ea], [b, j, eb]] as const) {
      if (cur) next = Math.min(next, cur.logical + cur.length);
      else if (list[k]) next = Math.min(next, list[k].logical);
    }
    if (!same(whereOf(ea), whereOf(eb))) push(out, at, next - at);
    at = next;
  }
  return out;
}

/** The ranges of [start, end) that hold data (neither holes nor unwritten extents). */
export function dataRanges(extents: readonly FileExtent[], start: number, end: number): ByteRange[] {
  const out: ByteRange[] = [];
  for (const e of extents) {
    if ((e.flags & EXTENT_UNWRITTEN) !== 0) continue;
    const from = Math.max(start, e.logical);
    const to = Math.min(end, e.logical + e.length);
    push(out, from, to - from);
  }
  return out;
}
