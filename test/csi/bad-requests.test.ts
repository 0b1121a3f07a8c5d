// Bad requests against the real plugin: each gets the gRPC code the CSI spec prescribes, with a
// message naming what was wrong, and leaves the disk pool exactly as it was (same member files,
// same bytes in every superblock and bitmap area). One test per request, so each failure shows on its own.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { blockCap, codeOf, mountCap, startPlugin, type Plugin } from './plugin-harness.js';

const MiB = 1024 * 1024;
let plugin: Plugin;
/** Volumes the requests below aim at: `good` (level 1, the default) and `other`. */
let id: string;
let otherId: string;
/** The pool's member files and metadata with both volumes created: what a bad request must leave. */
let pool: string[];

before(async () => {
  plugin = await startPlugin();
  const good = await plugin.controller.CreateVolume({ name: 'good', capacity_range: { required_bytes: 32 * MiB }, volume_capabilities: [mountCap()] });
  id = (good.volume as { volume_id: string }).volume_id;
  const other = await plugin.controller.CreateVolume({ name: 'other', capacity_range: { required_bytes: 32 * MiB }, volume_capabilities: [mountCap()] });
  otherId = (other.volume as { volume_id: string }).volume_id;
  pool = await poolState();
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

/** A test that `call` fails with `code` (and a message matching `message`) and leaves the pool's bytes as they were. */
function refuses(behaviour: string, call: () => Promise<unknown>, code: status, message?: RegExp): void {
  it(behaviour, async () => {
    await expectCode(call(), code, message);
    assert.deepEqual(await poolState(), pool, 'the refused request changed nothing on disk');
  });
}

const vc = [mountCap()];
const staging = (): string => path.join(plugin.kubeletDir, 'staging');
const staging2 = (): string => path.join(plugin.kubeletDir, 'staging2');
const target = (): string => path.join(plugin.kubeletDir, 'target');

it('the two volumes under test own two member files each', () => {
  assert.equal(pool.length, 4);
});

describe('CreateVolume', () => {
  refuses('an empty name is INVALID_ARGUMENT', () => plugin.controller.CreateVolume({ name: '', volume_capabilities: vc }), status.INVALID_ARGUMENT, /name is empty/);
  refuses('no volume capabilities is INVALID_ARGUMENT', () => plugin.controller.CreateVolume({ name: 'x', volume_capabilities: [] }), status.INVALID_ARGUMENT, /volume_capabilities/);
  refuses(
    'an unknown parameter is INVALID_ARGUMENT naming it',
    () => plugin.controller.CreateVolume({ name: 'x', volume_capabilities: vc, parameters: { raid: '1' } }),
    status.INVALID_ARGUMENT,
    /"raid" is unknown/,
  );
  refuses(
    'an unsupported level is INVALID_ARGUMENT',
    () => plugin.controller.CreateVolume({ name: 'x', volume_capabilities: vc, parameters: { level: '7' } }),
    status.INVALID_ARGUMENT,
    /"level"/,
  );
  refuses(
    'an invalid chunk size is INVALID_ARGUMENT naming it',
    () => plugin.controller.CreateVolume({ name: 'x', volume_capabilities: vc, parameters: { chunkSize: '3000' } }),
    status.INVALID_ARGUMENT,
    /"chunkSize"/,
  );
  refuses(
    'a multi-node writer access mode is INVALID_ARGUMENT',
    () => plugin.controller.CreateVolume({ name: 'x', volume_capabilities: [{ mount: {}, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } }] }),
    status.INVALID_ARGUMENT,
    /MULTI_NODE_MULTI_WRITER/,
  );
  refuses(
    'more members than the pool has disks is RESOURCE_EXHAUSTED',
    () => plugin.controller.CreateVolume({ name: 'x', volume_capabilities: vc, parameters: { level: '0', members: '4' } }),
    status.RESOURCE_EXHAUSTED,
    /needs 4 distinct disks, the pool has 3/,
  );
  refuses(
    'more capacity than the disks have free is RESOURCE_EXHAUSTED',
    () => plugin.controller.CreateVolume({ name: 'x', volume_capabilities: vc, capacity_range: { required_bytes: 2 ** 50 } }),
    status.RESOURCE_EXHAUSTED,
    /free each/,
  );
  refuses(
    'a limit below the required bytes is INVALID_ARGUMENT',
    () => plugin.controller.CreateVolume({ name: 'x', volume_capabilities: vc, capacity_range: { required_bytes: 2 * MiB, limit_bytes: MiB } }),
    status.INVALID_ARGUMENT,
  );
  refuses(
    'a topology requirement excluding this node is RESOURCE_EXHAUSTED',
    () => plugin.controller.CreateVolume({
      name: 'x',
      volume_capabilities: vc,
      accessibility_requirements: { requisite: [{ segments: { 'topology.llraid.io/node': 'elsewhere' } }] },
    }),
    status.RESOURCE_EXHAUSTED,
    /do not include this node/,
  );
  refuses(
    'an existing name with different parameters is ALREADY_EXISTS naming the difference',
    () => plugin.controller.CreateVolume({ name: 'good', volume_capabilities: vc, capacity_range: { required_bytes: 32 * MiB }, parameters: { level: '0' } }),
    status.ALREADY_EXISTS,
    /level 1 ≠ 0/,
  );
  refuses(
    'a content source snapshot that does not exist is NOT_FOUND',
    () => plugin.controller.CreateVolume({ name: 'x', volume_capabilities: vc, volume_content_source: { snapshot: { snapshot_id: 's' } } }),
    status.NOT_FOUND,
    /source snapshot "s" does not exist/,
  );
});

describe('other controller calls', () => {
  refuses('DeleteVolume without a volume id is INVALID_ARGUMENT', () => plugin.controller.DeleteVolume({ volume_id: '' }), status.INVALID_ARGUMENT);
  it('DeleteVolume of an unknown volume succeeds and changes nothing', async () => {
    await plugin.controller.DeleteVolume({ volume_id: 'f'.repeat(32) });
    assert.deepEqual(await poolState(), pool);
  });
  refuses(
    'ValidateVolumeCapabilities without a volume id is INVALID_ARGUMENT',
    () => plugin.controller.ValidateVolumeCapabilities({ volume_id: '', volume_capabilities: vc }),
    status.INVALID_ARGUMENT,
  );
  refuses(
    'ValidateVolumeCapabilities of an unknown volume is NOT_FOUND',
    () => plugin.controller.ValidateVolumeCapabilities({ volume_id: 'nope', volume_capabilities: vc }),
    status.NOT_FOUND,
  );
  refuses(
    'ValidateVolumeCapabilities without capabilities is INVALID_ARGUMENT',
    () => plugin.controller.ValidateVolumeCapabilities({ volume_id: id, volume_capabilities: [] }),
    status.INVALID_ARGUMENT,
  );
  it('ValidateVolumeCapabilities does not confirm a multi-node mode, and says why', async () => {
    const multi = await plugin.controller.ValidateVolumeCapabilities({
      volume_id: id,
      volume_capabilities: [{ block: {}, access_mode: { mode: 'MULTI_NODE_READER_ONLY' } }],
    });
    assert.equal(multi.confirmed, null);
    assert.match(String(multi.message), /MULTI_NODE_READER_ONLY/);
    assert.deepEqual(await poolState(), pool);
  });
  refuses('ControllerGetVolume of an unknown volume is NOT_FOUND', () => plugin.controller.ControllerGetVolume({ volume_id: 'a'.repeat(32) }), status.NOT_FOUND);
  refuses('ListVolumes with a starting token it never gave is ABORTED', () => plugin.controller.ListVolumes({ starting_token: 'garbage' }), status.ABORTED);
  refuses('ListVolumes with negative max_entries is INVALID_ARGUMENT', () => plugin.controller.ListVolumes({ max_entries: -1 }), status.INVALID_ARGUMENT);
  refuses('GetCapacity for an unsupported fsType is INVALID_ARGUMENT', () => plugin.controller.GetCapacity({ parameters: { fsType: 'zfs' } }), status.INVALID_ARGUMENT, /"fsType"/);
});

describe('node calls on unstaged volumes', () => {
  refuses(
    'NodeStageVolume without a volume id is INVALID_ARGUMENT',
    () => plugin.node.NodeStageVolume({ volume_id: '', staging_target_path: staging(), volume_capability: mountCap() }),
    status.INVALID_ARGUMENT,
  );
  refuses(
    'NodeStageVolume without a staging path is INVALID_ARGUMENT',
    () => plugin.node.NodeStageVolume({ volume_id: id, staging_target_path: '', volume_capability: mountCap() }),
    status.INVALID_ARGUMENT,
  );
  refuses(
    'NodeStageVolume without a volume capability is INVALID_ARGUMENT',
    () => plugin.node.NodeStageVolume({ volume_id: id, staging_target_path: staging() }),
    status.INVALID_ARGUMENT,
    /volume_capability/,
  );
  refuses(
    'NodeStageVolume of an unknown volume is NOT_FOUND',
    () => plugin.node.NodeStageVolume({ volume_id: 'b'.repeat(32), staging_target_path: staging(), volume_capability: mountCap() }),
    status.NOT_FOUND,
  );
  refuses(
    'NodePublishVolume of a volume not staged is FAILED_PRECONDITION',
    () => plugin.node.NodePublishVolume({ volume_id: id, staging_target_path: staging(), target_path: target(), volume_capability: mountCap() }),
    status.FAILED_PRECONDITION,
    /not staged/,
  );
  refuses(
    'NodeUnstageVolume without a staging path is INVALID_ARGUMENT',
    () => plugin.node.NodeUnstageVolume({ volume_id: id, staging_target_path: '' }),
    status.INVALID_ARGUMENT,
  );
  refuses(
    'NodeUnpublishVolume without a target path is INVALID_ARGUMENT',
    () => plugin.node.NodeUnpublishVolume({ volume_id: id, target_path: '' }),
    status.INVALID_ARGUMENT,
  );
  refuses(
    'NodeGetVolumeStats without a volume path is INVALID_ARGUMENT',
    () => plugin.node.NodeGetVolumeStats({ volume_id: id, volume_path: '' }),
    status.INVALID_ARGUMENT,
  );
  refuses(
    'NodeGetVolumeStats of an unknown volume is NOT_FOUND',
    () => plugin.node.NodeGetVolumeStats({ volume_id: 'c'.repeat(32), volume_path: target() }),
    status.NOT_FOUND,
  );
});

// A published target path belongs to its volume: a second volume (or the same one as block, or
// read-only) cannot take it, and a volume in use can be neither deleted nor unstaged.
describe('with one volume published and the other staged', () => {
  before(async () => {
    await plugin.node.NodeStageVolume({ volume_id: id, staging_target_path: staging(), volume_capability: mountCap() });
    await plugin.node.NodePublishVolume({ volume_id: id, staging_target_path: staging(), target_path: target(), volume_capability: mountCap() });
    await plugin.node.NodeStageVolume({ volume_id: otherId, staging_target_path: staging2(), volume_capability: mountCap() });
  });
  after(async () => {
    await plugin.node.NodeUnpublishVolume({ volume_id: id, target_path: target() });
    await plugin.node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging() });
    await plugin.node.NodeUnstageVolume({ volume_id: otherId, staging_target_path: staging2() });
  });

  it('publishing the other volume on the taken target path is ALREADY_EXISTS', async () => {
    await expectCode(
      plugin.node.NodePublishVolume({ volume_id: otherId, staging_target_path: staging2(), target_path: target(), volume_capability: mountCap() }),
      status.ALREADY_EXISTS,
    );
  });
  it('publishing the same volume there again read-only is ALREADY_EXISTS', async () => {
    await expectCode(
      plugin.node.NodePublishVolume({ volume_id: id, staging_target_path: staging(), target_path: target(), volume_capability: mountCap(), readonly: true }),
      status.ALREADY_EXISTS,
    );
  });
  it('staging the volume again as a block volume is ALREADY_EXISTS', async () => {
    await expectCode(plugin.node.NodeStageVolume({ volume_id: id, staging_target_path: staging(), volume_capability: blockCap() }), status.ALREADY_EXISTS);
  });
  it('DeleteVolume of the published volume is FAILED_PRECONDITION', async () => {
    await expectCode(plugin.controller.DeleteVolume({ volume_id: id }), status.FAILED_PRECONDITION, /in use/);
  });
  it('NodeUnstageVolume of the published volume is FAILED_PRECONDITION', async () => {
    await expectCode(plugin.node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging() }), status.FAILED_PRECONDITION, /still published/);
  });
  it('NodeGetVolumeStats at a path the volume is not published on is NOT_FOUND', async () => {
    assert.equal(await codeOf(plugin.node.NodeGetVolumeStats({ volume_id: id, volume_path: path.join(plugin.kubeletDir, 'nowhere') })), status.NOT_FOUND);
  });
});

it('once unpublished and unstaged, both volumes delete and leave no member file behind', async () => {
  await plugin.controller.DeleteVolume({ volume_id: id });
  await plugin.controller.DeleteVolume({ volume_id: otherId });
  assert.deepEqual(await poolState(), []);
});
