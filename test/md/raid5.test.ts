// raid5/raid6 personality over real member files: data reads back, parity matches an independent
// recomputation, rmw/rcw choice, the stripe cache, degraded reads and writes, lazy-parity writes
// (reconstruct-write while parity is not synced), and the sync modes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createRaid5, ParityPersonality } from '../../src/md/parity/parity-personality.js';
import { createRaid6 } from '../../src/md/parity/parity-personality.js';
import { MdError } from '../../src/md/errors.js';
import { FileMembers, inconsistentRows, memberFiles, tempDir } from './raid5-fixture.js';
import { seededRandom } from '../../src/block/fault-device.js';

const K = 1024;
const CHUNK = 16 * K;
const ROWS = 8;
const MEMBER = CHUNK * ROWS;

async function setup(t: Parameters<typeof tempDir>[0], level: 5 | 6, n: number, layout = 2) {
  const dir = tempDir(t);
  const devices = await memberFiles(dir, n, MEMBER);
  t.after(async () => {
    await Promise.all(devices.map((d) => d.close()));
  });
  const members = new FileMembers(devices, MEMBER);
  const make = level === 5 ? createRaid5 : createRaid6;
  const p = make({ raidDisks: n, memberSize: MEMBER, chunkSize: CHUNK, layout });
  return { devices, members, p };
}

/** Random writes of random sizes (sector aligned) applied to the array and to an oracle buffer. */
async function randomWrites(p: ParityPersonality, members: FileMembers, oracle: Buffer, seed: number, count: number) {
  const rnd = seededRandom(seed);
  const size = p.arraySize;
  await Promise.all(
    Array.from({ length: count }, async () => {
      const len = 512 * (1 + Math.floor(rnd() * 100));
      const off = 512 * Math.floor(rnd() * ((size - len) / 512));
      const data = randomBytes(len);
      // Overlapping concurrent writes have no defined order; keep the oracle exact by not overlapping.
      return { off, data };
    }),
  ).then(async (ws) => {
    const taken: [number, number][] = [];
    const chosen = ws.filter(({ off, data }) => {
      if (taken.some(([a, b]) => off < b && a < off + data.length)) return false;
      taken.push([off, off + data.length]);
      return true;
    });
    await Promise.all(chosen.map(({ off, data }) => p.write(members, off, data)));
    for (const { off, data } of chosen) data.copy(oracle, off);
  });
}

for (const [level, n] of [[5, 4], [5, 3], [6, 5], [6, 4]] as const) {
  for (const layout of [0, 1, 2, 3]) {
    test(`raid${level} (${n} members, layout ${layout}): concurrent random writes read back and parity matches`, async (t) => {
      const { devices, members, p } = await setup(t, level, n, layout);
      const oracle = Buffer.alloc(p.arraySize);
      for (let round = 0; round < 3; round++) await randomWrites(p, members, oracle, 100 * layout + round + n, 12);
      assert.deepEqual(await p.read(members, 0, p.arraySize), oracle);
      assert.deepEqual(await inconsistentRows(devices, p.geometry, ROWS), []);
      assert.ok(p.stats.rmwWrites + p.stats.rcwWrites > 0 && p.stats.fullWrites > 0, JSON.stringify(p.stats));
    });
  }
}

test('a small write reads less with read-modify-write, a wide one with reconstruct-write', async (t) => {
  const { members, p } = await setup(t, 5, 5);
  p.setParitySyncState(undefined);
  // 4 KiB in one data block: rmw reads 1 data + P = 8 KiB; rcw would read 3 blocks.
  await p.write(members, 0, randomBytes(4 * K));
  assert.equal(p.stats.rmwWrites, 1);
  const rowBytes = p.geometry.rowBytes;
  // 3 of 4 data blocks of another row: rcw reads the one untouched block.
  const before = members.totalReads();
  await p.write(members, 2 * rowBytes, randomBytes(3 * CHUNK));
  assert.equal(p.stats.rcwWrites, 1);
  assert.equal(members.totalReads() - before, CHUNK);
  // A whole row: nothing read at all.
  const before2 = members.totalReads();
  await p.write(members, 4 * rowBytes, randomBytes(rowBytes));
  assert.equal(members.totalReads() - before2, 0);
  assert.equal(p.stats.fullWrites, 1);
});

test('the stripe cache lets a row written in pieces compute parity without reading', async (t) => {
  const { members, p, devices } = await setup(t, 6, 6);
  const rowBytes = p.geometry.rowBytes; // 4 data blocks
  const data = randomBytes(rowBytes * 2);
  // Sequential writes of one and a half chunks: the first piece of each row reads, the rest hit the cache.
  const piece = CHUNK + CHUNK / 2;
  for (let off = 0; off < data.length; off += piece) await p.write(members, off, data.subarray(off, off + piece));
  const readDuringWrites = members.totalReads();
  // Without a cache every piece would read the untouched blocks of its row.
  const cold = createRaid6({ raidDisks: 6, memberSize: MEMBER, chunkSize: CHUNK, stripeCacheSize: 0 });
  const coldMembers = new FileMembers(devices, MEMBER);
  for (let off = 0; off < data.length; off += piece) await cold.write(coldMembers, off, data.subarray(off, off + piece));
  assert.ok(readDuringWrites * 2 <= coldMembers.totalReads(), `cached ${readDuringWrites} bytes read vs uncached ${coldMembers.totalReads()}`);
  assert.deepEqual(await p.read(members, 0, data.length), data);
  assert.deepEqual(await inconsistentRows(devices, p.geometry, 2), []);
});

test("the stripe cache keeps a sequential writer's rows, not a random writer's", async (t) => {
  const { members, p } = await setup(t, 5, 5);
  p.setParitySyncState(undefined);
  const rowBytes = p.geometry.rowBytes;
  const rewrite = async (off: number): Promise<number> => {
    await p.write(members, off, randomBytes(4 * K));
    const before = members.totalReads();
    await p.write(members, off, randomBytes(4 * K));
    return members.totalReads() - before;
  };
  // Inside a row, not where a writer left off: the second write reads old data and P again.
  assert.equal(await rewrite(3 * rowBytes + 8 * K), 8 * K);
  // A piece that starts a row, then one that continues it: the row is cached, the rewrite of the
  // second piece's block reads nothing.
  await p.write(members, 5 * rowBytes, randomBytes(4 * K));
  assert.equal(await rewrite(5 * rowBytes + 4 * K), 0);
});

test('while parity is not synced, partial writes use reconstruct-write and leave the stripe consistent', async (t) => {
  const { members, p, devices } = await setup(t, 6, 5);
  // Garbage everywhere: parity of every row is wrong, as on a freshly created lazy array.
  for (const d of devices) await d.write(0, randomBytes(MEMBER));
  let asked = 0;
  p.setParitySyncState({
    blocksSynced: () => {
      asked++;
      return false;
    },
  });
  const data = randomBytes(4 * K);
  await p.write(members, 3 * p.geometry.rowBytes + 5 * K, data);
  assert.ok(asked > 0);
  assert.equal(p.stats.rmwWrites, 0);
  assert.equal(p.stats.rcwWrites, 1);
  // Only the written columns [5K, 9K) of row 3 are consistent; check them by rebuilding from parity.
  members.fail(p.geometry.locate(3 * p.geometry.rowBytes + 5 * K).member);
  assert.deepEqual(await p.read(members, 3 * p.geometry.rowBytes + 5 * K, 4 * K), data);
});

for (const [level, n] of [[5, 4], [6, 5]] as const) {
  test(`raid${level}: with ${level === 5 ? 'one member' : 'two members'} missing, reads rebuild from parity and writes continue`, async (t) => {
    const { members, p, devices } = await setup(t, level, n);
    const oracle = Buffer.alloc(p.arraySize);
    await randomWrites(p, members, oracle, 7, 20);
    members.fail(1);
    if (level === 6) members.fail(3);
    // Fresh personality: no stripe cache to answer from, everything must come from parity.
    const q = (level === 5 ? createRaid5 : createRaid6)({ raidDisks: n, memberSize: MEMBER, chunkSize: CHUNK });
    assert.deepEqual(await q.read(members, 0, p.arraySize), oracle);
    await randomWrites(q, members, oracle, 8, 20);
    const r = (level === 5 ? createRaid5 : createRaid6)({ raidDisks: n, memberSize: MEMBER, chunkSize: CHUNK });
    assert.deepEqual(await r.read(members, 0, p.arraySize), oracle);
    assert.ok(q.stats.degradedWrites + q.stats.rcwWrites > 0);
    void devices;
  });
}

test('raid6: a third failure refuses writes with a clear error and writes nothing', async (t) => {
  const { members, p, devices } = await setup(t, 6, 5);
  await p.write(members, 0, randomBytes(p.arraySize));
  const before = await Promise.all(devices.map((d) => d.read(0, MEMBER)));
  members.fail(0);
  members.fail(2);
  members.fail(4);
  await assert.rejects(p.write(members, 0, randomBytes(8 * K)), (e: unknown) => {
    assert.ok(e instanceof MdError);
    assert.equal(e.code, 'EIO');
    assert.match(e.message, /^raid6: cannot write: 3 of 5 members unavailable \(roles 0, 2, 4\), at most 2 can be rebuilt$/);
    return true;
  });
  const fresh = createRaid6({ raidDisks: 5, memberSize: MEMBER, chunkSize: CHUNK });
  await assert.rejects(fresh.read(members, 0, 64 * K), /raid6: cannot read: 3 of 5 members unavailable/);
  const after = await Promise.all(devices.map((d) => d.read(0, MEMBER)));
  assert.deepEqual(after, before);
  assert.equal(p.canRun([false, true, false, true, false]), false);
  assert.equal(p.canRun([false, true, true, true, false]), true);
  assert.equal(p.isDegraded([true, true, true, true, true]), false);
});

test('check counts mismatching 4 KiB units as 8 sectors each, repair and resync rewrite parity', async (t) => {
  const { members, p, devices } = await setup(t, 6, 5);
  const data = randomBytes(p.arraySize);
  await p.write(members, 0, data);
  const syncSize = p.syncSize;
  assert.deepEqual(await p.syncWindow(members, 'check', 0, syncSize), { mismatches: 0, bytesWritten: 0 });
  // Corrupt P in row 1 (one 4 KiB unit) and Q in row 5 (two units, one byte each).
  const g = p.geometry;
  // Each corruption flips the byte that is there: a constant would change nothing one time in 256.
  const flip = async (d: (typeof devices)[number], at: number): Promise<void> => {
    const [byte] = await d.read(at, 1);
    await d.write(at, Buffer.from([byte! ^ 0xff]));
  };
  await flip(devices[g.stripe(1).pd]!, 1 * CHUNK + 4 * K + 3);
  await flip(devices[g.stripe(5).qd]!, 5 * CHUNK + 1);
  await flip(devices[g.stripe(5).qd]!, 5 * CHUNK + 12 * K);
  const fresh = createRaid6({ raidDisks: 5, memberSize: MEMBER, chunkSize: CHUNK });
  assert.deepEqual(await fresh.syncWindow(members, 'check', 0, syncSize), { mismatches: 24, bytesWritten: 0 });
  assert.deepEqual((await inconsistentRows(devices, g, ROWS)).sort(), [1, 5]);
  const repaired = await fresh.syncWindow(members, 'repair', 0, syncSize);
  assert.deepEqual(repaired, { mismatches: 24, bytesWritten: 3 * 4 * K });
  assert.deepEqual(await inconsistentRows(devices, g, ROWS), []);
  // resync repairs silently (md's resync does not count).
  await devices[g.stripe(2).pd]!.write(2 * CHUNK, Buffer.from([1, 2, 3]));
  const resynced = await fresh.syncWindow(members, 'resync', 2 * CHUNK, CHUNK);
  assert.deepEqual(resynced, { mismatches: 0, bytesWritten: 4 * K });
  assert.deepEqual(await inconsistentRows(devices, g, ROWS), []);
  assert.deepEqual(await fresh.read(members, 0, p.arraySize), data);
});

test('recovery rebuilds a replaced member (data, P and Q roles) from the others', async (t) => {
  for (const level of [5, 6] as const) {
    const n = level === 5 ? 4 : 5;
    const { members, p, devices } = await setup(t, level, n);
    const data = randomBytes(p.arraySize);
    await p.write(members, 0, data);
    const original = await devices[2]!.read(0, MEMBER);
    const dir = tempDir(t);
    const [spare] = await memberFiles(dir, 1, MEMBER, 'spare');
    t.after(() => spare!.close());
    members.devices[2] = spare!;
    members.states[2] = 'rebuilding';
    if (level === 6) members.fail(0);
    // Recovery in uneven windows, as a throttled sync thread would step.
    const fresh = (level === 5 ? createRaid5 : createRaid6)({ raidDisks: n, memberSize: MEMBER, chunkSize: CHUNK });
    let written = 0;
    for (let off = 0; off < p.syncSize; off += 12 * K) {
      written += (await fresh.syncWindow(members, 'recovery', off, Math.min(12 * K, p.syncSize - off))).bytesWritten;
    }
    assert.equal(written, p.syncSize);
    assert.deepEqual(await spare!.read(0, MEMBER), original);
  }
});

test('zeroing whole rows writes zero parity, partial rows go through the write path', async (t) => {
  const { members, p, devices } = await setup(t, 5, 4);
  await p.write(members, 0, randomBytes(p.arraySize));
  const row = p.geometry.rowBytes;
  await p.writeZeroes(members, row + 1024, 3 * row);
  const back = await p.read(members, 0, p.arraySize);
  assert.ok(back.subarray(row + 1024, 4 * row + 1024).every((b) => b === 0));
  assert.deepEqual(await inconsistentRows(devices, p.geometry, ROWS), []);
});

test('bad geometry is refused with a typed error', () => {
  assert.throws(() => createRaid6({ raidDisks: 3, memberSize: MEMBER }), (e: unknown) => e instanceof MdError && e.code === 'EINVAL');
  assert.throws(() => createRaid5({ raidDisks: 4, memberSize: 1000, chunkSize: 4096 }), (e: unknown) => e instanceof MdError && e.code === 'ENOSPC');
  assert.throws(() => createRaid5({ raidDisks: 4, memberSize: MEMBER, layout: 7 }), (e: unknown) => e instanceof MdError && e.code === 'EINVAL');
});

test('syncRange maps an array range to the member range its parity lives in', () => {
  const p = createRaid5({ raidDisks: 4, memberSize: MEMBER, chunkSize: CHUNK });
  const row = p.geometry.rowBytes;
  assert.deepEqual(p.syncRange(2 * row + 4096, 512), { offset: 2 * CHUNK + 4096, length: 512 });
  assert.deepEqual(p.syncRange(row + CHUNK - 512, 1024), { offset: CHUNK, length: CHUNK });
  assert.deepEqual(p.syncRange(row, 2 * row), { offset: CHUNK, length: 2 * CHUNK });
  assert.deepEqual(p.syncRange(0, 0), { offset: 0, length: 0 });
});

/** Member files whose next read of `role` returns what it read only once release() is called. */
class LateReads extends FileMembers {
  role = -1;
  #release: (() => void) | undefined;
  release(): void {
    this.#release?.();
  }
  #late(role: number): Promise<void> {
    if (role !== this.role) return Promise.resolve();
    this.role = -1;
    return new Promise((resolve) => (this.#release = resolve));
  }
  override async read(role: number, offset: number, length: number): Promise<Buffer> {
    const b = await super.read(role, offset, length);
    await this.#late(role);
    return b;
  }
  override async readInto(role: number, offset: number, out: Buffer): Promise<void> {
    await super.readInto(role, offset, out);
    await this.#late(role);
  }
}

test('a read that returns after a write to its blocks leaves nothing stale behind for the next parity update', async (t) => {
  const dir = tempDir(t);
  const devices = await memberFiles(dir, 4, MEMBER);
  t.after(async () => {
    await Promise.all(devices.map((d) => d.close()));
  });
  const members = new LateReads(devices, MEMBER);
  const p = createRaid5({ raidDisks: 4, memberSize: MEMBER, chunkSize: CHUNK });
  const map = p.geometry.stripe(0);
  await p.write(members, 0, randomBytes(p.geometry.rowBytes));
  // A read across D0 and D1 of row 0: D0's member answers with its bytes of before the write below.
  members.role = map.dataMembers[0]!;
  const reading = p.read(members, 0, 2 * CHUNK);
  const d0 = randomBytes(CHUNK);
  await p.write(members, 0, d0);
  members.release();
  await reading;
  // D1 next: its parity is computed from D0 as the array holds it, not as the late read saw it.
  await p.write(members, CHUNK, randomBytes(CHUNK));
  assert.deepEqual(await inconsistentRows(devices, p.geometry, [0]), []);
  assert.deepEqual(await p.read(members, 0, CHUNK), d0);
});
