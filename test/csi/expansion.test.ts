// Volume expansion on the real plugin with fuse attach (nbdfuse + loop + ext4): the plugin says
// OFFLINE, since nbdfuse fixes its size at connect; expanding a staged volume is refused before
// any member file grows; unstaged, ControllerExpandVolume grows the member files and the array;
// the next stage attaches the bigger device and NodeExpandVolume grows the filesystem, with
// every file intact. (Online expansion through the kernel nbd client: kernel-guest.ts.)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs, statSync } from 'node:fs';
import path from 'node:path';
import { mountCap, startPlugin, type Plugin } from './plugin-harness.js';
import { filesystemUsage } from '../../src/csi/filesystem.js';

const MiB = 1024 * 1024;
let plugin: Plugin;

before(async () => {
  plugin = await startPlugin();
});

after(async () => {
  await plugin.close();
});

test('fuse attach expands offline: refused while staged, grown while not, filesystem grown at the next stage', async () => {
  const caps = (await plugin.identity.GetPluginCapabilities({})) as { capabilities: { volume_expansion?: { type: string } }[] };
  assert.deepEqual(caps.capabilities.flatMap((c) => (c.volume_expansion ? [c.volume_expansion.type] : [])), ['OFFLINE']);

  const created = await plugin.controller.CreateVolume({
    name: 'grow-1', capacity_range: { required_bytes: 64 * MiB }, volume_capabilities: [mountCap()], parameters: { level: '1', members: '2' },
  });
  const vol = created.volume as { volume_id: string; capacity_bytes: string };
  const id = vol.volume_id;
  const staging = path.join(plugin.kubeletDir, 'staging');
  const target = path.join(plugin.kubeletDir, 'target');
  const stage = async () => {
    await plugin.node.NodeStageVolume({ volume_id: id, staging_target_path: staging, volume_capability: mountCap() });
    await plugin.node.NodePublishVolume({ volume_id: id, staging_target_path: staging, target_path: target, volume_capability: mountCap() });
  };
  const unstage = async () => {
    await plugin.node.NodeUnpublishVolume({ volume_id: id, target_path: target });
    await plugin.node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging });
  };
  await stage();
  const data = randomBytes(8 * MiB);
  await fs.writeFile(path.join(target, 'file'), data);
  const sum = createHash('sha256').update(data).digest('hex');
  const before = await filesystemUsage(target);
  const members = (await fs.readdir(plugin.disks[0]!)).map((n) => path.join(plugin.disks[0]!, n));
  const sizeBefore = statSync(members[0]!).size;

  await assert.rejects(
    plugin.controller.ControllerExpandVolume({ volume_id: id, capacity_range: { required_bytes: 160 * MiB }, volume_capability: mountCap() }),
    (e: { code?: number; details?: string }) => e.code === 9 && /is staged, .*expand it while it is not staged/.test(e.details ?? ''),
  );
  assert.equal(statSync(members[0]!).size, sizeBefore, 'a refused expansion grows no member file');

  await unstage();
  const grown = (await plugin.controller.ControllerExpandVolume({
    volume_id: id, capacity_range: { required_bytes: 160 * MiB }, volume_capability: mountCap(),
  })) as { capacity_bytes: string; node_expansion_required: boolean };
  assert.ok(Number(grown.capacity_bytes) >= 160 * MiB, `the array holds ${grown.capacity_bytes} bytes`);
  assert.equal(grown.node_expansion_required, true);
  assert.ok(statSync(members[0]!).size > sizeBefore, 'the member files grew');
  const again = (await plugin.controller.ControllerExpandVolume({
    volume_id: id, capacity_range: { required_bytes: 160 * MiB }, volume_capability: mountCap(),
  })) as { capacity_bytes: string };
  assert.equal(again.capacity_bytes, grown.capacity_bytes, 'expanding to the same size again is a no-op');

  // The stage finds ext4 smaller than its device and grows it before mounting (offline resize2fs);
  // NodeExpandVolume, as the kubelet calls it next, finds nothing left to do.
  await stage();
  const expanded = (await plugin.node.NodeExpandVolume({
    volume_id: id, volume_path: target, staging_target_path: staging, capacity_range: { required_bytes: 160 * MiB }, volume_capability: mountCap(),
  })) as { capacity_bytes: string };
  assert.equal(expanded.capacity_bytes, grown.capacity_bytes);
  const afterUsage = await filesystemUsage(target);
  assert.ok(afterUsage.totalBytes > before.totalBytes * 2, `ext4 grew from ${before.totalBytes} to ${afterUsage.totalBytes} bytes`);
  assert.equal(createHash('sha256').update(await fs.readFile(path.join(target, 'file'))).digest('hex'), sum, 'the file is intact');
  await fs.writeFile(path.join(target, 'big'), randomBytes(96 * MiB));
  await unstage();
  await plugin.controller.DeleteVolume({ volume_id: id });
});
