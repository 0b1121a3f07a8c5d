// Array lifecycle on real member files: create, write, clean stop, assemble; a crash (abandon)
// with Dirty bits resyncs only those chunks (llbitmap.md E2); a clean stop resyncs nothing (E11).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assembleArray, createArray } from '../../src/md/index.js';
import { memberFiles, pattern, pokeMember, readMember, tempDir } from './array-fixtures.js';

// 160 MiB sparse members: 2544 bitmap chunks of 64 KiB, so chunks 10, 600 and 1200 sit in
// different 512-byte bitmap blocks and no infect (llbitmap.md A6) blurs the counts.
const MEMBER = 160 << 20;
const CHUNK = 64 * 1024;
const SPREAD = [10, 600, 1200];

test('raid1 data survives a clean stop and reassembly with nothing left to resync', async (t) => {
  const paths = memberFiles(tempDir(t), 2, MEMBER);
  const a = await createArray({ name: 'vol-a', level: 1, members: paths });
  assert.equal(a.status().bitmap.counts.unwritten, Math.ceil(a.size / CHUNK), 'a new raid1 starts all Unwritten');
  assert.equal(a.status().sync, null, 'a new raid1 with llbitmap runs no initial resync');
  const data = pattern(1, CHUNK);
  for (const c of SPREAD) await a.write(c * CHUNK, data, { fua: true });
  assert.equal(a.status().bitmap.counts.dirty, 3);
  await a.stop();
  for (const p of paths) for (const c of SPREAD) assert.deepEqual(readMember(p, c * CHUNK, data.length), data);

  const { array: b, report } = await assembleArray({ members: paths });
  t.after(() => b.stop());
  assert.deepEqual(report, { stale: [], missingRoles: [], unclean: false, bitmap: { members: paths, rejected: [], disagreeing: 0 } });
  const s = b.status();
  assert.equal(s.bitmap.counts.clean, 3, 'the daemon flush at stop left the written chunks Clean');
  assert.equal(s.bitmap.counts.dirty + s.bitmap.counts.needSync, 0);
  assert.equal(s.resyncPending, null);
  assert.equal(s.sync, null);
  for (const c of SPREAD) assert.deepEqual(await b.read(c * CHUNK, data.length), data);
  assert.equal(s.state, 'active');
  assert.equal(s.level, 'raid1');
});

test('after a crash only the chunks Dirty at the crash are resynced; Clean ones are skipped', async (t) => {
  const paths = memberFiles(tempDir(t), 2, MEMBER);
  const a = await createArray({ name: 'vol-b', level: 1, members: paths, daemonSleep: 600 });
  await a.write(0, pattern(2, CHUNK));
  await a.stop();

  const { array: b } = await assembleArray({ members: paths });
  for (const c of SPREAD) await b.write(c * CHUNK + 4096, pattern(c, 8192));
  assert.equal(b.status().bitmap.counts.dirty, 3);
  await b.abandon();
  // A torn write: copies of chunk 600 differ. A divergence in Clean chunk 0 must NOT be touched.
  pokeMember(paths[1] as string, 600 * CHUNK + 4096, Buffer.alloc(512, 0xee));
  pokeMember(paths[1] as string, 0, Buffer.alloc(512, 0xdd));

  const { array: c, report } = await assembleArray({ members: paths });
  t.after(() => c.stop());
  assert.equal(report.unclean, true);
  const summary = await c.waitSync();
  assert.ok(summary, 'a resync ran');
  assert.equal(summary.mode, 'resync');
  assert.equal(summary.complete, true);
  assert.equal(summary.bytesSynced, 3 * CHUNK, 'exactly the three Dirty chunks were resynced');
  assert.deepEqual(readMember(paths[1] as string, 600 * CHUNK, CHUNK), readMember(paths[0] as string, 600 * CHUNK, CHUNK));
  assert.deepEqual(readMember(paths[1] as string, 0, 512), Buffer.alloc(512, 0xdd), 'a Clean chunk is skipped');
  assert.equal(c.status().resyncPending, null);
});

test('after a crash an array without a bitmap resyncs every byte', async (t) => {
  const paths = memberFiles(tempDir(t), 2, 8 << 20);
  const a = await createArray({ name: 'vol-c', level: 1, members: paths, bitmap: 'none', assumeClean: true });
  await a.write(0, pattern(3, 4096));
  await a.abandon();
  pokeMember(paths[1] as string, 3 << 20, Buffer.alloc(512, 0xab));
  const { array: b } = await assembleArray({ members: paths });
  t.after(() => b.stop());
  const summary = await b.waitSync();
  assert.equal(summary?.bytesSynced, b.size);
  assert.deepEqual(readMember(paths[1] as string, 3 << 20, 512), readMember(paths[0] as string, 3 << 20, 512));
});

test('assembly with a member missing is refused naming the role, and force starts it degraded', async (t) => {
  const paths = memberFiles(tempDir(t), 2, MEMBER);
  const a = await createArray({ name: 'vol-d', level: 1, members: paths });
  await a.write(0, pattern(4, 4096));
  await a.stop();
  await assert.rejects(assembleArray({ members: [paths[0] as string] }), (e: Error & { code?: string }) =>
    e.code === 'ENODEV' && /would start degraded: missing role 1; use force to start anyway$/.test(e.message));
  const { array: b, report } = await assembleArray({ members: [paths[0] as string], force: true });
  t.after(() => b.stop());
  assert.deepEqual(report.missingRoles, [1]);
  assert.equal(b.status().state, 'degraded');
  assert.deepEqual(await b.read(0, 4096), pattern(4, 4096));
});

test('a raid0 array round-trips data striped chunk by chunk over its members', async (t) => {
  const paths = memberFiles(tempDir(t), 3, 8 << 20);
  const a = await createArray({ name: 'vol-e', level: 0, members: paths, chunkSize: 64 * 1024 });
  assert.equal(a.size, 3 * (7 << 20));
  const data = pattern(5, 5 * CHUNK + 1000);
  await a.write(CHUNK - 500, data);
  assert.deepEqual(await a.read(CHUNK - 500, data.length), data);
  // array chunk 4 lives on role 4 % 3 = 1 at member chunk 1
  assert.deepEqual(readMember(paths[1] as string, CHUNK, CHUNK), data.subarray(3 * CHUNK + 500, 4 * CHUNK + 500));
  await a.stop();
  const { array: b } = await assembleArray({ members: paths });
  t.after(() => b.stop());
  assert.deepEqual(await b.read(CHUNK - 500, data.length), data);
  assert.equal(b.status().bitmap.kind, 'none');
});
