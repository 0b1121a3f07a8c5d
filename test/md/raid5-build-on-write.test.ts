// A write to a raid5/raid6 chunk whose parity is not valid yet (a new array's Unwritten chunks)
// builds the parity of the bitmap chunks it touched before it ends (StripeEngine #buildAround),
// so the next small write there is a read-modify-write done now, not another reconstruct-write
// waiting for the lazy pass. Members start full of other bytes, so a build that skipped the
// parity writes would leave P (and Q) wrong, which the checks below compute from the members.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { openSync, writeSync, closeSync } from 'node:fs';
import { createArray, type MdArray } from '../../src/md/index.js';
import { ParityLayout } from '../../src/md/parity/layout.js';
import type { StripeStats } from '../../src/md/parity/stripe-engine.js';
import { computePQ } from '../../src/md/parity/syndrome.js';
import { FileDevice } from '../../src/block/file-device.js';
import { DATA_OFFSET, memberFiles, pattern, tempDir } from './array-fixtures.js';

const MiB = 1024 * 1024;
const CHUNK = 256 * 1024;
const UNIT = 64 * 1024;
const MEMBER = 16 * MiB;

const statsOf = (a: MdArray): StripeStats => (a.personality as unknown as { stats: StripeStats }).stats;

/** Members full of random bytes: what a reused disk holds, where no parity agrees. */
function garbage(paths: string[]): void {
  const block = Buffer.alloc(MiB);
  for (const p of paths) {
    const fd = openSync(p, 'r+');
    try {
      for (let off = 0; off < MEMBER; off += MiB) writeSync(fd, randomFillSync(block), 0, MiB, off);
    } finally {
      closeSync(fd);
    }
  }
}

/** Whether P (and Q) on the members match their data over member range [at, at + length) of a row. */
async function parityAgrees(files: FileDevice[], layout: ParityLayout, row: number, at: number, length: number): Promise<boolean> {
  const map = layout.stripe(row);
  const read = (m: number) => files[m]!.read(DATA_OFFSET + at, length);
  const data = await Promise.all(map.dataMembers.map(read));
  // Syndrome slot order, as the engine computes Q.
  const bySlot = new Array<Uint8Array>(data.length);
  map.dataMembers.forEach((_, i) => (bySlot[map.qSlot[i]!] = data[i]!));
  const p = new Uint8Array(length);
  const q = new Uint8Array(length);
  computePQ(bySlot, p, q);
  if (!(await read(map.pd)).equals(p)) return false;
  return layout.level === 5 || (await read(map.qd)).equals(q);
}

for (const level of [5, 6] as const) {
  test(`raid${level}: the first write to a new array's chunk builds its parity; the next one there is done now`, async (t) => {
    const n = level === 5 ? 4 : 6;
    const paths = memberFiles(tempDir(t, 'raid5-build', '/dev/shm'), n, MEMBER);
    garbage(paths);
    const files = await Promise.all(paths.map((p) => FileDevice.open(p)));
    const array = await createArray({
      name: 'build', level, chunkSize: CHUNK, bitmapChunkSize: UNIT, daemonSleep: 600, force: true,
      members: files.map((device, i) => ({ name: paths[i]!, device })),
    });
    t.after(async () => {
      await array.stop();
      await Promise.all(files.map((f) => f.close()));
    });
    const layout = new ParityLayout({ level, raidDisks: n, chunkSize: CHUNK });
    // Row 3, data block 1, 4 KiB into its second bitmap chunk: member range [row·C + 64K, +64K).
    const row = 3;
    const at = row * layout.rowBytes + CHUNK + UNIT + 4096;
    const unitStart = row * CHUNK + UNIT;
    assert.equal(array.bitmap.blocksSynced(unitStart), false, 'a new array has no valid parity');
    assert.equal(array.writeNow(at, [pattern(1, 4096)]), false, 'no write is done now before the parity is built');
    await array.write(at, pattern(1, 4096));
    assert.equal(statsOf(array).builtByWrites, 1);
    assert.equal(array.bitmap.blocksSynced(unitStart), true, 'its bitmap chunk is synced');
    assert.ok(await parityAgrees(files, layout, row, unitStart, UNIT), 'parity agrees over the whole bitmap chunk');
    assert.equal(array.bitmap.blocksSynced(unitStart + UNIT), false, 'the bitmap chunk beside it is left to the lazy pass');

    const nowBefore = statsOf(array).nowWrites;
    assert.equal(array.writeNow(at + 8192, [pattern(2, 4096)]), true, 'the next write in the chunk is done now');
    assert.equal(statsOf(array).nowWrites, nowBefore + 1);
    assert.ok(await parityAgrees(files, layout, row, unitStart, UNIT), 'and keeps the parity right');
    assert.deepEqual(await array.read(at, 4096), pattern(1, 4096));
    assert.deepEqual(await array.read(at + 8192, 4096), pattern(2, 4096));
  });
}

test('raid5: a degraded array builds nothing on write (the missing member would keep none of it)', async (t) => {
  const paths = memberFiles(tempDir(t, 'raid5-build-degraded', '/dev/shm'), 4, MEMBER);
  garbage(paths);
  const files = await Promise.all(paths.map((p) => FileDevice.open(p)));
  const array = await createArray({
    name: 'build', level: 5, chunkSize: CHUNK, bitmapChunkSize: UNIT, daemonSleep: 600, force: true,
    members: files.map((device, i) => ({ name: paths[i]!, device })),
  });
  t.after(async () => {
    await array.stop();
    await Promise.all(files.map((f) => f.close()));
  });
  await array.fail(paths[3]!);
  await array.write(5 * 3 * CHUNK + 4096, pattern(3, 4096));
  assert.equal(statsOf(array).builtByWrites, 0);
  assert.deepEqual(await array.read(5 * 3 * CHUNK + 4096, 4096), pattern(3, 4096));
});
