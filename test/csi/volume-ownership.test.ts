// Ownership of replicated volumes by compare-and-swap: a released volume is taken with epoch+1,
// a repeated stage keeps its epoch, a live owner is waited for (bounded) and then ABORTED, an
// expired one is taken over, of two racing nodes exactly one wins, and release keeps the epoch.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CsiError } from '../../src/csi/errors.js';
import { VolumeOwnership } from '../../src/csi/volume-ownership.js';
import type { ReplicatedVolume } from '../../src/k8s/replication.js';
import { FakeLiveness, FakeReplicationStore } from '../support/fake-replication.js';

const id = 'cd'.repeat(16);

async function setup(): Promise<{ store: FakeReplicationStore; liveness: FakeLiveness; own: (node: string, timeoutMs?: number) => VolumeOwnership }> {
  const store = new FakeReplicationStore();
  await store.create({
    id, creator: 'a', level: 1, members: 2, chunkSize: 0, replicas: 2, disklessAttach: false, memberBytes: 1 << 20, fsType: 'ext4', setName: 'ext4:pvc-1',
    placement: [{ slot: 0, node: 'a', disk: 'disk0', file: `llraid-${id}-0.img` }, { slot: 1, node: 'b', disk: 'disk0', file: `llraid-${id}-1.img` }],
  });
  store.touch(id, { owner: { node: '', epoch: 1, since: '' } });
  const liveness = new FakeLiveness().live('a', '10.0.0.1:10809').live('b', '10.0.0.2:10809').live('c', '10.0.0.3:10809');
  return { store, liveness, own: (node, timeoutMs = 5000) => new VolumeOwnership(store, liveness, { node, takeOverTimeoutMs: timeoutMs }) };
}

async function aborted(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof CsiError && err.code === 'ABORTED', String(err));
    return err.message;
  }
  throw new Error('expected ABORTED');
}

test('a released volume is taken with epoch+1; a repeated stage keeps it; release keeps the epoch', async () => {
  const { store, own } = await setup();
  const got = await own('a').acquire(id);
  assert.deepEqual([got.epoch, got.tookOverFrom, got.volume.owner.node], [2, undefined, 'a']);
  assert.equal((await own('a').acquire(id)).epoch, 2);
  await own('a').release(id);
  assert.deepEqual([store.peek(id)!.owner.node, store.peek(id)!.owner.epoch], ['', 2]);
  await own('a').release(id); // nothing to release: no write
  assert.equal(store.calls.filter((c) => c.startsWith('setOwner')).length, 2);
  assert.equal((await own('b').acquire(id)).epoch, 3);
});

test('a live owner is waited for, then ABORTED naming it; nothing is written', async () => {
  const { store, own } = await setup();
  await own('a').acquire(id);
  const t0 = Date.now();
  assert.match(await aborted(own('b', 200).acquire(id)), new RegExp(`volume ${id} is owned by node a whose lease is valid`));
  assert.ok(Date.now() - t0 >= 190);
  assert.equal(store.peek(id)!.owner.node, 'a');
});

test('an owner whose Lease expires while the stage waits is taken over with a higher epoch', async () => {
  const { store, liveness, own } = await setup();
  await own('a').acquire(id);
  const taking = own('b').acquire(id);
  setTimeout(() => liveness.expire('a'), 50);
  const got = await taking;
  assert.deepEqual([got.epoch, got.tookOverFrom], [3, 'a']);
  assert.deepEqual(store.peek(id)!.owner.node, 'b');
});

test('two nodes racing for a released volume: exactly one wins, the other is ABORTED naming it', async () => {
  const { store, own } = await setup();
  const results = await Promise.allSettled([own('b').acquire(id), own('c').acquire(id)]);
  const won = results.filter((r) => r.status === 'fulfilled');
  const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  assert.equal(won.length, 1);
  assert.equal(lost.length, 1);
  const winner = store.peek(id)!.owner.node;
  assert.ok(lost[0]!.reason instanceof CsiError && lost[0]!.reason.code === 'ABORTED');
  assert.match((lost[0]!.reason as Error).message, new RegExp(`owned by node ${winner} \\(it took the volume first, epoch 2\\)`));
});

test('a conflict from an unrelated write re-reads and tries again; a conflict from another owner aborts', async () => {
  const { store, own } = await setup();
  store.interfere.set(id, (): Partial<ReplicatedVolume> => ({})); // the status reporter wrote meanwhile
  assert.equal((await own('a').acquire(id)).epoch, 2);
  await own('a').release(id);
  store.interfere.set(id, (v) => ({ owner: { node: 'c', epoch: v.owner.epoch + 1, since: '' } }));
  assert.match(await aborted(own('b').acquire(id)), /owned by node c/);
});

test('conflicts without end give ABORTED after the bounded attempts', async () => {
  const { store, liveness } = await setup();
  const own = new VolumeOwnership(store, liveness, { node: 'a', takeOverTimeoutMs: 100, attempts: 3 });
  const original = store.setOwner.bind(store);
  store.setOwner = async (i, rv, o) => {
    store.touch(i);
    return original(i, rv, o);
  };
  assert.match(await aborted(own.acquire(id)), /kept changing under 3 attempts/);
});

test('a volume being deleted is not staged; a missing one is NOT_FOUND', async () => {
  const { store, own } = await setup();
  await store.delete(id);
  await assert.rejects(own('a').acquire(id), (e: unknown) => e instanceof CsiError && e.code === 'FAILED_PRECONDITION' && /being deleted/.test(e.message));
  await assert.rejects(own('a').acquire('ef'.repeat(16)), (e: unknown) => e instanceof CsiError && e.code === 'NOT_FOUND');
});
