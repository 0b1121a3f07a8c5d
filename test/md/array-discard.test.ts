// Discard and the allocation map on real files (llbitmap.md E7): a discard turns the chunks it
// fully covers back to Unwritten, partial chunks keep their state, and extents() reports
// Unwritten chunks as holes so NBD BLOCK_STATUS can skip them.
import { test } from 'node:test';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { createArray } from '../../src/md/index.js';
import { DATA_OFFSET, memberFiles, pattern, tempDir } from './array-fixtures.js';

const CHUNK = 64 * 1024;

test('extents report never-written chunks as holes and written ones as data', async (t) => {
  const paths = memberFiles(tempDir(t), 2, 64 << 20);
  const a = await createArray({ name: 'ext', level: 1, members: paths });
  t.after(() => a.stop());
  // One chunk per 512-byte bitmap block: a second dirtying in one block would infect the block.
  await a.write(2 * CHUNK + 100, pattern(1, 1000));
  await a.write(600 * CHUNK, pattern(2, CHUNK));
  assert.deepEqual(await a.extents(0, 8 * CHUNK), [
    { length: 2 * CHUNK, hole: true, zero: false },
    { length: CHUNK, hole: false, zero: false },
    { length: 5 * CHUNK, hole: true, zero: false },
  ]);
  assert.deepEqual((await a.extents(599 * CHUNK, 3 * CHUNK)).map((e) => [e.length / CHUNK, e.hole]), [[1, true], [1, false], [1, true]]);
  const all = await a.extents(0, a.size);
  assert.equal(all.reduce((n, e) => n + e.length, 0), a.size, 'extents cover the range exactly');
  const partial = await a.extents(CHUNK + 10, 100);
  assert.deepEqual(partial, [{ length: 100, hole: true, zero: false }]);
});

test('a discard makes fully covered chunks Unwritten and leaves partially covered ones alone', async (t) => {
  const paths = memberFiles(tempDir(t), 2, 64 << 20);
  const a = await createArray({ name: 'disc', level: 1, members: paths });
  t.after(() => a.stop());
  await a.write(0, pattern(3, 6 * CHUNK));
  const written = a.status().bitmap.counts;
  assert.ok(written.unwritten <= Math.ceil(a.size / CHUNK) - 6);
  // [CHUNK/2, 4.5 CHUNK) covers chunks 1, 2 and 3 fully, 0 and 4 in part.
  await a.discard(CHUNK / 2, 4 * CHUNK);
  assert.equal(a.status().bitmap.counts.unwritten, written.unwritten + 3);
  assert.deepEqual((await a.extents(0, 6 * CHUNK)).map((e) => [e.length / CHUNK, e.hole]), [[1, false], [3, true], [2, false]]);
  // Data outside the fully discarded chunks is intact.
  assert.deepEqual(await a.read(0, CHUNK / 2), pattern(3, 6 * CHUNK).subarray(0, CHUNK / 2));
  assert.deepEqual(await a.read(5 * CHUNK, CHUNK), pattern(3, 6 * CHUNK).subarray(5 * CHUNK));
});

/** sha256 of a member's metadata area (superblock and bitmap, below DATA_OFFSET) and of its data area. */
function memberAreas(path: string): { member: string; metadata: string; data: string } {
  const bytes = readFileSync(path);
  const hash = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  return { member: path, metadata: hash(bytes.subarray(0, DATA_OFFSET)), data: hash(bytes.subarray(DATA_OFFSET)) };
}

test('requests outside the array are refused with a range error and touch nothing', async (t) => {
  const paths = memberFiles(tempDir(t), 2, 16 << 20);
  const a = await createArray({ name: 'range', level: 1, members: paths });
  t.after(() => a.stop());
  const before = paths.map(memberAreas);
  // Not zeroes: a write that landed its in-range half before refusing would not show on a sparse file.
  await assert.rejects(a.write(a.size - 512, pattern(4, 1024)), (e: Error & { code?: string }) => e.code === 'ERANGE');
  await assert.rejects(a.read(-1, 10), (e: Error & { code?: string }) => e.code === 'EINVAL');
  await assert.rejects(a.discard(a.size, 1), (e: Error & { code?: string }) => e.code === 'ERANGE');
  assert.equal(a.status().bitmap.counts.dirty, 0);
  assert.deepEqual(paths.map(memberAreas), before, 'no byte of any member changed, in the data area or the superblock and bitmap');
});

test('a stopped array refuses I/O with a shutdown error', async (t) => {
  const paths = memberFiles(tempDir(t), 2, 16 << 20);
  const a = await createArray({ name: 'shut', level: 1, members: paths });
  await a.stop();
  await assert.rejects(a.read(0, 512), (e: Error & { code?: string }) => e.code === 'ESHUTDOWN');
});
