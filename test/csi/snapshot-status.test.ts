// What `kubectl describe raidvolume` will list of a volume's snapshots, from the plugin's status
// feed: each snapshot with its size and the bytes it still shares with the volume, measured from
// the extent maps (a real plugin, its disks on an XFS with reflink, the volume written through
// NBD); rewriting part of the volume lowers the shared bytes by what was rewritten.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { NbdClientDevice } from '../../src/nbd/index.js';
import type { NodeReporting, VolumeStatus } from '../../src/k8s/index.js';
import { DiskPool } from '../../src/csi/disk-pool.js';
import { SnapshotStore } from '../../src/csi/snapshot-store.js';
import { StatusFeed } from '../../src/csi/status-feed.js';
import { VolumeCatalog } from '../../src/csi/volume-catalog.js';
import { blockCap, readySnapshot, startPlugin, type Plugin } from './plugin-harness.js';
import { mountReflinkFs, type ReflinkFs } from '../support/reflink-fs.js';

const MiB = 1024 * 1024;
let disk: ReflinkFs;
let plugin: Plugin;

before(async () => {
  disk = await mountReflinkFs('snapshot-status');
  plugin = await startPlugin({ diskRoot: disk.dir, disks: 2 });
});

after(async () => {
  await plugin?.close();
  await disk?.close();
});

async function write(id: string, at: number, bytes: number, fill: number): Promise<void> {
  const staging = path.join(plugin.kubeletDir, `staging-${id}`);
  await plugin.node.NodeStageVolume({ volume_id: id, staging_target_path: staging, volume_capability: blockCap() });
  const dev = await NbdClientDevice.connect({ uri: `nbd+unix:///${id}?socket=${path.join(plugin.runDir, id, 'engine.sock')}` });
  try {
    for (let o = 0; o < bytes; o += MiB) await dev.write(at + o, Buffer.alloc(MiB, fill));
    await dev.flush();
  } finally {
    await dev.close();
    await plugin.node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging });
  }
}

/** One look of a fresh status feed over the plugin's pool: the volume's status. */
async function statusOf(id: string): Promise<VolumeStatus> {
  const pool = new DiskPool(plugin.disks);
  const updates: VolumeStatus[] = [];
  const reporting = { update: (s: VolumeStatus) => updates.push(s), remove: () => {}, setPool: () => {} } as unknown as NodeReporting;
  const store = new SnapshotStore(pool);
  const feed = new StatusFeed({
    nodeId: 'test-node', catalog: new VolumeCatalog(pool), pool, reporting, log: () => {},
    runtime: () => Promise.resolve({ staged: false, engineRunning: false, attached: false }),
    snapshots: () => store.scan(),
  });
  await feed.poke();
  await feed.close();
  const found = updates.find((u) => u.name === id);
  assert.ok(found, `the feed reported volume ${id}`);
  return found;
}

test('the status lists each snapshot with its size and the bytes it still shares with the volume', { timeout: 300_000 }, async () => {
  const created = await plugin.controller.CreateVolume({ name: 'status-src', capacity_range: { required_bytes: 64 * MiB }, volume_capabilities: [blockCap()], parameters: { level: '1', members: '2' } });
  const id = (created.volume as { volume_id: string }).volume_id;
  await write(id, 0, 16 * MiB, 0x31);
  const snap = (await readySnapshot(plugin.controller, id, 'status-snap')).snapshot_id;

  const first = await statusOf(id);
  assert.equal(first.snapshots?.length, 1);
  assert.equal(first.snapshots![0]!.id, snap);
  assert.equal(first.snapshots![0]!.sizeBytes, 64 * MiB);
  assert.equal(first.snapshots![0]!.sharedBytes, 16 * MiB, 'every byte written before the snapshot is shared');

  await write(id, 4 * MiB, 6 * MiB, 0x32);
  const second = await statusOf(id);
  assert.equal(second.snapshots![0]!.sharedBytes, 10 * MiB, 'the 6 MiB rewritten since are the snapshot\'s own');

  await plugin.controller.DeleteSnapshot({ snapshot_id: snap });
  assert.equal((await statusOf(id)).snapshots, undefined, 'a deleted snapshot is no longer listed');
});
