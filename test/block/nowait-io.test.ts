// The RWF_NOWAIT fast path on real filesystems (xfs and ext4 on loop devices, tmpfs): which
// operations each takes inline, that a refused call does nothing and its request is made through
// the pool instead, and that the bytes land either way. The behaviours are Linux 6.x's; a kernel
// that changed them fails here, and positional-io.ts's header must change with it.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadNowait, UNSUPPORTED, WOULD_BLOCK } from '../../src/block/nowait-io.js';
import { NowaitIo, POOL_IO } from '../../src/block/positional-io.js';
import { FileDevice } from '../../src/block/file-device.js';
import { tempDir } from '../support/temp-dir.js';

const MiB = 1024 * 1024;

/** A fresh filesystem of `type` on a loop device over a sparse file, mounted until the test ends. */
function loopFilesystem(t: TestContext, type: 'xfs' | 'ext4'): string {
  const dir = mkdtempSync(join(tmpdir(), `llraid-nowait-${type}-`));
  const mnt = join(dir, 'mnt');
  // Unmounted before the directory goes (after hooks run in the order they were added).
  t.after(() => {
    try {
      execFileSync('umount', [mnt], { stdio: 'ignore' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  const image = join(dir, 'image');
  writeFileSync(image, '');
  truncateSync(image, 320 * MiB);
  execFileSync(`mkfs.${type}`, type === 'xfs' ? ['-q', '-f', image] : ['-q', '-F', image]);
  mkdirSync(mnt);
  execFileSync('mount', ['-o', 'loop', image, mnt]);
  return mnt;
}

/**
 * `call` again while it would block, a few times, each after `prime`: a NOWAIT write also refuses
 * when it would have to update the file's timestamps (the first write in a clock tick), and a
 * refused one updates nothing, so on a loaded machine, where a tick passes between the file's last
 * write and this one, retrying alone never gets past it (CI saw 21 refusals in a row). `prime` is
 * an ordinary write, which does update them; the next call, in the same tick, finds nothing to do.
 */
function retried(call: () => number, prime: () => void): number {
  let n = call();
  for (let i = 0; i < 20 && n === WOULD_BLOCK; i++) {
    prime();
    n = call();
  }
  return n;
}

test('RWF_NOWAIT: xfs and ext4 take cached reads; xfs takes cached writes and refuses allocating ones; ext4 and tmpfs refuse buffered writes', async (t) => {
  const calls = await loadNowait();
  assert.ok(calls, 'koffi loads');
  const seen: Record<string, { read: number; writeCached: number; writeNew: number }> = {};
  for (const [name, dir] of [['xfs', loopFilesystem(t, 'xfs')], ['ext4', loopFilesystem(t, 'ext4')], ['tmpfs', tempDir(t, 'nowait', '/dev/shm')]] as const) {
    const path = join(dir, 'f');
    writeFileSync(path, Buffer.alloc(MiB, 3));
    const fd = openSync(path, 'r+');
    const out = Buffer.alloc(8192);
    seen[name] = {
      read: calls.read(fd, out, 4096, 4096, 0),
      writeCached: retried(() => calls.writev(fd, [Buffer.alloc(1024, 4), Buffer.alloc(3072, 5)], 8192), () => writeSync(fd, Buffer.alloc(4096, 3), 0, 4096, 8192)),
      writeNew: calls.writev(fd, [Buffer.alloc(4096, 6)], 64 * MiB),
    };
    if (seen[name].read === 4096) assert.deepEqual(out.subarray(4096), Buffer.alloc(4096, 3), `${name}: the bytes read inline`);
    closeSync(fd);
    if (seen[name].writeCached === 4096) assert.deepEqual(readFileSync(path).subarray(8192, 12288), Buffer.concat([Buffer.alloc(1024, 4), Buffer.alloc(3072, 5)]), `${name}: the bytes written inline`);
  }
  assert.deepEqual(seen, {
    xfs: { read: 4096, writeCached: 4096, writeNew: WOULD_BLOCK },
    ext4: { read: 4096, writeCached: UNSUPPORTED, writeNew: UNSUPPORTED },
    tmpfs: { read: UNSUPPORTED, writeCached: UNSUPPORTED, writeNew: UNSUPPORTED },
  });
});

test('a read of pages that are not cached is refused without starting any I/O (no readahead), on xfs and ext4', async (t) => {
  const calls = await loadNowait();
  assert.ok(calls, 'koffi loads');
  for (const fs of ['xfs', 'ext4'] as const) {
    const path = join(loopFilesystem(t, fs), 'f');
    writeFileSync(path, Buffer.alloc(4 * MiB, 9));
    execFileSync('sync', ['-f', path]);
    // posix_fadvise(DONTNEED) of the whole file, GNU dd's way.
    execFileSync('dd', [`if=${path}`, 'iflag=nocache', 'count=0', 'status=none']);
    const pages = (): number => Number(execFileSync('fincore', ['--noheadings', '--raw', '--output', 'PAGES', path], { encoding: 'utf8' }).trim());
    assert.equal(pages(), 0, `${fs}: nothing of the file is cached`);
    const fd = openSync(path, 'r');
    try {
      assert.equal(calls.read(fd, Buffer.alloc(65536), 0, 65536, MiB), WOULD_BLOCK);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(pages(), 0, `${fs}: the refused read started no readahead (RWF_NOWAIT alone would have)`);
    } finally {
      closeSync(fd);
    }
  }
});

test('NowaitIo: a call the kernel refuses does nothing and goes through the slow path; one refused for good is not tried again', async (t) => {
  const calls = await loadNowait();
  assert.ok(calls, 'koffi loads');
  const path = join(loopFilesystem(t, 'xfs'), 'f');
  writeFileSync(path, Buffer.alloc(MiB, 1));
  const fd = openSync(path, 'r+');
  const io = new NowaitIo(calls, POOL_IO);
  try {
    // Back to back, most cached writes go inline (the first in a clock tick is refused: timestamps).
    for (let i = 0; i < 16; i++) assert.equal(await io.write(fd, Buffer.alloc(4096, 2), 0, 4096, i * 4096), 4096);
    assert.ok(io.stats.inline >= 8, `cached xfs writes went inline (${io.stats.inline} of 16)`);
    const refused = io.stats.refused;
    assert.equal(await io.write(fd, Buffer.alloc(4096, 3), 0, 4096, 8 * MiB), 4096, 'an allocating one through the pool');
    assert.equal(io.stats.refused, refused + 1);
    assert.deepEqual(readFileSync(path).subarray(0, 16 * 4096), Buffer.alloc(16 * 4096, 2));
    assert.equal(io.writevNow(fd, [Buffer.alloc(4096, 4)], 16 * MiB), undefined, 'declined, nothing written');
    const back = Buffer.alloc(4096);
    assert.equal(await io.read(fd, back, 0, 4096, 8 * MiB), 4096);
    assert.deepEqual(back, Buffer.alloc(4096, 3));
    assert.equal(readFileSync(path).length, 8 * MiB + 4096, 'the declined write did not extend the file');
  } finally {
    closeSync(fd);
  }

  // On ext4 a FileDevice's writes are refused once, then never tried inline; reads stay inline.
  const e4 = join(loopFilesystem(t, 'ext4'), 'g');
  writeFileSync(e4, Buffer.alloc(MiB, 1));
  const dev = await FileDevice.open(e4);
  try {
    assert.equal(dev.writeNow(0, [Buffer.alloc(4096, 7)]), false);
    await dev.write(0, Buffer.alloc(4096, 7));
    const out = Buffer.alloc(4096);
    assert.equal(dev.readNow(0, out), true);
    assert.deepEqual(out, Buffer.alloc(4096, 7));
  } finally {
    await dev.close();
  }
});

test('NowaitIo with a loader: only a fast-path call starts the load, declining; the calls are used once loaded, never if the load fails', async (t) => {
  const path = join(tempDir(t, 'nowait-lazy'), 'f');
  writeFileSync(path, Buffer.alloc(MiB, 9));
  const fd = openSync(path, 'r+');
  t.after(() => closeSync(fd));
  const inline: string[] = [];
  const calls = {
    read: (_fd: number, buf: Uint8Array, off: number, len: number) => {
      inline.push('read');
      buf.fill(9, off, off + len);
      return len;
    },
    writev: () => {
      inline.push('writev');
      return UNSUPPORTED;
    },
  };
  let loads = 0;
  const io = new NowaitIo(async () => {
    loads++;
    return calls;
  }, POOL_IO);
  const buf = Buffer.alloc(4096);
  assert.equal(await io.read(fd, buf, 0, 4096, 0), 4096);
  await io.write(fd, buf, 0, 4096, 0);
  assert.equal(loads, 0, 'the asynchronous calls (an array assembling, resyncing) do not load');
  assert.equal(io.readNow(fd, buf, 0, 4096, 0), undefined, 'the first fast-path call declines');
  assert.equal(io.writevNow(fd, [buf], 0), undefined);
  assert.equal(loads, 1, 'and starts the one load');
  await new Promise((r) => setImmediate(r));
  assert.equal(io.readNow(fd, buf, 0, 4096, 0), 4096);
  assert.deepEqual(inline, ['read']);

  const failed = new NowaitIo(async () => undefined, POOL_IO);
  assert.equal(failed.available, true, 'not known before the load');
  assert.equal(failed.readNow(fd, buf, 0, 4096, 0), undefined);
  await new Promise((r) => setImmediate(r));
  assert.equal(failed.available, false);
  assert.equal(failed.readNow(fd, buf, 0, 4096, 0), undefined);
  assert.equal(await failed.read(fd, buf, 0, 4096, 0), 4096, 'the slow path reads');
});
