// Member files whose superblocks do not read, on the real plugin: the volume they belong to (by
// their names) is UNAVAILABLE with each file and why, never "does not exist"; the pool's other
// volumes are listed as before; a volume with one readable member still reads (degraded); and
// DeleteVolume removes every file of the volume, the unreadable ones too; the status feed keeps
// such a volume's last status rather than reporting it deleted. The catalog reads a
// superblock that does not decode a second time before it gives up on it (one rewritten in place
// while it was read is then found).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { promises as fs } from 'node:fs';
import { DiskPool } from '../../src/csi/disk-pool.js';
import { MdError, readSuperblockFile, type Superblock } from '../../src/md/index.js';
import { StatusFeed } from '../../src/csi/status-feed.js';
import { VolumeCatalog } from '../../src/csi/volume-catalog.js';
import type { NodeReporting, VolumeStatus } from '../../src/k8s/index.js';
import { blockCap, startPlugin, type Plugin } from './plugin-harness.js';

const MiB = 1024 * 1024;
/** md v1.2: the superblock's 4 KiB block starts 4 KiB into the member. */
const SUPERBLOCK = { offset: 4096, bytes: 4096 };
let plugin: Plugin;

before(async () => {
  plugin = await startPlugin();
});

after(async () => {
  await plugin?.close();
});

async function create(name: string): Promise<{ id: string; members: string[] }> {
  const r = await plugin.controller.CreateVolume({
    name, capacity_range: { required_bytes: 16 * MiB }, volume_capabilities: [blockCap()], parameters: { level: '1', members: '2' },
  });
  const id = (r.volume as { volume_id: string }).volume_id;
  const members = (await Promise.all(plugin.disks.map(async (d) => (await fs.readdir(d)).filter((n) => n.startsWith(`llraid-${id}-`) && n.endsWith('.img')).map((n) => `${d}/${n}`)))).flat();
  assert.equal(members.length, 2, `two member files of ${id}`);
  return { id, members };
}

/** Overwrites the superblock block of `file` with `with` (zeroes by default); returns what it held. */
async function clobber(file: string, withBytes: Uint8Array = Buffer.alloc(SUPERBLOCK.bytes)): Promise<Buffer> {
  const h = await fs.open(file, 'r+');
  try {
    const was = Buffer.alloc(SUPERBLOCK.bytes);
    await h.read(was, 0, was.length, SUPERBLOCK.offset);
    await h.write(withBytes, 0, withBytes.length, SUPERBLOCK.offset);
    return was;
  } finally {
    await h.close();
  }
}

async function failure(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code: number; details: string };
  }
  assert.fail('expected the call to fail, it succeeded');
}

test('a volume none of whose members reads is UNAVAILABLE with each file and why; the others are listed; DeleteVolume removes its files', async () => {
  const good = await create('good');
  const bad = await create('bad');
  for (const m of bad.members) await clobber(m);

  const get = await failure(plugin.controller.ControllerGetVolume({ volume_id: bad.id }));
  assert.equal(get.code, status.UNAVAILABLE, `expected UNAVAILABLE, got ${status[get.code]}: ${get.details}`);
  for (const m of bad.members) assert.ok(get.details.includes(m), `the message names ${m}: ${get.details}`);
  assert.match(get.details, /do not read as md members/);
  const stage = await failure(plugin.node.NodeStageVolume({ volume_id: bad.id, staging_target_path: `${plugin.kubeletDir}/staging-bad`, volume_capability: blockCap() }));
  assert.equal(stage.code, status.UNAVAILABLE, `NodeStageVolume: expected UNAVAILABLE, got ${status[stage.code]}: ${stage.details}`);

  const listed = ((await plugin.controller.ListVolumes({})).entries as { volume: { volume_id: string } }[]).map((e) => e.volume.volume_id);
  assert.ok(listed.includes(good.id), 'the readable volume is listed');
  assert.ok(!listed.includes(bad.id), 'the unreadable one is not');
  await plugin.controller.ControllerGetVolume({ volume_id: good.id });

  await plugin.controller.DeleteVolume({ volume_id: bad.id });
  for (const m of bad.members) await assert.rejects(fs.stat(m), { code: 'ENOENT' }, `${m} removed`);
  assert.equal((await failure(plugin.controller.ControllerGetVolume({ volume_id: bad.id }))).code, status.NOT_FOUND);
  for (const m of good.members) await fs.stat(m);
});

test('a volume with one readable member reads (degraded), and DeleteVolume removes the unreadable member too', async () => {
  const v = await create('half');
  await clobber(v.members[1]!);
  const got = await plugin.controller.ControllerGetVolume({ volume_id: v.id });
  assert.equal((got.volume as { volume_id: string }).volume_id, v.id);
  await plugin.controller.DeleteVolume({ volume_id: v.id });
  for (const m of v.members) await assert.rejects(fs.stat(m), { code: 'ENOENT' }, `${m} removed`);
});

test('the status feed keeps the last status of a volume whose files stopped reading (its RaidVolume is not removed) and logs each file once', async () => {
  const v = await create('feed');
  const pool = new DiskPool(plugin.disks);
  const updated: string[] = [];
  const removed: string[] = [];
  const logged: string[] = [];
  const reporting = { update: (s: VolumeStatus) => updated.push(s.name), remove: (id: string) => removed.push(id), setPool: () => {} } as unknown as NodeReporting;
  const feed = new StatusFeed({
    nodeId: 'test-node', catalog: new VolumeCatalog(pool), pool, reporting, log: (m) => logged.push(m),
    runtime: () => Promise.resolve({ staged: false, engineRunning: false, attached: false }),
  });
  try {
    await feed.poke();
    assert.ok(updated.includes(v.id), 'reported while it reads');
    const saved = await Promise.all(v.members.map((m) => clobber(m)));
    await feed.poke();
    await feed.poke();
    assert.deepEqual(removed, [], 'not removed from the cluster');
    for (const m of v.members) assert.equal(logged.filter((l) => l.includes(m)).length, 1, `${m} logged once: ${logged.join(' | ')}`);
    for (const [i, m] of v.members.entries()) await clobber(m, saved[i]);
    updated.length = 0;
    await feed.poke();
    assert.ok(updated.includes(v.id), 'reported again once it reads');
  } finally {
    await feed.close();
  }
});

test('the catalog reads a superblock that did not decode once more before it gives up on it', async () => {
  const v = await create('torn');
  // A read that fails the first time for each file with what decodeSuperblock throws on a torn
  // block, then reads the file: as a superblock rewritten in place while it was read.
  const failed = new Set<string>();
  const tornOnce = async (file: string): Promise<Superblock> => {
    if (!failed.has(file)) {
      failed.add(file);
      throw new MdError('EBADMETA', `member ${file}: superblock checksum mismatch`);
    }
    return readSuperblockFile(file);
  };
  const found = await new VolumeCatalog(new DiskPool(plugin.disks), tornOnce).get(v.id);
  assert.equal(found?.id, v.id);
  assert.equal(found?.members.length, 2);
  for (const m of v.members) assert.ok(failed.has(m), `${m} was read twice`);

  // A file that fails every time is reported, with the reason of its last read.
  const always = async (file: string): Promise<Superblock> => {
    throw new MdError('EBADMETA', `member ${file}: bad magic`);
  };
  const { volumes, unreadable } = await new VolumeCatalog(new DiskPool(plugin.disks), always).survey();
  assert.equal(volumes.size, 0);
  assert.ok(unreadable.some((u) => u.path === v.members[0] && u.volumeId === v.id && /bad magic/.test(u.reason)));
});
