// The plugin's CSI socket: created mode 0600 (only root, as which the kubelet and the sidecars
// connect, may call it), and its path claimed like every llraid socket — a stale socket is
// replaced, while a file or another plugin's live socket there is refused and left as it was.
// Runs the real `llraid csi` from dist/.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cliPath, csiClient, startPlugin } from './plugin-harness.js';

/** Runs `llraid csi` on `endpoint` with a fresh pool in `dir`; resolves when it exits. */
function runPlugin(dir: string, endpoint: string): { exited: Promise<{ code: number | null; stderr: string }>; running(): boolean; stop(): void } {
  const disks = ['a', 'b'].map((n) => path.join(dir, `disk-${n}`));
  for (const d of disks) mkdirSync(d, { recursive: true });
  const child = spawn(process.execPath, [cliPath, 'csi', '--endpoint', `unix://${endpoint}`, '--node-id', 'endpoint-test',
    '--disks', disks.join(','), '--attach', 'fuse', '--run-dir', path.join(dir, 'run'), '--kubelet-dir', path.join(dir, 'kubelet')],
  { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => child.once('exit', (code) => resolve({ code, stderr })));
  return { exited, running: () => child.exitCode === null && child.signalCode === null, stop: () => child.kill('SIGTERM') };
}

/** Resolves with the exit, or fails after `ms`: a refused plugin must exit, not hang. */
async function exitWithin<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`the plugin was still running after ${ms} ms`)), ms)));
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

test('the CSI socket is created with mode 0600', async (t) => {
  const plugin = await startPlugin();
  t.after(() => plugin.close());
  const st = statSync(plugin.socket);
  assert.ok(st.isSocket());
  assert.equal((st.mode & 0o777).toString(8), '600');
  assert.equal(st.uid, process.getuid!(), 'owned by the plugin\'s user');
});

test('a regular file at the endpoint path is left intact and the plugin exits naming it', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'llraid-endpoint-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const endpoint = path.join(dir, 'csi.sock');
  writeFileSync(endpoint, 'not a socket\n');
  const plugin = runPlugin(dir, endpoint);
  t.after(() => plugin.stop());
  const { code, stderr } = await exitWithin(plugin.exited, 60_000);
  assert.equal(code, 1, stderr);
  assert.match(stderr, new RegExp(`CSI endpoint ${endpoint}: expected no file or a stale socket there, found a regular file \\(13 bytes\\); left it in place`));
  assert.equal(readFileSync(endpoint, 'utf8'), 'not a socket\n');
});

test('a live plugin\'s socket at the endpoint is refused and that plugin keeps serving', async (t) => {
  const live = await startPlugin();
  t.after(() => live.close());
  const dir = mkdtempSync(path.join(os.tmpdir(), 'llraid-endpoint-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const second = runPlugin(dir, live.socket);
  t.after(() => second.stop());
  const { code, stderr } = await exitWithin(second.exited, 60_000);
  assert.equal(code, 1, stderr);
  assert.match(stderr, new RegExp(`CSI endpoint ${live.socket}: expected no file or a stale socket there, found a live socket`));
  const probe = await live.identity.Probe({});
  assert.deepEqual(probe.ready, { value: true }, 'the first plugin still answers on its socket');
});

test('a stale socket at the endpoint (a plugin killed with SIGKILL) is replaced', async (t) => {
  const plugin = await startPlugin();
  t.after(() => plugin.close());
  await plugin.kill();
  const stale = statSync(plugin.socket, { bigint: true });
  assert.ok(stale.isSocket(), 'SIGKILL left the socket file behind');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'llraid-endpoint-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const next = runPlugin(dir, plugin.socket);
  t.after(() => next.stop());
  // A new socket file once the new plugin has bound (the inode number may be reused, its change
  // time is not); a client made earlier would sit in gRPC's reconnect backoff after the stale
  // socket refused it.
  const bound = (): boolean => {
    const st = statSync(plugin.socket, { bigint: true, throwIfNoEntry: false });
    return st !== undefined && (st.ino !== stale.ino || st.ctimeNs !== stale.ctimeNs);
  };
  for (let i = 0; i < 1200 && !bound() && next.running(); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(bound(), 'the new plugin bound a socket of its own at the path');
  const client = csiClient(plugin.socket, 'Identity');
  t.after(() => client.close());
  let info: Record<string, unknown> | undefined;
  for (let i = 0; i < 600 && !info; i++) {
    info = await client.GetPluginInfo({}).catch(() => undefined);
    if (!info) await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(info?.name, 'csi.llraid.io', 'the new plugin serves on the path');
  assert.equal((statSync(plugin.socket).mode & 0o777).toString(8), '600');
});
