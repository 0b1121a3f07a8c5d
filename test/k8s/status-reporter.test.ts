import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { CoreV1Event } from '@kubernetes/client-node';
import type { ClusterApi } from '../../src/k8s/cluster-api.js';
import { K8sError } from '../../src/k8s/errors.js';
import { StatusReporter } from '../../src/k8s/status-reporter.js';
import { GiB, snapshot } from './snapshot-fixture.js';

/** A recording ClusterApi (unit-test double); `failNext` makes the next calls of a kind fail. */
class RecordingApi implements ClusterApi {
  specs: Array<Record<string, unknown>> = [];
  statuses: Array<{ name: string; body: Record<string, unknown>; at: number }> = [];
  events: CoreV1Event[] = [];
  deleted: string[] = [];
  failNext = { status: 0, event: 0 };
  hang = false;
  /** Calls waiting on a hung server. */
  hanging = 0;
  missing = new Set<string>();
  private gate(): Promise<void> {
    if (!this.hang) return Promise.resolve();
    this.hanging++;
    return new Promise(() => {});
  }
  async applyRaidVolume(body: Record<string, unknown>): Promise<string> {
    await this.gate();
    this.specs.push(body);
    return 'uid-rv';
  }
  async applyRaidVolumeStatus(name: string, body: Record<string, unknown>): Promise<void> {
    await this.gate();
    if (this.failNext.status > 0) {
      this.failNext.status--;
      throw new K8sError('EUNREACHABLE', 'apply status: connection refused');
    }
    this.statuses.push({ name, body, at: Date.now() });
  }
  async deleteRaidVolume(name: string): Promise<void> {
    this.deleted.push(name);
  }
  async uidOf(kind: string, name: string): Promise<string | undefined> {
    return this.missing.has(kind) ? undefined : `uid-${kind}-${name}`;
  }
  async createEvent(body: CoreV1Event): Promise<void> {
    if (this.failNext.event > 0) {
      this.failNext.event--;
      throw new K8sError('EAPI', 'create event: 500', 500);
    }
    this.events.push(body);
  }
}

const fast = { baseMs: 5, maxMs: 40 };
const stateOf = (b: Record<string, unknown>) => (b.status as { state: string }).state;

test('update returns at once even while the API server never answers', async () => {
  const api = new RecordingApi();
  api.hang = true;
  const r = new StatusReporter(api, { node: 'node-a', minIntervalMs: 0, backoff: fast });
  // Synchronous: nothing to await, so no caller can end up waiting on the server.
  for (let i = 0; i < 1000; i++) assert.equal(r.update(snapshot({ events: i })), undefined);
  assert.equal(await r.flush(50), false, 'nothing can be written while the server hangs');
  assert.equal(api.hanging, 1, 'one write waits on the server; the updates behind it wait in the reporter, not on the network');
  await r.close(10);
  assert.throws(() => r.update(snapshot()), (e: unknown) => e instanceof K8sError && e.code === 'ECLOSED');
});

test('status writes of one volume are at least minInterval apart and the last snapshot wins', async () => {
  const api = new RecordingApi();
  const r = new StatusReporter(api, { node: 'node-a', minIntervalMs: 100, backoff: fast });
  const start = Date.now();
  for (let i = 0; i < 20; i++) {
    r.update(snapshot({ events: 100 + i }));
    await new Promise((res) => setTimeout(res, 10));
  }
  assert.equal(await r.flush(2000), true);
  const most = Math.floor((Date.now() - start) / 100) + 1;
  assert.ok(api.statuses.length >= 2 && api.statuses.length <= most, `expected 2 to ${most} writes, found ${api.statuses.length}`);
  for (let i = 1; i < api.statuses.length; i++) {
    const gap = api.statuses[i]!.at - api.statuses[i - 1]!.at;
    assert.ok(gap >= 95, `writes ${gap} ms apart`);
  }
  assert.equal((api.statuses.at(-1)!.body.status as { events: number }).events, 119);
  assert.equal(api.specs.length, 1, 'an unchanged spec is applied once');
  await r.close();
});

test('failed status writes are retried with growing delays until they succeed', async () => {
  const api = new RecordingApi();
  api.failNext.status = 4;
  const errors: K8sError[] = [];
  const r = new StatusReporter(api, { node: 'node-a', minIntervalMs: 0, backoff: { baseMs: 20, maxMs: 1000 }, random: () => 1, onError: (e) => errors.push(e) });
  const start = Date.now();
  r.update(snapshot({ state: 'active' }));
  assert.equal(await r.flush(5000), true);
  const elapsed = Date.now() - start;
  // Delays 20, 40, 80, 160 ms (random() = 1 takes the full delay): at least 300 ms in all.
  assert.ok(elapsed >= 290, `retried after ${elapsed} ms in total`);
  assert.equal(errors.length, 4);
  assert.equal(errors[0]?.code, 'EUNREACHABLE');
  assert.equal(api.statuses.length, 1);
  assert.equal(stateOf(api.statuses[0]!.body), 'active');
  assert.equal(r.stats().apiErrors, 4);
  await r.close();
});

test('events go to the RaidVolume, the PVC and the PV with their real uids', async () => {
  const api = new RecordingApi();
  const r = new StatusReporter(api, { node: 'node-a', minIntervalMs: 0, backoff: fast });
  r.update(snapshot());
  r.update(snapshot({ state: 'degraded', members: snapshot().members.map((m, i) => (i === 1 ? { ...m, role: 'faulty' as const } : m)) }));
  assert.equal(await r.flush(2000), true);
  const seen = api.events.map((e) => `${e.reason} ${e.involvedObject.kind} ${e.metadata.namespace} ${e.involvedObject.uid}`);
  assert.deepEqual(seen.sort(), [
    'Degraded PersistentVolume default uid-PersistentVolume-pvc-1b4e28ba-2fa1-11d2-883f-0016d3cca427',
    'Degraded PersistentVolumeClaim apps uid-PersistentVolumeClaim-data',
    'Degraded RaidVolume default uid-rv',
    'MemberFailed PersistentVolume default uid-PersistentVolume-pvc-1b4e28ba-2fa1-11d2-883f-0016d3cca427',
    'MemberFailed PersistentVolumeClaim apps uid-PersistentVolumeClaim-data',
    'MemberFailed RaidVolume default uid-rv',
  ]);
  const ev = api.events.find((e) => e.reason === 'Degraded')!;
  assert.equal(ev.type, 'Warning');
  assert.equal(ev.source?.host, 'node-a');
  assert.equal(new Set(api.events.map((e) => e.metadata.name)).size, api.events.length, 'event names are unique');
  await r.close();
});

test('a flapping member is rate limited: events beyond the burst are dropped and counted', async () => {
  const api = new RecordingApi();
  api.missing.add('PersistentVolumeClaim');
  api.missing.add('PersistentVolume');
  const r = new StatusReporter(api, { node: 'node-a', minIntervalMs: 0, backoff: fast, eventBurst: 3, eventRefillMs: 60_000 });
  const good = snapshot();
  const bad = snapshot({ state: 'degraded', members: good.members.map((m, i) => (i === 1 ? { ...m, role: 'faulty' as const } : m)) });
  for (let i = 0; i < 10; i++) {
    r.update(bad);
    r.update(good);
  }
  assert.equal(await r.flush(2000), true);
  // Three transitions got tokens; the PVC and PV do not exist, so only RaidVolume events land.
  assert.deepEqual(api.events.map((e) => e.reason), ['MemberFailed', 'Degraded', 'Recovered']);
  assert.ok(r.stats().eventsDropped >= 17, `dropped ${r.stats().eventsDropped}`);
  await r.close();
});

test('an event write that keeps failing is given up after the set attempts, the others still land', async () => {
  const api = new RecordingApi();
  api.failNext.event = 3;
  const r = new StatusReporter(api, { node: 'node-a', minIntervalMs: 0, backoff: fast, eventAttempts: 3 });
  r.update(snapshot({ claim: undefined, persistentVolume: undefined }));
  r.update(snapshot({ claim: undefined, persistentVolume: undefined, state: 'resyncing', sync: { action: 'resync', reason: 'unclean shutdown', doneBytes: 0, targetBytes: GiB, syncedBytes: 0, totalBytes: 10 * GiB, speedBytesPerSecond: 0, startedAt: new Date() } }));
  r.update(snapshot({ claim: undefined, persistentVolume: undefined, lastSync: { action: 'resync', reason: 'unclean shutdown', bytes: GiB, totalBytes: 10 * GiB, durationSeconds: 3, finishedAt: new Date() } }));
  assert.equal(await r.flush(2000), true);
  assert.deepEqual(api.events.map((e) => e.reason), ['ResyncCompleted']);
  assert.equal(r.stats().eventsDropped, 1);
  await r.close();
});

test('remove deletes the RaidVolume and forgets the volume', async () => {
  const api = new RecordingApi();
  const r = new StatusReporter(api, { node: 'node-a', minIntervalMs: 0, backoff: fast });
  r.update(snapshot());
  assert.equal(await r.flush(1000), true);
  r.remove(snapshot().name);
  assert.equal(await r.flush(1000), true);
  assert.deepEqual(api.deleted, [snapshot().name]);
  await r.close();
});

test('I/O counters alone do not cause status writes (they are metrics), a state change does', async () => {
  const api = new RecordingApi();
  const r = new StatusReporter(api, { node: 'node-a', minIntervalMs: 0, backoff: fast });
  r.update(snapshot());
  assert.equal(await r.flush(1000), true);
  for (let i = 1; i <= 50; i++) {
    const s = snapshot();
    r.update({ ...s, io: { ...s.io, writeOps: i, writeBytes: i * 4096 }, members: s.members.map((m) => ({ ...m, errors: i })) });
  }
  assert.equal(await r.flush(1000), true);
  assert.equal(api.statuses.length, 1);
  r.update(snapshot({ state: 'active' }));
  assert.equal(await r.flush(1000), true);
  assert.equal(api.statuses.length, 2);
  await r.close();
});
