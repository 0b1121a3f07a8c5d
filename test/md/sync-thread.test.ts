// The sync thread on real files: check counts mismatches and skips Unwritten chunks (E6), repair
// fixes them, an interrupted resync resumes from its checkpoint after a restart, the speed limit
// holds, and progress reports position, speed and ETA.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assembleArray, createArray } from '../../src/md/index.js';
import { differingRanges } from '../../src/md/mirror-io.js';
import { memberFiles, pattern, pokeMember, readMember, tempDir } from './array-fixtures.js';

const CHUNK = 64 * 1024;

test('check counts mismatched sectors over written chunks only, and repair rewrites only the differing 4 KiB blocks', async (t) => {
  const paths = memberFiles(tempDir(t), 2, 160 << 20);
  const [m0, m1] = paths as [string, string];
  const a = await createArray({ name: 'chk', level: 1, members: paths });
  t.after(() => a.stop());
  for (const c of [2, 900, 1700]) await a.write(c * CHUNK, pattern(c, CHUNK));
  pokeMember(m1, 900 * CHUNK + 1024, Buffer.alloc(1536, 0x11)); // 3 sectors in one 4 KiB block
  pokeMember(m1, 2 * CHUNK + 40 * 1024 - 512, Buffer.alloc(1024, 0x22)); // 2 sectors across two blocks
  a.startSync('check');
  const check = await a.waitSync();
  assert.equal(check?.mismatches, 5);
  assert.equal(check?.bytesSynced, 3 * CHUNK, 'Unwritten chunks are not scanned');
  assert.equal(a.status().mismatchCount, 5);
  assert.notDeepEqual(readMember(m1, 900 * CHUNK, CHUNK), readMember(m0, 900 * CHUNK, CHUNK), 'check writes nothing');

  a.startSync('repair');
  const repair = await a.waitSync();
  assert.equal(repair?.mismatches, 5);
  assert.equal(repair?.bytesWritten, 3 * 4096, 'one block at chunk 900, two neighbouring ones at chunk 2: nothing else rewritten');
  assert.deepEqual(readMember(m1, 900 * CHUNK, CHUNK), readMember(m0, 900 * CHUNK, CHUNK));
  assert.deepEqual(readMember(m1, 2 * CHUNK, CHUNK), readMember(m0, 2 * CHUNK, CHUNK));
  a.startSync('check');
  assert.equal((await a.waitSync())?.mismatches, 0);
});

test('a resync stopped half way resumes from its checkpoint after reassembly', async (t) => {
  const paths = memberFiles(tempDir(t), 2, 33 << 20);
  // No bitmap and not assume-clean: md's initial resync over the whole array, slowed down.
  const a = await createArray({ name: 'resume', level: 1, members: paths, bitmap: 'none', syncSpeedMax: 8000 });
  // Polled, not slept: at 8000 KiB/s the 32 MiB take four seconds however fast the machine is.
  for (let i = 0; i < 3000; i++) {
    const s = a.status().sync;
    if (s !== null && s.position > 0 && s.speedKiBs > 0) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const mid = a.status().sync;
  assert.ok(mid !== null && mid.mode === 'resync');
  assert.ok(mid.position > 0 && mid.position < a.size, `resync in progress at ${mid.position}`);
  assert.ok(mid.speedKiBs > 0 && mid.etaSeconds !== null && mid.percent > 0);
  await a.stop();
  const stoppedAt = a.status().resyncPending;
  assert.ok(stoppedAt !== null && stoppedAt >= mid.position);

  const { array: b, report } = await assembleArray({ members: paths });
  t.after(() => b.stop());
  assert.equal(report.unclean, true);
  assert.equal(b.status().resyncPending, stoppedAt);
  const summary = await b.waitSync();
  assert.equal(summary?.complete, true);
  assert.equal(summary?.bytesSynced, b.size - stoppedAt, 'resumed at the checkpoint, not from 0');
  assert.equal(b.status().resyncPending, null);
});

test('sync_speed_max bounds the resync rate', async (t) => {
  const paths = memberFiles(tempDir(t), 2, 9 << 20);
  const a = await createArray({ name: 'slow', level: 1, members: paths, bitmap: 'none', syncSpeedMax: 4000 });
  t.after(() => a.stop());
  const s = await a.waitSync();
  assert.ok(s?.complete);
  const kibs = a.size / 1024 / s.seconds;
  assert.ok(kibs < 4000 * 1.25, `resync ran at ${kibs.toFixed(0)} KiB/s, limit 4000`);
});

test('differingRanges joins neighbouring differing units and leaves equal ones out', () => {
  const a = Buffer.alloc(8 * 16, 0);
  const b = Buffer.from(a);
  b[0] = 1; // unit 0
  b[16 + 15] = 1; // unit 1: joins unit 0
  b[4 * 16] = 1; // unit 4 alone
  b[8 * 16 - 1] = 1; // unit 7, the last
  assert.deepEqual(differingRanges(a, b, 16), [{ start: 0, end: 32 }, { start: 64, end: 80 }, { start: 112, end: 128 }]);
  assert.deepEqual(differingRanges(a, Buffer.from(a), 16), []);
});

test('a bitmap-guided resync of mirrors reads a short gap between marked chunks with them, counted apart from what it synced', async (t) => {
  const paths = memberFiles(tempDir(t), 2, 8 << 20);
  const a = await createArray({ name: 'bridge', level: 1, members: paths });
  // Marked at the crash: 10, 12, 13 (a gap of one chunk), and 40 (a gap of 26 chunks: 1.6 MiB).
  for (const c of [10, 12, 13, 40]) await a.write(c * CHUNK, pattern(c, CHUNK));
  await a.abandon();
  const { array: b } = await assembleArray({ members: paths });
  t.after(() => b.stop());
  const s = await b.waitSync();
  assert.equal(s?.complete, true);
  assert.equal(s?.bytesSynced, 4 * CHUNK, 'synced: the marked chunks');
  assert.equal(s?.bytesBridged, CHUNK, 'chunk 11 read with its neighbours, chunks 14..39 skipped');
  assert.equal(s!.bytesSynced + s!.bytesSkipped + s!.bytesBridged, b.size);
});
