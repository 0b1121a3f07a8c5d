// claimSocketPath, which every llraid server (NBD, md control, CSI) goes through before it
// listens on a unix socket path: on real files and sockets, only nothing or a stale socket is
// accepted, and only a stale socket is removed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { join } from 'node:path';
import { claimSocketPath, SocketPathError } from '../../src/block/socket-file.js';
import { tempDir } from '../support/temp-dir.js';

/** A socket file nobody accepts on: its server was killed with SIGKILL, as a crashed engine is. */
async function staleSocket(path: string): Promise<void> {
  const child = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  await new Promise((resolve) => child.once('exit', resolve));
  assert.ok(statSync(path).isSocket(), 'the killed server left its socket file');
}

function refused(code: string, pattern: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof SocketPathError, `expected a SocketPathError, found ${String(err)}`);
    assert.equal(err.code, code);
    assert.match(err.message, pattern);
    return true;
  };
}

test('claimSocketPath accepts a free path and replaces a stale socket', async (t) => {
  const dir = tempDir(t, 'socket-claim');
  await claimSocketPath(join(dir, 'free.sock'), 'test socket');
  const stale = join(dir, 'stale.sock');
  await staleSocket(stale);
  await claimSocketPath(stale, 'test socket');
  assert.equal(existsSync(stale), false, 'the stale socket was removed, so bind can succeed');
});

test('claimSocketPath refuses a regular file, a directory or a symlink, and leaves each as it was', async (t) => {
  const dir = tempDir(t, 'socket-claim');
  const file = join(dir, 'member.img');
  writeFileSync(file, 'data that must survive');
  const sub = join(dir, 'dir');
  mkdirSync(sub);
  const link = join(dir, 'link');
  symlinkSync(file, link);
  await assert.rejects(claimSocketPath(file, 'test socket'), refused('ENOTSOCK', new RegExp(`^test socket ${file}: expected no file or a stale socket there, found a regular file \\(22 bytes\\); left it in place$`)));
  await assert.rejects(claimSocketPath(sub, 'test socket'), refused('ENOTSOCK', /found a directory/));
  await assert.rejects(claimSocketPath(link, 'test socket'), refused('ENOTSOCK', /found a symlink/));
  assert.equal(readFileSync(file, 'utf8'), 'data that must survive');
  assert.ok(statSync(sub).isDirectory());
});

test('claimSocketPath refuses a socket a live server accepts on, which keeps accepting', async (t) => {
  const dir = tempDir(t, 'socket-claim');
  const path = join(dir, 'live.sock');
  // The claim's probe connects and hangs up at once: its connection's reset is no failure.
  const server = createServer((s) => {
    s.on('error', () => undefined);
    s.end('still here\n');
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  await assert.rejects(claimSocketPath(path, 'test socket'), refused('EADDRINUSE', /found a live socket \(another server accepts connections on it\)/));
  const answer = await new Promise<string>((resolve, reject) => {
    const c = createConnection(path);
    let text = '';
    c.on('data', (b) => (text += b.toString()));
    c.on('end', () => resolve(text));
    c.on('error', reject);
  });
  assert.equal(answer, 'still here\n');
});
