import { test } from 'node:test';
import assert from 'node:assert/strict';
import { volumeEvents } from '../../src/k8s/volume-events.js';
import { GiB, snapshot } from './snapshot-fixture.js';

const startedAt = new Date('2026-01-01T00:00:00Z');
const resyncing = snapshot({
  state: 'resyncing',
  sync: { action: 'resync', reason: 'unclean shutdown', doneBytes: 0, targetBytes: 256 * 1024 * 1024, syncedBytes: 0, totalBytes: 10 * GiB, speedBytesPerSecond: 0, startedAt },
});

test('a sync that starts is reported once, with the bitmap-marked bytes of the total', () => {
  const events = volumeEvents(snapshot(), resyncing);
  assert.deepEqual(events.map((e) => e.reason), ['ResyncStarted']);
  assert.equal(events[0]?.message, 'resync started (unclean shutdown): 256 MiB of 10 GiB marked by the bitmap');
  const later = { ...resyncing, sync: { ...resyncing.sync!, doneBytes: GiB } };
  assert.deepEqual(volumeEvents(resyncing, later), []);
});

test('a finished sync reports the bytes it copied of how many', () => {
  const done = snapshot({ lastSync: { action: 'resync', reason: 'unclean shutdown', bytes: 256 * 1024 * 1024, totalBytes: 10 * GiB, durationSeconds: 1.5, finishedAt: new Date('2026-01-01T00:00:02Z') } });
  const events = volumeEvents(resyncing, done);
  assert.deepEqual(events.map((e) => e.reason), ['ResyncCompleted']);
  assert.match(events[0]?.message ?? '', /256 MiB of 10 GiB resynced \(268435456 of 10737418240 bytes\) in 1\.5s/);
  assert.deepEqual(volumeEvents(done, { ...done, events: 50 }), []);
});

test('a sync that starts and finishes between two polls is reported as started and completed', () => {
  const done = snapshot({ lastSync: { action: 'resync', reason: 'unclean shutdown', bytes: 4 * 1024 * 1024, totalBytes: 10 * GiB, durationSeconds: 0.7, finishedAt: new Date('2026-01-01T00:00:02Z') } });
  const events = volumeEvents(snapshot(), done);
  assert.deepEqual(events.map((e) => e.reason), ['ResyncStarted', 'ResyncCompleted']);
  assert.equal(events[0]?.message, 'resync started (unclean shutdown): 4 MiB of 10 GiB marked by the bitmap');
  const back = snapshot({ lastSync: { action: 'recovery', reason: 'a member was added or re-added', bytes: 2 * 1024 * 1024, totalBytes: 10 * GiB, durationSeconds: 0.1, finishedAt: new Date('2026-01-01T00:00:03Z') } });
  assert.deepEqual(volumeEvents(snapshot(), back).map((e) => `${e.reason}: ${e.message}`), [
    'RecoveryStarted: recovery started (a member was added or re-added): 2 MiB of 10 GiB marked by the bitmap',
    'RecoveryCompleted: recovery completed (a member was added or re-added): 2 MiB of 10 GiB copied (2097152 of 10737418240 bytes) in 0.1s',
  ]);
});

test('a member failing degrades the volume; full redundancy again is Recovered', () => {
  const failed = snapshot({ state: 'degraded', members: snapshot().members.map((m, i) => (i === 0 ? { ...m, role: 'faulty' as const, errors: 3 } : m)) });
  const events = volumeEvents(snapshot(), failed);
  assert.deepEqual(events.map((e) => [e.reason, e.type]), [['MemberFailed', 'Warning'], ['Degraded', 'Warning']]);
  assert.equal(events[0]?.message, 'member /var/lib/llraid/disk-a/pvc-1.img on disk disk-a failed after 3 I/O errors');
  assert.equal(events[1]?.message, 'raid1 volume is degraded: 1 of 2 members in sync');
  assert.deepEqual(volumeEvents(failed, failed), []);
  const recovering = snapshot({ state: 'recovering', members: snapshot().members.map((m, i) => (i === 0 ? { ...m, role: 'rebuilding' as const } : m)) });
  assert.deepEqual(volumeEvents(failed, recovering), []);
  assert.deepEqual(volumeEvents(recovering, snapshot()).map((e) => e.reason), ['Recovered']);
});

test('first sight of a degraded volume with a sync running reports both', () => {
  const s = { ...resyncing, state: 'recovering' as const };
  assert.deepEqual(volumeEvents(undefined, s).map((e) => e.reason), ['Degraded', 'ResyncStarted']);
  assert.deepEqual(volumeEvents(undefined, snapshot()), []);
});

test('a member on another node: lost says so without the slot it no longer holds, back says whether it is still recovering', () => {
  const remote = 'nbds://node-b:10809/0d1e2f';
  const base = snapshot();
  const withRemote = (role: 'active' | 'faulty' | 'rebuilding', slot: number) =>
    snapshot({ members: base.members.map((m, i) => (i === 1 ? { ...m, path: remote, node: 'node-b', role, slot } : m)) });
  const lost = volumeEvents(withRemote('active', 1), withRemote('faulty', -1));
  assert.equal(lost[0]?.reason, 'MemberLost');
  assert.equal(lost[0]?.message, 'a member on node node-b lost; the bitmap keeps what it misses');
  const back = volumeEvents(withRemote('faulty', -1), withRemote('rebuilding', 1));
  assert.equal(back[0]?.message, 'member 1 on node node-b is back: recovering what was written while it was away');
  const inSync = volumeEvents(withRemote('faulty', -1), withRemote('active', 1));
  assert.equal(inSync[0]?.message, 'member 1 on node node-b is back and in sync');
});
