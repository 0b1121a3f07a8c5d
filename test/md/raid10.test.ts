// raid10 near layout: md's placement (odd member counts, 2 and 3 copies), data round trips
// against an in-memory oracle, degraded reads, and which failures the layout survives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Raid10 } from '../../src/md/raid10.js';
import { assembleArray, createArray } from '../../src/md/index.js';
import { memberFiles, pattern, readMember, tempDir } from './array-fixtures.js';

const K = 64 * 1024;

test('near=2 over 3 members places chunks as md raid10_find_phys does', () => {
  const r = new Raid10(3, 0x102, K, 10 * K);
  // role:      0    1    2
  // row 0:    C0   C0   C1
  // row 1:    C1   C2   C2
  assert.deepEqual(r.copiesOf(0, 0), [{ role: 0, offset: 0 }, { role: 1, offset: 0 }]);
  assert.deepEqual(r.copiesOf(1, 0), [{ role: 2, offset: 0 }, { role: 0, offset: K }]);
  assert.deepEqual(r.copiesOf(2, 100), [{ role: 1, offset: K + 100 }, { role: 2, offset: K + 100 }]);
  assert.equal(r.arraySize, 15 * K, '10 chunks per member × 3 members / 2 copies');
});

test('near=3 over 4 members keeps three copies on consecutive members', () => {
  const r = new Raid10(4, 0x103, K, 8 * K);
  assert.deepEqual(r.copiesOf(1, 0).map((c) => c.role), [3, 0, 1]);
  assert.deepEqual(r.copiesOf(1, 0).map((c) => c.offset), [0, K, K]);
  assert.equal(r.arraySize, Math.floor((8 * 4) / 3) * K);
});

test('near=2 over 3 survives any single failure but not two', () => {
  const r = new Raid10(3, 0x102, K, 10 * K);
  assert.equal(r.canRun([true, true, false]), true);
  assert.equal(r.canRun([false, true, true]), true);
  assert.equal(r.canRun([false, false, true]), false);
  assert.equal(new Raid10(4, 0x102, K, 10 * K).canRun([false, true, false, true]), true, 'one of each mirror pair');
  assert.equal(new Raid10(4, 0x102, K, 10 * K).canRun([false, false, true, true]), false);
});

test('only the near layout is accepted', () => {
  assert.throws(() => new Raid10(4, 0x201, K, 10 * K), (e: Error & { code?: string }) => e.code === 'ENOTSUP' && /near layout/.test(e.message));
});

for (const [members, copies] of [[3, 2], [4, 2], [5, 3]] as const) {
  test(`raid10 near=${copies} over ${members} member files matches an oracle, also degraded and after reassembly`, async (t) => {
    const paths = memberFiles(tempDir(t), members, 12 << 20);
    const a = await createArray({ name: 'r10', level: 10, members: paths, chunkSize: K, nearCopies: copies });
    const oracle = Buffer.alloc(a.size);
    let seed = 1;
    for (const [off, len] of [[0, 3 * K], [5 * K - 512, 7 * K + 1024], [a.size - 2 * K, 2 * K], [123 * 512, 4096]] as const) {
      const d = pattern(seed++, len);
      await a.write(off, d);
      d.copy(oracle, off);
    }
    assert.deepEqual(await a.read(0, a.size), oracle);
    // Every copy holds the chunk: read them off the member files directly.
    const r = a.personality as Raid10;
    for (const c of [0, 1, 5, 6]) {
      for (const copy of r.copiesOf(c, 0)) {
        assert.deepEqual(readMember(paths[copy.role] as string, copy.offset, K), oracle.subarray(c * K, (c + 1) * K), `chunk ${c} on role ${copy.role}`);
      }
    }
    await a.fail(paths[1] as string);
    const d = pattern(99, 2 * K);
    await a.write(K, d);
    d.copy(oracle, K);
    assert.deepEqual(await a.read(0, a.size), oracle, 'degraded reads come from the remaining copies');
    await a.stop();
    const { array: b } = await assembleArray({ members: paths.filter((_, i) => i !== 1) });
    t.after(() => b.stop());
    assert.deepEqual(await b.read(0, b.size), oracle);
    assert.equal(await b.reAdd(paths[1] as string), 'bitmap');
    await b.waitSync();
    await b.fail(paths[0] as string);
    assert.deepEqual(await b.read(0, b.size), oracle, 'the re-added member serves what it missed');
  });
}
