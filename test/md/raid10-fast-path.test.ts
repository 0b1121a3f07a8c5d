// The synchronous fast paths of raid10 (MdArray.readNow/writeNow, what `llraid serve` answers
// small requests with), over member files in the page cache: a request inside one chunk is done
// now, on its every copy for a write; one across a chunk boundary is declined having touched no
// member, and the ordinary path does it. A degraded array reads by the fast path from the copy
// left and writes only by the ordinary path; so does one with a member rebuilding, whose stale
// bytes no read returns. Large reads (NBD's reused buffers) land by readInto, each chunk's part
// straight into its place.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createArray, type MdArray } from '../../src/md/index.js';
import type { Raid10 } from '../../src/md/raid10.js';
import type { SyncBarrier } from '../../src/md/sync-barrier.js';
import { memberFiles, pattern, pokeMember, readMember, tempDir } from './array-fixtures.js';

const K = 64 * 1024;
const KiB4 = 4096;
const MiB = 1024 * 1024;
/** The range every test writes first through the ordinary path: its bitmap chunk Dirty and durable after. */
const SPAN = MiB;

/** The array's sync barrier (what the sync thread locks its windows with). */
const barrierOf = (array: MdArray): SyncBarrier => (array as unknown as { set: { barrier: SyncBarrier } }).set.barrier;

/** Whether every copy of array range [offset, offset+length) in the member files holds `oracle`'s bytes. */
function copiesHold(array: MdArray, paths: readonly string[], oracle: Buffer, offset: number, length: number): string | undefined {
  const r = array.personality as Raid10;
  for (let pos = offset; pos < offset + length;) {
    const chunk = Math.floor(pos / r.chunkSize);
    const inChunk = pos - chunk * r.chunkSize;
    const n = Math.min(r.chunkSize - inChunk, offset + length - pos);
    for (const c of r.copiesOf(chunk, inChunk)) {
      if (!readMember(paths[c.role]!, c.offset, n).equals(oracle.subarray(pos, pos + n))) return `role ${c.role} at array ${pos}`;
    }
    pos += n;
  }
  return undefined;
}

for (const [members, copies] of [[4, 2], [3, 2], [5, 3]] as const) {
  test(`raid10 near=${copies} over ${members} members: requests inside a chunk go now on every copy, those across a boundary take the ordinary path`, async (t) => {
    // tmpfs: files whose every request the page cache answers, so their devices take it now.
    const paths = memberFiles(tempDir(t, 'r10-fast', '/dev/shm'), members, 32 * MiB);
    const array = await createArray({ name: 'r10fast', level: 10, members: paths, chunkSize: K, nearCopies: copies });
    t.after(() => array.stop());
    const oracle = pattern(1, SPAN);
    // A chunk's first write: its bitmap state written out now (members in memory), then the data.
    assert.equal(array.writeNow(0, [oracle.subarray(0, KiB4)]), true, 'a first write is done now');
    assert.equal(copiesHold(array, paths, oracle, 0, KiB4), undefined, 'every copy holds it');
    await array.write(0, oracle);
    let seed = 2;
    for (let c = 0; c < SPAN / K - 1; c++) {
      const end = (c + 1) * K;
      // The last 4 KiB of chunk c, given in two parts: inside one chunk, done now.
      const tail = pattern(seed++, KiB4);
      assert.equal(array.writeNow(end - KiB4, [tail.subarray(0, 1000), tail.subarray(1000)]), true, `chunk ${c}: tail written now`);
      tail.copy(oracle, end - KiB4);
      assert.equal(copiesHold(array, paths, oracle, end - KiB4, KiB4), undefined, `chunk ${c}: every copy holds the tail`);
      // Across the boundary into chunk c+1: two copy sets, declined before any member is written.
      const across = pattern(seed++, KiB4);
      assert.equal(array.writeNow(end - KiB4 / 2, [across]), false, `chunk ${c}: a write across the boundary is declined`);
      assert.equal(copiesHold(array, paths, oracle, end - KiB4, 2 * KiB4), undefined, `chunk ${c}: the declined write reached no member`);
      await array.write(end - KiB4 / 2, across);
      across.copy(oracle, end - KiB4 / 2);
      // Reads: the whole last 4 KiB of a chunk now; across the boundary by read().
      const out = Buffer.alloc(KiB4);
      assert.equal(array.readNow(end - KiB4, out), true, `chunk ${c}: tail read now`);
      assert.ok(out.equals(oracle.subarray(end - KiB4, end)), `chunk ${c}: tail bytes`);
      assert.equal(array.readNow(end - KiB4 / 2, Buffer.alloc(KiB4)), false, `chunk ${c}: a read across the boundary is declined`);
      assert.ok((await array.read(end - KiB4 / 2, KiB4)).equals(oracle.subarray(end - KiB4 / 2, end + KiB4 / 2)), `chunk ${c}: across bytes`);
    }
    // Every copy of every chunk, and reads across many chunks at once (each part read into its place).
    assert.equal(copiesHold(array, paths, oracle, 0, SPAN), undefined);
    assert.ok((await array.read(0, SPAN)).equals(oracle));
    assert.ok((await array.read(K / 2 + 512, 3 * K)).equals(oracle.subarray(K / 2 + 512, K / 2 + 512 + 3 * K)));
    for (const [off, len] of [[0, SPAN], [K / 2 + 512, 3 * K], [K, K], [3 * K - KiB4, 2 * KiB4]] as const) {
      const into = Buffer.alloc(len, 0xee);
      await array.readInto(off, into);
      assert.ok(into.equals(oracle.subarray(off, off + len)), `readInto [${off}, +${len})`);
    }
    assert.equal(array.status().state, 'active');
  });
}

test('a degraded raid10 never writes by the fast path, and reads by it from the copies left', async (t) => {
  // tmpfs: files whose every request the page cache answers, so their devices take it now.
  const paths = memberFiles(tempDir(t, 'r10-fast', '/dev/shm'), 4, 32 * MiB);
  const array = await createArray({ name: 'r10deg', level: 10, members: paths, chunkSize: K });
  t.after(() => array.stop());
  const data = pattern(3, SPAN);
  await array.write(0, data);
  await array.fail(paths[1]!);
  assert.equal(array.status().state, 'degraded');
  // The failed member's copies (chunks 0, 2, 4, ... on roles 0 and 1) made wrong behind the
  // array's back: a read that went to it would show it.
  pokeMember(paths[1]!, 0, pattern(4, SPAN / 2));
  assert.equal(array.writeNow(KiB4, [pattern(5, KiB4)]), false, 'no fast write on a degraded array');
  assert.equal(copiesHold(array, paths.map((p, i) => (i === 1 ? paths[0]! : p)), data, 0, SPAN), undefined, 'nothing reached a member');
  for (let round = 0; round < 2; round++) {
    for (let off = 0; off < SPAN; off += KiB4) {
      const out = Buffer.alloc(KiB4);
      assert.equal(array.readNow(off, out), true, `read at ${off} now`);
      assert.ok(out.equals(data.subarray(off, off + KiB4)), `bytes at ${off}`);
    }
    const into = Buffer.alloc(SPAN - K / 2);
    await array.readInto(K / 4, into);
    assert.ok(into.equals(data.subarray(K / 4, K / 4 + into.length)), 'a read across chunks comes from the copies left');
  }
});

test('every level offers readInto, and it reads what read() reads', async (t) => {
  const dir = tempDir(t, 'r10-fast', '/dev/shm');
  for (const [level, n] of [[1, 2], [10, 4], [0, 2], [5, 3], [6, 4]] as const) {
    const array = await createArray({ name: `into${level}`, level, members: memberFiles(dir, n, 16 * MiB, `l${level}-`), chunkSize: K });
    t.after(() => array.stop());
    assert.equal(typeof array.readInto, 'function', `raid${level}`);
    const data = pattern(10 + level, 2 * K);
    await array.write(K / 2, data);
    assert.ok((await array.read(K / 2, 2 * K)).equals(data), `raid${level}: read`);
    const into = Buffer.alloc(2 * K, 0xee);
    await array.readInto(K / 2, into);
    assert.ok(into.equals(data), `raid${level}: readInto`);
  }
});

test('with a member rebuilding, fast reads come from in-sync copies only and writes wait for the ordinary path; after the rebuild both go now', async (t) => {
  // tmpfs: files whose every request the page cache answers, so their devices take it now.
  const paths = memberFiles(tempDir(t, 'r10-fast', '/dev/shm'), 4, 32 * MiB);
  const array = await createArray({ name: 'r10reb', level: 10, members: paths, chunkSize: K });
  t.after(() => array.stop());
  await array.write(0, pattern(6, SPAN));
  await array.fail(paths[1]!);
  // Written while the member is out: its copies stay stale until the rebuild reaches them.
  const data = pattern(7, SPAN);
  await array.write(0, data);
  // No sync window may open: the member stays rebuilding with its stale bytes for as long as this is held.
  const release = await barrierOf(array).lock(0, array.size);
  let released = false;
  t.after(() => {
    if (!released) release();
  });
  assert.equal(await array.reAdd(paths[1]!), 'bitmap');
  assert.equal(array.status().members.find((m) => m.name === paths[1])?.state, 'rebuilding');
  assert.ok(!readMember(paths[1]!, 0, KiB4).equals(data.subarray(0, KiB4)), 'the rebuilding member holds stale bytes');
  for (let round = 0; round < 2; round++) {
    for (let off = 0; off < SPAN; off += KiB4) {
      const out = Buffer.alloc(KiB4);
      assert.equal(array.readNow(off, out), true, `read at ${off} now`);
      assert.ok(out.equals(data.subarray(off, off + KiB4)), `bytes at ${off}: never the rebuilding member's`);
    }
  }
  assert.equal(array.writeNow(2 * MiB, [pattern(8, KiB4)]), false, 'no fast write while a member rebuilds');
  released = true;
  release();
  await array.waitSync();
  assert.equal(array.status().state, 'active');
  assert.equal(copiesHold(array, paths, data, 0, SPAN), undefined, 'the rebuilt member holds every chunk');
  const now = pattern(9, KiB4);
  assert.equal(array.writeNow(KiB4, [now]), true, 'a whole array writes now again');
  now.copy(data, KiB4);
  assert.equal(copiesHold(array, paths, data, 0, 2 * KiB4), undefined);
});
