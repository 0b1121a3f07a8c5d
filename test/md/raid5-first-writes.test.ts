// A write to a raid5/raid6 chunk whose parity is not valid yet (a new array's Unwritten chunks)
// is a reconstruct-write: the other data blocks at its offset are read and P (and Q) computed
// from them, so what it wrote survives the loss of a member at once. It builds nothing beyond its
// own stripes: the chunk stays owed to the lazy pass, which builds the rest of its parity, as in
// Linux. Members start full of other bytes, so parity that a write skipped would be wrong, which
// the checks below compute from the members.

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
import { stubbornArray } from './raid5-fixture.js';

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

/** Until the array owes no sync pass. */
async function synced(array: MdArray): Promise<void> {
  while (array.status().resyncPending !== null || array.status().sync !== null) await array.waitSync();
}

for (const level of [5, 6] as const) {
  test(`raid${level}: a first write to a new array's chunk is a reconstruct-write done now; the lazy pass builds the rest`, async (t) => {
    const n = level === 5 ? 4 : 6;
    const { array, files } = await stubbornArray(t, { name: 'first', level, chunkSize: CHUNK, bitmapChunkSize: UNIT, daemonSleep: 600, force: true, autoSync: false }, n, MEMBER, garbage);
    const layout = new ParityLayout({ level, raidDisks: n, chunkSize: CHUNK });
    // Row 3, data block 1, 4 KiB into its second bitmap chunk: member range [row·C + 64K, +64K).
    const row = 3;
    const at = row * layout.rowBytes + CHUNK + UNIT + 4096;
    const unitStart = row * CHUNK + UNIT;
    const memberAt = unitStart + 4096;
    assert.equal(array.bitmap.blocksSynced(unitStart), false, 'a new array has no valid parity');
    await array.write(at, pattern(1, 4096));
    assert.deepEqual([statsOf(array).nowWrites, statsOf(array).rcwWrites], [1, 1], 'the write, once its bitmap chunk was durable, was a reconstruct-write done now');
    assert.ok(await parityAgrees(files, layout, row, memberAt, 4096), 'parity agrees where it wrote');
    assert.equal(await parityAgrees(files, layout, row, unitStart, 4096), false, 'and nowhere else: nothing else of the chunk was built');
    assert.equal(array.bitmap.blocksSynced(unitStart), false, 'the chunk is still owed to the lazy pass');
    // writeNow (members in memory: its bitmap state is written out now) in the chunk beside it.
    assert.equal(array.writeNow(at + UNIT, [pattern(3, 4096)]), true, 'a first write by writeNow is done now');
    assert.equal(statsOf(array).rcwWrites, 2);
    assert.ok(await parityAgrees(files, layout, row, memberAt + UNIT, 4096), 'whose parity agrees where it wrote');
    assert.equal(array.writeNow(at + 8192, [pattern(2, 4096)]), true, 'the next write in the chunk is done now');
    assert.equal(statsOf(array).rcwWrites, 3, 'a reconstruct-write again: the parity there is still not valid');

    // What was written survives a member's loss at once, rebuilt from the parity the writes made.
    const dataMember = layout.stripe(row).dataMembers[1]!;
    await array.fail(array.status().members[dataMember]!.name);
    assert.deepEqual(await array.read(at, 4096), pattern(1, 4096));
    assert.deepEqual(await array.read(at + 8192, 4096), pattern(2, 4096));
    assert.deepEqual(await array.read(at + UNIT, 4096), pattern(3, 4096));
  });

  test(`raid${level}: the lazy pass builds the parity of the chunks the writes left owed`, async (t) => {
    const n = level === 5 ? 4 : 6;
    const { array, files } = await stubbornArray(t, { name: 'lazy', level, chunkSize: CHUNK, bitmapChunkSize: UNIT, daemonSleep: 600, force: true }, n, MEMBER, garbage);
    const layout = new ParityLayout({ level, raidDisks: n, chunkSize: CHUNK });
    const row = 2;
    const unitStart = row * CHUNK;
    await array.write(row * layout.rowBytes + 8192, pattern(4, 4096));
    await synced(array);
    assert.equal(array.bitmap.blocksSynced(unitStart), true, 'the pass built the chunk');
    assert.ok(await parityAgrees(files, layout, row, unitStart, UNIT), 'parity agrees over all of it');
    assert.equal(array.status().bytesSyncedTotal, UNIT, 'and nothing else: an Unwritten chunk holds no data to protect');
    assert.deepEqual(await array.read(row * layout.rowBytes + 8192, 4096), pattern(4, 4096));
  });

  test(`raid${level}: a write done now over a whole bitmap chunk ends the chunk's debt`, async (t) => {
    const n = level === 5 ? 4 : 6;
    const { array, files } = await stubbornArray(t, { name: 'whole', level, chunkSize: CHUNK, bitmapChunkSize: UNIT, daemonSleep: 600, force: true, autoSync: false }, n, MEMBER, garbage);
    const layout = new ParityLayout({ level, raidDisks: n, chunkSize: CHUNK });
    const row = 4;
    const unitStart = row * CHUNK + 2 * UNIT;
    await array.write(row * layout.rowBytes + 2 * UNIT, pattern(5, UNIT));
    assert.equal(statsOf(array).nowWrites, 1);
    assert.equal(array.bitmap.blocksSynced(unitStart), true, 'its parity is right all over: nothing left to build');
    assert.ok(await parityAgrees(files, layout, row, unitStart, UNIT));
  });
}

test('raid5: a degraded array writes a new chunk the promise path way, and reads it back', async (t) => {
  const { array } = await stubbornArray(t, { name: 'degraded', level: 5, chunkSize: CHUNK, bitmapChunkSize: UNIT, daemonSleep: 600, force: true }, 4, MEMBER, garbage);
  await array.fail(array.status().members[3]!.name);
  await array.write(5 * 3 * CHUNK + 4096, pattern(3, 4096));
  assert.equal(statsOf(array).nowWrites, 0);
  assert.deepEqual(await array.read(5 * 3 * CHUNK + 4096, 4096), pattern(3, 4096));
});

for (const level of [5, 6] as const) {
  test(`raid${level}: a reconstruct-write done now whose parity write is declined half way is finished under the row's lock and written again`, async (t) => {
    const n = level === 5 ? 4 : 6;
    const { array, devices, files } = await stubbornArray(t, { name: 'decline', level, chunkSize: CHUNK, bitmapChunkSize: CHUNK, daemonSleep: 600, force: true, autoSync: false }, n, MEMBER, garbage);
    const layout = new ParityLayout({ level, raidDisks: n, chunkSize: CHUNK });
    const row = 5;
    const p = devices[layout.stripe(row).pd]!;
    const memberAt = row * CHUNK + 8192;
    p.declineAt = DATA_OFFSET + memberAt;
    const writesBefore = p.writes;
    const at = row * layout.rowBytes + 8192;
    const b = pattern(7, 4096);
    await array.write(at, b);
    assert.equal(p.declineAt, undefined, 'the write reached P now and was declined there');
    assert.ok(p.writes > writesBefore, 'P was written again the ordinary way');
    assert.ok(await parityAgrees(files, layout, row, memberAt, 4096), 'P (and Q) match the data where it wrote');
    assert.deepEqual(await array.read(at, 4096), b);
    await array.fail(array.status().members[layout.stripe(row).dataMembers[0]!]!.name);
    assert.deepEqual(await array.read(at, 4096), b, 'rebuilt from that parity');
  });
}
