// The keeper rule of node-lease.ts on a fake clock and a simulated API server: the deadline
// moves to t_sent + D - margin only when the answer comes before the current deadline; a lapse
// is reported with afterLapse=true; and with the API server out of reach for longer than D, the
// keeper's validity is 0 before an observer (lease-observer.ts) can count the Lease expired.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KubeLeaseKeeper, leaseMarginMs } from '../../src/k8s/node-lease.js';
import { KubeNodeLiveness } from '../../src/k8s/lease-observer.js';
import { K8sError } from '../../src/k8s/errors.js';
import { FakeClock } from './fake-clock.js';
import { FakeLeaseApi } from './fake-lease-api.js';

const D = 20;
const R = 5;
const VALIDITY = D * 1000 - leaseMarginMs(D); // 15 s

function setup(o: { roundTripMs?: number } = {}) {
  const clock = new FakeClock();
  const api = new FakeLeaseApi(clock);
  api.roundTripMs = o.roundTripMs ?? 100;
  const errors: K8sError[] = [];
  const keeper = new KubeLeaseKeeper(api, {
    node: 'node-a',
    durationSeconds: D,
    renewSeconds: R,
    memberService: '10.214.0.1:10809',
    now: clock.now,
    schedule: clock.schedule,
    random: () => 0.5,
    onError: (e) => errors.push(e),
  });
  const told: Array<{ at: number; validForMs: number; afterLapse: boolean }> = [];
  keeper.onRenewed((validForMs, afterLapse) => told.push({ at: clock.now(), validForMs, afterLapse }));
  return { clock, api, keeper, told, errors };
}

async function started(s: ReturnType<typeof setup>): Promise<void> {
  const p = s.keeper.start();
  await s.clock.advance(s.api.roundTripMs);
  await p;
}

test('margin is max(2 s, D/4)', () => {
  assert.equal(leaseMarginMs(20), 5000);
  assert.equal(leaseMarginMs(3), 2000);
  assert.equal(leaseMarginMs(8), 2000);
  assert.equal(leaseMarginMs(60), 15000);
});

test('start creates the Lease with the member service, and the first renewal counts as the end of a lapse', async () => {
  const s = setup();
  assert.equal(s.keeper.validForMs(), 0, 'no validity before the first renewal');
  await started(s);
  assert.equal(s.api.renewals.length, 1);
  assert.deepEqual({ ...s.api.renewals[0]!.renewal, renewTime: undefined }, { durationSeconds: D, memberService: '10.214.0.1:10809', renewTime: undefined });
  assert.equal(s.api.leases.get('node-a')?.memberService, '10.214.0.1:10809');
  // Sent at 0: valid until 0 + D - margin, read at the answer (100 ms later).
  assert.deepEqual(s.told, [{ at: 100, validForMs: VALIDITY - 100, afterLapse: true }]);
  assert.equal(s.keeper.validForMs(), VALIDITY - 100);
  await s.keeper.stop();
});

test('renewals every R extend the deadline to t_sent + D - margin and are told as not after a lapse', async () => {
  const s = setup();
  await started(s);
  await s.clock.advance(3 * R * 1000);
  assert.equal(s.api.renewals.length, 4, 'at 0, 5, 10, 15 s');
  assert.deepEqual(s.api.renewals.map((r) => r.at), [50, 5050, 10050, 15050]);
  assert.deepEqual(s.told.slice(1).map((t) => [t.at, t.validForMs, t.afterLapse]), [
    [5100, VALIDITY - 100, false],
    [10100, VALIDITY - 100, false],
    [15100, VALIDITY - 100, false],
  ]);
  // At 15.1 s: deadline 15 + 15 = 30 s.
  assert.equal(s.keeper.validForMs(), 30_000 - 15_100);
  await s.keeper.stop();
  await s.clock.advance(60_000);
  assert.equal(s.api.renewals.length, 4, 'no renewal after stop');
});

test('with the API server out of reach the validity runs out at the last t_sent + D - margin; the first renewal after is a lapse', async () => {
  const s = setup();
  await started(s);
  await s.clock.advance(5_200 - s.clock.now()); // the renewal sent at 5 s was answered: deadline 20 s
  s.api.link = 'down';
  await s.clock.advance(19_900 - s.clock.now());
  assert.equal(s.keeper.validForMs(), 100);
  assert.ok(s.errors.length >= 2, 'failed renewals are reported');
  assert.ok(s.errors.every((e) => e.code === 'EUNREACHABLE'));
  const toldBefore = s.told.length;
  await s.clock.advance(100);
  assert.equal(s.keeper.validForMs(), 0, 'lapsed at 5 + 20 - 5 = 20 s');
  await s.clock.advance(30_000);
  assert.equal(s.keeper.validForMs(), 0);
  assert.equal(s.told.length, toldBefore, 'no extension while out of reach');
  s.api.link = 'up';
  const backAt = await s.clock.until(() => s.told.length > toldBefore, 10_000);
  const back = s.told.at(-1)!;
  assert.equal(back.afterLapse, true, 'the caller must re-check ownership before extending engines');
  assert.equal(back.validForMs, VALIDITY - 100);
  assert.ok(backAt - 50_000 <= R * 1000 + 100, `retries are at most R apart: renewed at ${backAt}`);
  await s.clock.advance(R * 1000);
  assert.equal(s.told.at(-1)!.afterLapse, false, 'then renewals are in time again');
  await s.keeper.stop();
});

test('a hung renewal times out and extends nothing', async () => {
  const s = setup();
  await started(s); // deadline 15 s
  s.api.link = 'hang';
  await s.clock.advance(16_000);
  assert.equal(s.keeper.validForMs(), 0);
  assert.ok(s.errors.some((e) => /no answer within 5000 ms/.test(e.message)), s.errors.map((e) => e.message).join('; '));
  await s.keeper.stop();
});

test('an answer that arrives after the deadline is a lapse even though the request left in time', async () => {
  const s = setup();
  await started(s); // sent at 0: deadline 15 s
  s.api.link = 'down';
  await s.clock.advance(14_000 - s.clock.now());
  const toldBefore = s.told.length;
  s.api.link = 'up';
  s.api.roundTripMs = 1_800;
  await s.clock.until(() => s.told.length > toldBefore, 10_000);
  const renewal = s.api.renewals.at(-1)!;
  const sent = renewal.at - 900;
  const last = s.told.at(-1)!;
  assert.ok(sent < 15_000 && last.at > 15_000, `sent at ${sent} before the deadline, answered at ${last.at} after it`);
  assert.equal(last.afterLapse, true);
  assert.equal(last.validForMs, sent + VALIDITY - last.at);
  await s.keeper.stop();
});

test('a slow answer inside the deadline extends from when the renewal was sent, not from the answer', async () => {
  const s = setup({ roundTripMs: 900 });
  await started(s);
  assert.equal(s.told[0]!.validForMs, VALIDITY - 900);
  await s.clock.advance(R * 1000);
  assert.equal(s.told.at(-1)!.validForMs, VALIDITY - 900);
  assert.equal(s.told.at(-1)!.afterLapse, false);
  await s.keeper.stop();
});

test('options a keeper could not keep are refused', () => {
  const api = new FakeLeaseApi(new FakeClock());
  const make = (durationSeconds: number, renewSeconds: number, memberService = '10.0.0.1:10809') => () =>
    new KubeLeaseKeeper(api, { node: 'n', durationSeconds, renewSeconds, memberService });
  assert.throws(make(0, 1), (e: unknown) => e instanceof K8sError && e.code === 'EINVAL' && /durationSeconds/.test(e.message));
  assert.throws(make(20, 15), /renewSeconds: expected more than 0 and less than .* = 15, found 15/);
  assert.throws(make(3, 1), /less than .* = 1, found 1/);
  assert.throws(make(20, 0), /renewSeconds/);
  assert.throws(make(20, 5, ''), /memberService/);
  assert.doesNotThrow(make(3, 0.5));
});

test('stop before the first renewal ends start with ECLOSED', async () => {
  const s = setup();
  s.api.link = 'down';
  const outcome = s.keeper.start().then(() => 'started', (e: unknown) => e);
  await s.clock.advance(3000);
  await s.keeper.stop();
  const e = await outcome;
  assert.ok(e instanceof K8sError && e.code === 'ECLOSED', String(e));
});

// The safety property, end to end on one simulated server: node A renews until its link to the
// API server fails for good; node B waits for A's Lease to expire. Whatever the round trip and
// the moment of failure, when B's wait says expired, A's engines have no validity left.
for (const [roundTripMs, failAtMs] of [[100, 7_000], [2_000, 7_000], [100, 9_990], [3_000, 14_990], [10, 5_000]] as const) {
  test(`an observer counts the Lease expired only after the keeper's validity is 0 (round trip ${roundTripMs} ms, link lost at ${failAtMs} ms)`, async () => {
    const s = setup({ roundTripMs });
    // An observer that reads often first sees each version right after it is written: the
    // tightest case for the keeper.
    const observer = new KubeNodeLiveness(s.api, { durationSeconds: D, pollMs: 10, now: s.clock.now, sleep: s.clock.sleep });
    await started(s);
    let expiredAt: number | undefined;
    let validAtExpiry: number | undefined;
    void observer.waitExpired('node-a', 120_000).then((expired) => {
      if (!expired) return;
      expiredAt = s.clock.now();
      validAtExpiry = s.keeper.validForMs();
    });
    await s.clock.advance(failAtMs - s.clock.now());
    s.api.link = 'down';
    await s.clock.until(() => expiredAt !== undefined, 60_000, 50);
    assert.equal(validAtExpiry, 0, `expired as observed at ${expiredAt} ms while the keeper still had ${validAtExpiry} ms`);
    const lastWrite = s.api.renewals.at(-1)!.at;
    assert.ok(expiredAt! >= lastWrite + D * 1000, `expiry ${expiredAt} comes D after the last renewal reached the server (${lastWrite})`);
    assert.ok(expiredAt! <= lastWrite + D * 1000 + 100, `and right after: ${expiredAt}`);
    await s.keeper.stop();
  });
}
