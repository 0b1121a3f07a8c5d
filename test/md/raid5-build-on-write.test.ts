// A write to a raid5/raid6 chunk whose parity is not valid yet (a new array's Unwritten chunks)
// builds the parity of the bitmap chunks it touched before it ends: done now (StripeEngine
// #buildNow, a small write once its bitmap chunk is durable: at once on members in memory,
// whose bitmap write-out is done now too), else around the promise path's
// write (#buildAround). The next small write there is a read-modify-write done now, not another
// reconstruct-write waiting for the lazy pass. Members start full of other bytes, so a build that skipped the
// parity writes would leave P (and Q) wrong, which the checks below compute from the members.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { openSync, writeSync, closeSync } from 'node:fs';
import type { MdArray } from '../../src/md/index.js';
import { ParityLayout } from '../../src/md/parity/layout.js';
import type { StripeStats } from '../../src/md/parity/stripe-engine.js';
import { computePQ } from '../../src/md/parity/syndrome.js';
import type { FileDevice } from '../../src/block/file-device.js';
import { DATA_OFFSET, pattern } from './array-fixtures.js';
import { inconsistentRows, stubbornArray } from './raid5-fixture.js';

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
    const { array, files } = await stubbornArray(t, { name: 'build', level, chunkSize: CHUNK, bitmapChunkSize: UNIT, daemonSleep: 600, force: true }, n, MEMBER, garbage);
    const layout = new ParityLayout({ level, raidDisks: n, chunkSize: CHUNK });
    // Row 3, data block 1, 4 KiB into its second bitmap chunk: member range [row·C + 64K, +64K).
    const row = 3;
    const at = row * layout.rowBytes + CHUNK + UNIT + 4096;
    const unitStart = row * CHUNK + UNIT;
    assert.equal(array.bitmap.blocksSynced(unitStart), false, 'a new array has no valid parity');
    await array.write(at, pattern(1, 4096));
    assert.equal(statsOf(array).builtByWrites, 1);
    assert.equal(statsOf(array).nowWrites, 1, 'the write, once its bitmap chunk was durable, built it and was done now');
    assert.equal(array.bitmap.blocksSynced(unitStart), true, 'its bitmap chunk is synced');
    assert.ok(await parityAgrees(files, layout, row, unitStart, UNIT), 'parity agrees over the whole bitmap chunk');
    assert.equal(array.bitmap.blocksSynced(unitStart + UNIT), false, 'the bitmap chunk beside it is left to the lazy pass');
    // writeNow to that one (members in memory: its bitmap state is written out now) builds it too.
    assert.equal(array.writeNow(at + UNIT, [pattern(3, 4096)]), true, 'a first write by writeNow is done now');
    assert.equal(statsOf(array).builtByWrites, 2);
    assert.equal(array.bitmap.blocksSynced(unitStart + UNIT), true, 'and builds its bitmap chunk');
    assert.ok(await parityAgrees(files, layout, row, unitStart + UNIT, UNIT), 'whose parity agrees');

    const nowBefore = statsOf(array).nowWrites;
    assert.equal(array.writeNow(at + 8192, [pattern(2, 4096)]), true, 'the next write in the chunk is done now');
    assert.equal(statsOf(array).nowWrites, nowBefore + 1);
    assert.ok(await parityAgrees(files, layout, row, unitStart, UNIT), 'and keeps the parity right');
    assert.deepEqual(await array.read(at, 4096), pattern(1, 4096));
    assert.deepEqual(await array.read(at + 8192, 4096), pattern(2, 4096));
    assert.deepEqual(await array.read(at + UNIT, 4096), pattern(3, 4096));
  });
}

test('raid5: a degraded array builds nothing on write (the missing member would keep none of it)', async (t) => {
  const { array } = await stubbornArray(t, { name: 'degraded', level: 5, chunkSize: CHUNK, bitmapChunkSize: UNIT, daemonSleep: 600, force: true }, 4, MEMBER, garbage);
  await array.fail(array.status().members[3]!.name);
  await array.write(5 * 3 * CHUNK + 4096, pattern(3, 4096));
  assert.equal(statsOf(array).builtByWrites, 0);
  assert.deepEqual(await array.read(5 * 3 * CHUNK + 4096, 4096), pattern(3, 4096));
});

for (const level of [5, 6] as const) {
  test(`raid${level}: a build done now whose parity write is declined half way is finished under the row's lock; the write then builds it again`, async (t) => {
    const n = level === 5 ? 4 : 6;
    // A bitmap chunk as large as a chunk: a build covers the row's whole columns, so the row is
    // either consistent everywhere or not.
    const { array, devices, areas } = await stubbornArray(t, { name: 'decline', level, chunkSize: CHUNK, bitmapChunkSize: CHUNK, daemonSleep: 600, force: true }, n, MEMBER, garbage);
    const layout = new ParityLayout({ level, raidDisks: n, chunkSize: CHUNK });
    const row = 5;
    const p = devices[layout.stripe(row).pd]!;
    // The build writes P over the whole column range from the row's start: declined after half of it.
    p.declineAt = DATA_OFFSET + row * CHUNK;
    const writesBefore = p.writes;
    const at = row * layout.rowBytes + 8192;
    const b = pattern(7, 4096);
    await array.write(at, b);
    assert.equal(p.declineAt, undefined, 'the build reached P and was declined there');
    assert.ok(p.writes > writesBefore, 'P was written again the ordinary way');
    assert.equal(array.bitmap.blocksSynced(row * CHUNK), true, 'the chunk was built by the write after all');
    assert.deepEqual(await inconsistentRows(areas, layout, [row]), [], 'P (and Q) match the data over the row');
    assert.deepEqual(await array.read(at, 4096), b);
  });
}
