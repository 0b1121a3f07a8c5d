// The synchronous fast paths of a raid1 (MdArray.readNow/writeNow, what `llraid serve` answers
// 4 KiB requests with): taken on a whole array whose members are files in the page cache, and
// declined, before any member is written, wherever md's rules make a request wait or take
// another way: a degraded array (writes), a sync window over the range, a bitmap chunk whose
// new state cannot be made durable now (members on a disk: their FUA waits). On members in
// memory that state is written out now, before the data. A member that fails in the fast path
// is failed, and the retry on the ordinary path completes only once the superblocks record it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createArray, readSuperblockFile, type MdArray } from '../../src/md/index.js';
import { FileDevice } from '../../src/block/file-device.js';
import { FilterDevice } from '../../src/block/filter-device.js';
import { IoError } from '../../src/block/errors.js';
import type { WriteOptions } from '../../src/block/block-device.js';
import type { SyncBarrier } from '../../src/md/sync-barrier.js';
import { BITMAP_DATA_OFFSET } from '../../src/md/llbitmap/bitmap-superblock.js';
import { State } from '../../src/md/llbitmap/states.js';
import { memberFiles, pattern, pokeMember, readAt, readMember, tempDir } from './array-fixtures.js';

const MiB = 1024 * 1024;
const KiB4 = 4096;

/** The array's sync barrier (what the sync thread locks its windows with). */
const barrierOf = (array: MdArray): SyncBarrier => (array as unknown as { set: { barrier: SyncBarrier } }).set.barrier;

/**
 * A member file whose writeNow fails with EIO once `broken` is set (with FUA only: `fuaBroken`);
 * write() still works.
 */
class BreakableMember extends FilterDevice {
  broken = false;
  fuaBroken = false;
  override write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    return this.inner.write(offset, data, options);
  }
  override writeNow(offset: number, parts: readonly Uint8Array[], options?: WriteOptions): boolean {
    if (this.broken || (this.fuaBroken && options?.fua === true)) throw new IoError(`injected: write [${offset}, +${parts.length} parts) failed`);
    return this.inner.writeNow!(offset, parts, options);
  }
}

/** The state byte of bitmap chunk `chunk` as a member file holds it. */
async function chunkStateOnDisk(member: string, chunk: number): Promise<number> {
  const sb = await readSuperblockFile(member);
  return readAt(member, (sb.superOffset + sb.bitmapOffset) * 512 + BITMAP_DATA_OFFSET + chunk, 1)[0]!;
}

test('a whole raid1 answers small reads and writes now, on both members, once the chunk is dirty and durable', async (t) => {
  // Files on a disk: their reads and plain writes may go now (RWF_NOWAIT), a FUA write may not.
  const dir = tempDir(t, 'fast-path', '/var/tmp');
  const [a, b] = memberFiles(dir, 2, 64 * MiB);
  const array = await createArray({ name: 'fast', level: 1, members: [a!, b!] });
  t.after(() => array.stop());
  // The first write to a never-written chunk changes its bitmap state: that must be durable
  // before any data is written, which on a disk means waiting, so the fast path declines
  // (having written nothing).
  const first = pattern(1, KiB4);
  assert.equal(array.writeNow(0, [first]), false, 'a write whose bitmap block must be written out first is declined');
  assert.ok(readMember(a!, 0, KiB4).equals(Buffer.alloc(KiB4)), 'nothing reached member a');
  assert.ok(readMember(b!, 0, KiB4).equals(Buffer.alloc(KiB4)), 'nothing reached member b');
  assert.equal(await chunkStateOnDisk(a!, 0), State.Unwritten, 'nor its bitmap');
  await array.write(0, first);
  assert.equal(await chunkStateOnDisk(a!, 0), State.Dirty);
  // Same chunk, now Dirty on disk: the fast path writes both members, parts gathered, when
  // the page cache takes them at once (RWF_NOWAIT may decline: write() then).
  const second = pattern(2, KiB4);
  if (!array.writeNow(KiB4, [second.subarray(0, 1000), second.subarray(1000)])) await array.write(KiB4, second);
  assert.ok(readMember(a!, KiB4, KiB4).equals(second), 'member a holds the write');
  assert.ok(readMember(b!, KiB4, KiB4).equals(second), 'member b holds the write');
});

test('on members in memory a chunk\'s first write goes now, its bitmap state written out first', async (t) => {
  // tmpfs: files whose every request the page cache answers, FUA included (it is the storage).
  const dir = tempDir(t, 'fast-path', '/dev/shm');
  const [a, b] = memberFiles(dir, 2, 64 * MiB);
  const array = await createArray({ name: 'fast', level: 1, members: [a!, b!] });
  t.after(() => array.stop());
  const first = pattern(1, KiB4);
  assert.equal(array.writeNow(0, [first]), true, 'a chunk\'s first write is done now');
  for (const m of [a!, b!]) {
    assert.equal(await chunkStateOnDisk(m, 0), State.Dirty, `${m}'s bitmap says the chunk is dirty`);
    assert.ok(readMember(m, 0, KiB4).equals(first), `${m} holds the write`);
  }
  // Same chunk, Dirty on disk already: the fast path writes both members, parts gathered.
  const second = pattern(2, KiB4);
  assert.equal(array.writeNow(KiB4, [second.subarray(0, 1000), second.subarray(1000)]), true);
  assert.ok(readMember(a!, KiB4, KiB4).equals(second), 'member a holds the write');
  assert.ok(readMember(b!, KiB4, KiB4).equals(second), 'member b holds the write');
  const out = Buffer.alloc(KiB4);
  assert.equal(array.readNow(KiB4, out), true);
  assert.ok(out.equals(second));
  assert.equal(array.status().state, 'active');
});

test('a sync window over the range makes the fast write decline, and the ordinary write waits for the window', async (t) => {
  // tmpfs: files whose every request the page cache answers, so their devices take it now.
  const dir = tempDir(t, 'fast-path', '/dev/shm');
  const [a, b] = memberFiles(dir, 2, 64 * MiB);
  const array = await createArray({ name: 'window', level: 1, members: [a!, b!] });
  t.after(() => array.stop());
  await array.write(0, pattern(3, KiB4));
  const release = await barrierOf(array).lock(0, MiB);
  const data = pattern(4, KiB4);
  assert.equal(array.writeNow(KiB4, [data]), false, 'declined under a sync window');
  assert.ok(!readMember(a!, KiB4, KiB4).equals(data), 'nothing reached a member');
  let done = false;
  const write = array.write(KiB4, data).then(() => (done = true));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(done, false, 'the ordinary write waits while the window is locked');
  // Outside the window the fast path goes on.
  await array.write(2 * MiB, pattern(5, KiB4));
  assert.equal(array.writeNow(2 * MiB + KiB4, [pattern(6, KiB4)]), true, 'a write outside the window is not held');
  release();
  await write;
  assert.ok(readMember(b!, KiB4, KiB4).equals(data));
});

test('a degraded raid1 never writes by the fast path, and reads by it from the copy left', async (t) => {
  // tmpfs: files whose every request the page cache answers, so their devices take it now.
  const dir = tempDir(t, 'fast-path', '/dev/shm');
  const [a, b] = memberFiles(dir, 2, 64 * MiB);
  const array = await createArray({ name: 'degraded', level: 1, members: [a!, b!] });
  t.after(() => array.stop());
  const data = pattern(7, KiB4);
  await array.write(0, data);
  await array.fail(b!);
  assert.equal(array.status().state, 'degraded');
  assert.equal(array.writeNow(KiB4, [pattern(8, KiB4)]), false, 'no fast write on a degraded array');
  assert.ok(readMember(a!, KiB4, KiB4).equals(Buffer.alloc(KiB4)), 'nothing reached a member');
  for (let i = 0; i < 4; i++) {
    const out = Buffer.alloc(KiB4);
    assert.equal(array.readNow(0, out), true);
    assert.ok(out.equals(data));
  }
});

test('a member whose fast write fails is failed, and the retry completes only once the superblocks say so', async (t) => {
  // tmpfs: files whose every request the page cache answers, so their devices take it now.
  const dir = tempDir(t, 'fast-path', '/dev/shm');
  const [a, b] = memberFiles(dir, 2, 64 * MiB);
  const breakable = new BreakableMember(await FileDevice.open(b!));
  const array = await createArray({ name: 'breaks', level: 1, members: [a!, { name: b!, device: breakable }] });
  t.after(() => array.stop());
  await array.write(0, pattern(9, KiB4));
  assert.equal(array.writeNow(KiB4, [pattern(10, KiB4)]), true, 'the fast path is taken while b works');
  const before = (await readSuperblockFile(a!)).events;
  breakable.broken = true;
  const data = pattern(11, KiB4);
  assert.equal(array.writeNow(2 * KiB4, [data]), false, 'a failed member write declines');
  assert.equal(array.status().members.find((m) => m.name === b)?.state, 'faulty', 'b is failed at once');
  // Nothing goes by the fast path while the failure is being recorded.
  assert.equal(array.readNow(0, Buffer.alloc(KiB4)), false);
  await array.write(2 * KiB4, data);
  assert.ok((await readSuperblockFile(a!)).events > before, 'the superblocks recorded the failure before the retry completed');
  assert.equal(array.status().state, 'degraded');
  assert.ok(readMember(a!, 2 * KiB4, KiB4).equals(data));
  const out = Buffer.alloc(KiB4);
  assert.equal(array.readNow(2 * KiB4, out), true);
  assert.ok(out.equals(data));
});

/** A member file that records every writeNow it takes into `log`: which member, where, and whether with FUA. */
class RecordingMember extends FilterDevice {
  constructor(inner: FileDevice, private readonly log: { member: string; offset: number; fua: boolean }[], private readonly member: string) {
    super(inner);
  }
  override write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    return this.inner.write(offset, data, options);
  }
  override writeNow(offset: number, parts: readonly Uint8Array[], options?: WriteOptions): boolean {
    const done = this.inner.writeNow!(offset, parts, options);
    if (done) this.log.push({ member: this.member, offset, fua: options?.fua === true });
    return done;
  }
}

test('a first write done now reaches the members after its bitmap block is on every one, with FUA', async (t) => {
  const dir = tempDir(t, 'fast-path', '/dev/shm');
  const [a, b] = memberFiles(dir, 2, 64 * MiB);
  const log: { member: string; offset: number; fua: boolean }[] = [];
  const array = await createArray({
    name: 'order', level: 1,
    members: [{ name: a!, device: new RecordingMember(await FileDevice.open(a!), log, 'a') }, { name: b!, device: new RecordingMember(await FileDevice.open(b!), log, 'b') }],
  });
  t.after(() => array.stop());
  const sb = await readSuperblockFile(a!);
  const bitmapBlock = (sb.superOffset + sb.bitmapOffset) * 512 + BITMAP_DATA_OFFSET;
  // Two first writes in one task: the first does its write-out now; the second's would be
  // another write per member, which the event loop's write-out shares among the turn's writers.
  assert.equal(array.writeNow(0, [pattern(15, KiB4)]), true);
  assert.equal(array.writeNow(32 * MiB, [pattern(16, KiB4)]), false, 'one write-out done now per task');
  assert.deepEqual(log, [
    { member: 'a', offset: bitmapBlock, fua: true },
    { member: 'b', offset: bitmapBlock, fua: true },
    { member: 'a', offset: sb.dataOffset * 512, fua: false },
    { member: 'b', offset: sb.dataOffset * 512, fua: false },
  ]);
  await new Promise((r) => setImmediate(r));
  assert.equal(array.writeNow(32 * MiB + KiB4, [pattern(17, KiB4)]), true, 'a later task does its own');
});

test('a member whose bitmap write-out fails in the fast path is failed, and the write completes on the other', async (t) => {
  const dir = tempDir(t, 'fast-path', '/dev/shm');
  const [a, b] = memberFiles(dir, 2, 64 * MiB);
  const breakable = new BreakableMember(await FileDevice.open(b!));
  const array = await createArray({ name: 'breaks', level: 1, members: [a!, { name: b!, device: breakable }] });
  t.after(() => array.stop());
  breakable.fuaBroken = true;
  const data = pattern(14, KiB4);
  assert.equal(array.writeNow(0, [data]), false, 'a bitmap write-out that failed declines the write');
  assert.ok(readMember(a!, 0, KiB4).equals(Buffer.alloc(KiB4)), 'no data reached member a');
  await array.write(0, data);
  assert.equal(array.status().members.find((m) => m.name === b)?.state, 'faulty', 'b is failed');
  assert.equal(array.status().state, 'degraded');
  assert.equal(await chunkStateOnDisk(a!, 0), State.Dirty, 'a\'s bitmap says the chunk is dirty');
  assert.ok(readMember(a!, 0, KiB4).equals(data));
});

test('the fast read never goes to a write-mostly member while another copy is in sync', async (t) => {
  // tmpfs: files whose every request the page cache answers, so their devices take it now.
  const dir = tempDir(t, 'fast-path', '/dev/shm');
  const [a, b] = memberFiles(dir, 2, 64 * MiB);
  const array = await createArray({
    name: 'mostly', level: 1, members: [a!, { name: b!, device: await FileDevice.open(b!), writeMostly: true }],
  });
  t.after(() => array.stop());
  const data = pattern(12, KiB4);
  await array.write(0, data);
  // b's copy made different behind the array's back: a read that went to b would show it.
  pokeMember(b!, 0, pattern(13, KiB4));
  for (let i = 0; i < 8; i++) {
    const out = Buffer.alloc(KiB4);
    assert.equal(array.readNow(0, out), true);
    assert.ok(out.equals(data), `read ${i} came from the write-mostly member`);
  }
});
