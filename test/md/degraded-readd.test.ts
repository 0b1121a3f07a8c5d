// Degraded operation and member return on real files (llbitmap.md E4, E5): a member that was
// away gets back only the chunks written meanwhile; a replacement gets every written chunk and
// no Unwritten one; an I/O error fails a member and the others' superblocks record it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assembleArray, createArray, examineMember, type MdArray } from '../../src/md/index.js';
import { FileDevice } from '../../src/block/file-device.js';
import { FaultDevice } from '../../src/block/fault-device.js';
import { readSuperblock, ROLE_FAULTY } from '../../src/md/superblock.js';
import { memberFiles, pattern, pokeMember, readMember, tempDir } from './array-fixtures.js';

const MEMBER = 160 << 20;
const CHUNK = 64 * 1024;
/** One chunk per 512-byte bitmap block: no infect, exact counts. */
const BEFORE = [3, 700, 1400];
const WHILE_AWAY = [5, 600, 1200, 1800, 2400];

async function writeChunks(a: MdArray, chunks: number[], seed: number): Promise<void> {
  for (const c of chunks) await a.write(c * CHUNK, pattern(seed + c, CHUNK));
}

function sameData(p: string, q: string, chunks: number[]): void {
  for (const c of chunks) assert.deepEqual(readMember(p, c * CHUNK, CHUNK), readMember(q, c * CHUNK, CHUNK), `chunk ${c} differs`);
}

async function cleanArrayWithData(paths: string[]): Promise<MdArray> {
  const a = await createArray({ name: 'vol', level: 1, members: paths, daemonSleep: 600 });
  await writeChunks(a, BEFORE, 100);
  await a.stop();
  return (await assembleArray({ members: paths })).array;
}

test('a re-added member recovers exactly the chunks written while it was away', async (t) => {
  const paths = memberFiles(tempDir(t), 2, MEMBER);
  const [m0, m1] = paths as [string, string];
  const a = await cleanArrayWithData(paths);
  t.after(() => a.stop());
  await a.fail(m1);
  assert.equal(a.status().state, 'degraded');
  await writeChunks(a, WHILE_AWAY, 200);
  const counts = a.status().bitmap.counts;
  assert.equal(counts.needSync, WHILE_AWAY.length, 'writes while degraded go straight to NeedSync');
  await a.remove(m1);
  assert.equal(await a.reAdd(m1), 'bitmap');
  const summary = await a.waitSync();
  assert.equal(summary?.mode, 'recovery');
  assert.equal(summary?.complete, true);
  assert.equal(summary?.bytesSynced, WHILE_AWAY.length * CHUNK, 'only the chunks written while away');
  assert.equal(a.status().state, 'active');
  sameData(m0, m1, [...BEFORE, ...WHILE_AWAY]);
});

test('a three-way re-add also makes the in-sync copies of a NeedSync chunk equal, and no empty resync follows it', async (t) => {
  const paths = memberFiles(tempDir(t), 3, MEMBER);
  const [m0, m1, m2] = paths as [string, string, string];
  const crashed = await createArray({ name: 'vol', level: 1, members: paths, daemonSleep: 600 });
  await writeChunks(crashed, BEFORE, 100);
  await crashed.fail(m2);
  await writeChunks(crashed, WHILE_AWAY, 200);
  assert.equal(crashed.status().bitmap.counts.needSync, WHILE_AWAY.length);
  await crashed.abandon();
  // Chunk 600's two in-sync copies disagree, as after a crash with its write in flight.
  pokeMember(m1, WHILE_AWAY[1]! * CHUNK, pattern(999, CHUNK));
  const { array: a, report } = await assembleArray({ members: paths });
  t.after(() => a.stop());
  assert.equal(report.stale[0]?.name, m2);
  assert.equal(a.status().state, 'degraded', 'a resync is owed (an unclean stop) but waits for the re-add');
  assert.equal(await a.reAdd(m2), 'bitmap');
  const summary = await a.waitSync();
  assert.equal(summary?.mode, 'recovery');
  assert.equal(summary?.complete, true);
  sameData(m0, m1, [...BEFORE, ...WHILE_AWAY]);
  sameData(m0, m2, [...BEFORE, ...WHILE_AWAY]);
  const s = a.status();
  assert.equal(s.state, 'active');
  assert.equal(s.sync, null, 'no pass runs after the recovery');
  assert.equal(s.lastSync?.mode, 'recovery', 'the last pass is the recovery that copied the chunks, not an empty resync');
  assert.equal(s.bitmap.counts.needSync, 0);
});

test('a member stale at assembly is named, and re-adding it after a restart is still bitmap-guided', async (t) => {
  const paths = memberFiles(tempDir(t), 2, MEMBER);
  const [m0, m1] = paths as [string, string];
  const a = await cleanArrayWithData(paths);
  await a.fail(m1);
  await writeChunks(a, WHILE_AWAY, 300);
  await a.stop();
  const { array: b, report } = await assembleArray({ members: paths });
  t.after(() => b.stop());
  assert.equal(report.stale.length, 1);
  assert.equal(report.stale[0]?.name, m1);
  assert.match(report.stale[0]?.reason ?? '', /recorded as failed or removed by the array/);
  assert.equal(b.status().state, 'degraded');
  assert.equal(await b.reAdd(m1), 'bitmap');
  const summary = await b.waitSync();
  assert.equal(summary?.bytesSynced, WHILE_AWAY.length * CHUNK);
  sameData(m0, m1, [...BEFORE, ...WHILE_AWAY]);
});

test('an absence of any length: ten restarts and bitmap daemon passes later, the re-add is still bitmap-guided and exact', async (t) => {
  // Nothing ages out while a member is away (Mayastor forgets after 10 minutes): no timer, and no
  // limit on how far its events fall behind. What could end a guided re-add is a count, so count.
  const paths = memberFiles(tempDir(t), 2, MEMBER);
  const [m0, m1] = paths as [string, string];
  const created = await createArray({ name: 'vol', level: 1, members: paths, daemonSleep: 1 });
  await writeChunks(created, BEFORE, 100);
  await created.stop();
  const { array: a } = await assembleArray({ members: paths });
  await a.fail(m1);
  await a.stop();
  const away = new Set<number>();
  for (let round = 0; round < 10; round++) {
    const { array: b } = await assembleArray({ members: [m0], barrierIdle: 0.05 });
    const chunks = [10 + round * 37, 2000 - round * 41];
    await writeChunks(b, chunks, 1000 + round);
    for (const c of chunks) away.add(c);
    // A daemon pass (1 s): a bitmap that cleaned marks while degraded would lose them here.
    await new Promise((r) => setTimeout(r, 1100));
    await b.stop();
  }
  const gap = (await examineMember(m0)).events - (await examineMember(m1)).events;
  assert.ok(gap >= 20n, `the array's events moved on by ${gap} since the member left`);
  const { array: c } = await assembleArray({ members: [m0] });
  t.after(() => c.stop());
  assert.equal(await c.reAdd(m1), 'bitmap');
  const summary = await c.waitSync();
  assert.equal(summary?.bytesSynced, away.size * CHUNK, 'exactly the chunks written while away');
  sameData(m0, m1, [...BEFORE, ...away]);
});

test('a replacement member gets every written chunk and no Unwritten one', async (t) => {
  const dir = tempDir(t);
  const paths = memberFiles(dir, 2, MEMBER);
  const [spare] = memberFiles(dir, 1, MEMBER, 'new') as [string];
  const [m0, m1] = paths as [string, string];
  const a = await cleanArrayWithData(paths);
  t.after(() => a.stop());
  await a.fail(m1);
  await writeChunks(a, WHILE_AWAY, 400);
  await a.remove(m1);
  await a.add(spare);
  const summary = await a.waitSync();
  assert.equal(summary?.complete, true);
  assert.equal(summary?.bytesSynced, (BEFORE.length + WHILE_AWAY.length) * CHUNK, 'written chunks only, Clean ones too');
  assert.equal(summary?.bytesSkipped, a.size - summary.bytesSynced);
  sameData(m0, spare, [...BEFORE, ...WHILE_AWAY]);
  assert.equal(a.status().members.find((m) => m.name === spare)?.state, 'in_sync');

  // The role was held by someone else since m1 left: the bitmap may have cleaned bits m1 needs.
  await a.fail(spare);
  await a.remove(spare);
  assert.equal(await a.reAdd(m1), 'full', 're-add guard: history not covered by the bitmap');
  await a.waitSync();
  sameData(m0, m1, [...BEFORE, ...WHILE_AWAY]);
});

test('an I/O error fails the member, the write succeeds, and the other superblock records it', async (t) => {
  const paths = memberFiles(tempDir(t), 2, MEMBER);
  const a0 = await createArray({ name: 'vol', level: 1, members: paths });
  await a0.stop();
  const devs = await Promise.all(paths.map((p) => FileDevice.open(p)));
  const faulty = new FaultDevice(devs[1] as FileDevice);
  const { array: a } = await assembleArray({ members: [{ name: paths[0] as string, device: devs[0] as FileDevice }, { name: paths[1] as string, device: faulty }] });
  t.after(async () => {
    await a.stop();
    for (const d of devs) await d.close();
  });
  const before = BigInt(a.status().events);
  faulty.failWrites(2048 * 512, 1 << 30);
  const data = pattern(9, 8192);
  await a.write(CHUNK * 7, data, { fua: true });
  const s = a.status();
  assert.equal(s.state, 'degraded');
  assert.equal(s.members.find((m) => m.name === paths[1])?.state, 'faulty');
  assert.ok(s.members.find((m) => m.name === paths[1])?.failure, 'the failure names its cause');
  assert.ok(BigInt(s.events) > before, 'events went up');
  const sb = await readSuperblock(devs[0] as FileDevice, paths[0] as string);
  assert.equal(sb.devRoles[1], ROLE_FAULTY);
  assert.equal(sb.events, BigInt(s.events));
  assert.deepEqual(await a.read(CHUNK * 7, data.length), data);
});

test('failing the last in-sync member is refused', async (t) => {
  const paths = memberFiles(tempDir(t), 2, MEMBER);
  const a = await createArray({ name: 'vol', level: 1, members: paths });
  t.after(() => a.stop());
  await a.fail(paths[0] as string);
  await assert.rejects(a.fail(paths[1] as string), (e: Error & { code?: string }) => e.code === 'EBUSY' && /without a complete copy/.test(e.message));
});

test('a spare takes the role of a failed member and is rebuilt by itself', async (t) => {
  const dir = tempDir(t);
  const paths = memberFiles(dir, 2, MEMBER);
  const [spare] = memberFiles(dir, 1, MEMBER, 'spare') as [string];
  const a = await cleanArrayWithData(paths);
  t.after(() => a.stop());
  await a.add(spare);
  assert.equal(a.status().members.find((m) => m.name === spare)?.state, 'spare');
  await a.fail(paths[0] as string);
  for (let i = 0; i < 100 && a.status().members.find((m) => m.name === spare)?.state === 'spare'; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  const summary = await a.waitSync();
  assert.equal(summary?.mode, 'recovery');
  assert.equal(a.status().members.find((m) => m.name === spare)?.role, 0);
  assert.equal(a.status().state, 'active');
  sameData(paths[1] as string, spare, BEFORE);
});

test('a recovery interrupted by a stop resumes from the recovery_offset in the superblock', async (t) => {
  const dir = tempDir(t);
  const paths = memberFiles(dir, 2, 48 << 20);
  const [fresh] = memberFiles(dir, 1, 48 << 20, 'new') as [string];
  const a = await createArray({ name: 'resume-rec', level: 1, members: paths, bitmap: 'none', assumeClean: true, syncSpeedMax: 6000 });
  await a.write(0, pattern(7, 1 << 20));
  await a.fail(paths[1] as string);
  await a.remove(paths[1] as string);
  await a.add(fresh);
  await new Promise((r) => setTimeout(r, 6500)); // past one NoBitmap daemon_sleep (5 s): a checkpoint
  await a.stop();
  const sb = await examineMember(fresh);
  assert.equal(sb.featureMap & 2, 2, 'recovery_offset is valid on the rebuilding member');
  assert.ok(sb.recoveryOffset > 0, `recovery_offset ${sb.recoveryOffset} sectors`);
  const { array: b } = await assembleArray({ members: [paths[0] as string, fresh] });
  t.after(() => b.stop());
  assert.equal(b.status().members.find((m) => m.name === fresh)?.state, 'rebuilding');
  const s = await b.waitSync();
  assert.equal(s?.complete, true);
  assert.ok(s.bytesSynced + s.bytesSkipped <= b.size - sb.recoveryOffset * 512, 'resumed, not restarted');
  assert.deepEqual(readMember(fresh, 0, 1 << 20), pattern(7, 1 << 20));
  assert.equal(b.status().state, 'active');
});

test('the last in-sync copy is never failed: the failing write gets EIO and reads go on', async (t) => {
  const paths = memberFiles(tempDir(t), 2, MEMBER);
  const a0 = await createArray({ name: 'vol', level: 1, members: paths });
  await a0.write(0, pattern(3, 8192), { fua: true });
  await a0.stop();
  const devs = await Promise.all(paths.map((p) => FileDevice.open(p)));
  const f = devs.map((d) => new FaultDevice(d));
  const { array: a } = await assembleArray({ members: f.map((d, i) => ({ name: paths[i] as string, device: d })) });
  t.after(async () => {
    await a.stop();
    for (const d of devs) await d.close();
  });
  for (const d of f) d.failWrites(2048 * 512 + CHUNK * 9, CHUNK);
  await assert.rejects(a.write(CHUNK * 9, pattern(4, 4096)), (e: Error & { code?: string }) => e.code === 'EIO');
  const s = a.status();
  assert.equal(s.state, 'degraded');
  assert.equal(s.members.filter((m) => m.state === 'faulty').length, 1);
  assert.equal(s.members.filter((m) => m.state === 'in_sync').length, 1);
  assert.deepEqual(await a.read(0, 8192), pattern(3, 8192));
  await a.write(CHUNK * 20, pattern(5, 4096));
  assert.deepEqual(await a.read(CHUNK * 20, 4096), pattern(5, 4096));
});
