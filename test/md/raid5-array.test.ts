// raid5/raid6 inside a real MdArray with the llbitmap, on member files (llbitmap.md E1, E5, E13):
// lazy initial parity (first writes → NeedSync, only those chunks resynced), a replacement member
// rebuilt over written chunks only, proactive parity, and raid6 losing a third member.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createArray, MdError, type MdArray } from '../../src/md/index.js';
import { FileDevice } from '../../src/block/file-device.js';
import { FaultDevice } from '../../src/block/fault-device.js';
import { ParityLayout } from '../../src/md/parity/layout.js';
import { DATA_OFFSET, memberFiles, pattern, pokeMember, readMember, tempDir } from './array-fixtures.js';
import { inconsistentRows } from './raid5-fixture.js';
import { RecordingDevice } from '../support/recording-device.js';

// 160 MiB sparse members: about 2500 bitmap chunks, so chunks 512 apart sit in different 512-byte
// bitmap blocks and no infect (llbitmap.md A6) widens what the tests count.
const MEMBER = 160 << 20;
const SMALL = 24 << 20;
const CHUNK = 64 * 1024; // md chunk; the bitmap chunk is chosen by the bitmap (64 KiB here too)

/** The member data areas as BlockDevices offset by DATA_OFFSET, for the independent parity check. */
async function dataAreas(t: Parameters<typeof tempDir>[0], paths: string[]) {
  const devs = await Promise.all(paths.map((p) => FileDevice.open(p, { readOnly: true })));
  t.after(() => Promise.all(devs.map((d) => d.close())).then(() => undefined));
  return devs.map((d) => ({ read: (off: number, len: number) => d.read(DATA_OFFSET + off, len) }));
}

/** Member files whose data areas hold random bytes in `rows` (all rows when omitted): parity wrong there. */
function garbageMembers(dir: string, n: number, size: number, rows?: number[]): string[] {
  const paths = memberFiles(dir, n, size);
  for (const p of paths) {
    if (rows === undefined) pokeMember(p, 0, randomBytes(size - DATA_OFFSET));
    else for (const r of rows) pokeMember(p, r * CHUNK, randomBytes(CHUNK));
  }
  return paths;
}

async function create(paths: string[], level: 5 | 6, extra: Partial<Parameters<typeof createArray>[0]> = {}): Promise<MdArray> {
  return createArray({ name: 'pv', level, members: paths, chunkSize: CHUNK, daemonSleep: 600, force: true, ...extra });
}

for (const level of [5, 6] as const) {
  const n = level === 5 ? 4 : 5;
  test(`raid${level}: a new array syncs nothing; first writes → NeedSync and only those chunks get parity (E1)`, async (t) => {
    // Rows 3, 700 and 1400 get written; 4, 701 and 2000 are never written (controls).
    const rows = [3, 700, 1400];
    const controls = [4, 701, 2000];
    const paths = garbageMembers(tempDir(t), n, MEMBER, [...rows, ...controls]);
    // autoSync off: the lazy pass, started by hand, is what is tested (raid5-first-writes.test.ts
    // has the writes themselves).
    const a = await create(paths, level, { autoSync: false });
    t.after(() => a.stop());
    const chunks = a.status().bitmap.counts.unwritten;
    assert.equal(a.status().sync, null, 'no initial resync');
    assert.equal(chunks > 100, true);
    const layout = new ParityLayout({ level, raidDisks: n, chunkSize: CHUNK });
    // Three 4 KiB writes into three rows (one md chunk = one bitmap chunk per member).
    const written = new Map<number, Buffer>();
    for (const r of rows) {
      const off = r * layout.rowBytes + 8192;
      written.set(off, pattern(r, 4096));
      await a.write(off, written.get(off)!);
    }
    const c = a.status().bitmap.counts;
    assert.equal(c.needSync, 3, JSON.stringify(c));
    a.startSync('resync');
    const summary = await a.waitSync();
    assert.equal(summary?.mode, 'resync');
    assert.equal(summary?.complete, true);
    assert.equal(a.status().bytesSyncedTotal, 3 * CHUNK, 'lazy resync covers exactly the written chunks');
    assert.equal(a.status().bitmap.counts.unwritten, chunks - 3);
    const areas = await dataAreas(t, paths);
    assert.deepEqual(await inconsistentRows(areas, layout, rows), [], 'written rows have parity');
    assert.deepEqual(await inconsistentRows(areas, layout, controls), controls, 'rows never written were not touched');
    for (const [off, data] of written) assert.deepEqual(await a.read(off, 4096), data);
  });

  test(`raid${level}: a write that computes parity from every data block builds it: the lazy resync skips those chunks`, async (t) => {
    // Row 10: one full-stripe write. Row 11: its first data block whole (a reconstruct-write, the
    // other blocks read). Row 12: 4 KiB only, so its chunk stays NeedSync for the resync.
    const rows = [10, 11, 12];
    const paths = garbageMembers(tempDir(t), n, MEMBER, rows);
    // The resync starts by hand once every write is done: otherwise it may take up a row first.
    const a = await create(paths, level, { autoSync: false });
    t.after(() => a.stop());
    const layout = new ParityLayout({ level, raidDisks: n, chunkSize: CHUNK });
    const writes: [number, Buffer][] = [
      [10 * layout.rowBytes, pattern(10, layout.rowBytes)],
      [11 * layout.rowBytes, pattern(11, CHUNK)],
      [12 * layout.rowBytes + 8192, pattern(12, 4096)],
    ];
    for (const [off, data] of writes) await a.write(off, data);
    const c = a.status().bitmap.counts;
    assert.equal(c.dirty, 2, `rows 10 and 11 have parity: ${JSON.stringify(c)}`);
    assert.equal(c.needSync, 1, `row 12 owes it: ${JSON.stringify(c)}`);
    a.startSync('resync');
    const s = await a.waitSync();
    assert.equal(s?.complete, true);
    assert.equal(s?.bytesSynced, CHUNK, 'only row 12 is synced');
    const areas = await dataAreas(t, paths);
    assert.deepEqual(await inconsistentRows(areas, layout, rows), [], 'every written row has parity');
    for (const [off, data] of writes) assert.deepEqual(await a.read(off, data.length), data);
  });

  test(`raid${level}: a chunk-wide reconstruct-write cut into several write steps still builds its bitmap chunk's parity`, async (t) => {
    // A 1 MiB md chunk and a 1 MiB bitmap chunk: the write of row 3's first data block is one
    // column segment of 1 MiB, which the stripe engine writes in slices smaller than the bitmap
    // chunk. The chunk is Dirty (parity built) only if the slices are reported as one range.
    const big = 1024 * 1024;
    const paths = memberFiles(tempDir(t), n, MEMBER);
    for (const p of paths) pokeMember(p, 3 * big, randomBytes(big));
    const a = await create(paths, level, { chunkSize: big, bitmapChunkSize: big, autoSync: false });
    t.after(() => a.stop());
    const layout = new ParityLayout({ level, raidDisks: n, chunkSize: big });
    const data = pattern(3, big);
    await a.write(3 * layout.rowBytes, data);
    const c = a.status().bitmap.counts;
    assert.equal(c.dirty, 1, `row 3's chunk has parity: ${JSON.stringify(c)}`);
    assert.equal(c.needSync, 0, JSON.stringify(c));
    const areas = await dataAreas(t, paths);
    assert.deepEqual(await inconsistentRows(areas, layout, [3]), [], 'and its parity is right on the members');
    assert.deepEqual(await a.read(3 * layout.rowBytes, big), data);
  });

  test(`raid${level}: a resync window that waited for such a write is passed over, not synced again`, async (t) => {
    const paths = garbageMembers(tempDir(t), n, MEMBER, [10, 12]);
    const files = await Promise.all(paths.map((p) => FileDevice.open(p)));
    const gated = new RecordingDevice(files[0]!);
    const members = files.map((f, i) => ({ name: paths[i]!, device: i === 0 ? gated : f }));
    // autoSync off: the small write below builds no parity itself, and the pass starts by hand.
    const a = await create(paths, level, { members, autoSync: false });
    t.after(async () => {
      await a.stop();
      await Promise.all(files.map((f) => f.close()));
    });
    const layout = new ParityLayout({ level, raidDisks: n, chunkSize: CHUNK });
    // Row 10's write is held at member 0: its chunk is NeedSync while the write is in flight.
    let open!: () => void;
    gated.gate = { from: DATA_OFFSET + 10 * CHUNK, to: DATA_OFFSET + 11 * CHUNK, open: new Promise((r) => (open = r)) };
    const data = pattern(10, layout.rowBytes);
    const write = a.write(10 * layout.rowBytes, data);
    // A 4 KiB write in row 12 ends NeedSync; the lazy resync takes up row 10 first and waits for
    // its write.
    const small = pattern(12, 4096);
    await a.write(12 * layout.rowBytes + 8192, small);
    a.startSync('resync');
    while (a.status().bitmap.counts.syncing === 0) await new Promise((r) => setTimeout(r, 5));
    open();
    await write;
    while (a.status().sync !== null || a.status().resyncPending !== null) await a.waitSync();
    assert.equal(a.status().bytesSyncedTotal, CHUNK, 'row 10 was passed over, row 12 synced');
    const areas = await dataAreas(t, paths);
    assert.deepEqual(await inconsistentRows(areas, layout, [10, 12]), []);
    assert.deepEqual(await a.read(10 * layout.rowBytes, data.length), data);
    assert.deepEqual(await a.read(12 * layout.rowBytes + 8192, 4096), small);
  });

  test(`raid${level}: a replacement member gets every written chunk, Unwritten skipped (E5)`, async (t) => {
    const dir = tempDir(t);
    const paths = memberFiles(dir, n, MEMBER);
    const a = await create(paths, level);
    t.after(() => a.stop());
    const layout = new ParityLayout({ level, raidDisks: n, chunkSize: CHUNK });
    const rows = [3, 700, 1400, 2100];
    for (const r of rows) await a.write(r * layout.rowBytes, pattern(r, layout.rowBytes));
    await a.waitSync();
    a.proactiveSync();
    await a.waitSync();
    const chunks = a.status().bitmap.counts;
    assert.equal(chunks.cleanUnwritten + rows.length, chunks.cleanUnwritten + chunks.clean + chunks.dirty, JSON.stringify(chunks));
    assert.ok(chunks.cleanUnwritten > 2000);
    const victim = paths[1]!;
    const before = rows.map((r) => readMember(victim, r * CHUNK, CHUNK));
    await a.fail(victim);
    await a.remove(victim);
    const [fresh] = memberFiles(dir, 1, MEMBER, 'new');
    await a.add(fresh!);
    const summary = await a.waitSync();
    assert.equal(summary?.mode, 'recovery');
    assert.equal(summary?.complete, true);
    assert.equal(summary?.bytesSynced, rows.length * CHUNK, 'only written chunks rebuilt');
    assert.equal(a.status().bitmap.counts.cleanUnwritten, 0, '*Unwritten reverts to Unwritten at recovery start');
    rows.forEach((r, k) => assert.deepEqual(readMember(fresh!, r * CHUNK, CHUNK), before[k], `row ${r}`));
    assert.equal(a.status().state, 'active');
    for (const r of rows) assert.deepEqual(await a.read(r * layout.rowBytes, layout.rowBytes), pattern(r, layout.rowBytes));
  });
}

test('proactive sync builds parity for never-written chunks and is refused without parity (E13)', async (t) => {
  const dir = tempDir(t);
  const paths = garbageMembers(dir, 5, SMALL);
  const a = await create(paths, 5);
  t.after(() => a.stop());
  const total = a.status().bitmap.counts.unwritten;
  a.proactiveSync();
  const summary = await a.waitSync();
  assert.equal(summary?.complete, true);
  const c = a.status().bitmap.counts;
  assert.equal(c.cleanUnwritten, total, JSON.stringify(c));
  const layout = new ParityLayout({ level: 5, raidDisks: 5, chunkSize: CHUNK });
  const rows = Math.floor(a.size / layout.rowBytes);
  assert.deepEqual(await inconsistentRows(await dataAreas(t, paths), layout, rows), [], 'every row has parity');
  // A partial write into a CleanUnwritten chunk may now read-modify-write (2 reads instead of 3).
  await a.write(3 * layout.rowBytes, pattern(9, 4096));
  assert.ok((a.personality as unknown as { stats: { rmwWrites: number } }).stats.rmwWrites >= 1);

  const mirror = await createArray({ name: 'm', level: 1, members: memberFiles(dir, 2, SMALL, 'r'), daemonSleep: 600 });
  t.after(() => mirror.stop());
  assert.throws(() => mirror.proactiveSync(), (e: unknown) => e instanceof MdError && e.code === 'ENOTSUP' && /expected raid4\/5\/6, found raid1/.test(e.message));
});

test('raid6 with two failed members reads correctly; a third failure stops it with a clear error and writes nothing', async (t) => {
  const paths = memberFiles(tempDir(t), 5, SMALL);
  const faults = await Promise.all(paths.map(async (p) => new FaultDevice(await FileDevice.open(p), undefined, p)));
  t.after(() => Promise.all(faults.map((f) => f.close())).then(() => undefined));
  const a = await create([], 6, { members: faults.map((f) => ({ name: f.name, device: f })) });
  t.after(() => a.stop().catch(() => undefined));
  const data = pattern(77, 3 << 20);
  await a.write(0, data);
  await a.waitSync();
  await a.fail(paths[0]!);
  await a.fail(paths[3]!);
  assert.equal(a.status().state, 'degraded');
  assert.deepEqual(await a.read(0, data.length), data);
  await a.write(1 << 20, pattern(78, 4096));
  data.set(pattern(78, 4096), 1 << 20);
  assert.deepEqual(await a.read(0, data.length), data);
  // A third member dies: the read that meets it (outside what the stripe cache holds) fails with a
  // clear error and the array stops.
  faults[2]!.failAll();
  await assert.rejects(a.read(8 << 20, 1 << 20), (e: unknown) => {
    assert.equal((e as { code?: string }).code, 'EIO');
    assert.match((e as Error).message, /raid6: cannot read: 3 of 5 members unavailable \(roles 0, 2, 3\), at most 2 can be rebuilt/);
    return true;
  });
  assert.equal(a.status().state, 'failed');
  const before = paths.map((p) => readMember(p, 0, 4 << 20));
  await assert.rejects(a.write(0, pattern(79, 8192)), /the array has failed \(not enough working members\)/);
  assert.deepEqual(paths.map((p) => readMember(p, 0, 4 << 20)), before, 'nothing written');
});
