// A member whose write fails, for any reason, is failed: on a real filesystem that fills up
// (ENOSPC), the array goes degraded, every write the application made succeeds from the copy that
// holds it, reads never alternate between old and new bytes, and a re-add after space is freed
// recovers only the chunks the bitmap kept. Preallocated ("thick") members never give blocks
// back, so a TRIM cannot set up a later ENOSPC.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assembleArray, createArray } from '../../src/md/index.js';
import { FileDevice } from '../../src/block/file-device.js';
import { NoSpaceError, ReadOnlyError } from '../../src/block/errors.js';
import type { WriteOptions } from '../../src/block/block-device.js';
import { FilterDevice } from '../../src/block/filter-device.js';
import { memberFiles, pattern, readMember, tempDir } from './array-fixtures.js';

const MiB = 1024 * 1024;

/** A tmpfs of `size` at a new directory; unmounted (and removed) when the test ends. */
function mountTmpfs(t: TestContext, size: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'llraid-small-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  t.after(() => {
    execFileSync('umount', ['-l', dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

test('a member that runs out of space is failed, the writes succeed from the other copy, and a re-add recovers only what it missed', async (t) => {
  const dir = tempDir(t);
  const small = mountTmpfs(t, '20M');
  const a = join(dir, 'a.img');
  const b = join(small, 'b.img');
  for (const p of [a, b]) {
    writeFileSync(p, '');
    execFileSync('truncate', ['-s', '64M', p]);
  }
  const array = await createArray({ name: 'full', level: 1, members: [a, b], daemonSleep: 1, barrierIdle: 0 });
  let stopped = false;
  t.after(async () => {
    if (!stopped) await array.stop();
  });
  // 40 MiB of 1 MiB writes: b's filesystem (20 MiB) fills half-way through.
  const written: Buffer[] = [];
  for (let i = 0; i < 40; i++) {
    const data = pattern(1000 + i, MiB);
    written.push(data);
    await array.write(i * MiB, data);
  }
  const st = array.status();
  assert.equal(st.state, 'degraded');
  const bStatus = st.members.find((m) => m.name === b);
  assert.equal(bStatus?.state, 'faulty');
  assert.match(bStatus?.failure ?? '', /ENOSPC|No space left/);
  // Every read, repeated, returns what was written (no alternating between copies).
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 40; i++) assert.ok((await array.read(i * MiB, MiB)).equals(written[i]!), `chunk ${i} round ${round}`);
  }
  // The bitmap daemon must not clean what b lacks: give it time to run, then free space, re-add.
  await new Promise((r) => setTimeout(r, 2500));
  execFileSync('mount', ['-o', 'remount,size=100M', small]);
  await array.remove(b);
  assert.equal(await array.reAdd(b), 'bitmap');
  const recovery = await array.waitSync();
  assert.equal(recovery?.complete, true);
  assert.ok((recovery?.bytesSynced ?? 0) > 0, 'the chunks written while b was failed are recovered');
  assert.ok((recovery?.bytesSynced ?? 0) <= 40 * MiB, `recovered ${recovery?.bytesSynced} bytes, more than was written`);
  assert.equal(array.status().state, 'active');
  array.startSync('check');
  const check = await array.waitSync();
  assert.equal(check?.complete, true);
  assert.equal(check?.mismatches, 0);
  await array.stop();
  stopped = true;
  for (let i = 0; i < 40; i++) assert.ok(readMember(b, i * MiB, MiB).equals(written[i]!), `member b chunk ${i}`);
});

/**
 * A member device whose writes reject with a chosen error once armed (a unit-level fault). It
 * changes write(), so writev and writeNow are not offered: every data write meets the fault.
 */
class FailingWrites extends FilterDevice {
  armed: Error | undefined;
  override write(offset: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    // Superblock and bitmap writes (below the data area) go through, so only the data write fails.
    if (this.armed && offset >= 1024 * 1024) return Promise.reject(this.armed);
    return super.write(offset, data, options);
  }
}

for (const [what, error] of [
  ['ENOSPC', new NoSpaceError('injected: no space left')],
  ['EROFS', new ReadOnlyError('injected: read-only filesystem')],
  ['a non-block error', new Error('injected: something else')],
] as const) {
  test(`a data write that fails with ${what} fails the member and succeeds on the other copy`, async (t) => {
    const [p0, p1] = memberFiles(tempDir(t), 2, 32 * MiB) as [string, string];
    const created = await createArray({ name: 'inj', level: 1, members: [p0, p1] });
    await created.stop();
    const d1 = new FailingWrites(await FileDevice.open(p1, { exclusive: true }));
    const { array } = await assembleArray({ members: [p0, { name: p1, device: d1 }] });
    t.after(async () => {
      await array.stop();
      await d1.close();
    });
    d1.armed = error;
    const data = pattern(7, 64 * 1024);
    await array.write(0, data);
    const m = array.status().members.find((x) => x.name === p1);
    assert.equal(m?.state, 'faulty');
    assert.match(m?.failure ?? '', /injected/);
    assert.ok((await array.read(0, data.length)).equals(data));
  });
}

test('the last in-sync copy is never failed: its write error reaches the caller', async (t) => {
  const [p0, p1] = memberFiles(tempDir(t), 2, 32 * MiB) as [string, string];
  const created = await createArray({ name: 'last', level: 1, members: [p0, p1] });
  await created.stop();
  const d1 = new FailingWrites(await FileDevice.open(p1, { exclusive: true }));
  const { array } = await assembleArray({ members: [p0, { name: p1, device: d1 }] });
  t.after(async () => {
    await array.stop();
    await d1.close();
  });
  await array.fail(p0);
  d1.armed = new NoSpaceError('injected: no space left');
  await assert.rejects(array.write(0, pattern(8, 4096)), /no space left/);
  assert.equal(array.status().members.find((x) => x.name === p1)?.state, 'in_sync');
});

test('a preallocated member keeps its blocks through TRIM and zeroing', async (t) => {
  const dir = tempDir(t);
  const paths = [join(dir, 't0.img'), join(dir, 't1.img')];
  for (const p of paths) execFileSync('fallocate', ['-l', String(64 * MiB), p]);
  const array = await createArray({ name: 'thick', level: 1, members: paths, assumeClean: true });
  t.after(() => array.stop());
  const blocks = (): number[] => paths.map((p) => statSync(p).blocks);
  const before = blocks();
  await array.write(0, pattern(9, 8 * MiB));
  await array.discard(0, 4 * MiB);
  await array.writeZeroes(4 * MiB, 4 * MiB);
  await array.flush();
  const after = blocks();
  for (const [i, n] of after.entries()) assert.ok(n >= before[i]!, `member ${i}: ${before[i]} blocks before, ${n} after: blocks were given back`);
  assert.ok((await array.read(4 * MiB, 4 * MiB)).equals(Buffer.alloc(4 * MiB)), 'zeroed range reads zeroes');
  const sparse = memberFiles(dir, 1, 8 * MiB, 'sparse')[0]!;
  const dev = await FileDevice.open(sparse);
  t.after(() => dev.close());
  assert.equal(dev.thick, false, 'a sparse file is thin');
});
