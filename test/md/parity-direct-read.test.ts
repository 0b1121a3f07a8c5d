// The parity levels' direct read (md's chunk_aligned_read; StripeEngine.read/readInto/readNow): a
// read inside one chunk whose data member is in sync and whose row no write or sync step holds
// goes to that member alone, now, by promise or into a caller's buffer; every other read takes
// the stripe path. Real member files on tmpfs (so their devices answer now), a real MdArray, and every byte checked against a
// model of what the array was told to hold: writes and reads interleaved on the same rows (a
// read after a write to its block sees it, even while writes to the row's other blocks hold the
// row), a degraded array (blocks of the missing member rebuilt from parity), a member being
// rebuilt (never read directly until it is in sync), raid6 with two members missing, and a
// member whose direct read fails (failed, and the block rebuilt).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assembleArray, createArray, type MdArray } from '../../src/md/index.js';
import { FileDevice } from '../../src/block/file-device.js';
import { FilterDevice } from '../../src/block/filter-device.js';
import { IoError } from '../../src/block/errors.js';
import type { WriteOptions } from '../../src/block/block-device.js';
import { ParityPersonality } from '../../src/md/parity/parity-personality.js';
import { ParityLayout } from '../../src/md/parity/layout.js';
import { DATA_OFFSET, memberFiles, pattern, readMember, tempDir } from './array-fixtures.js';
import { inconsistentRows } from './raid5-fixture.js';

const MiB = 1024 * 1024;
const MEMBER = 64 * MiB;
const CHUNK = 64 * 1024;
const KiB4 = 4096;

/** The direct reads the array's parity personality has served so far. */
function directReads(array: MdArray): number {
  const p = array.personality;
  assert.ok(p instanceof ParityPersonality);
  return p.stats.directReads;
}

/** A member file whose reads, now and by promise, fail with EIO once `broken` is set. */
class BreakableReads extends FilterDevice {
  broken = false;
  override read(offset: number, length: number): Promise<Buffer> {
    if (this.broken) return Promise.reject(new IoError(`injected: read [${offset}, +${length}) failed`));
    return this.inner.read(offset, length);
  }
  override readNow(offset: number, out: Buffer): boolean {
    if (this.broken) throw new IoError(`injected: read now [${offset}, +${out.length}) failed`);
    return this.inner.readNow!(offset, out);
  }
}

/**
 * A new member whose writes into the data area below `heldBelow` wait until release(): the
 * recovery's first window stalls there, so the member stays rebuilding while the test works on
 * rows above it (whose application writes reach the member at once).
 */
class StalledRecovery extends FilterDevice {
  #release!: () => void;
  readonly #gate = new Promise<void>((resolve) => (this.#release = resolve));
  constructor(inner: FileDevice, readonly heldBelow: number) {
    super(inner);
  }
  override async write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    if (offset >= DATA_OFFSET && offset < DATA_OFFSET + this.heldBelow) await this.#gate;
    return this.inner.write(offset, data, options);
  }
  release(): void {
    this.#release();
  }
}

/** What the array must read back: the model of every byte written through it (zero elsewhere). */
class Model {
  readonly bytes: Buffer;
  constructor(size: number) {
    this.bytes = Buffer.alloc(size);
  }
  set(offset: number, data: Buffer): void {
    data.copy(this.bytes, offset);
  }
  at(offset: number, length: number): Buffer {
    return this.bytes.subarray(offset, offset + length);
  }
}

/** Reads [offset, +length) now (when the array takes it now), by promise and into a buffer; each must match the model. */
async function expectBytes(array: MdArray, model: Model, offset: number, length: number, what: string): Promise<boolean> {
  const out = Buffer.alloc(length, 0xee);
  const now = array.readNow(offset, out);
  if (now) assert.ok(out.equals(model.at(offset, length)), `${what}: readNow [${offset}, +${length})`);
  assert.ok((await array.read(offset, length)).equals(model.at(offset, length)), `${what}: read [${offset}, +${length})`);
  const into = Buffer.alloc(length, 0xee);
  await array.readInto(offset, into);
  assert.ok(into.equals(model.at(offset, length)), `${what}: readInto [${offset}, +${length})`);
  return now;
}

/** A deterministic sequence of numbers in [0, n). */
function randoms(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x % n;
  };
}

/**
 * Rounds of: writes in flight to other blocks of a row, a write to block X of the row awaited,
 * then X read (now and by promise) while the others may still hold the row; then the row read
 * across its chunks once everything settled. Returns how many of the X reads went now, and how
 * many were declined now (a row held by the writes behind X's, or a member not in sync).
 */
async function interleave(array: MdArray, model: Model, layout: ParityLayout, rows: number[], seed: number, rounds: number): Promise<{ now: number; held: number }> {
  const rnd = randoms(seed);
  const blocks = layout.rowBytes / KiB4;
  let now = 0;
  let held = 0;
  for (let round = 0; round < rounds; round++) {
    const row = rows[rnd(rows.length)]!;
    const base = row * layout.rowBytes;
    const x = base + rnd(blocks) * KiB4;
    const others = [...new Set([0, 1, 2].map(() => base + rnd(blocks) * KiB4))].filter((o) => o !== x);
    const startOthers = () => others.map((o, k) => {
      const data = pattern(seed * 1000 + round * 10 + k + 1, KiB4);
      return array.write(o, data).then(() => ({ o, data }));
    });
    const xData = pattern(seed * 1000 + round * 10, KiB4);
    // Odd rounds queue the other writes behind X's: they hold the row when X is acknowledged.
    let inFlight = round % 2 === 0 ? startOthers() : [];
    const xWrite = array.write(x, xData);
    if (round % 2 === 1) inFlight = startOthers();
    await xWrite;
    model.set(x, xData);
    // The write to X is acknowledged: X reads back as written, whatever else holds the row.
    if (await expectBytes(array, model, x, KiB4, `round ${round}, block after its write`)) now++;
    else held++;
    // A sector inside X, and a read that crosses the next chunk border (the stripe path).
    const sector = x + 512 * rnd(KiB4 / 512);
    const got = await array.read(sector, 512);
    assert.ok(got.equals(model.at(sector, 512)), `round ${round}: sector read`);
    // Writes to the same block land in completion order; the model follows it.
    for (const { o, data } of await Promise.all(inFlight)) model.set(o, data);
    const border = base + (1 + rnd(layout.dataDisks - 1)) * CHUNK - KiB4;
    await expectBytes(array, model, border, 2 * KiB4, `round ${round}, across a chunk border`);
  }
  for (const row of rows) await expectBytes(array, model, row * layout.rowBytes, layout.rowBytes, `row ${row} at the end`);
  return { now, held };
}

/** The member files' data areas, for the independent parity check. */
async function dataAreas(paths: string[]): Promise<{ read(off: number, len: number): Promise<Buffer>; close(): Promise<void> }[]> {
  const devs = await Promise.all(paths.map((p) => FileDevice.open(p, { readOnly: true })));
  return devs.map((d) => ({ read: (off: number, len: number) => d.read(DATA_OFFSET + off, len), close: () => d.close() }));
}

async function parityOk(paths: string[], layout: ParityLayout, rows: number[]): Promise<number[]> {
  const areas = await dataAreas(paths);
  try {
    return await inconsistentRows(areas, layout, rows);
  } finally {
    await Promise.all(areas.map((a) => a.close()));
  }
}

for (const level of [5, 6] as const) {
  const n = level === 5 ? 4 : 5;
  const layout = new ParityLayout({ level, raidDisks: n, chunkSize: CHUNK });

  test(`raid${level}: reads inside one chunk go to the data member, now or by promise; interleaved with writes on the same rows every byte is right`, async (t) => {
    const paths = memberFiles(tempDir(t, 'direct-read', '/dev/shm'), n, MEMBER);
    const array = await createArray({ name: `direct${level}`, level, members: paths, chunkSize: CHUNK, force: true });
    t.after(() => array.stop());
    const model = new Model(array.size);
    const rows = [0, 1, 2, 7, 40];
    for (const r of rows) {
      const data = pattern(100 + r, layout.rowBytes);
      await array.write(r * layout.rowBytes, data);
      model.set(r * layout.rowBytes, data);
    }
    // No lazy parity build holds a row while the reads are counted.
    await array.waitSync();
    // A block of each data member: read straight from where the layout puts it.
    const before = directReads(array);
    for (let i = 0; i < layout.dataDisks; i++) {
      const offset = 7 * layout.rowBytes + i * CHUNK + 3 * KiB4;
      assert.equal(await expectBytes(array, model, offset, KiB4, `data block ${i}`), true, 'a whole array answers a 4 KiB read now');
      const at = layout.locate(offset);
      assert.ok(readMember(paths[at.member]!, at.memberOffset, KiB4).equals(model.at(offset, KiB4)), 'the member the layout names holds it');
    }
    assert.equal(directReads(array) - before, 3 * layout.dataDisks, 'each read, now, by promise and into a buffer, went to the member');
    // A read across a chunk border is the stripe path's.
    const crossing = directReads(array);
    await expectBytes(array, model, 7 * layout.rowBytes + CHUNK - KiB4, 2 * KiB4, 'across a chunk border');
    assert.equal(directReads(array), crossing, 'a read that crosses a chunk is not direct');

    const { now, held } = await interleave(array, model, layout, rows, level, 60);
    assert.ok(now > 0, 'some reads after their write went now');
    assert.ok(held > 0, 'some found their row held by the writes queued behind theirs');
    await array.waitSync();
    assert.deepEqual(await parityOk(paths, layout, rows), []);
  });

  test(`raid${level}: a degraded array reads the blocks it still holds directly and rebuilds the missing member's from parity`, async (t) => {
    const paths = memberFiles(tempDir(t, 'direct-read', '/dev/shm'), n, MEMBER);
    const array = await createArray({ name: `degraded${level}`, level, members: paths, chunkSize: CHUNK, force: true });
    t.after(() => array.stop());
    const model = new Model(array.size);
    const rows = [0, 1, 2, 3, 9];
    for (const r of rows) {
      const data = pattern(200 + r, layout.rowBytes);
      await array.write(r * layout.rowBytes, data);
      model.set(r * layout.rowBytes, data);
    }
    await array.waitSync();
    // Every missing member is one whose data the layout places in row 0 (and, rotated, elsewhere).
    const missing = level === 5 ? [1] : [1, 3];
    for (const m of missing) await array.fail(paths[m]!);
    assert.equal(array.status().state, 'degraded');
    for (const row of rows) {
      for (let i = 0; i < layout.dataDisks; i++) {
        const offset = row * layout.rowBytes + i * CHUNK + 5 * KiB4;
        const member = layout.stripe(row).dataMembers[i]!;
        const before = directReads(array);
        const now = await expectBytes(array, model, offset, KiB4, `row ${row}, data block ${i} on role ${member}`);
        assert.equal(now, !missing.includes(member), `row ${row} block ${i}: now exactly when its member is in sync`);
        assert.equal(directReads(array) - before, missing.includes(member) ? 0 : 3, 'the missing member is never read directly');
      }
    }
    // Writes while degraded (a missing member's blocks live in parity only), read back at once.
    await interleave(array, model, layout, rows, 10 + level, 40);
  });

  test(`raid${level}: a member being rebuilt is never read directly; once recovered it is, and holds what was written meanwhile`, async (t) => {
    const dir = tempDir(t, 'direct-read', '/dev/shm');
    const paths = memberFiles(dir, n, MEMBER);
    const array = await createArray({ name: `rebuild${level}`, level, members: paths, chunkSize: CHUNK, force: true, daemonSleep: 600 });
    const stall: { member?: StalledRecovery } = {};
    // A failed assertion leaves the recovery held: let it go, or stopping the array waits for it.
    t.after(() => {
      stall.member?.release();
      return array.stop();
    });
    const model = new Model(array.size);
    // Rows 0-3 are where the recovery starts (and stalls); the test works on rows 32-39.
    const stalled = [0, 1, 2, 3];
    const rows = [32, 33, 34, 35, 36, 37, 38, 39];
    for (const r of [...stalled, ...rows]) {
      const data = pattern(300 + r, layout.rowBytes);
      await array.write(r * layout.rowBytes, data);
      model.set(r * layout.rowBytes, data);
    }
    await array.waitSync();
    const victim = 2;
    await array.fail(paths[victim]!);
    await array.remove(paths[victim]!);
    const [fresh] = memberFiles(dir, 1, MEMBER, 'new');
    const member = new StalledRecovery(await FileDevice.open(fresh!), 16 * CHUNK);
    stall.member = member;
    await array.add({ name: fresh!, device: member });
    const status = (): string | undefined => array.status().members.find((m) => m.name === fresh)?.state;
    assert.equal(status(), 'rebuilding');
    let rebuildingBlocks = 0;
    for (const row of rows) {
      for (let i = 0; i < layout.dataDisks; i++) {
        const offset = row * layout.rowBytes + i * CHUNK + KiB4;
        const onIt = layout.stripe(row).dataMembers[i] === victim;
        const before = directReads(array);
        await expectBytes(array, model, offset, KiB4, `row ${row}, block ${i}${onIt ? ' (on the rebuilding member)' : ''}`);
        if (onIt) {
          rebuildingBlocks++;
          assert.equal(directReads(array), before, 'the rebuilding member is not read directly');
        }
      }
    }
    assert.ok(rebuildingBlocks > 0);
    // Writes reach the rebuilding member too; its blocks still read through parity.
    await interleave(array, model, layout, rows, 20 + level, 40);
    assert.equal(status(), 'rebuilding', 'the recovery is still held');
    member.release();
    const summary = await array.waitSync();
    assert.equal(summary?.complete, true);
    assert.equal(status(), 'in_sync');
    for (const row of rows) {
      const i = layout.stripe(row).role[victim]!;
      if (i < 0) continue;
      const offset = row * layout.rowBytes + i * CHUNK;
      const before = directReads(array);
      await expectBytes(array, model, offset, CHUNK, `row ${row}: the recovered member's block`);
      assert.equal(directReads(array) - before, 3, 'a recovered member is read directly');
    }
    for (const row of [...stalled, ...rows]) await expectBytes(array, model, row * layout.rowBytes, layout.rowBytes, `row ${row}`);
    // The members by role: the new one took the victim's.
    assert.deepEqual(await parityOk(paths.map((p, m) => (m === victim ? fresh! : p)), layout, [...stalled, ...rows]), []);
  });
}

for (const level of [5, 6] as const) {
  const n = level === 5 ? 4 : 5;
  const layout = new ParityLayout({ level, raidDisks: n, chunkSize: CHUNK });

  // What bench:nbd's raid5 goes through before its random reads of rounds 2 and 3: random 4 KiB
  // writes into a new array (each building its chunk's parity, or the lazy pass behind them),
  // whole rows written in order, a stop and an assembly. After that nothing runs in the
  // background and no read leaves the direct path, which is what makes its random reads cost what
  // raid0's do over the same data.
  test(`raid${level}: after random writes into a new array, whole rows and a restart, every 4 KiB read is direct and reads what was written`, async (t) => {
    const paths = memberFiles(tempDir(t, 'direct-read', '/dev/shm'), n, MEMBER);
    const first = await createArray({ name: `restart${level}`, level, members: paths, chunkSize: CHUNK, force: true });
    let array: MdArray = first;
    t.after(() => array.stop());
    const model = new Model(array.size);
    const rnd = randoms(30 + level);
    const span = 48 * layout.rowBytes;
    // 4 KiB writes 32 at a time, each batch to distinct blocks (the model needs no completion order).
    for (let batch = 0; batch < 16; batch++) {
      const offsets = [...new Set(Array.from({ length: 32 }, () => rnd(span / KiB4) * KiB4))];
      await Promise.all(offsets.map((o, k) => {
        const data = pattern(5000 + batch * 32 + k, KiB4);
        model.set(o, data);
        return array.write(o, data);
      }));
    }
    assert.ok(array.status().bitmap.counts.unwritten > 0, 'the random writes left chunks never written');
    // Whole rows in order over the last part of the span (and past it), 1 MiB at a time.
    const rowsFrom = 32 * layout.rowBytes;
    const whole = pattern(6000 + level, 32 * layout.rowBytes);
    for (let done = 0; done < whole.length; done += MiB) {
      await array.write(rowsFrom + done, whole.subarray(done, done + MiB));
    }
    model.set(rowsFrom, whole);
    await array.waitSync();
    await array.stop();
    array = (await assembleArray({ members: paths })).array;

    const status = array.status();
    assert.equal(status.state, 'active');
    assert.equal(status.sync, null, 'nothing is synced after a clean restart');
    assert.equal(status.bitmap.counts.needSync + status.bitmap.counts.syncing + status.bitmap.counts.needSyncUnwritten, 0, 'no chunk waits for a sync');
    const before = directReads(array);
    const reads = 256;
    for (let k = 0; k < reads; k++) {
      // Over the written rows and a little past them (never written: zeroes).
      const offset = rnd((rowsFrom + whole.length + 8 * layout.rowBytes) / KiB4) * KiB4;
      assert.equal(await expectBytes(array, model, offset, KiB4, `read ${k}`), true, `read ${k} at ${offset} was answered now`);
    }
    assert.equal(directReads(array) - before, 3 * reads, 'every read, now, by promise and into a buffer, went to its data member alone');
    assert.deepEqual(await parityOk(paths, layout, Array.from({ length: 64 }, (_, r) => r)), []);
  });
}

for (const how of ['now', 'by promise', 'into a buffer'] as const) {
  test(`raid5: a member whose direct read ${how} fails is failed, and the read is rebuilt from parity`, async (t) => {
    const layout = new ParityLayout({ level: 5, raidDisks: 4, chunkSize: CHUNK });
    const paths = memberFiles(tempDir(t, 'direct-read', '/dev/shm'), 4, MEMBER);
    const flaky = await Promise.all(paths.map(async (p) => new BreakableReads(await FileDevice.open(p))));
    const array = await createArray({ name: 'flaky', level: 5, members: paths.map((p, m) => ({ name: p, device: flaky[m]! })), chunkSize: CHUNK, force: true });
    t.after(() => array.stop());
    const data = pattern(400, 4 * layout.rowBytes);
    await array.write(0, data);
    await array.waitSync();
    // Row 1's data block on role 0 (left-symmetric, 4 members: D3 is on role 3, D4 on 0, D5 on 1).
    const offset = layout.rowBytes + layout.stripe(1).role[0]! * CHUNK + 2 * KiB4;
    const want = data.subarray(offset, offset + KiB4);
    flaky[0]!.broken = true;
    const state = (): string | undefined => array.status().members.find((m) => m.name === paths[0])?.state;
    if (how === 'now') {
      assert.equal(array.readNow(offset, Buffer.alloc(KiB4)), false, 'a direct read that fails declines');
      assert.equal(state(), 'faulty', 'and its member is failed at once');
    }
    const before = array.personality instanceof ParityPersonality ? array.personality.stats.degradedReads : NaN;
    const got = Buffer.alloc(KiB4, 0xee);
    if (how === 'into a buffer') await array.readInto(offset, got);
    else (await array.read(offset, KiB4)).copy(got);
    assert.ok(got.equals(want), 'the block is rebuilt from the others');
    assert.equal(state(), 'faulty');
    assert.equal(array.status().state, 'degraded');
    assert.ok(array.personality instanceof ParityPersonality && array.personality.stats.degradedReads > before, 'through the stripe path');
    assert.ok((await array.read(0, data.length)).equals(data), 'the whole array reads back');
  });
}
