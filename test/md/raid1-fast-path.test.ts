// The synchronous fast paths of a raid1 (MdArray.readNow/writeNow, what `llraid serve` answers
// 4 KiB requests with): taken on a whole array whose members are files in the page cache, and
// declined, before any member is written, wherever md's rules make a request wait or take
// another way: a degraded array (writes), a sync window over the range, a bitmap chunk whose
// new state is not durable yet. A member that fails in the fast path is failed, and the retry
// on the ordinary path completes only once the superblocks record it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createArray, readSuperblockFile, type MdArray } from '../../src/md/index.js';
import { FileDevice } from '../../src/block/file-device.js';
import { FilterDevice } from '../../src/block/filter-device.js';
import { IoError } from '../../src/block/errors.js';
import type { WriteOptions } from '../../src/block/block-device.js';
import type { SyncBarrier } from '../../src/md/sync-barrier.js';
import { memberFiles, pattern, pokeMember, readMember, tempDir } from './array-fixtures.js';

const MiB = 1024 * 1024;
const KiB4 = 4096;

/** The array's sync barrier (what the sync thread locks its windows with). */
const barrierOf = (array: MdArray): SyncBarrier => (array as unknown as { set: { barrier: SyncBarrier } }).set.barrier;

/** A member file whose writeNow fails with EIO once `broken` is set; write() still works. */
class BreakableMember extends FilterDevice {
  broken = false;
  override write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    return this.inner.write(offset, data, options);
  }
  override writeNow(offset: number, parts: readonly Uint8Array[]): boolean {
    if (this.broken) throw new IoError(`injected: write [${offset}, +${parts.length} parts) failed`);
    return this.inner.writeNow!(offset, parts);
  }
}

test('a whole raid1 answers small reads and writes now, on both members, once the chunk is dirty and durable', async (t) => {
  // tmpfs: files whose every request the page cache answers, so their devices take it now.
  const dir = tempDir(t, 'fast-path', '/dev/shm');
  const [a, b] = memberFiles(dir, 2, 64 * MiB);
  const array = await createArray({ name: 'fast', level: 1, members: [a!, b!] });
  t.after(() => array.stop());
  // The first write to a never-written chunk changes its bitmap state: that must be durable
  // before any data is written, so the fast path declines (having written nothing).
  const first = pattern(1, KiB4);
  assert.equal(array.writeNow(0, [first]), false, 'a write whose bitmap block must be written out first is declined');
  assert.ok(readMember(a!, 0, KiB4).equals(Buffer.alloc(KiB4)), 'nothing reached member a');
  assert.ok(readMember(b!, 0, KiB4).equals(Buffer.alloc(KiB4)), 'nothing reached member b');
  await array.write(0, first);
  // Same chunk, now Dirty on disk: the fast path writes both members, parts gathered.
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
