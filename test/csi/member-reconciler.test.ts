// The member reconciler of each node plugin, with a fake store and real files: it allocates this
// node's member files of a replicated volume (thick, marked), removes them and then its finalizer
// when the RaidVolume is deleted (not while an engine here serves it), and removes orphans only
// when marked and old enough; node-local members are never touched.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, existsSync, statSync, writeFileSync, utimesSync } from 'node:fs';
import path from 'node:path';
import { DiskPool } from '../../src/csi/disk-pool.js';
import { MemberReconciler } from '../../src/csi/member-reconciler.js';
import { markPath, readMark } from '../../src/csi/replica-marker.js';
import { ReplicatedIndex } from '../../src/csi/replicated-index.js';
import { VolumeLocks } from '../../src/csi/volume-locks.js';
import type { NewReplicatedVolume } from '../../src/k8s/replication.js';
import { FakeReplicationStore } from '../support/fake-replication.js';
import { tempDir } from '../support/temp-dir.js';

const MiB = 1024 * 1024;

function newVolume(id: string, over: Partial<NewReplicatedVolume> = {}): NewReplicatedVolume {
  return {
    id, creator: 'a', level: 10, members: 4, chunkSize: 65536, replicas: 2, disklessAttach: false, memberBytes: 4 * MiB, fsType: 'ext4', setName: 'ext4:pvc',
    placement: [0, 1, 2, 3].map((slot) => ({ slot, node: slot % 2 === 0 ? 'a' : 'b', disk: slot === 0 ? 'disk1' : 'disk-x', file: `llraid-${id}-${slot}.img` })),
    ...over,
  };
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function setup(t: { after(fn: () => void): void }, node: string, served = new Set<string>()) {
  const dir = tempDir(t, 'reconcile');
  const disks = [0, 1].map((i) => path.join(dir, `disk${i}`));
  for (const d of disks) mkdirSync(d);
  const pool = new DiskPool(disks);
  const store = new FakeReplicationStore();
  const index = new ReplicatedIndex(store, node);
  const logs: string[] = [];
  const reconciler = new MemberReconciler({
    node, pool, store, index, locks: new VolumeLocks(), isServed: async (id) => served.has(id), orphanAgeMs: 60_000, orphanDelayMs: 0, log: (m) => logs.push(m),
  });
  t.after(async () => {
    await reconciler.close();
    index.close();
  });
  return { disks, pool, store, index, reconciler, logs, served };
}

test('allocates this node\'s members thick and marked (the disk a placement names, else distinct disks), then removes them and its finalizer on delete', async (t) => {
  const { disks, store, reconciler, served } = setup(t, 'a');
  reconciler.start();
  const id = '11'.repeat(16);
  await store.create(newVolume(id));
  const files = [path.join(disks[1]!, `llraid-${id}-0.img`), path.join(disks[0]!, `llraid-${id}-2.img`)];
  await until('both members of node a', () => files.every((f) => existsSync(f)));
  for (const f of files) {
    const st = statSync(f);
    assert.equal(st.size, 4 * MiB);
    assert.ok(st.blocks * 512 >= 4 * MiB, 'thick: every block reserved');
  }
  assert.deepEqual(await readMark(files[0]!).then((m) => m && { volume: m.volume, slot: m.slot }), { volume: id, slot: 0 });
  assert.ok(!existsSync(path.join(disks[0]!, `llraid-${id}-1.img`)) && !existsSync(path.join(disks[1]!, `llraid-${id}-1.img`)), 'slot 1 is node b\'s');

  served.add(id);
  await store.delete(id);
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(files.every((f) => existsSync(f)), 'never removed while an engine here serves the volume');
  assert.deepEqual(store.peek(id)!.finalizers, ['llraid.io/member-a', 'llraid.io/member-b']);
  served.delete(id);
  store.touch(id); // the next change of the object: the reconciler looks again
  await until('the finalizer of node a to go', () => !store.peek(id)!.finalizers.includes('llraid.io/member-a'));
  assert.ok(files.every((f) => !existsSync(f) && !existsSync(markPath(f))));
  assert.deepEqual(store.peek(id)!.finalizers, ['llraid.io/member-b']);
});

test('a node that was down at delete time removes its files when it starts; other nodes\' volumes and node-local members stay', async (t) => {
  const { disks, store, reconciler } = setup(t, 'b');
  const id = '22'.repeat(16);
  await store.create(newVolume(id));
  const other = '33'.repeat(16);
  await store.create(newVolume(other, { placement: [{ slot: 0, node: 'a', disk: 'disk0', file: `llraid-${other}-0.img` }, { slot: 1, node: 'c', disk: 'disk0', file: `llraid-${other}-1.img` }], members: 2, level: 1 }));
  const mine = [1, 3].map((slot) => path.join(disks[slot === 1 ? 0 : 1]!, `llraid-${id}-${slot}.img`));
  for (const f of mine) writeFileSync(f, 'x');
  const local = path.join(disks[0]!, `llraid-${'44'.repeat(16)}-0.img`);
  writeFileSync(local, 'node-local');
  await store.delete(id);
  reconciler.start();
  await until('node b\'s finalizer to go', () => store.peek(id)!.finalizers.length === 1);
  assert.ok(mine.every((f) => !existsSync(f)));
  assert.deepEqual(store.peek(id)!.finalizers, ['llraid.io/member-a']);
  assert.ok(existsSync(local));
  assert.ok(!existsSync(path.join(disks[0]!, `llraid-${other}-1.img`)) && !existsSync(path.join(disks[1]!, `llraid-${other}-1.img`)), 'nothing allocated for a volume with no member here');
});

test('orphans: only marked files of volumes with no RaidVolume, only once old enough', async (t) => {
  const { disks, reconciler, store } = setup(t, 'a');
  const old = path.join(disks[0]!, `llraid-${'55'.repeat(16)}-0.img`);
  const young = path.join(disks[1]!, `llraid-${'66'.repeat(16)}-0.img`);
  const live = path.join(disks[0]!, `llraid-${'77'.repeat(16)}-0.img`);
  const unmarked = path.join(disks[1]!, `llraid-${'88'.repeat(16)}-0.img`);
  await store.create(newVolume('77'.repeat(16), { placement: [{ slot: 0, node: 'z', disk: 'disk0', file: 'elsewhere.img' }] }));
  for (const [f, volume] of [[old, '55'], [young, '66'], [live, '77']] as const) {
    writeFileSync(f, 'x');
    writeFileSync(markPath(f), JSON.stringify({ volume: volume.repeat(16), slot: 0 }));
  }
  writeFileSync(unmarked, 'x');
  const past = new Date(Date.now() - 2 * 60_000);
  for (const f of [old, live]) utimesSync(markPath(f), past, past);
  reconciler.start();
  await until('the old orphan to go', () => !existsSync(old));
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual([old, young, live, unmarked].map((f) => existsSync(f)), [false, true, true, true]);
  assert.ok(!existsSync(markPath(old)));
});
