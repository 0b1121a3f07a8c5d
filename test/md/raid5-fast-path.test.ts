// The synchronous write path of raid5/raid6 (MdArray.writeNow → StripeEngine.writeNow, what
// `llraid serve` answers small writes with): a read-modify-write done now on a whole array whose
// members are files in the page cache, where parity is valid (where it is not, a reconstruct-write:
// raid5-first-writes.test.ts); and when a member write is declined or fails half way, the row is
// finished under its lock before the caller's write() runs, so data and parity never disagree
// for longer than that.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { MdArray } from '../../src/md/index.js';
import { ParityLayout } from '../../src/md/parity/layout.js';
import type { StripeStats } from '../../src/md/parity/stripe-engine.js';
import { seededRandom } from '../../src/block/fault-device.js';
import type { FileDevice } from '../../src/block/file-device.js';
import { DATA_OFFSET, pattern, tempDir } from './array-fixtures.js';
import { inconsistentRows, stubbornArray } from './raid5-fixture.js';

const MiB = 1024 * 1024;
const CHUNK = 64 * 1024;
const MEMBER = 24 * MiB;

async function make(t: Parameters<typeof tempDir>[0], level: 5 | 6, extra: { barrierIdle?: number } = {}) {
  // Enough data members that the ordinary write of a small piece reads old data and parity
  // (read-modify-write) rather than the rest of the row: a retry that read a half-written block
  // as old data would compute wrong parity, which the decline test would see.
  const n = level === 5 ? 5 : 7;
  const { array, devices, files, areas } = await stubbornArray(t, { name: 'now', level, chunkSize: CHUNK, assumeClean: true, daemonSleep: 600, force: true, ...extra }, n, MEMBER);
  const layout = new ParityLayout({ level, raidDisks: n, chunkSize: CHUNK });
  return { array, devices, files, layout, areas };
}

/**
 * How often the members' inline policy (block/positional-io.ts) switched to libuv's pool: a
 * member file that answered slowly (a loaded machine preempting the calls) declines writeNow
 * until its back-off ends. That is the policy's decision, tested on its own, not the engine's.
 */
const inlineSwitches = (files: readonly FileDevice[]): number =>
  files.reduce((n, f) => n + ((f as unknown as { inline?: { stats: { switches?: number } } }).inline?.stats.switches ?? 0), 0);

const statsOf = (a: MdArray): StripeStats => (a.personality as unknown as { stats: StripeStats }).stats;

/** writeNow, else write(), as the NBD server does. */
async function put(a: MdArray, offset: number, data: Buffer): Promise<void> {
  if (!a.writeNow(offset, [data])) await a.write(offset, data);
}

for (const level of [5, 6] as const) {
  test(`raid${level}: small writes are read-modify-writes done now, and every row keeps its parity`, async (t) => {
    const { array, files, layout, areas } = await make(t, level);
    const rows = 12;
    const oracle = Buffer.alloc(rows * layout.rowBytes);
    // Every chunk written once the ordinary way: its bitmap state is Dirty and durable after.
    for (let off = 0; off < oracle.length; off += CHUNK) {
      const b = pattern(off + 1, CHUNK);
      await array.write(off, b);
      b.copy(oracle, off);
    }
    const before = statsOf(array).nowWrites;
    const random = seededRandom(level);
    for (let i = 0; i < 400; i++) {
      const len = 512 * (1 + Math.floor(random() * 16));
      const off = 512 * Math.floor(random() * ((oracle.length - len) / 512));
      const b = pattern(1000 + i, len);
      await put(array, off, b);
      b.copy(oracle, off);
    }
    const now = statsOf(array).nowWrites - before;
    const switches = inlineSwitches(files);
    // Every write is done now unless a member's inline policy backed off (a slow spell of this
    // machine: 56 of 400 done now in one CI run under load); some are done now either way.
    if (switches === 0) assert.ok(now > 300, `most were done now: ${now} of 400`);
    else assert.ok(now > 0, `some were done now: ${now} of 400 (the members' inline policy backed off ${switches} times)`);
    assert.deepEqual(await array.read(0, oracle.length), oracle);
    assert.deepEqual(await inconsistentRows(areas, layout, rows), [], 'P (and Q) match the data in every row');
  });

  test(`raid${level}: a member write declined half way is finished under the row's lock before anything else touches the row`, async (t) => {
    const { array, devices, layout, areas } = await make(t, level);
    await array.write(0, pattern(1, layout.rowBytes));
    const map = layout.stripe(0);
    for (const role of [map.dataMembers[1]!, map.pd]) {
      const off = CHUNK + 4096; // data block 1 of row 0
      const member = devices[role]!;
      member.declineAt = DATA_OFFSET + 4096;
      const writesBefore = member.writes;
      const b = pattern(10 + role, 8192);
      assert.equal(array.writeNow(off, [b]), false, `declined at role ${role}`);
      // Another write to the same row, issued before the caller's retry: it must wait for the row.
      const other = pattern(20 + role, 4096);
      const racing = array.write(2 * CHUNK + 4096, other);
      await array.write(off, b);
      await racing;
      assert.ok(member.writes > writesBefore, `role ${role} was written again the ordinary way`);
      assert.deepEqual(await array.read(off, b.length), b);
      assert.deepEqual(await array.read(2 * CHUNK + 4096, 4096), other);
      assert.deepEqual(await inconsistentRows(areas, layout, [0]), [], `row 0 consistent after the decline at role ${role}`);
    }
  });

  test(`raid${level}: a parity member that fails in the fast path is failed; the data reads back, rebuilt where needed`, async (t) => {
    const { array, devices, layout } = await make(t, level);
    const row = pattern(2, layout.rowBytes);
    await array.write(0, row);
    const map = layout.stripe(0);
    devices[map.pd]!.failAt = DATA_OFFSET + 8192;
    const b = pattern(3, 4096);
    assert.equal(array.writeNow(8192, [b]), false);
    await array.write(8192, b);
    b.copy(row, 8192);
    assert.equal(array.status().state, 'degraded');
    assert.deepEqual(await array.read(0, row.length), row);
  });
}

test('the chunks of a write declined half way stay Dirty until its member writes are done', async (t) => {
  // barrierIdle 0: a daemon pass cleans every Dirty chunk no write is counted on.
  const { array, devices, layout, areas } = await make(t, 5, { barrierIdle: 0 });
  const daemon = (array.bitmap as unknown as { runDaemon: () => Promise<void> });
  await array.write(0, pattern(1, layout.rowBytes));
  await daemon.runDaemon();
  assert.equal(array.status().bitmap.counts.dirty, 0, 'idle and written: cleaned');
  await array.write(0, pattern(2, 4096));
  const p = devices[layout.stripe(0).pd]!;
  p.declineAt = DATA_OFFSET + 8192;
  let open!: () => void;
  p.gate = new Promise((r) => (open = r));
  const b = pattern(3, 4096);
  assert.equal(array.writeNow(8192, [b]), false, 'P declined half way: its write goes on, held');
  await daemon.runDaemon();
  assert.equal(array.status().bitmap.counts.dirty, 1, 'the chunk is not cleaned while P is being written');
  p.gate = undefined;
  open();
  await array.write(8192, b);
  await daemon.runDaemon();
  assert.equal(array.status().bitmap.counts.dirty, 0, 'cleaned once the writes are done');
  assert.deepEqual(await array.read(8192, 4096), b);
  assert.deepEqual(await inconsistentRows(areas, layout, [0]), []);
});
