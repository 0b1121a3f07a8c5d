// llbitmap.md section E scenarios at array level — through createArray/assembleArray on real
// member files or FaultDevices, reading what reached the members' bitmaps and data areas:
// E2 (crash during resync), E8 (crash between bitmap and data write), E11 (clean stop),
// E16 (bitmap I/O failure), and bad bitmap metadata found at assembly.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, writeSync } from 'node:fs';
import { assembleArray, createArray, examineMember, MdError } from '../../src/md/index.js';
import { FaultDevice, PowerDomain } from '../../src/block/fault-device.js';
import { FileDevice } from '../../src/block/file-device.js';
import { MemoryDevice } from '../../src/block/memory-device.js';
import { RESYNC_NONE } from '../../src/md/superblock.js';
import { DATA_OFFSET, fileHash, memberFiles, pattern, pokeMember, readAt, readMember, tempDir } from './array-fixtures.js';

const KIB = 1024;
const MIB = 1024 * KIB;
/** createArray's layout: bitmap superblock 8 sectors after the md superblock (at 4 KiB). */
const BITMAP_SB = 8192;
const BITMAP_STATES = BITMAP_SB + 1024;
const CLEAN = 1;
const DIRTY = 2;
const NEED_SYNC = 3;
const SYNCING = 4;

function writeAt(path: string, offset: number, data: Buffer): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, data, 0, data.length, offset);
  } finally {
    closeSync(fd);
  }
}

function statesOf(path: string, first: number, count: number): number[] {
  return [...readAt(path, BITMAP_STATES + first, count)];
}

// ------------------------------------------------------------------ E2

test('E2: a crash during resync leaves every chunk at or past the sync position to resync, and no chunk Clean with differing copies', async (t) => {
  const paths = memberFiles(tempDir(t), 2, 64 * MIB);
  const [m0, m1] = paths as [string, string];
  // 8 MiB bitmap chunks, 1 MiB sync windows (four in flight): the crash can fall inside a chunk.
  const CHUNK = 8 * MIB;
  // The daemon must not clean a written chunk before the crash: the pokes below stand for writes
  // in flight at it, which only a chunk still Dirty can have (with barrierIdle 0 a loaded machine
  // that took over a second for the writes cleaned chunk 0 first, and its poke then differed in a
  // Clean chunk, which no resync looks at: the test's fault, not the resync's).
  const a = await createArray({ name: 'e2', level: 1, members: paths, bitmapChunkSize: CHUNK, daemonSleep: 1, barrierIdle: 3600 });
  const written = 6;
  const mibs = (written * CHUNK) / MIB;
  for (let m = 0; m < mibs; m++) await a.write(m * MIB, pattern(m, MIB));
  await a.abandon();
  for (let m = 0; m < mibs; m++) pokeMember(m1, m * MIB + 4096, Buffer.alloc(512, 0xee));

  // A slow resync (4 MiB/s, a checkpoint every second), crashed in the middle of a chunk.
  const { array: b } = await assembleArray({ members: paths, syncSpeedMin: 1, syncSpeedMax: 4096 });
  let position = 0;
  for (let i = 0; i < 500 && (position <= CHUNK || position % CHUNK === 0); i++) {
    await new Promise((r) => setTimeout(r, 20));
    position = b.status().sync?.position ?? 0;
  }
  assert.ok(position > CHUNK && position % CHUNK !== 0, `expected the resync inside a chunk past the first, found position ${position}`);
  await b.abandon();
  const synced = Math.floor(position / CHUNK);
  for (const p of paths) {
    const states = statesOf(p, 0, written);
    for (let c = synced; c < written; c++) {
      // Dirty, NeedSync and Syncing (the chunk in progress at the last checkpoint) all reload as NeedSync.
      assert.ok(states[c] === DIRTY || states[c] === NEED_SYNC || states[c] === SYNCING, `${p}: chunk ${c} at or past position ${position} is ${states[c]}`);
    }
    for (let c = 0; c < written; c++) {
      if (states[c] === CLEAN) assert.deepEqual(readMember(m1, c * CHUNK, CHUNK), readMember(m0, c * CHUNK, CHUNK), `chunk ${c} Clean with differing copies`);
    }
  }

  const { array: c } = await assembleArray({ members: paths });
  t.after(() => c.stop());
  const summary = await c.waitSync();
  assert.equal(summary?.complete, true);
  assert.ok(summary.bytesSynced >= (written - synced - 1) * CHUNK, `resynced ${summary.bytesSynced} bytes`);
  for (let m = 0; m < mibs; m++) {
    assert.deepEqual(readMember(m1, m * MIB, MIB), readMember(m0, m * MIB, MIB), `MiB ${m} differs after the second resync`);
    assert.deepEqual(readMember(m0, m * MIB, 4096), pattern(m, MIB).subarray(0, 4096));
  }
});

// ------------------------------------------------------------------ E8

test('E8: cut at every member write of a burst, no data reaches a member before its chunk is Dirty on every member', async () => {
  const CHUNK = 64 * KIB;
  const targets = [1, 2, 700, 1500];
  let cutsInsideData = 0;
  for (let n = 0; ; n++) {
    const power = new PowerDomain({ seed: n, mode: 'keep' });
    const inner = [0, 1].map(() => new MemoryDevice(DATA_OFFSET + 128 * MIB));
    const faulty = inner.map((d, i) => new FaultDevice(d, power, `m${i}`));
    const a = await createArray({ name: 'e8', level: 1, members: faulty.map((device, i) => ({ name: `m${i}`, device })) });
    power.cutAfterWrites(n);
    const results = await Promise.allSettled(targets.map((c) => a.write(c * CHUNK, pattern(c + 1, 8192))));
    const cut = power.isCut;
    if (!cut) await power.cut();
    await a.abandon();
    let dataLanded = 0;
    for (const c of targets) {
      const landed = await Promise.all(inner.map(async (d) => !(await d.read(DATA_OFFSET + c * CHUNK, 8192)).equals(Buffer.alloc(8192))));
      if (!landed.some(Boolean)) continue;
      dataLanded++;
      for (const [i, d] of inner.entries()) {
        const state = (await d.read(BITMAP_STATES + c, 1))[0];
        assert.equal(state, DIRTY, `cut after ${n} writes: chunk ${c} data on a member while m${i} holds state ${state}`);
      }
    }
    if (cut && dataLanded > 0 && results.some((r) => r.status === 'rejected')) cutsInsideData++;
    if (!cut) {
      assert.ok(results.every((r) => r.status === 'fulfilled'));
      break;
    }
  }
  assert.ok(cutsInsideData >= 2, `expected cuts between bitmap and data writes, found ${cutsInsideData}`);
});

// ------------------------------------------------------------------ E11

test('E11: after a clean stop every written chunk is Clean on disk on every member and reassembly resyncs nothing', async (t) => {
  for (const [level, n] of [[1, 2], [10, 4]] as const) {
    const paths = memberFiles(tempDir(t), n, 40 * MIB, `l${level}-`);
    const a = await createArray({ name: `e11-${level}`, level, members: paths, ...(level === 10 ? { chunkSize: 64 * KIB } : {}) });
    const chunks = Math.ceil(a.size / a.bitmap.chunkSize);
    const writes = [0, 3 * 64 * KIB + 512, a.size - 8192];
    for (const [i, off] of writes.entries()) await a.write(off, pattern(i, 8192));
    assert.ok(a.status().bitmap.counts.dirty > 0, 'written chunks are Dirty before the stop');
    await a.stop();
    for (const p of paths) {
      const states = statesOf(p, 0, chunks);
      assert.ok(!states.some((s) => s === DIRTY || s === NEED_SYNC), `${p}: a Dirty/NeedSync bit is left on disk`);
      assert.ok(states.filter((s) => s === CLEAN).length >= writes.length);
      assert.equal((await examineMember(p)).resyncOffset, RESYNC_NONE, `${p}: superblock says clean`);
    }
    const { array: b, report } = await assembleArray({ members: paths });
    assert.equal(report.unclean, false);
    assert.equal(b.status().sync, null);
    assert.equal(b.status().resyncPending, null);
    assert.equal(b.status().bitmap.counts.needSync, 0);
    for (const [i, off] of writes.entries()) assert.deepEqual(await b.read(off, 8192), pattern(i, 8192));
    await b.stop();
  }
});

// ------------------------------------------------------------------ E16

async function writtenArray(t: Parameters<typeof tempDir>[0], n = 2): Promise<string[]> {
  const paths = memberFiles(tempDir(t), n, 32 * MIB);
  const a = await createArray({ name: 'e16', level: 1, members: paths, daemonSleep: 600 });
  await a.write(0, pattern(1, 64 * KIB));
  await a.write(5 * 64 * KIB, pattern(2, 8192));
  await a.abandon();
  return paths;
}

async function faultyMembers(paths: string[]): Promise<{ devs: FaultDevice[]; close: () => Promise<void> }> {
  const files = await Promise.all(paths.map((p) => FileDevice.open(p)));
  const devs = files.map((f, i) => new FaultDevice(f, new PowerDomain(), paths[i]));
  return { devs, close: async () => void (await Promise.all(files.map((f) => f.close()))) };
}

test('E16: a member failing its bitmap read at assembly is failed and the bitmap comes from the next one', async (t) => {
  const paths = await writtenArray(t, 3);
  const { devs, close } = await faultyMembers(paths);
  devs[0]!.failReads(BITMAP_SB, 4096);
  const { array: a } = await assembleArray({ members: devs.map((device, i) => ({ name: paths[i] as string, device })) });
  // Hooks run in order: the array stops before its devices close.
  t.after(() => a.stop());
  t.after(close);
  const s = a.status();
  assert.equal(s.members.find((m) => m.name === paths[0])?.state, 'faulty');
  assert.equal(s.state, 'degraded');
  const onNext = statesOf(paths[1] as string, 0, 511).filter((x) => x === DIRTY || x === NEED_SYNC).length;
  assert.ok(onNext >= 2, 'the written chunks are Dirty on the next member');
  assert.equal(s.bitmap.counts.needSync + s.bitmap.counts.dirty, onNext, 'the bitmap came from the next member');
  assert.deepEqual(await a.read(5 * 64 * KIB, 8192), pattern(2, 8192));
});

test('E16: a member failing its bitmap read at assembly leaves its role to a spare once the array runs', async (t) => {
  const paths = memberFiles(tempDir(t), 3, 32 * MIB);
  const a = await createArray({ name: 'e16s', level: 1, members: paths.slice(0, 2) });
  await a.write(0, pattern(1, 64 * KIB));
  await a.add(paths[2] as string);
  await a.stop();
  const { devs, close } = await faultyMembers(paths);
  devs[0]!.failReads(BITMAP_SB, 4096);
  const { array: b } = await assembleArray({ members: devs.map((device, i) => ({ name: paths[i] as string, device })) });
  t.after(() => b.stop());
  t.after(close);
  const spareState = (): string | undefined => b.status().members.find((m) => m.name === paths[2])?.state;
  for (let i = 0; i < 100 && spareState() === 'spare'; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal((await b.waitSync())?.mode, 'recovery');
  const s = b.status();
  assert.equal(s.members.find((m) => m.name === paths[0])?.state, 'faulty');
  assert.equal(s.members.find((m) => m.name === paths[2])?.role, 0);
  assert.equal(s.state, 'active');
  assert.deepEqual(await b.read(0, 64 * KIB), pattern(1, 64 * KIB));
});

test('E16: every member failing its bitmap read refuses assembly with EIO and changes no member', async (t) => {
  const paths = await writtenArray(t);
  const before = paths.map(fileHash);
  const { devs, close } = await faultyMembers(paths);
  for (const d of devs) d.failReads(BITMAP_SB, 4096);
  await assert.rejects(assembleArray({ members: devs.map((device, i) => ({ name: paths[i] as string, device })) }), (e: unknown) => {
    assert.ok(e instanceof MdError, `expected MdError, found ${String(e)}`);
    assert.equal(e.code, 'EIO');
    assert.match(e.message, /read failed on every bitmap member/);
    return true;
  });
  await close();
  assert.deepEqual(paths.map(fileHash), before);
});

test('E16: a member failing a bitmap write is failed, the array write succeeds and lands on the others', async (t) => {
  const paths = memberFiles(tempDir(t), 2, 32 * MIB);
  const { devs, close } = await faultyMembers(paths);
  const a = await createArray({ name: 'e16w', level: 1, members: devs.map((device, i) => ({ name: paths[i] as string, device })) });
  // Hooks run in order: the array stops before its devices close.
  t.after(() => a.stop());
  t.after(close);
  devs[0]!.failWrites(BITMAP_SB, DATA_OFFSET - BITMAP_SB);
  await a.write(7 * 64 * KIB, pattern(7, 4096));
  assert.equal(a.status().members.find((m) => m.name === paths[0])?.state, 'faulty');
  assert.equal(statesOf(paths[1] as string, 7, 1)[0], DIRTY);
  assert.deepEqual(readMember(paths[1] as string, 7 * 64 * KIB, 4096), pattern(7, 4096));
});

test('E16: when no member takes a bitmap write the array runs without the bitmap, and a re-add still recovers everything', async (t) => {
  const paths = memberFiles(tempDir(t), 2, 32 * MIB);
  const [m0, m1] = paths as [string, string];
  const { devs, close } = await faultyMembers(paths);
  t.after(close);
  const a = await createArray({ name: 'e16n', level: 1, members: devs.map((device, i) => ({ name: paths[i] as string, device })) });
  t.after(() => a.stop());
  await a.write(2 * 64 * KIB, pattern(2, 4096));
  for (const d of devs) d.failWrites(BITMAP_SB, 512 * KIB);
  // Chunk 400 lies in a bitmap block no write has touched yet: its Startwrite needs a write-out.
  await a.write(400 * 64 * KIB, pattern(9, 4096));
  assert.equal(a.bitmap.bitsText(), 'bitmap io error\n', 'WRITE_ERROR: the bitmap is off');
  const inSync = a.status().members.filter((m) => m.state === 'in_sync').map((m) => m.name);
  assert.equal(inSync.length, 1, 'the member whose bitmap write failed first is failed; the last one stays');
  const away = paths.find((p) => !inSync.includes(p)) as string;
  await a.write(401 * 64 * KIB, pattern(10, 4096));
  for (const d of devs) d.clearFaults();
  await a.remove(away);
  await a.reAdd(away);
  const summary = await a.waitSync();
  assert.equal(summary?.complete, true);
  for (const c of [2, 400, 401]) {
    assert.deepEqual(readMember(m0, c * 64 * KIB, 4096), readMember(m1, c * 64 * KIB, 4096), `chunk ${c}: the re-added member missed it`);
  }
  assert.deepEqual(readMember(away, 401 * 64 * KIB, 4096), pattern(10, 4096));
  assert.deepEqual(await a.read(400 * 64 * KIB, 4096), pattern(9, 4096));
});

// ------------------------------------------------------------------ bad bitmap metadata

async function cleanArray(t: Parameters<typeof tempDir>[0], prefix: string): Promise<string[]> {
  const paths = memberFiles(tempDir(t), 2, 32 * MIB, prefix);
  const a = await createArray({ name: `bm-${prefix}`, level: 1, members: paths });
  await a.write(0, pattern(3, 64 * KIB));
  await a.write(9 * 64 * KIB, pattern(4, 64 * KIB));
  await a.stop();
  return paths;
}

function patchBitmapSb(paths: string[], field: number, value: number): void {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value >>> 0);
  for (const p of paths) writeAt(p, BITMAP_SB + field, b);
}

test('bad bitmap metadata on every member refuses assembly with a clear error and changes nothing', async (t) => {
  const cases: [string, number, number, RegExp][] = [
    ['wrong magic', 0, 0x12345678, /bitmap superblock: expected magic 0x6d746962, found 0x12345678/],
    ['version 5', 4, 5, /bitmap superblock: expected version 6 \(lockless\), found 5/],
    ['chunksize not a power of two', 52, 96, /expected chunksize a power of two, found 96 sectors/],
    ['daemon_sleep 0', 56, 0, /expected daemon_sleep from 1 to \d+ seconds, found 0/],
  ];
  for (const [what, field, value, message] of cases) {
    const paths = await cleanArray(t, what.replace(/\W+/g, '-'));
    patchBitmapSb(paths, field, value);
    const before = paths.map(fileHash);
    await assert.rejects(assembleArray({ members: paths }), (e: unknown) => {
      assert.ok(e instanceof MdError, `${what}: expected MdError, found ${String(e)}`);
      assert.equal(e.code, 'EBADMETA', what);
      assert.match(e.message, message, what);
      assert.match(e.message, /^\//, `${what}: the message names the member`);
      return true;
    });
    assert.deepEqual(paths.map(fileHash), before, `${what}: a refused assembly changes no member`);
  }
});

test('a bitmap state byte out of range loads as NeedSync, only that chunk is resynced, and the data verifies', async (t) => {
  const paths = await cleanArray(t, 'state');
  const [m0, m1] = paths as [string, string];
  // Chunk 9 is Clean on both; make it corrupt on both and let its copies differ.
  for (const p of paths) writeAt(p, BITMAP_STATES + 9, Buffer.from([0xc7]));
  pokeMember(m1, 9 * 64 * KIB + 1024, Buffer.alloc(512, 0x77));
  const { array: a } = await assembleArray({ members: paths });
  t.after(() => a.stop());
  const summary = await a.waitSync();
  assert.equal(summary?.complete, true);
  assert.equal(summary.bytesSynced, 64 * KIB, 'exactly the corrupt chunk was resynced');
  assert.deepEqual(readMember(m1, 9 * 64 * KIB, 64 * KIB), readMember(m0, 9 * 64 * KIB, 64 * KIB));
  assert.deepEqual(readMember(m0, 9 * 64 * KIB, 64 * KIB), pattern(4, 64 * KIB));
  assert.deepEqual(await a.read(0, 64 * KIB), pattern(3, 64 * KIB));
  assert.equal(a.status().bitmap.counts.needSync, 0);
  assert.ok(!statesOf(m0, 0, 64).includes(NEED_SYNC), 'nothing NeedSync is left on disk');
});

