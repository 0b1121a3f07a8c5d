// An incremental block backup as a backup application builds one from changed-block tracking:
// the ranges snapshot-metadata-lister prints (allocated blocks of a snapshot, or the blocks that
// changed between two), the bytes of those ranges copied from a device holding the snapshot into
// a backup image at the same offsets, and checksums to compare an image with a device.

import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';

export interface ByteRange {
  offset: number;
  length: number;
}

/** One record of `snapshot-metadata-lister -o json` (external-snapshot-metadata pkg/iterator). */
interface ListerRecord {
  block_metadata_type?: number;
  volume_capacity_bytes?: number;
  // byte_offset and size_bytes are omitted when 0 (protobuf JSON, omitempty).
  block_metadata?: { byte_offset?: number; size_bytes?: number }[] | null;
}

export interface ListedBlocks {
  ranges: ByteRange[];
  volumeCapacityBytes: number;
  /** Sum of the ranges' lengths. */
  bytes: number;
}

/**
 * Parses the lister's JSON output (one array of records); ranges come back in order, each
 * checked to lie within the volume's capacity and not to overlap the one before.
 */
export function parseListerJson(text: string): ListedBlocks {
  const records = JSON.parse(text) as ListerRecord[];
  if (!Array.isArray(records)) throw new Error(`expected a JSON array of lister records, found ${text.slice(0, 200)}`);
  const ranges: ByteRange[] = [];
  let capacity = 0;
  for (const r of records) {
    capacity = Math.max(capacity, r.volume_capacity_bytes ?? 0);
    for (const b of r.block_metadata ?? []) ranges.push({ offset: b.byte_offset ?? 0, length: b.size_bytes ?? 0 });
  }
  let end = 0;
  for (const r of ranges) {
    if (r.length <= 0) throw new Error(`expected ranges of positive length, found ${JSON.stringify(r)}`);
    if (r.offset < end) throw new Error(`expected ordered, disjoint ranges, found ${JSON.stringify(r)} after one ending at ${end}`);
    if (capacity && r.offset + r.length > capacity) throw new Error(`expected ranges within the volume's ${capacity} bytes, found ${JSON.stringify(r)}`);
    end = r.offset + r.length;
  }
  return { ranges, volumeCapacityBytes: capacity, bytes: ranges.reduce((s, r) => s + r.length, 0) };
}

const COPY_CHUNK = 4 * 1024 * 1024;

/**
 * Copies `ranges` of `source` (a block device or file) into `target` at the same offsets; the
 * target is created if missing and never shrunk (a new one is sized to `size`, holes read as
 * zeros, as unallocated blocks of a volume do).
 */
export async function copyRanges(source: string, target: string, ranges: ByteRange[], size: number): Promise<void> {
  const src = await open(source, 'r');
  const dst = await open(target, 'a+').then(async (h) => {
    await h.close();
    return open(target, 'r+');
  });
  try {
    if ((await dst.stat()).size < size) await dst.truncate(size);
    const buf = Buffer.alloc(COPY_CHUNK);
    for (const r of ranges) {
      for (let done = 0; done < r.length;) {
        const n = Math.min(COPY_CHUNK, r.length - done);
        const { bytesRead } = await src.read(buf, 0, n, r.offset + done);
        if (bytesRead !== n) throw new Error(`${source}: expected ${n} bytes at ${r.offset + done}, read ${bytesRead}`);
        await dst.write(buf, 0, n, r.offset + done);
        done += n;
      }
    }
    await dst.sync();
  } finally {
    await src.close();
    await dst.close();
  }
}

/** sha256 (hex) of the first `length` bytes of a device or file. */
export async function sha256Prefix(path: string, length: number): Promise<string> {
  const h = createHash('sha256');
  const f = await open(path, 'r');
  try {
    const buf = Buffer.alloc(COPY_CHUNK);
    for (let done = 0; done < length;) {
      const n = Math.min(COPY_CHUNK, length - done);
      const { bytesRead } = await f.read(buf, 0, n, done);
      if (bytesRead !== n) throw new Error(`${path}: expected ${n} bytes at ${done}, read ${bytesRead}`);
      h.update(buf.subarray(0, n));
      done += n;
    }
  } finally {
    await f.close();
  }
  return h.digest('hex');
}

/** Writes `data` at each offset of a device and flushes it to the device. */
export async function writeAt(path: string, writes: { offset: number; data: Buffer }[]): Promise<void> {
  const f = await open(path, 'r+');
  try {
    for (const w of writes) {
      const { bytesWritten } = await f.write(w.data, 0, w.data.length, w.offset);
      if (bytesWritten !== w.data.length) throw new Error(`${path}: expected to write ${w.data.length} bytes at ${w.offset}, wrote ${bytesWritten}`);
    }
    await f.sync();
  } finally {
    await f.close();
  }
}
