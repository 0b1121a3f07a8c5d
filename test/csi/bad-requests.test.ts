// Bad requests against the real plugin: each gets the gRPC code the CSI spec prescribes, with a
// message naming what was wrong, and leaves the disk pool exactly as it was (same member files,
// same bytes in every superblock and bitmap area).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { blockCap, codeOf, mountCap, startPlugin, type Plugin } from './plugin-harness.js';

const MiB = 1024 * 1024;
let plugin: Plugin;

before(async () => {
  plugin = await startPlugin();
});

after(async () => {
  await plugin.close();
});

/** Every member file with its size and a hash of its metadata area (superblock + bitmap). */
async function poolState(): Promise<string[]> {
  const out: string[] = [];
  for (const disk of plugin.disks) {
    for (const name of (await fs.readdir(disk)).sort()) {
      const file = path.join(disk, name);
      const h = await fs.open(file, 'r');
      const head = Buffer.alloc(MiB);
      await h.read(head, 0, MiB, 0);
      const { size } = await h.stat();
      await h.close();
      out.push(`${file} ${size} ${createHash('sha256').update(head).digest('hex')}`);
    }
  }
  return out;
}

async function expectCode(p: Promise<unknown>, code: status, message?: RegExp): Promise<void> {
  try {
    await p;
  } catch (err) {
    const e = err as { code: number; details: string };
    assert.equal(e.code, code, `expected ${status[code]}, got ${status[e.code]}: ${e.details}`);
    if (message) assert.match(e.details, message);
    return;
  }
  assert.fail(`expected ${status[code]}, the call succeeded`);
}

test('bad requests get the spec gRPC codes and change nothing on disk', async () => {
  const c = plugin.controller;
  const n = plugin.node;
  const good = await c.CreateVolume({ name: 'good', capacity_range: { required_bytes: 32 * MiB }, volume_capabilities: [mountCap()] });
  const id = (good.volume as { volume_id: string }).volume_id;
  const other = await c.CreateVolume({ name: 'other', capacity_range: { required_bytes: 32 * MiB }, volume_capabilities: [mountCap()] });
  const otherId = (other.volume as { volume_id: string }).volume_id;
  const before = await poolState();
  assert.equal(before.length, 4);

  const vc = [mountCap()];
  // CreateVolume
  await expectCode(c.CreateVolume({ name: '', volume_capabilities: vc }), status.INVALID_ARGUMENT, /name is empty/);
  await expectCode(c.CreateVolume({ name: 'x', volume_capabilities: [] }), status.INVALID_ARGUMENT, /volume_capabilities/);
  await expectCode(c.CreateVolume({ name: 'x', volume_capabilities: vc, parameters: { raid: '1' } }), status.INVALID_ARGUMENT, /"raid" is unknown/);
  await expectCode(c.CreateVolume({ name: 'x', volume_capabilities: vc, parameters: { level: '7' } }), status.INVALID_ARGUMENT, /"level"/);
  await expectCode(c.CreateVolume({ name: 'x', volume_capabilities: vc, parameters: { chunkSize: '3000' } }), status.INVALID_ARGUMENT, /"chunkSize"/);
  await expectCode(
    c.CreateVolume({ name: 'x', volume_capabilities: [{ mount: {}, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } }] }),
    status.INVALID_ARGUMENT,
    /MULTI_NODE_MULTI_WRITER/,
  );
  await expectCode(
    c.CreateVolume({ name: 'x', volume_capabilities: vc, parameters: { level: '0', members: '4' } }),
    status.RESOURCE_EXHAUSTED,
    /needs 4 distinct disks, the pool has 3/,
  );
  await expectCode(
    c.CreateVolume({ name: 'x', volume_capabilities: vc, capacity_range: { required_bytes: 2 ** 50 } }),
    status.RESOURCE_EXHAUSTED,
    /free each/,
  );
  await expectCode(
    c.CreateVolume({ name: 'x', volume_capabilities: vc, capacity_range: { required_bytes: 2 * MiB, limit_bytes: MiB } }),
    status.INVALID_ARGUMENT,
  );
  await expectCode(
    c.CreateVolume({
      name: 'x',
      volume_capabilities: vc,
      accessibility_requirements: { requisite: [{ segments: { 'topology.llraid.io/node': 'elsewhere' } }] },
    }),
    status.RESOURCE_EXHAUSTED,
    /do not include this node/,
  );
  await expectCode(
    c.CreateVolume({ name: 'good', volume_capabilities: vc, capacity_range: { required_bytes: 32 * MiB }, parameters: { level: '0' } }),
    status.ALREADY_EXISTS,
    /level 1 ≠ 0/,
  );
  await expectCode(
    c.CreateVolume({ name: 'x', volume_capabilities: vc, volume_content_source: { snapshot: { snapshot_id: 's' } } }),
    status.INVALID_ARGUMENT,
  );
  // Other controller calls
  await expectCode(c.DeleteVolume({ volume_id: '' }), status.INVALID_ARGUMENT);
  await c.DeleteVolume({ volume_id: 'f'.repeat(32) });
  await expectCode(c.ValidateVolumeCapabilities({ volume_id: '', volume_capabilities: vc }), status.INVALID_ARGUMENT);
  await expectCode(c.ValidateVolumeCapabilities({ volume_id: 'nope', volume_capabilities: vc }), status.NOT_FOUND);
  await expectCode(c.ValidateVolumeCapabilities({ volume_id: id, volume_capabilities: [] }), status.INVALID_ARGUMENT);
  const multi = await c.ValidateVolumeCapabilities({
    volume_id: id,
    volume_capabilities: [{ block: {}, access_mode: { mode: 'MULTI_NODE_READER_ONLY' } }],
  });
  assert.equal(multi.confirmed, null);
  assert.match(String(multi.message), /MULTI_NODE_READER_ONLY/);
  await expectCode(c.ControllerGetVolume({ volume_id: 'a'.repeat(32) }), status.NOT_FOUND);
  await expectCode(c.ListVolumes({ starting_token: 'garbage' }), status.ABORTED);
  await expectCode(c.ListVolumes({ max_entries: -1 }), status.INVALID_ARGUMENT);
  await expectCode(c.GetCapacity({ parameters: { fsType: 'zfs' } }), status.INVALID_ARGUMENT, /"fsType"/);

  // Node calls
  const staging = path.join(plugin.kubeletDir, 'staging');
  const target = path.join(plugin.kubeletDir, 'target');
  await expectCode(n.NodeStageVolume({ volume_id: '', staging_target_path: staging, volume_capability: mountCap() }), status.INVALID_ARGUMENT);
  await expectCode(n.NodeStageVolume({ volume_id: id, staging_target_path: '', volume_capability: mountCap() }), status.INVALID_ARGUMENT);
  await expectCode(n.NodeStageVolume({ volume_id: id, staging_target_path: staging }), status.INVALID_ARGUMENT, /volume_capability/);
  await expectCode(n.NodeStageVolume({ volume_id: 'b'.repeat(32), staging_target_path: staging, volume_capability: mountCap() }), status.NOT_FOUND);
  await expectCode(
    n.NodePublishVolume({ volume_id: id, staging_target_path: staging, target_path: target, volume_capability: mountCap() }),
    status.FAILED_PRECONDITION,
    /not staged/,
  );
  await expectCode(n.NodeUnstageVolume({ volume_id: id, staging_target_path: '' }), status.INVALID_ARGUMENT);
  await expectCode(n.NodeUnpublishVolume({ volume_id: id, target_path: '' }), status.INVALID_ARGUMENT);
  await expectCode(n.NodeGetVolumeStats({ volume_id: id, volume_path: '' }), status.INVALID_ARGUMENT);
  await expectCode(n.NodeGetVolumeStats({ volume_id: 'c'.repeat(32), volume_path: target }), status.NOT_FOUND);
  assert.deepEqual(await poolState(), before, 'bad requests changed nothing on disk');

  // Target path collision: a second volume (or the same one as block) cannot take a published path.
  await n.NodeStageVolume({ volume_id: id, staging_target_path: staging, volume_capability: mountCap() });
  await n.NodePublishVolume({ volume_id: id, staging_target_path: staging, target_path: target, volume_capability: mountCap() });
  const staging2 = path.join(plugin.kubeletDir, 'staging2');
  await n.NodeStageVolume({ volume_id: otherId, staging_target_path: staging2, volume_capability: mountCap() });
  await expectCode(
    n.NodePublishVolume({ volume_id: otherId, staging_target_path: staging2, target_path: target, volume_capability: mountCap() }),
    status.ALREADY_EXISTS,
  );
  await expectCode(
    n.NodePublishVolume({ volume_id: id, staging_target_path: staging, target_path: target, volume_capability: mountCap(), readonly: true }),
    status.ALREADY_EXISTS,
  );
  await expectCode(n.NodeStageVolume({ volume_id: id, staging_target_path: staging, volume_capability: blockCap() }), status.ALREADY_EXISTS);
  await expectCode(c.DeleteVolume({ volume_id: id }), status.FAILED_PRECONDITION, /in use/);
  await expectCode(n.NodeUnstageVolume({ volume_id: id, staging_target_path: staging }), status.FAILED_PRECONDITION, /still published/);
  assert.equal(await codeOf(n.NodeGetVolumeStats({ volume_id: id, volume_path: path.join(plugin.kubeletDir, 'nowhere') })), status.NOT_FOUND);

  await n.NodeUnpublishVolume({ volume_id: id, target_path: target });
  await n.NodeUnstageVolume({ volume_id: id, staging_target_path: staging });
  await n.NodeUnstageVolume({ volume_id: otherId, staging_target_path: staging2 });
  await c.DeleteVolume({ volume_id: id });
  await c.DeleteVolume({ volume_id: otherId });
  assert.deepEqual(await poolState(), []);
});
