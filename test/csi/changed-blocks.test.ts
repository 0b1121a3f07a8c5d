// Changed-block tracking through the real plugin, as a backup tool uses it: a raid5 volume staged
// and written through NBD, snapshotted, 1% of it rewritten, snapshotted again. The plugin's
// SnapshotMetadata service (over its CSI socket) lists the allocated ranges of the first snapshot
// and the delta to the second; a full backup made from the first list and patched with the second
// restores the second snapshot's bytes exactly (sha256), having read little more than what changed.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { credentials, makeGenericClientConstructor, type Client, type ClientReadableStream } from '@grpc/grpc-js';
import { NbdClientDevice } from '../../src/nbd/index.js';
import { serviceDefinition } from '../../src/csi/proto.js';
import { pattern } from '../md/array-fixtures.js';
import { blockCap, readySnapshot, startPlugin, type Plugin } from './plugin-harness.js';
import { mountReflinkFs, type ReflinkFs } from '../support/reflink-fs.js';

const MiB = 1024 * 1024;
const BLOCK = 4096;
const SIZE = 64 * MiB;
let disk: ReflinkFs;
let plugin: Plugin;

before(async () => {
  disk = await mountReflinkFs('changed-blocks');
  plugin = await startPlugin({ diskRoot: disk.dir });
});

after(async () => {
  await plugin?.close();
  await disk?.close();
});

const staging = (id: string): string => path.join(plugin.kubeletDir, `staging-${id}`);
type Range = { byte_offset: number; size_bytes: number };

/** A server-streaming call of the plugin's SnapshotMetadata service: every range of every page. */
function ranges(method: 'GetMetadataAllocated' | 'GetMetadataDelta', request: object): Promise<Range[]> {
  const def = serviceDefinition('SnapshotMetadata');
  const Ctor = makeGenericClientConstructor(def, 'SnapshotMetadata');
  const client = new Ctor(`unix://${plugin.socket}`, credentials.createInsecure()) as Client & Record<string, (r: object) => ClientReadableStream<unknown>>;
  return new Promise<Range[]>((resolve, reject) => {
    const out: Range[] = [];
    const call = client[method]!.call(client, request);
    call.on('data', (p: { block_metadata: Range[] }) => out.push(...p.block_metadata.map((b) => ({ byte_offset: Number(b.byte_offset), size_bytes: Number(b.size_bytes) }))));
    call.on('error', reject);
    call.on('end', () => resolve(out));
  }).finally(() => client.close());
}

async function withVolume<T>(id: string, fn: (dev: NbdClientDevice) => Promise<T>): Promise<T> {
  await plugin.node.NodeStageVolume({ volume_id: id, staging_target_path: staging(id), volume_capability: blockCap() });
  const dev = await NbdClientDevice.connect({ uri: `nbd+unix:///${id}?socket=${path.join(plugin.runDir, id, 'engine.sock')}` });
  try {
    return await fn(dev);
  } finally {
    await dev.close();
    await plugin.node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging(id) });
  }
}

async function snapshot(source: string, name: string): Promise<string> {
  return (await readySnapshot(plugin.controller, source, name)).snapshot_id;
}

async function volumeFrom(snapshotId: string, name: string): Promise<string> {
  const r = await plugin.controller.CreateVolume({
    name, capacity_range: { required_bytes: SIZE }, volume_capabilities: [blockCap()], parameters: { level: '5', members: '3' },
    volume_content_source: { snapshot: { snapshot_id: snapshotId } },
  });
  return (r.volume as { volume_id: string }).volume_id;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const total = (rs: readonly Range[]): number => rs.reduce((n, r) => n + r.size_bytes, 0);

test('an incremental backup from the allocated ranges and the delta restores the later snapshot exactly', { timeout: 300_000 }, async () => {
  const caps = (await plugin.identity.GetPluginCapabilities({})) as { capabilities: { service?: { type: string } }[] };
  assert.ok(caps.capabilities.some((c) => c.service?.type === 'SNAPSHOT_METADATA_SERVICE'), 'the plugin offers changed-block tracking');
  const created = await plugin.controller.CreateVolume({ name: 'cbt-src', capacity_range: { required_bytes: SIZE }, volume_capabilities: [blockCap()], parameters: { level: '5', members: '3' } });
  const src = (created.volume as { volume_id: string }).volume_id;
  // 8 MiB in 64 runs of 128 KiB spread over the volume, then 1% rewritten in 4 KiB blocks.
  let rewritten = 0;
  const [first, second] = await withVolume(src, async (dev) => {
    for (let i = 0; i < 64; i++) await dev.write(i * (SIZE / 64), pattern(i + 1, 128 * 1024));
    const a = await snapshot(src, 'cbt-1');
    const blocks = new Set<number>();
    for (let i = 0; blocks.size < SIZE / BLOCK / 100; i++) blocks.add((i * 7919 + 13) % (SIZE / BLOCK));
    for (const b of blocks) await dev.write(b * BLOCK, pattern(100_000 + b, BLOCK));
    rewritten = blocks.size * BLOCK;
    return [a, await snapshot(src, 'cbt-2')];
  });

  const allocated = await ranges('GetMetadataAllocated', { snapshot_id: first, starting_offset: 0, max_results: 16 });
  const delta = await ranges('GetMetadataDelta', { base_snapshot_id: first, target_snapshot_id: second, starting_offset: 0, max_results: 16 });
  // A full backup of the first snapshot: only its allocated ranges are read.
  const backup = Buffer.alloc(SIZE);
  await withVolume(await volumeFrom(first, 'cbt-restore-1'), async (dev) => {
    for (const r of allocated) (await dev.read(r.byte_offset, r.size_bytes)).copy(backup, r.byte_offset);
  });
  // The incremental: the delta's ranges read from the second and laid over the backup.
  const expected = await withVolume(await volumeFrom(second, 'cbt-restore-2'), async (dev) => {
    for (const r of delta) (await dev.read(r.byte_offset, r.size_bytes)).copy(backup, r.byte_offset);
    return dev.read(0, SIZE);
  });
  assert.equal(sha(backup), sha(expected), 'the patched backup is the second snapshot, byte for byte');
  assert.ok(total(allocated) >= 8 * MiB && total(allocated) <= 8 * MiB * 1.1, `allocated ${total(allocated)} bytes for 8 MiB written`);
  assert.ok(total(delta) >= rewritten && total(delta) <= rewritten * 1.1, `delta ${total(delta)} bytes for ${rewritten} rewritten`);
  process.stdout.write(`changed-block tracking: allocated ${total(allocated)} B in ${allocated.length} ranges for 8 MiB written; delta ${total(delta)} B in ${delta.length} ranges for ${rewritten} B rewritten\n`);
});
