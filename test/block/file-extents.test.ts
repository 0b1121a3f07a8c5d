// File extents (FS_IOC_FIEMAP) as the source of changed-block tracking between reflink clones:
// on XFS with reflink, after random writes between clones, the ranges where two clones' extents
// differ cover every byte whose contents differ (never a miss), and stay within the 4 KiB blocks
// written (tight); the pure comparison is checked against synthetic extent lists.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, constants, copyFileSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { dataRanges, differingRanges, EXTENT_UNWRITTEN, fileExtents, type ByteRange, type FileExtent } from '../../src/block/file-extents.js';
import { NotSupportedError } from '../../src/block/errors.js';
import { mountReflinkFs } from '../support/reflink-fs.js';
import { propertySeed, runProperty } from '../support/property-run.js';
import { tempDir } from '../support/temp-dir.js';

const FILE = 'test/block/file-extents.test.ts';
const SEED = propertySeed(FILE);
const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 16 * MiB;
const BLOCK = 4 * KiB;

const covered = (ranges: readonly ByteRange[], at: number): boolean => ranges.some((r) => at >= r.offset && at < r.offset + r.length);

async function extentsOf(path: string): Promise<FileExtent[]> {
  const fd = openSync(path, 'r');
  try {
    return await fileExtents(fd, 0, SIZE);
  } finally {
    closeSync(fd);
  }
}

test('between two reflink clones, the differing extents cover every changed byte and only the blocks written', async (t: TestContext) => {
  const fs = await mountReflinkFs('extents', '512M');
  t.after(() => fs.close());
  const live = join(fs.dir, 'member');
  let round = 0;
  await runProperty({
    name: 'between two reflink clones',
    file: FILE,
    seed: SEED,
    stream: 1,
    numRuns: 12,
    property: fc.asyncProperty(
      fc.array(fc.record({ block: fc.nat(SIZE / BLOCK - 1), blocks: fc.integer({ min: 1, max: 40 }) }), { maxLength: 30 }),
      fc.boolean(),
      async (writes, preallocate) => {
        round++;
        // A member as the driver makes them: written in part, the rest sparse or preallocated.
        const fd = openSync(live, 'w+');
        try {
          if (preallocate) writeSync(fd, Buffer.alloc(1), 0, 1, SIZE - 1);
          writeSync(fd, Buffer.alloc(4 * MiB, round), 0, 4 * MiB, 2 * MiB);
        } finally {
          closeSync(fd);
        }
        const base = join(fs.dir, `base-${round}`);
        const next = join(fs.dir, `next-${round}`);
        copyFileSync(live, base, constants.COPYFILE_FICLONE_FORCE);
        const written = new Set<number>();
        const wfd = openSync(live, 'r+');
        try {
          for (const w of writes) {
            const blocks = Math.min(w.blocks, SIZE / BLOCK - w.block);
            writeSync(wfd, Buffer.alloc(blocks * BLOCK, (round * 7 + w.block) % 251 + 1), 0, blocks * BLOCK, w.block * BLOCK);
            for (let b = w.block; b < w.block + blocks; b++) written.add(b);
          }
        } finally {
          closeSync(wfd);
        }
        copyFileSync(live, next, constants.COPYFILE_FICLONE_FORCE);
        const diff = differingRanges(await extentsOf(base), await extentsOf(next), 0, SIZE);
        // Both as SIZE bytes: a clone taken before a write past its end is shorter, and reads zeros there.
        const padded = (path: string): Buffer => { const out = Buffer.alloc(SIZE); readFileSync(path).copy(out); return out; };
        const [a, b] = [padded(base), padded(next)];
        for (let blk = 0; blk < SIZE / BLOCK; blk++) {
          const at = blk * BLOCK;
          if (!a.subarray(at, at + BLOCK).equals(b.subarray(at, at + BLOCK))) assert.ok(covered(diff, at), `block ${blk} changed and was not reported`);
          if (covered(diff, at)) assert.ok(written.has(blk), `block ${blk} reported but never written`);
        }
      },
    ),
  });
});

test('the data ranges of a member leave out holes and preallocated, never written space', async (t: TestContext) => {
  const fs = await mountReflinkFs('extents-data', '512M');
  t.after(() => fs.close());
  const path = join(fs.dir, 'member');
  const fd = openSync(path, 'w+');
  try {
    writeSync(fd, Buffer.alloc(64 * KiB, 1), 0, 64 * KiB, 1 * MiB);
    writeSync(fd, Buffer.alloc(1), 0, 1, SIZE - 1);
  } finally {
    closeSync(fd);
  }
  const data = dataRanges(await extentsOf(path), 0, SIZE);
  assert.ok(covered(data, 1 * MiB) && covered(data, 1 * MiB + 64 * KiB - 1));
  assert.ok(!covered(data, 0) && !covered(data, 8 * MiB), `holes are not data: ${JSON.stringify(data)}`);
});

test('a filesystem that cannot map its files is a clear NotSupported error', async (t: TestContext) => {
  const dir = tempDir(t, 'extents-shm', '/dev/shm');
  const path = join(dir, 'file');
  const fd = openSync(path, 'w+');
  try {
    writeSync(fd, Buffer.alloc(4096, 1));
    await assert.rejects(fileExtents(fd, 0, 4096), (e: unknown) => e instanceof NotSupportedError && /FIEMAP/.test(e.message));
  } finally {
    closeSync(fd);
  }
});

test('differingRanges: same address, holes against unwritten extents, and a moved block', () => {
  const e = (logical: number, physical: number, length: number, flags = 0): FileExtent => ({ logical, physical, length, flags });
  // Same data everywhere: nothing.
  assert.deepEqual(differingRanges([e(0, 1000, 100)], [e(0, 1000, 50), e(50, 1050, 50)], 0, 100), []);
  // A hole in one, an unwritten extent in the other: both read zeros.
  assert.deepEqual(differingRanges([], [e(0, 5000, 100, EXTENT_UNWRITTEN)], 0, 100), []);
  // A hole against data, and a block moved (copy on write), merged where they touch.
  assert.deepEqual(differingRanges([e(0, 1000, 60)], [e(0, 1000, 40), e(40, 9000, 20), e(60, 2000, 40)], 0, 100), [{ offset: 40, length: 60 }]);
});
