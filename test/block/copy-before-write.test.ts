// A copy of a file at one instant made while the file is written (block/copy-before-write.ts),
// on a real XFS with reflink in a loop file: whatever is written during the copy, through
// whichever FileDevice of the file and whichever of its write paths, the copy holds the file as
// it was when the copy started, and the file holds every write. Random writes during the
// background pass (a property, against the bytes); a failed copy fails no write; a filesystem
// that cannot clone refuses at the start.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { CopyBeforeWrite } from '../../src/block/copy-before-write.js';
import { FileDevice } from '../../src/block/file-device.js';
import { mountReflinkFs, type ReflinkFs } from '../support/reflink-fs.js';

const MiB = 1024 * 1024;
const SIZE = 24 * MiB;
let disk: ReflinkFs;

before(async () => {
  disk = await mountReflinkFs('copy-before-write', '1G');
});

after(async () => {
  await disk?.close();
});

/** Deterministic bytes for a source file: different in every 4 KiB block. */
function pattern(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  for (let at = 0; at < size; at += 4096) b.fill((at / 4096 + seed) % 251, at, at + 4096);
  return b;
}

interface Write { offset: number; length: number; way: 'write' | 'writev' | 'writeNow' | 'zero' }

const writeArb = fc.record({
  offset: fc.integer({ min: 0, max: SIZE - 1 }),
  length: fc.integer({ min: 1, max: 3 * MiB }),
  way: fc.constantFrom<Write['way']>('write', 'writev', 'writeNow', 'zero'),
}).map((w) => ({ ...w, length: Math.min(w.length, SIZE - w.offset) }));

test('the copy holds the file as it was at the start, whatever is written during the background pass', async () => {
  let round = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(writeArb, { minLength: 1, maxLength: 24 }), fc.integer({ min: 1, max: 4 }), async (writes, everyNth) => {
      round++;
      const src = path.join(disk.dir, `src-${round}.img`);
      const dst = path.join(disk.dir, `dst-${round}.img`);
      const before = pattern(SIZE, round);
      await fs.writeFile(src, before);
      const expected = Buffer.from(before);
      // Two devices of the file, one opened after the copy started: both are covered.
      const a = await FileDevice.open(src);
      const copy = await CopyBeforeWrite.start(src, dst, { pieceBytes: 2 * MiB });
      const b = await FileDevice.open(src);
      try {
        const running = copy.run();
        for (const [i, w] of writes.entries()) {
          const dev = i % 2 === 0 ? a : b;
          const data = Buffer.alloc(w.length, 0x80 + (i % 100));
          if (w.way === 'write') await dev.write(w.offset, data);
          else if (w.way === 'writev') await dev.writev!(w.offset, [data.subarray(0, w.length >> 1), data.subarray(w.length >> 1)]);
          else if (w.way === 'writeNow') {
            if (!dev.writeNow!(w.offset, [data])) await dev.write(w.offset, data);
          } else {
            data.fill(0);
            await dev.writeZeroes(w.offset, w.length);
          }
          data.copy(expected, w.offset);
          // Let the background pass go on between some of the writes.
          if (i % everyNth === 0) await new Promise((r) => setImmediate(r));
        }
        await running;
        assert.ok(copy.done);
        assert.ok((await fs.readFile(dst)).equals(before), 'the copy is the file at the start');
        assert.ok((await fs.readFile(src)).equals(expected), 'the file holds every write');
      } finally {
        await a.close();
        await b.close();
        await fs.rm(src, { force: true });
        await fs.rm(dst, { force: true });
      }
    }),
    { numRuns: 12 },
  );
});

test('after the copy, writes no longer clone; a second copy of a file being copied is refused', async () => {
  const src = path.join(disk.dir, 'busy.img');
  await fs.writeFile(src, pattern(4 * MiB, 7));
  const copy = await CopyBeforeWrite.start(src, path.join(disk.dir, 'busy-1.img'));
  await assert.rejects(CopyBeforeWrite.start(src, path.join(disk.dir, 'busy-2.img')), { code: 'EBUSY' });
  await copy.run();
  const dev = await FileDevice.open(src);
  await dev.write(0, Buffer.alloc(4096, 0xee));
  await dev.close();
  assert.ok((await fs.readFile(path.join(disk.dir, 'busy-1.img'))).equals(pattern(4 * MiB, 7)));
  await assert.rejects(CopyBeforeWrite.start(src, path.join(disk.dir, 'busy-1.img')), { code: 'EEXIST' }, 'the target must be new');
});

test('an aborted copy fails its run, not the writes; writes after it change only the file', async () => {
  const src = path.join(disk.dir, 'abort.img');
  const dst = path.join(disk.dir, 'abort-copy.img');
  await fs.writeFile(src, pattern(16 * MiB, 3));
  const copy = await CopyBeforeWrite.start(src, dst, { pieceBytes: MiB });
  const running = copy.run();
  running.catch(() => undefined);
  const dev = await FileDevice.open(src);
  copy.abort(new Error('snapshot deleted'));
  await dev.write(10 * MiB, Buffer.alloc(MiB, 0x11));
  await assert.rejects(running, /snapshot deleted/);
  assert.ok((await fs.readFile(src)).subarray(10 * MiB, 11 * MiB).equals(Buffer.alloc(MiB, 0x11)));
  await dev.close();
});

test('a file on a filesystem that cannot clone is refused at the start, its target removed', async () => {
  const dir = await fs.mkdtemp('/dev/shm/llraid-cbw-');
  try {
    const src = path.join(dir, 'src.img');
    await fs.writeFile(src, pattern(2 * MiB, 1));
    await assert.rejects(CopyBeforeWrite.start(src, path.join(dir, 'dst.img')), { code: 'ENOTSUP' });
    assert.deepEqual(await fs.readdir(dir), ['src.img']);
    // The registry holds nothing: writes go on.
    const dev = await FileDevice.open(src);
    await dev.write(0, Buffer.alloc(4096, 1));
    await dev.close();
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
