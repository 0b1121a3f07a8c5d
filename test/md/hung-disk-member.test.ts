// A member that is a file on an ordinary filesystem (ext4, xfs) whose disk hangs: the filesystem
// on a loop device whose backing file is a FUSE file (nbdfuse over nbdkit's pause filter), so pausing
// nbdkit leaves every request that reaches the disk waiting in the kernel. With a raid1 of that
// member and one on tmpfs, the engine's event loop must keep turning (an inline read on the hung
// disk would hold it: only RWF_NOWAIT calls go inline there, reads on both, writes on xfs, which
// rewrites of chunks exercise while the disk hangs), the member must be failed by its
// deadline, every read and write must be answered from the tmpfs member with the right bytes,
// and after the disk comes back a re-add and a check must find 0 mismatches.
//
// A watchdog process resumes nbdkit after WATCHDOG_MS whatever happens in here, so an event loop
// that is held shows up as a failed lag assertion instead of a suite that hangs.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createArray, type MdArray } from '../../src/md/index.js';
import { defaultDeadline, setDefaultDeadline } from '../../src/block/deadline-io.js';
import { FileDevice } from '../../src/block/file-device.js';
import { writeChunks } from './array-fixtures.js';
import { pauseControl } from '../support/nbdkit-pause.js';

const MiB = 1024 * 1024;
const MEMBER = 64 * MiB;
const CHUNK = 64 * 1024;
const DEADLINE_MS = 2000;
/** The watchdog resumes the disk after this long: far past the deadline, well inside the test's time. */
const WATCHDOG_MS = 15_000;
/** What the event loop may lag while the disk hangs (an inline call on it would hold it until the watchdog). */
const MAX_LAG_MS = 1000;

async function waitFor(what: string, check: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

/** Drops the page cache of one file (posix_fadvise DONTNEED: GNU dd's nocache with count=0). */
function dropCache(path: string): void {
  execFileSync('dd', [`if=${path}`, 'iflag=nocache', 'count=0', 'status=none']);
}

/** Pages of `path` in the page cache (util-linux fincore). */
function cachedPages(path: string): number {
  return Number(execFileSync('fincore', ['--noheadings', '--raw', '--output', 'PAGES', path], { encoding: 'utf8' }).trim());
}

interface HangingDisk {
  /** A directory on the filesystem whose disk `pause` hangs. */
  mount: string;
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Resumes the disk after `ms` from another process, whatever this one is doing. */
  watchdog(ms: number): ChildProcess;
  /** Everything the disk needs to go away; the backing nbdkit is resumed first. */
  close(): Promise<void>;
}

/** `fs` on a loop device over a FUSE file that nbdfuse serves from nbdkit's pause filter. */
async function hangingDisk(dir: string, fs: 'ext4' | 'xfs'): Promise<HangingDisk> {
  const backing = join(dir, 'backing.img');
  writeFileSync(backing, '');
  // xfs wants 300 MB at least.
  truncateSync(backing, 8 * MEMBER);
  const sock = join(dir, 'nbdkit.sock');
  const ctl = join(dir, 'pause.ctl');
  const fuseDir = join(dir, 'fuse');
  const mount = join(dir, fs);
  mkdirSync(fuseDir);
  mkdirSync(mount);
  const undo: (() => Promise<void> | void)[] = [];
  const close = async (): Promise<void> => {
    for (const step of undo.reverse()) {
      try {
        await step();
      } catch (err) {
        process.stderr.write(`hung-disk cleanup: ${(err as Error).message}\n`);
      }
    }
  };
  try {
    const nbdkit = spawn('nbdkit', ['--foreground', '--unix', sock, '--filter=pause', 'file', `file=${backing}`, `pause-control=${ctl}`], { stdio: 'ignore' });
    undo.push(() => stopChild(nbdkit));
    await waitFor('nbdkit', () => existsSync(sock) && existsSync(ctl), 10_000);
    const file = join(fuseDir, 'disk');
    const fuse = spawn('nbdfuse', [file, '--unix', sock], { stdio: 'ignore' });
    undo.push(() => stopChild(fuse));
    undo.push(() => void execFileSync('fusermount3', ['-u', '-z', fuseDir], { stdio: 'ignore' }));
    await waitFor('nbdfuse', () => existsSync(file), 10_000);
    const loop = execFileSync('losetup', ['--find', '--show', file], { encoding: 'utf8' }).trim();
    undo.push(() => void execFileSync('losetup', ['-d', loop]));
    execFileSync(`mkfs.${fs}`, fs === 'ext4' ? ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', loop] : ['-q', '-f', loop]);
    execFileSync('mount', ['-t', fs, loop, mount]);
    undo.push(() => void execFileSync('umount', [mount]));
    // Resuming comes first on the way out: unmounting a hung filesystem would hang too.
    undo.push(() => pauseControl(ctl, 'r').catch(() => undefined));
  } catch (err) {
    await close();
    throw err;
  }
  return {
    mount,
    pause: () => pauseControl(ctl, 'p'),
    resume: () => pauseControl(ctl, 'r'),
    watchdog: (ms) => spawn(process.execPath, ['-e', `setTimeout(() => { const s = require('net').connect(${JSON.stringify(ctl)}); s.on('connect', () => s.end('r')); s.on('error', () => {}); }, ${ms});`], { stdio: 'ignore' }),
    close,
  };
}

/** The largest lag of a 20 ms interval timer, from start() until the returned stop(). */
function lagMonitor(): () => number {
  let worst = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last - 20);
    last = now;
  }, 20);
  return () => {
    clearInterval(timer);
    return Math.max(worst, performance.now() - last - 20);
  };
}

/** Reads every chunk in `truth`, 32 at a time (so both members get reads), and compares. */
async function checkAll(array: MdArray, truth: Map<number, Buffer>, when: string): Promise<void> {
  const entries = [...truth];
  for (let i = 0; i < entries.length; i += 32) {
    await Promise.all(entries.slice(i, i + 32).map(async ([c, data]) => {
      assert.ok((await array.read(c * CHUNK, CHUNK)).equals(data), `${when}: chunk ${c} reads back as written`);
    }));
  }
}

for (const fs of ['ext4', 'xfs'] as const) test(`a member on ${fs} whose disk hangs: only RWF_NOWAIT calls go inline, the event loop keeps turning, the member is failed by its deadline, the array serves every byte from the other and checks clean after a re-add`, { timeout: 90_000 }, async (t: TestContext) => {
  const dir = mkdtempSync(join(tmpdir(), 'llraid-hungdisk-'));
  const shm = mkdtempSync(join('/dev/shm', 'llraid-hungdisk-'));
  const saved = defaultDeadline();
  setDefaultDeadline(DEADLINE_MS);
  // One way out, in this order: the disk answers again, the array stops, the disk goes away.
  const held: { disk?: HangingDisk; array?: MdArray; watchdog?: ChildProcess } = {};
  t.after(async () => {
    held.watchdog?.kill();
    await held.disk?.resume().catch(() => undefined);
    await held.array?.stop().catch(() => held.array?.abandon());
    await held.disk?.close();
    rmSync(shm, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
    setDefaultDeadline(saved);
  });
  const disk = await hangingDisk(dir, fs);
  held.disk = disk;

  // The fast path on this filesystem, without a hang: a cached read goes inline, an uncached one
  // is left to the pool, and so is every buffered write on ext4 (it refuses RWF_NOWAIT writes).
  const probePath = join(disk.mount, 'probe');
  writeFileSync(probePath, Buffer.alloc(MiB));
  const probe = await FileDevice.open(probePath);
  try {
    assert.equal(probe.inlineIo, true, `a file on ${fs} gets the RWF_NOWAIT fast path`);
    // The first fast-path call starts loading koffi and declines; ext4 would refuse it anyway.
    assert.equal(probe.writeNow(0, [Buffer.alloc(4096, 1)]), false, 'the first call, and ext4 takes no RWF_NOWAIT buffered write');
    await probe.write(0, Buffer.alloc(4096, 1));
    await probe.flush();
    const out = Buffer.alloc(4096);
    assert.equal(probe.readNow(0, out), true, 'a cached page is read inline');
    assert.deepEqual(out, Buffer.alloc(4096, 1));
    dropCache(probePath);
    assert.equal(probe.readNow(0, out), false, 'a page that is not cached is not read inline');
    assert.deepEqual(await probe.read(0, 4096), Buffer.alloc(4096, 1), 'the pool reads it');
  } finally {
    await probe.close();
  }

  const hungPath = join(disk.mount, 'member');
  const shmPath = join(shm, 'member');
  for (const p of [hungPath, shmPath]) {
    writeFileSync(p, '');
    truncateSync(p, MEMBER);
  }
  const array = await createArray({ name: 'hungdisk', level: 1, members: [hungPath, shmPath], bitmapChunkSize: CHUNK, daemonSleep: 1, barrierIdle: 0 });
  held.array = array;
  const chunks = Math.floor(array.size / CHUNK);
  const truth = new Map<number, Buffer>();
  await writeChunks(array, Array.from({ length: chunks / 2 }, (_, i) => 2 * i), 1, truth);
  await array.waitSync();
  await array.flush();
  // The hung member's data must come from its disk: nothing of it stays in the page cache
  // (neither the filesystem's nor the loop device's backing FUSE file's).
  execFileSync('sync', ['-f', hungPath]);
  dropCache(hungPath);
  dropCache(join(dir, 'fuse', 'disk'));
  assert.ok(cachedPages(hungPath) < 16, `the member's pages left the page cache (${cachedPages(hungPath)} remain)`);

  await disk.pause();
  const watchdog = disk.watchdog(WATCHDOG_MS);
  held.watchdog = watchdog;
  const lag = lagMonitor();
  const started = performance.now();
  let failedAfter: number | undefined;
  try {
    // Reads of data only the disk holds, and new writes, while the disk hangs: every one must
    // be answered, from the tmpfs member once the hung one is failed.
    // New chunks (xfs: allocating, so through the pool) and rewrites of written ones (xfs:
    // inline), and reads of every other written chunk meanwhile.
    const rewritten = Array.from({ length: 64 }, (_, i) => 2 * i + 256);
    const reads = checkAll(array, new Map([...truth].filter(([c]) => !rewritten.includes(c))), 'while the disk hangs');
    const writes = Promise.all([
      writeChunks(array, Array.from({ length: 64 }, (_, i) => 2 * i + 1), 2, truth),
      writeChunks(array, rewritten, 4, truth),
    ]);
    await Promise.all([reads, writes]);
    await waitFor('the hung member to be failed', () => array.status().members.some((m) => m.name === hungPath && m.state === 'faulty'), 3 * DEADLINE_MS);
    failedAfter = performance.now() - started;
    assert.equal(array.status().state, 'degraded');
    await writeChunks(array, Array.from({ length: 64 }, (_, i) => 2 * i + 129), 3, truth);
    await array.flush();
    await checkAll(array, truth, 'degraded');
  } finally {
    const worst = lag();
    await disk.resume();
    watchdog.kill();
    process.stdout.write(`hung disk (${fs}): event loop lag at most ${worst.toFixed(0)} ms while the disk hung; member failed ${failedAfter?.toFixed(0) ?? '(never)'} ms after the pause (deadline ${DEADLINE_MS} ms)\n`);
    assert.ok(worst < MAX_LAG_MS, `the event loop lagged ${worst.toFixed(0)} ms while the disk hung (at most ${MAX_LAG_MS} allowed)`);
  }
  // A deadline restarts once when the disk's counters moved since a reading up to a quarter
  // deadline old (deadline-io.ts): failed within two deadlines of the request, plus scheduling.
  assert.ok(failedAfter !== undefined && failedAfter < 2 * DEADLINE_MS + 2000, `failed within two deadlines (${failedAfter} ms)`);

  // The disk answers again: requests held in its pool threads finish; the member comes back.
  await array.remove(hungPath);
  // The requests the hung disk held return once it answers again; until then their open file
  // description, and with it the member's flock, outlives the closed descriptor, and a re-add is
  // refused with EBUSY (holder not visible). So it is retried for a bounded time.
  let readded: string | undefined;
  for (const deadline = Date.now() + 10_000; readded === undefined;) {
    try {
      readded = await array.reAdd(hungPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EBUSY' || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  assert.equal(readded, 'bitmap', 're-added with bitmap-guided recovery');
  assert.equal((await array.waitSync())?.complete, true);
  assert.equal(array.status().state, 'active');
  array.startSync('check');
  const check = await array.waitSync();
  assert.equal(check?.complete, true);
  assert.equal(check?.mismatches, 0, 'the copies agree after the member came back');
  await checkAll(array, truth, 'after recovery');
});
