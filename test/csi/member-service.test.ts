// The node's member service, run by the engine host (or by the plugin when there is none):
// `llraid member-serve` over the node's disks with the TLS directory's files. Real processes:
// the built CLI as engine host and plugin, llraid's NBD client attaching a member with TLS on
// loopback. It is restarted after kill -9; an engine host that finds it running (the previous
// host was killed, not its PID namespace) adopts it rather than starting a second; a port held
// by anything else ends the host's start naming it; an engine host that is its container's first
// process stops it cleanly on SIGTERM.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, copyFileSync, mkdirSync, openSync, promises as fs, writeFileSync } from 'node:fs';
import path from 'node:path';
import { cliPath, firstChild, startPlugin } from './plugin-harness.js';
import { makeCerts, type TestCerts } from '../support/certs.js';
import { tempDir } from '../support/temp-dir.js';
import { buildCli } from '../support/cli.js';
import { freePort } from '../nbd/client-helpers.js';
import { findProcesses, waitExit } from '../../src/engine/processes.js';
import { NbdClientDevice } from '../../src/nbd/index.js';

const MiB = 1024 * 1024;

interface Node {
  dir: string;
  certs: TestCerts;
  tlsDir: string;
  disk: string;
  port: number;
}

/** Certificates (a TLS dir laid out as the chart's Secret), a disk with one blank member, a free port. */
async function node(t: TestContext, name: string): Promise<Node> {
  await buildCli();
  const dir = tempDir(t, name);
  const certs = await makeCerts(dir, { local: '127.0.0.1' });
  const tlsDir = path.join(dir, 'tls-secret');
  mkdirSync(tlsDir);
  copyFileSync(certs.ca.cert, path.join(tlsDir, 'ca.crt'));
  copyFileSync(certs.node('local').server.cert, path.join(tlsDir, 'tls.crt'));
  copyFileSync(certs.node('local').server.key, path.join(tlsDir, 'tls.key'));
  const disk = path.join(dir, 'disk-0');
  mkdirSync(disk);
  writeFileSync(path.join(disk, 'llraid-m-0.img'), Buffer.alloc(8 * MiB));
  return { dir, certs, tlsDir, disk, port: await freePort() };
}

/** Attaches the blank member through the service (epoch 1) and checks its size: the service answers with TLS. */
async function attach(n: Node): Promise<void> {
  const local = n.certs.node('local');
  const dev = await NbdClientDevice.connect({
    uri: `nbds://127.0.0.1:${n.port}/file:llraid-m-0.img`, tls: { cert: local.client.cert, key: local.client.key, ca: n.certs.ca.cert }, epoch: 1n,
  });
  assert.equal(dev.size, 8 * MiB);
  await dev.close();
}

interface Host {
  child: ChildProcess;
  log: () => Promise<string>;
  exited: Promise<number | null>;
}

/** `llraid engine-host` with a member service (optionally under `prefix`); resolves once its socket is there or it exited. */
async function startHost(n: Node, runDir: string, prefix: string[] = []): Promise<Host> {
  const logFile = path.join(n.dir, `host-${path.basename(runDir)}-${Date.now()}.log`);
  const fd = openSync(logFile, 'a');
  const argv = [process.execPath, cliPath, 'engine-host', '--run-dir', runDir, '--attach', 'fuse',
    '--member-service-listen', `127.0.0.1:${n.port}`, '--tls-dir', n.tlsDir, '--disks', n.disk];
  const [cmd, ...args] = [...prefix, ...argv] as [string, ...string[]];
  const child = spawn(cmd, args, { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const log = () => fs.readFile(logFile, 'utf8');
  const socket = path.join(runDir, 'engine-host.sock');
  for (let i = 0; i < 600 && child.exitCode === null && !(await log()).includes(`serving on ${socket}`); i++) await new Promise((r) => setTimeout(r, 50));
  return { child, log, exited };
}

async function memberServices(runDir: string): Promise<number[]> {
  return (await findProcesses(path.join(runDir, 'member-service.events.jsonl'))).map((p) => p.pid);
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, log: () => Promise<string>, ms = 20_000): Promise<T> {
  for (const deadline = Date.now() + ms; ; await new Promise((r) => setTimeout(r, 100))) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms; the host's log:\n${await log()}`);
  }
}

test('the engine host runs the member service with TLS, restarts it after kill -9, and a new host adopts it instead of starting a second', async (t) => {
  const n = await node(t, 'msvc-host');
  const runDir = path.join(n.dir, 'run');
  t.after(async () => {
    for (const pid of await memberServices(runDir)) {
      process.kill(pid, 'SIGKILL');
      await waitExit(pid, 5000);
    }
  });
  const first = await startHost(n, runDir);
  t.after(() => first.child.kill('SIGKILL'));
  assert.match(await first.log(), new RegExp(`started the member service \\(pid \\d+\\) on 127\\.0\\.0\\.1:${n.port}`));
  await attach(n);
  const [pid] = await memberServices(runDir);
  assert.ok(pid !== undefined);
  const args = (await findProcesses(path.join(runDir, 'member-service.events.jsonl')))[0]!.argv;
  assert.deepEqual(args.slice(args.indexOf('member-serve')), [
    'member-serve', '--listen', `127.0.0.1:${n.port}`, '--tls-cert', path.join(n.tlsDir, 'tls.crt'), '--tls-key', path.join(n.tlsDir, 'tls.key'),
    '--tls-ca', path.join(n.tlsDir, 'ca.crt'), '--events', path.join(runDir, 'member-service.events.jsonl'), n.disk,
  ]);

  process.kill(pid, 'SIGKILL');
  const second = await until('a restarted member service', async () => {
    const pids = await memberServices(runDir);
    return pids.length === 1 && pids[0] !== pid && (await first.log()).includes('started the member service (pid ' + String(pids[0])) ? pids[0] : undefined;
  }, first.log);
  assert.match(await first.log(), new RegExp(`member service \\(pid ${pid}\\) exited after \\d+ s; restarting in 1000 ms`));
  await attach(n);

  // The host dies alone (not its PID namespace): the service goes on, and the next host adopts it.
  first.child.kill('SIGKILL');
  await first.exited;
  assert.deepEqual(await memberServices(runDir), [second]);
  const next = await startHost(n, runDir);
  t.after(() => next.child.kill('SIGKILL'));
  assert.match(await next.log(), new RegExp(`adopted the running member service \\(pid ${second}\\)`));
  assert.deepEqual(await memberServices(runDir), [second], 'one member service, never a second');
  await attach(n);

  // A host of another run dir on the same port: the port is held by a process that is not its
  // member service, so its start ends, saying so, before any engine is touched.
  const other = await startHost(n, path.join(n.dir, 'other-run'));
  assert.equal(await other.exited, 1);
  assert.match(await other.log(), new RegExp(`127\\.0\\.0\\.1:${n.port} is in use by another process, not this node's member service`));
  assert.deepEqual(await memberServices(runDir), [second]);
});

test('an engine host that is its container\'s first process stops the member service cleanly on SIGTERM', async (t) => {
  const n = await node(t, 'msvc-pid1');
  const runDir = path.join(n.dir, 'run');
  const host = await startHost(n, runDir, ['unshare', '--pid', '--fork', '--kill-child', '--mount-proc']);
  t.after(() => host.child.kill('SIGKILL'));
  await attach(n);
  const inner = await firstChild(host.child.pid!);
  assert.ok(inner !== undefined);
  process.kill(inner, 'SIGTERM');
  await host.exited;
  assert.match(await host.log(), /stopping every engine and the member service cleanly/);
  const events = (await fs.readFile(path.join(runDir, 'member-service.events.jsonl'), 'utf8')).trim().split('\n').map((l) => (JSON.parse(l) as { type: string }).type);
  assert.deepEqual(events.slice(-2), ['stopping', 'stopped'], 'the service stopped itself, not killed with its namespace');
});

test('without an engine host the plugin runs the member service itself', async (t) => {
  const n = await node(t, 'msvc-plugin');
  const plugin = await startPlugin({
    env: { LLRAID_MEMBER_SERVICE_LISTEN: `127.0.0.1:${n.port}`, LLRAID_TLS_DIR: n.tlsDir },
  });
  t.after(() => plugin.close());
  // The plugin exports its own disks: put the blank member in the first.
  writeFileSync(path.join(plugin.disks[0]!, 'llraid-m-0.img'), Buffer.alloc(8 * MiB));
  await attach(n);
  assert.match(await fs.readFile(plugin.logFile, 'utf8'), /started the member service \(pid \d+\)/);
  assert.equal((await memberServices(plugin.runDir)).length, 1);
});
