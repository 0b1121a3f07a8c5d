// `llraid serve --force` with a remote member that does not answer when the engine starts (its
// node reboots): the engine serves degraded, watches the member (--return-interval), and takes
// it back once an NBD server answers on its socket; status through --control shows each step.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hasTool, startServe } from '../nbd/helpers.js';
import { runCli } from '../support/cli.js';
import { tempDir } from '../support/temp-dir.js';

interface Status {
  state: string;
  members: { name: string; state: string; awaited: boolean; failure: string | null }[];
}

async function waitFor(what: string, probe: () => Promise<boolean> | boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** nbdkit serving `file` on the unix socket `sock`, in the foreground (so it can be stopped). */
async function nbdkit(sock: string, file: string): Promise<ChildProcess> {
  const child = spawn('nbdkit', ['--foreground', '--unix', sock, 'file', file], { stdio: 'ignore' });
  await waitFor('nbdkit to listen', () => existsSync(sock));
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

test('serve --force starts degraded without an unreachable nbd+unix member, and takes it back when its server starts', { skip: !hasTool('nbdkit') && 'nbdkit is not installed' }, async (t) => {
  const dir = tempDir(t, 'serve-unreachable');
  const [a, bFile, sock, control] = [join(dir, 'a.img'), join(dir, 'b.img'), join(dir, 'b.sock'), join(dir, 'ctl.sock')];
  const uri = `nbd+unix:///?socket=${sock}`;
  writeFileSync(bFile, '');
  truncateSync(bFile, 24 << 20);
  let server = await nbdkit(sock, bFile);
  t.after(() => stop(server));
  const created = await runCli(['create', '-l', '1', '-N', 'vol', '-z', '16M', a, uri]);
  assert.equal(created.code, 0, created.stderr);
  await stop(server);
  rmSync(sock, { force: true });

  const refused = await runCli(['serve', '--socket', join(dir, 'nbd0.sock'), a, uri]);
  assert.notEqual(refused.code, 0);
  assert.ok(refused.stderr.includes(`member ${uri} is unreachable (`), refused.stderr);
  assert.match(refused.stderr, /no such socket\); use force to start degraded without it: the array then opens it again every 5000 ms/);

  const serve = await startServe(['--socket', join(dir, 'nbd.sock'), '--control', control, '--quiet', '--force', '--return-interval', '0.2', a, uri]);
  t.after(() => serve.stop('SIGKILL'));
  const status = async (): Promise<Status> => {
    const r = await runCli(['status', '--json', '--control', control]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Status;
  };
  const before = await status();
  assert.equal(before.state, 'degraded');
  const b = before.members.find((m) => m.name === uri);
  assert.deepEqual([b?.state, b?.awaited], ['faulty', true]);
  assert.match(b?.failure ?? '', /unreachable/);

  server = await nbdkit(sock, bFile);
  await waitFor('the member to be back in sync', async () => {
    const s = await status();
    return s.state === 'active' && s.members.find((m) => m.name === uri)?.state === 'in_sync';
  });
  assert.equal(await serve.stop(), 0, serve.stderr());
});
