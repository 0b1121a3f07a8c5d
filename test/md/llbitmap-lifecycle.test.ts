// llbitmap create, load, sizing, bad metadata, I/O failures and status texts (llbitmap.md A2,
// A9; scenarios E1, E2, E3, E14, E15, E16), over MemoryDevice-backed members and a fake host.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LlBitmap, State, MIN_CHUNK_SIZE } from '../../src/md/llbitmap/index.js';
import { BitmapFlag, decodeBitmapSuper, encodeBitmapSuper } from '../../src/md/llbitmap/bitmap-superblock.js';
import { MdError } from '../../src/md/errors.js';
import { BITMAP_OFFSET, crash, devices, FakeHost, UUID, type RecordingDevice } from './llbitmap-fixtures.js';

const MiB = 1024 * 1024;
const KiB = 1024;
const CS = MIN_CHUNK_SIZE; // 64 KiB

async function sbOf(d: RecordingDevice, image: 'live' | 'durable' = 'durable') {
  return decodeBitmapSuper(await d[image].read(BITMAP_OFFSET, 256), 'test');
}

async function pokeSb(devs: RecordingDevice[], change: (sb: ReturnType<typeof decodeBitmapSuper>) => void) {
  for (const d of devs) {
    const sb = decodeBitmapSuper(await d.live.read(BITMAP_OFFSET, 256), 'test');
    change(sb);
    await d.live.write(BITMAP_OFFSET, encodeBitmapSuper(sb));
  }
}

async function pokeChunk(devs: RecordingDevice[], chunk: number, byte: number) {
  for (const d of devs) await d.live.write(BITMAP_OFFSET + 1024 + chunk, Buffer.from([byte]));
}

function isMd(code: string, pattern?: RegExp) {
  return (e: unknown) => e instanceof MdError && e.code === code && (!pattern || pattern.test(e.message));
}

const opts = (syncSize: number, extra: Record<string, unknown> = {}) => ({
  ioSize: 512,
  syncSize,
  spaceBytes: 8 * KiB,
  ...extra,
});

test('E1: a new raid1 bitmap is all Unwritten, durable on every member before create resolves, no sync requested', async () => {
  const devs = devices(2);
  const host = new FakeHost(devs);
  const bm = await LlBitmap.create(host, opts(100 * CS));
  assert.equal(bm.chunkSize, CS);
  assert.equal(bm.chunks, 100);
  assert.deepEqual(bm.counts(), {
    unwritten: 100, clean: 0, dirty: 0, needSync: 0, syncing: 0, needSyncUnwritten: 0, syncingUnwritten: 0, cleanUnwritten: 0,
  });
  assert.equal(host.syncRequests, 0);
  for (const d of devs) {
    const sb = await sbOf(d);
    assert.equal(sb.version, 6);
    assert.deepEqual(sb.uuid, UUID);
    assert.equal(sb.events, 10n);
    assert.equal(sb.chunksize, 128);
    assert.equal(sb.syncSize, BigInt((100 * CS) / 512));
    assert.equal(sb.sectorsReserved, 16);
    assert.equal(sb.daemonSleep, 30);
    assert.equal(sb.state, 0);
    assert.ok(d.writes.every((w) => w.fua || d.flushes > 0), 'every write durable');
    assert.deepEqual(await d.durableChunks(0, 100), new Array(100).fill(State.Unwritten));
  }
  await bm.close();
});

test('E1: created assume-clean, every chunk is Clean on disk', async () => {
  const devs = devices(2);
  const bm = await LlBitmap.create(new FakeHost(devs), opts(100 * CS, { assumeClean: true }));
  assert.equal(bm.counts().clean, 100);
  for (const d of devs) assert.deepEqual(await d.durableChunks(0, 100), new Array(100).fill(State.Clean));
  await bm.close();
});

test('E1: raid5 first write → NeedSync and lazy recovery requested; sync then daemon → Clean', async () => {
  const devs = devices(3);
  const host = new FakeHost(devs, true);
  const bm = await LlBitmap.create(host, opts(100 * CS));
  await bm.startWrite(5 * CS + 100, 512);
  assert.equal(bm.stateOf(5), State.NeedSync);
  assert.equal(bm.blocksSynced(5 * CS), false);
  await bm.unplug();
  bm.endWrite(5 * CS + 100, 512);
  // Requested once the write is done (see LlBitmap.endWrite).
  assert.equal(host.syncRequests, 1);
  // The lazy recovery visits only the NeedSync chunk.
  const visited: number[] = [];
  for (let off = 0; off < 100 * CS; ) {
    const skip = bm.skipSyncBlocks(off, 'resync');
    if (skip > 0) {
      off += skip;
      continue;
    }
    const r = bm.startSync(off);
    if (r.sync) visited.push(off / CS);
    off += r.length;
  }
  assert.deepEqual(visited, [5]);
  bm.closeSync();
  assert.equal(bm.stateOf(5), State.Dirty);
  assert.equal(bm.blocksSynced(5 * CS), true);
  await bm.flush();
  assert.equal(bm.stateOf(5), State.Clean);
  await bm.close();
});

test('E2: after a crash with Dirty bits only those chunks are resynced; Clean and Unwritten are skipped', async () => {
  const devs = devices(2);
  const host = new FakeHost(devs);
  const size = 2048 * CS;
  const bm = await LlBitmap.create(host, opts(size));
  const write = async (c: number) => {
    await bm.startWrite(c * CS, 4096);
    await bm.unplug();
    bm.endWrite(c * CS, 4096);
  };
  // Chunks 3 and 20 share bitmap block 2; chunk 1000 is in block 3. Each write is cleaned before
  // the next, so no write finds a Dirty neighbour in its block (which would infect it, A6).
  for (const c of [3, 20, 1000]) {
    await write(c);
    await bm.flush();
  }
  await bm.startWrite(3 * CS, 4096);
  await bm.unplug();
  await bm.startWrite(1000 * CS, 4096);
  await bm.unplug();
  // Power cut with the writes to 3 and 1000 in flight: no close, no flush.
  const after = await crash(devs);
  const host2 = new FakeHost(after);
  host2.ev = host.ev;
  const bm2 = await LlBitmap.load(host2, { ioSize: 512, syncSize: size });
  assert.equal(bm2.stateOf(3), State.NeedSync);
  assert.equal(bm2.stateOf(1000), State.NeedSync);
  assert.equal(bm2.stateOf(20), State.Clean);
  assert.equal(bm2.counts().unwritten, 2045);
  assert.ok(host2.syncRequests > 0, 'sync requested');
  const synced: number[] = [];
  for (let off = 0; off < size; ) {
    const skip = bm2.skipSyncBlocks(off, 'resync');
    if (skip > 0) {
      off += skip;
      continue;
    }
    const r = bm2.startSync(off);
    if (r.sync) synced.push(off / CS);
    off += r.length;
  }
  assert.deepEqual(synced, [3, 1000]);
  bm2.closeSync();
  assert.equal(bm2.counts().dirty, 2);
  await bm2.close();
  await bm.close();
});

test('E2: a crash during resync leaves chunks past the last checkpoint NeedSync, the half-synced one never Clean', async () => {
  const devs = devices(2);
  const host = new FakeHost(devs);
  const bm = await LlBitmap.create(host, opts(16 * CS, { assumeClean: true }));
  await pokeSb(devs, () => undefined);
  await bm.close();
  // Every chunk Dirty on disk: the array crashed with writes everywhere.
  for (let c = 0; c < 16; c++) await pokeChunk(devs, c, State.Dirty);
  for (const d of devs) await d.durable.write(0, await d.live.read(0, d.size));
  const bm2 = await LlBitmap.load(host, { ioSize: 512, syncSize: 16 * CS });
  assert.equal(bm2.counts().needSync, 16);
  for (let c = 0; c <= 5; c++) assert.equal(bm2.startSync(c * CS).sync, true);
  // The sync thread is halfway through chunk 5 at the checkpoint (B-c).
  await bm2.condEndSync(5 * CS + CS / 2);
  const durable = await devs[0]!.durableChunks(0, 16);
  assert.deepEqual(durable.slice(0, 5), new Array(5).fill(State.Dirty));
  assert.equal(durable[5], State.Syncing);
  assert.deepEqual(durable.slice(6), new Array(10).fill(State.NeedSync));
  const bm3 = await LlBitmap.load(new FakeHost(await crash(devs)), { ioSize: 512, syncSize: 16 * CS });
  assert.equal(bm3.stateOf(5), State.NeedSync);
  for (let c = 6; c < 16; c++) assert.equal(bm3.stateOf(c), State.NeedSync);
  await bm3.close();
  await bm2.close();
});

test('E3: a stale bitmap (events behind the array) turns Clean, Dirty, Syncing into NeedSync; Unwritten stays', async () => {
  const devs = devices(2);
  const host = new FakeHost(devs);
  const bm = await LlBitmap.create(host, opts(8 * CS));
  await bm.close();
  await pokeChunk(devs, 1, State.Clean);
  await pokeChunk(devs, 2, State.Dirty);
  await pokeChunk(devs, 3, State.Syncing);
  await pokeChunk(devs, 4, State.NeedSync);
  host.ev = 11n;
  const bm2 = await LlBitmap.load(host, { ioSize: 512, syncSize: 8 * CS });
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((c) => bm2.stateOf(c)), [
    State.Unwritten, State.NeedSync, State.NeedSync, State.NeedSync, State.NeedSync, State.Unwritten,
  ]);
  // STALE is consumed: update_sb writes the array's events and no STALE flag.
  await bm2.updateSb();
  const sb = await sbOf(devs[0]!);
  assert.equal(sb.events, 11n);
  assert.equal(sb.state & (1 << BitmapFlag.Stale), 0);
  await bm2.close();
});

test('a current bitmap reloads: Dirty → NeedSync, Clean stays Clean', async () => {
  const devs = devices(1);
  const host = new FakeHost(devs);
  const bm = await LlBitmap.create(host, opts(8 * CS));
  await bm.close();
  await pokeChunk(devs, 1, State.Clean);
  await pokeChunk(devs, 2, State.Dirty);
  const bm2 = await LlBitmap.load(host, { ioSize: 512, syncSize: 8 * CS });
  assert.equal(bm2.stateOf(1), State.Clean);
  assert.equal(bm2.stateOf(2), State.NeedSync);
  await bm2.close();
});

test('E14: wrong magic, version or uuid is refused naming the member', async () => {
  const cases: [string, (sb: ReturnType<typeof decodeBitmapSuper>) => void, RegExp][] = [
    ['magic', (sb) => (sb.magic = 0x12345678), /^\/disks\/d0\/m\.img: bitmap superblock: expected magic 0x6d746962, found 0x12345678$/],
    ['version', (sb) => (sb.version = 4), /^\/disks\/d0\/m\.img: bitmap superblock: expected version 6 \(lockless\), found 4$/],
    ['uuid', (sb) => (sb.uuid = new Uint8Array(16).fill(7)), /expected array uuid 10111213:.*, found 07070707:/],
  ];
  for (const [what, change, pattern] of cases) {
    const devs = devices(1);
    const host = new FakeHost(devs);
    await (await LlBitmap.create(host, opts(8 * CS))).close();
    await pokeSb(devs, change);
    await assert.rejects(LlBitmap.load(host, { ioSize: 512, syncSize: 8 * CS }), isMd('EBADMETA', pattern), what);
    assert.equal(host.failed.length, 0, 'bad metadata is not a failed member');
  }
});

test('E14: chunksize not a power of two, chunksize too small, daemon_sleep 0 are refused', async () => {
  const cases: [(sb: ReturnType<typeof decodeBitmapSuper>) => void, RegExp][] = [
    [(sb) => (sb.chunksize = 96), /expected chunksize a power of two, found 96 sectors/],
    [(sb) => (sb.chunksize = 0), /expected chunksize a power of two, found 0 sectors/],
    // 16 MiB / 1 KiB = 16384 chunks, more than 8 KiB - 1024 bytes hold.
    [(sb) => (sb.chunksize = 2), /chunksize 2 sectors too small: 16384 chunks need 17408 bytes, found 8192 reserved/],
    [(sb) => (sb.daemonSleep = 0), /expected daemon_sleep from 1 to \d+ seconds, found 0/],
  ];
  for (const [change, pattern] of cases) {
    const devs = devices(1);
    const host = new FakeHost(devs);
    await (await LlBitmap.create(host, opts(16 * MiB))).close();
    await pokeSb(devs, change);
    await assert.rejects(LlBitmap.load(host, { ioSize: 512, syncSize: 16 * MiB }), isMd('EBADMETA', pattern));
  }
});

test('E14: a corrupt state byte loads as NeedSync and requests a resync', async () => {
  const devs = devices(1);
  const host = new FakeHost(devs);
  await (await LlBitmap.create(host, opts(8 * CS, { assumeClean: true }))).close();
  await pokeChunk(devs, 6, 0x42);
  host.restart();
  const bm = await LlBitmap.load(host, { ioSize: 512, syncSize: 8 * CS });
  assert.equal(bm.stateOf(6), State.NeedSync);
  assert.equal(bm.stateOf(5), State.Clean);
  assert.ok(host.syncRequests > 0, 'sync requested');
  await bm.close();
});

test('FIRST_USE (mdadm wrote only the superblock): initialised on load and persisted at once', async () => {
  for (const clean of [false, true]) {
    const devs = devices(2);
    const host = new FakeHost(devs);
    let state = 1 << BitmapFlag.FirstUse;
    if (clean) state |= 1 << BitmapFlag.Clean;
    const sb = encodeBitmapSuper({
      magic: 0x6d746962, version: 6, uuid: UUID, events: 0n, eventsCleared: 0n, syncSize: 0n,
      state, chunksize: 0, daemonSleep: 5, writeBehind: 0, sectorsReserved: 16, nodes: 0, clusterName: '',
    });
    // Garbage where the bits will go: initialisation must overwrite it.
    for (const d of devs) {
      await d.live.write(BITMAP_OFFSET, sb);
      await d.live.write(BITMAP_OFFSET + 1024, Buffer.alloc(64, 0x33));
    }
    const bm = await LlBitmap.load(host, { ioSize: 512, syncSize: 64 * CS });
    assert.equal(bm.chunks, 64);
    const want = clean ? State.Clean : State.Unwritten;
    assert.equal(bm.counts()[clean ? 'clean' : 'unwritten'], 64);
    for (const d of devs) {
      assert.deepEqual(await d.durableChunks(0, 64), new Array(64).fill(want));
      const disk = await sbOf(d);
      assert.equal(disk.state, 0, 'FIRST_USE and CLEAN are consumed');
      assert.equal(disk.chunksize, 128);
      assert.equal(disk.daemonSleep, 30);
      assert.equal(disk.events, 10n);
    }
    await bm.close();
  }
});

test('E15: chunk size doubles exactly at the boundary where 1024 + chunks passes the space (B-f)', async () => {
  const space = 4 * KiB; // 3072 chunk bytes after the data offset
  const cases: [number, number][] = [
    [3072 * CS, CS], // exactly fits
    [3072 * CS + 512, 2 * CS], // one more chunk: doubles
    [4096 * CS, 2 * CS], // v1 (chunks <= space) would keep 64 KiB and run past the space
    [6144 * CS, 2 * CS],
    [6144 * CS + 512, 4 * CS],
    [100 * CS, CS],
  ];
  for (const [syncSize, expected] of cases) {
    const devs = devices(1, 64 * MiB);
    const bm = await LlBitmap.create(new FakeHost(devs), { ioSize: 512, syncSize, spaceBytes: space });
    assert.equal(bm.chunkSize, expected, `syncSize ${syncSize}`);
    assert.ok(1024 + bm.chunks <= space, 'chunks fit');
    await bm.close();
  }
});

test('E15: no bitmap byte is ever written past sectors_reserved, at 512 and 4096 io sizes', async () => {
  for (const ioSize of [512, 4096]) {
    const space = 5 * KiB; // 4 KiB + 1 KiB: not a whole page, and not a whole 4 KiB block
    const syncSize = 4096 * CS;
    const devs = devices(2, 1 * MiB, ioSize);
    const host = new FakeHost(devs);
    const bm = await LlBitmap.create(host, { ioSize, syncSize, spaceBytes: space });
    if (ioSize === 512) assert.equal(bm.chunks, 4096); // 1024 + 4096 = 5120 exactly
    else assert.equal(bm.chunkSize, 2 * CS); // only 4096 usable bytes at io 4096
    const last = bm.chunks - 1;
    const created = devs.map((d) => d.writes.length);
    await bm.startWrite(last * bm.chunkSize, 512);
    await bm.unplug();
    bm.endWrite(last * bm.chunkSize, 512);
    await bm.updateSb();
    await bm.flush();
    await bm.condEndSync(syncSize);
    // The write that matters is the one carrying the last chunk's state, at the end of the space.
    const lastByte = BITMAP_OFFSET + 1024 + last;
    for (const [i, d] of devs.entries()) {
      const carried = d.writes.slice(created[i]).some((w) => w.offset <= lastByte && lastByte < w.offset + w.length);
      assert.ok(carried, `no write after create carried the last chunk's state (io ${ioSize})`);
      for (const w of d.writes) {
        assert.ok(w.offset >= BITMAP_OFFSET && w.offset + w.length <= BITMAP_OFFSET + space, `write ${w.offset}+${w.length}`);
        assert.equal(w.offset % ioSize, 0);
        assert.equal(w.length % ioSize, 0);
      }
      const after = await d.live.read(BITMAP_OFFSET + space, 64 * KiB);
      assert.ok(after.every((b) => b === 0), 'nothing past the reserved space');
    }
    await bm.close();
  }
});

test('create refuses bad sizes with clear errors and leaves nothing behind', async () => {
  const devs = devices(1, 64 * KiB);
  const host = new FakeHost(devs);
  await assert.rejects(LlBitmap.create(host, opts(8 * CS, { spaceBytes: 0 })), isMd('ENOSPC', /expected space reserved for the bitmap, found none/));
  await assert.rejects(LlBitmap.create(host, opts(8 * CS, { spaceBytes: 1024 })), isMd('ENOSPC', /at least 1025 bytes/));
  await assert.rejects(LlBitmap.create(host, opts(8 * CS, { spaceBytes: 1000 })), isMd('EINVAL', /multiple of 512 bytes, found 1000/));
  await assert.rejects(LlBitmap.create(host, opts(8 * CS, { ioSize: 1000 })), isMd('EINVAL', /io size/));
  await assert.rejects(LlBitmap.create(host, opts(1000)), isMd('EINVAL', /multiple of 512/));
  await assert.rejects(LlBitmap.create(host, opts(8 * CS, { chunkSize: 3 * 512 })), isMd('EINVAL', /power of two/));
  await assert.rejects(
    LlBitmap.create(host, opts(100 * MiB, { chunkSize: 512 })),
    isMd('ENOSPC', /chunk size 512 needs 205824 bytes of bitmap space, found 8192/),
  );
  await assert.rejects(LlBitmap.create(host, opts(8 * CS, { daemonSleep: 0 })), isMd('EINVAL', /daemon_sleep/));
  await assert.rejects(
    LlBitmap.create(host, opts(8 * CS, { spaceBytes: 64 * KiB })),
    isMd('ENOSPC', /\/disks\/d0\/m\.img: bitmap area \[8192, 73728\) reaches past the end of the device \(65536 bytes\)/),
  );
  assert.equal(devs[0]!.writes.length, 0);
});

test('E16: the bitmap is read from every member at load; one that fails is failed, the others are used', async () => {
  const devs = devices(3);
  const host = new FakeHost(devs);
  const bm = await LlBitmap.create(host, opts(8 * CS));
  await bm.startWrite(2 * CS, 512);
  await bm.unplug();
  bm.endWrite(2 * CS, 512);
  await bm.close();
  devs[0]!.failReads = true;
  const bm2 = await LlBitmap.load(host, { ioSize: 512, syncSize: 8 * CS });
  assert.equal(bm2.stateOf(2), State.NeedSync);
  assert.deepEqual(host.failed.map((f) => f.member.name), ['/disks/d0/m.img']);
  assert.equal(devs[1]!.reads, 2, 'superblock and pages from each working member (cross-check.ts)');
  assert.equal(devs[2]!.reads, 2);
  assert.deepEqual(bm2.loadReport?.members, ['/disks/d1/m.img', '/disks/d2/m.img']);
  await bm2.close();
});

test('E16: every member failing its read fails assembly with EIO', async () => {
  const devs = devices(2);
  const host = new FakeHost(devs);
  await (await LlBitmap.create(host, opts(8 * CS))).close();
  for (const d of devs) d.failReads = true;
  await assert.rejects(
    LlBitmap.load(host, { ioSize: 512, syncSize: 8 * CS }),
    isMd('EIO', /superblock: read failed on every bitmap member \(\/disks\/d0\/m\.img, \/disks\/d1\/m\.img\)/),
  );
  assert.equal(host.failed.length, 2);
});

test('E16: a member failing a bitmap write is failed; the write still lands durably on the others', async () => {
  const devs = devices(2);
  const host = new FakeHost(devs);
  const bm = await LlBitmap.create(host, opts(8 * CS));
  devs[0]!.failWrites = true;
  await bm.startWrite(1 * CS, 512);
  await bm.unplug();
  assert.deepEqual(host.failed.map((f) => f.member.name), ['/disks/d0/m.img']);
  assert.equal((await devs[1]!.durableChunks(1, 1))[0], State.Dirty);
  assert.equal(bm.writeError, false);
  bm.endWrite(1 * CS, 512);
  await bm.close();
});

test('E16: when no member takes a bitmap write, WRITE_ERROR makes the bitmap a no-op', async () => {
  const devs = devices(2);
  const host = new FakeHost(devs);
  const bm = await LlBitmap.create(host, opts(8 * CS));
  for (const d of devs) d.failWrites = true;
  await bm.startWrite(1 * CS, 512);
  await bm.unplug();
  bm.endWrite(1 * CS, 512);
  assert.equal(bm.writeError, true);
  assert.equal(bm.bitsText(), 'bitmap io error\n');
  const before = bm.stateOf(4);
  await bm.startWrite(4 * CS, 512);
  assert.equal(bm.stateOf(4), before, 'state machine off');
  await bm.unplug();
  bm.endWrite(4 * CS, 512);
  // As if there were no bitmap: nothing skipped, everything synced, parity trusted, no holes.
  assert.equal(bm.skipSyncBlocks(0, 'resync'), 0);
  assert.deepEqual(bm.startSync(0), { sync: true, length: CS });
  assert.equal(bm.blocksSynced(0), true);
  assert.equal(bm.isUnwritten(0), false);
  await bm.close();
});

test('E16: a create that no member takes is refused with EIO', async () => {
  const devs = devices(2);
  for (const d of devs) d.failWrites = true;
  await assert.rejects(LlBitmap.create(new FakeHost(devs), opts(8 * CS)), isMd('EIO', /could not be written to any bitmap member/));
});

test('A9: bits and metadata texts are byte-exact', async () => {
  const devs = devices(1);
  const host = new FakeHost(devs, true);
  const bm = await LlBitmap.create(host, opts(100 * CS));
  assert.equal(
    bm.bitsText(),
    'unwritten 100\nclean 0\ndirty 0\nneed sync 0\nsyncing 0\nneed sync unwritten 0\nsyncing unwritten 0\nclean unwritten 0\n',
  );
  assert.equal(bm.metadataText(), 'chunksize 128\nchunkshift 7\nchunks 100\noffset 8\ndaemon_sleep 30\n');
  await bm.startWrite(0, 512); // parity: NeedSync
  bm.startSync(0); // Syncing
  bm.proactiveSync(); // the other 99: NeedSyncUnwritten
  bm.startSync(CS); // SyncingUnwritten
  bm.closeSync(); // Syncing → Dirty, SyncingUnwritten → CleanUnwritten
  bm.endWrite(0, 512);
  assert.equal(
    bm.bitsText(),
    'unwritten 0\nclean 0\ndirty 1\nneed sync 0\nsyncing 0\nneed sync unwritten 98\nsyncing unwritten 0\nclean unwritten 1\n',
  );
  bm.daemonSleep = 7;
  assert.equal(bm.metadataText(), 'chunksize 128\nchunkshift 7\nchunks 100\noffset 8\ndaemon_sleep 7\n');
  await bm.close();
  const bm2 = await LlBitmap.create(new FakeHost(devices(1, 64 * MiB)), {
    ioSize: 4096, syncSize: 4096 * MiB, spaceBytes: 8 * KiB, offsetSectors: -16,
  });
  assert.equal(bm2.metadataText(), 'chunksize 2048\nchunkshift 11\nchunks 4096\noffset 18446744073709551600\ndaemon_sleep 30\n');
  await bm2.close();
});

test('B-m: daemon_sleep 0 is refused at runtime and never persisted; barrier_idle must be ≥ 0', async () => {
  const devs = devices(1);
  const bm = await LlBitmap.create(new FakeHost(devs), opts(8 * CS));
  assert.throws(() => (bm.daemonSleep = 0), isMd('EINVAL', /expected daemon_sleep a whole number of seconds from 1 to \d+, found 0/));
  assert.throws(() => (bm.daemonSleep = 1.5), isMd('EINVAL'));
  assert.throws(() => (bm.barrierIdle = -1), isMd('EINVAL', /barrier_idle/));
  assert.equal(bm.daemonSleep, 30);
  bm.daemonSleep = 2;
  bm.barrierIdle = 0;
  await bm.updateSb();
  assert.equal((await sbOf(devs[0]!)).daemonSleep, 2);
  await bm.close();
  const bm2 = await LlBitmap.load(new FakeHost(devs), { ioSize: 512, syncSize: 8 * CS });
  assert.equal(bm2.daemonSleep, 2);
  await bm2.close();
});

test('B-n: events_cleared rises when the daemon clears bits, and follows the events down', async () => {
  const devs = devices(1);
  const host = new FakeHost(devs);
  const bm = await LlBitmap.create(host, opts(8 * CS, { barrierIdle: 0 }));
  assert.equal(bm.eventsCleared, 10n);
  host.ev = 14n;
  await bm.startWrite(0, 512);
  await bm.unplug();
  bm.endWrite(0, 512);
  await bm.flush();
  assert.equal(bm.stateOf(0), State.Clean);
  assert.equal(bm.eventsCleared, 14n);
  await bm.updateSb();
  assert.equal((await sbOf(devs[0]!)).eventsCleared, 14n);
  host.ev = 12n;
  await bm.updateSb();
  assert.equal((await sbOf(devs[0]!)).eventsCleared, 12n);
  await bm.close();
});

test('closed: I/O entry points refuse with a clear error', async () => {
  const bm = await LlBitmap.create(new FakeHost(devices(1)), opts(8 * CS));
  await bm.close();
  await assert.rejects(async () => bm.startWrite(0, 512), isMd('EINVAL', /startWrite: expected an open bitmap, found it closed/));
  await assert.rejects(async () => bm.unplug(), isMd('EINVAL', /closed/));
  await assert.rejects(bm.flush(), isMd('EINVAL', /closed/));
  await assert.rejects(bm.updateSb(), isMd('EINVAL', /closed/));
});

test('offsets outside the sync space are refused, never clamped silently', async () => {
  const bm = await LlBitmap.create(new FakeHost(devices(1)), opts(8 * CS));
  assert.throws(() => bm.startWrite(8 * CS - 512, 1024), isMd('EINVAL', /expected a range inside the sync space \[0, 524288\), found offset 523776 length 1024/));
  assert.throws(() => bm.startWrite(-1, 10), isMd('EINVAL'));
  assert.throws(() => bm.startSync(8 * CS), isMd('EINVAL', /expected an offset in \[0, 524288\), found 524288/));
  assert.throws(() => bm.skipSyncBlocks(Number.NaN), isMd('EINVAL'));
  assert.throws(() => bm.endWrite(0, 512), isMd('EINVAL', /endWrite: expected a matching start on chunks 0..0, found none in flight/));
  assert.throws(() => bm.stateOf(8), isMd('EINVAL'));
  await bm.close();
});
