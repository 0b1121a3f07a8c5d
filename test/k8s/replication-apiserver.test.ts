// Replicated volumes' records and node liveness against a real kube-apiserver (started by
// scripts/test.d/70-apiserver.sh, which applies the CRD and the rendered chart and hands over a
// kubeconfig of the chart's own ServiceAccount, so the chart's RBAC is what is exercised).
// Skipped without that server. The store: create/get/list, compare-and-swap of the owner, the
// finalizers that keep a deleted volume, one watch for all volumes (counted on the server's own
// metrics), the status reporter leaving placement and owner alone. The Leases: the keeper
// creates and renews this node's, an observer sees it expire about D after renewals stop, not
// while they go on, and at once for a node tainted out-of-service.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { CoordinationV1Api, CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { KubeClusterApi } from '../../src/k8s/cluster-api.js';
import { K8sError } from '../../src/k8s/errors.js';
import { KubeLeaseApi } from '../../src/k8s/lease-api.js';
import { KubeNodeLiveness } from '../../src/k8s/lease-observer.js';
import { KubeLeaseKeeper } from '../../src/k8s/node-lease.js';
import { KubeReplicationStore } from '../../src/k8s/replication-store.js';
import type { NewReplicatedVolume, ReplicatedVolume } from '../../src/k8s/replication.js';
import { StatusReporter } from '../../src/k8s/status-reporter.js';
import { snapshot } from './snapshot-fixture.js';

const kubeconfig = process.env.LLRAID_TEST_KUBECONFIG; // the chart ServiceAccount's
const adminKubeconfig = process.env.LLRAID_TEST_ADMIN_KUBECONFIG;
const kubectl = process.env.LLRAID_TEST_KUBECTL ?? 'kubectl';
const namespace = process.env.LLRAID_TEST_NAMESPACE ?? 'llraid';
if (!kubeconfig !== !adminKubeconfig) throw new Error('expected both LLRAID_TEST_KUBECONFIG and LLRAID_TEST_ADMIN_KUBECONFIG, or neither');
const skip = kubeconfig && adminKubeconfig ? false : 'needs LLRAID_TEST_KUBECONFIG (run scripts/test.d/70-apiserver.sh)';

const ref = { group: 'llraid.io', version: 'v1alpha1', plural: 'raidvolumes' };
const D = 3; // seconds: short, so the expiry tests take seconds

function admin(): { core: CoreV1Api; custom: CustomObjectsApi; coordination: CoordinationV1Api } {
  const kc = new KubeConfig();
  kc.loadFromFile(adminKubeconfig!);
  return { core: kc.makeApiClient(CoreV1Api), custom: kc.makeApiClient(CustomObjectsApi), coordination: kc.makeApiClient(CoordinationV1Api) };
}

function newVolume(nodes: string[], o: Partial<NewReplicatedVolume> = {}): NewReplicatedVolume {
  const id = randomBytes(16).toString('hex');
  return {
    id,
    creator: nodes[0]!,
    level: 1,
    members: nodes.length,
    chunkSize: 0,
    replicas: nodes.length,
    disklessAttach: false,
    memberBytes: 1 << 30,
    fsType: 'ext4',
    setName: `pvc-${id.slice(0, 8)}`,
    claim: { namespace: 'apps', name: 'data' },
    placement: nodes.map((node, slot) => ({ slot, node, disk: `disk${slot}`, file: `llraid-${id}-${slot}.img` })),
    ...o,
  };
}

/** A counter or gauge of the API server's /metrics for RaidVolumes, summed over matching series. */
function serverMetric(name: string, verb: string): number {
  const text = execFileSync(kubectl, ['--kubeconfig', adminKubeconfig!, 'get', '--raw', '/metrics'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (!line.includes('resource="raidvolumes"') || !line.includes(`verb="${verb}"`)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

async function until<T>(what: string, timeoutMs: number, probe: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const end = Date.now() + timeoutMs;
  while (true) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const isConflict = (e: unknown) => e instanceof K8sError && e.code === 'CONFLICT' && e.status === 409;

test('create, get and list a replicated volume; create again returns the object already there', { skip, timeout: 60_000 }, async () => {
  const store = new KubeReplicationStore(kubeconfig);
  const v = newVolume(['node-a', 'node-b'], { recoverySpeed: { minKiB: 1000, maxKiB: 20_000 } });
  const created = await store.create(v);
  assert.deepEqual(created.owner.node, '');
  assert.equal(created.owner.epoch, 0);
  assert.deepEqual(created.finalizers, ['llraid.io/member-node-a', 'llraid.io/member-node-b']);
  assert.equal(created.deleting, false);
  assert.deepEqual(created.placement, v.placement);
  assert.deepEqual(created.recoverySpeed, { minKiB: 1000, maxKiB: 20_000 });
  const again = await store.create({ ...v, memberBytes: 5 });
  assert.deepEqual(again, created, 'idempotent by name: the first object stays as it was');
  assert.deepEqual(await store.get(v.id), created);
  assert.ok((await store.list()).some((x) => x.id === v.id));
  assert.equal(await store.get(randomBytes(16).toString('hex')), undefined);

  const raw = (await admin().custom.getClusterCustomObject({ ...ref, name: v.id })) as { metadata: { labels: Record<string, string>; managedFields: Array<{ manager: string }> } };
  assert.deepEqual(raw.metadata.labels, { 'llraid.io/node': 'node-a', 'llraid.io/replicated': 'true', 'member.llraid.io/node-a': 'true', 'member.llraid.io/node-b': 'true' });
  assert.deepEqual(raw.metadata.managedFields.map((f) => f.manager), ['llraid-replication']);
  const table = execFileSync(kubectl, ['--kubeconfig', adminKubeconfig!, 'get', 'raidvolume', v.id], { encoding: 'utf8' });
  assert.match(table, /^NAME\s+NODE\s+OWNER\s+EPOCH\s+LEVEL/);
  assert.match(table.split('\n')[1] ?? '', new RegExp(`^${v.id}\\s+node-a\\s+0\\s+raid1\\s+`), table);
});

test('a node-local RaidVolume is not a replicated volume: get answers undefined, list leaves it out', { skip, timeout: 60_000 }, async () => {
  const reporter = new StatusReporter(new KubeClusterApi(kubeconfig), { node: 'node-a', minIntervalMs: 0 });
  const name = 'pvc-node-local-only';
  reporter.update(snapshot({ name, claim: undefined, persistentVolume: undefined }));
  assert.equal(await reporter.flush(30_000), true);
  await reporter.close();
  const store = new KubeReplicationStore(kubeconfig);
  assert.equal(await store.get(name), undefined);
  assert.ok(!(await store.list()).some((x) => x.id === name));
});

test('two nodes set the owner from the same version at once: exactly one wins, the other gets CONFLICT', { skip, timeout: 60_000 }, async () => {
  const store = new KubeReplicationStore(kubeconfig);
  const v = await store.create(newVolume(['node-a', 'node-b']));
  for (let round = 1; round <= 5; round++) {
    const current = (await store.get(v.id))!;
    const since = new Date().toISOString();
    const outcomes = await Promise.allSettled([
      store.setOwner(v.id, current.resourceVersion, { node: 'node-a', epoch: current.owner.epoch + 1, since }),
      store.setOwner(v.id, current.resourceVersion, { node: 'node-b', epoch: current.owner.epoch + 1, since }),
    ]);
    const won = outcomes.filter((o): o is PromiseFulfilledResult<ReplicatedVolume> => o.status === 'fulfilled');
    const lost = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
    assert.equal(won.length, 1, `round ${round}: ${JSON.stringify(outcomes.map((o) => o.status))}`);
    assert.equal(lost.length, 1);
    assert.ok(isConflict(lost[0]!.reason), String(lost[0]!.reason));
    const after = (await store.get(v.id))!;
    assert.deepEqual(after.owner, won[0]!.value.owner);
    assert.equal(after.owner.epoch, round);
  }
  // Release keeps the epoch; a write from a version read before is refused.
  const owned = (await store.get(v.id))!;
  const released = await store.setOwner(v.id, owned.resourceVersion, { node: '', epoch: owned.owner.epoch, since: new Date().toISOString() });
  assert.equal(released.owner.node, '');
  await assert.rejects(store.setOwner(v.id, owned.resourceVersion, { node: 'node-b', epoch: 9, since: '' }), isConflict);
  // The API server itself refuses an epoch going back (it fences the engines of earlier owners).
  await assert.rejects(
    store.setOwner(v.id, released.resourceVersion, { node: 'node-b', epoch: 1, since: '' }),
    (e: unknown) => e instanceof K8sError && e.code === 'EAPI' && e.status === 422 && /owner.epoch never decreases/.test(e.message),
  );
});

test('the status reporter leaves placement and owner alone and never deletes a replicated RaidVolume', { skip, timeout: 60_000 }, async () => {
  const store = new KubeReplicationStore(kubeconfig);
  const v = await store.create(newVolume(['node-a', 'node-b']));
  const owned = await store.setOwner(v.id, v.resourceVersion, { node: 'node-b', epoch: 1, since: new Date().toISOString() });
  const reporter = new StatusReporter(new KubeClusterApi(kubeconfig), { node: 'node-b', minIntervalMs: 0 });
  reporter.update(snapshot({ name: v.id, node: 'node-b', claim: { namespace: 'apps', name: 'data' }, persistentVolume: undefined }));
  assert.equal(await reporter.flush(30_000), true);
  const reported = (await store.get(v.id))!;
  assert.deepEqual(reported.placement, v.placement);
  assert.deepEqual(reported.owner, owned.owner);
  assert.equal(reported.memberBytes, v.memberBytes);
  const raw = (await admin().custom.getClusterCustomObject({ ...ref, name: v.id })) as {
    spec: { node: string; sizeBytes: number; members: unknown[] };
    metadata: { managedFields: Array<{ manager: string; fieldsV1?: { 'f:spec'?: Record<string, unknown> } }> };
  };
  assert.equal(raw.spec.node, 'node-b', 'the reporter writes the node it runs on');
  assert.equal(raw.spec.members.length, 2);
  const owns = (manager: string, field: string) => raw.metadata.managedFields.some((f) => f.manager === manager && f.fieldsV1?.['f:spec']?.[`f:${field}`] !== undefined);
  assert.ok(owns('llraid-replication', 'placement') && owns('llraid-replication', 'owner'));
  assert.ok(!owns('llraid-node', 'placement') && !owns('llraid-node', 'owner'), 'the reporter owns neither');
  reporter.remove(v.id);
  assert.equal(await reporter.flush(30_000), true);
  await reporter.close();
  const still = await store.get(v.id);
  assert.equal(still?.deleting, false, 'only DeleteVolume marks a replicated volume for deletion');
});

test('delete keeps the object until every member node removed its finalizer; concurrent removals lose none', { skip, timeout: 60_000 }, async () => {
  const store = new KubeReplicationStore(kubeconfig);
  const v = await store.create(newVolume(['node-a', 'node-b']));
  await store.delete(v.id);
  const marked = (await store.get(v.id))!;
  assert.equal(marked.deleting, true);
  assert.deepEqual(marked.finalizers, ['llraid.io/member-node-a', 'llraid.io/member-node-b']);
  await store.removeFinalizer(v.id, 'node-a');
  const half = (await store.get(v.id))!;
  assert.deepEqual(half.finalizers, ['llraid.io/member-node-b'], 'node-b has not removed its files yet');
  await store.removeFinalizer(v.id, 'node-a'); // again: nothing to do
  await store.removeFinalizer(v.id, 'node-b');
  assert.equal(await store.get(v.id), undefined, 'gone with the last finalizer');
  await store.removeFinalizer(v.id, 'node-b'); // the object is gone: nothing to do
  await store.delete(v.id); // already gone: not an error

  // Three member nodes remove their finalizers at the same moment: each read-modify-write is
  // conditional on the version it read, so none drops another's change.
  const w = await store.create(newVolume(['node-a', 'node-b', 'node-c']));
  await store.delete(w.id);
  await Promise.all(['node-a', 'node-b', 'node-c'].map((n) => store.removeFinalizer(w.id, n)));
  assert.equal(await store.get(w.id), undefined);
});

test('one watch follows every replicated volume: adds, owner changes and deletions, at the cost of one request', { skip, timeout: 120_000 }, async () => {
  const store = new KubeReplicationStore(kubeconfig);
  const errors: string[] = [];
  type Seen = Map<string, { v: ReplicatedVolume; gone: boolean }[]>;
  const record = (seen: Seen) => (v: ReplicatedVolume, gone: boolean) => void seen.set(v.id, [...(seen.get(v.id) ?? []), { v, gone }]);
  const watchesBefore = serverMetric('apiserver_longrunning_requests', 'WATCH');
  const listsBefore = serverMetric('apiserver_request_total', 'LIST');
  const all: Seen = new Map();
  const onC: Seen = new Map();
  const onError = (e: K8sError) => void errors.push(e.message);
  const watchAll = new KubeReplicationStore(kubeconfig, { onError }).watch(record(all));
  // What node-c's member reconciler would run: only the volumes with a member on node-c.
  const watchC = new KubeReplicationStore(kubeconfig, { onError, memberNode: 'node-c' }).watch(record(onC));
  try {
    const volumes: ReplicatedVolume[] = [];
    for (let i = 0; i < 20; i++) volumes.push(await store.create(newVolume(['node-a', 'node-b'])));
    const withC: ReplicatedVolume[] = [];
    for (let i = 0; i < 3; i++) withC.push(await store.create(newVolume(['node-a', 'node-c'])));
    await until('the watch sees all 23', 30_000, () => ([...volumes, ...withC].every((v) => all.has(v.id)) ? true : undefined));
    await until('node-c\'s watch sees its 3', 30_000, () => (withC.every((v) => onC.has(v.id)) ? true : undefined));
    const first = volumes[0]!;
    await store.setOwner(first.id, first.resourceVersion, { node: 'node-a', epoch: 1, since: new Date().toISOString() });
    await until('the owner change', 30_000, () => (all.get(first.id)!.some((e) => e.v.owner.node === 'node-a') ? true : undefined));
    const last = volumes[19]!;
    await store.delete(last.id);
    await until('the deletion mark', 30_000, () => (all.get(last.id)!.some((e) => e.v.deleting && !e.gone) ? true : undefined));
    await store.removeFinalizer(last.id, 'node-a');
    await store.removeFinalizer(last.id, 'node-b');
    const gone = await until('the deletion', 30_000, () => all.get(last.id)!.find((e) => e.gone));
    assert.equal(gone.v.id, last.id);
    const c0 = withC[0]!;
    await store.setOwner(c0.id, c0.resourceVersion, { node: 'node-c', epoch: 1, since: new Date().toISOString() });
    await until('node-c sees the owner change of its volume', 30_000, () => (onC.get(c0.id)!.some((e) => e.v.owner.node === 'node-c') ? true : undefined));
    assert.deepEqual([...onC.keys()].sort(), withC.map((v) => v.id).sort(), 'node-c is told nothing of volumes without a member there');

    // What the server paid: one open watch and one list per watcher, whatever the number of volumes.
    for (const w of [watchAll, watchC]) assert.deepEqual({ lists: w.stats().lists, watches: w.stats().watches }, { lists: 1, watches: 1 });
    assert.equal(serverMetric('apiserver_longrunning_requests', 'WATCH') - watchesBefore, 2, 'one long-running WATCH on raidvolumes per watcher');
    assert.equal(serverMetric('apiserver_request_total', 'LIST') - listsBefore, 2, 'one LIST per watcher: a change never costs a new list');
    assert.deepEqual(errors, []);
  } finally {
    watchAll.close();
    watchC.close();
  }
  await until('the watches to close', 10_000, () => (serverMetric('apiserver_longrunning_requests', 'WATCH') === watchesBefore ? true : undefined));
});

test('the keeper creates the node Lease with the member service and renews it', { skip, timeout: 60_000 }, async () => {
  const errors: string[] = [];
  const keeper = new KubeLeaseKeeper(new KubeLeaseApi(kubeconfig, namespace), {
    node: 'node-k',
    durationSeconds: D,
    renewSeconds: 0.5,
    memberService: '10.214.0.9:10809',
    onError: (e) => errors.push(e.message),
  });
  const told: Array<[number, boolean]> = [];
  keeper.onRenewed((ms, afterLapse) => told.push([ms, afterLapse]));
  await keeper.start();
  try {
    assert.equal(told[0]?.[1], true, 'the first renewal ends the initial lapse');
    const valid = keeper.validForMs();
    assert.ok(valid > 0 && valid <= D * 1000 - 2000, `valid for ${valid} ms`);
    const { coordination } = admin();
    const lease = await coordination.readNamespacedLease({ name: 'llraid-node-node-k', namespace });
    assert.equal(lease.spec?.holderIdentity, 'node-k');
    assert.equal(lease.spec?.leaseDurationSeconds, D);
    assert.equal(lease.metadata?.annotations?.['llraid.io/member-service'], '10.214.0.9:10809');
    assert.equal(lease.metadata?.labels?.['llraid.io/node-lease'], 'true');
    await new Promise((r) => setTimeout(r, 1200));
    const later = await coordination.readNamespacedLease({ name: 'llraid-node-node-k', namespace });
    assert.notEqual(later.metadata?.resourceVersion, lease.metadata?.resourceVersion, 'renewed');
    assert.ok(told.length >= 2 && told.slice(1).every(([, lapse]) => !lapse), JSON.stringify(told));
    assert.ok(keeper.validForMs() > 0);
    assert.deepEqual(errors, []);
  } finally {
    await keeper.stop();
  }
});

test('an observer counts a Lease expired about D after renewals stop, never while they go on', { skip, timeout: 60_000 }, async () => {
  const keeper = new KubeLeaseKeeper(new KubeLeaseApi(kubeconfig, namespace), { node: 'node-x', durationSeconds: D, renewSeconds: 0.5, memberService: '10.214.0.10:10809' });
  const observer = new KubeNodeLiveness(new KubeLeaseApi(kubeconfig, namespace), { durationSeconds: D });
  await keeper.start();
  let stopped = false;
  try {
    assert.ok((await observer.liveNodes()).some((n) => n.node === 'node-x' && n.memberService === '10.214.0.10:10809'));
    assert.equal(await observer.memberService('node-x'), '10.214.0.10:10809');
    const t0 = performance.now();
    assert.equal(await observer.waitExpired('node-x', (D + 1) * 1000), false, 'renewed: not expired');
    assert.ok(performance.now() - t0 >= (D + 1) * 1000 - 50);

    await keeper.stop();
    stopped = true;
    const t1 = performance.now();
    assert.equal(await observer.waitExpired('node-x', 10_000), true);
    const waited = performance.now() - t1;
    assert.ok(waited >= D * 1000 - 600 && waited <= D * 1000 + 1500, `expired after ${Math.round(waited)} ms (D = ${D} s, last renewal ≤ 0.5 s before the stop)`);
    assert.equal(keeper.validForMs(), 0, 'the keeper\'s own validity ran out first');
    assert.ok(!(await observer.liveNodes()).some((n) => n.node === 'node-x'), 'no longer a live node');
  } finally {
    if (!stopped) await keeper.stop();
  }
});

test('a node tainted node.kubernetes.io/out-of-service counts as expired at once, renewed Lease or not', { skip, timeout: 60_000 }, async () => {
  const { core } = admin();
  await core.createNode({ body: { metadata: { name: 'node-t' }, spec: { taints: [{ key: 'node.kubernetes.io/out-of-service', value: 'nodeshutdown', effect: 'NoExecute' }] } } });
  const keeper = new KubeLeaseKeeper(new KubeLeaseApi(kubeconfig, namespace), { node: 'node-t', durationSeconds: D, renewSeconds: 0.5, memberService: '10.214.0.11:10809' });
  await keeper.start();
  try {
    const observer = new KubeNodeLiveness(new KubeLeaseApi(kubeconfig, namespace), { durationSeconds: D });
    const t0 = performance.now();
    assert.equal(await observer.waitExpired('node-t', 10_000), true);
    assert.ok(performance.now() - t0 < 1000, `at once, not after D: ${Math.round(performance.now() - t0)} ms`);
    // A Lease that never existed counts as expired only D after the first look.
    const t1 = performance.now();
    assert.equal(await observer.waitExpired('node-never-seen', 10_000), true);
    assert.ok(performance.now() - t1 >= D * 1000 - 50);
  } finally {
    await keeper.stop();
  }
});
