// Node liveness (lease-observer.ts) on a fake clock and a simulated API server: expired means
// the same resourceVersion for D of this process's clock since it first saw it; a missing Lease
// only D after the first look; the out-of-service taint at once; renewals keep a node live.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { K8sError } from '../../src/k8s/errors.js';
import { KubeNodeLiveness } from '../../src/k8s/lease-observer.js';
import { FakeClock } from './fake-clock.js';
import { FakeLeaseApi } from './fake-lease-api.js';

const D = 20;

function setup(o: { durationSeconds?: number } = {}) {
  const clock = new FakeClock();
  const api = new FakeLeaseApi(clock);
  const errors: K8sError[] = [];
  const observer = new KubeNodeLiveness(api, { durationSeconds: o.durationSeconds ?? D, now: clock.now, sleep: clock.sleep, onError: (e) => errors.push(e) });
  return { clock, api, observer, errors };
}

/** Runs waitExpired on the fake clock; resolves with its answer and the fake time it came. */
function waiting(s: ReturnType<typeof setup>, node: string, timeoutMs: number): { result: () => { expired: boolean; at: number } | undefined } {
  let result: { expired: boolean; at: number } | undefined;
  void s.observer.waitExpired(node, timeoutMs).then((expired) => {
    result = { expired, at: s.clock.now() };
  });
  return { result: () => result };
}

test('a Lease that is not renewed counts as expired D after its version was first seen here, not before', async () => {
  const s = setup();
  s.api.write('node-b', D, '10.214.0.2:10809');
  const w = waiting(s, 'node-b', 60_000);
  await s.clock.advance(D * 1000 - 1);
  assert.equal(w.result(), undefined, 'not before D');
  await s.clock.advance(1);
  assert.deepEqual(w.result(), { expired: true, at: D * 1000 });
  // Polls are every D/4 (capped at 2 s) and one lands exactly at D: a handful of reads, not a busy loop.
  assert.ok(s.api.reads <= 2 * (1 + Math.ceil((D * 1000) / 2000)) + 2, `${s.api.reads} reads`);
});

test('a Lease renewed within every D never counts as expired; the wait ends false at its timeout', async () => {
  const s = setup();
  s.api.write('node-b', D);
  const w = waiting(s, 'node-b', 3 * D * 1000);
  for (let t = 0; t < 3 * D * 1000; t += 5000) {
    await s.clock.advance(5000);
    s.api.write('node-b', D);
  }
  await s.clock.advance(10);
  assert.deepEqual(w.result(), { expired: false, at: 3 * D * 1000 });
});

test('the out-of-service taint counts as expired at once, without waiting', async () => {
  const s = setup();
  s.api.write('node-b', D);
  s.api.outOfServiceNodes.add('node-b');
  const w = waiting(s, 'node-b', 60_000);
  await s.clock.settle();
  assert.deepEqual(w.result(), { expired: true, at: 0 });
});

test('a missing Lease counts as expired only D after the first look that missed it', async () => {
  const s = setup();
  await s.clock.advance(100_000); // long before anything looked: does not count
  const w = waiting(s, 'node-c', 60_000);
  await s.clock.advance(D * 1000 - 1);
  assert.equal(w.result(), undefined);
  await s.clock.advance(1);
  assert.deepEqual(w.result(), { expired: true, at: 100_000 + D * 1000 });
});

test('a Lease that states a longer duration than ours is waited for that long', async () => {
  const s = setup();
  s.api.write('node-b', 45);
  const w = waiting(s, 'node-b', 120_000);
  await s.clock.advance(44_999);
  assert.equal(w.result(), undefined);
  await s.clock.advance(1);
  assert.equal(w.result()?.expired, true);
});

test('API errors while waiting are reported and do not end the wait; nothing counts as expired without a read', async () => {
  const s = setup();
  s.api.write('node-b', D);
  const w = waiting(s, 'node-b', 10_000);
  await s.clock.advance(1000);
  s.api.readsFail = true;
  await s.clock.advance(60_000);
  assert.deepEqual(w.result(), { expired: false, at: 10_000 });
  assert.ok(s.errors.length > 0 && s.errors.every((e) => e.code === 'EUNREACHABLE'));
  // The API comes back long after: the version first seen at 0 has not changed for ≥ D.
  s.api.readsFail = false;
  const again = waiting(s, 'node-b', 10_000);
  await s.clock.settle();
  assert.equal(again.result()?.expired, true);
});

test('liveNodes: Leases with a member service that are not expired as observed, first sightings included', async () => {
  const s = setup();
  s.api.write('node-a', D, '10.214.0.1:10809');
  s.api.write('node-b', D, '10.214.0.2:10809');
  s.api.write('node-c', D); // no member service: cannot hold members
  assert.deepEqual(await s.observer.liveNodes(), [
    { node: 'node-a', memberService: '10.214.0.1:10809' },
    { node: 'node-b', memberService: '10.214.0.2:10809' },
  ]);
  assert.equal(await s.observer.memberService('node-b'), '10.214.0.2:10809');
  assert.equal(await s.observer.memberService('node-x'), undefined);
  // node-a renews, node-b does not: after D only node-a is live.
  await s.clock.advance(10_000);
  s.api.write('node-a', D, '10.214.0.1:10809');
  await s.clock.advance(10_000);
  assert.deepEqual((await s.observer.liveNodes()).map((n) => n.node), ['node-a']);
  // node-b renews again: live again.
  s.api.write('node-b', D, '10.214.0.2:10809');
  assert.deepEqual((await s.observer.liveNodes()).map((n) => n.node), ['node-a', 'node-b']);
});

test('an observation made by liveNodes counts for a later wait: the clock starts at the first sighting', async () => {
  const s = setup();
  s.api.write('node-b', D, '10.214.0.2:10809');
  await s.observer.liveNodes();
  await s.clock.advance(15_000);
  const w = waiting(s, 'node-b', 60_000);
  await s.clock.advance(4_999);
  assert.equal(w.result(), undefined);
  await s.clock.advance(1);
  assert.deepEqual(w.result(), { expired: true, at: 20_000 });
});

test('durationSeconds must be an integer ≥ 1', () => {
  const api = new FakeLeaseApi(new FakeClock());
  assert.throws(() => new KubeNodeLiveness(api, { durationSeconds: 0 }), (e: unknown) => e instanceof K8sError && e.code === 'EINVAL');
});

test('knownNodes: every Lease with a member service, expired ones too (a node that cannot be reached is still named)', async () => {
  const s = setup();
  s.api.write('node-b', D, '10.214.0.2:10809');
  s.api.write('node-a', D, '10.214.0.1:10809');
  s.api.write('node-c', D);
  await s.observer.liveNodes();
  await s.clock.advance(2 * D * 1000);
  assert.deepEqual(await s.observer.liveNodes(), [], 'both expired');
  assert.deepEqual(await s.observer.knownNodes(), [
    { node: 'node-a', memberService: '10.214.0.1:10809' },
    { node: 'node-b', memberService: '10.214.0.2:10809' },
  ]);
});
