// Engines outlive the node plugin's container. A container's PID namespace takes every process
// in it down when its first process dies (a rolling update, a failed liveness probe, an OOM
// kill). Here each "container" is a PID namespace made by `unshare --pid --fork`, killed with
// SIGKILL: with the engines in the engine host's namespace, a mounted volume keeps working
// through the plugin's death and a new plugin unstages it cleanly; with the engines under the
// plugin (no engine host), the same kill takes the volume down. Real processes, nbdfuse, loop
// devices, ext4.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cliPath, firstChild, mountCap, startPlugin, type Plugin } from './plugin-harness.js';
import { hostRequest } from '../../src/csi/engine-host-client.js';
import { latestRun, readEngineEvents } from '../../src/engine/events.js';
import { findProcesses } from '../../src/engine/processes.js';

const MiB = 1024 * 1024;
const PID_NAMESPACE = ['unshare', '--pid', '--fork', '--kill-child'];

interface EngineHostProcess {
  socket: string;
  runDir: string;
  log: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** `llraid engine-host` in a PID namespace of its own, with its own /proc (a container's view). */
async function startEngineHost(dir: string): Promise<EngineHostProcess> {
  const runDir = path.join(dir, 'run');
  const socket = path.join(runDir, 'engine-host.sock');
  const log = path.join(dir, 'engine-host.log');
  const fd = openSync(log, 'a');
  const child = spawn('unshare', [...PID_NAMESPACE, '--mount-proc', process.execPath, cliPath, 'engine-host', '--run-dir', runDir, '--attach', 'fuse'], {
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  for (let i = 0; i < 600 && !existsSync(socket) && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
  if (!existsSync(socket)) throw new Error(`engine host did not listen: ${await fs.readFile(log, 'utf8')}`);
  return {
    socket, runDir, log, child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      // unshare does not pass signals on: SIGTERM goes to the namespace's first process (the
      // engine host, as a container runtime would send it), and unshare exits after it.
      const inner = await firstChild(child.pid!);
      if (inner !== undefined) process.kill(inner, 'SIGTERM');
      else child.kill('SIGKILL');
      await exited;
    },
  };
}

async function stageAndWrite(plugin: Plugin, name: string): Promise<{ id: string; staging: string; target: string; sums: Map<string, string> }> {
  const created = await plugin.controller.CreateVolume({
    name, capacity_range: { required_bytes: 128 * MiB }, volume_capabilities: [mountCap()], parameters: { level: '1', members: '2' },
  });
  const id = (created.volume as { volume_id: string }).volume_id;
  const staging = path.join(plugin.kubeletDir, 'staging');
  const target = path.join(plugin.kubeletDir, 'target');
  await plugin.node.NodeStageVolume({ volume_id: id, staging_target_path: staging, volume_capability: mountCap() });
  await plugin.node.NodePublishVolume({ volume_id: id, staging_target_path: staging, target_path: target, volume_capability: mountCap() });
  const sums = new Map<string, string>();
  await writeFile(target, 'before', sums);
  return { id, staging, target, sums };
}

async function writeFile(target: string, name: string, sums: Map<string, string>): Promise<void> {
  const data = randomBytes(4 * MiB);
  const file = path.join(target, name);
  const fh = await fs.open(file, 'w');
  await fh.writeFile(data);
  await fh.sync();
  await fh.close();
  sums.set(name, createHash('sha256').update(data).digest('hex'));
}

async function checkFiles(target: string, sums: Map<string, string>): Promise<void> {
  for (const [name, sum] of sums) {
    const data = await fs.readFile(path.join(target, name));
    assert.equal(createHash('sha256').update(data).digest('hex'), sum, `${name} reads back as written`);
  }
}

test('with an engine host, killing the plugin\'s PID namespace leaves the mounted volume working, and a new plugin unstages it cleanly', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'llraid-enghost-'));
  const host = await startEngineHost(dir);
  const plugin = await startPlugin({ prefix: PID_NAMESPACE, engineHost: host.socket, runDir: host.runDir });
  t.after(async () => {
    await plugin.close();
    await host.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });
  const { id, staging, target, sums } = await stageAndWrite(plugin, 'survives');
  const engine = await hostRequest(host.socket, { op: 'engine.find', volumeId: id }) as { pid: number } | null;
  assert.ok(engine, 'the engine runs in the engine host');

  await plugin.kill();
  // The whole namespace went: no process of the plugin is left (its argv names its socket).
  assert.deepEqual(await findProcesses(`unix://${plugin.socket}`), []);
  // The volume did not: new data reaches it and everything reads back.
  await writeFile(target, 'after-plugin-death', sums);
  await checkFiles(target, sums);
  assert.deepEqual(await hostRequest(host.socket, { op: 'engine.find', volumeId: id }), engine, 'the same engine, never restarted');

  await plugin.start();
  const stats = await plugin.node.NodeGetVolumeStats({ volume_id: id, volume_path: target });
  assert.equal((stats.volume_condition as { abnormal: boolean }).abnormal, false);
  await plugin.node.NodeUnpublishVolume({ volume_id: id, target_path: target });
  await plugin.node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging });
  assert.equal(await hostRequest(host.socket, { op: 'engine.find', volumeId: id }), null, 'unstage stopped the engine');
  // Staged again: the engine stopped cleanly, so nothing is resynced, and the files are there.
  await plugin.node.NodeStageVolume({ volume_id: id, staging_target_path: staging, volume_capability: mountCap() });
  const restaged = latestRun(await readEngineEvents(path.join(host.runDir, id, 'events.jsonl'))).find((e) => e.type === 'assembled');
  assert.ok(restaged?.type === 'assembled' && !restaged.unclean && restaged.bitmap.markedChunks === 0, `a clean restage: ${JSON.stringify(restaged)}`);
  await plugin.node.NodePublishVolume({ volume_id: id, staging_target_path: staging, target_path: target, volume_capability: mountCap() });
  await checkFiles(target, sums);
  await plugin.node.NodeUnpublishVolume({ volume_id: id, target_path: target });
  await plugin.node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging });
});

test('without an engine host, killing the plugin\'s PID namespace takes its engines and the mounted volume down', async (t) => {
  const plugin = await startPlugin({ prefix: PID_NAMESPACE });
  t.after(() => plugin.close());
  const { id, target } = await stageAndWrite(plugin, 'dies');
  assert.equal((await findProcesses(path.join(plugin.runDir, id, 'engine.sock'))).length > 0, true, 'engine and nbdfuse run');
  await plugin.kill();
  for (let i = 0; i < 100 && (await findProcesses(path.join(plugin.runDir, id, 'engine.sock'))).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(await findProcesses(path.join(plugin.runDir, id, 'engine.sock')), [], 'the engine and nbdfuse died with the namespace');
  await assert.rejects(writeFile(target, 'lost', new Map()), /EIO|ENOTCONN|EROFS|input\/output|not connected/i);
});
