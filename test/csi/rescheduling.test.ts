// The rescheduling scenario of issue 5, on the real plugin, engines, nbdfuse, loop devices and
// ext4: a clean unstage/stage resyncs nothing; an engine killed mid-write plus a plugin restart
// resyncs only the chunks the llbitmap marked, and the files written before are intact; an engine
// killed while idle (its nbdfuse still running, the page cache still warm) is staged afresh.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { latestRun, readEngineEvents, type AssembledEvent, type SyncEndedEvent, type TimedEngineEvent } from '../../src/engine/events.js';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { findProcesses } from '../../src/engine/processes.js';
import { mountCap, startPlugin, type Plugin } from './plugin-harness.js';

const MiB = 1024 * 1024;
let plugin: Plugin;

before(async () => {
  plugin = await startPlugin();
});

after(async () => {
  await plugin.close();
});

/** The events of the volume engine's latest run (its events file, written by every run). */
async function lastEngineRun(volumeId: string): Promise<TimedEngineEvent[]> {
  return latestRun(await readEngineEvents(path.join(plugin.runDir, volumeId, 'events.jsonl')));
}

function assembled(run: TimedEngineEvent[]): AssembledEvent {
  const a = run.find((e): e is AssembledEvent & TimedEngineEvent => e.type === 'assembled');
  assert.ok(a, `the engine's latest run assembled the array: ${JSON.stringify(run)}`);
  return a;
}

/** Whether any loop device is still backed by the volume's FUSE file (its attachment). */
async function attached(volumeId: string): Promise<boolean> {
  const { stdout } = await promisify(execFile)('losetup', ['--list', '--json', '--output', 'BACK-FILE']);
  return stdout.includes(path.join(plugin.runDir, volumeId, 'fuse'));
}

async function waitFor(what: string, check: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A new raid1 volume of two members through the real CreateVolume; its id. */
async function createRaid1(name: string, bytes: number): Promise<string> {
  const created = await plugin.controller.CreateVolume({
    name,
    capacity_range: { required_bytes: bytes },
    volume_capabilities: [mountCap()],
    parameters: { level: '1', members: '2' },
  });
  return (created.volume as { volume_id: string }).volume_id;
}

test('clean restage resyncs nothing; after an engine crash only bitmap-marked chunks resync, files intact', async () => {
  const id = await createRaid1('resched-1', 256 * MiB);
  const staging = path.join(plugin.kubeletDir, 'staging');
  const target = path.join(plugin.kubeletDir, 'target');
  const stage = () => plugin.node.NodeStageVolume({ volume_id: id, staging_target_path: staging, volume_capability: mountCap() });
  const publish = () =>
    plugin.node.NodePublishVolume({ volume_id: id, staging_target_path: staging, target_path: target, volume_capability: mountCap() });
  const unpublishUnstage = async () => {
    await plugin.node.NodeUnpublishVolume({ volume_id: id, target_path: target });
    await plugin.node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging });
  };

  await stage();
  await publish();
  const sums = new Map<string, string>();
  for (let i = 0; i < 8; i++) {
    const data = randomBytes(2 * MiB);
    await fs.writeFile(path.join(target, `file-${i}`), data);
    sums.set(`file-${i}`, createHash('sha256').update(data).digest('hex'));
  }
  await unpublishUnstage();

  // 1. Clean stop, stage again: the superblocks say clean and the bitmap marks nothing.
  await stage();
  const cleanRun = await lastEngineRun(id);
  const clean = assembled(cleanRun);
  assert.equal(clean.unclean, false);
  assert.equal(clean.bitmap.markedChunks, 0);
  assert.equal(cleanRun.filter((e) => e.type === 'sync-ended').length, 0, 'no resync after a clean restage');
  process.stdout.write(`clean restage: ${JSON.stringify(clean)}\n`);
  await publish();

  // 2. A writer is busy when the engine dies (kill -9) and the plugin dies with it. It rewrites
  // one 16 MiB file over and over, as a database would its working set, however fast this
  // machine is: what the bitmap marks is that file and the filesystem's metadata.
  const busy = path.join(target, 'busy');
  const writer = spawn('sh', ['-c', `while :; do dd if=/dev/urandom of=${busy} bs=1M count=16 oflag=direct conv=notrunc status=none; done`], {
    stdio: 'ignore',
    detached: true,
  });
  await new Promise((r) => setTimeout(r, 1500));
  const engine = (await findProcesses(path.join(plugin.runDir, id, 'engine.sock'))).find((p) => p.argv.includes('serve'));
  assert.ok(engine, 'the engine runs while staged');
  process.kill(engine.pid, 'SIGKILL');
  await plugin.kill();
  process.kill(-writer.pid!, 'SIGKILL');

  // 3. The plugin restarts and clears the dead attachment; the volume reports the resync it owes
  // (from its superblocks alone) until the CO stages it again.
  await plugin.start();
  await waitFor('the dead attachment to be cleared', async () => !(await attached(id)));
  const pending = (await plugin.controller.ControllerGetVolume({ volume_id: id })) as { status: { volume_condition: { abnormal: boolean; message: string } } };
  assert.equal(pending.status.volume_condition.abnormal, true);
  assert.match(pending.status.volume_condition.message, /resync pending/);
  await stage();
  await waitFor('the resync to finish', async () => (await lastEngineRun(id)).some((e) => e.type === 'sync-ended'));
  const crashRun = await lastEngineRun(id);
  const crash = assembled(crashRun);
  assert.equal(crash.unclean, true);
  const marked = crash.bitmap.markedChunks;
  const chunk = crash.bitmap.chunkSize;
  const resync = crashRun.find((e): e is SyncEndedEvent & TimedEngineEvent => e.type === 'sync-ended');
  assert.ok(resync?.complete, `resync completed: ${JSON.stringify(crashRun)}`);
  const synced = resync.bytesSynced;
  const total = synced + resync.bytesSkipped;
  assert.ok(marked > 0, 'the writes in flight left marked chunks');
  assert.ok(synced <= marked * chunk, `only marked chunks are synced: ${synced} bytes for ${marked} chunks of ${chunk}`);
  assert.ok(synced < total / 2, `far less than the whole array is synced: ${synced} of ${total} bytes`);
  process.stdout.write(`after the crash: resynced ${synced / chunk} of ${total / chunk} chunks (${marked} marked, ${chunk} bytes each)\n`);

  const healthy = (await plugin.controller.ControllerGetVolume({ volume_id: id })) as { status: { volume_condition: { abnormal: boolean } } };
  assert.equal(healthy.status.volume_condition.abnormal, false);
  await publish();
  for (const [name, sum] of sums) {
    const data = await fs.readFile(path.join(target, name));
    assert.equal(createHash('sha256').update(data).digest('hex'), sum, `${name} intact`);
  }
  await unpublishUnstage();
  await plugin.controller.DeleteVolume({ volume_id: id });
  assert.deepEqual(await fs.readdir(plugin.disks[0]!), []);
});

test('an engine killed while nothing writes: staging again mounts a fresh attachment, and the file reads back from the volume, not the page cache', async () => {
  const id = await createRaid1('resched-idle-kill', 128 * MiB);
  const staging = path.join(plugin.kubeletDir, 'staging-idle-kill');
  const stage = () => plugin.node.NodeStageVolume({ volume_id: id, staging_target_path: staging, volume_capability: mountCap() });
  await stage();
  const data = randomBytes(4 * MiB);
  const file = path.join(staging, 'payload');
  await fs.writeFile(file, data, { flush: true });
  await promisify(execFile)('sync', ['-f', file]);

  const socket = path.join(plugin.runDir, id, 'engine.sock');
  const engine = (await findProcesses(socket)).find((p) => p.argv.includes('serve'));
  assert.ok(engine, 'the engine runs while staged');
  process.kill(engine.pid, 'SIGKILL');
  await waitFor('the engine to be gone', async () => !(await findProcesses(socket)).some((p) => p.argv.includes('serve')));
  // nbdfuse outlives its engine until a request reaches it: the attachment looks alive, and the
  // file's pages are still in the page cache.
  const fuseAlive = (await findProcesses(socket)).some((p) => p.argv.some((a) => a.endsWith('nbdfuse')));
  process.stdout.write(`engine killed; nbdfuse ${fuseAlive ? 'still running' : 'gone'}\n`);

  await stage();
  // O_DIRECT: the bytes come from the device under the staging mount, through the new engine.
  const { stdout } = await promisify(execFile)('sh', ['-c', `dd if=${file} iflag=direct bs=1M status=none | sha256sum`]);
  assert.equal(stdout.split(' ')[0], createHash('sha256').update(data).digest('hex'), 'the file reads back through the restarted engine');
  const run = await lastEngineRun(id);
  assert.equal(assembled(run).unclean, true, 'the new engine assembled the array the killed one left');

  await plugin.node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging });
  assert.equal(await attached(id), false);
  await plugin.controller.DeleteVolume({ volume_id: id });
});
