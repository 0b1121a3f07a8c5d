import { test } from 'node:test';
import assert from 'node:assert/strict';
import { conditionsFor, raidVolumeSpec, raidVolumeStatus } from '../../src/k8s/raid-volume.js';
import { checkVolumeStatus } from '../../src/k8s/volume-status.js';
import { K8sError } from '../../src/k8s/errors.js';
import { formatBytes } from '../../src/units/byte-sizes.js';
import { GiB, snapshot } from './snapshot-fixture.js';

test('spec carries level, size, node, claim and every member with its disk and role', () => {
  const obj = raidVolumeSpec(snapshot()) as { metadata: { name: string; labels: Record<string, string> }; spec: Record<string, unknown> };
  assert.equal(obj.metadata.name, 'pvc-1b4e28ba-2fa1-11d2-883f-0016d3cca427');
  assert.deepEqual(obj.metadata.labels, { 'llraid.io/node': 'node-a' });
  assert.equal(obj.spec.level, 'raid1');
  assert.equal(obj.spec.size, '10 GiB');
  assert.equal(obj.spec.sizeBytes, 10 * GiB);
  assert.deepEqual(obj.spec.claim, { namespace: 'apps', name: 'data' });
  assert.deepEqual(obj.spec.members, [
    { disk: 'disk-a', path: '/var/lib/llraid/disk-a/pvc-1.img', role: 'active', slot: 0 },
    { disk: 'disk-b', path: '/var/lib/llraid/disk-b/pvc-1.img', role: 'active', slot: 1 },
  ]);
});

test('status of a resyncing volume shows progress, speed and a finish estimate from the bitmap target', () => {
  const now = new Date('2026-01-01T00:00:00Z');
  const s = snapshot({
    state: 'resyncing',
    sync: { action: 'resync', reason: 'unclean shutdown', doneBytes: 5 * GiB, targetBytes: 1 * GiB, syncedBytes: 0.5 * GiB, totalBytes: 10 * GiB, speedBytesPerSecond: 0.1 * GiB, startedAt: new Date('2025-12-31T23:59:00Z') },
  });
  const status = (raidVolumeStatus(s, conditionsFor(s, [], now), now) as { status: Record<string, Record<string, unknown>> }).status;
  // Progress is of what the pass copies (half of the 1 GiB marked), not of its position (5 of 10 GiB).
  assert.equal(status.sync?.progress, '50.0%');
  assert.equal(status.sync?.summary, '512 MiB of 1 GiB marked copied, at 5 GiB of 10 GiB');
  assert.equal(status.sync?.speed, '102.4 MiB/s');
  // 0.5 GiB of the target left at 0.1 GiB/s copied: 5 s.
  assert.equal(status.sync?.estimatedFinish, '2026-01-01T00:00:05.000Z');
  const syncing = (status.conditions as unknown as Array<{ type: string; status: string; message: string }>).find((c) => c.type === 'Syncing');
  assert.equal(syncing?.status, 'True');
  assert.equal(syncing?.message, 'resync (unclean shutdown): 512 MiB of 1 GiB marked copied (50.0%), at 5 GiB of 10 GiB');
});

test('a condition keeps its transition time while its status stays, and gets a new one when it flips', () => {
  const t0 = new Date('2026-01-01T00:00:00Z');
  const t1 = new Date('2026-01-01T01:00:00Z');
  const first = conditionsFor(snapshot(), [], t0);
  const same = conditionsFor(snapshot({ events: 43 }), first, t1);
  assert.deepEqual(same.map((c) => c.lastTransitionTime), [t0.toISOString(), t0.toISOString(), t0.toISOString()]);
  const degraded = snapshot({ state: 'degraded', members: snapshot().members.map((m, i) => (i === 1 ? { ...m, role: 'faulty' as const } : m)) });
  const flipped = conditionsFor(degraded, first, t1);
  const d = flipped.find((c) => c.type === 'Degraded');
  assert.equal(d?.status, 'True');
  assert.equal(d?.lastTransitionTime, t1.toISOString());
  assert.equal(d?.message, 'faulty members: /var/lib/llraid/disk-b/pvc-1.img');
  assert.equal(flipped.find((c) => c.type === 'Ready')?.lastTransitionTime, t0.toISOString());
});

test('last resync says how many bytes of how many, and how long', () => {
  const now = new Date('2026-01-01T00:00:00Z');
  const s = snapshot({ lastSync: { action: 'resync', reason: 'unclean shutdown', bytes: 128 * 1024 * 1024, totalBytes: 10 * GiB, durationSeconds: 2.25, finishedAt: now } });
  const status = (raidVolumeStatus(s, [], now) as { status: { lastSync: Record<string, unknown> } }).status;
  assert.equal(status.lastSync.summary, '128 MiB of 10 GiB in 2.3s');
  assert.equal(status.lastSync.bytes, 134217728);
});

test('bad snapshots are refused with a typed error naming the field', () => {
  const cases: Array<[Parameters<typeof snapshot>[0], RegExp]> = [
    [{ name: 'Not_A_Name' }, /volume name: expected a DNS-1123 subdomain/],
    [{ level: 4 as never }, /level: expected one of 0, 1, 10, 5, 6, found 4/],
    [{ state: 'weird' as never }, /state: expected one of clean/],
    [{ members: [] }, /members: expected at least one member/],
    [{ sizeBytes: -1 }, /sizeBytes: expected a non-negative integer, found -1/],
    [{ sync: { action: 'resync', reason: 'x', doneBytes: 11, targetBytes: 1, syncedBytes: 0, totalBytes: 10, speedBytesPerSecond: 1, startedAt: new Date() } }, /doneBytes: expected at most totalBytes 10, found 11/],
  ];
  for (const [o, re] of cases) {
    assert.throws(() => checkVolumeStatus(snapshot(o)), (e: unknown) => e instanceof K8sError && e.code === 'EINVAL' && re.test(e.message));
  }
});

test('byte counts read like people write them', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(10 * GiB), '10 GiB');
  assert.equal(formatBytes(1023), '1023 B');
});

test('status lists the volume\'s snapshots with their size and the bytes they share; a bad snapshot entry is refused by name', () => {
  const now = new Date('2026-01-01T00:00:00Z');
  const s = snapshot({
    snapshots: [
      { id: 'snap-a', createdAt: new Date('2025-12-31T12:00:00Z'), sizeBytes: 10 * GiB, sharedBytes: 9 * GiB, readyToUse: true },
      { id: 'snap-b', createdAt: new Date('2025-12-31T18:00:00Z'), sizeBytes: 10 * GiB, sharedBytes: 10 * GiB, readyToUse: false },
    ],
  });
  checkVolumeStatus(s);
  const status = (raidVolumeStatus(s, [], now) as { status: { snapshots: Record<string, unknown>[] } }).status;
  assert.deepEqual(status.snapshots[0], {
    id: 'snap-a', createdAt: '2025-12-31T12:00:00.000Z', sizeBytes: 10 * GiB, size: '10 GiB', sharedBytes: 9 * GiB, shared: '9 GiB (90.0%)', readyToUse: true,
  });
  assert.equal(status.snapshots[1]?.readyToUse, false);
  assert.equal((raidVolumeStatus(snapshot(), [], now) as { status: Record<string, unknown> }).status.snapshots, undefined, 'no snapshots, no field');
  assert.throws(() => checkVolumeStatus(snapshot({ snapshots: [{ id: 'snap-c', createdAt: now, sizeBytes: GiB, sharedBytes: 2 * GiB, readyToUse: true }] })),
    (e: unknown) => e instanceof K8sError && /snapshot snap-c: sharedBytes: expected at most sizeBytes/.test(e.message));
  assert.throws(() => checkVolumeStatus(snapshot({ snapshots: [{ id: '', createdAt: now, sizeBytes: GiB, sharedBytes: 0, readyToUse: true }] })),
    (e: unknown) => e instanceof K8sError && /snapshot id: expected a CSI snapshot id/.test(e.message));
});
