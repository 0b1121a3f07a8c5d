// `llraid serve --control`: while an engine serves an array over NBD, the llraid commands reach
// it through its control socket — status with the I/O counters, grow (a new NBD client sees the
// bigger export at once, and the data written before is intact), and a stop that ends the engine
// cleanly. Real peers: the built CLI, nbdinfo and nbdsh.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildCli } from '../support/cli.js';
import { startServe, tempDir, tool } from '../nbd/helpers.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

test('serve --control: status with I/O counters, online grow seen by a new client, stop through the socket', async (t) => {
  const cli = await buildCli();
  const llraid = async (...args: string[]) => (await run(process.execPath, [cli, ...args])).stdout;
  const dir = tempDir('serve-control');
  t.after(() => dir.cleanup());
  const members = ['a', 'b'].map((n) => join(dir.path, `${n}.img`));
  await llraid('create', '-l', '1', '-N', 'ctl', '-z', '32M', ...members);
  const control = join(dir.path, 'control.sock');
  const serve = await startServe(['--socket', join(dir.path, 'nbd.sock'), '--control', control, '--sync-speed-max', '50000', ...members]);
  t.after(() => serve.stop('SIGKILL'));
  assert.equal(statSync(control).mode & 0o777, 0o600, 'the control socket is private');

  await tool('nbdsh', ['-u', serve.uri, '-c', 'h.pwrite(b"z" * 65536, 1048576, nbd.CMD_FLAG_FUA)']);
  const status = JSON.parse(await llraid('status', '--control', control, '--json')) as {
    size: number; level: string; io: { writeOps: number; writeBytes: number };
  };
  assert.equal(status.level, 'raid1');
  assert.ok(status.io.writeOps >= 1 && status.io.writeBytes >= 65536, `the engine counts client writes: ${JSON.stringify(status.io)}`);
  const before = status.size;

  const grown = await llraid('grow', '--control', control, '--size', '96M');
  assert.match(grown, /ctl: raid1 96\.0 MiB/);
  for (const m of members) assert.ok(statSync(m).size >= 97 * MiB, `${m} was extended`);
  const info = JSON.parse(await tool('nbdinfo', ['--json', serve.uri])) as { exports: { 'export-size': number }[] };
  assert.equal(info.exports[0]!['export-size'], 96 * MiB, `a new client sees the grown export (was ${before})`);
  const back = await tool('nbdsh', ['-u', serve.uri, '-c', 'print(h.pread(65536, 1048576) == b"z" * 65536); h.pwrite(b"t" * 4096, 90 * 1048576); print(h.pread(4096, 90 * 1048576) == b"t" * 4096)']);
  assert.equal(back.trim(), 'True\nTrue', 'old data intact, new space writable');

  await llraid('stop', '--control', control);
  const code = await new Promise((resolve) => (serve.child.exitCode !== null ? resolve(serve.child.exitCode) : serve.child.once('exit', resolve)));
  assert.equal(code, 0, `${serve.stdout()}\n${serve.stderr()}`);
  assert.match(serve.stdout(), /control stop: stopping\nstopped cleanly\n/);
  const after = JSON.parse(await llraid('status', '--json', ...members)) as { memberSize: number; clean: boolean };
  assert.equal(after.memberSize, 96 * MiB, 'the members record the new size');
  assert.equal(after.clean, true, 'stopped clean');
});
