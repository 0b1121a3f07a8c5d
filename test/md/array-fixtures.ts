// Fixtures for array tests: sparse member files in a temp dir, deterministic data patterns, and
// direct reads of a member's data area (to check what really reached each copy).
import { openSync, readSync, closeSync, writeFileSync, truncateSync, readFileSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';

export const DATA_OFFSET = 2048 * 512;

export { tempDir } from '../support/temp-dir.js';

/** `n` sparse files of `size` bytes in `dir`. */
export function memberFiles(dir: string, n: number, size: number, prefix = 'm'): string[] {
  return Array.from({ length: n }, (_, i) => {
    const p = join(dir, `${prefix}${i}.img`);
    writeFileSync(p, '');
    truncateSync(p, size);
    return p;
  });
}

/** Deterministic bytes that differ per seed and per position. */
export function pattern(seed: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b.writeUInt32LE(x, i);
  }
  return b;
}

export function readMember(path: string, offset: number, length: number): Buffer {
  return readAt(path, DATA_OFFSET + offset, length);
}

/** Reads `length` bytes at `offset` of a member file itself (superblock, bitmap, data alike). */
export function readAt(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(length);
    readSync(fd, b, 0, length, offset);
    return b;
  } finally {
    closeSync(fd);
  }
}

/** Overwrites bytes of a member's data area behind the array's back (a silent divergence). */
export function pokeMember(path: string, offset: number, data: Buffer): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, data, 0, data.length, DATA_OFFSET + offset);
  } finally {
    closeSync(fd);
  }
}

export function fileHash(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Writes `chunks` (a pattern per seed and chunk) through `array` and remembers what each holds. */
export async function writeChunks(
  array: { write(offset: number, data: Buffer): Promise<void> }, chunks: number[], seed: number, truth: Map<number, Buffer>, chunkSize = 64 * 1024,
): Promise<void> {
  await Promise.all(chunks.map(async (c) => {
    const data = pattern(seed * 100_000 + c, chunkSize);
    await array.write(c * chunkSize, data);
    truth.set(c, data);
  }));
}
