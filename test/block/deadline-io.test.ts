// DeadlineIo against a file whose reads really hang: a FUSE file (nbdfuse) served by nbdkit's
// pause filter. A read past its deadline rejects with ETIMEDOUT and the device is marked hung;
// when the paused read finally returns, its bytes must not reach the caller's buffer, which the
// caller may have reused by then (an NBD payload pool hands it to the next request).

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeadlineIo } from '../../src/block/deadline-io.js';
import { TimeoutError } from '../../src/block/errors.js';
import { pauseControl } from '../support/nbdkit-pause.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, check: () => boolean, ms: number): Promise<void> {
  for (const end = Date.now() + ms; !check(); await sleep(20)) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
  }
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  return exited;
}

test('a read past its deadline rejects, and its late answer never lands in the caller buffer', { timeout: 60_000 }, async (t: TestContext) => {
  // Cleaned up in the reverse order of set-up (the mount before its directory): one hook.
  const dir = mkdtempSync(join(tmpdir(), 'llraid-deadline-io-'));
  const undo: (() => unknown)[] = [() => rmSync(dir, { recursive: true, force: true })];
  t.after(async () => {
    for (const step of undo.reverse()) await step();
  });
  const backing = join(dir, 'backing.img');
  writeFileSync(backing, Buffer.alloc(1024 * 1024, 0x61));
  const sock = join(dir, 'nbdkit.sock');
  const ctl = join(dir, 'pause.ctl');
  const fuseDir = join(dir, 'fuse');
  mkdirSync(fuseDir);
  const nbdkit = spawn('nbdkit', ['--foreground', '--unix', sock, '--filter=pause', 'file', `file=${backing}`, `pause-control=${ctl}`], { stdio: 'ignore' });
  undo.push(() => stop(nbdkit));
  await waitFor('nbdkit', () => existsSync(sock) && existsSync(ctl), 10_000);
  const file = join(fuseDir, 'disk');
  const fuse = spawn('nbdfuse', [file, '--unix', sock], { stdio: 'ignore' });
  undo.push(async () => {
    execFileSync('fusermount3', ['-u', '-z', fuseDir], { stdio: 'ignore' });
    await stop(fuse);
  });
  // Resuming comes first on the way out: nothing of a paused disk can be closed.
  undo.push(() => pauseControl(ctl, 'r').catch(() => undefined));
  await waitFor('nbdfuse', () => existsSync(file), 10_000);
  const fd = openSync(file, 'r');
  undo.push(() => closeSync(fd));

  const io = new DeadlineIo('test disk', 300);
  const buf = Buffer.alloc(4096, 0x7a);
  assert.equal(await io.read(fd, buf, 0, 4096, 0), 4096);
  assert.deepEqual(buf, Buffer.alloc(4096, 0x61), 'an answered read lands in the caller buffer');

  await pauseControl(ctl, 'p');
  const late = Buffer.alloc(4096, 0x7a);
  await assert.rejects(io.read(fd, late, 0, 4096, 512 * 1024), TimeoutError);
  assert.match(io.hung ?? '', /test disk: read \[524288, \+4096\) got no answer within 300 ms/);
  await assert.rejects(io.read(fd, late, 0, 4096, 0), TimeoutError, 'a hung device answers nothing more');
  // The caller has its rejection: it reuses the buffer, then the disk answers the old read.
  late.fill(0x42);
  await pauseControl(ctl, 'r');
  await sleep(1000);
  assert.deepEqual(late, Buffer.alloc(4096, 0x42), 'the late answer did not overwrite the reused buffer');
});
