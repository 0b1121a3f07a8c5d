// FileDevice zeroing and its capabilities: a regular file zeroes large ranges with fallocate
// (a sparse file is punched, a thick one zeroed in place and keeps its blocks), which is what a
// fast zero (NBD_CMD_FLAG_FAST_ZERO) may use; where only writing the zeroes would do, a fast
// zero is refused at once with ENOTSUP and the range keeps its data.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileDevice } from '../../src/block/file-device.js';
import { isBlockError } from '../../src/block/errors.js';
import { tempDir } from '../support/temp-dir.js';

const MiB = 1024 * 1024;

function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 131 + seed * 17 + (i >> 9)) & 0xff || 1;
  return b;
}

/** Whether `fallocate --zero-range` works on the filesystem of `dir` (tmpfs has none). */
function zeroRangeWorks(dir: string): boolean {
  const probe = join(dir, 'probe');
  writeFileSync(probe, Buffer.alloc(MiB, 1));
  try {
    execFileSync('fallocate', ['--zero-range', '--offset', '0', '--length', String(MiB), probe], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const allocated = (path: string): number => statSync(path).blocks * 512;
const notSupported = (e: unknown): boolean => isBlockError(e, 'ENOTSUP');

test('a sparse file zeroes fast by punching a hole, and refuses a fast zero that would write, leaving the range as it was', async (t) => {
  const path = join(tempDir(t, 'zero-sparse'), 'sparse.img');
  writeFileSync(path, pattern(4 * MiB, 1));
  truncateSync(path, 8 * MiB);
  const dev = await FileDevice.open(path);
  t.after(() => dev.close());
  assert.equal(dev.thick, false);
  assert.deepEqual([dev.capabilities.fastZero, dev.capabilities.trim], [true, true]);

  const before = allocated(path);
  await dev.writeZeroes(MiB, 2 * MiB, { fast: true });
  assert.deepEqual(await dev.read(MiB, 2 * MiB), Buffer.alloc(2 * MiB));
  assert.ok(allocated(path) <= before - 2 * MiB, `the range was punched: ${before} bytes allocated before, ${allocated(path)} after`);

  // Too small to punch, or punching not allowed: only writing would do.
  await assert.rejects(dev.writeZeroes(3 * MiB, 64 * 1024, { fast: true }), notSupported);
  await assert.rejects(dev.writeZeroes(0, 2 * MiB, { fast: true, noHole: true }), notSupported);
  assert.deepEqual(await dev.read(0, MiB), pattern(4 * MiB, 1).subarray(0, MiB), 'a refused fast zero changes nothing');
  assert.deepEqual(await dev.read(3 * MiB, MiB), pattern(4 * MiB, 1).subarray(3 * MiB), 'a refused fast zero changes nothing');
  // Without `fast` the same requests are done by writing zeroes.
  await dev.writeZeroes(3 * MiB, 64 * 1024);
  await dev.writeZeroes(0, 2 * MiB, { noHole: true });
  assert.deepEqual(await dev.read(0, 2 * MiB), Buffer.alloc(2 * MiB));
  assert.deepEqual(await dev.read(3 * MiB, 64 * 1024), Buffer.alloc(64 * 1024));
});

test('a thick file zeroes fast in place and keeps its blocks, and declares no trim', async (t) => {
  const dir = tempDir(t, 'zero-thick', '/var/tmp');
  if (!zeroRangeWorks(dir)) return t.skip(`${dir} has no FALLOC_FL_ZERO_RANGE`);
  const path = join(dir, 'thick.img');
  writeFileSync(path, pattern(8 * MiB, 2));
  const dev = await FileDevice.open(path);
  t.after(() => dev.close());
  assert.equal(dev.thick, true);
  assert.deepEqual([dev.capabilities.fastZero, dev.capabilities.trim], [true, false]);
  const before = allocated(path);
  await dev.writeZeroes(2 * MiB, 4 * MiB, { fast: true, noHole: true });
  assert.deepEqual(await dev.read(2 * MiB, 4 * MiB), Buffer.alloc(4 * MiB));
  assert.deepEqual(await dev.read(6 * MiB, 2 * MiB), pattern(8 * MiB, 2).subarray(6 * MiB));
  assert.equal(allocated(path), before, 'no block was given back');
  await assert.rejects(dev.writeZeroes(0, 4096, { fast: true }), notSupported);
});

test('a thick file on a filesystem without zero range refuses a fast zero, and a plain one writes the zeroes', async (t) => {
  const dir = tempDir(t, 'zero-tmpfs', '/dev/shm');
  if (zeroRangeWorks(dir)) return t.skip(`${dir} has FALLOC_FL_ZERO_RANGE`);
  const path = join(dir, 'thick.img');
  writeFileSync(path, pattern(4 * MiB, 3));
  const dev = await FileDevice.open(path);
  t.after(() => dev.close());
  assert.equal(dev.thick, true);
  await assert.rejects(dev.writeZeroes(0, 2 * MiB, { fast: true }), notSupported);
  assert.deepEqual(await dev.read(0, 4 * MiB), pattern(4 * MiB, 3), 'a refused fast zero changes nothing');
  await dev.writeZeroes(0, 2 * MiB);
  assert.deepEqual(await dev.read(0, 2 * MiB), Buffer.alloc(2 * MiB));
  assert.deepEqual(await dev.read(2 * MiB, 2 * MiB), pattern(4 * MiB, 3).subarray(2 * MiB));
});
