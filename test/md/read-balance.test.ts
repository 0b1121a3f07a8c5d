// raid1/raid10 read balancing: the least busy member first, the nearest head among equals; and a
// read that fails on one copy is served by another while that member is failed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReadBalancer } from '../../src/md/read-balance.js';
import { FileDevice } from '../../src/block/file-device.js';
import { FaultDevice } from '../../src/block/fault-device.js';
import { assembleArray, createArray } from '../../src/md/index.js';
import { memberFiles, pattern, tempDir } from './array-fixtures.js';

test('the member with fewer reads in flight is chosen first', () => {
  const b = new ReadBalancer(2);
  const copies = [{ role: 0, offset: 4096 }, { role: 1, offset: 4096 }];
  b.begin({ role: 0, offset: 0 }, 4096);
  assert.deepEqual(b.rank(copies).map((c) => c.role), [1, 0]);
  b.end({ role: 0, offset: 0 });
  b.begin({ role: 1, offset: 0 }, 4096);
  assert.deepEqual(b.rank(copies).map((c) => c.role), [0, 1]);
});

test('among idle members the one whose head is nearest wins', () => {
  const b = new ReadBalancer(3);
  b.begin({ role: 0, offset: 0 }, 4096);
  b.end({ role: 0, offset: 0 });
  b.begin({ role: 1, offset: 1 << 30 }, 4096);
  b.end({ role: 1, offset: 1 << 30 });
  b.begin({ role: 2, offset: 1 << 20 }, 4096);
  b.end({ role: 2, offset: 1 << 20 });
  const at = (offset: number): number[] => b.rank([0, 1, 2].map((role) => ({ role, offset }))).map((c) => c.role);
  assert.equal(at((1 << 30) + 8192)[0], 1);
  assert.equal(at(8192)[0], 0);
  assert.equal(at((1 << 20) + 4096)[0], 2);
});

test('a read error on one member is served from the other copy and fails that member', async (t) => {
  const paths = memberFiles(tempDir(t), 2, 32 << 20);
  const a0 = await createArray({ name: 'rd', level: 1, members: paths });
  await a0.write(0, pattern(5, 1 << 20), { fua: true });
  await a0.stop();
  const devs = await Promise.all(paths.map((p) => FileDevice.open(p)));
  const f = devs.map((d) => new FaultDevice(d));
  const { array: a } = await assembleArray({ members: f.map((d, i) => ({ name: paths[i] as string, device: d })) });
  t.after(async () => {
    await a.stop();
    for (const d of devs) await d.close();
  });
  for (const d of f) d.failReads(1 << 20, 1 << 20);
  // Whichever member the balancer picks first fails; the other serves every read.
  (f[1] as FaultDevice).clearFaults();
  const reads = await Promise.all(Array.from({ length: 8 }, (_, i) => a.read(i * 131072, 131072)));
  assert.deepEqual(Buffer.concat(reads), pattern(5, 1 << 20));
  assert.equal(a.status().members[0]?.state, 'faulty');
  assert.equal(a.status().state, 'degraded');
});
