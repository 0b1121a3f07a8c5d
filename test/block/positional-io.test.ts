import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InlineIo, MAX_INLINE_BYTES } from '../../src/block/positional-io.js';
import { FileDevice, setInlineIoDefault } from '../../src/block/file-device.js';
import { tempDir } from '../support/temp-dir.js';

/** A clock the test moves: `step` ms pass on every reading. */
function fakeClock(step: number): { now: () => number; t: number; step: number } {
  const c = { t: 0, step, now: () => (c.t += c.step) };
  return c;
}

/**
 * A file on tmpfs: InlineIo's policy is for files in memory (a file on a disk gets NowaitIo,
 * test/block/hung-disk-member.test.ts).
 */
function scratchFile(t: { after: (fn: () => void) => void }, size: number): string {
  const path = join(tempDir(t, 'pio', '/dev/shm'), 'f');
  writeFileSync(path, Buffer.alloc(size));
  return path;
}

test('small requests go inline while they are fast, and the bytes land where asked', async (t) => {
  const path = scratchFile(t, 1 << 20);
  const fd = openSync(path, 'r+');
  t.after(() => closeSync(fd));
  const io = new InlineIo(fakeClock(0.001).now);
  const data = Buffer.alloc(4096, 0x5a);
  for (let i = 0; i < 200; i++) assert.equal(await io.write(fd, data, 0, 4096, i * 4096), 4096);
  const back = Buffer.alloc(4096);
  assert.equal(await io.read(fd, back, 0, 4096, 199 * 4096), 4096);
  assert.deepEqual(back, data);
  assert.equal(io.stats.inline, 201);
  assert.equal(io.stats.switches, 0);
  // Large requests never go inline.
  await io.write(fd, Buffer.alloc(MAX_INLINE_BYTES + 4096), 0, MAX_INLINE_BYTES + 4096, 0);
  assert.equal(io.stats.inline, 201);
  assert.deepEqual(readFileSync(path).subarray(0, 4096), Buffer.alloc(4096));
});

test('a run of slow inline calls switches to the pool, and a probe after the back-off switches back', async (t) => {
  const path = scratchFile(t, 1 << 20);
  const fd = openSync(path, 'r+');
  t.after(() => closeSync(fd));
  const clock = fakeClock(1); // every call "takes" 1 ms: slow
  const io = new InlineIo(clock.now);
  const data = Buffer.alloc(512, 1);
  for (let i = 0; i < 9; i++) await io.write(fd, data, 0, 512, i * 512);
  assert.equal(io.stats.switches, 1, 'more than 8 slow calls in a window switch to the pool');
  assert.equal(io.inline, false);
  const before = io.stats.inline;
  for (let i = 0; i < 20; i++) await io.write(fd, data, 0, 512, i * 512);
  assert.equal(io.stats.inline, before, 'no inline call during the back-off');
  assert.deepEqual(readFileSync(path).subarray(0, 20 * 512), Buffer.alloc(20 * 512, 1), 'pool writes land too');
  clock.t += 1000; // the first back-off is 1 s
  clock.step = 0.001; // the device is fast again
  assert.equal(io.inline, true);
  await io.write(fd, data, 0, 512, 0);
  assert.equal(io.stats.inline, before + 1, 'the probe went inline');
  assert.equal(io.stats.switches, 1);
});

test('one stalled call switches at once, and the back-off doubles when the probe is slow too', async (t) => {
  const path = scratchFile(t, 1 << 16);
  const fd = openSync(path, 'r+');
  t.after(() => closeSync(fd));
  const clock = fakeClock(60);
  const io = new InlineIo(clock.now);
  const b = Buffer.alloc(512);
  await io.read(fd, b, 0, 512, 0);
  assert.equal(io.stats.switches, 1);
  clock.t += 1000;
  await io.read(fd, b, 0, 512, 0); // probe, slow again
  assert.equal(io.stats.switches, 2);
  clock.step = 0;
  clock.t += 1500;
  assert.equal(io.inline, false, 'the second back-off is 2 s');
  clock.t += 600;
  assert.equal(io.inline, true);
});

test('an inline call that fails rejects with the errno, as a pool call does', async (t) => {
  const fd = openSync(tempDir(t, 'pio'), 'r');
  t.after(() => closeSync(fd));
  const io = new InlineIo();
  await assert.rejects(io.read(fd, Buffer.alloc(512), 0, 512, 0), (e: NodeJS.ErrnoException) => e.code === 'EISDIR');
  assert.equal(io.stats.inline, 0);
});

test('a FileDevice with and without inline I/O reads back what it wrote', async (t) => {
  const path = scratchFile(t, 1 << 20);
  for (const inline of [true, false]) {
    const dev = await FileDevice.open(path, { inline });
    const data = Buffer.alloc(8192, inline ? 7 : 9);
    await dev.write(12288, data);
    await dev.write(65536, data, { fua: true });
    assert.deepEqual(await dev.read(12288, 8192), data);
    assert.deepEqual(await dev.read(65536, 8192), data);
    await dev.close();
  }
});

test('writev gathers parts in order, zero-length parts and FUA included, inline and through the pool', async (t) => {
  const path = scratchFile(t, 1 << 20);
  for (const inline of [true, false]) {
    const dev = await FileDevice.open(path, { inline });
    const parts = [Buffer.alloc(1000, 1), Buffer.alloc(0), Buffer.alloc(3096, 2), Buffer.alloc(100_000, 3)];
    const whole = Buffer.concat(parts);
    await dev.writev(4096, parts);
    assert.deepEqual(await dev.read(4096, whole.length), whole);
    await dev.writev(512 * 1024, parts.slice(0, 3), { fua: true });
    assert.deepEqual(await dev.read(512 * 1024, 4096), Buffer.concat(parts.slice(0, 3)));
    await assert.rejects(dev.writev(dev.size - 1000, parts), (e: NodeJS.ErrnoException) => e.code === 'ERANGE');
    await dev.close();
  }
});

test('setInlineIoDefault(false) keeps devices opened afterwards on the pool; an explicit option wins', async (t) => {
  const path = scratchFile(t, 1 << 16);
  t.after(() => setInlineIoDefault(true));
  const before = await FileDevice.open(path);
  setInlineIoDefault(false);
  const after = await FileDevice.open(path);
  const asked = await FileDevice.open(path, { inline: true });
  assert.deepEqual([before.inlineIo, after.inlineIo, asked.inlineIo], [true, false, true]);
  await after.write(0, Buffer.alloc(4096, 9));
  assert.deepEqual(await before.read(0, 4096), Buffer.alloc(4096, 9));
  await Promise.all([before.close(), after.close(), asked.close()]);
});

test('readNow/writevNow do small requests at once while inline is allowed, and decline (doing nothing) otherwise', async (t) => {
  const path = scratchFile(t, 1 << 20);
  const fd = openSync(path, 'r+');
  t.after(() => closeSync(fd));
  const clock = fakeClock(0.001);
  const io = new InlineIo(clock.now);
  assert.equal(io.writevNow(fd, [Buffer.alloc(1000, 4), Buffer.alloc(3096, 5)], 8192), 4096);
  const back = Buffer.alloc(4096);
  assert.equal(io.readNow(fd, back, 0, 4096, 8192), 4096);
  assert.deepEqual(back, Buffer.concat([Buffer.alloc(1000, 4), Buffer.alloc(3096, 5)]));
  assert.equal(io.writevNow(fd, [Buffer.alloc(MAX_INLINE_BYTES + 512, 6)], 0), undefined, 'too large');
  clock.step = 1;
  for (let i = 0; i < 9; i++) io.writevNow(fd, [Buffer.alloc(512, 7)], i * 512);
  assert.equal(io.inline, false);
  assert.equal(io.writevNow(fd, [Buffer.alloc(512, 8)], 0), undefined, 'backing off');
  assert.equal(io.readNow(fd, back, 0, 512, 0), undefined);
  assert.deepEqual(readFileSync(path).subarray(0, 512), Buffer.alloc(512, 7), 'a declined write wrote nothing');
  assert.deepEqual(readFileSync(path).subarray(MAX_INLINE_BYTES, MAX_INLINE_BYTES + 512), Buffer.alloc(512), 'nor did the large one');
});

test('FileDevice.writeNow/readNow: the bytes land and read back; without inline I/O they decline; bad ranges throw', async (t) => {
  const path = scratchFile(t, 1 << 20);
  const dev = await FileDevice.open(path);
  t.after(() => dev.close());
  assert.equal(dev.writeNow(4096, [Buffer.alloc(512, 1), Buffer.alloc(3584, 2)]), true);
  const out = Buffer.alloc(4096);
  assert.equal(dev.readNow(4096, out), true);
  assert.deepEqual(out, Buffer.concat([Buffer.alloc(512, 1), Buffer.alloc(3584, 2)]));
  assert.deepEqual(await dev.read(4096, 4096), out, 'the asynchronous path sees it');
  assert.throws(() => dev.writeNow(dev.size - 512, [Buffer.alloc(4096)]), (e: NodeJS.ErrnoException) => e.code === 'ERANGE');
  assert.throws(() => dev.readNow(dev.size, Buffer.alloc(512)), (e: NodeJS.ErrnoException) => e.code === 'ERANGE');

  const pooled = await FileDevice.open(path, { inline: false });
  t.after(() => pooled.close());
  assert.equal(pooled.writeNow(0, [Buffer.alloc(512, 3)]), false);
  assert.equal(pooled.readNow(0, Buffer.alloc(512)), false);
  assert.deepEqual(await pooled.read(0, 512), Buffer.alloc(512), 'a declined writeNow wrote nothing');

  const readOnly = await FileDevice.open(path, { readOnly: true });
  t.after(() => readOnly.close());
  assert.throws(() => readOnly.writeNow(0, [Buffer.alloc(512)]), (e: NodeJS.ErrnoException) => e.code === 'EROFS');
});

test('FileDevice.writeNow with FUA: done now on tmpfs, where a plain write is durable; declined on a disk, having written nothing', async (t) => {
  const inMemory = await FileDevice.open(scratchFile(t, 1 << 20));
  t.after(() => inMemory.close());
  assert.equal(inMemory.writeNow(0, [Buffer.alloc(512, 4)], { fua: true }), true);
  assert.deepEqual(await inMemory.read(0, 512), Buffer.alloc(512, 4));

  const onDisk = join(tempDir(t, 'pio', '/var/tmp'), 'f');
  writeFileSync(onDisk, Buffer.alloc(1 << 20));
  const disk = await FileDevice.open(onDisk);
  t.after(() => disk.close());
  assert.equal(disk.writeNow(0, [Buffer.alloc(512, 5)], { fua: true }), false, 'a FUA write on a disk waits for it');
  assert.deepEqual(await disk.read(0, 512), Buffer.alloc(512), 'the declined write wrote nothing');
});
