// Growing an array (mdadm --grow --size) on real member files: the array gets bigger at its end,
// what was stored stays where it was, the bitmap covers the new space as Unwritten (no resync of
// it), the new size survives a stop and reassembly, and a power cut at any write of the grow
// reassembles to the old or the new size with every byte intact.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { assembleArray, createArray } from '../../src/md/index.js';
import { FaultDevice, PowerDomain } from '../../src/block/fault-device.js';
import { MemoryDevice } from '../../src/block/memory-device.js';
import { LlBitmap } from '../../src/md/llbitmap/index.js';
import { ParityLayout } from '../../src/md/parity/layout.js';
import { DATA_OFFSET, memberFiles, pattern, readMember, tempDir } from './array-fixtures.js';
import { inconsistentRows } from './raid5-fixture.js';
import { BITMAP_OFFSET, devices, FakeHost } from './llbitmap-fixtures.js';
import { mergeStates } from '../../src/md/llbitmap/states.js';

const KiB = 1024;
const MiB = 1024 * KiB;

function isMd(code: string, message?: RegExp) {
  return (e: unknown) => {
    assert.equal((e as { code?: string }).code, code);
    if (message) assert.match((e as Error).message, message);
    return true;
  };
}

for (const { level, n } of [{ level: 1, n: 2 }, { level: 10, n: 3 }, { level: 5, n: 4 }, { level: 6, n: 4 }, { level: 0, n: 2 }] as const) {
  test(`raid${level} x${n}: grow keeps the data, the new space is writable, and the size survives reassembly`, async (t) => {
    const dir = tempDir(t);
    const paths = memberFiles(dir, n, DATA_OFFSET + 16 * MiB);
    const a = await createArray({ name: 'grow', level, members: paths, chunkSize: 64 * KiB, force: true });
    t.after(() => a.stop());
    const before = a.size;
    const old = pattern(1, before);
    await a.write(0, old);
    await a.waitSync();

    await a.grow(32 * MiB);
    assert.ok(a.size >= 2 * before - 2 * 64 * KiB * n, `array grew from ${before} to ${a.size}`);
    for (const p of paths) assert.ok(statSync(p).size >= DATA_OFFSET + 32 * MiB, `${p} was extended`);
    assert.deepEqual(await a.read(0, before), old, 'the old data is where it was');
    if (level !== 0) {
      const bits = a.bitmap.counts();
      assert.equal(bits.needSync + bits.syncing, 0, 'nothing is owed a resync after the grow');
      assert.ok(bits.unwritten > 0, 'the new space is Unwritten');
    }
    const tail = pattern(2, a.size - before);
    await a.write(before, tail);
    await a.waitSync();
    const size = a.size;
    await a.stop();

    const { array: b } = await assembleArray({ members: paths });
    t.after(() => b.stop());
    assert.equal(b.size, size);
    const resync = await b.waitSync();
    assert.equal(resync, undefined, 'a clean stop after the grow resyncs nothing');
    assert.deepEqual(await b.read(0, before), old);
    assert.deepEqual(await b.read(before, size - before), tail);
    if (level === 5 || level === 6) {
      const layout = new ParityLayout({ level, raidDisks: n, chunkSize: 64 * KiB });
      const areas = paths.map((p) => ({ read: async (off: number, len: number) => readMember(p, off, len) }));
      const rows = Array.from({ length: Math.floor((32 * MiB) / (64 * KiB)) }, (_, r) => r);
      assert.deepEqual(await inconsistentRows(areas, layout, rows), [], 'parity holds over the old and the new rows');
    }
  });
}

test('grow refuses to shrink, to grow a rebuilding array, and a member that cannot reach the size', async (t) => {
  const paths = memberFiles(tempDir(t), 2, DATA_OFFSET + 16 * MiB);
  const a = await createArray({ name: 'refuse', level: 1, members: paths, force: true });
  t.after(() => a.stop());
  await assert.rejects(a.grow(8 * MiB), isMd('EINVAL', /shrinking is not supported/));
  await assert.rejects(a.grow(0), isMd('EINVAL', /positive member size/));
  const size = a.size;
  await a.grow(16 * MiB);
  assert.equal(a.size, size, 'the same size is a no-op');

  const mem = [new MemoryDevice(DATA_OFFSET + 16 * MiB), new MemoryDevice(DATA_OFFSET + 16 * MiB)];
  const fixed = mem.map((d) => ({ ...d, read: d.read.bind(d), write: d.write.bind(d), flush: d.flush.bind(d), discard: d.discard.bind(d), writeZeroes: d.writeZeroes.bind(d), close: d.close.bind(d), size: d.size, blockSize: d.blockSize, readOnly: false }));
  const m = await createArray({ name: 'fixed', level: 1, members: fixed.map((device, i) => ({ name: `f${i}`, device })) });
  t.after(() => m.stop());
  await assert.rejects(m.grow(32 * MiB), isMd('ENOSPC', /member f0: expected at least .* cannot grow/));
  assert.equal(m.size, 16 * MiB, 'nothing changed');
});

test('without a bitmap the grown space is resynced, and only it', async (t) => {
  const paths = memberFiles(tempDir(t), 2, DATA_OFFSET + 8 * MiB);
  const a = await createArray({ name: 'nobm', level: 1, members: paths, bitmap: 'none', assumeClean: true, syncSpeedMax: 1_000_000 });
  t.after(() => a.stop());
  await a.grow(24 * MiB);
  const s = await a.waitSync();
  assert.ok(s?.complete, 'a resync ran to completion');
  assert.equal(s.bytesSynced, 16 * MiB, 'it covered the grown 16 MiB and nothing before');
});

test('a power cut at any write of a grow reassembles to the old or the new size with the data intact', async () => {
  let write = 0;
  const seen = new Set<number>();
  for (;;) {
    const power = new PowerDomain({ seed: write + 1, mode: 'random' });
    const inner = [0, 1].map(() => new MemoryDevice(DATA_OFFSET + 16 * MiB));
    const faulty = inner.map((d, i) => new FaultDevice(d, power, `m${i}`));
    const a = await createArray({ name: 'cut', level: 1, members: faulty.map((device, i) => ({ name: `m${i}`, device })) });
    const data = pattern(3, 4 * MiB);
    await a.write(0, data, { fua: true });
    power.cutAfterWrites(write);
    const grew = await a.grow(48 * MiB).then(() => true, () => false);
    await power.cut();
    await a.abandon().catch(() => undefined);
    const { array: b } = await assembleArray({ members: inner.map((device, i) => ({ name: `m${i}`, device })) });
    try {
      await b.waitSync();
      assert.ok(b.size === 16 * MiB || b.size === 48 * MiB, `cut after ${write} writes: size ${b.size}`);
      if (grew) assert.equal(b.size, 48 * MiB, `cut after ${write} writes: a grow that completed stays grown`);
      seen.add(b.size);
      assert.deepEqual(await b.read(0, data.length), data, `cut after ${write} writes: data intact`);
    } finally {
      await b.stop();
    }
    if (grew) break;
    write++;
  }
  assert.deepEqual([...seen].sort(), [16 * MiB, 48 * MiB].sort(), 'cuts landed both before and after the grow took');
});

test('llbitmap resize keeps its chunk size while the chunks fit, and new chunks are Unwritten', async () => {
  const devs = devices(1, 64 * KiB);
  const host = new FakeHost(devs);
  const bm = await LlBitmap.create(host, { ioSize: 512, syncSize: 64 * 64 * KiB, spaceBytes: 32 * KiB, chunkSize: 64 * KiB });
  await bm.startWrite(0, 4096);
  bm.endWrite(0, 4096);
  await bm.resize(128 * 64 * KiB);
  assert.equal(bm.chunkSize, 64 * KiB);
  assert.equal(bm.chunks, 128);
  assert.equal(bm.stateOf(0), 2);
  assert.equal(bm.stateOf(127), 0);
  assert.match(bm.metadataText(), /^chunksize 128\nchunkshift 7\nchunks 128\n/);
  await bm.close();
  const again = await LlBitmap.load(host, { ioSize: 512, syncSize: 128 * 64 * KiB });
  assert.equal(again.chunks, 128);
  assert.equal(again.stateOf(0), 3, 'the Dirty chunk reloads as NeedSync');
  assert.equal(again.stateOf(100), 0);
  await again.close();
});

test('llbitmap resize doubles the chunk size when the chunks no longer fit, merging states so nothing owed is lost', async () => {
  const devs = devices(1, 64 * KiB);
  const host = new FakeHost(devs, true);
  // 2048 bytes of space: 1024 for the superblock area, room for 1024 chunks.
  const created = await LlBitmap.create(host, { ioSize: 512, syncSize: 1000 * 64 * KiB, spaceBytes: 2048, chunkSize: 64 * KiB });
  await created.close();
  // Chunk states as a crash could leave them: [Clean, Unwritten], [Clean, Clean],
  // [CleanUnwritten, CleanUnwritten], [Dirty, Clean] (Dirty reloads as NeedSync), rest Unwritten.
  const states = [1, 0, 1, 1, 7, 7, 2, 1];
  await devs[0]!.live.write(BITMAP_OFFSET + 1024, Buffer.from(states));
  const bm = await LlBitmap.load(host, { ioSize: 512, syncSize: 1000 * 64 * KiB });
  host.syncRequests = 0;
  await bm.resize(1500 * 64 * KiB);
  assert.equal(bm.chunkSize, 128 * KiB);
  assert.equal(bm.chunks, 750);
  assert.deepEqual([0, 1, 2, 3, 4].map((c) => bm.stateOf(c)), [3, 1, 7, 3, 0],
    'written beside never-written → NeedSync; alike stays; NeedSync wins; Unwritten stays');
  assert.equal(bm.stateOf(749), 0, 'the grown space is Unwritten');
  assert.equal(host.syncRequests, 1, 'the merged NeedSync chunks ask for a resync');
  await bm.close();
  const reloaded = await LlBitmap.load(host, { ioSize: 512, syncSize: 1500 * 64 * KiB });
  assert.equal(reloaded.chunkSize, 128 * KiB, 'the new chunk size is on disk');
  assert.deepEqual([0, 1, 2, 3, 4].map((c) => reloaded.stateOf(c)), [3, 1, 7, 3, 0]);
  await reloaded.close();
});

test('mergeStates: one chunk standing for several never loses a resync it owes', () => {
  const U = 0, C = 1, D = 2, N = 3, S = 4, NU = 5, SU = 6, CU = 7;
  const cases: [number[], number][] = [
    [[U, U], U], [[C, C], C], [[D, D], D], [[CU, CU], CU], [[NU, NU], NU], [[S, S], N], [[SU, SU], NU],
    [[C, D], D], [[C, U], N], [[D, CU], N], [[U, CU], U], [[U, NU], U], [[N, U], N], [[S, C], N], [[9, 9], N], [[C, 200], N],
  ];
  for (const [input, want] of cases) assert.equal(mergeStates(input), want, `merge of ${input.join(',')}`);
});
