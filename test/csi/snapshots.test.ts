// Snapshots and clones on the real plugin, its disks on an XFS with reflink in a loop file: a
// snapshot of a staged volume taken while a real NBD client keeps writing holds exactly the
// writes acknowledged before the call and none issued after it returned; a volume made from it
// has its own ids and that data; a clone of an unstaged volume and a bigger volume from a
// snapshot; snapshots survive a plugin restart and the deletion of their source; and a pool
// whose disks cannot clone says so (no snapshot capability, an error naming the disk). A copy
// whose freeze ran out before thaw is given up (ABORTED), and nothing of it is left. The snapshot
// of an llbitmap raid1 is crash-consistent (its members active, as a crash would leave them): a
// volume made from it resyncs the chunks its bitmap marks Dirty and its mirrors then agree. One
// without a bitmap is frozen clean instead (its copy would resync in full): no resync owed.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { NbdClientDevice } from '../../src/nbd/index.js';
import { createArray, readSuperblockFile, surveyArray } from '../../src/md/index.js';
import { DiskPool } from '../../src/csi/disk-pool.js';
import { CsiError } from '../../src/csi/errors.js';
import { newSnapshotId, SnapshotStore } from '../../src/csi/snapshot-store.js';
import { captureMembers, type VolumeFreezer } from '../../src/csi/volume-capture.js';
import { VolumeCatalog } from '../../src/csi/volume-catalog.js';
import { EngineError } from '../../src/engine/control/client.js';
import { readEngineEvents } from '../../src/engine/events.js';
import { blockCap, codeOf, readySnapshot as readySnapshotOf, startPlugin, type CreatedSnapshot, type Plugin } from './plugin-harness.js';
import { mountReflinkFs, type ReflinkFs } from '../support/reflink-fs.js';

const MiB = 1024 * 1024;
const BLOCK = 4096;
let disk: ReflinkFs;
let plugin: Plugin;

before(async () => {
  disk = await mountReflinkFs('snapshots');
  plugin = await startPlugin({ diskRoot: disk.dir });
});

after(async () => {
  await plugin?.close();
  await disk?.close();
});

const staging = (id: string): string => path.join(plugin.kubeletDir, `staging-${id}`);

async function createVolume(name: string, extra: object = {}): Promise<{ volume_id: string; capacity_bytes: number; content_source?: unknown }> {
  const r = await plugin.controller.CreateVolume({
    name, capacity_range: { required_bytes: 32 * MiB }, volume_capabilities: [blockCap()], parameters: { level: '1', members: '2' }, ...extra,
  });
  return r.volume as { volume_id: string; capacity_bytes: number };
}

async function stage(id: string): Promise<void> {
  await plugin.node.NodeStageVolume({ volume_id: id, staging_target_path: staging(id), volume_capability: blockCap() });
}

async function unstage(id: string): Promise<void> {
  await plugin.node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging(id) });
}

/** A second NBD client of the staged volume's engine, beside the attachment (the server takes many). */
function connect(id: string): Promise<NbdClientDevice> {
  return NbdClientDevice.connect({ uri: `nbd+unix:///${id}?socket=${path.join(plugin.runDir, id, 'engine.sock')}` });
}

/** Block i of the sequence area holds the number of the last write to it, repeated. */
function stamp(seq: number): Buffer {
  const b = Buffer.alloc(BLOCK);
  for (let o = 0; o < BLOCK; o += 4) b.writeUInt32LE(seq, o);
  return b;
}

function seqOf(b: Buffer): number {
  const v = b.readUInt32LE(0);
  for (let o = 0; o < BLOCK; o += 4) assert.equal(b.readUInt32LE(o), v, 'a block holds one write, never a torn mix');
  return v;
}

/**
 * A writer that stamps increasing numbers on `blocks` blocks in turn, one write in flight at a
 * time (so a crash-consistent copy holds exactly writes 1..n): `seq` is the last issued, `acked`
 * the last acknowledged, `stop()` ends it after its write in flight.
 */
function stampWriter(dev: { write(offset: number, data: Buffer, o: { fua: boolean }): Promise<unknown> }, blocks: number): {
  readonly seq: number; readonly acked: number; stop(): Promise<void>;
} {
  let seq = 0;
  let acked = 0;
  let running = true;
  const done = (async () => {
    while (running) {
      const s = ++seq;
      await dev.write((s % blocks) * BLOCK, stamp(s), { fua: true });
      acked = Math.max(acked, s);
    }
  })();
  return {
    get seq() { return seq; },
    get acked() { return acked; },
    stop: async () => {
      running = false;
      await done;
    },
  };
}

const readySnapshot = (name: string, sourceVolumeId: string): Promise<CreatedSnapshot> => readySnapshotOf(plugin.controller, sourceVolumeId, name);

test('ControllerGetCapabilities offers snapshots and clones on disks that reflink', async () => {
  const caps = (await plugin.controller.ControllerGetCapabilities({})) as { capabilities: { rpc: { type: string } }[] };
  const types = caps.capabilities.map((c) => c.rpc.type);
  for (const t of ['CREATE_DELETE_SNAPSHOT', 'LIST_SNAPSHOTS', 'CLONE_VOLUME']) assert.ok(types.includes(t), `${t} in ${types.join(', ')}`);
});

test('a snapshot of a staged volume under writes holds what was acknowledged before it, and a volume from it has that data and its own ids', async () => {
  const src = await createVolume('snap-src');
  await stage(src.volume_id);
  const dev = await connect(src.volume_id);
  const blocks = 64;
  // A fixed pattern first, then a writer that stamps increasing numbers on 64 blocks in turn.
  await dev.write(8 * MiB, Buffer.alloc(MiB, 0xab), { fua: true });
  const writer = stampWriter(dev, blocks);
  await new Promise((r) => setTimeout(r, 300));
  const ackedBefore = writer.acked;
  const snap = (await plugin.controller.CreateSnapshot({ source_volume_id: src.volume_id, name: 'snap-1' })).snapshot as {
    snapshot_id: string; source_volume_id: string; size_bytes: number; ready_to_use: boolean; creation_time: { seconds: number };
  };
  const issuedBy = writer.seq;
  await new Promise((r) => setTimeout(r, 300));
  await writer.stop();
  assert.ok(writer.seq > issuedBy + 5, `writes went on after the snapshot (${issuedBy} → ${writer.seq})`);
  assert.equal(snap.source_volume_id, src.volume_id);
  // A staged volume's snapshot is cut by its engine and copied in the background: not ready yet.
  assert.equal(snap.ready_to_use, false);
  assert.equal(Number(snap.size_bytes), Number(src.capacity_bytes));
  const log = await fs.readFile(plugin.logFile, 'utf8');
  assert.match(log, new RegExp(`snapshot ${snap.snapshot_id} of volume ${src.volume_id}: staged, cut with writes held \\d+ ms`));
  const ready = await readySnapshot('snap-1', src.volume_id);
  assert.equal(ready.snapshot_id, snap.snapshot_id, 'the same snapshot, ready');
  assert.deepEqual(ready.creation_time, snap.creation_time);
  const events = (await fs.readFile(path.join(plugin.runDir, src.volume_id, 'events.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { type: string; timedOut?: boolean; ok?: boolean });
  assert.deepEqual(events.filter((e) => ['frozen', 'thawed', 'cut', 'cut-copied'].includes(e.type)).map((e) => e.type), ['frozen', 'thawed', 'cut', 'cut-copied'], 'the engine reports the pause and the copy');
  assert.equal(events.find((e) => e.type === 'cut-copied')?.ok, true);
  assert.equal((events.find((e) => e.type === 'frozen') as { consistency?: string }).consistency, 'crash', 'an llbitmap raid1 is frozen without writing it clean');
  const snapDirs = plugin.disks.map((d) => path.join(d, 'llraid-snapshots', snap.snapshot_id));
  const snapMembers = (await Promise.all(snapDirs.map(async (d) => (await fs.readdir(d).catch(() => [] as string[])).filter((n) => n.endsWith('.img')).map((n) => path.join(d, n))))).flat();
  assert.equal(snapMembers.length, 2);
  const survey = surveyArray(await Promise.all(snapMembers.map(async (name) => ({ name, superblock: await readSuperblockFile(name) }))));
  assert.equal(survey?.resyncPending, true, 'the snapshot\'s members are active, as a crash would leave them');

  // The copy: a new volume from the snapshot, staged, read through its own engine.
  const copy = await createVolume('snap-copy', { volume_content_source: { snapshot: { snapshot_id: snap.snapshot_id } } });
  assert.notEqual(copy.volume_id, src.volume_id);
  assert.deepEqual((copy.content_source as { snapshot?: unknown }).snapshot, { snapshot_id: snap.snapshot_id });
  // CreateVolume ran the resync the crash-consistent copy owed: it is delivered clean, its
  // condition healthy before any stage.
  const copyFiles = (await Promise.all(plugin.disks.map(async (d) => (await fs.readdir(d)).filter((n) => n.includes(copy.volume_id) && n.endsWith('.img')).map((n) => path.join(d, n))))).flat();
  const copySurvey = surveyArray(await Promise.all(copyFiles.map(async (name) => ({ name, superblock: await readSuperblockFile(name) }))));
  assert.equal(copySurvey?.resyncPending, false, 'the copy is a cleanly stopped array');
  await stage(copy.volume_id);
  const cdev = await connect(copy.volume_id);
  const stamps: number[] = [];
  for (let i = 0; i < blocks; i++) stamps.push(seqOf(await cdev.read(i * BLOCK, BLOCK)));
  const newest = Math.max(...stamps);
  assert.ok(newest >= ackedBefore, `the snapshot holds write ${ackedBefore}, acknowledged before the call (newest ${newest})`);
  assert.ok(newest <= issuedBy, `the snapshot holds no write issued after the call returned (newest ${newest}, last issued before ${issuedBy})`);
  // One write in flight at a time, so the copy holds exactly writes 1..newest: block i the last
  // of them that went to it (a prefix, as a crash at that instant would leave).
  for (let i = 0; i < blocks; i++) {
    const last = newest - (((newest - i) % blocks) + blocks) % blocks;
    assert.equal(stamps[i], last > 0 ? last : 0, `block ${i}`);
  }
  assert.ok((await cdev.read(8 * MiB, MiB)).equals(Buffer.alloc(MiB, 0xab)), 'the pattern written before is in the copy');
  // The source went on: its blocks hold later writes than the copy's.
  let srcNewest = 0;
  for (let i = 0; i < blocks; i++) srcNewest = Math.max(srcNewest, seqOf(await dev.read(i * BLOCK, BLOCK)));
  assert.equal(srcNewest, writer.seq);
  // Its engine owed no resync: the copy's mirrors already agree (checked on the files below).
  const copyEvents = path.join(plugin.runDir, copy.volume_id, 'events.jsonl');
  assert.deepEqual((await readEngineEvents(copyEvents)).filter((e) => e.type === 'sync-ended'), [], 'no sync ran at the copy\'s stage');
  await cdev.close();
  await dev.close();
  await unstage(copy.volume_id);
  await unstage(src.volume_id);
  const copyMembers = (await Promise.all(plugin.disks.map(async (d) => (await fs.readdir(d)).filter((n) => n.includes(copy.volume_id) && n.endsWith('.img')).map((n) => path.join(d, n))))).flat();
  assert.equal(copyMembers.length, 2);
  const at = Number((await readSuperblockFile(copyMembers[0]!)).dataOffset) * 512;
  const [ma, mb] = await Promise.all(copyMembers.map((m) => fs.readFile(m)));
  assert.ok(ma!.subarray(at, at + 16 * MiB).equals(mb!.subarray(at, at + 16 * MiB)), 'the mirrors of the copy agree');

  // Its own md identity: set uuid = its id, fresh device uuids, none shared with the source.
  const files = async (id: string) => (await Promise.all(plugin.disks.map(async (d) => (await fs.readdir(d)).filter((n) => n.includes(id) && n.endsWith('.img')).map((n) => path.join(d, n))))).flat();
  const srcSbs = await Promise.all((await files(src.volume_id)).map(readSuperblockFile));
  const copySbs = await Promise.all((await files(copy.volume_id)).map(readSuperblockFile));
  assert.equal(copySbs.length, 2);
  for (const sb of copySbs) {
    assert.equal(sb.setUuid.toString('hex'), copy.volume_id);
    assert.ok(sb.setName.endsWith(':snap-copy'), sb.setName);
    for (const s of srcSbs) assert.ok(!sb.deviceUuid.equals(s.deviceUuid), 'device uuids are new');
  }

  // Listing, a plugin restart, the source deleted: the snapshot stays, and a second copy works.
  const listed = (await plugin.controller.ListSnapshots({ source_volume_id: src.volume_id })).entries as { snapshot: { snapshot_id: string } }[];
  assert.deepEqual(listed.map((e) => e.snapshot.snapshot_id), [snap.snapshot_id]);
  const leftovers = [
    path.join(plugin.disks[0]!, `llraid-${'c'.repeat(32)}-0.img.part`),
    path.join(plugin.disks[1]!, 'llraid-snapshots', `${src.volume_id}-${'d'.repeat(16)}.part`),
  ];
  await fs.writeFile(leftovers[0]!, 'half a copy');
  await fs.mkdir(leftovers[1]!);
  await plugin.kill();
  await plugin.start();
  for (const l of leftovers) await assert.rejects(fs.stat(l), 'what a crash left half-made is removed at start');
  await plugin.controller.DeleteVolume({ volume_id: src.volume_id });
  const again = (await plugin.controller.ListSnapshots({ snapshot_id: snap.snapshot_id })).entries as { snapshot: { snapshot_id: string; source_volume_id: string } }[];
  assert.equal(again.length, 1);
  assert.equal(again[0]!.snapshot.source_volume_id, src.volume_id);
  const copy2 = await createVolume('snap-copy-2', { volume_content_source: { snapshot: { snapshot_id: snap.snapshot_id } }, capacity_range: { required_bytes: 48 * MiB } });
  assert.ok(Number(copy2.capacity_bytes) >= 48 * MiB, `a bigger volume from the snapshot: ${copy2.capacity_bytes} bytes`);
  await stage(copy2.volume_id);
  const c2 = await connect(copy2.volume_id);
  assert.ok((await c2.read(8 * MiB, MiB)).equals(Buffer.alloc(MiB, 0xab)));
  assert.equal(Math.max(...(await Promise.all(Array.from({ length: blocks }, async (_, i) => seqOf(await c2.read(i * BLOCK, BLOCK)))))), newest);
  await c2.close();
  await unstage(copy2.volume_id);

  await plugin.controller.DeleteSnapshot({ snapshot_id: snap.snapshot_id });
  await plugin.controller.DeleteSnapshot({ snapshot_id: snap.snapshot_id });
  assert.equal(((await plugin.controller.ListSnapshots({})).entries as unknown[]).length, 0);
  for (const id of [copy.volume_id, copy2.volume_id]) await plugin.controller.DeleteVolume({ volume_id: id });
});

test('a staged raid1 without a bitmap is frozen clean: its snapshot owes no resync and holds what was acknowledged before it', async () => {
  const src = await createVolume('snap-nobitmap', { parameters: { level: '1', members: '2', bitmap: 'none' } });
  await stage(src.volume_id);
  const dev = await connect(src.volume_id);
  const blocks = 32;
  const writer = stampWriter(dev, blocks);
  await new Promise((r) => setTimeout(r, 200));
  const ackedBefore = writer.acked;
  const snap = (await plugin.controller.CreateSnapshot({ source_volume_id: src.volume_id, name: 'snap-nobitmap-1' })).snapshot as { snapshot_id: string };
  const issuedBy = writer.seq;
  await writer.stop();
  await readySnapshot('snap-nobitmap-1', src.volume_id);
  const events = (await fs.readFile(path.join(plugin.runDir, src.volume_id, 'events.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { type: string; consistency?: string });
  assert.equal(events.find((e) => e.type === 'frozen')?.consistency, 'clean', 'without a bitmap the copy is made clean (else it would resync in full)');
  const snapMembers = (await Promise.all(plugin.disks.map(async (d) => {
    const dir = path.join(d, 'llraid-snapshots', snap.snapshot_id);
    return (await fs.readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.img')).map((n) => path.join(dir, n));
  }))).flat();
  const survey = surveyArray(await Promise.all(snapMembers.map(async (name) => ({ name, superblock: await readSuperblockFile(name) }))));
  assert.equal(survey?.resyncPending, false, 'the snapshot is a cleanly stopped array');
  const copy = await createVolume('snap-nobitmap-copy', { parameters: { level: '1', members: '2', bitmap: 'none' }, volume_content_source: { snapshot: { snapshot_id: snap.snapshot_id } } });
  await stage(copy.volume_id);
  const cdev = await connect(copy.volume_id);
  const stamps: number[] = [];
  for (let i = 0; i < blocks; i++) stamps.push(seqOf(await cdev.read(i * BLOCK, BLOCK)));
  const newest = Math.max(...stamps);
  assert.ok(newest >= ackedBefore && newest <= issuedBy, `the copy's newest write ${newest} lies between ${ackedBefore} and ${issuedBy}`);
  for (let i = 0; i < blocks; i++) {
    const last = newest - (((newest - i) % blocks) + blocks) % blocks;
    assert.equal(stamps[i], last > 0 ? last : 0, `block ${i}`);
  }
  await cdev.close();
  await dev.close();
  await unstage(copy.volume_id);
  await unstage(src.volume_id);
  await plugin.controller.DeleteSnapshot({ snapshot_id: snap.snapshot_id });
  for (const id of [copy.volume_id, src.volume_id]) await plugin.controller.DeleteVolume({ volume_id: id });
});

test('clones of a staged and an unstaged volume, and the errors csi-sanity expects', async () => {
  const src = await createVolume('clone-src');
  await stage(src.volume_id);
  const dev = await connect(src.volume_id);
  await dev.write(0, Buffer.alloc(MiB, 0x5a), { fua: true });
  // A clone of the staged volume (frozen for the copy), then the source changes: the clone keeps 0x5a.
  const live = await createVolume('clone-live', { volume_content_source: { volume: { volume_id: src.volume_id } } });
  await dev.write(0, Buffer.alloc(MiB, 0x77), { fua: true });
  await dev.close();
  await unstage(src.volume_id);
  await stage(live.volume_id);
  const l = await connect(live.volume_id);
  assert.ok((await l.read(0, MiB)).equals(Buffer.alloc(MiB, 0x5a)), 'the clone of the staged volume holds the data of its instant');
  await l.close();
  await unstage(live.volume_id);
  await plugin.controller.DeleteVolume({ volume_id: live.volume_id });
  const clone = await createVolume('clone-1', { volume_content_source: { volume: { volume_id: src.volume_id } } });
  await stage(clone.volume_id);
  const c = await connect(clone.volume_id);
  assert.ok((await c.read(0, MiB)).equals(Buffer.alloc(MiB, 0x77)), 'the clone of the unstaged volume holds its last data');
  await c.close();
  await unstage(clone.volume_id);

  const NOT_FOUND = 5;
  const ALREADY_EXISTS = 6;
  const INVALID_ARGUMENT = 3;
  assert.equal(await codeOf(createVolume('from-nothing', { volume_content_source: { snapshot: { snapshot_id: `${'0'.repeat(32)}-${'0'.repeat(16)}` } } })), NOT_FOUND);
  assert.equal(await codeOf(createVolume('from-no-volume', { volume_content_source: { volume: { volume_id: '1'.repeat(32) } } })), NOT_FOUND);
  assert.equal(await codeOf(plugin.controller.CreateSnapshot({ source_volume_id: src.volume_id, name: '' })), INVALID_ARGUMENT);
  assert.equal(await codeOf(plugin.controller.CreateSnapshot({ source_volume_id: '', name: 'x' })), INVALID_ARGUMENT);
  assert.equal(await codeOf(plugin.controller.CreateSnapshot({ source_volume_id: '2'.repeat(32), name: 'x' })), NOT_FOUND);
  const s1 = await plugin.controller.CreateSnapshot({ source_volume_id: src.volume_id, name: 'same' });
  assert.deepEqual(await plugin.controller.CreateSnapshot({ source_volume_id: src.volume_id, name: 'same' }), s1, 'idempotent by name');
  assert.equal(await codeOf(plugin.controller.CreateSnapshot({ source_volume_id: clone.volume_id, name: 'same' })), ALREADY_EXISTS);
  assert.equal(await codeOf(plugin.controller.DeleteSnapshot({ snapshot_id: '' })), INVALID_ARGUMENT);
  await plugin.controller.DeleteSnapshot({ snapshot_id: 'not-an-id' });
  await plugin.controller.DeleteSnapshot({ snapshot_id: (s1.snapshot as { snapshot_id: string }).snapshot_id });
  for (const id of [src.volume_id, clone.volume_id]) await plugin.controller.DeleteVolume({ volume_id: id });
});

test('a snapshot being copied is no source yet; one whose copy was lost is dropped by a list and made again by CreateSnapshot', async () => {
  const src = await createVolume('snap-lost');
  await stage(src.volume_id);
  const pool = new DiskPool(plugin.disks);
  const volume = (await new VolumeCatalog(pool).get(src.volume_id))!;
  const store = new SnapshotStore(pool);
  // What a plugin that crashed right after recording a cut (or whose engine restarted) leaves.
  const lost = async (name: string): Promise<string> => {
    const id = newSnapshotId(volume.id, 'test-node');
    await store.prepareInPlace({
      version: 1, id, name, sourceVolumeId: volume.id, createdAt: { seconds: 1, nanos: 0 }, sizeBytes: volume.capacity,
      level: volume.level, raidDisks: volume.raidDisks, chunkSize: volume.chunkSize, bitmap: volume.bitmap, fsType: volume.fsType,
      memberSize: volume.memberSize, disks: volume.members.map((m) => path.dirname(m.path)), pauseMs: 0, copying: true,
    });
    return id;
  };
  const a = await lost('lost-a');
  const UNAVAILABLE = 14;
  assert.equal(await codeOf(createVolume('from-lost', { volume_content_source: { snapshot: { snapshot_id: a } } })), UNAVAILABLE, 'not ready: the CO waits');
  assert.deepEqual((await plugin.controller.ListSnapshots({ snapshot_id: a })).entries, [], 'its engine has no such cut: the list drops it');
  assert.equal(await store.get(a), undefined);
  const b = await lost('lost-b');
  const again = (await plugin.controller.CreateSnapshot({ source_volume_id: src.volume_id, name: 'lost-b' })).snapshot as { snapshot_id: string };
  assert.notEqual(again.snapshot_id, b, 'made again, as a new snapshot');
  assert.equal(await store.get(b), undefined, 'the lost one is gone');
  // The CO asks ListSnapshots whether it became ready: the list moves it on.
  let listed: { snapshot: { snapshot_id: string; ready_to_use: boolean } }[] = [];
  for (let i = 0; i < 200 && !listed[0]?.snapshot.ready_to_use; i++) {
    listed = (await plugin.controller.ListSnapshots({ snapshot_id: again.snapshot_id })).entries as typeof listed;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.deepEqual(listed.map((e) => [e.snapshot.snapshot_id, e.snapshot.ready_to_use]), [[again.snapshot_id, true]]);
  await unstage(src.volume_id);
  await plugin.controller.DeleteSnapshot({ snapshot_id: again.snapshot_id });
  await plugin.controller.DeleteVolume({ volume_id: src.volume_id });
});

test('a staged copy whose freeze timed out before thaw is ABORTED and leaves nothing', async () => {
  const root = await fs.mkdtemp(path.join(disk.dir, 'abort-'));
  const disks = [0, 1].map((i) => path.join(root, `d${i}`));
  for (const d of disks) await fs.mkdir(d);
  const pool = new DiskPool(disks);
  const members = disks.map((d, slot) => pool.memberPath(d, 'a'.repeat(32), slot));
  for (const m of members) await pool.allocate(m, 8 * MiB);
  await (await createArray({ name: 'ext4:abort', level: 1, members, uuid: Buffer.from('a'.repeat(32), 'hex'), bitmap: 'llbitmap', autoSync: false })).stop();
  const volume = (await new VolumeCatalog(pool).get('a'.repeat(32)))!;
  const store = new SnapshotStore(pool);
  const calls: string[] = [];
  const freezer: VolumeFreezer = {
    freeze: async () => { calls.push('freeze'); return { drainMs: 1 }; },
    thaw: async () => { calls.push('thaw'); throw new EngineError('ETIMEDOUT', 'the freeze ended after its 10 ms timeout before thaw'); },
  };
  const record = {
    version: 1 as const, id: newSnapshotId(volume.id, 'test-node'), name: 'abort', sourceVolumeId: volume.id, createdAt: { seconds: 0, nanos: 0 },
    sizeBytes: volume.capacity, level: volume.level, raidDisks: 2, chunkSize: 0, bitmap: volume.bitmap, fsType: volume.fsType,
    memberSize: volume.memberSize, disks, pauseMs: 0,
  };
  await assert.rejects(
    store.create(record, (dsts) => captureMembers(volume, dsts, true, freezer, { timeoutMs: 10 }), async () => ({})),
    (e: unknown) => e instanceof CsiError && e.code === 'ABORTED' && /writes were held longer than the 10 ms/.test(e.message),
  );
  assert.deepEqual(calls, ['freeze', 'thaw']);
  assert.equal((await store.scan()).size, 0);
  for (const d of disks) assert.deepEqual((await fs.readdir(path.join(d, 'llraid-snapshots')).catch(() => [])), [], 'no snapshot directory is left');
  await fs.rm(root, { recursive: true, force: true });
});

test('disks that cannot clone: no snapshot capability, and CreateSnapshot names the disk', async () => {
  const plain = await startPlugin();
  try {
    const caps = (await plain.controller.ControllerGetCapabilities({})) as { capabilities: { rpc: { type: string } }[] };
    assert.ok(!caps.capabilities.some((c) => c.rpc.type === 'CREATE_DELETE_SNAPSHOT'));
    const vol = (await plain.controller.CreateVolume({
      name: 'plain', capacity_range: { required_bytes: 16 * MiB }, volume_capabilities: [blockCap()], parameters: { level: '1', members: '2' },
    })).volume as { volume_id: string };
    const canReflink = await import('../../src/csi/reflink.js').then((m) => m.canClone(plain.disks[0]!));
    assert.equal(canReflink, false, `${plain.disks[0]} must be a filesystem without reflink for this test`);
    await assert.rejects(
      plain.controller.CreateSnapshot({ source_volume_id: vol.volume_id, name: 'plain-snap' }),
      (e: { code?: number; details?: string }) => e.code === 9 && /disk .*: its filesystem cannot clone files \(reflink/.test(e.details ?? ''),
    );
    assert.equal(((await plain.controller.ListSnapshots({})).entries as unknown[]).length, 0, 'nothing half-made is left');
  } finally {
    await plain.close();
  }
});
