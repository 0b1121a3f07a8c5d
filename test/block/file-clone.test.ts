// Catching a reflink clone up with its source (block/file-clone.ts) on a real XFS with reflink in
// a loop file: after writes to the source (some still dirty in its page cache, one hole punched,
// one write past every earlier extent), the catch-up makes the clone hold the source's bytes
// exactly while cloning again little more than what was written; a second catch-up finds nothing.
// A clone made piece by piece shares every block with its source.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import { openSync, closeSync } from 'node:fs';
import { catchUpClone, cloneInPieces, writeBackPages } from '../../src/block/file-clone.js';
import { EXTENT_DELALLOC, fileExtents } from '../../src/block/file-extents.js';
import { mountReflinkFs, type ReflinkFs } from '../support/reflink-fs.js';

const MiB = 1024 * 1024;
const BLOCK = 4096;
let disk: ReflinkFs;

before(async () => {
  disk = await mountReflinkFs('file-clone', '512M');
});

after(async () => {
  await disk?.close();
});

test('a clone caught up with its source holds its bytes, having cloned again only the ranges written since', async () => {
  const src = path.join(disk.dir, 'src.img');
  const dst = path.join(disk.dir, 'dst.img');
  const h = await fs.open(src, 'w+');
  await h.truncate(64 * MiB);
  for (let at = 0; at < 64 * MiB; at += 2 * MiB) await h.write(Buffer.alloc(MiB, 1 + (at / MiB) % 200), 0, MiB, at);
  await h.datasync();
  await fs.copyFile(src, dst, constants.COPYFILE_FICLONE_FORCE);

  // Written since the clone: 4 KiB blocks (the last ones left dirty in the page cache), a hole
  // punched by truncating and growing back the tail, and a block in a range never written before.
  let written = 0;
  for (let i = 0; i < 40; i++) {
    await h.write(Buffer.alloc(BLOCK, 0xe0 + (i % 16)), 0, BLOCK, ((i * 7919) % (64 * MiB / BLOCK)) * BLOCK);
    written += BLOCK;
    if (i === 30) await h.datasync();
  }
  await h.write(Buffer.alloc(BLOCK, 0x5a), 0, BLOCK, MiB + 8 * BLOCK);
  await h.truncate(62.5 * MiB);
  await h.truncate(64 * MiB);
  written += BLOCK + MiB / 2;

  const first = await catchUpClone(src, dst);
  assert.ok(first.ranges > 0, 'the writes were found');
  assert.ok(first.bytes >= 40 * BLOCK && first.bytes <= written + 2 * MiB, `${first.bytes} bytes cloned again for ${written} written`);
  assert.ok((await fs.readFile(dst)).equals(await fs.readFile(src)), 'the clone holds the source\'s bytes');
  const again = await catchUpClone(src, dst);
  assert.deepEqual([again.ranges, again.bytes], [0, 0], 'nothing is left apart');
  // With the clone's extents known from the last catch-up, only the source is mapped.
  await h.write(Buffer.alloc(BLOCK, 0x77), 0, BLOCK, 5 * MiB);
  const known = await catchUpClone(src, dst, again.extents);
  assert.deepEqual([known.ranges, known.bytes, known.extents], [1, BLOCK, []]);
  assert.ok((await fs.readFile(dst)).equals(await fs.readFile(src)), 'caught up from the known extents');
  await h.close();

  // Written back without a sync: no delayed allocation is left to map.
  const w = await fs.open(src, 'r+');
  for (let i = 0; i < 8; i++) await w.write(Buffer.alloc(BLOCK, 0x33), 0, BLOCK, (3 + 2 * i) * MiB);
  await w.close();
  await writeBackPages(src);
  const fd = openSync(src, 'r');
  const mapped = await fileExtents(fd, 0, 64 * MiB);
  closeSync(fd);
  assert.ok(!mapped.some((e) => (e.flags & EXTENT_DELALLOC) !== 0), 'written back: every block has its address');

  // A clone made in pieces shares every block: nothing to catch up, the same bytes, the same mode.
  const pieces = path.join(disk.dir, 'pieces.img');
  await cloneInPieces(src, pieces, 4 * MiB + BLOCK);
  const fresh = await catchUpClone(src, pieces);
  assert.deepEqual([fresh.ranges, fresh.bytes], [0, 0]);
  assert.ok((await fs.readFile(pieces)).equals(await fs.readFile(src)));
  assert.equal((await fs.stat(pieces)).mode, (await fs.stat(src)).mode);
  await assert.rejects(cloneInPieces(src, pieces), { code: 'EEXIST' });

  const grown = path.join(disk.dir, 'grown.img');
  await fs.copyFile(src, grown, constants.COPYFILE_FICLONE_FORCE);
  await fs.truncate(src, 65 * MiB);
  await assert.rejects(catchUpClone(src, grown), /not a clone of it as it is now/);
});
