// One lock per volume, shared by the Controller and Node services. An offline
// ControllerExpandVolume assembles the volume's members itself; a NodeStageVolume of the same
// volume starts its engine on the same files. The driver runs in this process with the real md
// backend held at a gate inside the expansion (while it holds the members), and a real engine
// and nbdfuse: the stage must wait for the expansion, then both succeed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startDriver } from '../../src/csi/driver.js';
import { resolveConfig } from '../../src/csi/config.js';
import { MdArrays } from '../../src/csi/md-arrays.js';
import type { VolumeRecord } from '../../src/csi/volume-catalog.js';
import { engineSource } from '../../src/cli/commands/csi.js';
import { cliPath, csiClient, mountCap } from './plugin-harness.js';

const MiB = 1024 * 1024;

/** The real md backend, whose grow waits at `gate` while it holds the assembled members. */
class GatedArrays extends MdArrays {
  gate: Promise<void> = Promise.resolve();
  entered!: () => void;
  readonly inGrow = new Promise<void>((r) => (this.entered = r));
  override async grow(volume: VolumeRecord, memberDataSize: number): Promise<void> {
    this.entered();
    await this.gate;
    await super.grow(volume, memberDataSize);
  }
}

test('a stage sent while an offline expansion of the same volume runs waits for it; both succeed', { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'llraid-lock-'));
  const disks = [path.join(dir, 'd0'), path.join(dir, 'd1')];
  const kubeletDir = path.join(dir, 'kubelet');
  for (const d of [...disks, kubeletDir]) mkdirSync(d);
  const socket = path.join(dir, 'csi.sock');
  const arrays = new GatedArrays();
  const driver = await startDriver(resolveConfig({
    endpoint: `unix://${socket}`, nodeId: 'lock-node', disks, attach: 'fuse', runDir: path.join(dir, 'run'), kubeletDir,
  }), { arrays, engineSource, engineCommand: [process.execPath, cliPath], version: 'test', log: () => undefined });
  const controller = csiClient(socket, 'Controller');
  const node = csiClient(socket, 'Node');
  const staging = path.join(kubeletDir, 'staging');
  t.after(async () => {
    await node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging }).catch(() => undefined);
    controller.close();
    node.close();
    await driver.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const created = await controller.CreateVolume({
    name: 'locked', capacity_range: { required_bytes: 64 * MiB }, volume_capabilities: [mountCap()], parameters: { level: '1', members: '2' },
  });
  const id = (created.volume as { volume_id: string }).volume_id;

  let open!: () => void;
  arrays.gate = new Promise((r) => (open = r));
  const grown = controller.ControllerExpandVolume({ volume_id: id, capacity_range: { required_bytes: 160 * MiB }, volume_capability: mountCap() });
  await arrays.inGrow;
  let stageDone = false;
  const staged = node.NodeStageVolume({ volume_id: id, staging_target_path: staging, volume_capability: mountCap() })
    .finally(() => (stageDone = true));
  await new Promise((r) => setTimeout(r, 2000));
  assert.equal(stageDone, false, 'the stage waits while the expansion holds the volume');
  open();
  const result = await grown;
  assert.ok(Number(result.capacity_bytes) >= 160 * MiB);
  await staged;
  const stats = await node.NodeGetVolumeStats({ volume_id: id, volume_path: staging });
  assert.equal((stats.volume_condition as { abnormal: boolean }).abnormal, false);
  const total = (stats.usage as { total: string; unit: string }[]).find((u) => u.unit === 'BYTES')?.total;
  assert.ok(Number(total) > 100 * MiB, `the staged filesystem sees the grown volume (${total} bytes)`);
});
