// `llraid serve --control`: while an engine serves an array over NBD, the llraid commands reach
// it through its control socket — status with the I/O counters, grow (a new NBD client sees the
// bigger export at once, and the data written before is intact), and a stop that ends the engine
// cleanly. Real peers: the built CLI, nbdinfo and nbdsh. The control path is claimed only when
// nothing is there or a stale socket: a file or a live engine's socket is refused and stays.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildCli } from '../support/cli.js';
import { startServe, stoppedCleanly, tool } from '../nbd/helpers.js';
import { tempDir } from '../support/temp-dir.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

test('serve --control: status with I/O counters, online grow seen by a new client, stop through the socket', async (t) => {
  const cli = await buildCli();
  const llraid = async (...args: string[]) => (await run(process.execPath, [cli, ...args])).stdout;
  const dir = tempDir(t, 'serve-control');
  const members = ['a', 'b'].map((n) => join(dir, `${n}.img`));
  await llraid('create', '-l', '1', '-N', 'ctl', '-z', '32M', ...members);
  const control = join(dir, 'control.sock');
  const serve = await startServe(['--socket', join(dir, 'nbd.sock'), '--control', control, '--sync-speed-max', '50000', ...members]);
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
  assert.match(grown, /ctl: raid1 96 MiB/);
  for (const m of members) assert.ok(statSync(m).size >= 97 * MiB, `${m} was extended`);
  const info = JSON.parse(await tool('nbdinfo', ['--json', serve.uri])) as { exports: { 'export-size': number }[] };
  assert.equal(info.exports[0]!['export-size'], 96 * MiB, `a new client sees the grown export (was ${before})`);
  const back = await tool('nbdsh', ['-u', serve.uri, '-c', 'print(h.pread(65536, 1048576) == b"z" * 65536); h.pwrite(b"t" * 4096, 90 * 1048576); print(h.pread(4096, 90 * 1048576) == b"t" * 4096)']);
  assert.equal(back.trim(), 'True\nTrue', 'old data intact, new space writable');

  await llraid('stop', '--control', control);
  const code = await new Promise((resolve) => (serve.child.exitCode !== null ? resolve(serve.child.exitCode) : serve.child.once('exit', resolve)));
  assert.equal(code, 0, `${serve.stdout()}\n${serve.stderr()}`);
  await stoppedCleanly(serve, 'control stop');
  const after = JSON.parse(await llraid('status', '--json', ...members)) as { memberSize: number; clean: boolean };
  assert.equal(after.memberSize, 96 * MiB, 'the members record the new size');
  assert.equal(after.clean, true, 'stopped clean');
});

/** Runs the built `llraid serve ARGS` to its exit; for the refusals, which must not serve. */
async function serveExit(cli: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [cli, 'serve', ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (child.exitCode ?? -1) : 0, stdout, stderr });
    });
  });
}

const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

test('serve --control naming a regular file (a member) leaves it intact and fails naming it', async (t) => {
  const cli = await buildCli();
  const dir = tempDir(t, 'serve-control-file');
  const members = ['a', 'b'].map((n) => join(dir, `${n}.img`));
  await run(process.execPath, [cli, 'create', '-l', '1', '-N', 'ctl', '-z', '16M', ...members]);
  const before = members.map(sha);
  const r = await serveExit(cli, ['--socket', join(dir, 'nbd.sock'), '--control', members[1]!, ...members]);
  assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stderr, new RegExp(`control socket \\(--control\\) ${members[1]}: expected no file or a stale socket there, found a regular file \\(\\d+ bytes\\); left it in place`));
  assert.deepEqual(members.map(sha), before, 'every member byte for byte as it was');
  assert.equal(r.stdout, '', 'nothing was assembled or served');
});

test('serve --control replaces a stale socket (its engine was killed)', async (t) => {
  const cli = await buildCli();
  const dir = tempDir(t, 'serve-control-stale');
  const members = ['a', 'b'].map((n) => join(dir, `${n}.img`));
  await run(process.execPath, [cli, 'create', '-l', '1', '-N', 'ctl', '-z', '16M', ...members]);
  const control = join(dir, 'control.sock');
  const first = await startServe(['--socket', join(dir, 'nbd-1.sock'), '--control', control, ...members]);
  await first.stop('SIGKILL');
  assert.ok(statSync(control).isSocket(), 'SIGKILL left the control socket behind');
  const second = await startServe(['--socket', join(dir, 'nbd-2.sock'), '--control', control, ...members]);
  t.after(() => second.stop('SIGKILL'));
  const status = JSON.parse((await run(process.execPath, [cli, 'status', '--control', control, '--json'])).stdout) as { level: string };
  assert.equal(status.level, 'raid1', 'the new engine answers on the path');
});

test('serve --control refuses a live socket (another engine) and names it', async (t) => {
  const cli = await buildCli();
  const dir = tempDir(t, 'serve-control-live');
  const members = ['a', 'b'].map((n) => join(dir, `${n}.img`));
  const others = ['c', 'd'].map((n) => join(dir, `${n}.img`));
  await run(process.execPath, [cli, 'create', '-l', '1', '-N', 'one', '-z', '16M', ...members]);
  await run(process.execPath, [cli, 'create', '-l', '1', '-N', 'two', '-z', '16M', ...others]);
  const control = join(dir, 'control.sock');
  const live = await startServe(['--socket', join(dir, 'nbd-1.sock'), '--control', control, ...members]);
  t.after(() => live.stop('SIGKILL'));
  const r = await serveExit(cli, ['--socket', join(dir, 'nbd-2.sock'), '--control', control, ...others]);
  assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stderr, new RegExp(`control socket \\(--control\\) ${control}: expected no file or a stale socket there, found a live socket \\(another server accepts connections on it\\)`));
  const status = JSON.parse((await run(process.execPath, [cli, 'status', '--control', control, '--json'])).stdout) as { name: string };
  assert.equal(status.name, 'one', 'the first engine still owns its control socket');
});

test('serve --socket naming a regular file leaves it intact and fails before assembling', async (t) => {
  const cli = await buildCli();
  const dir = tempDir(t, 'serve-socket-file');
  const members = ['a', 'b'].map((n) => join(dir, `${n}.img`));
  await run(process.execPath, [cli, 'create', '-l', '1', '-N', 'sock', '-z', '16M', ...members]);
  const before = members.map(sha);
  const r = await serveExit(cli, ['--socket', members[0]!, ...members]);
  assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stderr, new RegExp(`NBD socket \\(--socket\\) ${members[0]}: expected no file or a stale socket there, found a regular file`));
  assert.deepEqual(members.map(sha), before, 'every member byte for byte as it was');
});
